"""NumPy's reductions, scans and sorts as users write them: var, std, average, all, any,
cumsum, cumprod, diff, isclose/allclose, linalg.norm, sort, argsort, partition, their Tracer
methods, integer means and empty reductions.

Cases are checked three ways (compiled == interpreter == NumPy) with few compiles: each
compiled group is one graph; every case also runs through the interpreter on its traced and
optimized graphs. Gradients: check_grads(order=2) through the interpreter, and a compiled
check per new primitive.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.ops import registry
from graphc.testing import check_grads
from conftest import Case, check_cases, check_group, check_interpreted, raw_graph

R = np.random.default_rng(12)


def A(shape, dtype="float64", lo=-2.0, hi=2.0):
    if dtype == "bool":
        return R.random(shape) < 0.5
    if dtype.startswith("int"):
        return R.integers(int(lo) - 2, int(hi) + 3, size=shape).astype(dtype)
    return R.uniform(lo, hi, size=shape).astype(dtype)


SPECIAL = np.array([[np.nan, 1.0, -np.inf, 0.0], [-0.0, np.inf, 2.5, -1.0], [3.0, 3.0, np.nan, 0.0]])
TIES = np.array([[3, 1, 2, 1, 3, 0, 1], [0, 0, 0, 0, 0, 0, 0], [2, 1, 2, 1, 2, 1, 2]], np.int64)
BIG = np.full((4, 3), 2**62, np.int64)  # int64 sums overflow; NumPy's mean accumulates in float64

GROUPS: dict[str, list[Case]] = {}


def group(name):
    GROUPS[name] = []
    return GROUPS[name]


# -- var, std, average ------------------------------------------------------------------------
cases = group("moments")
for dtype in ("float32", "float64", "int32", "bool"):
    x = A((3, 4, 5), dtype)
    J = dtype in ("float32", "int32")
    cases += [
        Case(f"var:{dtype}", np.var, (x,), jit=J),
        Case(f"var axis=1 ddof=1:{dtype}", lambda x: np.var(x, axis=1, ddof=1), (x,), jit=J),
        Case(f"var (0,-1) keepdims:{dtype}", lambda x: np.var(x, axis=(0, -1), keepdims=True), (x,)),
        Case(f"std:{dtype}", lambda x: np.std(x, axis=-1), (x,), jit=dtype == "float64"),
        Case(f"std ddof=1 keepdims:{dtype}", lambda x: np.std(x, axis=(2, 0), ddof=1, keepdims=True), (x,)),
        Case(f"x.var():{dtype}", lambda x: x.var(), (x,), jit=False),
        Case(f"x.std(0, ddof=2):{dtype}", lambda x: x.std(0, ddof=2), (x,), jit=False),
        Case(f"var correction=1:{dtype}", lambda x: np.var(x, axis=0, correction=1), (x,), jit=False),
        Case(f"var dtype=float32:{dtype}", lambda x: np.var(x, axis=1, dtype=np.float32), (x,), jit=False,
             tol=dict(rtol=1e-5, atol=1e-5)),
        Case(f"average:{dtype}", np.average, (x,), jit=J),
        Case(f"average axis:{dtype}", lambda x: np.average(x, axis=(0, 2), keepdims=True), (x,), jit=False),
        Case(f"average returned:{dtype}", lambda x: np.average(x, axis=1, returned=True), (x,), jit=J),
    ]
    w_full, w_axis = A((3, 4, 5), "float64", 0.1, 2.0), A((4,), "float32", 0.1, 2.0)
    cases += [
        Case(f"average weights full:{dtype}", lambda x, w: np.average(x, weights=w), (x, w_full), jit=J),
        Case(f"average weights axis:{dtype}", lambda x, w: np.average(x, axis=1, weights=w, returned=True),
             (x, w_axis), jit=dtype == "float32"),
        Case(f"average weights tuple axis:{dtype}", lambda x, w: np.average(x, axis=(2, 0), weights=w),
             (x, A((5, 3), "float64", 0.1, 2.0)), jit=dtype == "float64"),
        Case(f"average weights keepdims:{dtype}", lambda x: np.average(x, axis=-1, weights=np.arange(1, 6), keepdims=True),
             (x,), jit=False),
    ]
cases += [
    Case("var ddof=n (inf/nan)", lambda x: (np.var(x, axis=1, ddof=4), np.var(x, axis=1, ddof=5)),
         (A((2, 4)),)),
    Case("var special", lambda x: (np.var(x, axis=1), np.std(x, axis=0)), (SPECIAL,)),
    Case("var empty", lambda x: (np.var(x, axis=0), np.std(x)), (np.zeros((0, 3)),)),
    Case("var 0-d and size-1", lambda x, y: (np.var(x), np.std(y, axis=1)), (np.asarray(2.5), A((3, 1)))),
    Case("var big int", lambda x: (np.var(x), np.mean(x), np.average(x, axis=0)), (BIG,)),
]

# -- all, any, isclose, allclose ---------------------------------------------------------------
cases = group("truth")
for dtype in ("float32", "int64", "bool"):
    x = A((3, 4), dtype) * (A((3, 4)) > -1) if dtype != "bool" else A((3, 4), dtype)
    J = dtype != "int64"
    cases += [
        Case(f"all:{dtype}", lambda x: (np.all(x), np.all(x, axis=0), np.all(x, axis=-1, keepdims=True)), (x,), jit=J),
        Case(f"any:{dtype}", lambda x: (np.any(x), np.any(x, axis=1), np.any(x, axis=(0, 1), keepdims=True)), (x,), jit=J),
        Case(f"x.all() x.any(0):{dtype}", lambda x: (x.all(), x.any(0)), (x,), jit=False),
    ]
cases += [
    Case("all/any special", lambda x: (np.all(x, axis=1), np.any(x, axis=0), np.all(x != x)), (SPECIAL,)),
    Case("all/any empty", lambda x: (np.all(x), np.any(x), np.all(x, axis=0), np.any(x, axis=1)), (np.zeros((0, 3)),)),
    Case("all/any zeros", lambda x: (np.all(x, axis=0), np.any(x, axis=0)), (np.array([[0.0, -0.0, 1.0]]),)),
]
a = A((3, 4))
close = np.where(R.random((3, 4)) < 0.5, a, a + 1e-9)
cases += [
    Case("allclose near", lambda a, b: np.allclose(a, b), (a, close), ref=lambda a, b: np.asarray(np.allclose(a, b))),
    Case("allclose far", lambda a, b: np.allclose(a, b + 1e-3), (a, close), ref=lambda a, b: np.asarray(np.allclose(a, b + 1e-3))),
    Case("allclose rtol/atol", lambda a, b: (np.allclose(a, b * 1.01, rtol=0.02), np.allclose(a, b + 0.1, atol=0.2)),
         (a, close), ref=lambda a, b: (np.asarray(np.allclose(a, b * 1.01, rtol=0.02)), np.asarray(np.allclose(a, b + 0.1, atol=0.2)))),
    Case("isclose special", lambda a, b: (np.isclose(a, b), np.isclose(a, b, equal_nan=True)),
         (SPECIAL, SPECIAL[::-1].copy())),
    Case("isclose special self", lambda a: (np.isclose(a, a), np.isclose(a, a, equal_nan=True)), (SPECIAL,)),
    Case("allclose nan", lambda a: (np.allclose(a, a), np.allclose(a, a, equal_nan=True)), (SPECIAL,),
         ref=lambda a: (np.asarray(np.allclose(a, a)), np.asarray(np.allclose(a, a, equal_nan=True)))),
    Case("isclose float32 int", lambda a, b: (np.isclose(a, b), np.isclose(b, a)),
         (np.array([1.0, 2.00001, 3.5], np.float32), np.array([1, 2, 3], np.int32))),
    # a Python number stays weak: float32 arithmetic, as NumPy (2**24 + 2 vs 2**24 + 1 rounds to 2**24)
    Case("isclose Python scalar", lambda a: (np.isclose(a, 16777217.0, rtol=0, atol=1.5), np.isclose(a, 16777218, rtol=0),
                                             np.isclose(a, np.float64(16777217.0), rtol=0, atol=1.5)),
         (np.array([16777218.0, 1.0], np.float32),)),
    Case("allclose broadcast", lambda a, b: np.allclose(a, b), (A((2, 3)), np.float64(0.5)),
         ref=lambda a, b: np.asarray(np.allclose(a, b))),
]

# -- cumsum, cumprod, diff -----------------------------------------------------------------------
cases = group("scans")
for dtype in ("float32", "float64", "int32", "int64", "bool"):
    x = A((3, 4, 5), dtype, -1.5, 1.5)
    J = dtype in ("float32", "int32", "bool")
    cases += [
        Case(f"cumsum:{dtype}", lambda x: (np.cumsum(x), np.cumsum(x, axis=0), np.cumsum(x, axis=-1)),
             (x,), ops=("cumsum",), jit=J),
        Case(f"cumprod:{dtype}", lambda x: (np.cumprod(x, axis=1), np.cumprod(x, axis=2)),
             (x,), ops=("cumprod",), jit=dtype in ("float64", "int64")),
        Case(f"x.cumsum(1) x.cumprod():{dtype}", lambda x: (x.cumsum(1), x.cumprod()), (x,), jit=False),
        Case(f"cumsum dtype:{dtype}", lambda x: np.cumsum(x, axis=1, dtype=np.float32), (x,), jit=False),
        Case(f"diff:{dtype}", lambda x: (np.diff(x), np.diff(x, axis=0), np.diff(x, n=2, axis=1)), (x,),
             jit=dtype != "int64"),
        Case(f"diff n large:{dtype}", lambda x: np.diff(x, n=7), (x,), jit=False),
        Case(f"diff prepend/append:{dtype}", lambda x: (np.diff(x, axis=1, prepend=0), np.diff(x, append=x[..., :1])),
             (x,), jit=dtype == "float32"),
    ]
cases += [
    Case("cumsum/cumprod special", lambda x: (np.cumsum(x, axis=1), np.cumprod(x, axis=0), np.cumsum(x[:, ::-1], axis=1)),
         (SPECIAL,)),
    Case("cumsum empty/size-1", lambda x, y: (np.cumsum(x, axis=0), np.cumprod(x, axis=1), np.cumsum(y, axis=1), np.cumsum(x)),
         (np.zeros((0, 3)), A((2, 1)))),
    Case("cumsum 0-d", lambda x: (np.cumsum(x), np.cumprod(x)), (np.asarray(1.5),)),
    Case("cumsum int32 overflow to int64", lambda x: np.cumsum(x), (np.full(5, 2**30, np.int32),)),
    Case("diff 0 and 1-d", lambda x: (np.diff(x, n=0), np.diff(x), np.diff(x, n=3)), (A((6,)),)),
]

# -- sort, argsort, partition ----------------------------------------------------------------------
cases = group("sorting")
for dtype in ("float32", "float64", "int32", "int64", "bool"):
    x = A((3, 5, 4), dtype)
    J = dtype in ("float64", "int32", "bool")
    stable = lambda x, axis=-1: np.argsort(x, axis=axis, kind="stable")  # noqa: E731
    cases += [
        Case(f"sort:{dtype}", lambda x: (np.sort(x), np.sort(x, axis=0), np.sort(x, axis=None)), (x,),
             ops=("sort",), jit=J),
        Case(f"argsort:{dtype}", lambda x: (np.argsort(x), np.argsort(x, axis=1), np.argsort(x, axis=None)), (x,),
             ref=lambda x: (stable(x), stable(x, 1), stable(x, None)), ops=("argsort",), jit=dtype != "float64"),
        Case(f"x.argsort(0):{dtype}", lambda x: x.argsort(0), (x,), ref=lambda x: stable(x, 0), jit=False),
        Case(f"partition:{dtype}", lambda x: np.partition(x, 2, axis=1), (x,), ref=lambda x: np.sort(x, axis=1),
             jit=False),
        Case(f"argpartition:{dtype}", lambda x: np.argpartition(x, (0, 3)), (x,), ref=stable, jit=False),
    ]
cases += [
    Case("sort special", lambda x: (np.sort(x, axis=1), np.sort(x, axis=0), np.argsort(x, axis=1)), (SPECIAL,),
         ref=lambda x: (np.sort(x, axis=1), np.sort(x, axis=0), np.argsort(x, axis=1, kind="stable"))),
    Case("argsort ties", lambda x: (np.argsort(x), np.argsort(x, axis=0), np.argsort(-x, kind="stable")), (TIES,),
         ref=lambda x: (np.argsort(x, kind="stable"), np.argsort(x, axis=0, kind="stable"), np.argsort(-x, kind="stable"))),
    Case("sort empty/size-1", lambda x, y: (np.sort(x, axis=0), np.argsort(x, axis=1), np.sort(y, axis=1)),
         (np.zeros((0, 3)), A((3, 1)))),
]

# -- linalg.norm ---------------------------------------------------------------------------
cases = group("norm")
for dtype in ("float32", "float64", "int64"):
    v, m = A((7,), dtype), A((2, 3, 4), dtype)
    J = dtype != "int64"
    cases += [
        Case(f"vector norms:{dtype}", lambda v: tuple(np.linalg.norm(v, ord=o) for o in (None, 1, 2, np.inf, -np.inf, 0, 3, 0.5)),
             (v,), jit=J),
        Case(f"vector norms axis:{dtype}", lambda m: tuple(np.linalg.norm(m, ord=o, axis=1) for o in (None, 1, np.inf, -3)) +
             (np.linalg.norm(m, axis=-1, keepdims=True),), (m,), jit=dtype == "float64"),
        Case(f"matrix norms:{dtype}", lambda m: tuple(np.linalg.norm(m, ord=o, axis=(1, 2)) for o in (None, "fro", 1, -1, np.inf, -np.inf)),
             (m,), jit=dtype == "float32"),
        Case(f"matrix norms axes swapped:{dtype}", lambda m: tuple(np.linalg.norm(m, ord=o, axis=(2, 0), keepdims=k)
                                                                     for o in (1, -np.inf, "fro") for k in (False, True)),
             (m,), jit=False),
        Case(f"norm flat:{dtype}", lambda v, m: (np.linalg.norm(m), np.linalg.norm(m, keepdims=True), np.linalg.norm(v, 1),
                                                 np.linalg.norm(m[0], 1), np.linalg.norm(m[0], "fro")), (v, m), jit=False),
    ]
cases += [
    Case("norm special", lambda x: (np.linalg.norm(x, axis=1), np.linalg.norm(x, np.inf, axis=1), np.linalg.norm(x, 0, axis=0),
                                    np.linalg.norm(x, 1), np.linalg.norm(x, "fro")), (SPECIAL,)),
    # NumPy's inf- and 1-norms are maxima from 0: an empty axis gives 0, where a plain max raises
    Case("norm empty", lambda x: (np.linalg.norm(x), np.linalg.norm(x, axis=0), np.linalg.norm(x, 1, axis=0),
                                  np.linalg.norm(x, np.inf, axis=0), np.linalg.norm(x, 1), np.linalg.norm(x, np.inf),
                                  np.linalg.norm(x, np.inf, axis=(1, 0), keepdims=True)), (np.zeros((0, 3)),)),
]

# -- integer means, empty sums and means (NumPy 2) ---------------------------------------------------
cases = group("numerics")
for dtype in ("int32", "int64", "bool"):
    x = BIG.astype(dtype) if dtype != "bool" else A((4, 3), dtype)
    cases.append(Case(f"mean accumulates in float64:{dtype}",
                      lambda x: (np.mean(x), np.mean(x, axis=0), np.mean(x, axis=1, keepdims=True), x.mean(1)), (x,),
                      jit=dtype != "int32"))
cases += [
    Case("mean int64 near overflow, 3-d", lambda x: (np.mean(x, axis=(0, 2)), np.mean(x, axis=1)),
         (np.full((2, 3, 4), 2**62 + 3, np.int64),)),
    Case("empty sums/means", lambda x: (np.sum(x), np.mean(x), np.sum(x, axis=0), np.mean(x, axis=0), np.mean(x, axis=1)),
         (np.zeros((0, 3)),)),
    Case("dtype= is the result's dtype", lambda x, y: (np.sum(x, dtype=np.int32), np.prod(x, axis=0, dtype=np.int32),
                                                       np.mean(x, dtype=np.int64), np.mean(y, axis=1, dtype=np.int32),
                                                       np.sum(x, axis=1, dtype=bool), np.mean(x, dtype=np.float32)),
         (np.array([[1, 2, 4], [7, -3, 0]], np.int32), np.array([[1.5, 2.0, 4.9], [-7.5, 3.0, 1.0]]))),
    Case("int32 sum wraps as NumPy's", lambda x: np.sum(x, dtype=np.int32), (np.full(4, 2**30 + 7, np.int32),)),
    Case("empty int means", lambda x: (np.mean(x), np.mean(x, axis=0)), (np.zeros((0, 2), np.int64),)),
]
for value in (np.inf, -np.inf, np.nan, 2.0):
    cases.append(Case(f"empty broadcast of {value}", lambda s: (
        np.sum(np.broadcast_to(s, (0, 3))), np.sum(np.broadcast_to(s, (0, 3)), axis=0),
        np.mean(np.broadcast_to(s, (0, 3))), np.mean(np.broadcast_to(s, (0, 3)), axis=0),
        np.sum(s * np.ones((2, 0))), np.mean(np.broadcast_to(s, (3, 0)), axis=1)), (np.asarray(value),)))

# compiled cases are split into chunks, each one graph (few compiles: Numba's time grows
# faster than linearly with the size of a function)
CHUNK = 12
CHUNKS: dict[str, list[Case]] = {}
for _name, _cases in GROUPS.items():
    _jit = [c for c in _cases if c.jit]
    _n = -(-len(_jit) // CHUNK)
    for _k in range(_n):
        CHUNKS[f"{_name}/{_k}"] = _jit[_k::_n]


def _redraw(arg, rng):
    """A new value of the same shape and dtype (finite floats in the old range; special values,
    ties and the exact integers of the overflow cases are kept)."""
    a = np.asarray(arg) if isinstance(arg, np.ndarray) else None
    if a is None or a.size == 0 or (a.dtype.kind == "f" and not np.isfinite(a).all()) or a is BIG or a is TIES:
        return arg
    if a.dtype.kind == "b":
        return rng.random(a.shape) < 0.5
    if a.dtype.kind in "iu":
        if np.abs(a).max() > 2**20:
            return arg
        return rng.integers(int(a.min()), int(a.max()) + 1, size=a.shape).astype(a.dtype)
    return rng.uniform(a.min(), a.max(), size=a.shape).astype(a.dtype)


@pytest.mark.parametrize("name", list(CHUNKS))
def test_compiled(name):
    """Compiled == interpreter == NumPy, one compile per chunk; then new values through the same
    compiled code (nothing is baked in)."""
    traced = check_cases(CHUNKS[name])
    rng = np.random.default_rng(99)
    check_group(CHUNKS[name], [tuple(_redraw(a, rng) for a in c.args) for c in CHUNKS[name]], traced=traced)
    assert traced.signatures == 1


@pytest.mark.parametrize("name", list(GROUPS))
def test_interpreted(name):
    """Every case: the interpreter on the traced and the optimized graph == NumPy."""
    check_interpreted(GROUPS[name])


def test_cases_trace_their_ops():
    for cases in GROUPS.values():
        for case in cases:
            if case.ops:
                ops = {n.op for n in raw_graph(case.fn, *case.args).nodes}
                assert set(case.ops) <= ops, f"{case.name}: expected {case.ops}, traced {sorted(ops)}"


# -- properties NumPy leaves open: partitions and tie orders -------------------------------------
def test_partition_is_a_valid_partition():
    x = A((4, 9))
    f = gc.trace(lambda x: (np.partition(x, 3, axis=1), np.argpartition(x, (1, 5), axis=1)))
    part, idx = f(x)
    want = np.partition(x, 3, axis=1)
    np.testing.assert_array_equal(part[:, 3], want[:, 3])
    assert (part[:, :3] <= part[:, 3:4]).all() and (part[:, 4:] >= part[:, 3:4]).all()
    picked = np.take_along_axis(x, idx, axis=1)
    for k in (1, 5):
        np.testing.assert_array_equal(picked[:, k], np.partition(x, k, axis=1)[:, k])
    with pytest.raises(ValueError, match="out of bounds"):
        gc.trace(lambda x: np.partition(x, 9, axis=1))(x)
    with pytest.raises(TypeError, match="integer"):
        gc.trace(lambda x: np.partition(x, 1.5))(x)


def test_argsort_ties_are_a_valid_numpy_result_and_stable():
    x = np.repeat(np.array([2.0, -1.0, 2.0, 0.0, -1.0]), 20)  # long enough that NumPy's default kind is not stable
    idx = gc.trace(np.argsort)(x)
    np.testing.assert_array_equal(x[idx], np.sort(x))
    np.testing.assert_array_equal(idx, np.argsort(x, kind="stable"))


def test_long_lines_with_nan_ties_and_infinities():
    """Lines longer than the merge sort's insertion runs, in both axes, one compile."""
    x = R.integers(-4, 5, size=(3, 77)).astype(np.float64)
    x[R.random(x.shape) < 0.15] = np.nan
    x[R.random(x.shape) < 0.1] = -np.inf
    x[R.random(x.shape) < 0.1] = np.inf
    f = gc.trace(lambda x: (np.sort(x), np.argsort(x), np.sort(x.T, axis=0), np.argsort(x.T, axis=0)))
    got = f(x)
    want = (np.sort(x), np.argsort(x, kind="stable"), np.sort(x.T, axis=0), np.argsort(x.T, axis=0, kind="stable"))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_sort_method_in_place_is_refused():
    with pytest.raises(gc.TraceError, match="np.sort"):
        gc.trace(lambda x: x.sort())(np.ones(3))


