"""PyTorch semantics users rely on (issue 12, section 2), and the training library's safety:
``p.grad`` after compiled steps, gradient accumulation, ``gc.no_grad`` updates, in-place
operators, ``@gc.trace`` on methods, ``gc.print``, all-or-nothing state-dict loading.

Each compiled function here checks several things: compiling costs about a second.
"""
import numpy as np
import pytest

import graphc as gc
from graphc import data, nn, optim
from graphc.errors import TraceError
from graphc.nn.module import StateDictError


def mse_grads(W, b, X, Y):
    """Closed-form gradient of mean((X W^T + b - Y)^2)."""
    r = X @ W.T + b - Y
    scale = 2.0 / r.size
    return scale * r.T @ X, scale * r.sum(0)


def problem(seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(5, 3)), rng.normal(size=(5, 2))) for _ in range(3)]


# -- p.grad, accumulation, errors ---------------------------------------------------------
def test_grad_holds_the_gradient_and_accumulates_across_compiled_calls():
    (X1, Y1), (X2, Y2), (X3, Y3) = problem()
    model = nn.Linear(3, 2, dtype=np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()

    @gc.trace
    def step(x, y):  # the canonical loop
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss, model.weight.grad  # returned too: the caller's array is not p.grad

    @gc.trace
    def accumulate(x, y):  # backward without zero_grad: adds to p.grad
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    @gc.trace
    def apply():
        opt.step()
        opt.zero_grad()
        return 0.0

    W, b = model.weight.data.copy(), model.bias.data.copy()
    _, returned = step(X1, Y1)
    gW, gb = mse_grads(W, b, X1, Y1)
    np.testing.assert_allclose(returned, gW, rtol=1e-12)
    returned[...] = 0
    assert not np.shares_memory(returned, model.weight.grad)
    np.testing.assert_allclose(model.weight.grad, gW, rtol=1e-12)
    np.testing.assert_allclose(model.bias.grad, gb, rtol=1e-12)
    np.testing.assert_allclose(model.weight.data, W - 0.1 * gW, rtol=1e-12)
    bias_grad = model.bias.grad
    step(X2, Y2)  # the next step's gradient, not the sum (zero_grad)
    W2, b2 = W - 0.1 * gW, b - 0.1 * gb
    np.testing.assert_allclose(model.weight.grad, mse_grads(W2, b2, X2, Y2)[0], rtol=1e-12)
    np.testing.assert_allclose(model.bias.grad, mse_grads(W2, b2, X2, Y2)[1], rtol=1e-12)
    np.testing.assert_allclose(bias_grad, gb, rtol=1e-12)  # an earlier p.grad keeps its values

    model.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None
    W, b = model.weight.data.copy(), model.bias.data.copy()
    for X, Y in ((X1, Y1), (X2, Y2), (X3, Y3)):
        accumulate(X, Y)
    want = [sum(mse_grads(W, b, X, Y)[k] for X, Y in ((X1, Y1), (X2, Y2), (X3, Y3))) for k in (0, 1)]
    np.testing.assert_allclose(model.weight.grad, want[0], rtol=1e-12)
    np.testing.assert_allclose(model.bias.grad, want[1], rtol=1e-12)
    np.testing.assert_array_equal(model.weight.data, W)  # no step yet
    assert accumulate.signatures == 2  # p.grad None (first call) or an array: guarded
    apply()  # one update with the summed gradients, then set_to_none
    np.testing.assert_allclose(model.weight.data, W - 0.1 * want[0], rtol=1e-12)
    assert model.weight.grad is None and model.bias.grad is None
    accumulate(X1, Y1)  # starts again from None: no retrace
    np.testing.assert_allclose(model.weight.grad, mse_grads(W - 0.1 * want[0], b - 0.1 * want[1], X1, Y1)[0],
                               rtol=1e-12)
    assert accumulate.signatures == 2 and step.signatures == 1

    # an eager step uses the gradient a compiled call left, as PyTorch's step after backward
    W = model.weight.data.copy()
    opt.step()
    np.testing.assert_allclose(model.weight.data, W - 0.1 * model.weight.grad, rtol=1e-12)
    opt.zero_grad(set_to_none=False)  # zeros in place, as PyTorch
    np.testing.assert_array_equal(model.weight.grad, 0)


def test_step_and_backward_without_gradients_raise():
    model = nn.Linear(2, 1, dtype=np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match=r"SGD.step\(\): no parameter has a gradient.*gc.trace"):
        opt.step()  # eagerly, with no gradient anywhere

    @gc.trace
    def no_backward(x):
        opt.zero_grad()
        loss = np.sum(model(x))
        opt.step()
        return loss

    with pytest.raises(TraceError, match="no parameter has a gradient"):
        no_backward(np.ones((3, 2)))

    @gc.trace
    def loss_without_parameters(x):
        loss = np.sum(x * x)
        loss.backward()
        return loss

    with pytest.raises(TraceError, match="depends on no Parameter"):
        loss_without_parameters(np.ones(3))
    np.testing.assert_array_equal(model.weight.grad is None, True)

    with pytest.raises(ValueError, match="shape"):
        model.weight.grad = np.ones(3)
    model.weight.grad = np.ones((1, 2), np.float32)  # converted to the parameter's dtype
    assert model.weight.grad.dtype == np.float64


def test_seed_lecture_manual_update_inside_a_trace():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    w, b = nn.Parameter(np.zeros((3, 1))), nn.Parameter(np.zeros(1))
    params = (w, b)
    w_array = w.data

    @gc.trace
    def step(x, y, lr):
        w, b = params
        loss = np.mean((x @ w + b - y) ** 2)
        loss.backward()
        with gc.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
            w.grad.zero_()
            b.grad.zero_()
        return loss

    W, B = np.zeros((3, 1)), np.zeros(1)
    for _ in range(3):
        loss = step(X, Y, 0.1)
        r = X @ W + B - Y
        np.testing.assert_allclose(loss, np.mean(r ** 2), rtol=1e-12)
        W, B = W - 0.1 * 2 * X.T @ r / r.size, B - 0.1 * 2 * r.sum(0) / r.size
        np.testing.assert_allclose(w.data, W, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b.data, B, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(w.grad, np.zeros((3, 1)))  # zero_(): zeros, not None
    assert w.data is w_array  # updated in place
    assert step.signatures == 2  # w.grad None on the first call, zeros after it

    @gc.trace
    def update_without_no_grad(x):
        loss = np.sum(x @ w)
        loss.backward()
        w_ = params[0]
        w_ -= 0.1 * w_.grad
        return loss

    with pytest.raises(RuntimeError, match="no_grad"):
        update_without_no_grad(X)
    with gc.no_grad():  # eagerly: an ordinary in-place update of the array
        w -= np.ones((3, 1))
        b += 1
        with pytest.raises(TypeError, match="cast"):
            w += np.ones((3, 1), np.complex128)
    np.testing.assert_allclose(w.data, W - 1, rtol=1e-12)
    np.testing.assert_allclose(b.data, B + 1, rtol=1e-12)


# -- in-place operators on traced values -----------------------------------------------------
def test_inplace_operators_on_traced_arguments_raise_and_work_on_owned_values():
    def on_argument(x):
        x += 1
        return x

    def on_view_of_argument(x):
        row = x[0]
        row *= 2
        return row

    def on_transposed_argument(x):
        t = x.T
        t -= 1
        return t

    for fn in (on_argument, on_view_of_argument, on_transposed_argument):
        with pytest.raises(TraceError, match=r"traced argument.*caller's array"):
            gc.trace(fn)(np.ones((2, 3)))

    def owned(x, y32, s):
        a = x * 2
        a += 1             # a temporary the function owns: fine
        a -= x
        c = x.copy()
        c *= 3
        c += x.astype(np.float64)  # astype copies: the result is the function's own
        d = x.astype(np.float64)
        d /= 4
        f = y32 * 2
        f += x[0, :1]      # float32 += float64 stays float32 (same_kind), as NumPy
        s += 1             # a Python number argument is immutable: rebinding is fine
        i = (x > 0).astype(np.int64)
        i += 2
        return a, c, f, s * x, i, d

    x = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    y32 = np.arange(3, dtype=np.float32)
    got = gc.trace(owned)(x, y32, 2.0)
    want = owned(x.copy(), y32.copy(), 2.0)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)

    def bad_cast(x):
        i = (x > 0).astype(np.int64)
        i += 1.5  # NumPy: cannot cast float64 to int64 with same_kind
        return i

    with pytest.raises(TypeError, match="same_kind"):
        bad_cast(x)
    with pytest.raises(TypeError, match="same_kind"):
        gc.trace(bad_cast)(x)

    def bad_shape(x):
        a = x[0] * 1
        a += x  # NumPy: non-broadcastable output
        return a

    with pytest.raises(ValueError):
        gc.trace(bad_shape)(x)


# -- @gc.trace on methods and Module.forward ---------------------------------------------------
class Scaler:
    def __init__(self, k):
        self.k = k

    @gc.trace
    def scale(self, x):
        return x * self.k


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2, dtype=np.float64)

    @gc.trace
    def forward(self, x):
        h = self.lin(x)
        return h * 2.0 if self.training else h


