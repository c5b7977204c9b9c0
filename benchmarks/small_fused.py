"""Small and medium fused work (1e3 to 1e5 elements): graphc against NumPy, one thread.

Issue 13, item 8: reductions fused into the entry (groups under ``INLINE_MAX``) used to run
sequentially. Every case is checked against NumPy in float64 before it is timed; each timing is
the median of ``--rounds`` samples (each a loop of calls sized to ~5 ms) taken after warm-up,
graphc and NumPy alternated sample by sample so both see the same machine load; the fastest
sample of each is shown too (on a shared machine the steadier figure).

    OPENBLAS_NUM_THREADS=1 python benchmarks/small_fused.py [--rounds 15] [--filter softmax]

Prints a markdown table (and ``--json PATH`` writes the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
os.environ.setdefault("GRAPHC_COMPILE", "eager")  # time compiled code, not the interpreter tier

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphc as gc  # noqa: E402

TARGET = 1.5  # graphc should be at least this many times faster than NumPy on each case


def readme(x, w, b, v):
    return np.sum(np.tanh(x @ w + b) * v, axis=1)


def sum_tanh_rows(h):
    return np.sum(np.tanh(h), axis=1)


def sum_tanh_cols(h):
    return np.sum(np.tanh(h), axis=0)


def softmax_rows(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def axpy_sum(axis):
    def fn(x, y):
        return np.sum(x * y - 0.5 * x, axis=axis)
    fn.__name__ = f"sum_axpy_axis{axis}"
    return fn


def tanh_sum(axis):
    def fn(x, y):
        return np.sum(np.tanh(x) * y, axis=axis)
    fn.__name__ = f"sum_tanh_mul_axis{axis}"
    return fn


def cases():
    """(label, fn, argument shapes, dtype): the issue's cases, then a grid of sizes."""
    out = [("README sum(tanh(x@w+b)*v, 1)", readme, [(512, 64), (64, 64), (64,), (64,)], "float32"),
           ("sum(tanh(h), 1)", sum_tanh_rows, [(512, 32)], "float32"),
           ("sum(tanh(h), 1)", sum_tanh_rows, [(64, 1000)], "float32"),
           ("sum(tanh(h), 0)", sum_tanh_cols, [(64, 1000)], "float32"),
           ("softmax rows", softmax_rows, [(64, 1000)], "float32"),
           ("softmax rows", softmax_rows, [(64, 1000)], "float64")]
    for shape in ((10, 100), (100, 100), (100, 1000)):
        for dtype in ("float32", "float64"):
            for axis in (1, 0):
                for make in (axpy_sum, tanh_sum):
                    fn = make(axis)
                    out.append((f"{fn.__name__}", fn, [shape, shape], dtype))
    return out


def timed(fn, args, target_s=0.005):
    """Seconds per call of a loop sized to take about ``target_s``."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn(*args)
        dt = time.perf_counter() - t
        if dt >= target_s / 4 or n >= 1 << 20:
            return n
        n *= 4


def sample(fn, args, n):
    t = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - t) / n


def run(rounds: int, pattern: str | None):
    rng = np.random.default_rng(0)
    rows = []
    for label, fn, shapes, dtype in cases():
        if pattern and pattern not in label:
            continue
        args = [rng.standard_normal(s).astype(dtype) for s in shapes]
        f = gc.trace(fn)
        t0 = time.perf_counter()
        got = f(*args)
        first = time.perf_counter() - t0
        want = fn(*[a.astype(np.float64) for a in args])
        rtol = 1e-4 if dtype == "float32" else 1e-10
        scale = max(float(np.max(np.abs(want))), 1e-30)
        err = float(np.max(np.abs(np.asarray(got, np.float64) - want))) / scale
        if not err <= rtol:
            raise SystemExit(f"{label} {shapes[0]} {dtype}: graphc differs from NumPy (rel. error {err:.2e})")
        n_g, n_n = timed(f, args), timed(fn, args)
        for _ in range(2):  # warm-up
            sample(f, args, n_g), sample(fn, args, n_n)
        tg, tn = [], []
        for _ in range(rounds):  # alternated: both see the same load
            tg.append(sample(f, args, n_g))
            tn.append(sample(fn, args, n_n))
        g, n = float(np.median(tg)), float(np.median(tn))
        size = int(np.prod(shapes[0]))
        rows.append({"case": label, "shape": list(shapes[0]), "dtype": dtype, "elements": size,
                     "graphc_us": g * 1e6, "numpy_us": n * 1e6, "speedup": n / g, "first_call_s": first,
                     "graphc_min_us": min(tg) * 1e6, "numpy_min_us": min(tn) * 1e6,
                     "speedup_min": min(tn) / min(tg)})
        print(f"{label:30s} {str(tuple(shapes[0])):12s} {dtype:8s} graphc {g * 1e6:8.1f} us  "
              f"numpy {n * 1e6:8.1f} us  {n / g:5.2f}x  (fastest: {min(tn) / min(tg):5.2f}x)", flush=True)
    return rows


def markdown(rows) -> str:
    import numba
    lines = [f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"NumPy {np.__version__}, Numba {numba.__version__}; medians, graphc and NumPy alternated",
             "",
             "| case | shape | dtype | graphc µs | NumPy µs | speed-up | fastest samples | first call s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mark = "" if r["speedup"] >= TARGET else " (below 1.5x)"
        lines.append(f"| {r['case']} | {tuple(r['shape'])} | {r['dtype']} | {r['graphc_us']:.1f} | "
                     f"{r['numpy_us']:.1f} | {r['speedup']:.2f}x{mark} | {r['graphc_min_us']:.1f} / "
                     f"{r['numpy_min_us']:.1f} = {r['speedup_min']:.2f}x | {r['first_call_s']:.2f} |")
    met = sum(r["speedup"] >= TARGET for r in rows)
    lines += ["", f"{met} of {len(rows)} cases at >= {TARGET}x NumPy; "
                  f"{sum(r['speedup'] >= 1 for r in rows)} faster than NumPy."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--filter", default=None, help="only cases whose label contains this text")
    p.add_argument("--json", default=None, help="write the rows to this file")
    a = p.parse_args(argv)
    rows = run(a.rounds, a.filter)
    print()
    print(markdown(rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
