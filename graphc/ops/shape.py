"""Shape ops: reshape, transpose, broadcast_to, concatenate, and the NumPy functions built on
them and on static slices/gathers (expand_dims, squeeze, stack, tile, repeat, pad, roll, flip,
rot90, moveaxis, atleast_*d, split, ...): compositions, so their gradients come free."""
from __future__ import annotations

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from graphc.errors import ShapeError, TraceError
from graphc.ir import DTYPES, TensorType
from graphc.ops.rules import broadcast_shapes, numpy_error, slice_bounds
from graphc.ops.registry import ELEMENTWISE, export, implements, register
from graphc.ops import prims
from graphc.trace import Tracer, bind, convert, mark_weak, promote, strong, type_of, user_line


def _static(value, what, fn):
    """Refuse a traced value where NumPy's output shape depends on it."""
    if isinstance(value, Tracer) or (isinstance(value, (list, tuple)) and any(isinstance(v, Tracer) for v in value)):
        raise TraceError(f"np.{fn}: {what} must be static (a Python int, list or NumPy array), not a traced "
                         f"value: the output's shape would depend on it (at {user_line()})")
    return value


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
    if t.symbolic or any(isinstance(n, str) for n in shape):
        return TensorType(_symbolic_reshape(t, tuple(shape)), t.dtype)
    return TensorType(resolve_shape(shape, t.size, t), t.dtype)


def _symbolic_reshape(t, shape) -> tuple:
    """A reshape of a type with symbolic dims: right for every size of the symbols when both
    shapes hold the same symbols, as often each, and the same product of their int dims
    (``(B, 8, 8) -> (B, 64)``). Anything that needs shape arithmetic (-1, ``B * 8``) raises."""
    def split(dims):
        syms = sorted(str(n) for n in dims if isinstance(n, str))
        ints = [n for n in dims if not isinstance(n, str)]
        return syms, int(np.prod(ints, dtype=np.int64)), ints
    old_syms, old_size, _ = split(t.shape)
    new_syms, new_size, ints = split(shape)
    if -1 in ints or any(n < 0 for n in ints) or old_syms != new_syms or old_size != new_size:
        raise ShapeError(f"cannot reshape {t} into shape {shape} for every size of its symbolic "
                         f"dimension (graphc has no symbolic shape arithmetic)")
    return shape


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
    """``np.swapaxes``: a transpose exchanging two axes."""
    ndim = type_of(a).ndim
    axis1, axis2 = normalize_axis_index(axis1, ndim, "axis1"), normalize_axis_index(axis2, ndim, "axis2")
    perm = list(range(ndim))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(a, perm)


@implements(np.moveaxis)
def moveaxis(a, source, destination):
    """``np.moveaxis``: move axes to new positions, the others keep their order."""
    ndim = type_of(a).ndim
    source = normalize_axis_tuple(source, ndim, "source")
    destination = normalize_axis_tuple(destination, ndim, "destination")
    if len(source) != len(destination):
        raise numpy_error(ValueError, "`source` and `destination` arguments must have the same number of elements")
    order = [d for d in range(ndim) if d not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return strong(transpose(a, order))


@implements(np.rollaxis)
def rollaxis(a, axis, start=0):
    """``np.rollaxis``: move ``axis`` to lie before position ``start``."""
    n = type_of(a).ndim
    axis = normalize_axis_index(axis, n)
    if start < 0:
        start += n
    if not 0 <= start < n + 1:
        raise numpy_error(np.exceptions.AxisError, f"'start' arg requires {-n} <= start < {n + 1}, but {start} was passed in")
    if axis < start:
        start -= 1
    axes = list(range(n))
    axes.remove(axis)
    axes.insert(start, axis)
    return strong(transpose(a, axes))


# -- broadcast_to: an elementwise identity over a bigger shape ---------------------------
def _infer_broadcast(types, shape):
    (t,) = types
    try:
        if broadcast_shapes(t.shape, tuple(shape)) != tuple(shape):
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
    t = type_of(x)
    shape = tuple(shape)
    if t.shape == shape:
        return x
    lead = t.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + d for d, n in enumerate(shape) if n == 1 and t.shape[lead + d] != 1)
    return reshape(prims.sum(x, axis=axes, keepdims=True), shape) if axes else reshape(x, shape)




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
    grads, offset = [], 0
    for x in xs:
        grads.append(prims.slice_axis(g, axis, offset, offset + x.shape[axis]))
        offset += x.shape[axis]
    return grads


