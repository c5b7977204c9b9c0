"""Constants and array creation: the ``constant`` primitive, zeros/ones/full(_like), arange, linspace."""
from __future__ import annotations

import operator

import numpy as np

from graphc.ops.scalar import literal
from graphc.ir import TensorType
from graphc.ops.registry import export, implements, register
from graphc.ops import prims
from graphc.ops.rules import numpy_error
from graphc.trace import Tracer, convert, promote, result_dtype, strong, type_of


def _infer_constant(types, value):
    return TensorType(value.array.shape, value.array.dtype.name)


def _emit_constant(em, node):
    out, array = node.outputs[0], node.attrs["value"].array
    if not array.shape:
        em.line(f"{em.define(out)} = {literal(array[()], out.type.dtype)}")
    else:  # arrays travel as extra arguments of the entry function, not as source text
        em.names[out] = f"c{len(em.const_args)}"
        em.const_args.append(np.ascontiguousarray(array))


register("constant", "constant", _infer_constant, lambda value: value.array.copy(),
         vjp=(), emit=_emit_constant, differentiable=False)


def _like(a, fill, dtype, shape):
    if not isinstance(a, Tracer) or shape is not None:
        a = np.asarray(a)
        return np.full(a.shape if shape is None else shape, fill, dtype or a.dtype)
    (value,) = promote(np.asarray(fill), dtype=np.dtype(dtype or a.dtype).name)
    return prims.broadcast_to(value, a.shape)


@implements(np.zeros_like)
def zeros_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """Zeros with the shape (and dtype) of ``a``; a broadcast scalar inside a trace."""
    return _like(a, 0, dtype, shape)


@implements(np.ones_like)
def ones_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _like(a, 1, dtype, shape)


@implements(np.full_like)
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _like(a, fill_value, dtype, shape)


def zeros(shape, dtype=np.float64):
    """``np.zeros``: a constant when used in a trace."""
    return np.zeros(shape, dtype)


def ones(shape, dtype=np.float64):
    return np.ones(shape, dtype)


def full(shape, fill_value, dtype=None):
    return np.full(shape, fill_value, dtype)


arange = np.arange


@implements(np.linspace)
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    """``np.linspace``: a constant for static ends; with traced ``start``/``stop`` (scalars or
    arrays), NumPy's own arithmetic step by step, so the values match it bit for bit."""
    if not isinstance(start, Tracer) and not isinstance(stop, Tracer):
        return np.linspace(start, stop, num, endpoint, retstep, dtype, axis, device=device)
    num = operator.index(num)
    if num < 0:
        raise numpy_error(ValueError, f"Number of samples, {num}, must be non-negative.")
    div = (num - 1) if endpoint else num
    dt = result_dtype(start, stop)
    if np.dtype(dt).kind in "biu":
        dt = "float64"
    delta = prims.subtract(convert(stop, dt), convert(start, dt))
    nd = type_of(delta).ndim
    y = prims.iota((num,) + (1,) * nd, axis=0, dtype=dt)
    if div > 0:
        step = prims.divide(delta, div)
        zero = prims.equal(step, 0)
        if nd:  # NumPy takes the slower path for every element when any step is zero
            zero = prims.greater(prims.sum(prims.cast(zero, "int64")), 0)
        y = prims.where(zero, prims.multiply(prims.divide(y, div), delta), prims.multiply(y, step))
    else:
        step = np.nan
        y = prims.multiply(y, delta)
    y = prims.add(y, convert(start, dt))  # NumPy: y += start, computed in y's dtype
    if endpoint and num > 1:  # NumPy: y[-1, ...] = stop
        last = prims.broadcast_to(convert(stop, dt), type_of(y).shape[1:])
        y = prims.concatenate([y[:-1], prims.expand_dims(last, 0)], axis=0)
    if axis != 0:
        y = prims.moveaxis(y, 0, axis)
    if dtype is not None and np.issubdtype(dtype, np.integer):
        y = _floor_to_int(y, np.dtype(dtype).name)
    elif dtype is not None:
        y = prims.cast(y, dtype)
    y = strong(y)
    return (y, strong(step) if isinstance(step, Tracer) else step) if retstep else y


def _floor_to_int(y, dtype):
    """``np.floor(y).astype(dtype)``: truncation, less one where that rounded up."""
    t = prims.cast(y, dtype)
    return prims.where(prims.greater(prims.cast(t, y.dtype), y), prims.subtract(t, prims.cast(1, dtype)), t)

# what the other op families call (through graphc.ops.prims)
export(
    floor_to_int=_floor_to_int, linspace=linspace,
)
