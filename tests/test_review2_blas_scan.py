"""Second hostile review of blas.prepare (Numba's registries loaded with ensure_blas answered by the
extension file, gemm addresses through ctypes), the background trace key, and scan gradients with a
symbolic length or batch (dynamic=).

Found: a scan's gradient under dynamic= compiled again for every length (or batch) and could not
be exported for every batch: the weights' long product over the stacked rows was made at a call's
own sizes but not at the probe sizes, so the template never held (fixed: no trace compared for
every size makes it, graphc.context.for_every_size). And a Hessian-vector product through a scan
under dynamic B raised NotGeneric: a zero cotangent of shape (B, 5) made a constant array in a
backward body (fixed: autodiff makes a uniform constant a broadcast scalar)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.backend import background
from graphc.runtime import is_dynamic
from graphc.trace import trace_into_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(11)
W = RNG.standard_normal((3, 3)) * 0.3
U = RNG.standard_normal((5, 3)) * 0.3


def _rnn_loss(w, u, h0, xs):
    def cell(h, x):
        h = np.tanh(h @ w + x @ u)
        return h, h
    return np.sum(gc.scan(cell, h0, xs)[1] ** 2)


_GRAD = gc.value_and_grad(_rnn_loss, argnums=(0, 1, 2, 3))


def _check_against_eager(f, args):
    (value, grads), (want, wants) = f(*args), _GRAD(*args)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    for g, e in zip(grads, wants):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_the_gradient_of_a_scan_of_symbolic_length_compiles_once_for_every_length():
    f = gc.trace(lambda w, u, h0, xs: _GRAD(w, u, h0, xs), dynamic={"xs": {0: "T"}})
    for t in (3, 7):  # (the values at every T, from one compile)
        _check_against_eager(f, (W, U, RNG.standard_normal((2, 3)), RNG.standard_normal((t, 2, 5))))
    assert f.signatures == 1


def test_the_gradient_of_a_scan_of_symbolic_batch_compiles_once_for_every_batch():
    f = gc.trace(lambda w, u, h0, xs: _GRAD(w, u, h0, xs), dynamic={"xs": {1: "B"}, "h0": {0: "B"}})
    for b in (2, 4):
        _check_against_eager(f, (W, U, RNG.standard_normal((b, 3)), RNG.standard_normal((6, b, 5))))
    assert f.signatures == 1


def test_an_rnn_gradient_saves_for_every_batch(tmp_path):
    def step(h0, xs_by_batch, w, u):  # (batch leading, as gc.save's dynamic=True reads it)
        return _GRAD(w, u, h0, np.swapaxes(xs_by_batch, 0, 1))
    path = str(tmp_path / "rnn_grad.gcx")
    gc.save(gc.trace(step), path, RNG.standard_normal((2, 3)), RNG.standard_normal((2, 6, 5)), W, U)
    loaded = gc.load(path)
    for b in (2, 5):
        args = (RNG.standard_normal((b, 3)), RNG.standard_normal((b, 6, 5)), W, U)
        (value, grads), (want, wants) = loaded(*args), step(*args)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        for g, e in zip(grads, wants):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_a_hessian_vector_product_through_a_scan_of_symbolic_batch_traces():
    v = RNG.standard_normal((3, 3))
    grad_w = gc.grad(_rnn_loss, argnums=0)
    hvp = gc.grad(lambda w, u, h0, xs: np.sum(grad_w(w, u, h0, xs) * v), argnums=(0, 1, 2, 3))
    f = gc.trace(lambda w, u, h0, xs: hvp(w, u, h0, xs), dynamic={"xs": {1: "B"}, "h0": {0: "B"}})
    for b in (2, 4):
        args = (W, U, RNG.standard_normal((b, 3)), RNG.standard_normal((3, b, 5)))
        for got, want in zip(f(*args), hvp(*args)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _key_of(fn, n):
    builder, _ = trace_into_graph(fn, (np.ones(n),), {}, is_dynamic, "f")
    return background.trace_key(builder.graph, "O2", {}, ["f8"], False)


@pytest.mark.parametrize("n", [64, 65])
def test_the_trace_key_tells_apart_constants_in_a_loop_body_either_side_of_the_digest_size(n):
    """A constant read inside a loop body (a region) at 64 elements (printed) and 65 (digested):
    one element's value, or the sign of one zero, makes another key."""
    base = np.zeros(n)
    changed, signed = base.copy(), base.copy()
    changed[-1] = 1e-300
    signed[0] = -0.0

    def looped(c):
        return lambda x: gc.fori_loop(0, 3, lambda i, v: v * c + 1.0, x)
    keys = [_key_of(looped(c), n) for c in (base, base.copy(), changed, signed)]
    assert keys[0] == keys[1] and len(set(keys)) == 3


def _child(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_COMPILE="eager")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)


# prepare's fallback (the extension's shared library cannot be opened: cython_blas's own addresses),
# then a user's @njit np.dot compiled after graphc: Numba's real ensure_blas is back, dot works and
# raises Numba's own errors
FALLBACK_CHILD = """
import numpy as np, numba
from graphc.backend import blas
blas._extension_path = lambda: "/nonexistent/cython_blas.so"
import graphc as gc
f = gc.trace(lambda a, b: a @ b.T)
for dtype in (np.float32, np.float64):
    a, b = np.arange(12, dtype=dtype).reshape(3, 4), np.arange(8, dtype=dtype).reshape(2, 4)
    got = f(a, b)
    assert got.dtype == dtype and np.array_equal(got, a @ b.T), got
from numba.np import arraymath, linalg
assert linalg.ensure_blas.__name__ == "ensure_blas" and arraymath.ensure_blas is linalg.ensure_blas
assert arraymath._HAVE_BLAS
dot = numba.njit(lambda a, b: np.dot(a, b))
x = np.arange(6.0).reshape(2, 3)
assert np.array_equal(dot(x, x.T), x @ x.T)
try:
    dot(x, x)
except ValueError as exc:
    print("ValueError", "np.dot" in str(exc))
"""


def test_prepare_falls_back_to_cython_blas_and_leaves_numbas_blas_check_real(tmp_path):
    proc = _child(FALLBACK_CHILD, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ValueError", "True"], proc.stdout
