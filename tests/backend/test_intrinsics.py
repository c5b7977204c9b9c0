"""The inline helpers of generated code: BLAS gemm (graphc.backend.blas) and
empty_c / zeros_c / reshape_c (graphc.backend.intrinsics), called from small
njit functions, against NumPy; and matmul graphs that go through them."""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

import graphc as gc
from graphc.backend.blas import gemm
from graphc.backend.intrinsics import empty_c, offsets_c, reshape_c, zeros_c
from graphc.ops.linalg import matmul_t

FLAGS = [(False, False), (True, False), (False, True), (True, True)]
# (m, k, n): op(a) is m x k, op(b) is k x n; non-square, size-1 and empty dimensions
SHAPES = [(3, 4, 5), (7, 2, 3), (1, 4, 5), (3, 1, 5), (3, 4, 1), (1, 1, 1), (0, 4, 5), (3, 0, 5), (3, 4, 0),
          (0, 0, 0), (64, 784, 256)]


@njit
def _mm(a, b, out, ta, tb):
    gemm(a, b, out, ta, tb)


def _operands(m, k, n, ta, tb, dtype, rng):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta,tb", FLAGS)
def test_gemm_matches_numpy(ta, tb, dtype, rng):
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    for m, k, n in SHAPES:
        a, b = _operands(m, k, n, ta, tb, dtype, rng)
        out = np.full((m, n), np.nan, dtype)  # never read: NaN must not leak into the result
        _mm(a, b, out, ta, tb)
        want = (a.T if ta else a) @ (b.T if tb else b)
        np.testing.assert_allclose(out, want, err_msg=f"{(m, k, n)}", **tol)


def test_gemm_reads_batch_slices_in_place(rng):
    @njit
    def batched(a, b, out):
        for i in range(a.shape[0]):
            gemm(a[i], b[0], out[i], False, True)

    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((1, 6, 5))
    out = np.empty((3, 4, 6))
    batched(a, b, out)
    np.testing.assert_allclose(out, a @ np.swapaxes(b, -1, -2), rtol=1e-12)


@pytest.mark.parametrize("ta,tb", FLAGS)
def test_gemm_checks_shapes(ta, tb, rng):
    a, b = _operands(3, 4, 5, ta, tb, "float64", rng)
    with pytest.raises(ValueError, match="gemm"):
        _mm(a, b, np.empty((3, 6)), ta, tb)
    with pytest.raises(ValueError, match="gemm"):
        _mm(a, b, np.empty((2, 5)), ta, tb)
    wrong_k = rng.standard_normal((6, 5) if not tb else (5, 6))
    with pytest.raises(ValueError, match="gemm"):
        _mm(a, wrong_k, np.empty((3, 5)), ta, tb)


@pytest.mark.parametrize("args", [
    (np.ones((2, 2), np.int64), np.ones((2, 2), np.int64), np.ones((2, 2), np.int64)),  # BLAS has no ints
    (np.ones((2, 2), np.float32), np.ones((2, 2)), np.ones((2, 2))),  # mixed dtypes
    (np.ones((4, 4))[:, ::2], np.ones((2, 2)), np.ones((4, 2))),  # not C-contiguous
    (np.ones(2), np.ones((2, 2)), np.ones((1, 2))),  # not 2-D
], ids=["int", "mixed", "strided", "1d"])
def test_gemm_rejects_what_blas_cannot_read(args):
    with pytest.raises(TypingError):
        _mm(*args, False, False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_empty_and_zeros(dtype):
    @njit
    def make():
        return empty_c((3, 4), dtype), zeros_c((2, 3, 5), dtype), zeros_c((0, 7), dtype), empty_c((6,), dtype)

    e, z, z0, e1 = make()
    assert (e.shape, z.shape, z0.shape, e1.shape) == ((3, 4), (2, 3, 5), (0, 7), (6,))
    for arr in (e, z, z0, e1):
        assert arr.dtype == np.dtype(dtype) and arr.flags.c_contiguous and arr.flags.writeable
    assert not z.any()
    e[...] = 1  # a real buffer of its own
    assert e.sum() == 12


def test_reshape_c_is_a_view():
    @njit
    def views(a):
        flat = reshape_c(a, (a.size,))
        flat[0] = -1.0
        return flat, reshape_c(a, (2, 1, 3)), reshape_c(a, (6, 1))

    a = np.arange(6.0).reshape(3, 2)
    flat, r3, r2 = views(a)
    assert a[0, 0] == -1.0  # written through the view
    np.testing.assert_array_equal(flat, a.reshape(-1))
    np.testing.assert_array_equal(r3, a.reshape(2, 1, 3))
    np.testing.assert_array_equal(r2, a.reshape(6, 1))
    assert r3.strides == a.reshape(2, 1, 3).strides
    del a
    assert flat.sum() == 14.0  # the views keep the buffer alive


def test_reshape_c_keeps_read_only_and_rejects_strided():
    a = np.arange(6.0)
    a.flags.writeable = False

    @njit
    def first(x):
        return reshape_c(x, (2, 3))[1, 0]

    assert first(a) == 3.0
    with pytest.raises(TypingError):
        first(np.arange(12.0)[::2])


# -- graphs: matmul goes to gemm, including the awkward shapes ------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_graphs_call_gemm(dtype, rng):
    cases = [((3, 4), (4, 5)), ((1, 4), (4, 1)), ((0, 4), (4, 5)), ((3, 0), (0, 5)), ((3, 4), (4, 0)),
             ((2, 3, 4), (1, 4, 5)), ((2, 0, 4), (2, 4, 3))]
    for sa, sb in cases:
        for ta, tb in FLAGS:
            a = rng.standard_normal(sa[:-2] + (sa[-1], sa[-2]) if ta else sa).astype(dtype)
            b = rng.standard_normal(sb[:-2] + (sb[-1], sb[-2]) if tb else sb).astype(dtype)
            f = gc.trace(lambda a, b, ta=ta, tb=tb: matmul_t(a, b, ta, tb))
            out = f(a, b)
            want = np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)
            assert out.dtype == np.dtype(dtype) and out.shape == want.shape
            np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
            source = f._last.compiled.source
            assert "gemm(" in source and "np.dot" not in source


def test_vector_and_integer_products(rng):
    v, m = rng.standard_normal(4), rng.standard_normal((4, 3))
    f = gc.trace(lambda v, m: (v @ m, m.T @ v, v @ v, np.outer(v, v)))
    for got, want in zip(f(v, m), (v @ m, m.T @ v, v @ v, np.outer(v, v))):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    ai, bi = rng.integers(-5, 5, (3, 4)), rng.integers(-5, 5, (4, 2))
    g = gc.trace(lambda a, b: a @ b)
    np.testing.assert_array_equal(g(ai, bi), ai @ bi)
    assert "gemm" not in g._last.compiled.source  # integers stay loops


def test_empty_too_big_raises():
    @njit
    def huge(n):
        return empty_c((n, n, 8), np.float64)

    with pytest.raises(ValueError, match="too big"):
        huge(2**31)
    assert huge(2).shape == (2, 2, 8)


def test_offsets_c_passes_integers_that_are_no_literals():
    """A callee taking offsets_c's tuple compiles once for every value (an integer literal
    argument would compile it once per value: graphc.backend.outline relies on this)."""
    @njit
    def callee(offsets):
        return offsets[0] + offsets[1]

    @njit
    def caller():
        return callee(offsets_c((1, 2))) + callee(offsets_c((30, 40))) + callee(offsets_c((np.int32(5), 6)))

    assert caller() == 84
    assert len(callee.signatures) == 1
