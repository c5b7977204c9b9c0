"""State read/write-back, guarded retracing and pre-call input checks (graphc/runtime.py)."""
import numpy as np
import pytest

import graphc as gc
from graphc.state import State
from graphc.trace import current_builder


def test_state_is_updated_in_place_and_hyperparameters_do_not_retrace():
    w, lr = State(np.ones(3)), State(np.array(0.1))
    alias = w.data

    @gc.trace
    def step(x):
        wv = w.read()
        loss = np.sum((x * wv - 1.0) ** 2)
        w.write(wv - lr.read() * gc.gradient(loss, wv))
        return loss

    x, ref = np.array([1.0, 2.0, 3.0]), np.ones(3)
    for _ in range(3):
        loss = step(x)
        assert loss == pytest.approx(np.sum((x * ref - 1) ** 2))
        ref = ref - 0.1 * 2 * (x * ref - 1) * x
        np.testing.assert_allclose(w.data, ref, rtol=1e-12, atol=1e-14)
    assert w.data is alias  # written into the same array
    lr.data[...] = 0.0
    step(x)
    np.testing.assert_allclose(w.data, ref, rtol=1e-12, atol=1e-14)
    assert step.signatures == 1


def test_state_shape_change_retraces():
    s = State(np.ones(2))
    f = gc.trace(lambda x: x * s.read())
    np.testing.assert_array_equal(f(np.ones(2)), [1, 1])
    s.data = np.full(3, 2.0)
    np.testing.assert_array_equal(f(np.ones(3)), [2, 2, 2])
    assert f.signatures == 2


def test_check_finite_writes_nothing():
    a, b = State(np.ones(2)), State(np.ones(2))

    @gc.trace(check_finite=True)
    def step(x):
        a.write(a.read() + 1)
        b.write(b.read() / x)
        return x

    with pytest.raises(gc.errors.NonFiniteError, match="non-finite"):
        step(np.zeros(2))
    np.testing.assert_array_equal(a.data, [1, 1])  # a's finite update was not written either
    np.testing.assert_array_equal(b.data, [1, 1])


def test_state_write_of_an_alias_is_safe():
    a, b = State(np.array([1.0, 2.0])), State(np.array([3.0, 4.0]))

    @gc.trace
    def swap():
        va, vb = a.read().copy(), b.read()
        a.write(vb)
        b.write(va)
        return 0.0

    swap()
    np.testing.assert_array_equal(a.data, [3, 4])
    np.testing.assert_array_equal(b.data, [1, 2])

    @gc.trace
    def aliased_swap():  # eagerly va IS a's array: after a.write(vb) it holds vb's values
        va, vb = a.read(), b.read()
        a.write(vb)
        b.write(va)
        return 0.0

    with pytest.raises(gc.TraceError, match=r"read before State was written .*test_state.py:\d+"):
        aliased_swap()
    np.testing.assert_array_equal(a.data, [3, 4])


def test_guard_retraces_when_python_state_changes():
    mode = {"double": True}

    @gc.trace
    def f(x):
        current_builder().guard(lambda: mode["double"], mode["double"], "double mode")
        return x * 2 if mode["double"] else x

    x = np.ones(2)
    np.testing.assert_array_equal(f(x), [2, 2])
    mode["double"] = False
    np.testing.assert_array_equal(f(x), [1, 1])
    mode["double"] = True
    np.testing.assert_array_equal(f(x), [2, 2])
    assert f.signatures == 2  # both variants kept, no third trace


def test_input_check_runs_before_the_call():
    s = State(np.zeros(1))

    def labels_ok(t):
        if t.max() >= 3:
            raise ValueError(f"label {t.max()} out of range")

    @gc.trace
    def f(t):
        current_builder().check_input(t, labels_ok)
        s.write(s.read() + 1)
        return t * 2

    np.testing.assert_array_equal(f(np.array([0, 2])), [0, 4])
    with pytest.raises(ValueError, match="label 5"):
        f(np.array([0, 5]))
    assert s.data[0] == 1  # the failing call updated nothing


def test_module_train_eval_switch_retraces():
    from graphc import nn
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    predict = gc.trace(model)
    x = np.ones((3, 4), np.float32)
    model.eval()
    first = predict(x)
    np.testing.assert_array_equal(first, predict(x))  # eval: dropout is the identity
    model.train()
    trained = predict(x)
    assert (trained == 0).any()  # train: the mask drops some units
    model.eval()
    np.testing.assert_array_equal(predict(x), first)
