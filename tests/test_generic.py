"""One compile for every batch size: a symbolic graph (graphc/symbolic.py) compiled as it is by
the CPU backend (``dim_B = x.shape[0]``, loops bounded at run time), used by gc.trace(dynamic=...)
for every size >= 2, and the per-size compiles it falls back to where the backend cannot."""
import logging
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import ir, nn, optim, symbolic
from graphc.backend import cpu, plan
from graphc.errors import ShapeError
from graphc.ops import registry
from graphc.ops.rules import broadcast_shapes

from conftest import training_step

SIZES = (2, 3, 7, 64, 1000, 4099)
B = ir.Sym("B")


def _counting(monkeypatch, traced):
    """A list that gets one entry per backend compile of ``traced``: whether the graph is symbolic."""
    calls, backend = [], traced.backend

    class Counting:
        def __getattr__(self, name):
            return getattr(backend, name)

        def compile(self, graph, options):
            calls.append(bool(symbolic.symbols(graph)))
            return backend.compile(graph, options)
    monkeypatch.setattr(traced, "backend", Counting())
    return calls


def _generic(traced):
    """The Compiled objects serving every size, one per template tried (None: it fell back)."""
    return [entry[1] for entry in traced._generic.values()]


# -- shape rules ------------------------------------------------------------------------------
def f32(*shape):
    return ir.TensorType(shape, "float32")


def test_shape_rules_propagate_symbols_and_refuse_what_holds_at_some_sizes():
    assert broadcast_shapes((B, 64), (1, 64), (64,), ()) == (B, 64)
    assert broadcast_shapes((B, 1), (1, 10)) == (B, 10)
    for other in ((5, 64), ("N", 64)):
        with pytest.raises(ShapeError, match="only at some sizes"):
            broadcast_shapes((B, 64), other)
    infer = registry.infer_types
    assert infer("add", [f32(B, 64), f32(1, 64)], {}) == [f32(B, 64)]
    assert infer("matmul", [f32(B, 64), f32(10, 64)], {"transpose_b": True}) == [f32(B, 10)]
    assert infer("matmul", [f32(B, 64), f32(B, 10)], {"transpose_a": True}) == [f32(64, 10)]
    with pytest.raises(ShapeError, match="not aligned"):
        infer("matmul", [f32(64, B), f32(64, 10)], {})
    assert infer("sum", [f32(B, 64)], {"axes": (0,), "keepdims": True}) == [f32(1, 64)]
    assert infer("transpose", [f32(B, 3, 4)], {"perm": (2, 0, 1)}) == [f32(4, B, 3)]
    assert infer("reshape", [f32(B, 8, 8)], {"shape": (B, 64)}) == [f32(B, 64)]
    assert infer("reshape", [f32(B, 8, 8)], {"shape": (2, B, 32)}) == [f32(2, B, 32)]
    for shape in ((B, 32), (64, B, 1, 2), (B, -1), (B, B)):  # other sizes, or symbolic arithmetic
        with pytest.raises(ShapeError, match="symbolic"):
            infer("reshape", [f32(B, 8, 8)], {"shape": shape})
    assert infer("broadcast_to", [f32(1, 64)], {"shape": (B, 64)}) == [f32(B, 64)]
    with pytest.raises(ShapeError, match="cannot broadcast"):
        infer("broadcast_to", [f32(B, 64)], {"shape": (5, 64)})
    assert infer("slice", [f32(B, 64)], {"slices": ((0, B, 1), (3, 4, 1))}) == [f32(B, 1)]
    with pytest.raises(ShapeError, match="fits only some"):  # x[:5]: only for B >= 5
        infer("slice", [f32(B, 64)], {"slices": ((0, 5, 1), (0, 64, 1))})


# -- the backend on a symbolic graph ---------------------------------------------------------
def mlp(x, w1, b1, w2, b2):
    h = np.maximum(x @ w1 + b1, 0)
    return h @ w2 + b2


def _weights(seed=0):
    gen = np.random.default_rng(seed)
    return [(gen.standard_normal(s) * 0.2).astype(np.float32) for s in ((64, 128), (128,), (128, 10), (10,))]


def test_generated_code_reads_the_size_from_the_arguments():
    w = _weights()
    template = gc.trace(mlp, dynamic={"x": 0}).template(np.zeros((3, 64), np.float32), *w)
    graph = template.clone().copy_meta(template)
    graph.input_names = ["dim_B"] + graph.input_names[1:]  # an input named like the symbol's variable
    named = cpu.named_symbols(graph)
    source, _ = cpu.generate(named)
    assert "    dim_B = arg_dim_B.shape[0]\n" in source and "range(dim_B)" in source
    memory = plan.plan(named)  # symbolic arrays are fresh on every call; fixed ones may be planned
    plan.verify_plan(named, memory)
    assert not any(v.type.symbolic for v in list(memory.workspace) + list(memory.outputs))
    with pytest.raises(ValueError, match="named_symbols"):
        cpu.generate(graph, memory_plan=memory)


