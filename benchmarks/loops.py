"""Loops in the graph (issue 16): gc.fori_loop and gc.scan against hand-written Numba loops,
jax.lax.fori_loop / jax.lax.scan under jax.jit, and PyTorch eager.

Two parts, in one run:

1. **Run time** (through harness.py: each peer in a process of its own, checked against a
   float64 NumPy reference before timing, medians of round-robin samples after warm-up):

   * ``task=descent``: 100 steps of x <- x - 0.1 grad f(x) from (2, 2), f(x) = (x1 - x0^2)^2 +
     (1 - x0)^2 (examples/rosenbrock.py), float64, the whole descent as one call: graphc
     ``gc.fori_loop`` over ``gc.gradient`` inside ``gc.trace``; a hand-written ``numba.njit``
     loop with the hand-derived gradient on scalars (``numba``), and the same loop calling an
     njit step that returns a new 2-array (``numba (array step)``: grad_overhead.py's "loop in
     njit", the issue's 2.4-4 µs); ``jax.jit`` of ``jax.lax.fori_loop`` over ``jax.grad``;
     PyTorch eager (a Python loop of autograd steps); NumPy (a Python loop of the hand-derived
     step: the baseline).
   * ``task=rnn``: an Elman RNN, h_t = tanh(x_t Wx + h_{t-1} Wh + b), out_t = h_t . wo, loss =
     mean((out - y)^2), hidden 128, input 16, batch 32, T = 25 / 100 / 400, float32: the loss and
     its gradient w.r.t. (Wx, Wh, b, wo) in one call. graphc ``gc.value_and_grad`` of a
     ``gc.scan``; numba: hand-written forward and backpropagation-through-time loops (``np.dot``:
     BLAS); ``jax.jit(jax.value_and_grad)`` of a ``jax.lax.scan``; PyTorch eager (a Python loop
     over time, ``torch.autograd.grad``); NumPy (hand-written BPTT, the baseline and the
     reference in float64).

   ``graphc (unrolled)`` and ``jax.jit (unrolled)`` (the same functions with a Python loop, traced
   into one graph of T copies of the step) run only when named with ``--backends``; limit them
   to short cases (``--cases T=25``): graphc's unrolled RNN gradient takes ~60 s to compile at
   T=100, and JAX's unrolled 100-step descent ~77 s (RESULTS.md).

2. **Compile time** (``--no-compile`` skips it, ``--compile-only`` runs only it): the time to the
   first result of a fresh process per figure (graphc with an empty ``GRAPHC_CACHE_DIR``; Numba
   with ``cache=False``; JAX has no persistent cache unless configured), after the imports
   (reported apart), and the process's CPU time. For the descent and the RNN at each T, for
   graphc, numba and jax.jit; then the unrolled versions at growing trip counts (descent
   ``--unrolled-steps``, default 10-100; RNN ``--unrolled-T``, default 5-100: the unrolled
   compile grows with the trip count, the unrolled RNN at T=100 alone takes ~1.5 minutes for
   graphc and JAX together), to show that the loop's compile time does not. ``--quick`` keeps
   the first size of each list.

graphc runs compiled (``GRAPHC_COMPILE=eager``, set unless the environment says otherwise).
``GRAPHC_COMPILE=never`` runs graphc in its NumPy interpreter instead (to check the script
before the loops' CPU lowering exists; those graphc figures are the interpreter's).

    python benchmarks/loops.py                          # everything: run times, then compile times
    python benchmarks/loops.py --quick --no-machine     # a smoke run (~2 minutes)
    python benchmarks/loops.py --no-compile --backends graphc,numba,jax.jit --cases task=rnn
    python benchmarks/loops.py --threads 1 --no-compile  # every peer on one thread (a busy or 2-core machine)
    python benchmarks/loops.py --compile-only --compile-backends "graphc,graphc (unrolled)" --unrolled-steps 5,10,20
    GRAPHC_COMPILE=never python benchmarks/loops.py --quick --no-machine   # graphc interpreted

Results: benchmarks/results/loops.{json,md} (run time, the harness's) and
benchmarks/results/loops_compile.{json,md} (compile time).
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

import harness
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAME = "loops"
TITLE = "Loops in one call: 100-step Rosenbrock descent (float64), RNN value and gradient (float32)"
BACKENDS = ("numpy", "graphc", "numba", "numba (array step)", "jax.jit", "torch")
EXTRA_BACKENDS = ("graphc (unrolled)", "jax.jit (unrolled)")
STEPS, LR = 100, 0.1
HIDDEN, INPUT, BATCH = 128, 16, 32
RNN_T = (25, 100, 400)
CASES = [{"task": "descent", "steps": STEPS, "dtype": "float64"}] + \
    [{"task": "rnn", "T": t, "batch": BATCH, "hidden": HIDDEN, "dtype": "float32"} for t in RNN_T]
COMPILE_BACKENDS = ("graphc", "numba", "jax.jit", "graphc (unrolled)", "jax.jit (unrolled)")
UNROLLED_STEPS, UNROLLED_T = (10, 25, 50, 100), (5, 10, 25, 50, 100)


# -- the functions, written once per library ---------------------------------------------------
def f(x):
    """The function descended (NumPy, graphc, JAX and PyTorch alike)."""
    return (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def descent_numpy(x, lr, steps):
    """The reference: a Python loop of the hand-derived step."""
    x = np.array(x, dtype=np.float64)
    for _ in range(steps):
        a = x[1] - x[0] ** 2
        x = x - lr * np.array([-4 * a * x[0] - 2 * (1 - x[0]), 2 * a])
    return x


def rnn_inputs(T, batch=BATCH, hidden=HIDDEN, n_in=INPUT, seed=0):
    """(wx, wh, b, wo, xs, ys, h0), float32: a stable recurrence (|Wh| ~ 0.9 / sqrt(H))."""
    rng = np.random.default_rng(seed)
    wx = rng.normal(size=(n_in, hidden)) / np.sqrt(n_in)
    wh = rng.normal(size=(hidden, hidden)) * 0.9 / np.sqrt(hidden)
    b = rng.normal(size=hidden) * 0.1
    wo = rng.normal(size=hidden) / np.sqrt(hidden)
    xs = rng.normal(size=(T, batch, n_in))
    ys = np.sin(np.linspace(0, 8, T))[:, None] * np.ones(batch) + 0.1 * rng.normal(size=(T, batch))
    h0 = np.zeros((batch, hidden))
    return tuple(a.astype(np.float32) for a in (wx, wh, b, wo, xs, ys, h0))


def rnn_numpy(wx, wh, b, wo, xs, ys, h0):
    """The loss and its gradient w.r.t. (wx, wh, b, wo), backpropagation through time by hand."""
    T = xs.shape[0]
    hs = [h0]
    for t in range(T):
        hs.append(np.tanh(xs[t] @ wx + hs[-1] @ wh + b))
    outs = np.stack([h @ wo for h in hs[1:]])
    n = outs.size
    loss = np.mean((outs - ys) ** 2)
    d_out = 2 * (outs - ys) / n
    gwx, gwh, gb = np.zeros_like(wx), np.zeros_like(wh), np.zeros_like(b)
    gwo = np.zeros_like(wo)
    dh_next = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        h, h_prev = hs[t + 1], hs[t]
        gwo += h.T @ d_out[t]
        dz = (d_out[t][:, None] * wo + dh_next) * (1 - h * h)
        gwx += xs[t].T @ dz
        gwh += h_prev.T @ dz
        gb += dz.sum(0)
        dh_next = dz @ wh.T
    return loss, (gwx, gwh, gb, gwo)


def rnn_loss_scan(scan, tanh, mean):
    """The RNN loss with a library's scan (gc.scan, jax.lax.scan) and its tanh/mean."""
    def loss(params, xs, ys, h0):
        wx, wh, b, wo = params

        def cell(h, x):
            h = tanh(x @ wx + h @ wh + b)
            return h, h @ wo
        _, outs = scan(cell, h0, xs)
        return mean((outs - ys) ** 2)
    return loss