def test_trace_on_methods_binds_per_instance():
    a, b = Scaler(2.0), Scaler(3.0)
    x = np.arange(3.0)
    np.testing.assert_array_equal(a.scale(x), 2 * x)
    np.testing.assert_array_equal(b.scale(x), 3 * x)
    assert a.scale is a.scale and a.scale is not b.scale
    assert isinstance(Scaler.scale, gc.TracedFunction)

    net = Net()
    x = np.ones((4, 3))
    eager = net.lin(x)
    np.testing.assert_allclose(net(x), 2 * eager, rtol=1e-12)
    net.eval()  # self.training read inside the compiled forward is guarded: retraced
    np.testing.assert_allclose(net(x), eager, rtol=1e-12)
    net.lin.weight.data[...] = 0  # parameters are read on every call
    np.testing.assert_allclose(net(x), np.broadcast_to(net.lin.bias.data, (4, 2)), rtol=1e-12)

    opt = optim.SGD(net.parameters(), lr=0.5)

    @gc.trace
    def step(x):  # a compiled forward inlines into an outer trace
        opt.zero_grad()
        loss = np.sum(net(x))
        loss.backward()
        opt.step()
        return loss

    net.train()
    bias = net.lin.bias.data.copy()
    step(x)
    np.testing.assert_allclose(net.lin.bias.grad, [8.0, 8.0])  # 2 * (4 rows)
    np.testing.assert_allclose(net.lin.bias.data, bias - 4.0)


