"""SGD, Adam, AdamW, RMSprop and Adagrad with PyTorch's update formulas (single-tensor path)."""
from __future__ import annotations

import graphc.ops.elementwise as ew
from graphc.optim.optimizer import Optimizer, lerp


def _nonzero(v):
    return v != 0


def _check(name, value, low=0.0):
    if not value >= low:
        raise ValueError(f"invalid {name}: {value}")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    ``d = g + weight_decay * p``; with momentum ``buf = d`` on the first step,
    then ``buf = momentum * buf + (1 - dampening) * d``; ``d = d + momentum * buf``
    (Nesterov) or ``d = buf``; ``p -= lr * d``.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        for n, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            _check(n, v)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _buffer_names(self, group):
        return ("momentum_buffer",) if group.option("momentum") != 0 else ()

    def _counts_steps(self, group):
        return group.option("momentum") != 0  # only to start the momentum buffer at d (PyTorch keeps no step)

    def _update(self, p, g, group, state, dtype):
        h = lambda k: self._h(group, k, dtype)  # noqa: E731
        w = p.read()
        d = -g if self._guard(group, "maximize") else g
        if self._guard(group, "weight_decay", _nonzero):
            d = d + h("weight_decay") * w
        if self._guard(group, "momentum", _nonzero):  # (switched on later: the buffer starts then)
            step = state["step"].read()
            first = ew.equal(step, 0)  # PyTorch starts the momentum buffer at d
            state["step"].write(step + 1)
            buf = state["momentum_buffer"].read()
            momentum = h("momentum")
            damp = ew.cast(1 - group.read("dampening"), dtype)
            buf = ew.where(first, d, buf * momentum + damp * d)
            state["momentum_buffer"].write(buf)
            d = d + momentum * buf if self._guard(group, "nesterov") else buf
        p.write(w - h("lr") * d)


class Adam(Optimizer):
    """Adam (Kingma & Ba) as ``torch.optim.Adam``, with ``amsgrad``, ``maximize`` and L2 weight decay."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        _check("lr", lr)
        _check("eps", eps)
        for b in betas:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"invalid beta parameter: {b}")
        _check("weight_decay", weight_decay)
        self._buffers = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _update(self, p, g, group, state, dtype):
        w = p.read()
        g = -g if self._guard(group, "maximize") else g
        lr, wd = group.read("lr"), group.read("weight_decay")  # float64, as PyTorch's Python floats
        beta1, beta2 = group.read("betas")
        step = state["step"].read() + 1
        state["step"].write(step)
        if self.decoupled:
            w = w * ew.cast(1 - lr * wd, dtype)
        elif self._guard(group, "weight_decay", _nonzero):
            g = g + ew.cast(wd, dtype) * w
        small = self._guard(group, "betas", lambda b: 1 - b[0] < 0.5)
        m = lerp(state["exp_avg"].read(), g, ew.cast(1 - beta1, dtype), small)
        v = state["exp_avg_sq"].read() * ew.cast(beta2, dtype) + ew.cast(1 - beta2, dtype) * (g * g)
        state["exp_avg"].write(m)
        state["exp_avg_sq"].write(v)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = ew.sqrt(1 - beta2 ** step)
        step_size = ew.cast(lr / bias_correction1, dtype)
        if "max_exp_avg_sq" in state:
            v = ew.maximum(state["max_exp_avg_sq"].read(), v)
            state["max_exp_avg_sq"].write(v)
        denom = ew.sqrt(v) / ew.cast(bias_correction2_sqrt, dtype) + self._h(group, "eps", dtype)
        p.write(w - step_size * (m / denom))


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (``alpha`` smoothing, optional ``centered`` and momentum)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        for n, v in (("lr", lr), ("eps", eps), ("momentum", momentum), ("weight_decay", weight_decay),
                     ("alpha", alpha)):
            _check(n, v)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _buffer_names(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group.option("momentum") > 0 else ())
                + (("grad_avg",) if group.option("centered") else ()))

    def _update(self, p, g, group, state, dtype):
        h = lambda k: self._h(group, k, dtype)  # noqa: E731
        w = p.read()
        g = -g if self._guard(group, "maximize") else g
        state["step"].write(state["step"].read() + 1)
        if self._guard(group, "weight_decay", _nonzero):
            g = g + h("weight_decay") * w
        one_minus_alpha = ew.cast(1 - group.read("alpha"), dtype)
        sq = state["square_avg"].read() * h("alpha") + one_minus_alpha * (g * g)
        state["square_avg"].write(sq)
        if self._guard(group, "centered"):
            small = self._guard(group, "alpha", lambda a: 1 - a < 0.5)
            ga = lerp(state["grad_avg"].read(), g, one_minus_alpha, small)
            state["grad_avg"].write(ga)
            avg = ew.sqrt(sq - ga * ga)
        else:
            avg = ew.sqrt(sq)
        avg = avg + h("eps")
        if self._guard(group, "momentum", _nonzero):
            buf = state["momentum_buffer"].read() * h("momentum") + g / avg
            state["momentum_buffer"].write(buf)
            p.write(w - h("lr") * buf)
        else:
            p.write(w - h("lr") * (g / avg))


class Adagrad(Optimizer):
    """Adagrad as ``torch.optim.Adagrad`` (``lr_decay``, ``initial_accumulator_value``, ``eps``)."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        for n, v in (("lr", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
                     ("initial_accumulator_value", initial_accumulator_value), ("eps", eps)):
            _check(n, v)
        self._buffers = ("sum",)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _initial(self, name, group):
        return group.option("initial_accumulator_value")

    def _update(self, p, g, group, state, dtype):
        w = p.read()
        g = -g if self._guard(group, "maximize") else g
        step = state["step"].read() + 1
        state["step"].write(step)
        if self._guard(group, "weight_decay", _nonzero):
            g = g + self._h(group, "weight_decay", dtype) * w
        clr = group.read("lr") / (1 + (step - 1) * group.read("lr_decay"))
        s = state["sum"].read() + g * g
        state["sum"].write(s)
        std = ew.sqrt(s) + self._h(group, "eps", dtype)
        p.write(w - ew.cast(clr, dtype) * (g / std))
