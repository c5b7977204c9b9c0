"""The ``graphc`` command (also ``python -m graphc``).

    graphc demo          trace a few functions, print their IR, check them against
                         NumPy and time them (exit status 1 on a mismatch)
    graphc cache-dir     print the directory compiled modules are cached in
    graphc clear-cache   delete the files graphc wrote there (nothing else)
    graphc --version     print graphc's, Numba's and NumPy's versions

Commands on model files written by ``gc.save`` (docs/format.md):

    graphc show FILE                  signature, IR and parameter table
    graphc dot FILE [-o g.dot]        the graph in Graphviz DOT, fused groups as clusters
    graphc run FILE x.npy [y.npz ...] [-o out.npy|out.npz]
                                      call the model on arrays, print or write the results
    graphc bench FILE [--batch N]     median time per call on random inputs of its signature

Exit codes: 0 success; 1 the model raised while running; 2 wrong command line;
3 the model file is missing or not a valid graphc model file; 4 the input arrays are
missing, unreadable (pickled object arrays are refused) or do not fit the signature.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np

import graphc as gc
from graphc import export, pytree
from graphc.backend import cache
from graphc.errors import ExportError, ShapeError
from graphc.trace import DYNAMIC

# ----------------------------------------------------------------------------------------
# The demo's functions: plain NumPy code, traced unchanged.


def f(x, w, b):
    """The core issue's example: a small dense layer with a gate, summed over features."""
    return np.sum(np.tanh(x @ w + b) * (1 / (1 + np.exp(-x @ w))), axis=1)


def rosenbrock(x):
    """The Rosenbrock function summed over a batch of points: ``x`` has shape (2, n)."""
    return np.sum(100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2)


def rosenbrock_value_and_grad_numpy(x):
    """Hand-derived value and gradient: the NumPy baseline and reference."""
    a = x[1] - x[0] ** 2
    value = np.sum(100 * a ** 2 + (1 - x[0]) ** 2)
    grad = np.stack([-400 * a * x[0] - 2 * (1 - x[0]), 200 * a])
    return value, grad


def softmax_cross_entropy(logits, onehot):
    """Mean cross-entropy of a softmax over the last axis, numerically stable."""
    z = logits - np.max(logits, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(onehot * (z - lse), axis=1))


def softmax_cross_entropy_value_and_grad_numpy(logits, onehot):
    """Hand-derived value and gradient with respect to the logits."""
    z = logits - np.max(logits, axis=1, keepdims=True)
    e = np.exp(z)
    s = np.sum(e, axis=1, keepdims=True)
    value = -np.mean(np.sum(onehot * (z - np.log(s)), axis=1))
    grad = (e / s - onehot) / logits.shape[0]
    return value, grad


@dataclass
class DemoCase:
    """One demo function: how to compile it, its inputs and its NumPy counterpart."""

    title: str
    make: Callable          # () -> a fresh graphc.TracedFunction
    args: tuple
    numpy_fn: Callable      # same results in plain NumPy
    rtol: float             # tolerance relative to the largest reference magnitude


def demo_cases(seed: int = 0) -> list[DemoCase]:
    """The functions ``graphc demo`` runs (also used by benchmarks/overhead.py)."""

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((512, 64)).astype(np.float32)
    w = (rng.standard_normal((64, 32)) / 8).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    logits = rng.standard_normal((256, 10)).astype(np.float32)
    onehot = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
    points = rng.uniform(-2, 2, (2, 4096))
    return [
        DemoCase("f(x, w, b) = sum(tanh(x @ w + b) * (1 / (1 + exp(-x @ w))), axis=1)   [float32]",
                 lambda: gc.trace(f, compile="eager"), (x, w, b), f, 1e-5),
        DemoCase("Rosenbrock value and gradient over 4096 points: gc.value_and_grad(rosenbrock)(x)"
                 "   [float64, x of shape 2 x 4096]",
                 lambda: gc.value_and_grad(rosenbrock, compile="eager"), (points,),
                 rosenbrock_value_and_grad_numpy, 1e-12),
        DemoCase("softmax cross-entropy and its gradient: gc.value_and_grad(xent)(logits, onehot)"
                 "   [float32, 256 x 10]",
                 lambda: gc.value_and_grad(softmax_cross_entropy, compile="eager"), (logits, onehot),
                 softmax_cross_entropy_value_and_grad_numpy, 1e-5),
    ]