register("concatenate", "shape", _infer_concat, lambda *xs, axis: np.concatenate(xs, axis=axis),
         vjp=_concat_vjp, emit=_emit_concat)

_CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")


def _join(pieces, axis):
    """Concatenate same-dtype pieces (no checks beyond the op's shape rule)."""
    return pieces[0] if len(pieces) == 1 else bind("concatenate", *pieces, axis=axis)


def _target_dtype(arrays, dtype, casting) -> str:
    """The result dtype of concatenate, checking ``casting`` as NumPy does (a TypeError)."""
    if casting not in _CASTINGS:
        raise numpy_error(ValueError, f"casting must be one of 'no', 'equiv', 'safe', 'same_kind', 'unsafe' "
                         f"(got {casting!r})")
    sources = [np.dtype(type_of(a).dtype) for a in arrays]
    target = np.dtype(dtype) if dtype is not None else np.result_type(*sources)
    if target.name not in DTYPES:
        raise TypeError(f"graphc does not support dtype {target.name}; supported: {', '.join(DTYPES)}")
    for src in sources:
        if not np.can_cast(src, target, casting):
            raise numpy_error(TypeError, f"Cannot cast array data from dtype('{src}') to dtype('{target}') "
                            f"according to the rule '{casting}'")
    return target.name


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    """``np.concatenate`` along ``axis`` (None: flattened); ``dtype`` and ``casting`` as NumPy."""
    if out is not None:
        raise TraceError(f"np.concatenate(..., out=...) cannot be traced (at {user_line()})")
    arrays = list(arrays)
    if not arrays:
        raise numpy_error(ValueError, "need at least one array to concatenate")
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    args = promote(*arrays, dtype=_target_dtype(arrays, dtype, casting))
    ndim = type_of(args[0]).ndim
    if ndim == 0:
        raise ShapeError(f"concatenate: zero-dimensional arrays cannot be concatenated\n  at {user_line()}")
    return strong(_join(args, normalize_axis_index(axis, ndim)))


@implements(np.stack)
def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """``np.stack``: join along a new axis."""
    arrays = list(arrays)
    if not arrays:
        raise numpy_error(ValueError, "need at least one array to stack")
    shapes = {type_of(a).shape for a in arrays}
    if len(shapes) != 1:
        raise ShapeError(f"stack: all input arrays must have the same shape, got {sorted(shapes)}\n"
                         f"  at {user_line()}")
    axis = normalize_axis_index(axis, type_of(arrays[0]).ndim + 1)
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis, out=out, dtype=dtype,
                       casting=casting)


def _as_tuple(results):
    return results[0] if len(results) == 1 else tuple(results)


@implements(np.atleast_1d)
def atleast_1d(*arys):
    """``np.atleast_1d``: 0-d arrays become shape (1,); one array in, one out, else a tuple."""
    return _as_tuple([strong(reshape(a, (1,))) if isinstance(a, Tracer) and a.ndim == 0
                      else strong(a) if isinstance(a, Tracer) else np.atleast_1d(a) for a in arys])


@implements(np.atleast_2d)
def atleast_2d(*arys):
    """``np.atleast_2d``: 0-d becomes (1, 1), 1-d (N,) becomes (1, N)."""
    return _as_tuple([strong(reshape(a, (1,) * (2 - a.ndim) + a.shape)) if isinstance(a, Tracer)
                      else np.atleast_2d(a) for a in arys])


@implements(np.atleast_3d)
def atleast_3d(*arys):
    """``np.atleast_3d``: 0-d becomes (1, 1, 1), (N,) becomes (1, N, 1), (M, N) becomes (M, N, 1)."""
    def lift(a):
        shape = {0: (1, 1, 1), 1: (1,) + a.shape + (1,), 2: a.shape + (1,)}.get(a.ndim, a.shape)
        return strong(reshape(a, shape))
    return _as_tuple([lift(a) if isinstance(a, Tracer) else np.atleast_3d(a) for a in arys])


