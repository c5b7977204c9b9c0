"""Functional forms of the layers and losses (as ``torch.nn.functional``).

They work on traced values inside ``gc.trace`` and on NumPy arrays eagerly.
"""
from __future__ import annotations

import numpy as np

import graphc.ops.elementwise as ew
from graphc.errors import ShapeError, TraceError
from graphc.ops import nn as opsnn
from graphc.ops.indexing import take, take_along_axis
from graphc.ops.linalg import matmul
from graphc.ops.reduction import mean as reduce_mean, sum as reduce_sum
from graphc.ops.shape import expand_dims, squeeze
from graphc.nn.random import default_generator
from graphc.trace import Tracer, type_of, user_line



class EagerValue(np.ndarray):
    """A loss computed outside a trace: an ordinary array whose ``backward`` explains itself."""

    def backward(self, *args, **kwargs):
        raise TraceError(
            "loss.backward() was called on a NumPy value computed outside a trace. graphc "
            "differentiates while tracing: put the step (zero_grad, forward, loss, backward, "
            "opt.step) in a function decorated with @gc.trace and call that function.")

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        out = np.ndarray.__array_wrap__(self, obj, context, return_scalar)
        return out.view(np.ndarray) if isinstance(out, np.ndarray) else out


def _eager_result(x):
    if isinstance(x, Tracer):
        return x
    return np.asarray(x).view(EagerValue)


def add_input_check(value, check):
    """Run ``check(array)`` on ``value`` now (eagerly) or before every compiled call.

    Inside a trace this works when ``value`` is a graph input (the runtime runs
    the check before the call, so nothing is updated on failure). Returns True
    when the check was registered or ran.
    """
    if not isinstance(value, Tracer):
        check(np.asarray(value))
        return True
    return value.builder.check_input(value, check)


def _float_like(x, ref):
    """``x`` in the floating dtype of ``ref`` (float inputs keep theirs)."""
    dtype = type_of(ref).dtype
    return ew.cast(x, dtype) if type_of(x).dtype != dtype else x


# -- layers --------------------------------------------------------------------------
def linear(x, weight, bias=None):
    y = matmul(x, weight.T)
    return y if bias is None else y + bias


def relu(x):
    return ew.relu(x)


def leaky_relu(x, negative_slope=0.01):
    return ew.where(ew.greater(x, 0), x, x * negative_slope)


def sigmoid(x):
    return ew.sigmoid(x)


def tanh(x):
    return ew.tanh(x)


def softmax(x, dim=-1):
    return opsnn.softmax(x, axis=dim)


def log_softmax(x, dim=-1):
    return opsnn.log_softmax(x, axis=dim)


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    gen = generator or default_generator
    t = type_of(x)
    dtype = t.dtype if t.dtype.startswith("float") else "float64"
    keep = ew.greater_equal(gen.uniform(t.shape, dtype, like=x), np.asarray(p, dtype))
    return ew.where(keep, x * np.asarray(1.0 / (1.0 - p), dtype), np.zeros((), dtype))


# -- losses ----------------------------------------------------------------------------
def _reduce(loss, reduction, name):
    if reduction == "mean":
        return reduce_mean(loss)
    if reduction == "sum":
        return reduce_sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name, input, target):
    a, b = type_of(input).shape, type_of(target).shape
    if a != b:
        raise ShapeError(f"{name}: input shape {a} and target shape {b} differ "
                         f"(graphc does not broadcast losses)\n  at {user_line()}")


def mse_loss(input, target, reduction="mean"):
    _same_shape("MSELoss", input, target)
    d = input - _float_like(target, input)
    return _eager_result(_reduce(d * d, reduction, "MSELoss"))


def l1_loss(input, target, reduction="mean"):
    _same_shape("L1Loss", input, target)
    return _eager_result(_reduce(ew.absolute(input - _float_like(target, input)), reduction, "L1Loss"))


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """``-[pos_weight * y * log σ(x) + (1 - y) * log(1 - σ(x))]``, computed stably (as PyTorch)."""
    _same_shape("BCEWithLogitsLoss", input, target)
    y = _float_like(target, input)
    softplus_neg = ew.log(1 + ew.exp(-ew.absolute(input))) + ew.maximum(-input, 0)  # -log σ(x)
    if pos_weight is not None:
        lw = 1 + (_float_like(np.asarray(pos_weight), input) - 1) * y
        loss = (1 - y) * input + lw * softplus_neg
    else:
        loss = (1 - y) * input + softplus_neg
    if weight is not None:
        loss = loss * _float_like(np.asarray(weight), input)
    return _eager_result(_reduce(loss, reduction, "BCEWithLogitsLoss"))


