"""The ``graphc`` command (also ``python -m graphc``).

    graphc demo          trace a few functions, print their IR, check them against
                         NumPy and time them (exit status 1 on a mismatch)
    graphc cache-dir     print the directory compiled modules are cached in
    graphc clear-cache   delete the files graphc wrote there (nothing else)
    graphc --version     print graphc's, Numba's and NumPy's versions
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
from graphc.backend import cache

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
                 lambda: gc.trace(f), (x, w, b), f, 1e-5),
        DemoCase("Rosenbrock value and gradient over 4096 points: gc.value_and_grad(rosenbrock)(x)"
                 "   [float64, x of shape 2 x 4096]",
                 lambda: gc.value_and_grad(rosenbrock), (points,),
                 rosenbrock_value_and_grad_numpy, 1e-12),
        DemoCase("softmax cross-entropy and its gradient: gc.value_and_grad(xent)(logits, onehot)"
                 "   [float32, 256 x 10]",
                 lambda: gc.value_and_grad(softmax_cross_entropy), (logits, onehot),
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
    except BrokenPipeError:  # e.g. `graphc demo | head`
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
