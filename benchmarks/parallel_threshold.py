"""Where do threads start paying off? Serial vs prange fused kernels, and what prange costs to compile.

``PARALLEL_MIN`` (graphc/backend/codegen.py) decides from how many elements a fused
kernel runs its outer loop with ``prange``. This script measures both sides of
that choice:

1. **Run time** (through ``harness.py``: one process per peer, round-robin samples,
   medians): the same fused group compiled as a serial kernel (``graphc(serial)``)
   and as a parallel one (``graphc(prange)``, ``--threads`` threads, default 2), plus
   NumPy, over sizes 2**10 .. 2**23, for

   * ``chain``: ``tanh(x*w + b) * x`` (float32 and float64): a typical fused
     elementwise chain of a forward/backward pass;
   * ``sum``: ``sum(x * w)`` (float32): a fused full reduction, the least work per
     element, so the last to gain from threads;
   * ``sum0``: ``sum(g * (h > 0), axis=0)`` over ``(n/512, 512)`` (float32): a bias
     gradient, whose parallel kernel splits the reduced axis into blocks (only from
     64 rows on; smaller cases are skipped).

   Both graphc peers are separate kernels (``INLINE_MAX = 0``), so they differ in
   ``prange`` only. The summary names, per workload, the *crossover*: the smallest
   size from which the prange kernel is faster at that size and every larger one.
2. **Compile time**: the extra Numba time of a parallel kernel, ``time.process_time``
   around the first call, in fresh processes with a fresh cache directory (so
   nothing comes from a cache): the first kernel of a process and a second one.
3. **Cold first call of a training step** (``train_step.py``'s 784-256-128-10 MLP,
   batch 64 and 512) with ``GRAPHC_PARALLEL_MIN`` at several thresholds: what a
   lower threshold costs where it matters.

    python benchmarks/parallel_threshold.py                  # everything (~15 min on 2 cores)
    python benchmarks/parallel_threshold.py --quick --no-machine --skip-compile
    python benchmarks/parallel_threshold.py --cases 'op=sum,' --skip-train
    python benchmarks/parallel_threshold.py --per-call      # 4. (below), appended to the results

4. With ``--per-call`` (run on its own, after the rest): serial and prange kernels of
   each case in one process, timed one call at a time, alternating; median and 10th
   percentile per call (see ``per_call``).

Results go to ``benchmarks/results/parallel_threshold.{md,json}``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import harness

NAME = "parallel_threshold"
TITLE = "serial vs prange fused kernels over sizes 2**10 .. 2**23"
BACKENDS = ("numpy", "graphc(serial)", "graphc(prange)")
SIZES = [1 << k for k in range(10, 24)]
CASES = ([{"op": "chain", "dtype": "float32", "n": n} for n in SIZES]
         + [{"op": "chain", "dtype": "float64", "n": n} for n in SIZES]
         + [{"op": "sum", "dtype": "float32", "n": n} for n in SIZES]
         + [{"op": "sum0", "dtype": "float32", "n": n} for n in SIZES if n >= 64 * 512])
THREADS = int(os.environ.get("GRAPHC_BENCH_THREADS", 2))
TRAIN_THRESHOLDS = (1 << 16, 1 << 17, 1 << 18, 1 << 19)


def _fn(op):
    if op == "chain":
        return lambda x, w, b: np.tanh(x * w + b) * x
    if op == "sum":
        return lambda x, w, b: np.sum(x * w)
    return lambda x, w, b: np.sum(x * (w > 0), axis=0)


def inputs(case):
    rng = np.random.default_rng(0)
    n, dtype = case["n"], np.dtype(case["dtype"])
    shape = (n // 512, 512) if case["op"] == "sum0" else (n,)
    x = rng.uniform(-2, 2, shape).astype(dtype)
    w = rng.uniform(-1, 1, shape).astype(dtype)
    return x, w, dtype.type(0.25)


def reference(case, x, w, b):
    return _fn(case["op"])(x, w, b)


def tolerance(case, backend):
    # float32 sums: NumPy's pairwise float32 sum vs graphc's float64 accumulation
    return 1e-4 if case["dtype"] == "float32" else 1e-9


def build(backend, case, x, w, b):
    fn = _fn(case["op"])
    if backend == "numpy":
        return fn, (x, w, b)
    import numba

    import graphc
    from graphc.backend import codegen

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    parallel = backend == "graphc(prange)"
    codegen.INLINE_MAX = 0  # both peers are kernels of their own: they differ in prange only
    codegen.PARALLEL_MIN = 0 if parallel else 1 << 62
    f = graphc.trace(fn)
    f.lower(x, w, b)
    if ("prange(" in f.source) != parallel:
        raise harness.Skip("graphc makes no parallel kernel for this shape")
    return f, (x, w, b)


def crossovers(results, stat="median_s") -> dict:
    """Per workload: sizes, serial/prange ratio per size, and the crossover size (or None).

    ``stat="median_s"`` compares medians (what a call costs on this machine under its load);
    ``"min_s"`` the fastest samples (an estimate for an idle machine: on a shared 2-core
    machine a parallel call waits whenever another process holds one of the cores).
    """
    out = {}
    for entry in results["cases"]:
        c = entry["case"]
        key = f"{c['op']} {c['dtype']}"
        s = entry["backends"].get("graphc(serial)", {}).get(stat)
        p = entry["backends"].get("graphc(prange)", {}).get(stat)
        if s and p:
            out.setdefault(key, []).append((c["n"], s / p))
    summary = {}
    for key, rows in out.items():
        rows.sort()
        cross = None
        for k in range(len(rows)):
            if all(ratio > 1.0 for _, ratio in rows[k:]):
                cross = rows[k][0]
                break
        summary[key] = {"rows": rows, "crossover": cross}
    return summary


def summarize(results):
    lines = []
    for stat, what in (("median_s", "medians"), ("min_s", "fastest samples (idle-machine estimate)")):
        lines += [f"Speed-up of the prange kernel over the serial one, from the {what} "
                  "(serial time / prange time; >1: threads pay):", ""]
        summary = crossovers(results, stat)
        sizes = sorted({n for s in summary.values() for n, _ in s["rows"]})
        lines.append("| workload | " + " | ".join(f"2^{n.bit_length() - 1}" for n in sizes) + " | crossover |")
        lines.append("|---" * (len(sizes) + 2) + "|")
        for key, s in summary.items():
            ratios = dict(s["rows"])
            cells = [f"{ratios[n]:.2f}" if n in ratios else "-" for n in sizes]
            cross = s["crossover"]
            lines.append(f"| {key} | " + " | ".join(cells)
                         + f" | {f'2^{cross.bit_length() - 1}' if cross else 'none'} |")
        lines.append("")
    return lines


# -- in one process, call by call -------------------------------------------------------
def per_call(cases, budget_s=0.6) -> list[str]:
    """Serial and prange kernels of each case built in this process, timed one call at a time,
    alternating. A parallel call on a shared 2-core machine stalls for a scheduler slice
    (milliseconds) whenever another process holds the second core, so the batch medians of
    the harness mix two populations; single calls separate them: the 10th percentile shows
    what threads give when both cores are free, the median what a call costs under the load
    there was."""
    load0 = [round(v, 2) for v in os.getloadavg()]
    rows = {}
    for case in cases:
        args = inputs(case)
        fns = {b: build(b, case, *args)[0] for b in ("graphc(serial)", "graphc(prange)")}
        for f in fns.values():  # warm up
            for _ in range(3):
                f(*args)
        t0 = time.perf_counter()
        fns["graphc(serial)"](*args)
        calls = int(min(2000, max(15, budget_s / 2 / max(time.perf_counter() - t0, 1e-7))))
        times = {b: [] for b in fns}
        for _ in range(calls):
            for b, f in fns.items():
                t = time.perf_counter()
                f(*args)
                times[b].append(time.perf_counter() - t)
        stats = {b: (float(np.median(t)), float(np.percentile(t, 10))) for b, t in times.items()}
        key = f"{case['op']} {case['dtype']}"
        rows.setdefault(key, []).append((case["n"], calls, stats))
    lines = ["", f"### One call at a time, serial and prange kernels in one process ({THREADS} threads)", "",
             "Per size: serial / prange time per call, median and 10th percentile "
             "(ratio > 1: prange is faster); calls per variant in brackets.", ""]
    for key, entries in rows.items():
        lines += [f"**{key}**", "", "| n | serial median | prange median | ratio | serial p10 | prange p10 | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for n, calls, st in entries:
            (sm, s10), (pm, p10) = st["graphc(serial)"], st["graphc(prange)"]
            lines.append(f"| 2^{n.bit_length() - 1} ({calls}) | {harness.fmt_time(sm)} | {harness.fmt_time(pm)} | "
                         f"{sm / pm:.2f} | {harness.fmt_time(s10)} | {harness.fmt_time(p10)} | {s10 / p10:.2f} |")
        for label, col in (("median", 0), ("p10", 1)):
            ratios = [(n, st["graphc(serial)"][col] / st["graphc(prange)"][col]) for n, _, st in entries]
            cross = next((n for k, (n, _) in enumerate(ratios) if all(r > 1 for _, r in ratios[k:])), None)
            lines.append(f"\ncrossover ({label}): {f'2^{cross.bit_length() - 1}' if cross else 'none'}")
        lines.append("")
    lines.append(f"Load average (1, 5, 15 min): {load0} before, {[round(v, 2) for v in os.getloadavg()]} after.")
    return lines


# -- compile cost ------------------------------------------------------------------------
def _compile_child(variant: str) -> dict:
    """In a fresh process: the first call's CPU and wall time of two fused kernels."""
    os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphc-pt-")
    import numba

    import graphc
    from graphc.backend import codegen

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    # Numba's and graphc's one-off start-up (first dispatch, first compile) is not the kernel's
    graphc.trace(lambda x: x + 1.0)(np.ones(3))
    codegen.INLINE_MAX = 0
    codegen.PARALLEL_MIN = 0 if variant == "prange" else 1 << 62
    out = {}
    for key, dtype in (("first", np.float32), ("second", np.float64)):
        x, w, b = inputs({"op": "chain", "dtype": np.dtype(dtype).name, "n": 1 << 16})
        f = graphc.trace(_fn("chain"))
        c0, w0 = time.process_time(), time.perf_counter()
        f(x, w, b)
        out[key] = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}
        assert ("prange(" in f.source) == (variant == "prange")
    return out