def test_mlp_compiles_once_for_every_batch_size(monkeypatch):
    w = _weights()
    generic = gc.trace(mlp, dynamic={"x": 0})
    calls = _counting(monkeypatch, generic)
    per_size = gc.trace(mlp)
    rng = np.random.default_rng(1)
    for n in SIZES:
        x = rng.standard_normal((n, 64)).astype(np.float32)
        got = generic(x, *w)
        assert got.dtype == np.float32 and got.shape == (n, 10)
        np.testing.assert_allclose(got, mlp(x, *w), rtol=1e-5, atol=1e-5)
        if n in (7, 4099):  # the same BLAS calls and elementwise expressions: the same bits
            np.testing.assert_array_equal(got, per_size(x, *w))
    assert calls == [True]  # the symbolic graph, compiled once
    (compiled,) = _generic(generic)
    assert len(compiled.compiled.entry.signatures) == 1 and generic.signatures == 1
    assert "dim_B = x.shape[0]" in generic.source and "f32[B,10]" in str(generic.graph)
    generic(np.ones((1, 64), np.float32), *w)  # size 1 traces as itself (np.squeeze would differ)
    assert calls == [True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # more sizes than RETRACE_WARNING: no warning, no compile
        for n in range(10, 20):
            generic(np.ones((n, 64), np.float32), *w)
    assert calls == [True, False] and generic.signatures == 2


def test_wrong_shapes_name_the_dimension():
    f = gc.trace(lambda x, y: x * 2 + y, dynamic={"x": 0, "y": 0})
    x = np.ones((5, 3), np.float32)
    np.testing.assert_array_equal(f(x, x), x * 3)
    with pytest.raises(ShapeError, match="dimension 0 of 'y' is B, which is 5"):
        f(x, np.ones((6, 3), np.float32))
    template = f.template(x, x)
    assert symbolic.bind(template, [(9, 3), (9, 3)]) == {"B": 9}
    with pytest.raises(ShapeError, match="dimension 1 must be 3"):
        symbolic.bind(template, [(9, 4), (9, 4)])


def reductions(x, b, s):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return (np.sum(x, axis=0), np.mean(x, axis=0), e / np.sum(e, axis=1, keepdims=True), np.var(x, axis=0),
            np.sum(x * x), x * b + s, np.maximum(x, b).max(axis=0), np.std(x, axis=1, ddof=1))


def test_reductions_over_the_batch_and_broadcasts_compile_once(monkeypatch):
    """Sums over the batch axis fold into run-time-bounded loops; results as NumPy's (float32 sums
    accumulate in float64 lanes, NumPy's pairwise: within float32 rounding of the sum of |x|), and
    as the per-size kernels', bit for bit where those choose the same loops (16: a memory-order
    float32 sum of exactly ROW_FLUSH rows, whose rows the per-size code once dropped)."""
    generic = gc.trace(reductions, dynamic={"x": 0})
    calls = _counting(monkeypatch, generic)
    per_size = gc.trace(reductions)
    rng = np.random.default_rng(2)
    b = rng.standard_normal((1, 64)).astype(np.float32)
    s = rng.standard_normal(1).astype(np.float32)
    for n in SIZES + (16,):
        x = rng.standard_normal((n, 64)).astype(np.float32)
        got, want = generic(x, b, s), reductions(x, b, s)
        scale = [np.sum(np.abs(x), axis=0), np.mean(np.abs(x), axis=0), 1, np.var(x, axis=0),
                 np.sum(x * x), 1, 1, 1]
        for g, w, sc in zip(got, want, scale):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=np.max(sc) * 2e-6)
        if n == 16:
            for g, p in zip(got[:4], per_size(x, b, s)[:4]):
                np.testing.assert_array_equal(g, p)
    assert len(calls) == 1 and [c is not None for c in _generic(generic)] == [True]


def test_not_generic_for_the_backend_falls_back_per_size(monkeypatch, caplog):
    """cumsum's emitter reads the array's size while generating code: the symbolic graph fails
    in the backend, and each size compiles its own graph, silently, with the eager results.
    (x[:5], which fits only B >= 5, fails in the passes: tests/test_symbolic.py.)"""
    def fn(x):
        return np.cumsum(x, axis=0) * 2
    f = gc.trace(fn, dynamic={"x": 0})
    calls = _counting(monkeypatch, f)
    with warnings.catch_warnings(), caplog.at_level(logging.DEBUG, logger="graphc.runtime"):
        warnings.simplefilter("error")  # no PassWarning, no RetraceWarning
        for n in (6, 9):
            x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
            np.testing.assert_array_equal(f(x), fn(x))
    assert "no code for every size" in caplog.text and "symbolic dimension" in caplog.text
    assert _generic(f) == [None]
    assert calls == [True, False, False]  # the template (refused), then one graph per size