def _listed(arrays):
    arrays = atleast_1d(*arrays)
    return list(arrays) if isinstance(arrays, tuple) else [arrays]


@implements(np.hstack)
def hstack(tup, *, dtype=None, casting="same_kind"):
    """``np.hstack``: 0-d pieces become 1-d; 1-d pieces join along axis 0, others along axis 1."""
    arrays = _listed(tup)
    return concatenate(arrays, 0 if type_of(arrays[0]).ndim == 1 else 1, dtype=dtype, casting=casting)


@implements(np.vstack)
def vstack(tup, *, dtype=None, casting="same_kind"):
    """``np.vstack`` (and ``np.row_stack``): 0-d and 1-d pieces become rows."""
    arrays = atleast_2d(*tup)
    return concatenate(arrays if isinstance(arrays, tuple) else [arrays], 0, dtype=dtype, casting=casting)


@implements(np.dstack)
def dstack(tup):
    """``np.dstack``: join along the third axis (pieces lifted by ``atleast_3d``)."""
    arrays = atleast_3d(*tup)
    return concatenate(arrays if isinstance(arrays, tuple) else [arrays], 2)


@implements(np.column_stack)
def column_stack(tup):
    """``np.column_stack``: 0-d and 1-d pieces become columns, then join along axis 1."""
    columns = []
    for a in tup:
        t = type_of(a)
        columns.append(reshape(a, (-1, 1)) if t.ndim < 2 else a)
    return concatenate(columns, 1)


@implements(np.append)
def append(arr, values, axis=None):
    """``np.append``: flattened when ``axis`` is None, else a concatenate along ``axis``."""
    if axis is None:
        if type_of(arr).ndim != 1:
            arr = ravel(arr)
        values, axis = ravel(values), type_of(arr).ndim - 1
    return concatenate((arr, values), axis=axis)


# -- static rearrangements along one axis: slices, broadcasts, or one gather ------------------
_MAX_RUNS = 8  # beyond this many pieces one gather is cheaper than slices and a concatenate


def _runs(index) -> list:
    """Split a static index list into runs (first, length, step) with step -1, 0 or 1."""
    runs, i, n = [], 0, len(index)
    while i < n:
        step, j = 0, i + 1
        if j < n and index[j] - index[i] in (-1, 0, 1):
            step = int(index[j] - index[i])
            while j < n and index[j] - index[j - 1] == step:
                j += 1
        runs.append((int(index[i]), j - i, step))
        i = j
    return runs


def slice_along(x, axis, start, stop, step=1):
    """``x[..., start:stop:step, ...]`` along ``axis``; ``x`` itself when that is all of it."""
    t = type_of(x)
    bounds = slice_bounds(slice(start, stop, step), t.shape[axis])
    if bounds == (0, t.shape[axis], 1):
        return x
    slices = tuple(bounds if d == axis else (0, n, 1) for d, n in enumerate(t.shape))
    return bind("slice", x, slices=slices)


def take_static(x, axis, index):
    """``np.take(x, index, axis)`` for a static in-range index list, made of slices (a run of
    repeats is a broadcast) when that takes few pieces, else one gather."""
    t = type_of(x)
    index = np.asarray(index, np.int64)
    if len(index) == 0:
        return slice_along(x, axis, 0, 0)
    runs = _runs(index)
    if len(runs) > _MAX_RUNS:
        return prims.gather(x, index, axis=axis)
    pieces = []
    for first, length, step in runs:
        if step == 0:
            piece = slice_along(x, axis, first, first + 1)
            shape = list(t.shape)
            shape[axis] = length
            pieces.append(broadcast_to(piece, shape))
        else:
            last = first + step * (length - 1)
            pieces.append(slice_along(x, axis, first, None if last + step < 0 else last + step, step))
    return _join(pieces, axis)


@implements(np.flip)
def flip(m, axis=None):
    """``np.flip``: reverse the order of elements along ``axis`` (all axes when None)."""
    t = type_of(m)
    axes = range(t.ndim) if axis is None else normalize_axis_tuple(axis, t.ndim)
    if not axes:
        return strong(m)
    slices = tuple(slice(None, None, -1).indices(n) if d in axes else (0, n, 1) for d, n in enumerate(t.shape))
    return bind("slice", m, slices=slices)


