"""Issue 15: compile latency. Time to the first result, each case in a fresh process.

Cases (each graphc one in a process of its own, with an empty cache directory unless warm):

* ``chain N``: ``gc.value_and_grad(chain, argnums=1)(h, ws)`` with N layers
  ``h = tanh(h @ w) + 0.5 * h`` (h and each w 8x8 float64), N = 5, 10, 20, 40, 80: cold time
  to the first result, and that time per layer and per node of the compiled graph;
  ``jax.jit(jax.value_and_grad(...))`` on the same chain, in a process of its own;
* ``mlp``: the 784-256-128-10 training step of benchmarks/train_step.py at batch 64: cold, then
  warm (a second process with the same cache directory);
* ``batch``: that step at batch 64, then at batch 48 in the same process (a DataLoader's last
  batch): the second call's time, with the step traced plainly and with ``dynamic=``.

graphc's processes run with ``GRAPHC_COMPILE=eager`` (the compiled code in place before the
first result returns: what these figures are about). ``--modes eager,background`` adds a column
per mode once graphc has the ``background`` mode (issue 15 item 1: the first result from the
interpreter while Numba compiles in another process). Each graphc case also reports where
Numba spent its time (``numba.core.event``: the exclusive time of each compiler pass, and the
time in LLVM, optimization and machine code, out of it).

    python benchmarks/compile_latency.py                       # everything, a markdown table
    python benchmarks/compile_latency.py --sizes 5,40 --no-jax --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = (5, 10, 20, 40, 80)
BATCH, NEW_BATCH = 64, 48


# -- the workloads (run in the child processes) --------------------------------------------------
def chain(h, ws):
    import numpy as np
    for w in ws:
        h = np.tanh(h @ w) + 0.5 * h
    return np.sum(h)


def chain_inputs(n):
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 8)), [rng.normal(size=(8, 8)) * 0.3 for _ in range(n)]


class NumbaTimes:
    """Where Numba spends a compile: exclusive seconds per compiler pass, and seconds holding
    the LLVM lock (LLVM's optimization and machine code; inside the ``native_lowering`` pass)."""

    def __enter__(self):
        from numba.core import event
        self._passes = event.install_recorder("numba:run_pass")
        self._llvm = event.install_recorder("numba:llvm_lock")
        self.passes_rec, self.llvm_rec = self._passes.__enter__(), self._llvm.__enter__()
        return self

    def __exit__(self, *exc):
        self._llvm.__exit__(*exc)
        self._passes.__exit__(*exc)

    def summary(self) -> dict:
        exclusive, stack = {}, []  # passes nest (a callee compiled while its caller is typed)
        for t, ev in self.passes_rec.buffer:
            name = ev.data["name"].split(" [")[0]
            if ev.is_start:
                stack.append([name, t, 0.0])  # name, start, time in nested passes
            else:
                name, start, nested = stack.pop()
                exclusive[name] = exclusive.get(name, 0.0) + (t - start) - nested
                if stack:
                    stack[-1][2] += t - start
        llvm, opened = 0.0, None
        for t, ev in self.llvm_rec.buffer:
            if ev.is_start:
                opened = t
            elif opened is not None:
                llvm += t - opened
                opened = None
        top = dict(sorted(exclusive.items(), key=lambda kv: -kv[1])[:5])
        return {"passes_s": {k: round(v, 3) for k, v in top.items()},
                "numba_total_s": round(sum(exclusive.values()), 3), "llvm_s": round(llvm, 3)}


def _background() -> bool:
    return os.environ.get("GRAPHC_COMPILE") == "background"


def _ready(f, out: dict, t: float):
    """compile="background": when the compiled code is in place (seconds since ``t``)."""
    if _background():
        out["ready_s"] = time.perf_counter() - t if f.wait_compiled() else None


def child_chain(n: int, reference: bool = False) -> dict:
    """``reference``: the same function traced and run by the NumPy interpreter (device="numpy",
    no passes), and the plain NumPy forward pass: what a first result costs without a compiler."""
    t0 = time.perf_counter()
    import graphc as gc
    h, ws = chain_inputs(n)
    options = {"device": "numpy", "passes": "O0"} if reference else {}
    f = gc.value_and_grad(chain, argnums=1, **options)
    t, c = time.perf_counter(), time.process_time()
    with NumbaTimes() as times:
        f(h, ws)
    first = time.perf_counter() - t
    if reference:
        t = time.perf_counter()
        chain(h, ws)
        return {"first_s": first, "cpu_s": time.process_time() - c, "numpy_forward_s": time.perf_counter() - t}
    ready = {}
    _ready(f, ready, t)
    out = {"first_s": first, "cpu_s": time.process_time() - c, "import_s": t - t0,
           "layers": n, "nodes": len(f.graph.nodes), "per_layer_ms": 1000 * first / n}
    out["per_node_ms"] = 1000 * first / out["nodes"]
    out.update(ready)
    out.update(times.summary())
    compiled = getattr(getattr(f, "_last", None), "compiled", None)
    if compiled is not None and hasattr(compiled, "_emitter"):
        out["outlined"] = [(o["name"], o["calls"]) for o in getattr(compiled._emitter, "outlined", [])]
    return out


def child_jax(n: int) -> dict:
    t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    h, ws = chain_inputs(n)

    def jchain(h, ws):
        for w in ws:
            h = jnp.tanh(h @ w) + 0.5 * h
        return jnp.sum(h)

    f = jax.jit(jax.value_and_grad(jchain, argnums=1))
    h, ws = jnp.asarray(h), [jnp.asarray(w) for w in ws]
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(f(h, ws))
    first = time.perf_counter() - t
    return {"first_s": first, "cpu_s": time.process_time() - c, "import_s": t - t0, "layers": n,
            "per_layer_ms": 1000 * first / n}


def _mlp_step(batch: int, dynamic: bool, **options):
    """The training step of benchmarks/train_step.py, optionally traced with ``dynamic=``."""
    sys.path.insert(0, HERE)
    import train_step as ts
    step, x, y = ts._graphc_step(batch, dynamic={"x": 0, "t": 0} if dynamic else None, **options)
    return step, x, y, ts


def child_mlp(dynamic: bool, reference: bool = False) -> dict:
    t0 = time.perf_counter()
    import graphc  # noqa: F401
    t, c = time.perf_counter(), time.process_time()
    step, x, y, ts = _mlp_step(BATCH, dynamic, **({"device": "numpy", "passes": "O0"} if reference else {}))
    with NumbaTimes() as times:
        step(x, y)
    out = {"first_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "import_s": t - t0}
    if reference:
        return out
    out.update(times.summary())
    # (background: a warm run in the next process needs this one's compile finished)
    _ready(step, out, t)
    x2, y2, _ = ts.make_data(NEW_BATCH, seed=1)
    t = time.perf_counter()
    step(x2, y2)
    out["new_batch_s"] = time.perf_counter() - t
    out["signatures"] = step.signatures
    return out


CHILDREN = {"chain": lambda a: child_chain(int(a)), "jax": lambda a: child_jax(int(a)),
            "mlp": lambda a: child_mlp(False), "mlp_dynamic": lambda a: child_mlp(True),
            "chain_ref": lambda a: child_chain(int(a), reference=True),
            "mlp_ref": lambda a: child_mlp(False, reference=True)}


# -- the parent --------------------------------------------------------------------------------
def run_child(kind: str, arg, env: dict, timeout: int = 900) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, str(arg)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT, check=False)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
    result = json.loads(lines[-1])
    result["load_avg"] = os.getloadavg()[0]
    return result


def graphc_env(cache: str, mode: str) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache, GRAPHC_COMPILE=mode)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cold(kind: str, arg, mode: str) -> dict:
    cache = tempfile.mkdtemp(prefix="graphc-latency-")
    try:
        return run_child(kind, arg, graphc_env(cache, mode))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def versions() -> str:
    probe = "import numpy, numba, llvmlite; print(numpy.__version__, numba.__version__, llvmlite.__version__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False).stdout.split()
    try:
        jax = subprocess.run([sys.executable, "-c", "import jax; print(jax.__version__)"],
                             capture_output=True, text=True, check=False).stdout.strip() or "not installed"
    except OSError:
        jax = "not installed"
    return (f"Python {platform.python_version()}, NumPy {out[0]}, Numba {out[1]}, llvmlite {out[2]}, "
            f"JAX {jax}; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")