# -- training steps ---------------------------------------------------------------------------
def _model(seed):
    gen = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    for p in model.parameters():
        p.data[...] = (gen.standard_normal(p.data.shape) * 0.2).astype(np.float32)
    return model


def _train_step(model, loss_fn):
    return training_step(model, optim.Adam(model.parameters(), lr=1e-2), loss_fn)


class NumpyAdamMLP:
    """The same training step in plain float32 NumPy (the reference)."""

    def __init__(self, model, loss):
        self.p = [p.data.copy() for p in model.parameters()]  # w1, b1, w2, b2
        self.m = [np.zeros_like(p) for p in self.p]
        self.v = [np.zeros_like(p) for p in self.p]
        self.t, self.loss = 0, loss

    def __call__(self, x, y):
        w1, b1, w2, b2 = self.p
        h = np.maximum(x @ w1.T + b1, 0)
        z = h @ w2.T + b2
        n = len(x)
        if self.loss == "ce":
            zs = z - z.max(axis=1, keepdims=True)
            logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
            loss = -logp[np.arange(n), y].mean()
            dz = np.exp(logp)
            dz[np.arange(n), y] -= 1
            dz /= n
        else:
            loss = np.mean((z - y) ** 2)
            dz = 2 * (z - y) / z.size
        dh = (dz @ w2) * (h > 0)
        grads = [dh.T @ x, dh.sum(axis=0), dz.T @ h, dz.sum(axis=0)]
        self.t += 1
        for p, g, m, v in zip(self.p, grads, self.m, self.v):
            m[...] = 0.9 * m + 0.1 * g
            v[...] = 0.999 * v + 0.001 * g * g
            mhat, vhat = m / (1 - 0.9 ** self.t), v / (1 - 0.999 ** self.t)
            p -= 1e-2 * mhat / (np.sqrt(vhat) + 1e-8)
        return loss


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_training_step_compiles_once_for_every_batch_size(monkeypatch, loss):
    """Three copies of one model: trained by the generic step, by a step compiled per size, and
    by NumPy. Generic == per size where both run: the parameters bit for bit (at these sizes the
    per-size groups run serially inline, with the loops the generic code has: the same sums in
    the same order); the loss to 1e-6 (a mean over fewer than LANE_FLUSH elements folds its
    float32 lanes in float32 per size, in float64 generically, at every length). NumPy within
    float32 rounding of a few Adam steps."""
    loss_fn = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    models = [_model(3), _model(3)]
    reference = NumpyAdamMLP(models[0], loss)
    generic = gc.trace(_train_step(models[0], loss_fn), dynamic={"x": 0, "y": 0})
    per_size = gc.trace(_train_step(models[1], loss_fn))
    calls = _counting(monkeypatch, generic)
    rng = np.random.default_rng(4)
    for k, n in enumerate((7, 4099) + SIZES):
        x = rng.standard_normal((n, 64)).astype(np.float32)
        y = rng.integers(0, 10, n) if loss == "ce" else rng.standard_normal((n, 10)).astype(np.float32)
        got = generic(x, y)
        assert isinstance(got, np.float32)
        np.testing.assert_allclose(got, reference(x, y), rtol=1e-4)
        if k < 2:  # the per-size copy trains in step for two sizes (a compile each)
            np.testing.assert_allclose(got, per_size(x, y), rtol=1e-6)
            for p, q in zip(models[0].parameters(), models[1].parameters()):
                np.testing.assert_array_equal(p.data, q.data)
    for p, r in zip(models[0].parameters(), reference.p):
        np.testing.assert_allclose(p.data, r, atol=2e-4)
    assert calls == [True]
    (compiled,) = _generic(generic)
    assert len(compiled.compiled.entry.signatures) == 1


def test_sorts_and_scans_compile_once(monkeypatch):
    """Sorts along any axis and scans across the batch read their lengths at run time."""
    def fn(x):
        return np.sort(x, axis=0), np.argsort(x, axis=1), np.cumsum(x, axis=1), np.cumprod(x[:, :3], axis=1)
    f = gc.trace(fn, dynamic={"x": 0})
    calls = _counting(monkeypatch, f)
    rng = np.random.default_rng(5)
    for n in (2, 3, 37):
        x = rng.standard_normal((n, 6))
        for g, w in zip(f(x), fn(x)):
            np.testing.assert_array_equal(g, w)
    assert calls == [True]


