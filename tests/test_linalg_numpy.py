"""NumPy's linear algebra on traced values: einsum, tensordot, dot above 2-D, inner, vdot, kron,
trace, diagonal, diag, tril, triu, eye, and np.linalg's decompositions with their gradients.

Compiled == interpreter == NumPy (tests/conftest.py); a few groups compile, one graph each,
the rest run through the interpreter on the traced and optimized graphs. Gradients pass
``check_grads(order=2)``.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads
from conftest import Case, check_cases, check_interpreted, raw_graph

R = np.random.default_rng(7)
TOL = dict(rtol=1e-5, atol=1e-5)


def A(*shape, dtype="float64"):
    x = R.standard_normal(shape) * 2
    return (np.round(x) if np.dtype(dtype).kind in "iu" else x).astype(dtype)


def _einsum(sub):
    fn = lambda *xs: np.einsum(sub, *xs)  # noqa: E731
    fn.__name__ = f"einsum {sub!r}"
    return fn


EINSUM = [
    ("ij,jk->ik", A(2, 3), A(3, 4)), ("ij,jk", A(2, 3), A(3, 4)), ("ii", A(3, 3)), ("ii->i", A(3, 3)),
    ("ij->ji", A(2, 3)), ("ba", A(2, 3)), ("ij->", A(2, 3)), ("i,i", A(3), A(3)), ("i,j->ij", A(3), A(2)),
    ("bij,bjk->bik", A(5, 2, 3), A(5, 3, 4)), ("...ij,...jk->...ik", A(5, 2, 3), A(3, 4)),
    ("...ii->...i", A(2, 3, 3)), ("iij->j", A(3, 3, 2)), ("ijk,jil->kl", A(2, 3, 4), A(3, 2, 5)),
    ("ij,ij->ij", A(2, 3), A(2, 3)), ("ij,ij->", A(2, 3), A(2, 3)), ("i,j,k->ijk", A(2), A(3), A(4)),
    ("ij,jk,kl->il", A(2, 3), A(3, 4), A(4, 5)), ("ij,kj->ik", A(2, 3), A(4, 3)), ("ji,jk->ik", A(3, 2), A(3, 4)),
    ("ij,j->i", A(2, 1), A(3)), ("...,...->...", A(2, 3), A(3)), (",ij->ij", A(), A(2, 3)),
    ("ij,jk->ik", A(2, 3, dtype="int32"), A(3, 4, dtype="int32")), ("ij->i", A(2, 3, dtype="int32")),
    ("ij,jk->ik", A(2, 3, dtype="float32"), A(3, 4)), ("ij,jk->ik", A(2, 3, dtype="float32"), A(3, 4, dtype="float32")),
    ("ij,jk->ik", A(0, 3), A(3, 4)), ("ij,jk->ik", A(2, 0), A(0, 4)), ("iji->j", A(2, 3, 2)),
    ("bn,anm,bm->ba", A(2, 3), A(4, 3, 5), A(2, 5)), ("i...,i...->...", A(3, 2), A(3, 2)),
    ("Ab,bA->", A(2, 3), A(3, 2)), ("ij,jk->ik", A(2, 3) > 0, A(3, 4) > 0),
    ("ij,jk->ik", np.array([[np.inf, 1.0]]), np.array([[1.0], [np.nan]])),
]
# a representative few compile (einsum lowers to existing primitives, tested compiled elsewhere)
EINSUM_JIT = {0, 2, 3, 10, 13, 17, 20, 23, 26, 30}
# the cases that sum over a subscript two operands share: one matmul
EINSUM_MATMUL = {0, 1, 7, 9, 10, 13, 15, 17, 18, 19, 20, 23, 25, 26, 27, 28, 30, 31, 32, 33, 34}
EINSUM_CASES = [Case(f"einsum {sub!r} {[a.shape for a in args]} {args[0].dtype}", _einsum(sub), args,
                     tol=TOL, jit=k in EINSUM_JIT, ops=("matmul",) if k in EINSUM_MATMUL else ())
                for k, (sub, *args) in enumerate(EINSUM)]


def _named(fn, name):
    fn.__name__ = name
    return fn


FUNCTIONS = [
    Case("tensordot", np.tensordot, (A(2, 3, 4), A(3, 4, 5)), tol=TOL),
    Case("tensordot pairs", _named(lambda a, b: np.tensordot(a, b, axes=([0, 2], [2, 0])), "td"), (A(2, 3, 4), A(4, 5, 2)), tol=TOL),
    Case("tensordot 0", _named(lambda a, b: np.tensordot(a, b, 0), "td0"), (A(2), A(3)), tol=TOL, jit=False),
    Case("np.linalg.tensordot", _named(lambda a, b: np.linalg.tensordot(a, b, axes=1), "ltd"), (A(2, 3), A(3, 4)), tol=TOL, jit=False),
    Case("inner 2d", np.inner, (A(2, 3), A(4, 3)), tol=TOL),
    Case("inner 1d", np.inner, (A(3), A(3)), tol=TOL, jit=False),
    Case("inner 0d", np.inner, (A(), A(3)), tol=TOL, jit=False),
    Case("vdot", np.vdot, (A(2, 3), A(3, 2)), tol=TOL),
    Case("vdot int", np.vdot, (A(2, 3, dtype="int64"), A(6, dtype="int32")), jit=False),
    Case("kron", np.kron, (A(2, 3), A(4, 5)), tol=TOL),
    Case("kron 1d 2d", np.kron, (A(2), A(3, 4)), tol=TOL, jit=False),
    Case("kron 0d", np.kron, (A(), A(3)), tol=TOL, jit=False),
    Case("kron int f32", np.kron, (A(2, 2, dtype="int32"), A(3, dtype="float32")), tol=TOL, jit=False),
    Case("trace", np.trace, (A(3, 4),), tol=TOL),
    Case("trace offset", _named(lambda a: np.trace(a, 1), "tr1"), (A(3, 4),), tol=TOL, jit=False),
    Case("trace axes", _named(lambda a: np.trace(a, -2, 2, 0), "tr2"), (A(3, 4, 5),), tol=TOL),
    Case("trace empty", _named(lambda a: np.trace(a, 7), "tr7"), (A(3, 4),), tol=TOL, jit=False),
    Case("trace int32", np.trace, (A(3, 3, dtype="int32"),), jit=False),
    Case("trace bool", np.trace, (A(3, 3) > 0,), jit=False),
    Case("diagonal", _named(lambda a: np.diagonal(a, 1, 0, 2), "dg"), (A(3, 4, 5),), tol=TOL),
    Case("diag 1d", np.diag, (A(3),), tol=TOL),
    Case("diag 1d k=2", _named(lambda a: np.diag(a, 2), "d2"), (A(3),), tol=TOL),
    Case("diag 1d k=-1", _named(lambda a: np.diag(a, -1), "dm1"), (A(3, dtype="int32"),), jit=False),
    Case("diag 2d k=-1", _named(lambda a: np.diag(a, -1), "dd"), (A(3, 4),), tol=TOL, jit=False),
    Case("diag 2d k=5", _named(lambda a: np.diag(a, 5), "d5"), (A(3, 4),), tol=TOL, jit=False),
    Case("diag of inf", np.diag, (np.array([np.inf, -np.inf, np.nan]),), jit=False),
    Case("tril", np.tril, (A(3, 4),), tol=TOL),
    Case("tril batch k=-1", _named(lambda a: np.tril(a, -1), "tl"), (A(2, 3, 4, dtype="float32"),), tol=TOL),
    Case("triu k=1", _named(lambda a: np.triu(a, 1), "tu"), (A(3, 4),), tol=TOL, jit=False),
    Case("triu 1d", np.triu, (A(4),), tol=TOL, jit=False),
    Case("triu inf", np.triu, (np.array([[np.inf, np.nan], [np.nan, -np.inf]]),), jit=False),
    Case("dot 3d 3d", np.dot, (A(2, 3, 4), A(5, 4, 6)), tol=TOL),
    Case("dot 3d 1d", np.dot, (A(2, 3, 4), A(4)), tol=TOL, jit=False),
    Case("dot 1d 3d", np.dot, (A(4), A(2, 4, 3)), tol=TOL, jit=False),
    Case("dot 2d 3d", np.dot, (A(3, 4), A(2, 4, 3)), tol=TOL, jit=False),
    Case("dot 3d int", np.dot, (A(2, 2, 3, dtype="int64"), A(3, 2, dtype="int64")), jit=False),
    Case("np.linalg.trace", np.linalg.trace, (A(2, 3, 3),), tol=TOL, jit=False),
    Case("np.linalg.diagonal", np.linalg.diagonal, (A(2, 3, 4),), tol=TOL, jit=False),
    Case("eye", _named(lambda a: np.tril(a) + np.eye(3), "eye"), (A(3, 3),), tol=TOL, jit=False),
    Case("gc.eye f32", _named(lambda a: a @ gc.eye(3, 4, 1, dtype=np.float32), "eye32"), (A(2, 3, dtype="float32"),),
         ref=lambda a: a @ np.eye(3, 4, 1, dtype=np.float32), tol=TOL, jit=False),
    Case("matmul 1d @ 3d", np.matmul, (A(4), A(2, 4, 3)), tol=TOL, jit=False),
    # NumPy's array functions np.asarray their operands: a Python number is float64/int64 there
    Case("dot f32 x python float", np.dot, (A(3, dtype="float32"), 2.0), jit=False),
    Case("dot f32 x constant float", _named(lambda x: np.dot(x, 2.0), "dc"), (A(3, dtype="float32"),), jit=False),
    Case("inner i32 x python int", np.inner, (A(3, dtype="int32"), 2), jit=False),
    Case("kron f32 x python float", np.kron, (A(3, dtype="float32"), 2.0), jit=False),
    Case("outer f32 x python float", np.outer, (A(3, dtype="float32"), 2.0), jit=False),
    Case("tensordot f32 x python float", _named(lambda x, y: np.tensordot(x, y, 0), "tds"), (A(3, dtype="float32"), 2.0), jit=False),
    Case("einsum f32 x python float", _named(lambda x, y: np.einsum("i,->i", x, y), "es"), (A(3, dtype="float32"), 2.0), jit=False),
    Case("vecdot f32 x f64", np.linalg.vecdot, (A(3, dtype="float32"), A(3)), jit=False, tol=TOL),
    Case("einsum dtype", _named(lambda x: np.einsum("ij->j", x, dtype=np.float64), "edt"), (A(2, 3, dtype="int32"),), jit=False),
    Case("einsum optimize", _named(lambda x, y, z: np.einsum("ij,jk,kl->il", x, y, z, optimize=True), "eopt"),
         (A(2, 3), A(3, 4), A(4, 5)), tol=TOL, jit=False),
    Case("einsum int32 wraps", _named(lambda x: np.einsum("i->", x), "ewrap"), (np.full(4, 2**30, np.int32),), jit=False),
    Case("matmul 3d @ 1d", np.matmul, (A(2, 3, 4), A(4)), tol=TOL, jit=False),
]
_ALL = EINSUM_CASES + FUNCTIONS
_JIT = [c for c in _ALL if c.jit]
COMPILED = {f"chunk{k}": _JIT[k::3] for k in range(3)}


@pytest.mark.parametrize("name", list(COMPILED))
def test_compiled(name):
    check_cases(COMPILED[name])


def test_interpreted():
    check_interpreted(_ALL)


def test_traced_ops():
    for case in _ALL:
        if case.ops:
            ops = {n.op for n in raw_graph(case.fn, *case.args).nodes}
            assert set(case.ops) <= ops, f"{case.name}: expected {case.ops}, traced {sorted(ops)}"


def test_einsum_interleaved_form():
    a, b = A(2, 3), A(3, 4)
    check_interpreted([Case("sublists", lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]), (a, b),
                            ref=lambda a, b: a @ b, tol=TOL),
                       Case("sublists implicit", lambda a, b: np.einsum(a, [0, 1], b, [1, 2]), (a, b),
                            ref=lambda a, b: a @ b, tol=TOL)])


def test_dot_above_2d_is_not_matmul():
    a, b = A(2, 3, 4), A(5, 4, 6)
    out = gc.trace(np.dot)(a, b)
    assert out.shape == (2, 3, 5, 6) == np.dot(a, b).shape != np.matmul(a[:, None], b).shape


@pytest.mark.parametrize("fn,args,match", [
    (lambda a, b: np.einsum("ij,jk->ik", a, b), (A(2, 3), A(4, 5)), "broadcast"),
    (lambda a: np.einsum("ij->k", a), (A(2, 3),), "must be distinct and appear"),
    (lambda a: np.einsum("ii->i", a), (A(2, 3),), "repeated subscript"),
    (lambda a: np.einsum("ij", a), (A(2, 3, 4),), "subscripts"),
    (lambda a: np.einsum("...ij->ij", a), (A(5, 2, 3),), "no '...'"),
    (lambda a: np.einsum("ij,jk", a), (A(2, 3),), "2 operand subscripts"),
    (lambda a, b: np.tensordot(a, b), (A(2, 3), A(3, 2)), "shape-mismatch"),
    (lambda a, b: np.dot(a, b), (A(2, 3, 4), A(3, 4)), "not aligned"),
    (lambda a, b: np.inner(a, b), (A(2, 3), A(2)), "not aligned"),
    (lambda a, b: np.vdot(a, b), (A(2, 3), A(5)), "different lengths"),
    (lambda a: np.diag(a), (A(2, 3, 4),), "1- or 2-d"),
    (lambda a: np.diagonal(a, 0, 1, 1), (A(2, 3),), "cannot be the same"),
])
def test_errors_name_the_problem(fn, args, match):
    args = tuple(a for a in args if a is not None)
    with pytest.raises(gc.ShapeError, match=match):
        raw_graph(fn, *args)


GRADS = [
    ("einsum matmul-chain", lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c), (A(2, 3), A(3, 4), A(4, 2))),
    ("einsum trace", lambda a: np.sin(np.einsum("ii", a)), (A(3, 3),)),
    ("einsum diag batch", lambda a, b: np.einsum("...ii,...i->...", a, b) ** 2, (A(2, 3, 3), A(3))),
    ("einsum broadcast", lambda a, b: np.einsum("ij,j->ij", a, b) ** 2, (A(2, 1), A(3))),
    ("tensordot", lambda a, b: np.tanh(np.tensordot(a, b, axes=([0, 2], [2, 0]))), (A(2, 3, 4), A(4, 5, 2))),
    ("dot 3d", lambda a, b: np.tanh(np.dot(a, b)), (A(2, 3, 4), A(5, 4, 2))),
    ("inner vdot", lambda a, b: np.inner(a, b) ** 2 + np.vdot(a, a), (A(2, 3), A(4, 3))),
    ("kron", lambda a, b: np.kron(a, b) ** 2, (A(2, 3), A(2, 2))),
    ("trace diag", lambda a, v: np.trace(a, -1) ** 2 + np.sum(np.diag(v, 1) * np.tril(a[:4, :4])) ** 2,
     (A(4, 4), A(3))),
    ("triu diagonal", lambda a: np.sin(np.triu(a, 1) + np.diagonal(a, 0, 0, 1)), (A(3, 3),)),
    ("matrix_power multi_dot vecdot", lambda a, b: np.tanh(np.linalg.matrix_power(a, 3) @ np.linalg.multi_dot(
        [a, b, b.T]) + np.linalg.vecdot(a, b[:, 0])), (A(3, 3) * 0.5, A(3, 2))),
]


@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=n) for n, f, a in GRADS])
def test_gradients(fn, args):
    check_grads(fn, args, order=2)


def test_gradient_compiled():
    check_grads(lambda a, b: np.einsum("bij,bjk->bik", a, np.tril(b)) ** 2, (A(2, 3, 4), A(2, 4, 4)),
                order=1, compiled=True)


# -- np.linalg's solvers and decompositions ------------------------------------------------
def spd(*shape, dtype="float64"):
    x = R.standard_normal(shape)
    return (x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def well(*shape, dtype="float64"):
    """A well-conditioned square stack (finite differences and float32 need one)."""
    return (R.standard_normal(shape) * 0.3 + 2 * np.eye(shape[-1])).astype(dtype)


def _rebuilt_eigh(a, uplo="L"):
    w, v = np.linalg.eigh(a, uplo)
    return (v * w[..., None, :]) @ np.swapaxes(v, -1, -2), w, v.T @ v if v.ndim == 2 else None


def _rebuilt_svd(a, full=False):
    u, s, vh = np.linalg.svd(a, full_matrices=full)
    k = s.shape[-1]
    return ((u[..., :, :k] * s[..., None, :]) @ vh[..., :k, :], s, np.swapaxes(u, -1, -2) @ u,
            vh @ np.swapaxes(vh, -1, -2))


LTOL = dict(rtol=1e-9, atol=1e-9)
L32 = dict(rtol=1e-4, atol=1e-4)
DECOMP = [
    Case("inv", np.linalg.inv, (A(3, 3),), tol=LTOL),
    Case("inv batch f32", np.linalg.inv, (well(2, 3, 3, dtype="float32"),), tol=L32),
    Case("inv int", np.linalg.inv, (np.array([[2, 1], [1, 3]], np.int32),), tol=LTOL),
    Case("inv 1x1", np.linalg.inv, (np.array([[4.0]]),), tol=LTOL),
    Case("inv empty", np.linalg.inv, (np.zeros((2, 0, 0)),)),
    Case("det", np.linalg.det, (A(3, 3),), tol=LTOL),
    Case("det batch f32", np.linalg.det, (well(2, 2, 3, 3, dtype="float32"),), tol=L32),
    Case("det singular", np.linalg.det, (np.ones((3, 3)),), tol=LTOL),
    Case("det empty", np.linalg.det, (np.zeros((2, 0, 0)),)),
    Case("slogdet", np.linalg.slogdet, (A(2, 3, 3),), tol=LTOL),
    Case("slogdet singular", np.linalg.slogdet, (np.zeros((3, 3)),), tol=LTOL),
    Case("slogdet f32", np.linalg.slogdet, (well(3, 3, dtype="float32"),), tol=L32),
    Case("solve vector", np.linalg.solve, (A(3, 3), A(3)), tol=LTOL),
    Case("solve matrix", np.linalg.solve, (A(3, 3), A(3, 2)), tol=LTOL),
    Case("solve broadcast", np.linalg.solve, (A(2, 1, 3, 3), A(4, 3, 2)), tol=LTOL),
    Case("solve batch vector", np.linalg.solve, (A(2, 3, 3), A(3)), tol=LTOL),
    Case("solve f32 int", np.linalg.solve, (well(3, 3, dtype="float32"), np.array([1, 2, 3], np.int32)), tol=LTOL),
    Case("solve f32", np.linalg.solve, (well(3, 3, dtype="float32"), A(3, dtype="float32")), tol=L32),
    Case("cholesky", np.linalg.cholesky, (spd(2, 3, 3),), tol=LTOL),
    Case("cholesky upper", _named(lambda a: np.linalg.cholesky(a, upper=True), "cu"), (spd(3, 3),), tol=LTOL),
    Case("cholesky reads the lower triangle", np.linalg.cholesky, (np.tril(spd(3, 3)),), tol=LTOL),
    Case("cholesky f32", np.linalg.cholesky, (spd(3, 3, dtype="float32"),), tol=L32),
    Case("eigh", _rebuilt_eigh, (A(3, 3),), tol=LTOL),
    Case("eigh U", _named(lambda a: _rebuilt_eigh(a, "U"), "eu"), (A(3, 3),), tol=LTOL),
    Case("eigh batch", _named(lambda a: _rebuilt_eigh(a)[:2], "eb"), (A(2, 4, 4),), tol=LTOL),
    Case("eigvalsh", np.linalg.eigvalsh, (A(2, 3, 3),), tol=LTOL),
    Case("eigvalsh f32", np.linalg.eigvalsh, (A(3, 3, dtype="float32"),), tol=L32),
    Case("eigvalsh degenerate", np.linalg.eigvalsh, (np.eye(3),), tol=LTOL),
    Case("svd tall", _rebuilt_svd, (A(4, 3),), tol=LTOL),
    Case("svd wide batch", _rebuilt_svd, (A(2, 3, 5),), tol=LTOL),
    Case("svd full", _named(lambda a: _rebuilt_svd(a, True), "sf"), (A(4, 2),), tol=LTOL),
    Case("svd rank 1", _named(lambda a: np.linalg.svd(a, compute_uv=False), "s1"), (np.ones((3, 2)),), tol=LTOL),
    Case("svdvals", np.linalg.svdvals, (A(2, 4, 3),), tol=LTOL),
    Case("svd f32", _named(lambda a: np.linalg.svd(a, compute_uv=False), "s32"), (A(3, 2, dtype="float32"),), tol=L32),
    Case("svd empty", np.linalg.svd, (np.zeros((0, 3)),)),
    Case("pinv", np.linalg.pinv, (A(4, 3),), tol=LTOL),
    Case("pinv wide batch", np.linalg.pinv, (A(2, 2, 3),), tol=LTOL),
    Case("pinv rank-deficient", np.linalg.pinv, (np.ones((3, 2)),), tol=LTOL),
    Case("pinv rcond", _named(lambda a: np.linalg.pinv(a, rcond=0.5), "pr"), (np.diag([4.0, 1.0, 3.0]),), tol=LTOL),
    Case("pinv rtol", _named(lambda a: np.linalg.pinv(a, rtol=None), "pt"), (A(3, 3),), tol=LTOL),
]


def test_decompositions_interpreted():
    check_interpreted(DECOMP)


def test_decompositions_keep_float32():
    for fn in (np.linalg.inv, np.linalg.det, np.linalg.cholesky, np.linalg.pinv, np.linalg.eigvalsh, np.linalg.svdvals):
        out = gc.interpret(raw_graph(fn, spd(3, 3, dtype="float32")), spd(3, 3, dtype="float32"))[0]
        assert out.dtype == np.float32, fn.__name__


def test_decomposition_errors_are_numpys_linalgerror():
    """Singular, not positive definite and non-finite input: numpy.linalg.LinAlgError from the
    compiled code and the interpreter alike, never a Numba error (det and cholesky refuse inf
    and NaN like the others, though Numba's own do not check)."""
    f = gc.trace(lambda a, b, c: (np.linalg.inv(a), np.linalg.cholesky(b), np.linalg.det(c)))
    eye = np.eye(3)
    got = f(2 * eye, eye, 3 * eye)
    np.testing.assert_allclose(got[0], 0.5 * eye)
    assert got[2] == pytest.approx(np.linalg.det(3 * eye), rel=1e-15)
    nan = np.full((3, 3), np.nan)
    bad = [((np.ones((3, 3)), eye, eye), "singular"), ((eye, -eye, eye), "positive definite"),
           ((nan, eye, eye), "infs or NaNs"), ((eye, np.diag([1.0, np.inf, 1.0]), eye), "infs or NaNs"),
           ((eye, nan, eye), "infs or NaNs"), ((eye, eye, np.diag([1.0, np.nan, 1.0])), "infs or NaNs")]
    for args, match in bad:
        with pytest.raises(np.linalg.LinAlgError, match=match):
            f(*args)
        with pytest.raises(np.linalg.LinAlgError):
            gc.interpret(f.graph, *args)
    np.testing.assert_allclose(f(eye, eye, eye)[1], eye)  # still usable after a failed call


@pytest.mark.parametrize("fn,args,match", [
    (np.linalg.inv, (A(2, 3),), "square"),
    (np.linalg.det, (A(3),), "at least two-dimensional"),
    (np.linalg.solve, (A(3, 3), A(4)), "does not fit"),
    (np.linalg.solve, (A(2, 3, 3), A(4, 3, 1)), "broadcast"),
])
def test_decomposition_shape_errors(fn, args, match):
    with pytest.raises(gc.ShapeError, match=match):
        raw_graph(fn, *args)


def test_svd_full_matrices_gradient_is_refused():
    def f(a):
        return np.sum(np.linalg.svd(a)[0] ** 2)
    with pytest.raises(gc.TraceError, match="full_matrices=True"):
        raw_graph(gc.grad(f), A(3, 2))


DECOMP_GRADS = [
    ("inv batch", lambda a: np.sin(np.linalg.inv(a)), (well(2, 3, 3),)),
    ("det", lambda a: np.linalg.det(a), (well(3, 3),)),
    ("slogdet negative", lambda a: np.linalg.slogdet(a)[1] * np.linalg.slogdet(a)[0], (-well(3, 3),)),
    ("solve vector broadcast", lambda a, b: np.sin(np.linalg.solve(a, b)), (well(2, 3, 3), A(3))),
    ("cholesky upper", lambda a: np.sin(np.linalg.cholesky(a, upper=True)), (spd(3, 3),)),
    ("cholesky of a gram", lambda x: np.sum(np.sin(np.linalg.cholesky(x @ x.T + 3 * np.eye(3)))), (A(3, 3),)),
    ("eigh batch", lambda a: (lambda w, v: np.sum(np.sin(v * v)) + np.sum(w ** 3))(*np.linalg.eigh(a)), (A(2, 3, 3),)),
    ("eigh U", lambda a: np.sin(np.linalg.eigvalsh(a, "U")), (A(3, 3),)),
    ("eigvalsh of a symmetric", lambda x: np.sin(np.linalg.eigvalsh(x + x.T)), (A(3, 3),)),
    ("svd wide", lambda a: (lambda u, s, vh: np.sum(np.sin(u * u)) + np.sum(np.cos(vh * vh)) + np.sum(s ** 3))(
        *np.linalg.svd(a, full_matrices=False)), (A(2, 3, 4),)),
    ("svd square full", lambda a: (lambda u, s, vh: np.sum(np.sin(u * u * s)) + np.sum(np.cos(vh * vh)))(
        *np.linalg.svd(a)), (A(3, 3),)),
    ("svdvals", lambda a: np.sin(np.linalg.svdvals(a)), (A(4, 3),)),
    ("pinv tall batch", lambda a: np.sin(np.linalg.pinv(a)), (A(2, 4, 3),)),
    ("pinv square", lambda a: np.sin(np.linalg.pinv(a)), (well(3, 3),)),
]


@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=n) for n, f, a in DECOMP_GRADS])
def test_decomposition_gradients(fn, args):
    check_grads(fn, args, order=2)