def fmt(r: dict, key: str = "first_s") -> str:
    if "error" in r:
        return f"error: {r['error'][:60]}"
    return f"{r[key]:.2f} s" + (f" ({r['cpu_s']:.2f})" if key == "first_s" and "cpu_s" in r else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--modes", default="eager", help="GRAPHC_COMPILE modes, one column each")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cold case (the median is shown)")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--no-mlp", action="store_true")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](args.child[1])))
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = args.modes.split(",")
    results = {"machine": versions(), "load_start": os.getloadavg(), "chain": {}, "jax": {}, "mlp": {}}

    def median_of(kind, arg, mode):
        runs = [cold(kind, arg, mode) for _ in range(args.repeat)]
        ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["first_s"])
        return ok[len(ok) // 2] if ok else runs[0]

    for n in sizes:
        results["chain"][n] = {mode: median_of("chain", n, mode) for mode in modes}
        if "background" in modes:
            results["chain"][n]["reference"] = median_of("chain_ref", n, "eager")
        if not args.no_jax:
            results["jax"][n] = run_child("jax", n, dict(os.environ, JAX_PLATFORMS="cpu"))
    if not args.no_mlp:
        for mode in modes:
            cache = tempfile.mkdtemp(prefix="graphc-latency-")
            try:
                env = graphc_env(cache, mode)
                results["mlp"][mode] = {"cold": run_child("mlp", 0, env), "warm": run_child("mlp", 0, env)}
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            results["mlp"][mode]["dynamic"] = cold("mlp_dynamic", 0, mode)
        if "background" in modes:
            results["mlp"]["reference"] = median_of("mlp_ref", 0, "eager")
    results["load_end"] = os.getloadavg()

    print(f"# compile latency ({results['machine']})")
    print(f"load average at start {results['load_start'][0]:.2f}, at end {results['load_end'][0]:.2f}\n")
    # CPU seconds beside the wall time: Numba compiles on one thread, so on a shared machine
    # the process's CPU time is the steadier figure (the wall time includes waiting for a core)
    head = ["N layers", "nodes"] + [f"graphc {m} (CPU)" for m in modes] + ["per layer", "per node",
                                                                          "Numba typing", "LLVM", "jax.jit (CPU)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n in sizes:
        rs = results["chain"][n]
        r0 = rs[modes[0]]
        row = [str(n), str(r0.get("nodes", "?"))] + [fmt(rs[m]) for m in modes]
        if "error" not in r0:
            typing = r0["passes_s"].get("nopython_type_inference", 0.0)
            row += [f"{r0['per_layer_ms']:.0f} ms", f"{r0['per_node_ms']:.1f} ms", f"{typing:.2f} s", f"{r0['llvm_s']:.2f} s"]
        else:
            row += ["", "", "", ""]
        row.append(fmt(results["jax"][n]) if n in results["jax"] else "")
        print("| " + " | ".join(row) + " |")
    if "background" in modes:
        _print_background(results, sizes)
    for mode, r in results["mlp"].items():
        if mode == "reference":
            continue
        print(f"\nMLP 784-256-128-10 training step, batch {BATCH}, GRAPHC_COMPILE={mode}: cold {fmt(r['cold'])}, "
              f"warm {fmt(r['warm'])}; new batch {NEW_BATCH} in the same process: "
              f"{fmt(r['cold'], 'new_batch_s')} plain, {fmt(r['dynamic'], 'new_batch_s')} with dynamic= "
              f"(its cold first call {fmt(r['dynamic'])})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


def _print_background(results: dict, sizes: list):
    """compile="background": the first result against a first result without a compiler (the
    trace plus the NumPy interpreter), and when the compiled code is in place."""
    print("\ncompile=\"background\": time to the first result (wall) against the same trace run by "
          "the NumPy interpreter (device=\"numpy\", no passes), and when the compiled code is in place")
    print("| case | background first result | trace + interpreter | ratio | NumPy forward alone | "
          "compiled code in place after |")
    print("|---|---|---|---|---|---|")
    rows = [(f"chain N={n}", results["chain"][n]) for n in sizes]
    if "reference" in results["mlp"]:
        rows.append(("MLP step, batch 64", {"background": results["mlp"]["background"]["cold"],
                                            "reference": results["mlp"]["reference"]}))
    for label, rs in rows:
        b, r = rs.get("background", {}), rs.get("reference", {})
        if "first_s" not in b or "first_s" not in r:
            continue
        forward = f"{1e3 * r['numpy_forward_s']:.2f} ms" if "numpy_forward_s" in r else ""
        ready = f"{b['ready_s']:.2f} s" if b.get("ready_s") else "(failed)"
        print(f"| {label} | {1e3 * b['first_s']:.1f} ms | {1e3 * r['first_s']:.1f} ms | "
              f"{b['first_s'] / r['first_s']:.2f}x | {forward} | {ready} |")


if __name__ == "__main__":
    main()