def rnn_loss_unrolled(tanh, mean, stack):
    """The same loss with a Python loop over time (unrolled when traced)."""
    def loss(params, xs, ys, h0):
        wx, wh, b, wo = params
        h, outs = h0, []
        for t in range(xs.shape[0]):
            h = tanh(xs[t] @ wx + h @ wh + b)
            outs.append(h @ wo)
        return mean((stack(outs) - ys) ** 2)
    return loss


# -- the harness workload ----------------------------------------------------------------------
def inputs(case):
    if case["task"] == "descent":
        return (np.array([2.0, 2.0]), LR)
    return rnn_inputs(case["T"], case.get("batch", BATCH), case.get("hidden", HIDDEN))


def reference(case, *args):
    if case["task"] == "descent":
        return descent_numpy(*args, case["steps"])
    return rnn_numpy(*args)


def tolerance(case, backend):
    """max |error| / max |reference| allowed: the harness's default for the case's dtype (float32
    peers of the RNN were within 2e-7 of the float64 reference at T = 25)."""
    return harness.DEFAULT_RTOL[case["dtype"]]


def build(backend, case, *args):
    if case["task"] == "descent":
        return _build_descent(backend, case["steps"], *args)
    params, rest = args[:4], args[4:]
    return _build_rnn(backend, params, *rest)


