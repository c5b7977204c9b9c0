"""The first rule: a compiled call returns what eager NumPy returns at that moment, or raises.

Each test here attacks one way a compiled function could silently differ from the
same code run eagerly: aliased outputs, stale captured values, colliding signature
keys, overflow, odd inputs, recycled buffers changed by the user, threads.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.runtime import RetraceWarning
from graphc.state import State


# -- outputs never alias inputs ----------------------------------------------------------
@pytest.mark.parametrize("fn", [lambda x: x.copy(), lambda x: x * 1.0, lambda x: x, lambda x: x.reshape(2, 2),
                                lambda x: (x, x + 1)[0], lambda x: np.asarray(x)],
                         ids=["copy", "times-one", "identity", "reshape", "tuple", "asarray"])
def test_a_returned_array_is_never_the_callers(fn):
    a = np.arange(4.0)
    f = gc.trace(fn)
    for _ in range(2):  # the first call and the compiled fast path
        b = f(a)
        assert not np.shares_memory(a, b)
        b[...] = 99
        assert np.array_equal(a, np.arange(4.0))


def test_a_gradient_that_is_an_input_is_a_new_array():
    x, y = np.ones(3), np.arange(3.0)
    g = gc.grad(lambda x, y: np.sum(x * y), argnums=1)(x, y)
    assert np.array_equal(g, x) and not np.shares_memory(g, x)


# -- captured values are read at call time -------------------------------------------------
W = np.ones(3)
SCALE = 2.0


def _scaled(x):
    return x * W * SCALE


def _uses_helper(x):
    return _scaled(x) + 1


def test_a_captured_global_array_is_read_by_reference():
    global W
    f = gc.trace(lambda x: x * W)
    x = np.ones(3)
    assert np.array_equal(f(x), np.ones(3))
    W[:] = 0  # changed in place
    assert np.array_equal(f(x), np.zeros(3))
    W = np.full(3, 7.0)  # rebound
    assert np.array_equal(f(x), np.full(3, 7.0))
    W = np.full(4, 5.0)  # rebound to another shape: traced again
    assert np.array_equal(f(np.ones(4)), np.full(4, 5.0))
    W = np.ones(3)


def test_globals_read_by_a_helper_function_are_current():
    global W, SCALE, _scaled
    f = gc.trace(_uses_helper)
    x = np.ones(3)
    assert np.array_equal(f(x), np.full(3, 3.0))
    SCALE = 3.0
    assert np.array_equal(f(x), np.full(3, 4.0))
    W[:] = 2
    assert np.array_equal(f(x), np.full(3, 7.0))
    original = _scaled
    _scaled = lambda x: -x  # noqa: E731  (a rebound helper)
    try:
        assert np.array_equal(f(x), np.zeros(3))
    finally:
        _scaled, SCALE = original, 2.0
        W[:] = 1


def test_a_closed_over_array_and_number_are_current():
    table = np.arange(3.0)
    k = 2

    def f(x):
        return x * table + k

    traced = gc.trace(f)
    x = np.ones(3)
    assert np.array_equal(traced(x), f(x))
    table[0] = 10
    k = 5
    assert np.array_equal(traced(x), f(x))
    table = np.zeros(3)
    assert np.array_equal(traced(x), f(x))


def test_a_large_captured_array_is_not_baked_into_the_source():
    big = np.random.default_rng(0).standard_normal(200_000)
    f = gc.trace(lambda x: x + big)
    assert np.array_equal(f(np.ones(200_000)), 1 + big)
    assert len(f.source) < 20_000


def test_assigning_a_global_happens_while_tracing_and_a_traced_one_is_refused():
    def count(x):
        global _COUNT
        _COUNT = _COUNT + 1
        return x

    global _COUNT
    _COUNT = 0
    gc.trace(count)(np.ones(2))
    assert _COUNT == 1

    def leak(x):
        global _LEAKED
        _LEAKED = x * 2
        return x

    with pytest.raises(gc.TraceError, match="global '_LEAKED'"):
        gc.trace(leak)(np.ones(2))


def test_a_rebound_optimizer_is_used():
    model = nn.Linear(2, 1)
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):  # (its own closure: the test rebinds `opt` below)
        opt.zero_grad()
        loss = nn.MSELoss()(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = gc.trace(step)
    f(x, y)
    before = model.weight.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.0)  # rebound: the next call uses lr 0
    f(x, y)
    assert np.array_equal(model.weight.data, before)


# -- signatures keep types apart -------------------------------------------------------------
def test_static_arguments_equal_in_python_get_their_own_variants():
    f = gc.trace(lambda x, k: x * k, static_argnums=1)
    xi = np.ones(2, np.int64)
    for k in (2, 2.0, True, np.float32(2)):
        assert f(xi, k).dtype == (xi * k).dtype, k
    g = gc.trace(lambda x, ks: x * ks[0], static_argnums=1)
    assert g(xi, (2,)).dtype == np.int64 and g(xi, (2.0,)).dtype == np.float64


def test_python_and_numpy_scalars_promote_as_numpy_2():
    f = gc.trace(lambda x, s: x * s)
    x = np.ones(2, np.float32)
    assert f(x, 0.1).dtype == np.float32
    assert f(x, np.float64(0.1)).dtype == np.float64
    assert f(x, np.float32(0.1)).dtype == np.float32


def test_a_python_int_that_does_not_fit_raises_overflow_error():
    x = np.ones(3, np.int32)
    with pytest.raises(OverflowError):
        gc.trace(lambda x: x + 2**40)(x)
    f = gc.trace(lambda x, k: x + k)
    assert np.array_equal(f(x, 5), x + 5)
    with pytest.raises(OverflowError, match="out of bounds for int32"):
        f(x, 2**40)
    assert np.array_equal(f(x, 7), x + 7)


# -- inputs -----------------------------------------------------------------------------------
def test_subclasses_with_other_semantics_are_refused_on_every_call():
    f = gc.trace(lambda x: x * 2)
    f(np.arange(2.0))
    for bad in (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), np.matrix([[1.0, 2.0]])):
        for _ in range(2):
            with pytest.raises(TypeError, match="subclass"):
                f(bad)


def test_non_native_byte_order_is_converted(tmp_path):
    f = gc.trace(lambda x: x * 2)
    for _ in range(2):
        big_endian = np.arange(3.0).astype(">f8")
        out = f(big_endian)
        assert out.dtype == np.float64 and np.array_equal(out, [0.0, 2.0, 4.0])
    mm = np.memmap(tmp_path / "m.dat", dtype=np.float64, mode="w+", shape=(3,))
    mm[:] = 1
    assert np.array_equal(f(mm), np.full(3, 2.0))


@pytest.mark.parametrize("change", ["dtype", "shape", "writeable"])
def test_recycled_outputs_changed_by_the_user_are_not_reused(change):
    f = gc.trace(lambda x: np.tanh(x) * 2)
    x = np.ones(100_000)
    want = np.tanh(x) * 2
    for _ in range(4):
        y = f(x)
        assert y.dtype == np.float64 and y.shape == x.shape and y.flags.writeable
        assert np.array_equal(y, want)
        if change == "dtype":
            y.dtype = np.int64
        elif change == "shape":
            y.shape = (1000, 100)
        else:
            y.flags.writeable = False
        del y


# -- threads ------------------------------------------------------------------------------------
def test_a_trace_never_captures_another_threads_eager_state_write():
    st = State(np.zeros(3))
    inside, written = threading.Event(), threading.Event()

    def slow(x):
        inside.set()
        assert written.wait(10)
        return x + 1

    def writer():
        assert inside.wait(10)
        st.write(np.full(3, 5.0))  # eager, in another thread: happens now
        written.set()

    t = threading.Thread(target=writer)
    t.start()
    gc.trace(slow)(np.ones(3))
    t.join()
    assert np.array_equal(st.data, np.full(3, 5.0))


def test_a_first_call_from_several_threads_compiles_once():
    traces = []

    def f(x):
        traces.append(1)
        return np.tanh(x) + 1

    traced = gc.trace(f)
    barrier = threading.Barrier(4)
    results = [None] * 4

    def call(i):
        barrier.wait()
        results[i] = traced(np.ones(5))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(traces) == 1
    assert all(np.allclose(r, np.tanh(1) + 1) for r in results)


def test_two_threads_trace_different_models_at_once():
    barrier = threading.Barrier(2)
    out = {}

    def run(name, scale):
        def f(x):
            barrier.wait(10)  # both traces in progress at the same time
            return x * scale
        out[name] = gc.trace(f)(np.ones(2))

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", 2.0), ("b", 3.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(out["a"], [2.0, 2.0]) and np.array_equal(out["b"], [3.0, 3.0])


def test_a_call_back_into_a_compiling_function_does_not_deadlock(monkeypatch):
    from graphc import runtime
    f = gc.trace(lambda x: x + 1)
    real_run = runtime.manager.run
    inner = []

    def run_and_call_back(graph, passes):
        if not inner:
            inner.append(None)
            inner[0] = f(np.ones(2, np.float32))  # same function, another signature, same thread
        return real_run(graph, passes)

    monkeypatch.setattr(runtime.manager, "run", run_and_call_back)
    assert np.array_equal(f(np.ones(3)), np.full(3, 2.0))
    assert np.array_equal(inner[0], np.full(2, 2.0, np.float32))


def _compiled_step(model, opt):
    """The canonical training step, compiled."""
    @gc.trace
    def step(x, y):
        opt.zero_grad()
        loss = nn.MSELoss()(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


# -- all or nothing ---------------------------------------------------------------------------------
def test_a_step_that_cannot_write_a_parameter_changes_nothing():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
    step = _compiled_step(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9))

    x, y = np.ones((5, 4), np.float32), np.ones((5, 1), np.float32)
    step(x, y)
    params = list(model.parameters())
    before = [p.data.copy() for p in params]
    params[-1].data.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        step(x, y)
    assert all(np.array_equal(b, p.data) for b, p in zip(before, params))


# -- memory -----------------------------------------------------------------------------------------
def test_a_deleted_traced_function_frees_its_buffers():
    import weakref
    f = gc.trace(lambda x: np.tanh(x) * 2 + 1)
    f(np.ones(100_000))
    buffers = weakref.ref(f._last.compiled.buffers)
    del f
    assert buffers() is None


def test_signatures_are_bounded_and_a_retracing_function_warns_once(monkeypatch):
    from graphc import runtime
    monkeypatch.setattr(runtime, "MAX_SIGNATURES", 5)
    monkeypatch.setattr(runtime, "RETRACE_WARNING", 3)
    f = gc.trace(lambda batch, w: batch.sum() * w, passes="O0")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for n in range(1, 8):
            assert f(np.ones(n), 2.0) == 2.0 * n
    retrace = [w for w in seen if issubclass(w.category, RetraceWarning)]
    assert len(retrace) == 1 and "'batch'" in str(retrace[0].message)
    assert f.signatures <= 5


# -- gradients ------------------------------------------------------------------------------------
def test_grad_of_a_size_one_result():
    x = np.arange(3.0)
    assert np.array_equal(gc.grad(lambda x: np.sum(x * x, keepdims=True))(x), 2 * x)
    assert np.array_equal(gc.grad(lambda x: (x @ x.T)[:1, :1])(np.ones((1, 2))), [[2.0, 2.0]])


def test_grad_inside_a_trace_of_a_constant_argument_and_of_a_closure():
    def f(x):
        return x * gc.grad(lambda a, b: a * b * b, argnums=1)(x, 3.0)
    assert gc.trace(f)(2.0) == 24.0

    def outer(z):
        return gc.grad(lambda x: np.sum(x * z))(np.ones(3))
    assert np.array_equal(gc.trace(outer)(np.arange(3.0)), np.arange(3.0))


# -- NumPy conversion and introspection --------------------------------------------------------------
def test_conversion_and_introspection_trace_as_numpy():
    def f(x, y):
        x = np.asarray(x)
        assert (np.ndim(x), np.shape(x), np.size(x)) == (1, (2,), 2)
        assert x.dtype.type is np.float64 and issubclass(np.float32, np.floating)  # NumPy's own types
        return (np.array([x[0], x[1], y]) * 2, np.float32(np.sum(x)), np.r_[x, y, 1:3], np.c_[x, x],
                np.asarray(x, dtype=np.float32), np.array([[x[0]], [y]]), x.astype(np.float32),
                np.r_[x.astype(np.float32), 0.5], np.c_[x[None, None], x[None, None]], x * np.asarray(y))

    args = (np.array([1.0, 2.0]), 3.0)
    for got, want in zip(gc.trace(f)(*args), f(*args)):
        assert np.shape(got) == np.shape(want)
        assert np.asarray(got).dtype == np.asarray(want).dtype
        assert np.array_equal(got, want)


def test_unsupported_functions_name_themselves_and_the_list():
    import scipy.special
    for fn, name in ((scipy.special.gammaln, "scipy.special.gammaln"), (np.fft.fft, "np.fft.fft"),
                     (np.median, "np.median")):
        with pytest.raises(gc.TraceError, match="docs/numpy.md") as err:
            gc.trace(lambda x: fn(x))(np.ones(3))
        assert name in str(err.value)


def test_a_nested_list_argument_is_named():
    with pytest.raises(TypeError, match="argument 'x' is a list.*np.asarray"):
        gc.trace(lambda x, w: np.tanh(x @ w))([[1.0, 2.0]], np.ones((2, 2)))


# -- modules, parameters and optimizers changed after the first call ---------------------------------
def _tiny_setup():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.0), nn.Linear(4, 2))
    return model, np.ones((5, 3)), np.zeros((5, 2))


def test_a_rebound_layer_or_parameter_is_used():
    model, x, y = _tiny_setup()
    f = gc.trace(lambda x: model(x))
    f(x)
    model[2].weight = nn.Parameter(np.zeros((2, 4)))  # a new Parameter
    model[2].bias = nn.Parameter(np.full(2, 3.0))
    assert np.array_equal(f(x), np.full((5, 2), 3.0))
    setattr(model, "2", nn.Linear(4, 2))  # a new layer
    assert np.allclose(f(x), model(x))


def test_dropout_p_and_loss_reduction_changed_after_the_first_call():
    model, x, y = _tiny_setup()
    loss_fn = nn.MSELoss()
    f = gc.trace(lambda x, y: loss_fn(model(x), y))
    f(x, y)
    loss_fn.reduction = "sum"
    assert np.isclose(f(x, y), np.sum((model(x) - y) ** 2))
    model[1].p = 1.0  # drop everything: the output is the last bias
    assert np.allclose(f(x, y), np.sum((np.broadcast_to(model[2].bias.data, y.shape) - y) ** 2))


def test_requires_grad_and_add_param_group_take_effect():
    model, x, y = _tiny_setup()
    first, last = model[0], model[2]
    opt = optim.SGD(first.parameters(), lr=0.1)
    step = _compiled_step(model, opt)

    step(x, y)
    opt.add_param_group({"params": last.parameters()})
    before = last.weight.data.copy()
    step(x, y)
    assert not np.array_equal(last.weight.data, before)  # the new group is updated
    first.weight.requires_grad = False
    frozen = first.weight.data.copy()
    step(x, y)
    assert np.array_equal(first.weight.data, frozen)


def test_comparisons_with_python_ints_beyond_the_dtype_are_exact():
    x = np.array([-5, 0, 7, 2**31 - 1], np.int32)
    cases = [lambda x: x < 2**40, lambda x: x > -2**40, lambda x: x == 2**40, lambda x: 2**40 > x,
             lambda x: x < 2**70, lambda x: x >= -2**70, lambda x: 2**70 <= x, lambda x: x != 3]
    got = gc.trace(lambda x: [fn(x) for fn in cases])(x)
    for g, fn in zip(got, cases):
        assert g.dtype == np.bool_ and np.array_equal(g, fn(x))
    f = gc.trace(lambda x, k: (x < k, k >= x))
    for k in (2**40, 3, -2**40):
        assert all(np.array_equal(a, b) for a, b in zip(f(x, k), (x < k, k >= x)))


PARAMS = {"w": np.ones(3), "b": [np.zeros(3), 2.0]}


def test_arrays_in_a_captured_dict_or_list_are_read_by_reference():
    f = gc.trace(lambda x: x * PARAMS["w"] + PARAMS["b"][0] * PARAMS["b"][1])
    x = np.ones(3)
    assert np.array_equal(f(x), np.ones(3))
    PARAMS["w"][:] = 2
    PARAMS["b"][0] = np.ones(3)
    assert np.array_equal(f(x), np.full(3, 4.0))
    PARAMS["b"][1] = 3.0  # a number inside: retraced
    assert np.array_equal(f(x), np.full(3, 5.0))
    PARAMS["extra"] = 1  # new keys: retraced (the function may read them)
    assert np.array_equal(f(x), np.full(3, 5.0))


CONFIG = {"scale": 2.0, "names": ("a", "b")}
BIAS = np.zeros(2)


def test_a_small_captured_config_dict_changed_in_place_retraces():
    f = gc.trace(lambda x: x * CONFIG["scale"])
    assert np.array_equal(f(np.ones(2)), [2.0, 2.0])
    CONFIG["scale"] = 3.0
    try:
        assert np.array_equal(f(np.ones(2)), [3.0, 3.0])
    finally:
        CONFIG["scale"] = 2.0


def test_zero_signs_and_nan_keep_their_own_variants():
    f = gc.trace(lambda x, s: x * s, static_argnums=1)
    assert np.signbit(f(np.ones(1), -0.0)).all() and not np.signbit(f(np.ones(1), 0.0)).any()
    g = gc.trace(lambda x, s: x + s, static_argnums=1)
    g(np.ones(1), float("nan"))
    g(np.ones(1), float("nan"))
    assert g.signatures == 1


def test_a_modules_forward_reads_its_globals_at_call_time():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 2)

        def forward(self, x):
            return self.layer(x) + BIAS

    net = Net()
    f = gc.trace(net)
    x = np.ones((1, 3))
    assert np.allclose(f(x), net(x))
    BIAS[:] = 1000
    try:
        assert np.allclose(f(x), net(x))
    finally:
        BIAS[:] = 0


def test_a_users_module_attributes_are_read_at_call_time(tmp_path, monkeypatch):
    (tmp_path / "user_cfg.py").write_text("import numpy as np\nW = np.ones(3)\nS = 2.0\n"
                                          "def helper(x):\n    return x * W * S\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_cfg
    f = gc.trace(lambda x: user_cfg.helper(x) + user_cfg.W)
    x = np.ones(3)
    assert np.array_equal(f(x), np.full(3, 3.0))
    user_cfg.W[:] = 2
    user_cfg.S = 3.0
    assert np.array_equal(f(x), user_cfg.helper(x) + user_cfg.W)


def test_sgd_momentum_switched_on_after_the_first_step():
    model = nn.Linear(2, 1)
    model.weight.data[...] = 0.5
    model.bias.data[...] = 0.0
    opt = optim.SGD(model.parameters(), lr=0.1)
    step = _compiled_step(model, opt)
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    step(x, y)
    opt.param_groups[0]["momentum"] = 0.9  # PyTorch starts the buffer at the next step
    for _ in range(3):
        step(x, y)
    w, b, v = np.full((1, 2), 0.5), np.zeros(1), None
    for k in range(4):  # the same steps by hand
        err = x @ w.T + b - y
        gw, gb = 2 * err.T @ x / err.size, 2 * err.sum(0) / err.size
        if k == 0:
            w, b = w - 0.1 * gw, b - 0.1 * gb
            continue
        v = (gw, gb) if v is None else (0.9 * v[0] + gw, 0.9 * v[1] + gb)
        w, b = w - 0.1 * v[0], b - 0.1 * v[1]
    assert np.allclose(model.weight.data, w) and np.allclose(model.bias.data, b)


# -- in-place updates and copies -------------------------------------------------------------------
def test_copies_stay_apart_from_their_source_under_in_place_updates():
    def f(x):
        y = x * 2
        copies = [np.array(y), y.flatten(), np.concatenate([y]), y.copy(), +y, y.astype(y.dtype)]
        for c in copies:
            c += 1
        return (y, *copies)

    x = np.arange(3.0)
    for got, want in zip(gc.trace(f)(x), f(x)):
        assert np.array_equal(got, want)


def test_in_place_through_a_view_is_refused():
    def through_view(x):
        y = x * 2
        v = y[::2]
        v += 1
        return y

    with pytest.raises(gc.TraceError, match="view"):
        gc.trace(through_view)(np.arange(4.0))


def test_returned_buffers_are_distinct():
    a, b = gc.trace(lambda x: (lambda y: (y, y.copy()))(x * 2))(np.ones(2))
    a[0] = 9
    assert np.array_equal(b, [2.0, 2.0])


def test_python_numbers_come_back_as_python_numbers():
    out = gc.trace(lambda x, k: (k * 2, x.sum()))(np.ones(2), 1.5)
    assert type(out[0]) is float and type(out[1]) is np.float64


MASK = np.array([True, False, True])
SIZES = np.array([2, 1])


def test_captured_arrays_used_as_concrete_values_are_guarded_by_content():
    def f(x):
        y = x * 2 if MASK[0] else x
        return y, x[MASK], np.zeros(int(SIZES.sum()))

    g = gc.trace(f)
    x = np.arange(3.0)
    for _ in range(2):
        for got, want in zip(g(x), f(x)):
            assert np.array_equal(got, want)
        MASK[0], MASK[1] = False, True
    MASK[:] = [True, False, True]


def test_in_place_on_numbers_rebinds_the_name_only():
    def f(x, a, n):
        t, m = a, n
        a += 1.0
        n *= 3
        s = x.sum()
        u = s
        s += 1
        return t, m, u, a, n, s

    args = (np.arange(3.0), 2.5, 4)
    for got, want in zip(gc.trace(f)(*args), f(*args)):
        assert got == want and type(got) is type(want)


def test_numpy_functions_of_python_numbers_are_strongly_typed():
    f = lambda x, a: (x * np.sqrt(a), np.sqrt(a), x * (a * 2))  # noqa: E731
    args = (np.ones(2, np.float32), 2.0)
    for got, want in zip(gc.trace(f)(*args), f(*args)):
        assert np.asarray(got).dtype == np.asarray(want).dtype and type(got) is type(want)


def test_array_attributes_of_modules_and_loss_weights_are_read_by_reference():
    weights = np.array([1.0, 3.0])
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    logits, target = np.array([[1.0, 2.0], [0.5, -1.0], [0.3, 0.2]]), np.array([0, 1, 1])
    f = gc.trace(lambda z, t: loss_fn(z, t))
    assert np.isclose(f(logits, target), loss_fn(logits, target))
    weights[1] = 10  # the user's array, changed in place
    assert np.isclose(f(logits, target), loss_fn(logits, target))

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.mask = np.ones(2)

        def forward(self, x):
            return x * self.mask

    m = Masked()
    g = gc.trace(m)
    m.mask[0] = 0
    assert np.array_equal(g(np.ones(2)), [0.0, 1.0])
    m.mask = np.full(2, 5.0)
    assert np.array_equal(g(np.ones(2)), [5.0, 5.0])


PARAM_LIST = []


def test_a_captured_list_of_parameters_changed_in_place_retraces():
    PARAM_LIST[:] = [nn.Parameter(np.ones(2))]
    f = gc.trace(lambda x: sum(x @ p for p in PARAM_LIST))
    assert f(np.ones(2)) == 2.0
    PARAM_LIST[0] = nn.Parameter(np.full(2, 5.0))
    assert f(np.ones(2)) == 10.0
    PARAM_LIST.append(nn.Parameter(np.ones(2)))
    assert f(np.ones(2)) == 12.0


def test_train_and_eval_inside_traced_functions_compile_once_each():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)

    @gc.trace
    def train_step(x, y):
        model.train()
        opt.zero_grad()
        loss = nn.MSELoss()(model(x), y)
        loss.backward()
        opt.step()
        return loss

    @gc.trace
    def evaluate(x):
        model.eval()
        return model(x)

    x, y = np.ones((5, 3)), np.zeros((5, 2))
    for _ in range(3):
        train_step(x, y)
        assert model.training  # as the eager code leaves it
        evaluate(x)
        assert not model.training
    assert train_step.signatures == 1 and evaluate.signatures == 1
