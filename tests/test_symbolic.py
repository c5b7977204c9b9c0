"""Symbolic dimensions (graphc/symbolic.py): types with symbols, generalizing two traces,
instantiating, and gc.trace(dynamic=...): one trace for every batch size, same numbers as
tracing each size."""
import numpy as np
import pytest

import graphc as gc
from graphc import ir, nn, optim, symbolic
from graphc.errors import ShapeError
from graphc.nn.random import default_generator
from graphc.runtime import is_dynamic, trace_into_graph

from conftest import training_step


def _traced(fn, args, size=None):
    """The graph of ``fn`` traced with dim 0 of ``args[0]`` set to ``size``."""
    if size is not None:
        args = (np.broadcast_to(np.zeros((), args[0].dtype), (size,) + args[0].shape[1:]),) + tuple(args[1:])
    builder, _ = trace_into_graph(fn, tuple(args), {}, is_dynamic, "f", [f"a{i}" for i in range(len(args))])
    return builder.graph


def _template(fn, *args):
    with symbolic.probing(symbolic.PROBES):
        return symbolic.generalize(*(_traced(fn, args, p) for p in symbolic.PROBES), "B")


def mlp(x, w, b):
    h = np.tanh(x @ w + b)
    return np.sum(h, axis=1), h.reshape(h.shape[0], 3, 2), np.var(h, axis=0, ddof=1)


W = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
BIAS = np.random.default_rng(1).standard_normal(6).astype(np.float32)


def test_symbolic_types_print_parse_and_refuse_bad_names():
    t = _template(mlp, np.ones((3, 4), np.float32), W, BIAS)
    text = str(t)
    assert "%0:f32[B,4]" in text and "shape=(B, 3, 2)" in text
    assert ir.parse(text) == t
    with pytest.raises(TypeError, match="symbolic dimension"):
        ir.TensorType(("B-1", 3), "float32")
    with pytest.raises(TypeError, match="symbolic"):
        ir.TensorType(("B", 3), "float32").size
    assert symbolic.symbols(t) == ["B"]


def test_instantiate_equals_tracing_at_that_size():
    x = np.ones((3, 4), np.float32)
    t = _template(mlp, x, W, BIAS)
    for n in (2, 5, 3000):
        assert str(symbolic.instantiate(t, {"B": n})) == str(_traced(mlp, (x, W, BIAS), n))


def test_size_dependent_code_is_named():
    x = np.ones((3, 4))
    with pytest.raises(symbolic.NotGeneric, match=r"test_symbolic.py:\d+ depends on the batch size"):
        _template(lambda x: x / x.shape[0], x)
    with pytest.raises(symbolic.NotGeneric, match="branches or loops"):
        _template(lambda x: sum(x[i] for i in range(len(x) % 3)), x)
    # x[:1500] is all of a batch probed at 1009: at 2000 it would slice
    with pytest.raises(symbolic.NotGeneric, match="slice None:1500:None"):
        _template(lambda x: x[:1500] * 2, x)
    # x[:5] slices at the probes; at 3 the shape rules decide otherwise: instantiating says so
    t = _template(lambda x: x[:5] * 2, x)
    with pytest.raises(ShapeError, match="decided something by the batch size|does not hold"):
        symbolic.instantiate(t, {"B": 3})


def _gt100(x):
    return x * 2 if x.shape[0] > 100 else x


def _at_most_64(x):
    return x * min(len(x), 64)


def _parity(x):
    return x + len(x) % 2


def _below_5000(x):
    return x * 2 if len(x) < 5000 else x


def _refuses_small(x):
    if len(x) < 4:
        raise ValueError("batch too small")
    return x * 2


def _head_of_big(x):
    return x[:5] * (2 if len(x) > 100 else 1)  # (the template holds from 5 on: compared at 5)


@pytest.mark.parametrize("fn", [_gt100, _at_most_64, _parity, _below_5000, _refuses_small, _head_of_big])
def test_decisions_both_probes_take_alike_are_caught_at_other_sizes(fn):
    """Both probes (1009, 1013) take these branches alike, so the two traces generalize; at the
    check sizes the code traces otherwise, and the template would silently differ from NumPy."""
    x = np.ones((3, 4))
    t = _template(fn, x)
    with pytest.raises(symbolic.NotGeneric, match=r"test_symbolic.py:\d+|raises ValueError"):
        symbolic.check_sizes(t, lambda n: _traced(fn, (x,), n), "B")


def _square_or_triple(x):
    return x @ x if x.shape[0] == x.shape[1] else x * 3


@pytest.mark.parametrize("fn", [_gt100, _at_most_64, _parity, _square_or_triple])
def test_trace_dynamic_gives_numpys_result_where_the_code_decides_by_the_size(fn):
    f = gc.trace(fn, dynamic={"x": 0}, device="numpy")
    for n in (1013, 8, 4, 2):
        x = np.arange(n * 4.0).reshape(n, 4)
        np.testing.assert_array_equal(f(x), fn(x), err_msg=f"batch {n}")