@implements(np.fliplr)
def fliplr(m):
    """``np.fliplr``: reverse axis 1."""
    if type_of(m).ndim < 2:
        raise numpy_error(ValueError, "Input must be >= 2-d.")
    return flip(m, 1)


@implements(np.flipud)
def flipud(m):
    """``np.flipud``: reverse axis 0."""
    if type_of(m).ndim < 1:
        raise numpy_error(ValueError, "Input must be >= 1-d.")
    return flip(m, 0)


@implements(np.rot90)
def rot90(m, k=1, axes=(0, 1)):
    """``np.rot90``: rotate by 90 degrees ``k`` times in the plane of ``axes``."""
    axes = tuple(axes)
    if len(axes) != 2:
        raise numpy_error(ValueError, "len(axes) must be 2.")
    ndim = type_of(m).ndim
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == ndim:
        raise numpy_error(ValueError, "Axes must be different.")
    if axes[0] >= ndim or axes[0] < -ndim or axes[1] >= ndim or axes[1] < -ndim:
        raise numpy_error(ValueError, f"Axes={axes} out of range for array of ndim={ndim}.")
    k %= 4
    if k == 0:
        return strong(m)
    if k == 2:
        return flip(flip(m, axes[0]), axes[1])
    perm = list(range(ndim))
    perm[axes[0]], perm[axes[1]] = perm[axes[1]], perm[axes[0]]
    if k == 1:
        return transpose(flip(m, axes[1]), perm)
    return flip(transpose(m, perm), axes[1])


@implements(np.roll)
def roll(a, shift, axis=None):
    """``np.roll``: elements shifted along ``axis`` (the flattened array when None), wrapping
    around; ``shift`` and ``axis`` may be tuples (shifts on one axis add up)."""
    _static(shift, "shift", "roll")
    t = type_of(a)
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), t.shape)
    axes = normalize_axis_tuple(axis, t.ndim, allow_duplicate=True)
    pairs = np.broadcast(shift, axes)
    if pairs.ndim > 1:
        raise numpy_error(ValueError, "'shift' and 'axis' should be scalars or 1D sequences")
    shifts = dict.fromkeys(range(t.ndim), 0)
    for sh, ax in pairs:
        shifts[ax] += int(sh)
    out = a
    for ax, offset in shifts.items():
        n = t.shape[ax]
        if offset % (n or 1):
            out = take_static(out, ax, np.roll(np.arange(n), offset))
    return strong(out)


@implements(np.tile)
def tile(A, reps):
    """``np.tile``: ``A`` repeated ``reps`` times along each axis (a broadcast, then a reshape)."""
    _static(reps, "reps", "tile")
    try:
        reps = tuple(reps)
    except TypeError:
        reps = (reps,)
    reps = tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise numpy_error(ValueError, "negative dimensions are not allowed")
    t = type_of(A)
    d = max(len(reps), t.ndim)
    reps = (1,) * (d - len(reps)) + reps
    shape = (1,) * (d - t.ndim) + t.shape
    spread = tuple(n for r, s in zip(reps, shape) for n in (r, s))
    x = reshape(A, tuple(n for s in shape for n in (1, s)))
    return strong(reshape(broadcast_to(x, spread), tuple(r * s for r, s in zip(reps, shape))))


@implements(np.repeat)
def repeat(a, repeats, axis=None):
    """``np.repeat``: each element repeated ``repeats`` times (an int, or one static count per
    element) along ``axis`` (the flattened array when None)."""
    _static(repeats, "repeats", "repeat")
    if axis is None:
        a, axis = ravel(a), 0
    t = type_of(a)
    axis = normalize_axis_index(axis, t.ndim)
    index = np.repeat(np.arange(t.shape[axis]), repeats)  # NumPy's own checks of repeats
    counts = np.asarray(repeats)
    if counts.size == 1:  # every element the same number of times: a broadcast
        r = int(counts.ravel()[0])
        spread = list(t.shape)
        spread.insert(axis + 1, r)
        x = broadcast_to(expand_dims(a, axis + 1), spread)
        return strong(reshape(x, tuple(n * r if d == axis else n for d, n in enumerate(t.shape))))
    return strong(take_static(a, axis, index))