def _build_descent(backend, steps, x0, lr):
    if backend == "numpy":
        return (lambda x, lr: descent_numpy(x, lr, steps)), (x0, lr)
    if backend.startswith("graphc"):
        import graphc as gc
        if backend == "graphc":
            def descend(x, lr):
                return gc.fori_loop(0, steps, lambda i, x: x - lr * gc.gradient(f(x), x), x)
        else:  # unrolled: a Python loop traced into `steps` copies of the step
            def descend(x, lr):
                for _ in range(steps):
                    x = x - lr * gc.gradient(f(x), x)
                return x
        return gc.trace(descend), (x0, lr)
    if backend == "numba":
        from numba import njit

        @njit(cache=False)
        def descend(x, lr):
            x0, x1 = x[0], x[1]
            for _ in range(steps):
                a = x1 - x0 * x0
                g0, g1 = -4 * a * x0 - 2 * (1 - x0), 2 * a
                x0, x1 = x0 - lr * g0, x1 - lr * g1
            out = np.empty(2)
            out[0], out[1] = x0, x1
            return out
        return descend, (x0, lr)
    if backend == "numba (array step)":
        from numba import njit

        @njit(cache=False)
        def step(x, lr):
            a = x[1] - x[0] ** 2
            out = np.empty(2)
            out[0] = x[0] - lr * (-4 * a * x[0] - 2 * (1 - x[0]))
            out[1] = x[1] - lr * (2 * a)
            return out

        @njit(cache=False)
        def descend_steps(x, lr):
            for _ in range(steps):
                x = step(x, lr)
            return x
        return descend_steps, (x0, lr)
    if backend.startswith("jax"):
        import jax
        harness.jax_x64("float64")
        grad = jax.grad(f)
        if backend == "jax.jit":
            def descend(x, lr):
                return jax.lax.fori_loop(0, steps, lambda i, x: x - lr * grad(x), x)
        else:
            def descend(x, lr):
                for _ in range(steps):
                    x = x - lr * grad(x)
                return x
        return jax.jit(descend), (harness.to_jax(x0), lr)
    if backend == "torch":
        import torch

        def descend(x, lr):
            for _ in range(steps):
                x = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(f(x), x)
                x = x - lr * g
            return x.detach()
        return descend, (harness.to_torch(x0), lr)
    raise harness.Skip(f"no {backend} version")


def _build_rnn(backend, params, xs, ys, h0):
    if backend == "numba (array step)":
        raise harness.Skip("a descent variant")
    if backend == "numpy":
        return rnn_numpy, (*params, xs, ys, h0)
    if backend.startswith("graphc"):
        import graphc as gc
        loss = (rnn_loss_scan(gc.scan, np.tanh, np.mean) if backend == "graphc"
                else rnn_loss_unrolled(np.tanh, np.mean, np.stack))
        return gc.value_and_grad(loss), (tuple(params), xs, ys, h0)
    if backend == "numba":
        return _numba_rnn(), (*params, xs, ys, h0)
    if backend.startswith("jax"):
        import jax
        import jax.numpy as jnp
        loss = (rnn_loss_scan(jax.lax.scan, jnp.tanh, jnp.mean) if backend == "jax.jit"
                else rnn_loss_unrolled(jnp.tanh, jnp.mean, jnp.stack))
        return jax.jit(jax.value_and_grad(loss)), (harness.to_jax(*params), *harness.to_jax(xs, ys, h0))
    if backend == "torch":
        import torch
        params_t = harness.to_torch(*params)
        xs_t, ys_t, h0_t = harness.to_torch(xs, ys, h0)

        def value_and_grad(wx, wh, b, wo, xs, ys, h0):
            wx, wh, b, wo = (p.detach().requires_grad_(True) for p in (wx, wh, b, wo))
            h, outs = h0, []
            for t in range(xs.shape[0]):
                h = torch.tanh(xs[t] @ wx + h @ wh + b)
                outs.append(h @ wo)
            loss = torch.mean((torch.stack(outs) - ys) ** 2)
            grads = torch.autograd.grad(loss, (wx, wh, b, wo))
            return loss.detach(), grads
        return value_and_grad, (*params_t, xs_t, ys_t, h0_t)
    raise harness.Skip(f"no {backend} version")


