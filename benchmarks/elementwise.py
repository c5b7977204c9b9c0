"""Fused elementwise chain: sum(tanh(x*w + b) * sigmoid(x) - 0.5*x**2), and its gradient (issue 4).

Cases: N = 1e5, 1e6, 1e7; float32 and float64; ``fwd`` (the value) and
``fwd+bwd`` (the value and its gradient with respect to x, w and b); ``wb``:

* ``array``: x, w and b are all N-vectors, so the gradient is three N-vectors.
  This is the issue's workload: its reference kernel "8.5 ms at N=1e7 float32,
  at the machine's ~28 GB/s" moves exactly these 240 MB, and its "jax.jit falls
  to 0.3-0.9x NumPy" comes from page-faulting three fresh gradients per call.
* ``scalar``: w and b are scalars (forward+backward only). It moves a third of
  the bytes for the same arithmetic, so it measures the kernel's compute speed:
  its floor is out of reach for any of the peers.

The *bandwidth floor* is the time the bytes that must move take at the triad
bandwidth: the inputs are read once (x, w, b or just x), and ``fwd+bwd`` writes
the array gradients once. The triad is measured three ways (``harness.PROBE``):

* *rounds*: a triad sample right after each graphc sample of the round-robin;
  graphc / floor is the median of those per-round ratios. The targets are
  judged on this one.
* *solo*: the same, with graphc and the triad sampled alone after the
  round-robin (``harness.SOLO_PAUSE_S``), with no peer in between.
* *start*: the triad measured once at the start of the run (all that is left
  with ``--no-probe``).

graphc's target (issue 4):
within 1.3x of the floor at N >= 1e6 forward+backward, at least 6x NumPy (and
2x the faster of torch.compile and jax.jit in float32); at least 3x NumPy at
N = 1e5.

    python benchmarks/elementwise.py                 # every backend installed
    python benchmarks/elementwise.py --quick --backends numpy,graphc
    python benchmarks/elementwise.py --backends numpy,graphc,"graphc (libm)"
    python benchmarks/elementwise.py --backends numpy,graphc,"graphc (interleave 0)"
    python benchmarks/elementwise.py --cases wb=array
"""
from __future__ import annotations

import numpy as np

import harness

NAME = "elementwise"
TITLE = "sum(tanh(x*w + b) * sigmoid(x) - 0.5*x**2) and its gradient"
BACKENDS = ("numpy", "graphc", "torch", "torch.compile", "jax.jit")
# diagnostic: graphc with NumPy's scalar libm calls instead of its vectorizable math
EXTRA_BACKENDS = ("graphc (libm)", "graphc (O1)", "graphc (interleave 0)")
PROBE_BANDWIDTH = True  # the floor's triad is sampled in every round (harness.PROBE)
CASES = ([{"n": n, "dtype": dtype, "mode": "fwd+bwd", "wb": wb}
          for wb in ("array", "scalar") for n in (10**5, 10**6, 10**7) for dtype in ("float32", "float64")]
         + [{"n": n, "dtype": dtype, "mode": "fwd", "wb": "array"}
            for n in (10**5, 10**6, 10**7) for dtype in ("float32", "float64")])


def inputs(case):
    rng = np.random.default_rng(0)
    dt, n = case["dtype"], case["n"]
    x = rng.uniform(-3, 3, n).astype(dt)
    if case["wb"] == "array":
        return x, rng.uniform(0.5, 1.0, n).astype(dt), rng.uniform(-0.5, 0.5, n).astype(dt)
    return x, np.asarray(0.7, dt)[()], np.asarray(-0.2, dt)[()]


def _to_shape_of(g, p):
    """The gradient of a parameter broadcast against x: summed back to the parameter's shape."""
    return np.sum(g) if np.ndim(p) == 0 else g


def reference(case, x, w, b):
    if case["mode"] == "fwd":
        return _numpy_chain(x, w, b)
    return _numpy_grad(x, w, b)


def tolerance(case, backend):
    return 2e-4 if case["dtype"] == "float32" else 1e-9


def _numpy_chain(x, w, b):
    t = np.tanh(x * w + b)
    s = 1 / (1 + np.exp(-x))
    return np.sum(t * s - 0.5 * x ** 2)


def _numpy_grad(x, w, b):  # what a NumPy user writes by hand
    t = np.tanh(x * w + b)
    s = 1 / (1 + np.exp(-x))
    value = np.sum(t * s - 0.5 * x ** 2)
    u = s * (1 - t * t)
    return value, t * s * (1 - s) - x + u * w, _to_shape_of(u * x, w), _to_shape_of(u, b)


