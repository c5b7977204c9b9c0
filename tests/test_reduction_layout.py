"""Loop order of reductions: memory order (accumulator arrays) when the innermost axis is kept.

``np.sum(x, axis=0)`` of a C-contiguous matrix used to run a strided inner loop (one
scalar accumulator per column); it now loops in memory order and accumulates into an
array indexed by the column. These tests check the plan (``schedule.memory_order``),
every reduction op against NumPy in each place the loops are generated (inlined into
the entry, a kernel of its own, a parallel kernel, the standalone emitter of ``O0``),
NaN and tie semantics, empty and size-1 dims, float32 accuracy, and that the new inner
loop is vectorized.
"""
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.backend import codegen
from graphc.backend.vecmath import is_vectorized
from graphc.backend.schedule import memory_order
from conftest import assert_same

OPS = {"sum": np.sum, "mean": np.mean, "prod": np.prod, "max": np.max, "min": np.min}


@pytest.mark.parametrize("shape, axes, plan", [
    ((4096, 512), (0,), ([], [0, 1], [1])),
    ((3, 5, 7), (1,), ([0], [1, 2], [2])),
    ((3, 5, 7), (0, 1), ([], [0, 1, 2], [2])),
    ((2, 3, 4, 5), (0, 2), ([], [0, 1, 2, 3], [1, 3])),
    ((2, 3, 4, 5), (1, 2), ([0], [1, 2, 3], [3])),
    ((6, 5, 1), (0,), ([], [0, 1, 2], [1, 2])),      # a trailing size-1 dim is not "innermost"
    ((4, 1, 6), (0, 1), ([], [0, 1, 2], [2])),
    ((1, 6, 5), (0, 1), ([], [0, 1, 2], [2])),       # a size-1 reduced dim is looped in place
    ((0, 5), (0,), ([], [0, 1], [1])),
    ((3, 5, 7), (0, 2), None),                        # innermost reduced: already contiguous
    ((3, 5, 7), (1, 2), None),                        # trailing axes
    ((3, 5, 7), (0, 1, 2), None),                     # all axes
    ((6, 1), (0,), None),
    ((1, 6, 5), (0,), None),                          # only a size-1 axis is reduced: a copy
    ((2, 1 << 22), (0,), None),                       # scratch too big for a 2-long reduction
    ((64, 1 << 18), (0,), ([], [0, 1], [1])),
])
def test_memory_order_plan(shape, axes, plan):
    assert memory_order(shape, axes) == (tuple(plan) if plan else None)


# (shape, axes) for every place the loops are generated; the first ones take memory order
LAYOUTS = [((70, 9), (0,)), ((3, 5, 7), (1,)), ((3, 5, 7), (0, 1)), ((2, 3, 4, 5), (0, 2)),
           ((2, 3, 4, 5), (1, 2)), ((6, 5, 1), (0,)), ((1, 6, 5), (0, 1)), ((4, 1, 6), (0,)),
           ((3, 5, 7), (0, 2)), ((3, 5, 7), (2,)), ((6, 1), (0,))]
# the ones with work for threads: blocks of a long first reduced axis, or a lead kept dim
PARALLEL_LAYOUTS = [((70, 9), (0,)), ((130, 2, 3), (0, 1)), ((3, 5, 7), (1,)), ((2, 3, 4, 5), (1, 2)),
                    ((1, 3, 70, 4), (2,))]
MODES = ["inline", "kernel", "parallel", "O0"]


def traced(fn, mode, monkeypatch):
    if mode == "O0":
        return gc.trace(fn, passes="O0")  # no fusion: graphc.backend.schedule.emit_reduction
    if mode in ("kernel", "parallel"):
        monkeypatch.setattr(codegen, "INLINE_MAX", 0)
    if mode == "parallel":
        monkeypatch.setattr(codegen, "PARALLEL_MIN", 64)
    return gc.trace(fn)


def reduce_all(axes, keepdims):
    def f(x):
        out = [fn(x, axis=axes, keepdims=keepdims) for fn in OPS.values()]
        if len(axes) == 1:
            out += [np.argmax(x, axis=axes[0]), np.argmin(x, axis=axes[0], keepdims=keepdims)]
        return tuple(out)
    return f


def values(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, shape)  # near 1: prod stays tame
    x[rng.random(shape) < 0.2] *= -1
    return x.astype(dtype)


TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": None}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", MODES)
def test_reductions_match_numpy(mode, dtype, monkeypatch):
    layouts = PARALLEL_LAYOUTS if mode == "parallel" else LAYOUTS
    for k, (shape, axes) in enumerate(layouts):
        keepdims = k % 2 == 1
        fn = reduce_all(axes, keepdims)
        f = traced(fn, mode, monkeypatch)
        for seed in (k, k + 100):  # the second call reuses the accumulators' code with new values
            x = values(shape, dtype, seed)
            for got, want, name in zip(f(x), fn(x), list(OPS) + ["argmax", "argmin"]):
                assert_same(got, want, f"{name}{shape} axes={axes} keepdims={keepdims} {mode}", TOL[dtype])
        if mode == "parallel":
            assert "prange(" in f.source, (shape, axes)


def test_the_plan_is_what_runs(monkeypatch):
    f = gc.trace(lambda x: np.sum(x, axis=0))
    f(np.ones((64, 784), np.float32))
    assert "empty_c((784,), np.float64)" in f.source  # float32 sums accumulate in float64
    monkeypatch.setattr(codegen, "INLINE_MAX", 0)
    monkeypatch.setattr(codegen, "PARALLEL_MIN", 64)
    g = gc.trace(lambda x: (np.sum(x, axis=0), np.max(x, axis=(0, 1), keepdims=True)))
    x = values((100, 3, 4), "float32", 7)
    s, m = g(x)
    assert_same(s, x.sum(0), "sum", TOL["float32"])
    assert_same(m, x.max((0, 1), keepdims=True), "max")
    assert "prange(8)" in g.source  # blocks of the reduced axis: no kept dim before it
    h = gc.trace(lambda x: np.mean(x, axis=1))
    y = values((3, 40, 5), "float64", 8)
    assert_same(h(y), y.mean(1), "mean")
    assert "prange(3)" in h.source  # the lead kept dim is split over threads