def _numba_rnn():
    """The RNN's value and gradient as hand-written Numba loops (matrix products: np.dot, BLAS)."""
    from numba import njit

    @njit(cache=False)
    def value_and_grad(wx, wh, b, wo, xs, ys, h0):
        T, batch = xs.shape[0], xs.shape[1]
        hidden = wh.shape[0]
        hs = np.empty((T + 1, batch, hidden), np.float32)
        hs[0] = h0
        outs = np.empty((T, batch), np.float32)
        for t in range(T):
            z = np.dot(xs[t], wx) + np.dot(hs[t], wh) + b
            hs[t + 1] = np.tanh(z)
            outs[t] = np.dot(hs[t + 1], wo)
        diff = outs - ys
        loss = np.mean(diff * diff)
        d_out = diff * np.float32(2.0 / diff.size)
        gwx, gwh = np.zeros_like(wx), np.zeros_like(wh)
        gb, gwo = np.zeros_like(b), np.zeros_like(wo)
        dh = np.zeros((batch, hidden), np.float32)
        whT = np.ascontiguousarray(wh.T)
        for t in range(T - 1, -1, -1):
            h = hs[t + 1]
            gwo += np.dot(d_out[t], h)
            for i in range(batch):
                for j in range(hidden):
                    dh[i, j] = (d_out[t, i] * wo[j] + dh[i, j]) * (1 - h[i, j] * h[i, j])
            gwx += np.dot(xs[t].T, dh)
            gwh += np.dot(hs[t].T, dh)
            gb += dh.sum(axis=0)
            dh = np.dot(dh, whT)
        return loss, (gwx, gwh, gb, gwo)
    return value_and_grad


def _median(results, backend, **match):
    for entry in results["cases"]:
        if all(entry["case"].get(k) == v for k, v in match.items()):
            return entry["backends"].get(backend, {}).get("median_s")
    return None


def summarize(results):
    lines = ["Targets (issue 16), run time:", ""]
    g = _median(results, "graphc", task="descent")
    for peer in ("numba", "numba (array step)"):
        nb = _median(results, peer, task="descent")
        if g and nb:
            r = g / nb
            lines.append(f"- descent: graphc / hand-written {peer} = {r:.2f}x (target <= 1.5x): "
                         f"{'met' if r <= 1.5 else 'MISSED'}")
    for T in RNN_T:
        g, j = _median(results, "graphc", task="rnn", T=T), _median(results, "jax.jit", task="rnn", T=T)
        if g and j:
            r = j / g
            lines.append(f"- RNN T={T}: jax.jit (scan) / graphc = {r:.2f}x (target >= 1.5x): "
                         f"{'met' if r >= 1.5 else 'MISSED'}")
    if os.environ.get("GRAPHC_COMPILE") == "never":
        lines.append("- (graphc ran in its NumPy interpreter: GRAPHC_COMPILE=never)")
    return lines if len(lines) > 2 else []


