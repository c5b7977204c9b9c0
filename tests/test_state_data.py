"""``p.data`` inside a traced function: NumPy's name for the State's array (graphc/state.py,
graphc/trace.py StateView and DataView). Each test runs the same Python code eagerly (the
oracle: plain NumPy arrays in the States) and compiled, and compares every call."""
import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.state import State


def _twins(*arrays):
    """Two sets of States holding equal copies of ``arrays``: one run eagerly, one compiled."""
    return [State(a.copy()) for a in arrays], [State(a.copy()) for a in arrays]


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_data_is_read_at_each_call_not_frozen_at_the_trace(device):
    """It once was: ``p.data * 2`` was a constant of the graph, computed when traced."""
    (ea, eb), (ca, cb) = _twins(np.arange(3.0), np.ones(3))

    def step(x, a, b):
        y = a.data * 2 + x
        a.write(a.read() + 1.0)
        return y, a.data, b.data.sum()

    f = gc.trace(lambda x: step(x, ca, cb), device=device)
    for k in range(3):
        x = np.full(3, float(k))
        want, got = step(x, ea, eb), f(x)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
        assert not np.shares_memory(got[1], ca.data)  # a fresh array, as every output
    assert f.signatures == 1


def test_returned_data_after_an_optimizer_step_is_the_updated_parameter():
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.05)
    x, t = np.random.default_rng(0).random((5, 3), np.float32), np.zeros((5, 2), np.float32)

    @gc.trace
    def step(x, t):
        before = model[0].weight.data.copy()
        opt.zero_grad()
        loss = ((model(x) - t) ** 2).mean()
        loss.backward()
        opt.step()
        return before, model[0].weight.data, model[2].bias.data * 1.0

    for _ in range(3):
        old = model[0].weight.data.copy()
        before, after, bias = step(x, t)
        np.testing.assert_array_equal(before, old)
        np.testing.assert_array_equal(after, model[0].weight.data)
        np.testing.assert_array_equal(bias, model[2].bias.data)
        assert not np.array_equal(before, after)


def test_manual_sgd_through_data_matches_numpy():
    """The textbook update ``w.data -= lr * w.grad`` (and its spelled-out form)."""
    w, b = nn.Parameter(np.ones(3)), nn.Parameter(np.zeros(()))
    x = np.array([0.5, -1.0, 2.0])

    @gc.trace
    def step(x):
        loss = ((w.read() * x).sum() + b.read() - 1.0) ** 2
        loss.backward()
        w.data -= 0.1 * w.grad
        b.data[...] = b.data - 0.1 * b.grad
        w.grad = None
        b.grad = None
        return loss

    ew, eb = np.ones(3), 0.0
    for _ in range(4):
        r = (ew * x).sum() + eb - 1.0
        np.testing.assert_allclose(step(x), r ** 2, rtol=1e-12)
        ew, eb = ew - 0.1 * 2 * r * x, eb - 0.1 * 2 * r
        np.testing.assert_allclose(w.data, ew, rtol=1e-12)
        np.testing.assert_allclose(b.data, eb, rtol=1e-12)


def test_in_place_arithmetic_on_a_name_for_data_writes_the_state():
    """``d = s.data; d -= x`` changes ``s`` in NumPy; a 0-d State too (a NumPy 0-d array)."""
    (es, ez), (cs, cz) = _twins(np.arange(4.0), np.array(3.0))

    def step(x, s, z):
        d = s.data
        d -= x
        d *= 2.0
        zd = z.data
        zd *= 0.5
        return d + 0, s.data.sum()

    f = gc.trace(lambda x: step(x, cs, cz))
    for k in range(3):
        x = np.full(4, k + 1.0)
        want, got = step(x, es, ez), f(x)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(cs.data, es.data)
        np.testing.assert_array_equal(cz.data, ez.data)


def test_whole_array_assignment_through_data():
    (es,), (cs,) = _twins(np.zeros((2, 3), np.float32))

    def step(x, s):
        s.data[...] = x  # (a float64 value cast as NumPy's setitem casts)
        s.data[:] = s.data * 2
        return s.data.sum()

    f = gc.trace(lambda x: step(x, cs))
    for k in range(2):
        x = np.full((2, 3), k + 0.25)
        np.testing.assert_array_equal(f(x), step(x, es))
        np.testing.assert_array_equal(cs.data, es.data)
        assert cs.data.dtype == np.float32


