"""Training-step benchmark: a 784-256-128-10 ReLU MLP, softmax cross-entropy, plain SGD, float32.

Steps per second at batch 64 and 512 for graphc, NumPy (hand-written backward),
PyTorch eager, torch.compile and jax.jit, each measured in its own process, plus
the GEMM floor (just the step's 8 matrix products through the same BLAS that
graphc's Numba code calls, scipy's) and graphc's first-call latency with a cold
and a warm disk cache.

    python benchmarks/train_step.py                 # everything available, prints a table
    python benchmarks/train_step.py --only numpy,graphc --batches 64 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
os.environ.setdefault("GRAPHC_COMPILE", "eager")  # time compiled code, not the interpreter tier

SIZES = (784, 256, 128, 10)
LR = 0.01
IMPLS = ("gemm_floor", "numpy", "graphc", "torch_eager", "torch_compile", "jax_jit")


def make_data(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], size=batch).astype(np.int64)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32))
    return x, y, params


def timeit(step, min_time=1.0, min_steps=20):
    """Steps per second of ``step()`` (after 5 warm-up steps), best of 3 rounds."""
    for _ in range(5):
        step()
    n = min_steps
    while True:
        t = time.perf_counter()
        for _ in range(n):
            step()
        dt = time.perf_counter() - t
        if dt >= min_time / 3:
            break
        n *= 2
    best = dt
    for _ in range(2):
        t = time.perf_counter()
        for _ in range(n):
            step()
        best = min(best, time.perf_counter() - t)
    return n / best


# -- implementations ---------------------------------------------------------------------------
def bench_gemm_floor(batch):
    from scipy.linalg import blas
    x, y, (w1, b1, w2, b2, w3, b3) = make_data(batch)
    h1, h2 = np.ones((batch, 256), np.float32), np.ones((batch, 128), np.float32)
    g3, g2, g1 = np.ones((batch, 10), np.float32), np.ones((batch, 128), np.float32), np.ones((batch, 256), np.float32)

    def mm(a, b):
        """a @ b through scipy's sgemm without copies: computes (b^T a^T) on Fortran-order views."""
        p, q = b.T, a.T
        tp, tq = not p.flags.f_contiguous, not q.flags.f_contiguous
        return blas.sgemm(1.0, p.T if tp else p, q.T if tq else q, trans_a=tp, trans_b=tq).T

    def step_scipy():  # the same 8 products as the step, through scipy's BLAS (what Numba calls)
        mm(x, w1.T); mm(h1, w2.T); mm(h2, w3.T)  # noqa: E702
        mm(g3.T, h2); mm(g3, w3); mm(g2.T, h1); mm(g2, w2); mm(g1.T, x)  # noqa: E702

    def step_numpy():
        x @ w1.T; h1 @ w2.T; h2 @ w3.T; g3.T @ h2; g3 @ w3; g2.T @ h1; g2 @ w2; g1.T @ x  # noqa: E702

    return {"steps_per_s": timeit(step_scipy), "numpy_blas_steps_per_s": timeit(step_numpy)}


def bench_numpy(batch):
    x, y, (w1, b1, w2, b2, w3, b3) = make_data(batch)
    rows = np.arange(batch)

    def step():
        z1 = x @ w1.T + b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ w2.T + b2
        h2 = np.maximum(z2, 0)
        z3 = h2 @ w3.T + b3
        m = z3.max(1, keepdims=True)
        e = np.exp(z3 - m)
        s = e.sum(1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - z3[rows, y])
        g3 = e / s
        g3[rows, y] -= 1
        g3 /= batch
        dw3, db3 = g3.T @ h2, g3.sum(0)
        g2 = (g3 @ w3) * (z2 > 0)
        dw2, db2 = g2.T @ h1, g2.sum(0)
        g1 = (g2 @ w2) * (z1 > 0)
        dw1, db1 = g1.T @ x, g1.sum(0)
        for p, g in ((w1, dw1), (b1, db1), (w2, dw2), (b2, db2), (w3, dw3), (b3, db3)):
            p -= LR * g
        return loss

    return {"steps_per_s": timeit(step)}


def _graphc_step(batch, **trace_options):
    """``(step, x, y)``: the textbook training step traced with ``trace_options`` (also used by
    benchmarks/compile_latency.py), and a batch for it."""
    import graphc as gc
    from graphc import nn, optim
    x, y, params = make_data(batch)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    for p, v in zip(model.parameters(), params):
        p.data[...] = v
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=LR)

    def train_step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    return gc.trace(train_step, **trace_options), x, y


def bench_graphc(batch):
    t = time.perf_counter()
    train_step, x, y = _graphc_step(batch)
    train_step(x, y)
    first_call = time.perf_counter() - t
    return {"steps_per_s": timeit(lambda: train_step(x, y)), "first_call_s": first_call}