@pytest.mark.skipif(np.round not in registry.NUMPY_FUNCTIONS, reason="np.round is traced by the elementwise ops")
def test_round_method():
    x = A((3, 4), "float64", -20, 20)
    check_interpreted([Case("x.round()", lambda x: (x.round(), x.round(1), x.round(-1)), (x,))])


# -- errors ----------------------------------------------------------------------------------
def test_errors_name_the_problem():
    x = A((2, 3))
    with pytest.raises(ValueError, match="Invalid norm order"):
        gc.trace(lambda x: np.linalg.norm(x, "fro", axis=1))(x)
    with pytest.raises(ValueError, match="Duplicate axes"):
        gc.trace(lambda x: np.linalg.norm(x, axis=(1, -1)))(x)
    with pytest.raises(ValueError):  # max/min of an empty axis have no identity, as in NumPy
        gc.trace(lambda x: np.max(x, axis=0))(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="at least one dimensional"):
        gc.trace(np.diff)(np.asarray(1.0))
    with pytest.raises(ValueError, match="non-negative"):
        gc.trace(lambda x: np.diff(x, n=-1))(x)
    with pytest.raises(TypeError, match="Axis must be specified"):
        gc.trace(lambda x: np.average(x, weights=np.ones(3)))(x)
    with pytest.raises(ValueError, match="consistent"):
        gc.trace(lambda x: np.average(x, axis=0, weights=np.ones(3)))(x)
    with pytest.raises(ZeroDivisionError):
        gc.trace(lambda x: np.average(x, axis=1, weights=np.array([1.0, -1.0, 0.0])))(x)
    with pytest.raises(ZeroDivisionError):  # NumPy's a.size / avg.size
        gc.trace(lambda x: np.average(x, axis=0))(np.zeros((2, 0)))
    with pytest.raises(ValueError):  # the -inf norm is a plain min: none over an empty axis
        gc.trace(lambda x: np.linalg.norm(x, -np.inf, axis=0))(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="simultaneously"):
        gc.trace(lambda x: np.var(x, ddof=1, correction=1))(x)
    with pytest.raises(gc.ShapeError, match="out of bounds"):
        gc.trace(lambda x: np.cumsum(x, axis=2))(x)