@pytest.mark.parametrize("mode", MODES)
def test_nan_wins_and_stays_ties_take_the_first(mode, monkeypatch):
    # columns: NaN in the first row, a middle row, the last row, never; all -inf; ties
    n = 80
    x = np.tile(np.linspace(-1, 1, n)[:, None], (1, 7))
    x[0, 0] = x[n // 2, 1] = x[n - 1, 2] = np.nan
    x[n // 3, 1] = np.nan  # two NaNs: argmax/argmin name the first
    x[:, 4] = -np.inf
    x[:, 5] = 2.0  # all tied
    x[[3, 60], 6] = 5.0
    x[[5, 70], 6] = -5.0

    def fn(x):
        return (np.max(x, axis=0), np.min(x, axis=0, keepdims=True), np.argmax(x, axis=0),
                np.argmin(x, axis=0), np.max(x.reshape(2, n // 2, 7), axis=1))

    f = traced(fn, mode, monkeypatch)
    for dtype in ("float32", "float64"):
        xd = x.astype(dtype)
        for got, want in zip(f(xd), fn(xd)):
            assert_same(got, want, f"{mode} {dtype}")
    assert np.isnan(f(x)[0][:3]).all() and f(x)[2][1] == n // 3


@pytest.mark.parametrize("mode", ["inline", "O0"])
def test_empty_and_size_one_dims(mode, monkeypatch):
    def fn(e, z, one):
        return (np.sum(e, axis=0), np.prod(e, axis=0, keepdims=True), np.mean(e, axis=0),
                np.sum(z, axis=0), np.max(z, axis=0), np.argmin(z, axis=0, keepdims=True),
                np.sum(e, axis=(0, 2)), np.max(one, axis=0), np.sum(one, axis=(0, 1), keepdims=True))

    f = traced(fn, mode, monkeypatch)
    args = (np.zeros((0, 5, 3), np.float32), np.ones((4, 0), np.float64),
            values((1, 1, 6), "float32", 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy: mean of an empty slice
        want = fn(*args)
    for got, w in zip(f(*args), want):
        assert_same(got, w, mode)


@pytest.mark.parametrize("mode", ["kernel", "parallel", "O0"])
def test_float32_sums_accumulate_in_float64(mode, monkeypatch):
    f = traced(lambda x: (np.sum(x, axis=0), np.mean(x * 2, axis=0)), mode, monkeypatch)
    n = (1 << 16) + 3
    x = np.full((n, 3), 0.1, np.float32)
    s, m = f(x)
    exact = np.float64(np.float32(0.1)) * n
    assert np.all(np.abs(s - exact) / exact < 1e-6)  # a float32 running sum is ~1e-3 off
    assert np.all(np.abs(m - 2 * np.float64(np.float32(0.1))) < 1e-7)
    assert ("prange(" in f.source) == (mode == "parallel")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Compile for real: LLVM IR can only be inspected on freshly compiled code."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    from graphc.backend import cpu
    monkeypatch.setattr(cpu, "_IN_PROCESS", {})


@pytest.mark.parametrize("op", ["sum", "max"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_inner_loop_is_vectorized(op, dtype, fresh_cache):
    """The loop along the kept, contiguous axis becomes SIMD code (<N x float> in the IR)."""
    fn = getattr(np, op)
    f = gc.trace(lambda x: fn(x, axis=0))
    x = values((64, 784), dtype, 1)
    assert_same(f(x), fn(x, axis=0), op, TOL[dtype])
    assert f.source.count("@njit") == 1  # inlined into the entry
    assert is_vectorized(f._last.compiled.entry)


def test_size_one_lead_dims_still_split_into_blocks(monkeypatch):
    # (1, n, m) over axis 1: the lead dim has one element, so threads take blocks of axis 1
    monkeypatch.setattr(codegen, "INLINE_MAX", 0)
    monkeypatch.setattr(codegen, "PARALLEL_MIN", 64)
    f = gc.trace(lambda x: (np.sum(x, axis=1), np.max(x, axis=1, keepdims=True)))
    for dtype in ("float32", "float64"):
        x = values((1, 100, 6), dtype, 9)
        s, m = f(x)
        assert_same(s, x.sum(1), "sum", TOL[dtype])
        assert_same(m, x.max(1, keepdims=True), "max")
        assert "prange(8)" in f.source


@pytest.mark.parametrize("mode", ["inline", "O0"])
def test_max_min_ties_take_the_later_element_as_numpy(mode, monkeypatch):
    # NumPy folds np.maximum(acc, x), which returns x on a tie: the sign of a zero result is
    # the last zero's (short runs and columns; NumPy's own SIMD loops differ on long rows)
    def fn(x):
        return (np.max(x, axis=0), np.min(x, axis=0, keepdims=True), np.max(x, axis=1), np.min(x, axis=1),
                np.max(x), np.min(x))

    f = traced(fn, mode, monkeypatch)
    rng = np.random.default_rng(4)
    for dtype in ("float32", "float64"):
        for _ in range(20):
            x = rng.choice(np.array([0.0, -0.0, 0.0, -0.0, -1.0, np.nan], dtype), size=(5, 3))
            for got, want in zip(f(x), fn(x)):
                assert_same(got, want, mode)
                np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=f"{mode} {x}")


def test_kernels_round_each_operation_as_numpy(monkeypatch):
    # a kernel's fastmath flags cover its elementwise ops too: LLVM must neither contract
    # x * x - 1 into an FMA (one rounding where NumPy has two: 2**-11 + 2**-24 per element
    # instead of 2**-11) nor reassociate x * 1e30 * 1e-30 into x (finite where NumPy overflows)
    monkeypatch.setattr(codegen, "INLINE_MAX", 0)

    def fn(x):
        return (np.sum(x * x - 1.0), np.sum(x * x - 1.0, axis=-1), x * x - 1.0,
                np.sum(x * 1e30 * 1e-30), x * 1e30 * 1e-30, np.sum(x * 3.0 / 3.0, axis=-1))

    f = gc.trace(fn)
    x = np.full((4, 300), 1 + 2.0 ** -12, np.float32)
    x[1] = 1e10
    with np.errstate(over="ignore"):
        got, want = f(x), fn(x)
    for g, w in zip(got, want):
        assert_same(g, w, "float32")
    np.testing.assert_array_equal(got[2], want[2])
    # a sum of one product per element still vectorizes as reassociated partials
    h = gc.trace(lambda x, y: np.sum(np.tanh(x) * y))
    assert_same(h(x, x), np.sum(np.tanh(x) * x), "float32")
    assert "fastmath={'reassoc'}" in h.source


def test_sums_a_kernel_may_not_reassociate_still_run_in_threads(monkeypatch):
    """A flat sum over a chain LLVM must not reassociate (x * 1e30 * 1e-30) splits over threads in
    fixed blocks folded into lanes: prange, no fastmath, NumPy's values (inf where NumPy overflows),
    the same result on every call; blocks of uneven length and a tail shorter than the lanes."""
    monkeypatch.setattr(codegen, "PARALLEL_MIN", 1 << 10)

    def fn(x):
        return np.sum(x * 1e30 * 1e-30), np.mean(x * 3.0 / 3.0 - x), x * 1e30 * 1e-30

    f = gc.trace(fn)
    x = np.random.default_rng(3).standard_normal(5003).astype(np.float32)
    got = f(x)
    assert "prange" in f.source and "fastmath" not in f.source
    for g, w in zip(got, fn(x)):
        assert_same(g, w, "float32")
    assert f(x)[0] == got[0]  # fixed blocks: deterministic
    x[77] = 1e10
    with np.errstate(over="ignore"):
        got, want = f(x), fn(x)
    assert np.isinf(got[0]) and np.isinf(want[0]) and np.isinf(got[2][77])