def _train_child(batch: int) -> dict:
    """In a fresh process (GRAPHC_PARALLEL_MIN set by the parent): the training step's cold first call."""
    os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphc-pt-")
    import numba

    import graphc  # noqa: F401
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_step import _graphc_step

    c0, w0 = time.process_time(), time.perf_counter()
    step, x, y = _graphc_step(batch)
    step(x, y)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    src = step._latest().compiled.source if hasattr(step, "_latest") else ""
    return {"cpu_s": cpu, "wall_s": wall, "parallel_kernels": src.count("parallel=True")}


def _child(args, env=None) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True,
                          text=True, timeout=900, env=env)
    if proc.returncode:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_costs(reps: int, train: bool) -> list[str]:
    """Markdown lines: the compile cost of prange, and the training step's cold first call."""
    load0 = [round(v, 2) for v in os.getloadavg()]
    runs = {"serial": [], "prange": []}
    for _ in range(reps):  # alternate, so drifts in machine load hit both alike
        for variant in runs:
            runs[variant].append(_child(["--compile-child", variant]))
    med = {v: {k: float(np.median([r[k]["cpu_s"] for r in rs])) for k in ("first", "second")}
           for v, rs in runs.items()}
    lines = ["", f"### Compile cost of a prange kernel (`tanh(x*w + b) * x`, n = 2^16; fresh process and cache "
             f"dir each, median of {reps}, CPU time of the first call)", "",
             "| kernel | serial | prange | extra for prange |", "|---|---|---|---|"]
    for k, label in (("first", "first in the process (float32)"), ("second", "second in the process (float64)")):
        s, p = med["serial"][k], med["prange"][k]
        lines.append(f"| {label} | {harness.fmt_time(s)} | {harness.fmt_time(p)} | {harness.fmt_time(p - s)} |")
    if train:
        lines += ["", f"### Cold first call of the 784-256-128-10 training step vs `GRAPHC_PARALLEL_MIN` "
                  f"(fresh process and cache dir each, median of {reps}; CPU time, wall time)", "",
                  "| batch | " + " | ".join(f"2^{t.bit_length() - 1}" for t in TRAIN_THRESHOLDS) + " |",
                  "|---" * (len(TRAIN_THRESHOLDS) + 1) + "|"]
        for batch in (64, 512):
            got = {t: [] for t in TRAIN_THRESHOLDS}
            for _ in range(reps):
                for t in TRAIN_THRESHOLDS:
                    env = dict(os.environ, GRAPHC_PARALLEL_MIN=str(t))
                    got[t].append(_child(["--train-child", str(batch)], env))
            cells = []
            for t in TRAIN_THRESHOLDS:
                cpu = float(np.median([r["cpu_s"] for r in got[t]]))
                wall = float(np.median([r["wall_s"] for r in got[t]]))
                cells.append(f"{harness.fmt_time(cpu)}, {harness.fmt_time(wall)} "
                             f"({got[t][0]['parallel_kernels']} parallel)")
            lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines += ["", f"Load average (1, 5, 15 min): {load0} before, "
              f"{[round(v, 2) for v in os.getloadavg()]} after the compile measurements."]
    return lines


