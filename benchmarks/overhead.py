"""Per-call overhead of a tiny compiled function, and first-call latency (core issue).

Part 1, through the harness (each backend in a process of its own, round-robin):
Rosenbrock's value on a 2-vector (float64), per call, for graphc, plain NumPy, a
hand-written ``numba.njit``, ``jax.jit`` and PyTorch eager. The work is a few
flops, so this measures each system's dispatch cost.

Part 2: first-call latency of ``graphc demo``'s functions, each measurement in a
fresh process: *cold* with a new, empty GRAPHC_CACHE_DIR (trace + passes +
Numba compile) and *warm* with the cache the cold run left (trace + passes +
loading machine code from disk).

Targets (issue 2): graphc's per-call time within 3x of the hand-written njit and
at least 3x faster than jax.jit; warm first call under 0.5 s.

    python benchmarks/overhead.py            # both parts
    python benchmarks/overhead.py --quick    # smoke test
    python benchmarks/overhead.py --first-call-only --repeats 5
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import harness

NAME = "overhead"
TITLE = "Dispatch overhead: Rosenbrock value on a 2-vector (float64), per call"
BACKENDS = ("numpy", "graphc", "numba", "jax.jit", "torch")
# diagnostic: the generated Numba entry called directly, without graphc's Python-side
# wrapper (argument checks, signature lookup, output rebuilding); uses internals
EXTRA_BACKENDS = ("graphc (entry only)", "graphc (captured globals)")
CASES = [{"n": 2, "dtype": "float64"}]


def rosenbrock(x):
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


# read by rosenbrock_captured: an array passed by reference on every call, a guarded number and a
# guarded helper function (the cost of reading globals at call time, issue 12)
SHIFT = np.zeros(2)
SCALE = 1.0


def rosenbrock_captured(x):
    return SCALE * rosenbrock(x + SHIFT)


def inputs(case):
    return (np.array([-1.0, 2.0], dtype=case["dtype"]),)


def reference(case, x):
    return rosenbrock(x)


def build(backend, case, x):
    if backend == "numpy":
        return rosenbrock, (x,)
    if backend == "graphc":
        import graphc as gc
        return gc.trace(rosenbrock), (x,)
    if backend == "graphc (captured globals)":
        import graphc as gc
        return gc.trace(rosenbrock_captured), (x,)
    if backend == "graphc (entry only)":
        import graphc as gc
        f = gc.trace(rosenbrock, x)
        f(x)
        compiled = f._last.compiled
        # the entry's extra arguments: constants, then the memory plan's workspace and out-buffers
        extra = compiled.buffers.acquire() if compiled.buffers is not None else []
        return compiled.entry, (x, *compiled.const_args, *extra)
    if backend == "numba":
        import numba

        @numba.njit(cache=False)
        def rosenbrock_njit(x):  # the same expression, written by hand for Numba
            return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        return rosenbrock_njit, (x,)
    if backend == "jax.jit":
        import jax
        harness.jax_x64(case["dtype"])
        return jax.jit(rosenbrock), (harness.to_jax(x),)
    if backend == "torch":
        return rosenbrock, (harness.to_torch(x),)
    raise harness.Skip(f"no {backend} version")


def _median(results, backend):
    res = results["cases"][0]["backends"].get(backend, {})
    return res.get("median_s")


def summarize(results):
    t = {b: _median(results, b) for b in BACKENDS + EXTRA_BACKENDS}
    lines = ["Targets (issue 2):", ""]
    if t["graphc"] and t["numba"]:
        r = t["graphc"] / t["numba"]
        lines.append(f"- graphc per call / hand-written njit per call = {r:.2f} "
                     f"(target <= 3): {'met' if r <= 3 else 'MISSED'}")
    if t["graphc"] and t["jax.jit"]:
        r = t["jax.jit"] / t["graphc"]
        lines.append(f"- jax.jit per call / graphc per call = {r:.2f} "
                     f"(target >= 3): {'met' if r >= 3 else 'MISSED'}")
    if t["graphc"] and t["torch"]:
        lines.append(f"- PyTorch eager per call / graphc per call = {t['torch'] / t['graphc']:.2f}")
    captured = t["graphc (captured globals)"]
    if t["graphc"] and captured:
        lines.append(f"- reading a global array, a global number and a global function at call time costs "
                     f"{harness.fmt_time(captured - t['graphc'])} per call "
                     f"({captured / t['graphc']:.2f}x the plain function)")
    entry = t["graphc (entry only)"]
    if t["graphc"] and entry:
        lines.append(f"- of graphc's {harness.fmt_time(t['graphc'])} per call, the generated Numba entry "
                     f"takes {harness.fmt_time(entry)}; graphc's Python-side wrapper the other "
                     f"{harness.fmt_time(t['graphc'] - entry)}")
    return lines


# ---------------------------------------------------------------------------------------
# Part 2: first-call latency in fresh processes

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import graphc
from graphc.cli import demo_cases
t_import = time.perf_counter() - t0
out = {"import_s": t_import, "functions": []}
for case in demo_cases():
    start = time.perf_counter()
    fn = case.make()
    fn(*case.args)
    dt = time.perf_counter() - start
    c = fn._last.compiled
    out["functions"].append({"name": fn.name, "first_call_s": dt,
                             "cache_hits": c.cache_hits, "cache_misses": c.cache_misses})
out["total_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def _child(cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"first-call child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_call_latency(repeats=3) -> dict:
    """Median over ``repeats`` of cold (new cache dir) and warm (same dir again) runs."""
    runs = {"cold": [], "warm": []}
    for k in range(repeats):
        tmp = tempfile.mkdtemp(prefix="graphc-bench-cache-")
        try:
            print(f"first-call latency: repeat {k + 1}/{repeats} (cold, then warm) ...", file=sys.stderr)
            runs["cold"].append(_child(tmp))
            runs["warm"].append(_child(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for kind, rs in runs.items():
        names = [f["name"] for f in rs[0]["functions"]]
        summary[kind] = {
            "import_s": float(np.median([r["import_s"] for r in rs])),
            "total_s": float(np.median([r["total_s"] for r in rs])),
            "functions": {n: float(np.median([r["functions"][i]["first_call_s"] for r in rs]))
                          for i, n in enumerate(names)},
            "cache_hits": {n: [r["functions"][i]["cache_hits"] for r in rs] for i, n in enumerate(names)},
        }
    return {"repeats": repeats, "summary": summary, "runs": runs}


def first_call_markdown(fc) -> str:
    s = fc["summary"]
    names = list(s["cold"]["functions"])
    lines = [f"### First-call latency of `graphc demo`'s functions (fresh process each, "
             f"median of {fc['repeats']})", "",
             "| function | cold: new cache dir | warm: disk cache | warm < 0.5 s |", "|---|---|---|---|"]
    for n in names:
        w = s["warm"]["functions"][n]
        hits = s["warm"]["cache_hits"][n]
        note = "" if all(hits) else " (not loaded from cache!)"
        lines.append(f"| {n} | {harness.fmt_time(s['cold']['functions'][n])} | "
                     f"{harness.fmt_time(w)}{note} | {'met' if w < 0.5 else 'MISSED'} |")
    lines.append(f"| `import graphc` | {harness.fmt_time(s['cold']['import_s'])} | "
                 f"{harness.fmt_time(s['warm']['import_s'])} | |")
    lines.append(f"| whole process after start-up (import + 3 first calls) | "
                 f"{harness.fmt_time(s['cold']['total_s'])} | {harness.fmt_time(s['warm']['total_s'])} | |")
    lines += ["", "The first function's time includes Numba's one-off start-up in the process "
              "(its first dispatch), so later functions are cheaper."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    argv = sys.argv[1:]
    repeats = 3
    if "--repeats" in argv:
        i = argv.index("--repeats")
        repeats = int(argv[i + 1])
        del argv[i:i + 2]
    only_first = "--first-call-only" in argv
    if only_first:
        argv.remove("--first-call-only")
    skip_first = "--no-first-call" in argv
    if skip_first:
        argv.remove("--no-first-call")
    if not only_first:
        harness.main(__name__, argv)
    if not skip_first:
        fc = first_call_latency(1 if "--quick" in argv else repeats)
        text = first_call_markdown(fc)
        out = harness.RESULTS_DIR
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "first_call.json"), "w") as f:
            json.dump(fc, f, indent=1)
        with open(os.path.join(out, "first_call.md"), "w") as f:
            f.write(text)
        print(text)
