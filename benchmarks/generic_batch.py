"""One compile for every batch size: a training step traced with a symbolic batch
(``gc.trace(step, dynamic={"x": 0, "y": 0})``) against the same step compiled per batch size.

Measures, in one process with a fresh disk cache: the cold compile (first call) at three batch
sizes, each way, and the per-call time of the two kernels at batch 64 and 1024 (median of
rounds of calls, the two interleaved). The model is the 784-256-128-10 MLP of
benchmarks/train_step.py with CrossEntropyLoss and Adam.

    python3 benchmarks/generic_batch.py [--sizes 64,1024,37] [--calls 50] [--rounds 7]
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-generic-bench-"))  # cold

import numpy as np  # noqa: E402
os.environ.setdefault("GRAPHC_COMPILE", "eager")  # time compiled code, not the interpreter tier

import graphc as gc  # noqa: E402
from graphc import nn, optim  # noqa: E402


def make_step(dynamic: bool):
    gen = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    for p in model.parameters():
        p.data[...] = (gen.standard_normal(p.data.shape) * 0.05).astype(np.float32)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return gc.trace(step, dynamic={"x": 0, "y": 0} if dynamic else None)


def batch(n, seed=1):
    gen = np.random.default_rng(seed)
    return gen.standard_normal((n, 784)).astype(np.float32), gen.integers(0, 10, n)


def first_calls(step, sizes):
    times = []
    for n in sizes:
        x, y = batch(n)
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return times


def per_call(steps, n, calls, rounds):
    """Median seconds per call of each step at batch ``n`` (rounds interleaved)."""
    x, y = batch(n, seed=2)
    samples = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step(x, y)
            start = time.perf_counter()
            for _ in range(calls):
                step(x, y)
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: float(np.median(s)) for name, s in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,1024,37")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("graphc.runtime").setLevel(logging.DEBUG)  # says why a template fell back
    warm = gc.trace(lambda x, w: np.exp(x @ w).sum(axis=0))  # Numba's own first-compile costs
    warm(np.ones((3, 4), np.float32), np.ones((4, 5), np.float32))
    steps = {"per size": make_step(False), "generic": make_step(True)}
    print(f"cold compile (first call), batch sizes {sizes}, cache {os.environ['GRAPHC_CACHE_DIR']}")
    for name, step in steps.items():
        times = first_calls(step, sizes)
        print(f"  {name:9s} " + "  ".join(f"{t:6.2f} s" for t in times) + f"   total {sum(times):6.2f} s"
              f"   ({step.signatures} compiled graph(s))")
    for n in (64, 1024):
        medians = per_call(steps, n, args.calls, args.rounds)
        print(f"per call at batch {n}: " + ", ".join(f"{name} {t * 1e3:.3f} ms" for name, t in medians.items())
              + f"  (generic / per size = {medians['generic'] / medians['per size']:.2f})")


if __name__ == "__main__":
    main()
