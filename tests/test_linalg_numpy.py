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
]


@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=n) for n, f, a in GRADS])
def test_gradients(fn, args):
    check_grads(fn, args, order=2)


def test_gradient_compiled():
    check_grads(lambda a, b: np.einsum("bij,bjk->bik", a, np.tril(b)) ** 2, (A(2, 3, 4), A(2, 4, 4)),
                order=1, compiled=True)