def build(backend, case, x, w, b):
    fwd = case["mode"] == "fwd"
    if backend == "numpy":
        return (_numpy_chain if fwd else _numpy_grad), (x, w, b)
    if backend.startswith("graphc"):
        import graphc as gc

        def chain(x, w, b):
            return np.sum(np.tanh(x * w + b) * gc.sigmoid(x) - 0.5 * x ** 2)

        opts = {"graphc (libm)": {"math": "libm"}, "graphc (O1)": {"passes": "O1"}}.get(backend, {})
        if backend == "graphc (interleave 0)":  # LLVM's own interleave count (see graphc.backend.cpu)
            import graphc.backend.cpu
            graphc.backend.cpu.INTERLEAVE = 0
        if fwd:
            return gc.trace(chain, **opts), (x, w, b)
        f = gc.value_and_grad(chain, argnums=(0, 1, 2), **opts)

        def call(x, w, b):
            value, grads = f(x, w, b)
            return (value, *grads)
        return call, (x, w, b)
    if backend in ("torch", "torch.compile"):
        import torch

        def chain(x, w, b):
            return torch.sum(torch.tanh(x * w + b) * torch.sigmoid(x) - 0.5 * x ** 2)

        def value_and_grad(x, w, b):
            x, w, b = (a.detach().requires_grad_() for a in (x, w, b))
            value = chain(x, w, b)
            return (value.detach(), *torch.autograd.grad(value, (x, w, b)))

        fn = chain if fwd else value_and_grad
        if backend == "torch.compile":
            fn = torch.compile(fn)
        tx, tw, tb = harness.to_torch(x, np.asarray(w), np.asarray(b))
        return fn, (tx, tw, tb)
    if backend == "jax.jit":
        import jax
        import jax.numpy as jnp
        harness.jax_x64(case["dtype"])

        def chain(x, w, b):
            return jnp.sum(jnp.tanh(x * w + b) * jax.nn.sigmoid(x) - 0.5 * x ** 2)

        if fwd:
            fn = jax.jit(chain)
        else:
            vg = jax.value_and_grad(chain, argnums=(0, 1, 2))

            def both(x, w, b):
                value, grads = vg(x, w, b)
                return (value, *grads)
            fn = jax.jit(both)
        jx, jw, jb = harness.to_jax(x, np.asarray(w), np.asarray(b))
        return (lambda *a: jax.block_until_ready(fn(*a))), (jx, jw, jb)
    raise harness.Skip(f"no {backend} version")


def bytes_moved(case) -> int:
    """The bytes that must move: the inputs read once, the array gradients written once."""
    arrays = 3 if case["wb"] == "array" else 1  # x, w, b or just x; their gradients likewise
    return case["n"] * np.dtype(case["dtype"]).itemsize * arrays * (1 if case["mode"] == "fwd" else 2)


def _against_probe(times, gbs, moved):
    """Three cells: graphc's median time, the triad's median and graphc / floor (median of the
    per-round ratios, with quartiles), from samples paired by round (up to the shorter list: a
    worker that failed stopped sampling); "n/a" where there are no probe samples."""
    pairs = list(zip(times or (), gbs or ()))
    if not pairs:
        return ["n/a"] * 3
    times, gbs = np.array(pairs).T
    q25, q50, q75 = np.percentile(times * gbs * 1e9 / moved, [25, 50, 75])
    return [harness.fmt_time(float(np.median(times))), f"{np.median(gbs):.1f} GB/s",
            f"{q50:.2f} ({q25:.2f}-{q75:.2f})"]


def summarize(results):
    start_gbs = results.get("machine", {}).get("limits", {}).get("triad_gbs")
    lines = ["#### graphc against the bandwidth floor and the targets", "",
             "floor = bytes that must move / triad bandwidth. *Rounds*: graphc's samples in the "
             "round-robin with the peers, each over the floor from the triad sample taken right after "
             "it (median and quartiles of those ratios). *Solo*: graphc and the triad alone, "
             "alternated, after the round-robin and a pause (harness.SOLO_PAUSE_S): what graphc "
             "gets with no peer's memory churn in between. *Start*: graphc's round-robin median over "
             "the floor from the triad measured once at the start of the run.",
             "",
             "| case | rounds: graphc | triad | graphc / floor | solo: graphc | triad | graphc / floor "
             "| start: graphc / floor | vs NumPy | vs best of torch.compile, jax.jit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in results["cases"]:
        case = entry["case"]
        g = entry["backends"].get("graphc", {})
        if not g.get("median_s"):
            continue
        moved = bytes_moved(case)
        peers = [entry["backends"].get(p, {}).get("median_s") for p in ("torch.compile", "jax.jit")]
        peers = [p for p in peers if p]
        vs_peer = f"{min(peers) / g['median_s']:.1f}x" if peers else "n/a"
        start = f"{g['median_s'] * start_gbs * 1e9 / moved:.2f}" if start_gbs else "n/a"
        probe = entry.get("probe", {})
        cells = (_against_probe(g["samples"], probe.get("gbs"), moved)
                 + _against_probe(g.get("solo_samples"), probe.get("solo_gbs"), moved))
        lines.append(f"| {harness.case_label(case)} | " + " | ".join(cells) +
                     f" | {start} | {g.get('speedup_vs_numpy', float('nan')):.1f}x | {vs_peer} |")
    return lines


if __name__ == "__main__":
    harness.main(__name__)