# -- gc.print ------------------------------------------------------------------------------
def test_print_prints_traced_values_on_every_call_in_order(capsys):
    def f(x, s):
        total = np.sum(x)
        gc.print("sum {} scale {}", total, s)
        y = x * s
        gc.print("y = {y}", y=y)
        gc.print("sum {} scale {}", total, s)  # the same print twice: printed twice (no CSE)
        gc.print("unused {:.2f}", np.float32(0.25) + s * 0)  # nothing uses it: kept (no DCE)
        return y[0]

    traced = gc.trace(f)
    for x, s in ((np.arange(3, dtype=np.float32), 0.5), (np.ones(3, np.float32), 2.0)):
        capsys.readouterr()
        f(x, s)
        eager = capsys.readouterr().out
        traced(x, s)
        assert capsys.readouterr().out == eager
        gc.interpret(traced.graph, x, s)
        assert capsys.readouterr().out == eager
    assert eager == "sum 3.0 scale 2.0\ny = [2. 2. 2.]\nsum 3.0 scale 2.0\nunused 0.25\n"
    assert [n.op for n in traced.graph.nodes].count("debug_print") == 4
    with pytest.raises(TypeError, match="format"):
        gc.trace(lambda x: gc.print("{} {}", x) or x)(np.ones(2))
    with pytest.raises(TypeError, match="format string"):
        gc.print(np.ones(2))