# -- compile time: a fresh process per figure ---------------------------------------------------
def compile_child(backend: str, case: dict) -> dict:
    """In a fresh process: import the peer, then build and call once (the first result)."""
    t0 = time.perf_counter()
    req = harness.requirement(backend)
    if req:
        __import__(req)
    if req == "jax":
        import jax
    args = inputs(case)
    t, c = time.perf_counter(), time.process_time()
    fn, fn_args = build(backend, case, *args)
    out = fn(*fn_args)
    if req == "jax":
        jax.block_until_ready(out)
    first, cpu = time.perf_counter() - t, time.process_time() - c
    check = harness.compare(out, reference(case, *harness.as_float64(args)))
    ok = check["ok_structure"] and check["rel_err"] <= tolerance(case, backend)
    result = {"first_s": first, "cpu_s": cpu, "import_s": t - t0, "ok": ok,
              "rel_err": check.get("rel_err"), "load_avg": os.getloadavg()[0]}
    if req == "graphc":
        result["compile_mode"] = os.environ.get("GRAPHC_COMPILE")
        graph = getattr(fn, "graph", None)
        result["nodes"] = len(graph.nodes) if graph is not None else None
    return result


def run_compile_child(backend: str, case: dict, timeout: float) -> dict:
    cache = tempfile.mkdtemp(prefix="graphc-loops-")
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, os.path.abspath(__file__), "--compile-child", backend, json.dumps(case)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no first result within {timeout:.0f} s"}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:300]}
    return json.loads(lines[-1])


def compile_plan(opts) -> list[tuple[str, str, dict]]:
    """(section, backend, case) for every compile-time figure."""
    loop_cases = [CASES[0]] + [c for c in CASES[1:] if c["T"] in opts.rnn_T]
    plan = [("loop", b, c) for c in loop_cases for b in opts.compile_backends if "unrolled" not in b]
    for b in (b for b in opts.compile_backends if "unrolled" in b):
        plan += [("unrolled", b, {"task": "descent", "steps": n, "dtype": "float64"}) for n in opts.unrolled_steps]
        plan += [("unrolled", b, {"task": "rnn", "T": t, "batch": BATCH, "hidden": HIDDEN, "dtype": "float32"})
                 for t in opts.unrolled_T]
    return plan