# ----------------------------------------------------------------------------------------
# Checking and timing helpers


def _leaves(out):
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in _leaves(item)]
    return [np.asarray(out)]


def max_error(got, want) -> tuple[float, float]:
    """(max abs error, largest reference magnitude) over all outputs; inf on a structure mismatch."""
    got, want = _leaves(got), _leaves(want)
    if len(got) != len(want):
        return float("inf"), 1.0
    err, scale = 0.0, 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape:
            return float("inf"), 1.0
        w64 = w.astype(np.float64)
        if w64.size:
            err = max(err, float(np.max(np.abs(g.astype(np.float64) - w64))))
            scale = max(scale, float(np.max(np.abs(w64))))
    return err, scale


def median_call_time(fn, args, budget: float = 0.2, samples: int = 7) -> float:
    """Median seconds per call over ``samples`` batches, after a warm-up call."""
    fn(*args)
    start = time.perf_counter()
    fn(*args)
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(budget / samples / once))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(number):
            fn(*args)
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# ----------------------------------------------------------------------------------------
# Commands


def versions() -> str:
    return (f"graphc {gc.__version__} (numba {numba.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()})")


def cmd_demo(args) -> int:

    print(versions())
    print(f"cache: {cache.cache_dir()}")
    failures = 0
    for k, case in enumerate(demo_cases(), start=1):
        print(f"\n[{k}] {case.title}")
        fn = case.make()
        start = time.perf_counter()
        got = fn(*case.args)
        first = time.perf_counter() - start
        compiled = fn._last.compiled
        origin = ("machine code loaded from the disk cache" if compiled.cache_hits
                  else "compiled now")
        if not args.quiet:
            print("  IR after optimization (f.graph):")
            print(_indent(str(fn.graph)))
            if args.source:
                print("  generated Numba source (f.source):")
                print(_indent(fn.source))
        want = case.numpy_fn(*case.args)
        err, scale = max_error(got, want)
        tol = case.rtol * max(scale, 1.0)
        ok = err <= tol
        failures += not ok
        print(f"  check vs NumPy: max abs error {err:.3g} (tolerance {tol:.3g})  "
              f"{'OK' if ok else 'MISMATCH'}")
        print(f"  first call (trace + passes + compile or cache load): {_fmt_time(first)}  ({origin})")
        if not args.no_timing:
            t_gc = median_call_time(fn, case.args)
            t_np = median_call_time(case.numpy_fn, case.args)
            print(f"  warm call, median: graphc {_fmt_time(t_gc)}   NumPy {_fmt_time(t_np)}   "
                  f"(speed-up over NumPy {t_np / t_gc:.2g}x)")
    print()
    if failures:
        print(f"demo FAILED: {failures} function(s) disagree with NumPy")
        return 1
    print("demo OK: every function matches NumPy")
    return 0


def cmd_cache_dir(args) -> int:

    print(cache.cache_dir())
    return 0