# -- training-library safety (issue 12, section 1) -----------------------------------------
def test_assigning_an_array_to_a_parameter_attribute_raises():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign ndarray as parameter 'weight'"):
        layer.weight = np.zeros((2, 2), np.float32)
    assert isinstance(layer.weight, nn.Parameter) and "weight" in dict(layer.named_parameters())
    layer.bias = None  # allowed, as PyTorch
    assert layer.bias is None and "bias" not in dict(layer.named_parameters())
    layer.weight = nn.Parameter(np.ones((2, 2), np.float32))
    assert dict(layer.named_parameters())["weight"] is layer.weight


def test_load_state_dict_is_all_or_nothing():
    model = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.Linear(3, 1, dtype=np.float64))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    good = {k: v + 1 for k, v in before.items()}
    bad_values = [
        np.array(["nan"] * 3, dtype=object),  # strings: never loaded as NaN
        np.array(["1", "2", "3"]),
        np.array([1, 2, 3], dtype=np.complex128),
        "abc",
    ]
    for bad in bad_values:
        sd = dict(good, **{"1.weight": good["1.weight"]})
        sd["0.bias"] = bad  # "0.weight" (before it) is fine: it must not be written either
        with pytest.raises(StateDictError, match="0.bias"):
            model.load_state_dict(sd)
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)
    model[1].bias.data.flags.writeable = False  # read-only (e.g. a read-only memory map)
    with pytest.raises(StateDictError, match="read-only"):
        model.load_state_dict(good)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    model[1].bias.data.flags.writeable = True
    model.load_state_dict({k: v.astype(np.float32) for k, v in good.items()})  # numbers convert
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, good[k], rtol=1e-6, err_msg=k)


def test_optimizer_load_state_dict_is_all_or_nothing():
    m = nn.Linear(2, 1, dtype=np.float64)
    opt = optim.Adam(m.parameters(), lr=0.01)
    for p in m.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    before = {k: s.data.copy() for k, s in opt.state[m.weight].items()}
    for key, value in (("exp_avg", np.array([["x", "y"]], dtype=object)), ("exp_avg_sq", np.ones(5))):
        broken = {"param_groups": [dict(sd["param_groups"][0], lr=0.5)],
                  "state": {0: dict(sd["state"][0], **{key: value}), 1: sd["state"][1]}}
        with pytest.raises(ValueError, match=key):
            opt.load_state_dict(broken)
        assert opt.param_groups[0]["lr"] == 0.01  # the group was not written either
        for k, s in opt.state[m.weight].items():
            np.testing.assert_array_equal(s.data, before[k], err_msg=k)
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict({"param_groups": [dict(sd["param_groups"][0], lr="fast")], "state": {}})
    with pytest.raises(ValueError, match="parameter 7"):
        opt.load_state_dict({"param_groups": sd["param_groups"], "state": {7: sd["state"][0]}})
    assert opt.param_groups[0]["lr"] == 0.01


def test_np_array_of_a_parameter_copies_and_asarray_shares():
    p = nn.Parameter(np.zeros(3))
    copied = np.array(p)
    copied[0] = 5
    assert p.data[0] == 0
    assert np.shares_memory(np.asarray(p), p.data)
    assert np.array(p, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="copy"):
        np.asarray(p, dtype=np.float32, copy=False)


def test_datasets_raise_index_error_out_of_range():
    ds = data.TensorDataset(np.arange(4), np.arange(4) * 10)
    both = data.ConcatDataset([ds, data.Subset(ds, [1, 3])])
    assert len(both) == 6 and both[5] == (3, 30) and both[-1] == (3, 30) and both[-6] == (0, 0)
    for dataset, n in ((both, 6), (ds, 4), (data.Subset(ds, [1, 3]), 2), (ds + ds, 8)):
        for index in (n, -n - 1, 100):
            with pytest.raises(IndexError):
                dataset[index]
    assert [tuple(map(int, item)) for item in both] == [(0, 0), (1, 10), (2, 20), (3, 30), (1, 10), (3, 30)]