def _label_check(num_classes, ignore_index):
    def check(t):
        t = np.asarray(t)
        if t.dtype.kind not in "iu":
            raise TypeError(f"CrossEntropyLoss: class targets must be integers, got dtype {t.dtype}")
        valid = t[t != ignore_index]
        if valid.size == 0:
            return
        hi, lo = int(valid.max()), int(valid.min())
        if hi >= num_classes or lo < 0:
            bad = hi if hi >= num_classes else lo
            raise ValueError(f"CrossEntropyLoss: target label {bad} is out of range for {num_classes} "
                             f"classes (labels must be in [0, {num_classes - 1}]; largest label given "
                             f"is {hi}, smallest {lo}). Nothing was computed or updated.")
    check.spec = {"kind": "class_labels", "classes": int(num_classes), "ignore_index": int(ignore_index)}  # (gc.save)
    return check


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits ``(N, C)`` (or ``(C,)``) with integer class ``target`` ``(N,)``.

    Probabilities of the same shape as ``input`` are accepted as targets too.
    Labels are checked before the call (eagerly now; in a compiled step before
    each call, where the runtime supports input checks); inside the graph an
    out-of-range label also turns the loss and the gradients into NaN, which
    ``gc.trace(..., check_finite=True)`` refuses to write back.
    """
    it, tt = type_of(input), type_of(target)
    if it.ndim not in (1, 2):
        raise ShapeError(f"CrossEntropyLoss: input must be (N, C) logits or (C,), got {it.shape}\n"
                         f"  at {user_line()}")
    C = it.shape[-1]
    logp = opsnn.log_softmax(input, axis=-1)
    if tt.dtype.startswith("float"):  # class probabilities
        _same_shape("CrossEntropyLoss", input, target)
        y = _float_like(target, input)
        if label_smoothing:
            y = y * (1 - label_smoothing) + label_smoothing / C
        per = logp * y
        if weight is not None:
            per = per * _float_like(np.asarray(weight), input)
        return _eager_result(_reduce(-reduce_sum(per, axis=-1), reduction, "CrossEntropyLoss"))
    if tt.shape != it.shape[:-1]:
        raise ShapeError(f"CrossEntropyLoss: target shape {tt.shape} does not fit input {it.shape} "
                         f"(expected {it.shape[:-1]})\n  at {user_line()}")
    add_input_check(target, _label_check(C, ignore_index))
    t = target
    valid = ew.not_equal(t, ignore_index)
    in_range = ew.logical_and(ew.greater_equal(t, 0), ew.less(t, C))
    safe = ew.where(ew.logical_and(valid, in_range), t, 0)  # never read out of bounds
    picked = squeeze(take_along_axis(logp, expand_dims(safe, -1), axis=-1), -1)
    nll = -picked
    if label_smoothing:
        smooth = -reduce_mean(logp, axis=-1)
        nll = nll * (1 - label_smoothing) + smooth * label_smoothing
    dtype = it.dtype
    w_i = ew.cast(valid, dtype)
    if weight is not None:
        w = np.asarray(weight, dtype)
        w_i = w_i * take(w, safe)
    # poison loss and gradient when a label is out of range (nothing valid to compute)
    poison = ew.where(ew.logical_and(valid, ew.logical_not(in_range)), np.asarray(np.nan, dtype),
                      np.asarray(1, dtype))
    loss = nll * w_i * poison
    if reduction == "mean":
        out = reduce_sum(loss) / reduce_sum(w_i)
    else:
        out = _reduce(loss, reduction, "CrossEntropyLoss")
    return _eager_result(out)


def nll_loss(input, target, reduction="mean"):
    picked = squeeze(take_along_axis(input, expand_dims(target, -1), axis=-1), -1)
    return _eager_result(_reduce(-picked, reduction, "NLLLoss"))