def compile_times(opts) -> dict:
    out = {"machine": f"Python {platform.python_version()}, {os.cpu_count()} CPUs",
           "graphc_compile": os.environ.get("GRAPHC_COMPILE"), "load_start": os.getloadavg(), "rows": []}
    for section, backend, case in compile_plan(opts):
        print(f"compile: {backend} {harness.case_label(case)} ...", file=sys.stderr, flush=True)
        runs = [run_compile_child(backend, case, opts.compile_timeout) for _ in range(opts.repeat)]
        good = sorted((r for r in runs if "error" not in r), key=lambda r: r["first_s"])
        best = good[len(good) // 2] if good else runs[0]
        out["rows"].append({"section": section, "backend": backend, "case": case, "result": best, "runs": runs})
    out["load_end"] = os.getloadavg()
    return out


def _fmt(r: dict) -> str:
    if "error" in r:
        return f"error: {r['error'][:80]}"
    wrong = "" if r["ok"] else f" WRONG (rel. error {r['rel_err']:.2g})"
    nodes = f", {r['nodes']} nodes" if r.get("nodes") else ""
    return f"{harness.fmt_time(r['first_s'])} ({harness.fmt_time(r['cpu_s'])} CPU{nodes}){wrong}"


def compile_markdown(res: dict) -> str:
    mode = res["graphc_compile"]
    note = (f"load average {res['load_start'][0]:.2f} at start, {res['load_end'][0]:.2f} at end; "
            "wall time (process CPU time; graphc: top-level nodes of the graph) of build + first call, "
            "after the imports; graphc with an empty cache directory")
    lines = [f"# Loops: time to the first result, a fresh process each (GRAPHC_COMPILE={mode})", "", note, ""]
    for section, title in (("loop", "The loops (one node, compiled once)"),
                           ("unrolled", "Unrolled (a Python loop traced into one graph)")):
        rows = [r for r in res["rows"] if r["section"] == section]
        if not rows:
            continue
        backends = list(dict.fromkeys(r["backend"] for r in rows))
        labels = list(dict.fromkeys(_case_short(r["case"]) for r in rows))
        lines += [f"## {title}", "", "| case | " + " | ".join(backends) + " |", "|---" * (len(backends) + 1) + "|"]
        for label in labels:
            cells = []
            for b in backends:
                r = next((r["result"] for r in rows if r["backend"] == b and _case_short(r["case"]) == label), None)
                cells.append(_fmt(r) if r else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _compile_targets(res)
    return "\n".join(lines) + "\n"


def _case_short(case: dict) -> str:
    return f"descent, {case['steps']} steps" if case["task"] == "descent" else f"RNN value+grad, T={case['T']}"


def _compile_targets(res: dict) -> list[str]:
    got = {(r["backend"], _case_short(r["case"])): r["result"] for r in res["rows"] if r["section"] == "loop"}
    lines = []
    d = got.get(("graphc", f"descent, {STEPS} steps"))
    if d and "error" not in d:
        lines.append(f"- graphc descent, cold: {d['first_s']:.2f} s (target <= 2 s): "
                     f"{'met' if d['first_s'] <= 2 else 'MISSED'}")
    lo, hi = got.get(("graphc", f"RNN value+grad, T={RNN_T[0]}")), got.get(("graphc", f"RNN value+grad, T={RNN_T[-1]}"))
    if lo and hi and "error" not in lo and "error" not in hi:
        r = hi["first_s"] / lo["first_s"]
        lines.append(f"- graphc RNN compile T={RNN_T[-1]} / T={RNN_T[0]} = {r:.2f}x (target <= 1.3x): "
                     f"{'met' if r <= 1.3 else 'MISSED'}")
    if lines and res.get("graphc_compile") == "never":
        lines.append("- (graphc ran in its NumPy interpreter: GRAPHC_COMPILE=never; nothing was compiled)")
    return (["Targets (issue 16), compile time:", ""] + lines) if lines else []


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()), add_help=False)
    ap.add_argument("--compile-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time part")
    ap.add_argument("--compile-only", action="store_true", help="only the compile-time part")
    ap.add_argument("--compile-backends", default=",".join(COMPILE_BACKENDS),
                    help="peers of the compile-time part (default: %(default)s)")
    ap.add_argument("--unrolled-steps", default=",".join(map(str, UNROLLED_STEPS)),
                    help="trip counts of the unrolled descent (compile time; '' = none)")
    ap.add_argument("--unrolled-T", default=",".join(map(str, UNROLLED_T)),
                    help="sequence lengths of the unrolled RNN (compile time; '' = none)")
    ap.add_argument("--rnn-T", default=",".join(map(str, RNN_T)), help="RNN lengths of the compile-time part")
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per compile figure (median)")
    ap.add_argument("--compile-timeout", type=float, default=900, help="seconds allowed per compile figure")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the harness's --quick, and the first size of each compile-time list")
    ap.add_argument("--out", default=harness.RESULTS_DIR, help="directory of the results (JSON and markdown)")
    ap.add_argument("--threads", type=int, help="pin every peer's libraries to this many threads (BLAS, "
                    "OpenMP, Numba, XLA): on a small or busy machine OpenBLAS's spinning threads fight the "
                    "other pools and dominate the RNN's times")
    opts, rest = ap.parse_known_args(argv)
    if opts.compile_child:
        print(json.dumps(compile_child(opts.compile_child[0], json.loads(opts.compile_child[1]))))
        return
    if "-h" in rest or "--help" in rest:
        ap.print_help()
        print("\nthe run-time part's options (harness.py):")
    ints = lambda s: [int(v) for v in s.split(",") if v]
    opts.compile_backends = [b for b in opts.compile_backends.split(",") if b]
    opts.unrolled_steps, opts.unrolled_T, opts.rnn_T = ints(opts.unrolled_steps), ints(opts.unrolled_T), ints(opts.rnn_T)
    if opts.quick:
        opts.unrolled_steps, opts.unrolled_T, opts.rnn_T = opts.unrolled_steps[:1], opts.unrolled_T[:1], opts.rnn_T[:1]
    # the workers import graphc from this checkout
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    if opts.threads:  # (the workers inherit the environment)
        n = str(opts.threads)
        os.environ.update(OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, NUMBA_NUM_THREADS=n)
        if opts.threads == 1:
            os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if not opts.compile_only:
        harness.main(sys.modules[__name__], rest + (["--quick"] if opts.quick else []) + ["--out", opts.out])
    if not opts.no_compile:
        res = compile_times(opts)
        text = compile_markdown(res)
        os.makedirs(opts.out, exist_ok=True)
        base = os.path.join(opts.out, "loops_compile")
        with open(base + ".json", "w") as fh:
            json.dump(res, fh, indent=1)
        with open(base + ".md", "w") as fh:
            fh.write(text)
        print(text)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