def test_empty_mean_is_nan_compiled_with_numpy_warning_only_eagerly():
    f = gc.trace(lambda x: np.mean(x, axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # compiled code neither raises nor warns
        got = f(np.zeros((0, 2)))
    assert np.isnan(got).all() and got.shape == (2,)


# -- gradients -----------------------------------------------------------------------------------
GRADS = [
    ("var", lambda x: np.var(x, axis=1, ddof=1), (A((3, 4)),)),
    ("var all keepdims", lambda x: np.sin(np.var(x, keepdims=True)), (A((2, 3)),)),
    ("std", lambda x: np.std(x, axis=(0, 2)), (A((2, 3, 4)),)),
    ("average weights", lambda x, w: np.average(x, axis=0, weights=w), (A((3, 4)), A((3,), "float64", 0.5, 2))),
    ("average full weights returned", lambda x, w: np.average(np.sin(x), weights=w, returned=True),
     (A((3, 2)), A((3, 2), "float64", 0.5, 2))),
    ("cumsum", lambda x: np.sin(np.cumsum(x, axis=1)), (A((3, 4)),)),
    ("cumsum flat", lambda x: np.cumsum(x) ** 2, (A((2, 3)),)),
    ("cumprod", lambda x: np.cumprod(x, axis=-1), (A((3, 4), "float64", 0.5, 1.5),)),
    ("cumprod axis 0", lambda x: np.cumprod(np.sin(x), axis=0), (A((4, 3)),)),
    ("cumprod one zero", lambda x: np.cumprod(x, axis=1),
     (np.array([[1.5, 0.0, -2.0, 0.7], [0.0, 1.2, 0.8, -1.1], [0.9, -1.3, 1.4, 0.0]]),)),
    ("cumprod two zeros", lambda x: np.cumprod(x), (np.array([1.5, 0.0, -2.0, 0.0, 0.7]),), dict(order=1)),
    ("diff", lambda x: np.diff(x, n=2, axis=0) ** 2, (A((4, 3)),)),
    ("sort", lambda x: np.sort(x, axis=0) * np.arange(1.0, 5.0)[:, None], (A((4, 3)),)),
    ("sort flat", lambda x: np.sin(np.sort(x, axis=None)) * np.arange(6.0), (A((2, 3)),)),
    ("partition", lambda x: np.partition(x, 1) ** 3, (A((5,)),)),
    ("norm vector", lambda x: [np.linalg.norm(x, o, axis=1) for o in (None, 1, np.inf, -np.inf, 3)], (A((3, 4)),)),
    ("norm matrix", lambda x: [np.linalg.norm(x, o, axis=(0, 1)) for o in ("fro", 1, -1, np.inf, -np.inf)], (A((3, 4, 2)),)),
    ("norm flat", lambda x: np.linalg.norm(x), (A((3, 4)),)),
]


def _grad_case(item):
    name, fn, args, *options = item
    return pytest.param(fn, args, options[0] if options else {}, id=name)


@pytest.mark.parametrize("fn, args, options", [_grad_case(g) for g in GRADS])
def test_gradients(fn, args, options):
    check_grads(fn, args, **{"order": 2, **options})


def test_cumprod_gradient_with_zeros_is_exact():
    x = np.array([[2.0, 0.0, 3.0, 4.0], [0.0, 0.0, 5.0, 1.0], [1.0, 2.0, 3.0, 0.0]])
    g = gc.grad(lambda x: np.sum(np.cumprod(x, axis=1) * np.arange(1.0, 5.0)))(x)
    want = np.zeros_like(x)
    for i in range(4):  # d/dx_i sum_j c_j prod_{m <= j} x_m, by brute force
        for j in range(i, 4):
            want[:, i] += (j + 1) * np.prod(np.delete(x[:, :j + 1], i, axis=1), axis=1)
    np.testing.assert_allclose(g, want)


def test_compiled_gradients():
    """The new primitives' gradients through the passes and the Numba backend (one compile)."""
    def f(x):
        return (np.sum(np.sin(np.cumsum(x, axis=0)) * np.cumprod(x, axis=1))
                + np.sum(np.sort(x, axis=1) * np.arange(4.0)) + np.var(x) + np.linalg.norm(x, 1, axis=0).sum())
    check_grads(f, (A((3, 4), "float64", 0.5, 1.5),), order=1, compiled=True)