def test_check_sizes_passes_generic_code_and_skips_sizes_the_template_refuses():
    x = np.ones((3, 4), np.float32)
    t = _template(mlp, x, W, BIAS)
    assert symbolic.check_sizes(t, lambda n: _traced(mlp, (x, W, BIAS), n), "B") is t
    # at 2 and 3 the template of x[:5] refuses (a ShapeError there): compared at 5, where the
    # trace leaves the slice of the whole batch out; so at 2 for x[:2] and at 4 (x's width) for x[:4]
    for head in (lambda x: x[:5] * 2, lambda x: x[:2] * 2, lambda x: x[:4].reshape(4, 4) + 1):
        symbolic.check_sizes(_template(head, x), lambda n: _traced(head, (x,), n), "B")


def test_bind_names_the_dimension():
    t = gc.trace(lambda x, y: x + y, dynamic={"x": 0, "y": 0}).template(np.ones((3, 4)), np.ones((3, 4)))
    assert symbolic.bind(t, [(5, 4), (5, 4)]) == {"B": 5}
    with pytest.raises(ShapeError, match="dimension 0 is B, which is 5"):
        symbolic.bind(t, [(5, 4), (6, 4)])
    with pytest.raises(ShapeError, match="dimension 1 must be 4"):
        symbolic.bind(t, [(5, 3), (5, 3)])


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")  # (NumPy's, for the batch of 1)
def test_trace_dynamic_traces_each_size_and_compiles_once(monkeypatch):
    import graphc.runtime as runtime
    traces = []

    def counting(fn, args, *rest):
        traces.append(args[0].shape)
        return trace_into_graph(fn, args, *rest)
    monkeypatch.setattr(runtime, "trace_into_graph", counting)

    tf = gc.trace(mlp, dynamic={"x": 0})
    rng = np.random.default_rng(2)
    for n in (5, 7, 1, 0, 9):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        with np.errstate(all="ignore"):
            want = mlp(x, W, BIAS)
        got = tf(x, W, BIAS)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
    # each new size is traced (cheap: the Python code may decide by the size) and, from 2 on, checked
    # against the template made from the two probe traces; sizes 0 and 1 compile as themselves
    assert [s[0] for s in traces] == [5, *symbolic.PROBES, 7, 1, 0, 9]
    assert tf.signatures == 3  # the template's one compile, and sizes 1 and 0
    assert "f32[B,4]" in str(tf.template(x, W, BIAS))


def test_count_node_compiles_unfolded():
    x = np.random.default_rng(3).random((5, 3))
    f = gc.trace(lambda x: (np.var(x, axis=0, ddof=1), np.std(x, ddof=7)), passes="O0")
    assert "count(" in str(f.lower(x).graph)
    with np.errstate(all="ignore"):
        for g, w in zip(f(x), (np.var(x, axis=0, ddof=1), np.std(x, ddof=7))):
            np.testing.assert_allclose(g, w, rtol=1e-12)


def _step(model, opt):
    return training_step(model, opt, nn.MSELoss())


def _model(seed):
    gen = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.25), nn.Linear(8, 3))
    for p in model.parameters():
        p.data[...] = gen.standard_normal(p.data.shape).astype(np.float32) * 0.3
    return model


def test_dynamic_training_step_matches_tracing_each_size():
    """BatchNorm (unbiased running variance: n / (n - 1)), Dropout (its generator advances by the
    element count) and a mean loss, all generic: the same numbers as a step traced per size."""
    models = [_model(0), _model(0)]
    steps = []
    for k, model in enumerate(models):
        opt = optim.Adam(model.parameters(), lr=1e-2)
        steps.append(gc.trace(_step(model, opt), dynamic={"x": 0, "y": 0} if k else None))
    rng = np.random.default_rng(4)
    for n in (16, 5, 16, 7):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        y = rng.standard_normal((n, 3)).astype(np.float32)
        losses = []
        for s in steps:  # (both models draw their dropout masks from the default generator)
            default_generator.manual_seed(n)
            losses.append(s(x, y))
        assert losses[0] == losses[1]
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(models[0][1].running_var.data, models[1][1].running_var.data)
    assert len(steps[1]._templates) == 1


def test_dynamic_errors():
    with pytest.raises(ValueError, match="not a parameter"):
        gc.trace(lambda x: x, dynamic={"z": 0})
    with pytest.raises(TypeError, match="axis: symbol"):
        gc.trace(lambda x: x, dynamic={"x": {-1: "B"}})
    with pytest.raises(ValueError, match="cannot name a dimension"):
        gc.trace(lambda x: x, dynamic={"x": {0: "2B"}})
    with pytest.raises(ValueError, match="one symbolic dimension"):
        gc.trace(lambda x, y: x, dynamic={"x": {0: "B"}, "y": {0: "N"}})
    f = gc.trace(lambda x, y: x + y, dynamic={"x": 0, "y": 0})
    with pytest.raises(ShapeError, match="dimension 0 of 'y' is B, which is 3"):
        f(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ShapeError, match="marks dimension"):
        f(np.ones(()), np.ones(()))
    # a size where the template does not hold traces as itself: the eager result
    h = gc.trace(lambda x: x[:5] * 2, dynamic={"x": 0})
    for n in (3, 8):
        np.testing.assert_array_equal(h(np.arange(n * 2.0).reshape(n, 2)), np.arange(n * 2.0).reshape(n, 2)[:5] * 2)
    g = gc.trace(lambda x: x / len(x), dynamic={"x": 0})
    with pytest.raises(symbolic.NotGeneric, match="depends on the batch size"):
        g(np.ones((3, 2)))