def _fmt_bytes(n: int) -> str:
    for unit in ("bytes", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def cmd_clear_cache(args) -> int:

    root = cache.cache_dir()
    report = cache.clear(root)
    if report.removed:
        print(f"removed {len(report.removed)} file(s) graphc wrote ({report.graphs} compiled graph(s), "
              f"{_fmt_bytes(report.bytes)}) from {root}")
        if args.verbose:
            print(_indent("\n".join(report.removed), "  "))
    else:
        print(f"nothing to remove: no files graphc wrote in {root}")
    if report.kept:
        print(f"kept {len(report.kept)} file(s) in graphc's folder that graphc did not write:")
        print(_indent("\n".join(report.kept), "  "))
    return 0


# ----------------------------------------------------------------------------------------
# Model files: show, dot, run, bench

EXIT_RUN_FAILED, EXIT_USAGE, EXIT_BAD_MODEL, EXIT_BAD_INPUT = 1, 2, 3, 4
EXIT_CODES = ("exit codes: 0 success; 1 the model raised while running; 2 wrong command line; 3 the model "
              "file is missing or not a valid graphc model file; 4 input arrays missing, unreadable or not "
              "fitting the signature")


class CommandError(Exception):
    """A failure the command reports in one line, with its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _load(path, entry=None):
    try:
        return export.load(path, entry=entry)
    except ExportError as exc:
        raise CommandError(str(exc), EXIT_BAD_MODEL) from None


def cmd_show(args) -> int:
    f = _load(args.file, args.entry)
    print(f"{args.file}: {export.FORMAT} {f.format_version} written by graphc {f.graphc_version}; "
          f"{f.kind.replace('_', ' ')} {f.name}, device {f.device}, passes {f.passes}")
    if len(f.entries) > 1:
        print(f"entries: {', '.join(f.entries)} (this is {f.entry!r}; pick one with --entry)")
    print(f"signature: {f.signature()}")
    for symbol, spec in f.symbols.items():
        print(f"symbolic dimension {symbol}: any size >= {spec['min']} (saved with {symbol}={spec['example']})")
    print("graph (as saved: traced, before the pass pipeline" + (", for every size of "
          + ", ".join(f.symbols) if f.symbols else "") + "):")
    print(_indent(str(f.graph), "  "))
    rows = [(key, kind, "x".join(map(str, a.shape)) or "scalar", a.dtype.name, a.nbytes)
            for key, kind, a in f.parameters()]
    print(f"state: {len(rows)} array(s), {_fmt_bytes(sum(r[4] for r in rows))}")
    if rows:
        widths = [max(len(str(r[i])) for r in rows + [("name", "kind", "shape", "dtype", "bytes")])
                  for i in range(5)]
        header = ("name", "kind", "shape", "dtype", "bytes")
        for row in [header] + rows:
            print("  " + "  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))))
    return 0


def graph_dot(graph) -> str:
    """Graphviz DOT of ``graph``: inputs and outputs as ellipses, ops as boxes, each fused node's
    body as a cluster of its own ops."""
    lines = [f"digraph {_dot_quote(graph.name)} {{", "  node [shape=box, fontname=monospace];"]
    names = graph.value_names()
    source, counter = {}, [0]

    def new_id():
        counter[0] += 1
        return f"n{counter[0]}"

    for v in graph.inputs:
        k = graph.inputs.index(v)
        label = f"{names[v]}:{v.type}" + (f" {graph.input_names[k]}" if graph.input_names[k] else "")
        source[v] = new_id()
        lines.append(f"  {source[v]} [label={_dot_quote(label)}, shape=ellipse];")

    def add_nodes(nodes, indent, source):
        for node in nodes:
            if node.regions and node.op == "fused":
                (region,) = node.regions[:1]
                inner = dict(zip(region.inputs, (source[v] for v in node.inputs)))
                lines.append(f"{indent}subgraph cluster_{new_id()} {{")
                lines.append(f"{indent}  label={_dot_quote('fused' + (' at ' + node.loc if node.loc else ''))};"
                             f" style=rounded; color=blue;")
                add_nodes(region.nodes, indent + "  ", inner)
                lines.append(f"{indent}}}")
                for out, v in zip(node.outputs, region.outputs):
                    source[out] = inner[v]
                continue
            me = new_id()
            types = ", ".join(str(v.type) for v in node.outputs)
            lines.append(f"{indent}{me} [label={_dot_quote(f'{node.op} -> {types}')}];")
            for v in node.inputs:
                lines.append(f"{indent}{source[v]} -> {me};")
            for v in node.outputs:
                source[v] = me

    add_nodes(graph.nodes, "  ", source)
    for j, v in enumerate(graph.outputs):
        out = new_id()
        lines.append(f"  {out} [label={_dot_quote(f'output {j}: {v.type}')}, shape=ellipse];")
        lines.append(f"  {source[v]} -> {out};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cmd_dot(args) -> int:
    f = _load(args.file, args.entry)
    sizes = {s: args.batch for s in f.symbols} if args.batch is not None else {}
    try:
        graph = f.compiled_graph(**sizes)  # as compiled: fused groups are clusters
    except ShapeError as exc:
        raise CommandError(str(exc), EXIT_BAD_INPUT) from None
    text = graph_dot(graph)
    if args.output:
        try:
            with open(args.output, "w") as out:
                out.write(text)
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_USAGE) from None
        print(f"wrote {args.output} ({len(graph.nodes)} nodes; render with: dot -Tsvg {args.output} -o g.svg)")
    else:
        sys.stdout.write(text)
    return 0


def _read_arrays(paths) -> list:
    """The arrays of .npy files and .npz archives (in the archive's order), never unpickling."""
    arrays = []
    for path in paths:
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise CommandError(f"input file {path} does not exist", EXIT_BAD_INPUT) from None
        except (OSError, ValueError, EOFError) as exc:
            raise CommandError(f"cannot read {path} as a .npy or .npz file ({exc})", EXIT_BAD_INPUT) from None
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                try:
                    arrays += [data[k] for k in data.files]
                except ValueError as exc:
                    raise CommandError(f"cannot read {path}: {exc}", EXIT_BAD_INPUT) from None
        else:
            arrays.append(data)
    return arrays


def _arguments(f, arrays):
    """The call's (args, kwargs) from arrays given in the order of the saved signature."""
    specs = [leaf for leaf in f._leaves if leaf["kind"] != "static"]
    if len(arrays) != len(specs):
        raise CommandError(f"{f.name} takes {len(specs)} array(s) {f.signature()}, got {len(arrays)}",
                           EXIT_BAD_INPUT)
    it, leaves = iter(arrays), []
    for leaf in f._leaves:
        if leaf["kind"] == "static":
            leaves.append(leaf["value"])
        elif leaf["kind"] == "scalar":
            a = next(it)
            leaves.append(export._PYTHON_SCALARS[leaf["python"]](a) if np.ndim(a) == 0 else a)
        else:
            leaves.append(next(it))
    return pytree.unflatten(f._in_tree, leaves)


def _call(f, args, kwargs):
    try:
        return f(*args, **kwargs)
    except (ShapeError, TypeError) as exc:
        raise CommandError(str(exc), EXIT_BAD_INPUT) from None
    except Exception as exc:  # the model itself raised (a label out of range...)
        raise CommandError(f"{f.name} raised {type(exc).__name__}: {exc}", EXIT_RUN_FAILED) from None


def _named_outputs(result) -> list:
    leaves, _ = pytree.flatten(result)
    paths = pytree.leaf_paths(result, "out")
    return [(p, np.asarray(v)) for p, v in zip(paths, leaves) if v is not None]


def cmd_run(args) -> int:
    f = _load(args.file, args.entry)
    call_args, call_kwargs = _arguments(f, _read_arrays(args.inputs))
    outputs = _named_outputs(_call(f, call_args, call_kwargs))
    if args.output is None:
        for path, a in outputs:
            print(f"{path}: {a.dtype}{list(a.shape)}")
            print(_indent(np.array2string(a, threshold=200), "  "))
        return 0
    try:
        if args.output.endswith(".npz"):
            np.savez(args.output, **{p: a for p, a in outputs})
        elif len(outputs) == 1:
            np.save(args.output, outputs[0][1])
        else:
            raise CommandError(f"{f.name} returns {len(outputs)} arrays: write them to a .npz file",
                               EXIT_USAGE)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}", EXIT_USAGE) from None
    print(f"wrote {len(outputs)} array(s) to {args.output}")
    return 0


def random_inputs(f, batch=None, seed=0):
    """Random arguments of ``f``'s saved signature: normal floats, integers in [0, 2) (class
    labels in range where the model checks them), random booleans. ``batch`` sets symbolic
    leading dimensions (default: the size the file was saved with); a fixed one must equal it."""
    if batch is not None and batch < 0:
        raise CommandError(f"--batch must be at least 0, got {batch}", EXIT_USAGE)
    rng = np.random.default_rng(seed)
    labels = {c["input"]: c["classes"] for c in f._entry_json.get("input_checks", [])
              if c.get("kind") == "class_labels"}
    arrays, k = [], 0
    for leaf in f._leaves:
        if leaf["kind"] == "static":
            continue
        shape = []
        for axis, d in enumerate(leaf["shape"]):
            if type(d) is str:
                d = f.symbols[d]["example"] if batch is None else batch
            elif axis == 0 and batch is not None and d != batch and not f.symbols:
                # (a file with symbols keeps its fixed arguments, a weight passed beside the batch)
                raise CommandError(f"argument {leaf.get('path')!r} was saved with a fixed leading dimension {d} "
                                   f"(not symbolic); use --batch {d} or leave --batch out", EXIT_USAGE)
            shape.append(d)
        try:
            a = _random_array(rng, shape, np.dtype(leaf["dtype"]), labels.get(k, 2))
        except (MemoryError, ValueError) as exc:
            raise CommandError(f"cannot make random inputs of shape {tuple(shape)} for argument "
                               f"{leaf.get('path')!r}: {exc}", EXIT_USAGE) from None
        arrays.append(a[()] if leaf["kind"] == "scalar" else a)
        k += 1
    return arrays


def _random_array(rng, shape, dtype, classes):
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, classes, shape).astype(dtype)