# -- np.split and friends -----------------------------------------------------------------
@implements(np.array_split)
def array_split(ary, indices_or_sections, axis=0):
    """``np.array_split``: a list of slices along ``axis`` (sections may differ by one)."""
    _static(indices_or_sections, "indices_or_sections", "array_split")
    t = type_of(ary)
    n = t.shape[axis]
    axis = normalize_axis_index(axis, t.ndim)
    try:
        sections = len(indices_or_sections) + 1
        bounds = [0] + list(indices_or_sections) + [n]
    except TypeError:
        sections = int(indices_or_sections)
        if sections <= 0:
            raise numpy_error(ValueError, "number sections must be larger than 0.") from None
        each, extras = divmod(n, sections)
        bounds = np.cumsum([0] + extras * [each + 1] + (sections - extras) * [each]).tolist()
    return [strong(slice_along(ary, axis, int(bounds[i]), int(bounds[i + 1]))) for i in range(sections)]


@implements(np.split)
def split(ary, indices_or_sections, axis=0):
    """``np.split``: as array_split, but integer sections must divide the axis equally."""
    try:
        len(indices_or_sections)
    except TypeError:
        _static(indices_or_sections, "indices_or_sections", "split")
        if type_of(ary).shape[axis] % indices_or_sections:
            raise numpy_error(ValueError, "array split does not result in an equal division") from None
    return array_split(ary, indices_or_sections, axis)


@implements(np.hsplit)
def hsplit(ary, indices_or_sections):
    """``np.hsplit``: split along axis 1 (axis 0 for 1-d arrays)."""
    ndim = type_of(ary).ndim
    if ndim == 0:
        raise numpy_error(ValueError, "hsplit only works on arrays of 1 or more dimensions")
    return split(ary, indices_or_sections, 1 if ndim > 1 else 0)


@implements(np.vsplit)
def vsplit(ary, indices_or_sections):
    """``np.vsplit``: split along axis 0."""
    if type_of(ary).ndim < 2:
        raise numpy_error(ValueError, "vsplit only works on arrays of 2 or more dimensions")
    return split(ary, indices_or_sections, 0)


@implements(np.dsplit)
def dsplit(ary, indices_or_sections):
    """``np.dsplit``: split along axis 2."""
    if type_of(ary).ndim < 3:
        raise numpy_error(ValueError, "dsplit only works on arrays of 3 or more dimensions")
    return split(ary, indices_or_sections, 2)


# -- np.pad -----------------------------------------------------------------------------
_PAD_KWARGS = {
    "empty": [], "edge": [], "wrap": [], "constant": ["constant_values"], "linear_ramp": ["end_values"],
    "maximum": ["stat_length"], "mean": ["stat_length"], "median": ["stat_length"],
    "minimum": ["stat_length"], "reflect": ["reflect_type"], "symmetric": ["reflect_type"],
}
_INDEX_MODES = ("edge", "reflect", "symmetric", "wrap")  # each padded element copies one element


def _as_pairs(x, ndim, as_index=False):
    """``x`` broadcast to ``ndim`` (before, after) pairs, as np.pad reads pad_width, stat_length,
    constant_values and end_values (one value, one pair for all axes, or one pair per axis).
    The pairs hold NumPy scalars or Python numbers exactly where NumPy's do (it matters for
    the dtype of linear ramps)."""
    if x is None:
        return [(None, None)] * ndim
    x = np.array(x)
    if as_index:
        x = np.round(x).astype(np.intp, copy=False)
        if x.size and x.min() < 0:
            raise numpy_error(ValueError, "index can't contain negative values")
    if x.ndim < 3 and x.size == 1:
        x = x.ravel()
        return [(x[0], x[0])] * ndim
    if x.ndim < 3 and x.size == 2 and x.shape != (2, 1):
        x = x.ravel()
        return [(x[0], x[1])] * ndim
    return np.broadcast_to(x, (ndim, 2)).tolist()


