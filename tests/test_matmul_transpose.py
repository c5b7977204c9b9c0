"""matmul's transpose_a/transpose_b flags and the rewrites that use them (no transposed copies)."""
import numpy as np
import pytest

import graphc as gc
from graphc.interpret import interpret
from graphc.ops.linalg import matmul_t
from graphc.testing import check_grads

R = np.random.default_rng(7)
FLAGS = [(False, False), (True, False), (False, True), (True, True)]


def _np(a, b, ta, tb):
    return np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)


@pytest.mark.parametrize("ta,tb", FLAGS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_flags_match_numpy(ta, tb, dtype):
    a = (R.standard_normal((2, 4, 3) if ta else (2, 3, 4)) * 3).astype(dtype)
    b = (R.standard_normal((1, 5, 4) if tb else (1, 4, 5)) * 3).astype(dtype)
    f = gc.trace(lambda a, b: matmul_t(a, b, ta, tb))
    out = f(a, b)
    np.testing.assert_allclose(out, _np(a, b, ta, tb), rtol=1e-5)
    np.testing.assert_allclose(interpret(f.graph, a, b)[0], out, rtol=1e-5)
    assert out.dtype == np.dtype(dtype)


@pytest.mark.parametrize("ta,tb", FLAGS)
def test_flag_gradients_second_order(ta, tb):
    a = R.standard_normal((4, 3) if ta else (3, 4))
    b = R.standard_normal((5, 4) if tb else (4, 5))
    check_grads(lambda a, b: np.sum(np.tanh(matmul_t(a, b, ta, tb))), (a, b), order=2)


def test_linear_layer_step_has_no_transposes():
    def loss(w, x):
        return np.sum(np.tanh(x @ w.T) ** 2)

    w, x = R.standard_normal((6, 5)), R.standard_normal((5, 5))  # square x: types cannot tell
    f = gc.value_and_grad(loss)
    value, grad = f(w, x)
    ops = [n.op for n in f.graph.nodes]
    assert "transpose" not in ops, f.graph
    ref = gc.value_and_grad(loss, passes="O0")(w, x)
    np.testing.assert_allclose(value, ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-12)


def test_transposed_product_used_twice_is_not_recomputed():
    f = gc.trace(lambda a, b: (a @ b, (a @ b).T))
    a, b = R.standard_normal((3, 4)), R.standard_normal((4, 2))
    p, pt = f(a, b)
    np.testing.assert_allclose(pt, (a @ b).T, rtol=1e-12)
    assert [n.op for n in f.graph.nodes].count("matmul") == 1