def cmd_bench(args) -> int:
    f = _load(args.file, args.entry)
    call_args, call_kwargs = _arguments(f, random_inputs(f, args.batch))
    start = time.perf_counter()
    _call(f, call_args, call_kwargs)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        f(*call_args, **call_kwargs)
        times.append(time.perf_counter() - start)
    print(f"{f.name}{f.signature()}")
    print(f"first call (compile or cache load + run): {_fmt_time(first)}")
    print(f"median per call over {args.repeat} calls: {_fmt_time(float(np.median(times)))} "
          f"(min {_fmt_time(min(times))})")
    return 0


def _add_model_commands(sub):
    def command(name, help, func):
        p = sub.add_parser(name, help=help, description=help, epilog=EXIT_CODES)
        p.add_argument("file", help="a model file written by gc.save")
        p.add_argument("--entry", default=None, help="which graph of the file (default: its only one, or main)")
        p.set_defaults(func=func)
        return p
    command("show", "print a model file's signature, IR and parameter table (name, kind, shape, dtype, "
            "bytes)", cmd_show)
    dot = command("dot", "write the graph as Graphviz DOT (fused groups as clusters)", cmd_dot)
    dot.add_argument("-o", "--output", help="the .dot file to write (default: standard output)")
    dot.add_argument("--batch", type=int, default=None, help="size of the symbolic (batch) dimension the graph "
                     "is compiled for (default: the size it was saved with)")
    run = command("run", "call the model on arrays from .npy/.npz files (in the order of its arguments) "
                  "and print or write its results", cmd_run)
    run.add_argument("inputs", nargs="*", help=".npy files (one array each) and .npz archives (their arrays "
                     "in order); pickled object arrays are refused")
    run.add_argument("-o", "--output", help="write the results to a .npy (one result) or .npz file")
    bench = command("bench", "time the model on random inputs of its saved signature (median per call)",
                    cmd_bench)
    bench.add_argument("--batch", type=int, default=None, help="size of the symbolic (batch) dimensions "
                       "(default: the size the file was saved with)")
    bench.add_argument("--repeat", type=int, default=50, help="timed calls after the first (default 50)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphc",
        description="graphc: trace NumPy-style Python into a graph, differentiate it, "
                    "compile it with Numba.")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="trace, check and time a few example functions")
    demo.add_argument("--source", action="store_true", help="also print the generated Numba source")
    demo.add_argument("--quiet", "-q", action="store_true", help="do not print the IR")
    demo.add_argument("--no-timing", action="store_true", help="skip the warm-call timings")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("cache-dir", help="print the cache directory (GRAPHC_CACHE_DIR)").set_defaults(
        func=cmd_cache_dir)
    clear = sub.add_parser("clear-cache", help="delete the files graphc wrote to the cache directory "
                                               "(nothing else there)")
    clear.add_argument("--verbose", "-v", action="store_true", help="list every file removed")
    clear.set_defaults(func=cmd_clear_cache)
    _add_model_commands(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(versions())
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CommandError as exc:
        print(f"graphc {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # e.g. `graphc demo | head`
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