def _pad_value(value, dtype):
    """A pad value as NumPy writes it into the padded array (``padded[...] = value``)."""
    if isinstance(value, Tracer):
        if value.ndim:
            raise TraceError(f"np.pad: a traced constant_values must be a scalar, got {value!r} "
                             f"(at {user_line()})")
        return convert(value, dtype)
    cell = np.empty((), dtype)
    cell[()] = value
    return cell


def _spread(value, like, axis, width):
    """``value`` broadcast to ``like``'s shape with ``width`` along ``axis``."""
    shape = list(type_of(like).shape)
    shape[axis] = width
    return broadcast_to(value, shape)


def _pad_constant(x, axis, before, after, values):
    dtype = type_of(x).dtype
    pieces = [_spread(_pad_value(v, dtype), x, axis, w) if w else None for w, v in zip((before, after), values)]
    return _join([p for p in (pieces[0], x, pieces[1]) if p is not None], axis)


def _pad_reflect_odd(x, axis, before, after, include_edge):
    """NumPy's odd reflection (``2 * edge - mirror``), chunk by chunk as NumPy builds it, so
    pads wider than the array reflect the already reflected values."""
    dtype, n = type_of(x).dtype, type_of(x).shape[axis]

    def odd(chunk, edge):  # NumPy writes 2 * edge - chunk into the padded array (a cast)
        return prims.cast(prims.subtract(prims.multiply(2, edge), chunk), dtype)

    while before > 0 or after > 0:
        length = type_of(x).shape[axis]
        if include_edge:
            old, off = length // n * n, 1
        else:
            old, off = (length - 1) // (n - 1) * (n - 1), 0
        pieces = [x]
        if before > 0:
            width = min(old, before)
            chunk = slice_along(x, axis, width - off, -off if off == 0 else None, -1)
            pieces.insert(0, odd(chunk, slice_along(x, axis, 0, 1)))
            before -= width
        if after > 0:
            width = min(old, after)
            first = length + off - 2
            chunk = slice_along(x, axis, first, first - width if first - width >= 0 else None, -1)
            pieces.append(odd(chunk, slice_along(x, axis, length - 1, length)))
            after -= width
        x = _join(pieces, axis)
    return x


def _round_half_even(m):
    """``np.round(m)`` (halves to even) of a traced float, exactly, from floor and comparisons."""
    f = prims.cast(prims.floor_to_int(m, "int64"), m.dtype)
    frac = prims.subtract(m, f)  # exact: m and floor(m) are within 1 of each other
    half_f = prims.cast(prims.floor_to_int(prims.multiply(f, 0.5), "int64"), m.dtype)
    f_odd = prims.not_equal(prims.multiply(half_f, 2), f)
    up = prims.logical_or(prims.greater(frac, 0.5), prims.logical_and(prims.equal(frac, 0.5), f_odd))
    return prims.where(up, prims.add(f, 1), f)


def _pad_stat(x, axis, before, after, lengths, mode):
    """maximum / minimum / mean of the first (last) ``stat_length`` elements, as NumPy."""
    dtype, n = type_of(x).dtype, type_of(x).shape[axis]
    fn = {"maximum": prims.max, "minimum": prims.min, "mean": prims.mean}[mode]
    left = n if lengths[0] is None or n < lengths[0] else int(lengths[0])
    right = n if lengths[1] is None or n < lengths[1] else int(lengths[1])
    if (left == 0 or right == 0) and mode != "mean":
        raise numpy_error(ValueError, "stat_length of 0 yields no value for padding")

    def stat(start, stop):
        value = fn(slice_along(x, axis, start, stop), axis=axis, keepdims=True)
        if np.dtype(dtype).kind in "iub" and mode == "mean":  # NumPy rounds, then casts
            value = _round_half_even(value)
        return convert(value, dtype)

    left_stat = stat(0, left)
    right_stat = left_stat if left == right == n else stat(n - right, n)
    pieces = [_spread(v, x, axis, w) if w else None for w, v in ((before, left_stat), (after, right_stat))]
    return _join([p for p in (pieces[0], x, pieces[1]) if p is not None], axis)


