"""graphc.optim: compiled optimizer steps equal a plain NumPy reference of PyTorch's formulas.

One compiled graph holds six tiny float64 models, each with its own optimizer,
so every update rule is checked with a single compile. The step also returns
the gradients, which are checked against the closed form of the MSE gradient
and then fed to the NumPy reference optimizers.
"""
import math

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim

TOL = dict(rtol=1e-12, atol=1e-14)


# -- NumPy reference optimizers (PyTorch's documented update rules) --------------------
class RefSGD:
    def __init__(self, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        self.h = dict(lr=lr, momentum=momentum, dampening=dampening, wd=weight_decay, nesterov=nesterov)
        self.buf = {}

    def step(self, k, p, g):
        h = self.h
        d = g + h["wd"] * p if h["wd"] else g
        if h["momentum"]:
            buf = d.copy() if k not in self.buf else h["momentum"] * self.buf[k] + (1 - h["dampening"]) * d
            self.buf[k] = buf
            d = d + h["momentum"] * buf if h["nesterov"] else buf
        return p - h["lr"] * d


class RefAdam:
    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.amsgrad, self.decoupled = amsgrad, decoupled
        self.m, self.v, self.vmax, self.t = {}, {}, {}, {}

    def step(self, k, p, g):
        b1, b2 = self.betas
        t = self.t[k] = self.t.get(k, 0) + 1
        if self.decoupled:
            p = p * (1 - self.lr * self.wd)
        elif self.wd:
            g = g + self.wd * p
        m = self.m[k] = self.m.get(k, 0 * p) + (1 - b1) * (g - self.m.get(k, 0 * p))
        v = self.v[k] = b2 * self.v.get(k, 0 * p) + (1 - b2) * g * g
        if self.amsgrad:
            v = self.vmax[k] = np.maximum(self.vmax.get(k, 0 * p), v)
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps
        return p - self.lr / (1 - b1 ** t) * (m / denom)


class RefRMSprop:
    def __init__(self, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        self.lr, self.alpha, self.eps, self.wd, self.mom, self.centered = lr, alpha, eps, weight_decay, momentum, centered
        self.sq, self.ga, self.buf = {}, {}, {}

    def step(self, k, p, g):
        if self.wd:
            g = g + self.wd * p
        sq = self.sq[k] = self.alpha * self.sq.get(k, 0 * p) + (1 - self.alpha) * g * g
        if self.centered:
            ga = self.ga[k] = self.ga.get(k, 0 * p) + (1 - self.alpha) * (g - self.ga.get(k, 0 * p))
            avg = np.sqrt(sq - ga * ga) + self.eps
        else:
            avg = np.sqrt(sq) + self.eps
        if self.mom:
            buf = self.buf[k] = self.mom * self.buf.get(k, 0 * p) + g / avg
            return p - self.lr * buf
        return p - self.lr * (g / avg)


class RefAdagrad:
    def __init__(self, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        self.lr, self.decay, self.wd, self.init, self.eps = lr, lr_decay, weight_decay, initial_accumulator_value, eps
        self.sum, self.t = {}, {}

    def step(self, k, p, g):
        t = self.t[k] = self.t.get(k, 0) + 1
        if self.wd:
            g = g + self.wd * p
        clr = self.lr / (1 + (t - 1) * self.decay)
        s = self.sum[k] = self.sum.get(k, np.full_like(p, self.init)) + g * g
        return p - clr * (g / (np.sqrt(s) + self.eps))


CONFIGS = [
    ("SGD", optim.SGD, RefSGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD-nesterov", optim.SGD, RefSGD, dict(lr=0.1, momentum=0.8, nesterov=True)),
    ("Adam", optim.Adam, RefAdam, dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("AdamW", optim.AdamW, lambda **kw: RefAdam(decoupled=True, weight_decay=1e-2, **kw), dict(lr=0.05)),
    ("RMSprop", optim.RMSprop, RefRMSprop, dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adagrad", optim.Adagrad, RefAdagrad, dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1)),
]


def mse_grads(W, b, X, Y):
    """Closed-form gradient of mean((X W^T + b - Y)^2)."""
    r = X @ W.T + b - Y
    scale = 2.0 / r.size
    return scale * r.T @ X, scale * r.sum(0)


def test_optimizers_match_numpy_reference_and_lr_changes_without_retrace():
    rng = np.random.default_rng(0)
    models = [nn.Linear(3, 2, dtype=np.float64) for _ in CONFIGS]
    opts = [cls(m.parameters(), **kw) for m, (_, cls, _, kw) in zip(models, CONFIGS)]
    refs = [ref(**kw) for _, _, ref, kw in CONFIGS]
    loss_fn = nn.MSELoss()

    @gc.trace
    def step(x, y):
        losses, grads = [], []
        for m, opt in zip(models, opts):
            opt.zero_grad()
            loss = loss_fn(m(x), y)
            loss.backward()
            grads.append((m.weight.grad, m.bias.grad))
            opt.step()
            losses.append(loss)
        return losses, grads

    for it in range(3):
        if it == 2:  # a new learning rate is data, not graph: no retrace
            for opt, ref in zip(opts, refs):
                opt.param_groups[0]["lr"] = 0.02
                if isinstance(ref, RefSGD):
                    ref.h["lr"] = 0.02
                else:
                    ref.lr = 0.02
        X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        before = [(m.weight.data.copy(), m.bias.data.copy()) for m in models]
        w_arrays = [m.weight.data for m in models]
        losses, grads = step(X, Y)
        for (name, *_), m, ref, (W, b), (gW, gb), loss, arr in zip(CONFIGS, models, refs, before, grads,
                                                                  losses, w_arrays):
            assert m.weight.data is arr, "parameters must be updated in place"
            np.testing.assert_allclose(loss, np.mean((X @ W.T + b - Y) ** 2), **TOL)
            want_gW, want_gb = mse_grads(W, b, X, Y)
            np.testing.assert_allclose(gW, want_gW, **TOL, err_msg=f"{name} weight grad")
            np.testing.assert_allclose(gb, want_gb, **TOL, err_msg=f"{name} bias grad")
            np.testing.assert_allclose(m.weight.data, ref.step("W", W, gW), **TOL,
                                       err_msg=f"{name} weight after step {it + 1}")
            np.testing.assert_allclose(m.bias.data, ref.step("b", b, gb), **TOL,
                                       err_msg=f"{name} bias after step {it + 1}")
    assert step.signatures == 1


def test_parameter_without_gradient_is_unchanged_and_eager_step():
    a, b = nn.Linear(2, 2, dtype=np.float64), nn.Linear(2, 2, dtype=np.float64)
    opt = optim.SGD(list(a.parameters()) + list(b.parameters()), lr=0.1, momentum=0.9)
    before = b.weight.data.copy()

    @gc.trace
    def step(x):
        opt.zero_grad()
        loss = np.sum(a(x))  # b is not used: no gradient
        loss.backward()
        assert b.weight.grad is None and a.weight.grad is not None
        opt.step()
        return loss

    w0 = a.weight.data.copy()
    step(np.ones((3, 2)))
    np.testing.assert_array_equal(b.weight.data, before)
    np.testing.assert_allclose(a.weight.data, w0 - 0.1 * 3.0, **TOL)  # d loss / dW = 3 everywhere
    assert b.weight not in opt.state
    # eagerly, step() uses gradients set by hand
    b.weight.grad = np.ones((2, 2))
    opt.step()
    np.testing.assert_allclose(b.weight.data, before - 0.1, **TOL)


def test_optimizer_state_dict_round_trip():
    m = nn.Linear(2, 1, dtype=np.float64)
    opt = optim.Adam(m.parameters(), lr=0.01, betas=(0.8, 0.9))
    for p in m.parameters():  # eager steps with hand-set gradients
        p.grad = np.ones_like(p.data)
    opt.step()
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["lr"] == 0.01 and sd["param_groups"][0]["betas"] == (0.8, 0.9)
    assert sd["param_groups"][0]["params"] == [0, 1]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and sd["state"][0]["step"] == 2
    opt2 = optim.Adam(m.parameters(), lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.01
    np.testing.assert_array_equal(opt2.state[m.weight]["exp_avg"].data, sd["state"][0]["exp_avg"])


def test_bad_hyperparameters():
    p = [nn.Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(2)], lr=0.1)


# -- schedulers -------------------------------------------------------------------------
def _lrs(make_sched, epochs=12, lr=0.1):
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=lr)
    sched = make_sched(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(epochs):
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    assert sched.get_last_lr() == [out[-1]]
    return np.array(out)


def test_schedulers_closed_forms():
    e = np.arange(13)
    np.testing.assert_allclose(_lrs(lambda o: optim.lr_scheduler.LambdaLR(o, lambda k: 1 / (1 + 0.5 * k))),
                               0.1 / (1 + 0.5 * e), rtol=1e-14)
    np.testing.assert_allclose(_lrs(lambda o: optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
                               0.1 * 0.5 ** (e // 3), rtol=1e-14)
    np.testing.assert_allclose(_lrs(lambda o: optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
                               0.1 * 0.9 ** e, rtol=1e-13)
    np.testing.assert_allclose(_lrs(lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.01)),
                               0.01 + 0.09 * (1 + np.cos(np.pi * e / 5)) / 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_lrs(lambda o: optim.lr_scheduler.InverseTimeDecay(o, decay_rate=0.5)),
                               0.1 / (1 + 0.5 * e), rtol=1e-14)


def test_schedulers_match_torch():
    torch = pytest.importorskip("torch")
    TS = torch.optim.lr_scheduler
    cases = [(lambda o: optim.lr_scheduler.StepLR(o, 3, 0.5), lambda o: TS.StepLR(o, 3, 0.5)),
             (lambda o: optim.lr_scheduler.ExponentialLR(o, 0.9), lambda o: TS.ExponentialLR(o, 0.9)),
             (lambda o: optim.lr_scheduler.CosineAnnealingLR(o, 4, 0.01),
              lambda o: TS.CosineAnnealingLR(o, 4, 0.01)),
             (lambda o: optim.lr_scheduler.LambdaLR(o, lambda k: 0.95 ** k),
              lambda o: TS.LambdaLR(o, lambda k: 0.95 ** k))]
    for ours, theirs in cases:
        topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        ts = theirs(topt)
        want = [topt.param_groups[0]["lr"]]
        for _ in range(12):
            topt.step()
            ts.step()
            want.append(topt.param_groups[0]["lr"])
        np.testing.assert_allclose(_lrs(ours), want, rtol=1e-15, atol=0)