def test_a_symbolic_dimension_inside_the_array_reduces_right_at_every_size(monkeypatch):
    """The symbol at axis 1 of a 3-D array: reduced alone (memory-order float32 rows flushed every
    ROW_FLUSH rows, and once more where B is no multiple of it), as the contiguous lane axis of
    a 2-D reduction, and kept (the accumulator rows have B entries); sizes around ROW_FLUSH and
    LANES, a NaN and infinities on the way. Results as NumPy's within float32 rounding."""
    def fn(x):
        return (x.sum(axis=1), x.sum(axis=(0, 1)), x.mean(axis=(1, 2)), x.sum(axis=0), x.max(axis=1),
                np.argmax(x, axis=1), np.argmin(x, axis=0), x.var(axis=1), x[0].sum(axis=0), x[1].max(axis=0))
    f = gc.trace(fn, dynamic={"x": {1: "B"}})
    calls = _counting(monkeypatch, f)
    rng = np.random.default_rng(6)
    for n in (2, 15, 16, 17, 33, 64, 65, 257):
        x = (rng.standard_normal((3, n, 20)) + 100).astype(np.float32)  # an offset: float32 rounding shows
        x[2, n // 2, 3], x[1, n - 1, 5], x[1, 0, 6] = np.nan, np.inf, -np.inf
        with np.errstate(invalid="ignore"):  # (inf - inf in NumPy's var)
            want = fn(x)
        for g, w in zip(f(x), want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=np.nanmax(np.abs(w[np.isfinite(w)])) * 2e-6)
    assert calls == [True]


def test_constants_alike_everywhere_are_generic(monkeypatch, tmp_path):
    """np.zeros_like(x), np.pad's fill and np.full_like trace as constant arrays of the batch's
    size, whose every element is alike: the same graph at every size. They once made every call
    of gc.trace(dynamic=...) raise NotGeneric ("a constant array ... whose content depends on the
    batch size") and gc.save refuse the function; constants that do differ still refuse."""
    def fn(x):
        padded = np.pad(x, ((0, 0), (1, 2)))
        mask = np.where(x > 0, np.ones_like(x), np.zeros_like(x))
        return padded + np.full_like(x[:, :1], 0.5), mask, np.zeros_like(x), (np.ones_like(x) * x).sum(axis=0)
    f = gc.trace(fn, dynamic={"x": 0})
    calls = _counting(monkeypatch, f)
    rng = np.random.default_rng(7)
    for n in (2, 3, 17, 1000):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        for g, w in zip(f(x), fn(x)):  # (the sum: float32 rounding of NumPy's pairwise sum)
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6 * np.abs(x).sum(axis=0).max())
    assert calls == [True]  # the symbolic graph, once
    gc.save(fn, tmp_path / "pad.gcx", np.ones((5, 4), np.float32))
    x = rng.standard_normal((9, 4)).astype(np.float32)
    for g, w in zip(gc.load(tmp_path / "pad.gcx")(x), f(x)):  # bit for bit as the traced function
        np.testing.assert_array_equal(g, w)
    with pytest.raises(symbolic.NotGeneric, match="constant array"):
        gc.trace(lambda x: x + np.arange(len(x))[:, None], dynamic={"x": 0})(np.ones((5, 2)))
    with pytest.raises(gc.ExportError, match="decide alike"):  # its scalar is compared at other sizes
        gc.save(lambda x: x + np.full_like(x, 1.0 if len(x) > 100 else 2.0), tmp_path / "f.gcx", np.ones((5, 2)))


def test_the_first_row_of_the_batch_compiles_once(monkeypatch):
    """x[0] holds at every batch size: once a shape rule compared 0 < B (a TypeError), and each
    size compiled its own graph. x[1] fits only batches of 2 or more: each size compiles."""
    f = gc.trace(lambda x: (x[0] * 2, x[:, 0] + x[0, 1]), dynamic={"x": 0})
    calls = _counting(monkeypatch, f)
    for n in (2, 5, 33):
        x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
        for g, w in zip(f(x), (x[0] * 2, x[:, 0] + x[0, 1])):
            np.testing.assert_array_equal(g, w)
    assert calls == [True]
    with pytest.raises(ShapeError, match="fits only some"):
        registry.infer_types("index", [f32(B, 3)], {"indices": (1,)})


def test_a_module_traced_for_every_batch_size(monkeypatch):
    """gc.trace(model, dynamic={"x": 0}) names forward's parameter (a Module's __call__ takes
    *args: it once refused "'x' is not a parameter of graph(*args, **kwargs)")."""
    model = _model(8)
    model.eval()
    f = gc.trace(model, dynamic={"x": 0})
    calls = _counting(monkeypatch, f)
    rng = np.random.default_rng(9)
    for n in (3, 17):
        x = rng.standard_normal((n, 64)).astype(np.float32)
        np.testing.assert_allclose(f(x), model(x), rtol=1e-5, atol=1e-5)
    assert calls == [True]
    with pytest.raises(ValueError, match="not a parameter"):
        gc.trace(model, dynamic={"y": 0})
