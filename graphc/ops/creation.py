"""Constants and array creation: the ``constant`` primitive, zeros/ones/full(_like), arange."""
from __future__ import annotations

import numpy as np

from graphc.backend.codegen import literal
from graphc.ir import TensorType
from graphc.ops.registry import implements, register
from graphc.trace import Tracer, promote


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
    from graphc.ops.shape import broadcast_to
    if not isinstance(a, Tracer) or shape is not None:
        a = np.asarray(a)
        return np.full(a.shape if shape is None else shape, fill, dtype or a.dtype)
    (value,) = promote(np.asarray(fill), dtype=np.dtype(dtype or a.dtype).name)
    return broadcast_to(value, a.shape)


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
