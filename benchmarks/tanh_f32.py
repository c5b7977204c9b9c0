"""float32 tanh in graphc's vecmath: cost against NumPy and the exhaustive accuracy check.

    python benchmarks/tanh_f32.py time [--n 65536] [--rounds 300]
        median / fastest time of an njit loop o[i] = tanh_f32(x[i]) over n float32 elements
        against np.tanh(x, out=o), interleaved sample by sample (a shared machine is noisy).
    python benchmarks/tanh_f32.py exhaustive [--chunks 256]
        every float32 bit pattern (2**32, in chunks of 2**24): max error in ulps against float64
        tanh (ulp taken at the exact value, denormal ulps for denormal results), max distance
        in ulps from NumPy's float32 tanh, and any NaN / signed-zero mismatch. ~3-5 minutes.

Time candidates in a process of their own each: several vecmath loops compiled and interleaved
in one process gave figures that moved by 2x between runs (RESULTS.md, issue 13, float32 tanh).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _loop(fn):
    import numba

    @numba.njit(error_model="numpy")
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
    return run


def time_it(n, rounds):
    from graphc.backend.vecmath import tanh_f32

    run = _loop(tanh_f32)
    x = (np.random.default_rng(0).standard_normal(n) * 2).astype(np.float32)
    out = np.empty_like(x)
    run(x, out)
    samples = {"graphc tanh_f32": [], "np.tanh": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        run(x, out)
        t1 = time.perf_counter()
        np.tanh(x, out=out)
        t2 = time.perf_counter()
        samples["graphc tanh_f32"].append(t1 - t0)
        samples["np.tanh"].append(t2 - t1)
    for name, s in samples.items():
        s = np.array(s) * 1e6
        print(f"{name:16s} n={n}: median {np.median(s):.1f} us, fastest {s.min():.1f} us")


def _stats_kernel():
    import numba

    @numba.njit(error_model="numpy")
    def stats(x, got, want, got_bits, want_bits, acc):
        # acc: max ulp vs float64 tanh, its x, max ulp distance from NumPy, its x, mismatches
        for i in range(x.shape[0]):
            xi, r = x[i], got[i]
            if xi != xi:
                if r == r:
                    acc[4] += 1
                continue
            ref = math.tanh(np.float64(xi))
            _, e = math.frexp(ref)
            err = abs(np.float64(r) - ref) / math.ldexp(1.0, max(e - 24, -149))
            if err > acc[0]:
                acc[0], acc[1] = err, xi
            if got_bits[i] != want_bits[i]:
                if (r == 0) or ((got_bits[i] < 0) != (want_bits[i] < 0)):
                    acc[4] += 1               # signed zero or sign mismatch
                else:
                    d = abs(np.int64(got_bits[i]) - np.int64(want_bits[i]))
                    if d > acc[2]:
                        acc[2], acc[3] = d, xi
    return stats


def exhaustive(chunks):
    from graphc.backend.vecmath import tanh_f32

    run, stats = _loop(tanh_f32), _stats_kernel()
    acc = np.zeros(5)
    n = 1 << 24
    t0 = time.time()
    for c in range(chunks):
        x = np.arange(c * n, (c + 1) * n, dtype=np.uint64).astype(np.uint32).view(np.float32)
        got = np.empty_like(x)
        run(x, got)
        with np.errstate(all="ignore"):
            want = np.tanh(x)
        stats(x, got, want, got.view(np.int32), want.view(np.int32), acc)
    print(f"{chunks * n} inputs in {time.time() - t0:.0f} s: max {acc[0]:.4f} ulp against float64 tanh "
          f"(x = {float(np.float32(acc[1])).hex()}), max {acc[2]:.0f} ulp from NumPy "
          f"(x = {float(np.float32(acc[3])).hex()}), {acc[4]:.0f} NaN/sign mismatches")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("time")
    t.add_argument("--n", type=int, default=65536)
    t.add_argument("--rounds", type=int, default=300)
    e = sub.add_parser("exhaustive")
    e.add_argument("--chunks", type=int, default=256, help="chunks of 2**24 bit patterns (256: all)")
    args = ap.parse_args()
    if args.cmd == "time":
        time_it(args.n, args.rounds)
    else:
        exhaustive(args.chunks)


if __name__ == "__main__":
    main()
