"""State updates written in place (graphc/backend/plan.py ``in_place``, graphc/runtime.py).

A State's update may be written straight into the State's array when the generated code
cannot observe the difference; everywhere else it is written back after the call, as
before. Each unsafe case below must fall back, and every result must match the O0
pipeline (no memory planning, always written back).
"""
import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.interpret import interpret
from graphc.state import State
from graphc.backend.plan import verify_plan
from conftest import small_training_step


def plan_of(f):
    """The CPU backend's memory plan of f's latest signature (kept by its executable)."""
    return f._last.compiled.plan


def train(opt_name, dtype, passes, steps=3):
    rng = np.random.default_rng(0)
    model, step = small_training_step(opt_name, dtype, passes=passes)

    x, t = rng.standard_normal((4, 6)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)
    arrays = [p.data for p in model.parameters()]
    addresses = [a.ctypes.data for a in arrays]
    losses = [step(x, t) for _ in range(steps)]
    assert all(p.data is a and a.ctypes.data == ad for p, a, ad in zip(model.parameters(), arrays, addresses))
    # one more step against the NumPy interpreter on the compiled graph
    compiled = step._last
    want = interpret(compiled.graph, x, t, *[st.data.copy() for st in compiled.state_in])
    losses.append(step(x, t))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(losses[-1], want[0], rtol=tol)
    for st, w in zip(compiled.state_out, want[compiled.n_user:]):
        np.testing.assert_allclose(st.data, w, rtol=tol, atol=tol)
    return step, losses, [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_steps_update_parameters_in_place(opt_name, dtype):
    step, losses, params = train(opt_name, dtype, "O2")
    _, want_losses, want_params = train(opt_name, dtype, "O0")
    compiled, inplace = step._last, plan_of(step).inplace
    graph = compiled.graph
    updates = dict(zip(compiled.state_out, graph.outputs[compiled.n_user:]))
    # every parameter and optimizer buffer is updated in place (the gradients, made by
    # matmuls and reductions, and the 0-d step counter are written back)
    params_in_place = [p for p in updates if isinstance(p, nn.Parameter) and updates[p] in inplace]
    assert len(params_in_place) == 4
    # and each optimizer buffer: SGD's momentum, Adam's first and second moments
    assert len(inplace) == 4 * (2 if opt_name == "sgd" else 3)
    assert "in place of input" in plan_of(step).describe(step._last.graph.value_names())
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(losses, want_losses, rtol=tol)
    for got, want in zip(params, want_params):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_old_value_read_after_the_update_is_not_overwritten():
    p, w = State(np.arange(4.0)), np.eye(4)[::-1].copy()

    @gc.trace
    def f(x):
        old = p.read().copy()  # (a copy: eagerly read() is the array, which the write changes)
        p.write(old - x)
        return old @ w  # reads the old value after the update's loop

    got = f(np.ones(4))
    assert not plan_of(f).inplace
    np.testing.assert_array_equal(got, np.arange(4.0)[::-1])
    np.testing.assert_array_equal(p.data, np.arange(4.0) - 1)


def test_an_update_that_is_also_returned_or_whose_old_value_is_returned_is_not_in_place():
    p = State(np.ones(5))

    @gc.trace
    def returns_new(x):
        new = p.read() * x
        p.write(new)
        return new

    @gc.trace
    def returns_old(x):
        old = p.read().copy()
        p.write(old * x)
        return old

    new = returns_new(np.full(5, 2.0))
    assert not plan_of(returns_new).inplace and new is not p.data
    old = returns_old(np.full(5, 3.0))
    assert not plan_of(returns_old).inplace
    np.testing.assert_array_equal(old, np.full(5, 2.0))
    np.testing.assert_array_equal(p.data, np.full(5, 6.0))


def test_updates_that_are_not_flat_elementwise_loops_are_written_back():
    a, b = State(np.eye(3)), State(np.ones((2, 3)))

    @gc.trace
    def f(x):
        a.write(x @ a.read())  # a matmul
        b.write(np.sum(b.read() * x[:2, :1], axis=0, keepdims=True) + b.read())  # broadcast read
        return 0.0

    x = np.arange(9.0).reshape(3, 3)
    f(x)
    assert not plan_of(f).inplace
    np.testing.assert_array_equal(a.data, x)
    np.testing.assert_allclose(b.data, np.ones((2, 3)) + np.array([[0.0 + 3.0] * 3]))


def test_no_state_is_written_in_place_before_a_node_that_can_raise():
    p, table = State(np.ones(4)), np.arange(10.0)

    @gc.trace
    def f(x, table, idx):
        p.write(p.read() + x)
        return table[idx]  # gather: raises IndexError for a bad index, after the update

    f(np.ones(4), table, np.array([1, 2]))
    assert not plan_of(f).inplace
    before = p.data.copy()
    with pytest.raises(IndexError):
        f(np.ones(4), table, np.array([1, 20]))
    np.testing.assert_array_equal(p.data, before)  # the failed call wrote nothing


def test_an_argument_overlapping_the_state_gets_a_copy():
    p, w = State(np.arange(6.0)), np.ones((6, 2))

    @gc.trace
    def f(x):
        p.write(p.read() * 2.0)
        return x @ w  # reads x after the update: x must still be the old values

    f(np.zeros(6))
    assert plan_of(f).inplace  # written in place when nothing overlaps...
    for alias in (p.data, p.data.reshape(2, 3).reshape(6)):  # ...but the user passes the State
        start = p.data.copy()
        got = f(alias)
        np.testing.assert_array_equal(got, start @ w)
        np.testing.assert_array_equal(p.data, start * 2.0)


def test_two_states_sharing_one_array_write_back_in_order():
    shared = np.ones(8)
    p, q = State(shared), State(shared)

    @gc.trace
    def f():
        p.write(p.read() * 2.0)
        q.write(q.read() + 1.0)
        return 0.0

    f()
    assert plan_of(f).inplace
    np.testing.assert_array_equal(shared, np.full(8, 2.0))  # both from the old value; q last
    assert p.data is shared and q.data is shared


def test_check_finite_refuses_an_update_it_would_have_written_in_place():
    p = State(np.ones(3))

    @gc.trace(check_finite=True)
    def f(x):
        p.write(p.read() / x)
        return 0.0

    f(np.ones(3))
    assert plan_of(f).inplace
    with pytest.raises(gc.errors.NonFiniteError):
        f(np.array([1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(p.data, np.ones(3))


def test_verify_plan_rejects_an_in_place_output_it_does_not_allow():
    p = State(np.ones(4))

    @gc.trace
    def f(x):
        p.write(p.read() + x)
        return x * 2.0

    f(np.ones(4))
    graph, plan = f._last.graph, plan_of(f)
    verify_plan(graph, plan)  # the planned one passes
    plan.inplace = {graph.outputs[0]: graph.inputs[0]}  # the user's result over the user's x
    with pytest.raises(ValueError, match="cannot be written in place"):
        verify_plan(graph, plan)


def test_the_old_value_is_read_before_the_update_overwrites_it():
    p = State(np.arange(5.0))

    @gc.trace
    def f(x):
        old = p.read().copy()  # (eagerly read() is the array itself: a copy keeps the old values)
        p.write(x * 2.0)  # does not read the old value...
        return np.sum(old * x)  # ...which the same loop reads after computing the update

    got = f(np.full(5, 3.0))
    assert plan_of(f).inplace and "fused" in [n.op for n in f._last.graph.nodes]
    assert got == 30.0  # sum(old * 3), not sum(6 * 3)
    np.testing.assert_array_equal(p.data, np.full(5, 6.0))


def test_a_fused_update_that_can_raise_itself_is_not_in_place():
    p = State(np.arange(4))  # int64: Numba's integer power raises for an exponent of -2**63

    @gc.trace
    def f(x, e):
        p.write(p.read() + x ** e)
        return 0.0

    f(np.full(4, 2), np.full(4, 3))
    assert not plan_of(f).inplace
    np.testing.assert_array_equal(p.data, np.arange(4) + 8)

    q = State(np.arange(4.0))  # the float power cannot raise: in place

    @gc.trace
    def g(x, e):
        q.write(q.read() + x ** e)
        return 0.0

    g(np.full(4, 2.0), np.full(4, 3.0))
    assert plan_of(g).inplace
    np.testing.assert_array_equal(q.data, np.arange(4.0) + 8)


def test_a_returned_view_of_the_update_is_not_the_states_array():
    p = State(np.arange(6.0))

    @gc.trace
    def f(x):
        new = p.read() * x
        p.write(new)
        return new.reshape(2, 3)

    first = f(np.full(6, 2.0))
    f(np.full(6, 2.0))
    assert not plan_of(f).inplace
    np.testing.assert_array_equal(first, (np.arange(6.0) * 2).reshape(2, 3))  # unchanged
    np.testing.assert_array_equal(p.data, np.arange(6.0) * 4)


class _Sub(np.ndarray):
    pass


def test_subclass_views_and_non_contiguous_sharing_still_get_copies():
    p, w = State(np.arange(6.0)), np.ones((6, 2))

    @gc.trace
    def f(x):
        p.write(p.read() * 2.0)
        return x @ w

    f(np.zeros(6))
    assert plan_of(f).inplace
    start = p.data.copy()
    np.testing.assert_array_equal(f(p.data.view(_Sub)), start @ w)  # an ndarray subclass view

    shared = np.arange(8.0)
    a, b = State(shared), State(shared[::2])  # b: a strided view of a's array

    @gc.trace
    def g():
        b.write(b.read() + 100.0)
        a.write(a.read() * 1.0)  # written last: wins, as with write-back
        return 0.0

    g()
    np.testing.assert_array_equal(shared, np.arange(8.0))


def test_a_read_only_state_fails_as_before():
    p = State(np.ones(4))
    p.data.flags.writeable = False  # (State copies a read-only array it is given; not this one)

    @gc.trace
    def f(x):
        p.write(p.read() + x)
        return 0.0

    with pytest.raises(ValueError, match="read-only"):
        f(np.ones(4))