def bench_graphc_latency(batch):
    """First call (trace + passes + codegen + Numba) in this process: cold or warm per the cache dir.

    Also CPU time (``first_call_cpu_s``): on a shared machine wall time mostly measures the load."""
    t0 = time.perf_counter()
    import graphc  # noqa: F401
    t, c = time.perf_counter(), time.process_time()
    train_step, x, y = _graphc_step(batch)
    train_step(x, y)
    return {"first_call_s": time.perf_counter() - t, "first_call_cpu_s": time.process_time() - c,
            "import_s": t - t0, "load_avg": os.getloadavg()[0]}


def bench_torch_eager(batch, compiled=False):
    import torch
    if os.environ.get("GRAPHC_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["GRAPHC_BENCH_THREADS"]))
    torch.manual_seed(0)
    x, y, params = make_data(batch)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for p, v in zip(model.parameters(), params):
            p.copy_(torch.from_numpy(v))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    out = {}
    if compiled:
        step = torch.compile(step)
        t = time.perf_counter()
        step(xt, yt)
        out["first_call_s"] = time.perf_counter() - t
    out["steps_per_s"] = timeit(lambda: step(xt, yt))
    return out


def bench_torch_compile(batch):
    return bench_torch_eager(batch, compiled=True)


def bench_jax_jit(batch):
    import jax
    import jax.numpy as jnp
    x, y, params = make_data(batch)

    def loss_fn(params, x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = jax.nn.relu(x @ w1.T + b1)
        h = jax.nn.relu(h @ w2.T + b2)
        logits = h @ w3.T + b3
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return [p - LR * g for p, g in zip(params, grads)], loss

    state = {"p": [jnp.asarray(p) for p in params]}
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    t = time.perf_counter()
    state["p"], loss = step(state["p"], xj, yj)
    loss.block_until_ready()
    first = time.perf_counter() - t

    def one():
        state["p"], loss = step(state["p"], xj, yj)
        loss.block_until_ready()

    return {"steps_per_s": timeit(one), "first_call_s": first}


# -- driver -------------------------------------------------------------------------------------
def run_child(impl, batch, env=None, timeout=900):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, "--batches", str(batch)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": tail[0][:200]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,512")
    ap.add_argument("--only", default=",".join(IMPLS))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--threads", type=int, help="pin every library to this many threads (BLAS, Numba, "
                    "torch, XLA); on a busy machine OpenBLAS's spinning threads otherwise dominate")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    if args.child:
        fn = {"graphc_latency": bench_graphc_latency}.get(args.child) or globals()[f"bench_{args.child}"]
        print(json.dumps(fn(batches[0])))
        return

    env = dict(os.environ)
    if args.threads:
        n = str(args.threads)
        env.update(OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, NUMBA_NUM_THREADS=n,
                   GRAPHC_BENCH_THREADS=n)
        if args.threads == 1:
            env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    results = {}
    for batch in batches:
        for impl in args.only.split(","):
            r = run_child(impl, batch, env)
            results[f"{impl}@{batch}"] = r
            print(f"batch {batch:4d}  {impl:<14} " + ("ERROR " + r["error"] if "error" in r else
                  f"{r['steps_per_s']:9.1f} steps/s  {1e6 / r['steps_per_s']:8.1f} us/step"
                  + (f"  first call {r['first_call_s']:.2f} s" if "first_call_s" in r else "")), flush=True)
    if "graphc" in args.only:
        cache = tempfile.mkdtemp(prefix="graphc-bench-cache-")
        env = dict(env, GRAPHC_CACHE_DIR=cache)
        try:
            cold = run_child("graphc_latency", batches[0], env)
            warm = run_child("graphc_latency", batches[0], env)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        results["graphc_cold"], results["graphc_warm"] = cold, warm
        for name, r in (("cold", cold), ("warm", warm)):
            print(f"graphc first call, {name} cache: " + (r.get("error") or
                  f"{r['first_call_s']:.2f} s, {r['first_call_cpu_s']:.2f} s CPU (import graphc "
                  f"{r['import_s']:.2f} s; load average {r['load_avg']:.1f})"))

    print("\nsummary (steps/s; ratio = time / GEMM floor time)")
    for batch in batches:
        floor = results.get(f"gemm_floor@{batch}", {}).get("steps_per_s")
        for impl in args.only.split(","):
            r = results.get(f"{impl}@{batch}", {})
            if "steps_per_s" in r:
                ratio = f"{floor / r['steps_per_s']:.2f}x floor" if floor else ""
                np_ = results.get(f"numpy@{batch}", {}).get("steps_per_s")
                vs = f"{r['steps_per_s'] / np_:.2f}x NumPy speed" if np_ else ""
                print(f"  batch {batch:4d}  {impl:<14} {r['steps_per_s']:9.1f}  {ratio:>12}  {vs}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
