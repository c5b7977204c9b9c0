"""Neural-network functions built from primitives: stable softmax, log_softmax, logsumexp.

They are compositions (as ``jax.nn`` does), so their gradients come from the
primitives' rules and fuse with their neighbours. ``stop_gradient`` is the one
primitive here: an identity that blocks differentiation (used to shift by the max).
"""
from __future__ import annotations

from graphc.ops.registry import ELEMENTWISE, register
from graphc.ops import prims
from graphc.ops.rules import infer_same, normalize_axes
from graphc.trace import bind, mark_weak, promote, type_of

register("stop_gradient", ELEMENTWISE, infer_same, lambda x: x.copy(), scalar=lambda c, a: a, vjp=(None,))


def stop_gradient(x):
    """``x`` unchanged, but no gradient flows through it."""
    (x2,) = promote(x)
    return mark_weak(bind("stop_gradient", x2), x)


def _safe_max(x, axis):
    """max over axis (kept), replaced by 0 where it is not finite, with no gradient."""
    m = prims.max(x, axis=axis, keepdims=True)
    return stop_gradient(prims.where(prims.equal(prims.subtract(m, m), 0), m, 0))


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis`` without overflow (as ``scipy.special.logsumexp``)."""
    (x,) = promote(x, dtype=_float(x))
    m = _safe_max(x, axis)
    out = prims.log(prims.sum(prims.exp(x - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return out
    return prims.squeeze(out, normalize_axes(axis, type_of(x).ndim)) if type_of(x).ndim else out


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, shifted by the max for stability."""
    (x,) = promote(x, dtype=_float(x))
    # the plain max (not _safe_max): a row holding +inf gives NaN throughout, as scipy.special.softmax
    e = prims.exp(x - stop_gradient(prims.max(x, axis=axis, keepdims=True)))
    return e / prims.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``, computed stably."""
    (x,) = promote(x, dtype=_float(x))
    shifted = x - _safe_max(x, axis)
    return shifted - prims.log(prims.sum(prims.exp(shifted), axis=axis, keepdims=True))


def _float(x):
    dtype = type_of(x).dtype
    return dtype if dtype.startswith("float") else "float64"