def _pad_ramp(x, axis, before, after, ends):
    """Linear ramps from ``end_values`` to the edge values: NumPy's own np.linspace calls."""
    dtype, n = type_of(x).dtype, type_of(x).shape[axis]
    pieces = [x]
    if before:
        edge = reshape(slice_along(x, axis, 0, 1), [m for d, m in enumerate(type_of(x).shape) if d != axis])
        pieces.insert(0, prims.linspace(ends[0], edge, before, endpoint=False, dtype=dtype, axis=axis))
    if after:
        edge = reshape(slice_along(x, axis, n - 1, n), [m for d, m in enumerate(type_of(x).shape) if d != axis])
        pieces.append(flip(prims.linspace(ends[1], edge, after, endpoint=False, dtype=dtype, axis=axis), axis))
    return _join(pieces, axis)


@implements(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    """``np.pad`` with every mode but median and a function: constant (``constant_values``, may
    be a traced scalar), edge, reflect and symmetric (``reflect_type`` even or odd), wrap,
    linear_ramp, maximum, minimum, mean (``stat_length``), and empty (padded with zeros);
    ``pad_width`` as an int, a (before, after) pair, one pair per axis or a dict. Axes are padded
    in turn, as NumPy does (corners follow the later axes)."""
    if callable(mode):
        raise TraceError(f"np.pad with a function as mode cannot be traced (at {user_line()})")
    if mode not in _PAD_KWARGS:
        raise numpy_error(ValueError, f"mode '{mode}' is not supported")
    unsupported = set(kwargs) - set(_PAD_KWARGS[mode])
    if unsupported:
        raise numpy_error(ValueError, f"unsupported keyword arguments for mode '{mode}': {unsupported}")
    if mode == "median":
        raise TraceError(f"np.pad(mode='median') is not supported by graphc (at {user_line()}); every other "
                         f"mode is")
    _static(pad_width, "pad_width", "pad")
    t = type_of(array)
    if isinstance(pad_width, dict):
        widths = [(0, 0)] * t.ndim
        for ax, width in pad_width.items():
            widths[ax] = (width, width) if isinstance(width, int) else tuple(width)
        pad_width = widths
    if np.asarray(pad_width).dtype.kind != "i":
        raise numpy_error(TypeError, "`pad_width` must be of integral type.")
    widths = _as_pairs(pad_width, t.ndim, as_index=True)
    out = strong(array)
    if mode not in ("constant", "empty") and t.size == 0:
        for ax, (before, after) in enumerate(widths):
            if t.shape[ax] == 0 and (before or after):
                raise numpy_error(ValueError, f"can't extend empty axis {ax} using modes other than 'constant' or 'empty'")
        shape = tuple(n + before + after for n, (before, after) in zip(t.shape, widths))
        return broadcast_to(_pad_value(0, t.dtype), shape)  # no elements
    odd = kwargs.get("reflect_type", "even") == "odd"
    values = kwargs.get("constant_values", 0)
    values = ([(values, values)] * t.ndim if isinstance(values, Tracer) else
              _as_pairs(values, t.ndim) if mode == "constant" else [(0, 0)] * t.ndim)
    lengths = _as_pairs(kwargs.get("stat_length"), t.ndim, as_index=True)
    ends = _as_pairs(kwargs.get("end_values", 0), t.ndim)
    for ax, (before, after) in enumerate(widths):
        n = t.shape[ax]
        if not before and not after:
            continue
        if mode in ("constant", "empty"):
            out = _pad_constant(out, ax, before, after, values[ax])
        elif mode in ("maximum", "minimum", "mean"):
            out = _pad_stat(out, ax, before, after, lengths[ax], mode)
        elif mode == "linear_ramp":
            out = _pad_ramp(out, ax, before, after, ends[ax])
        elif odd and n > 1:  # NumPy extends a singleton axis as "edge" whatever the reflect_type
            out = _pad_reflect_odd(out, ax, before, after, include_edge=mode == "symmetric")
        else:
            out = take_static(out, ax, np.pad(np.arange(n), (before, after), mode="edge" if n == 1 else mode))
    return out

# what the other op families call (through graphc.ops.prims)
export(
    broadcast_to=broadcast_to, concatenate=concatenate, expand_dims=expand_dims, moveaxis=moveaxis,
    ravel=ravel, reshape=reshape, squeeze=squeeze, stack=stack, sum_to=sum_to, swapaxes=swapaxes,
    transpose=transpose,
)