def main(argv):
    if "--per-call" in argv:  # only the in-process, call-by-call timing; appended to the results
        argv = [a for a in argv if a != "--per-call"]
        args = harness._parse_args(argv, sys.modules[__name__])
        cases = [c for c in CASES if not args.cases or args.cases in harness.case_label(c)]
        lines = per_call(cases, 0.05 if args.quick else 0.6)
        print("\n".join(lines))
        if not args.quick:
            with open(os.path.join(args.out, NAME + ".md"), "a") as f:
                f.write("\n".join(lines) + "\n")
        return
    skip_compile = "--skip-compile" in argv
    skip_train = "--skip-train" in argv
    reps = 3
    if "--compile-reps" in argv:
        reps = int(argv[argv.index("--compile-reps") + 1])
        argv = argv[:argv.index("--compile-reps")] + argv[argv.index("--compile-reps") + 2:]
    argv = [a for a in argv if a not in ("--skip-compile", "--skip-train")]
    results = harness.main(__name__, argv)
    if skip_compile:
        return
    lines = compile_costs(reps, not skip_train)
    out_dir = harness._parse_args(argv, sys.modules[__name__]).out
    with open(os.path.join(out_dir, NAME + ".md"), "a") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, NAME + ".json")) as f:
        data = json.load(f)
    data["crossovers"] = {stat: {k: v["crossover"] for k, v in crossovers(results, stat).items()}
                          for stat in ("median_s", "min_s")}
    data["compile"] = lines
    with open(os.path.join(out_dir, NAME + ".json"), "w") as f:
        json.dump(data, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--compile-child":
        print(json.dumps(_compile_child(sys.argv[2])))
    elif len(sys.argv) >= 3 and sys.argv[1] == "--train-child":
        print(json.dumps(_train_child(int(sys.argv[2]))))
    else:
        main(sys.argv[1:])