def test_a_view_of_data_follows_numpy_or_is_refused():
    """A view taken after the last write is current; a copy taken before keeps the old values;
    a view taken before a write and used after it is refused, naming the line."""
    (es,), (cs,) = _twins(np.arange(6.0).reshape(2, 3))

    def fine(x, s):
        row0 = s.data[0]
        early = row0 * 1.0  # used before the write: current then
        kept = s.data.T.copy()
        s.write(s.read() + x)
        late = s.data[1]
        return early, kept, late + 0

    f = gc.trace(lambda x: fine(x, cs))
    for k in range(2):
        x = np.full((2, 3), k + 1.0)
        for w, g in zip(fine(x, es), f(x)):
            np.testing.assert_array_equal(g, w)

    def stale(x):
        row0 = cs.data[0]
        cs.write(cs.read() + x)
        return row0 * 1.0

    with pytest.raises(gc.TraceError, match=r"read before .* written .*view of .*test_state_data.py:\d+"):
        gc.trace(stale)(np.ones((2, 3)))


def test_data_carries_no_gradient():
    """As torch's ``.data``: a loss computed from ``p.data`` does not reach ``p.grad``."""
    p = nn.Parameter(np.array([1.0, 2.0]))
    x = np.array([3.0, 5.0])

    @gc.trace
    def step(x):
        p.grad = None
        loss = (p.read() * x).sum() + (p.data * p.data * x).sum()
        loss.backward()
        return p.grad

    np.testing.assert_array_equal(step(x), x)


def test_bad_uses_of_data_inside_a_trace_are_clear_errors():
    s = State(np.zeros(3, np.float32))
    p = nn.Parameter(np.ones(2))
    with pytest.raises(gc.TraceError, match=r"p.data\[\.\.\.\] = value.*test_state_data.py:\d+"):
        gc.trace(lambda x: s.data.__setitem__(0, x[0]) or x)(np.ones(3, np.float32))
    with pytest.raises(gc.TraceError, match=r"State.data = value inside a traced function is not supported "
                       r"\(at .*test_state_data.py:\d+.*State.data\[\.\.\.\] = value"):
        gc.trace(lambda x: setattr(s, "data", x) or x)(np.ones(3, np.float32))
    with pytest.raises(gc.TraceError, match=r"nn.init.normal_ inside a traced function"):
        gc.trace(lambda x: nn.init.normal_(p) and x)(np.ones(2))
    with pytest.raises(gc.TraceError, match=r"p.numpy\(\)"):
        gc.trace(lambda x: x * p.numpy())(np.ones(2))
    np.testing.assert_array_equal(s.data, 0)  # nothing written by the failed traces


def test_data_in_a_loop_body_is_read_and_not_written():
    s = State(np.array([1.0, 2.0]))

    def body(i, acc):
        return acc + s.data * i

    f = gc.trace(lambda x: gc.fori_loop(0, 3, body, x))
    np.testing.assert_array_equal(f(np.zeros(2)), np.array([3.0, 6.0]))
    s.data[...] = [10.0, 20.0]
    np.testing.assert_array_equal(f(np.zeros(2)), np.array([30.0, 60.0]))

    def writes(i, acc):
        d = s.data
        d += acc
        return acc

    with pytest.raises(gc.TraceError, match="cannot update State"):
        gc.trace(lambda x: gc.fori_loop(0, 3, writes, x))(np.zeros(2))


def test_data_outside_a_trace_is_the_array():
    s = State(np.ones(2))
    a = s.data
    assert a is s.data and isinstance(a, np.ndarray)
    s.data = np.zeros(3)
    assert s.data.shape == (3,) and s.shape == (3,)
    p = nn.Parameter(np.ones(2, np.float32))
    p.data = p.data.astype(np.float64)  # (as torch: .data may change the dtype outside a trace)
    assert p.data.dtype == np.float64 and p.numpy() is p.data


def test_optimizer_options_changed_between_calls():
    """lr and weight_decay changed between calls are State data: no retrace, and the step
    follows them. Turning momentum on changes the graph: one retrace (the optimizer guards
    ``momentum != 0``, not the value)."""
    traces = []
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1, weight_decay=0.01)
    x = np.array([0.5, 1.0])

    @gc.trace
    def step(x):
        traces.append(1)
        opt.zero_grad()
        (p.read() * x).sum().backward()
        opt.step()
        return p.data

    w = p.data.copy()
    for lr, wd in ((0.1, 0.01), (0.05, 0.02), (0.05, 0.03)):
        opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"] = lr, wd
        w = w - lr * (x + wd * w)
        np.testing.assert_allclose(step(x), w, rtol=1e-12)
    assert len(traces) == 1
    opt.param_groups[0]["momentum"] = 0.9
    buf = x + 0.03 * w  # (PyTorch starts the buffer at the first momentum step's d)
    w = w - 0.05 * buf
    np.testing.assert_allclose(step(x), w, rtol=1e-12)
    d = x + 0.03 * w
    buf = 0.9 * buf + d
    w = w - 0.05 * buf
    np.testing.assert_allclose(step(x), w, rtol=1e-12)
    assert len(traces) == 2
