"""TracedFunction at run time: signatures, outputs, buffers, options, inspection."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from conftest import assert_same

R = np.random.default_rng(11)
X = R.standard_normal((3, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def mlp():
    """One compiled function shared by several tests (one compile)."""
    @gc.trace
    def f(x, w, b):
        return np.sum(np.tanh(x @ w + b) * (1 / (1 + np.exp(-x @ w))), axis=1)

    return f


W = R.standard_normal((4, 5)).astype(np.float32)
B = R.standard_normal(5).astype(np.float32)


def np_mlp(x, w, b):
    return np.sum(np.tanh(x @ w + b) * (1 / (1 + np.exp(-x @ w))), axis=1)


def test_issue_example(mlp):
    out = mlp(X, W, B)
    assert_same(out, np_mlp(X, W, B), "mlp", tol=dict(atol=1e-5))
    text = str(mlp.graph)
    assert text.startswith("graph f(%0:f32[3,4] x, %1:f32[4,5] w, %2:f32[5] b):")
    assert "test_runtime.py:" in text
    assert "def entry(" in mlp.source and "@njit" in mlp.source
    assert mlp.signatures == 1
    assert "1 compiled graph" in repr(mlp)
    compiled = mlp._last.compiled
    assert compiled.path.endswith(".py")
    with open(compiled.path) as fh:
        assert fh.read() == mlp.source
    assert compiled.cache_hits + compiled.cache_misses >= 1
    assert [s.name for s in mlp.stats]  # the passes that ran
    assert all(s.nodes_after >= 0 for s in mlp.stats)


def test_values_change_without_retracing(mlp):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((3, 4)).astype(np.float32)
        assert_same(mlp(x, W, B), np_mlp(x, W, B), f"seed {seed}", tol=dict(atol=1e-5))
    assert mlp.signatures == 1


def test_results_are_fresh_arrays(mlp):
    a = mlp(X, W, B)
    keep = a.copy()
    b = mlp(X + 1, W, B)
    np.testing.assert_array_equal(a, keep)  # the second call did not write into the first result
    assert not np.shares_memory(a, b)
    assert a.flags.writeable


def test_inputs_are_not_modified(mlp):
    x, w, b = X.copy(), W.copy(), B.copy()
    mlp(x, w, b)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(w, W)
    np.testing.assert_array_equal(b, B)


def test_constant_outputs_are_writable_and_not_shared():
    f = gc.trace(lambda x: (x * 2.0, np.arange(3.0), np.zeros_like(x), np.arange(6.0).reshape(2, 3)))
    first = f(X)
    second = f(X)
    for a, b in zip(first[1:], second[1:]):
        assert a.flags.writeable
        assert not np.shares_memory(a, b)
    first[1][0] = 42.0
    assert f(X)[1][0] == 0.0


def test_scalar_outputs_keep_their_dtype():
    f = gc.trace(lambda x: (x.sum(), x.max(), np.argmax(x), x.sum() > 0, (x > 0).sum(), x.astype(np.int32).sum(),
                            x[0, 0], x.mean(dtype=np.float64)))
    out = f(X)
    want = (X.sum(), X.max(), np.argmax(X), X.sum() > 0, (X > 0).sum(), X.astype(np.int32).sum(), X[0, 0],
            X.mean(dtype=np.float64))
    for k, (g, w) in enumerate(zip(out, want)):
        assert type(g) is type(w), (k, type(g), type(w))
        assert_same(g, w, f"output {k}", tol=dict(atol=1e-5))


def test_outputs_of_every_dtype_and_structure():
    def f(x):
        return {"f32": x, "f64": x.astype(np.float64), "i32": x.astype(np.int32), "i64": np.argmax(x, axis=0),
                "bool": x > 0, "list": [x.T], "none": None, "str": "tag"}

    out = gc.trace(f)(X)
    assert out["f32"].dtype == np.float32 and out["f64"].dtype == np.float64
    assert out["i32"].dtype == np.int32 and out["i64"].dtype == np.int64 and out["bool"].dtype == np.bool_
    assert out["none"] is None and out["str"] == "tag"
    assert_same(out["list"][0], X.T, "x.T")


def test_runtime_index_errors():
    """Indices known only at run time are bounds-checked in compiled code, as NumPy does."""
    f = gc.trace(lambda x, i: x[i])
    i = np.array([0, -1, 2])
    assert_same(f(X, i), X[i], "in range")
    with pytest.raises(IndexError):
        f(X, np.array([0, 3, 1]))
    with pytest.raises(IndexError):
        f(X, np.array([-4, 0, 0]))
    assert_same(f(X, np.array([2, 2, -3])), X[[2, 2, -3]], "still usable after an error")


def test_passes_options_give_the_same_numbers():
    def fn(x):
        a = np.exp(x) + np.exp(x)  # a common subexpression
        unused = np.sin(x)  # noqa: F841  dead code
        return a * (2.0 + 3.0) + 0.0

    results = {}
    for level in ("O0", "O1", "O2"):
        f = gc.trace(fn, passes=level)
        results[level] = f(X)
        assert_same(results[level], fn(X), level)
    f0, f2 = gc.trace(fn, passes="O0"), gc.trace(fn, passes="O2")
    f0(X), f2(X)
    assert len(f2.graph.nodes) < len(f0.graph.nodes)
    assert "sin" in [n.op for n in f0.graph.nodes]


def test_large_arrays_use_parallel_loops():
    """Big enough arrays take the prange path; the numbers do not change."""
    from graphc.backend.codegen import PARALLEL_MIN

    n = int(PARALLEL_MIN) + 7
    x = np.linspace(-2, 2, n).astype(np.float64)

    @gc.trace
    def f(x):
        return np.tanh(x) * 2.0 + 1.0, np.sum(x * x)

    a, s = f(x)
    assert_same(a, np.tanh(x) * 2.0 + 1.0, "elementwise", tol=dict(rtol=1e-12, atol=1e-12))
    assert_same(s, np.sum(x * x), "sum", tol=dict(rtol=1e-10))
    assert "in prange(" in f.source


def test_eager_numpy_fallback_outside_traces():
    """gc functions called with plain arrays run eagerly and return NumPy arrays."""
    out = gc.softmax(X)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert_same(gc.relu(X), np.maximum(X, 0), "relu")


def test_threads_can_share_a_compiled_function(mlp):
    from concurrent.futures import ThreadPoolExecutor

    xs = [np.full((3, 4), k, np.float32) for k in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda x: mlp(x, W, B), xs))
    for x, r in zip(xs, results):
        assert_same(r, np_mlp(x, W, B), "thread", tol=dict(atol=1e-5))