def test_degenerate_values_give_finite_gradients_of_basis_free_functions():
    """At repeated eigenvalues (singular values) functions of the values alone keep finite,
    correct gradients: the terms with a zero gap are dropped."""
    g = gc.interpret(raw_graph(gc.grad(lambda a: np.sum(np.linalg.eigvalsh(a) ** 2)), np.eye(3)), np.eye(3))[0]
    np.testing.assert_allclose(g, 2 * np.tril(np.eye(3)) + 0 * g)  # d/dA sum(w^2) = 2A (lower read)
    g = gc.interpret(raw_graph(gc.grad(lambda a: np.sum(np.linalg.svdvals(a))), np.eye(3)), np.eye(3))[0]
    np.testing.assert_allclose(g, np.eye(3))  # d/dA nuclear norm = U V^T


def test_decomposition_gradients_compiled():
    check_grads(lambda a, b: np.sum(np.sin(np.linalg.solve(a, b))) + np.linalg.slogdet(a)[1],
                (well(2, 3, 3), A(3, 2)), order=1, compiled=True)



ARRAY_API = [
    Case("np.linalg.matmul", np.linalg.matmul, (A(2, 3, 4), A(4, 2)), tol=TOL),
    Case("np.linalg.outer", np.linalg.outer, (A(3), A(2)), tol=TOL),
    Case("matrix_transpose", np.linalg.matrix_transpose, (A(2, 3, 4),)),
    Case("vecdot", np.linalg.vecdot, (A(2, 3), A(3)), tol=TOL),
    Case("vecdot axis int32", _named(lambda a, b: np.linalg.vecdot(a, b, axis=0), "vd"), (A(3, 2, dtype="int32"), A(3, 1, dtype="int32"))),
    Case("vecdot bool", np.linalg.vecdot, (A(2, 3) > 0, A(2, 3) > 0)),
    Case("multi_dot", _named(lambda a, b, c, d: np.linalg.multi_dot([a, b, c, d]), "md"), (A(3), A(3, 5), A(5, 2), A(2, 4)), tol=TOL),
    Case("multi_dot 3", _named(lambda a, b, c: np.linalg.multi_dot([a, b, c]), "md3"), (A(6, 2), A(2, 5), A(5)), tol=TOL),
    Case("multi_dot 2", _named(lambda a, b: np.linalg.multi_dot([a, b]), "md2"), (A(2, 3), A(3, 2)), tol=TOL),
    Case("matrix_power 5", _named(lambda a: np.linalg.matrix_power(a, 5), "mp5"), (A(2, 3, 3) * 0.5,), tol=TOL),
    Case("matrix_power 0 int", _named(lambda a: np.linalg.matrix_power(a, 0), "mp0"), (A(3, 3, dtype="int64"),)),
    Case("matrix_power -2", _named(lambda a: np.linalg.matrix_power(a, -2), "mpm2"), (well(3, 3),), tol=TOL),
    Case("matrix_power int", _named(lambda a: np.linalg.matrix_power(a, 3), "mp3"), (A(3, 3, dtype="int32"),)),
]


def test_array_api_linalg_functions():
    check_interpreted(ARRAY_API)


def test_results_are_numpys_named_tuples():
    a = spd(3, 3)
    w, v = gc.trace(lambda a: np.linalg.eigh(a))(a)
    out = gc.trace(lambda a: (np.linalg.eigh(a).eigenvalues, np.linalg.slogdet(a).logabsdet,
                              np.linalg.svd(a).S, np.linalg.svd(a)))(a)
    np.testing.assert_allclose(out[0], np.linalg.eigvalsh(a), rtol=1e-12)
    np.testing.assert_allclose(out[1], np.linalg.slogdet(a).logabsdet, rtol=1e-12)
    np.testing.assert_allclose(out[2], np.linalg.svd(a).S, rtol=1e-12)
    assert type(out[3]) is type(np.linalg.svd(a)) and out[3].U.shape == (3, 3)
    np.testing.assert_allclose((v * w) @ v.T, a, rtol=1e-12)
