"""Shape ops: reshape, transpose, broadcast_to, concatenate (and the functions built on them:
expand_dims, squeeze, stack, ravel, sum_to)."""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import ELEMENTWISE, implements, register
from graphc.trace import bind, mark_weak, promote, type_of, user_line


# -- reshape: a view in the generated code ------------------------------------------
def resolve_shape(newshape, size, old) -> tuple:
    shape = tuple(int(n) for n in (newshape if isinstance(newshape, (tuple, list)) else (newshape,)))
    if shape.count(-1) > 1:
        raise ShapeError(f"can only specify one unknown dimension, got {shape}")
    if -1 in shape:
        known = int(np.prod([n for n in shape if n != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {old} into shape {shape}")
        shape = tuple(size // known if n == -1 else n for n in shape)
    if int(np.prod(shape, dtype=np.int64)) != size or any(n < 0 for n in shape):
        raise ShapeError(f"cannot reshape {old} into shape {shape}")
    return shape


def _infer_reshape(types, shape):
    (t,) = types
    return TensorType(resolve_shape(shape, t.size, t), t.dtype)


def _emit_reshape(em, node):
    (x,), out = node.inputs, node.outputs[0]
    src = em.name(x)
    if out.type.shape and not x.type.shape:  # a scalar spread over a new buffer
        em.alloc(out, fill=src)
        return
    name = em.define(out)
    # reshape_c (graphc.backend.intrinsics) compiles inline, .reshape/.ravel do not
    if not out.type.shape:  # the one element of x
        em.line(f"{name} = {src}[{', '.join('0' * x.type.ndim)}]" if x.type.shape else f"{name} = {src}")
    else:
        em.imports.add("reshape_c")
        em.line(f"{name} = reshape_c({src}, {tuple(out.type.shape)!r})")


register("reshape", "shape", _infer_reshape, lambda x, shape: np.reshape(x, shape),
         vjp=(lambda g, x, out, shape: reshape(g, x.shape),), emit=_emit_reshape, view=True)


@implements(np.reshape)
def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    """``np.reshape`` (C order; one dimension may be -1)."""
    if order != "C":
        raise TraceError(f"reshape(order={order!r}) is not supported; only C order (at {user_line()})")
    shape = newshape if shape is None else shape
    t = type_of(a)
    shape = resolve_shape(shape, t.size, t)
    if shape == t.shape:
        return a
    return mark_weak(bind("reshape", a, shape=shape), a)


@implements(np.ravel)
def ravel(a, order="C"):
    return reshape(a, (-1,), order)


@implements(np.expand_dims)
def expand_dims(a, axis):
    t = type_of(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    ndim = t.ndim + len(axes)
    axes = sorted(ax % ndim for ax in axes)
    shape = list(t.shape)
    for ax in axes:
        shape.insert(ax, 1)
    return reshape(a, shape)


@implements(np.squeeze)
def squeeze(a, axis=None):
    t = type_of(a)
    if axis is None:
        axes = [d for d, n in enumerate(t.shape) if n == 1]
    else:
        axes = [ax % t.ndim for ax in (axis if isinstance(axis, (tuple, list)) else (axis,))]
        bad = [ax for ax in axes if t.shape[ax] != 1]
        if bad:
            raise ShapeError(f"squeeze: cannot select axis {bad[0]} of {t}: its size is not 1\n  at {user_line()}")
    return reshape(a, [n for d, n in enumerate(t.shape) if d not in axes])


# -- transpose: a copying loop ------------------------------------------------------
def _infer_transpose(types, perm):
    (t,) = types
    if sorted(perm) != list(range(t.ndim)):
        raise ShapeError(f"axes {perm} are not a permutation of the dimensions of {t}")
    return TensorType(tuple(t.shape[p] for p in perm), t.dtype)


def _emit_transpose(em, node):
    (x,), out = node.inputs, node.outputs[0]
    perm = node.attrs["perm"]
    em.alloc(out)
    with em.loops(out.type.shape) as idx:
        src = [None] * len(perm)
        for d, p in enumerate(perm):
            src[p] = idx[d]  # output dim d walks input dim perm[d]
        em.store(out, idx, f"{em.name(x)}[{', '.join(src)}]")


register("transpose", "shape", _infer_transpose, lambda x, perm: np.transpose(x, perm),
         vjp=(lambda g, x, out, perm: transpose(g, tuple(np.argsort(perm))),), emit=_emit_transpose)


@implements(np.transpose)
def transpose(a, axes=None):
    """``np.transpose``; without axes, reverses the dimensions."""
    t = type_of(a)
    perm = tuple(reversed(range(t.ndim))) if axes is None else tuple(ax % t.ndim for ax in axes)
    if perm == tuple(range(t.ndim)):
        return a
    return mark_weak(bind("transpose", a, perm=perm), a)


@implements(np.swapaxes)
def swapaxes(a, axis1, axis2):
    perm = list(range(type_of(a).ndim))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(a, perm)


# -- broadcast_to: an elementwise identity over a bigger shape ---------------------------
def _infer_broadcast(types, shape):
    (t,) = types
    try:
        if tuple(np.broadcast_shapes(t.shape, shape)) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ShapeError(f"cannot broadcast {t} to shape {tuple(shape)}") from None
    return TensorType(tuple(shape), t.dtype)


register("broadcast_to", ELEMENTWISE, _infer_broadcast, lambda x, shape: np.broadcast_to(x, shape).copy(),
         scalar=lambda c, a: a, vjp=(lambda g, x, out, shape: sum_to(g, x.shape),))


@implements(np.broadcast_to)
def broadcast_to(array, shape, subok=False):
    """``np.broadcast_to``: no copy is made in compiled code (loops index through it)."""
    shape = tuple(int(n) for n in shape) if isinstance(shape, (tuple, list)) else (int(shape),)
    if type_of(array).shape == shape:
        return array
    return mark_weak(bind("broadcast_to", array, shape=shape), array)


def sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (the reverse of broadcasting ``shape`` up to x's shape)."""
    from graphc.ops.reduction import sum as reduce_sum
    t = type_of(x)
    shape = tuple(shape)
    if t.shape == shape:
        return x
    lead = t.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + d for d, n in enumerate(shape) if n == 1 and t.shape[lead + d] != 1)
    return reshape(reduce_sum(x, axis=axes, keepdims=True), shape) if axes else reshape(x, shape)


# -- concatenate ------------------------------------------------------------------------
def _infer_concat(types, axis):
    first = types[0]
    if not -first.ndim <= axis < max(first.ndim, 1) or first.ndim == 0:
        raise ShapeError(f"axis {axis} is out of bounds for {first}")
    for t in types[1:]:
        if t.dtype != first.dtype or t.ndim != first.ndim or any(
                a != b for d, (a, b) in enumerate(zip(t.shape, first.shape)) if d != axis):
            raise ShapeError("all inputs must match except along axis "
                             f"{axis}: {', '.join(str(t) for t in types)}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return TensorType(tuple(shape), first.dtype)


def _emit_concat(em, node):
    out, axis = node.outputs[0], node.attrs["axis"]
    em.alloc(out)
    offset = 0
    for x in node.inputs:
        with em.loops(x.type.shape) as idx:
            dst = list(idx)
            dst[axis] = f"{offset} + {idx[axis]}"
            em.store(out, dst, f"{em.name(x)}[{', '.join(idx)}]")
        offset += x.type.shape[axis]


def _concat_vjp(g, *xs, out, axis):
    from graphc.ops.indexing import slice_axis
    grads, offset = [], 0
    for x in xs:
        grads.append(slice_axis(g, axis, offset, offset + x.shape[axis]))
        offset += x.shape[axis]
    return grads


register("concatenate", "shape", _infer_concat, lambda *xs, axis: np.concatenate(xs, axis=axis),
         vjp=_concat_vjp, emit=_emit_concat)


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None):
    """``np.concatenate`` along ``axis`` (inputs are promoted to one dtype)."""
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    args = promote(*arrays, dtype=np.dtype(dtype).name if dtype else None)
    ndim = type_of(args[0]).ndim
    if ndim == 0:
        raise ShapeError(f"concatenate: zero-dimensional arrays cannot be concatenated\n  at {user_line()}")
    if len(args) == 1:
        return args[0]
    return mark_weak(bind("concatenate", *args, axis=axis % ndim), *arrays)


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None):
    """``np.stack``: join along a new axis."""
    arrays = list(arrays)
    shapes = {type_of(a).shape for a in arrays}
    if len(shapes) != 1:
        raise ShapeError(f"stack: all input arrays must have the same shape, got {sorted(shapes)}\n"
                         f"  at {user_line()}")
    ndim = type_of(arrays[0]).ndim + 1
    return concatenate([expand_dims(a, axis % ndim) for a in arrays], axis=axis % ndim, dtype=dtype)


@implements(np.hstack)
def hstack(tup, dtype=None):
    arrays = list(tup)
    return concatenate(arrays, axis=0 if type_of(arrays[0]).ndim == 1 else 1, dtype=dtype)


@implements(np.vstack)
def vstack(tup, dtype=None):
    return concatenate([reshape(a, (1, -1)) if type_of(a).ndim == 1 else a for a in tup], axis=0, dtype=dtype)

