"""Indexing: static slices, integer-array gathers, their transposes (scatters), one_hot, select.

``x[...]`` on a tracer is split into a ``slice`` (basic indexing) followed by a
reshape (ints and None) or a ``gather`` (integer arrays). ``gather(x, *idx, axis)``
reads ``x[:, ..., idx1, ..., idxk, ...]`` with the k index arrays broadcast
together, as NumPy does for adjacent advanced indices. Advanced indices separated
by a slice or None (``x[i, a:b, j]``) put their broadcast dimensions first, as in
NumPy: a transpose brings those axes to the front, then one gather. ``take`` and
``take_along_axis`` are gathers too.
"""
from __future__ import annotations

import numpy as np

from graphc import capture
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import export, implements, register
from graphc.ops import prims
from graphc.ops.rules import broadcast_shapes, numpy_error, slice_bounds
from graphc.trace import Tracer, bind, convert, mark_weak, result_dtype, strong, type_of, user_line


# -- slice -------------------------------------------------------------------------
def _infer_slice(types, slices):
    (t,) = types
    if len(slices) != t.ndim:
        raise ShapeError(f"{len(slices)} slices for {t}")
    return TensorType(tuple(_slice_length(s, n, t) for s, n in zip(slices, t.shape)), t.dtype)


def _slice_length(s, n, t) -> int:
    """The length of slice ``s`` (start, stop, step) of a dimension of size ``n`` of ``t``; ShapeError
    where it reads outside. Of a symbolic dimension only the whole axis: other bounds hold at some
    sizes only."""
    if isinstance(n, str) or any(isinstance(b, str) for b in s):
        if tuple(s) == (0, n, 1):
            return n
        raise ShapeError(f"slice {s[0]}:{s[1]}:{s[2]} of the symbolic dimension {n} of {t} fits only some "
                         f"of its sizes")
    r = range(*s)  # (a graph read from a file, or made for another size)
    if len(r) and not (0 <= r[0] < n and 0 <= r[-1] < n):
        raise ShapeError(f"slice {s[0]}:{s[1]}:{s[2]} reads outside a dimension of size {n} of {t}")
    return len(r)


def _py_slices(slices):
    # (start, stop, step) come from slice.indices(): a negative step may stop at -1,
    # which a Python slice would read as "the last element", so it becomes None
    return tuple(slice(start, None if stop < 0 else stop, step) for start, stop, step in slices)


def _slice_ref(x, slices):
    return x[_py_slices(slices)]


def _emit_slice(em, node):
    (x,), out = node.inputs, node.outputs[0]
    em.alloc(out)
    with em.loops(out.type.shape) as idx:
        src = [f"{start} + {step} * {i}" for i, (start, _, step) in zip(idx, node.attrs["slices"])]
        em.store(out, idx, f"{em.name(x)}[{', '.join(src)}]")


register("slice", "index", _infer_slice, _slice_ref, emit=_emit_slice,
         vjp=(lambda g, x, out, slices: bind("scatter_slice", g, shape=tuple(x.shape), slices=slices),))


def _infer_scatter_slice(types, shape, slices):
    (g,) = types
    if len(slices) != len(shape):
        raise ShapeError(f"{len(slices)} slices for shape {tuple(shape)}")
    target = TensorType(tuple(shape), g.dtype)
    expect = tuple(_slice_length(s, n, target) for s, n in zip(slices, shape))
    if g.shape != expect:
        raise ShapeError(f"update {g} does not fit slices {slices} of shape {shape}")
    return target


def _scatter_slice_ref(g, shape, slices):
    out = np.zeros(shape, g.dtype)
    out[_py_slices(slices)] = g
    return out


def _emit_scatter_slice(em, node):
    (g,), out = node.inputs, node.outputs[0]
    em.alloc(out, fill="0")
    with em.loops(g.type.shape) as idx:
        dst = [f"{start} + {step} * {i}" for i, (start, _, step) in zip(idx, node.attrs["slices"])]
        em.store(out, dst, em.load(g, idx, g.type.shape))


register("scatter_slice", "index", _infer_scatter_slice, _scatter_slice_ref, emit=_emit_scatter_slice,
         vjp=(lambda g, x, out, shape, slices: bind("slice", g, slices=slices),))


def slice_axis(x, axis, start, stop):
    """``x[..., start:stop, ...]`` along one axis."""
    t = type_of(x)
    slices = tuple((start, stop, 1) if d == axis else (0, n, 1) for d, n in enumerate(t.shape))
    return bind("slice", x, slices=slices)


# -- index: static integers on the leading axes (a scalar load or a view, no copy) ------------
def _infer_index(types, indices):
    (t,) = types
    if len(indices) > t.ndim:
        raise ShapeError(f"{len(indices)} indices for {t}")
    for d, i in enumerate(indices):
        if isinstance(t.shape[d], str):  # a symbolic dim (a batch: at least 1): only 0 fits every size
            if i != 0:
                raise ShapeError(f"index {i} of the symbolic dimension {t.shape[d]} of {t} fits only some "
                                 f"of its sizes")
        elif not 0 <= i < t.shape[d]:
            raise ShapeError(f"index {i} is out of bounds for axis {d} of {t}")
    return TensorType(t.shape[len(indices):], t.dtype)


def _emit_index(em, node):
    (x,), out = node.inputs, node.outputs[0]
    idx = ", ".join(map(str, node.attrs["indices"]))
    em.line(f"{em.define(out)} = {em.name(x)}[{idx}]")  # leading ints of a C array: a C view


def _index_vjp(g, x, out, indices):
    k = len(indices)
    slices = tuple((i, i + 1, 1) for i in indices) + tuple((0, n, 1) for n in x.shape[k:])
    return bind("scatter_slice", prims.reshape(g, (1,) * k + tuple(x.shape[k:])),
                shape=tuple(x.shape), slices=slices)


register("index", "index", _infer_index, lambda x, indices: x[tuple(indices)].copy(),
         vjp=(_index_vjp,), emit=_emit_index, view=True)


# -- gather and scatter_add ---------------------------------------------------------------
def _gather_dims(x, idx_types, axis):
    k = len(idx_types)
    if axis < 0:  # (the tracer passes it normalized; a graph read from a file may not)
        raise ShapeError(f"gather/scatter_add axis must be >= 0, got {axis}")
    if axis + k > x.ndim:
        raise ShapeError(f"{k} index arrays from axis {axis} is too many for {x}")
    for t in idx_types:
        if not t.dtype.startswith("int"):
            raise ShapeError(f"index arrays must be integers, got {t}")
    try:
        batch = broadcast_shapes(*[t.shape for t in idx_types])
    except ValueError:
        raise ShapeError("index arrays " + ", ".join(map(str, idx_types))
                         + " cannot be broadcast together") from None
    return x.shape[:axis], batch, x.shape[axis + k:]


def _infer_gather(types, axis):
    x, *idx = types
    pre, batch, post = _gather_dims(x, idx, axis)
    return TensorType(pre + batch + post, x.dtype)


def _gather_ref(x, *idx, axis):
    return x[(slice(None),) * axis + idx]


def _emit_wrapped_indices(em, node, idx_values, batch_idx, batch_shape, sizes):
    """Load each index, wrap negatives, raise IndexError when out of range (as NumPy)."""
    names = []
    for v, n in zip(idx_values, sizes):
        j = em.tmp("j")
        em.line(f"{j} = {em.load(v, batch_idx, batch_shape)}")
        em.line(f"if {j} < 0:")
        em.line(f"    {j} += {n}")
        em.line(f"if {j} < 0 or {j} >= {n}:")
        em.line(f"    raise IndexError('graphc {node.op}: index out of bounds for an axis of size {n}')")
        names.append(j)
    return names


def _emit_gather(em, node):
    (x, *idx), out, axis = node.inputs, node.outputs[0], node.attrs["axis"]
    pre, batch, post = _gather_dims(x.type, [v.type for v in idx], axis)
    em.alloc(out)
    with em.loops(out.type.shape) as loop:
        p, b, q = loop[:len(pre)], loop[len(pre):len(pre) + len(batch)], loop[len(pre) + len(batch):]
        j = _emit_wrapped_indices(em, node, idx, b, batch, x.type.shape[axis:axis + len(idx)])
        em.store(out, loop, f"{em.name(x)}[{', '.join(p + j + q)}]")


def _gather_vjp(g, x, *idx, out, axis):
    return [bind("scatter_add", g, *idx, shape=tuple(x.shape), axis=axis)] + [None] * len(idx)


register("gather", "index", _infer_gather, _gather_ref, vjp=_gather_vjp, emit=_emit_gather, raises=True)


def _infer_scatter_add(types, shape, axis):
    g, *idx = types
    target = TensorType(tuple(shape), g.dtype)
    expect = _infer_gather([target] + idx, axis)
    if g.shape != expect.shape:
        raise ShapeError(f"updates {g} do not match {expect} gathered from {target}")
    return target


def _scatter_add_ref(g, *idx, shape, axis):
    out = np.zeros(shape, g.dtype)
    np.add.at(out, (slice(None),) * axis + idx, g)
    return out


def _emit_scatter_add(em, node):
    (g, *idx), out, axis = node.inputs, node.outputs[0], node.attrs["axis"]
    pre, batch, post = _gather_dims(out.type, [v.type for v in idx], axis)
    name = em.alloc(out, fill="0")
    with em.loops(g.type.shape) as loop:
        p, b, q = loop[:len(pre)], loop[len(pre):len(pre) + len(batch)], loop[len(pre) + len(batch):]
        j = _emit_wrapped_indices(em, node, idx, b, batch, out.type.shape[axis:axis + len(idx)])
        em.line(f"{name}[{', '.join(p + j + q)}] += {em.name(g)}[{', '.join(loop)}]")


def _scatter_add_vjp(g, upd, *idx, out, shape, axis):
    return [bind("gather", g, *idx, axis=axis)] + [None] * len(idx)


register("scatter_add", "index", _infer_scatter_add, _scatter_add_ref, vjp=_scatter_add_vjp,
         emit=_emit_scatter_add, raises=True)


def _index_array(k, size, where):
    """An integer index array or tracer; constant ones are bounds-checked now."""
    if isinstance(k, Tracer):
        known = capture.concrete(k) if k.dtype.kind == "b" else None  # a global mask: its value is known
        if k.dtype.kind == "b" and known is None:
            raise TraceError(f"boolean mask indexing has a data-dependent shape and cannot be traced "
                             f"(at {user_line()}); use gc.where(mask, x, 0) instead")
        if k.dtype.kind not in "iub":
            raise IndexError(f"arrays used as indices must be of integer type, got {k.dtype} ({where})")
        if known is None:
            return k
        k = known
    arr = np.asarray(k)
    if arr.dtype.kind == "b" and arr.ndim == 1:  # a known 1-d mask picks known positions
        if arr.size != size:
            raise IndexError(f"boolean index did not match indexed array along axis; size of axis is "
                             f"{size} but size of corresponding boolean axis is {arr.size} ({where})")
        return np.flatnonzero(arr)
    if arr.dtype.kind == "b":
        raise TraceError(f"boolean mask indexing with a {arr.ndim}-d mask is not supported on traced arrays "
                         f"(at {user_line()}); use gc.where(mask, x, 0) instead")
    if arr.dtype.kind not in "iu":
        raise IndexError(f"arrays used as indices must be of integer type, got {arr.dtype} ({where})")
    if arr.size and (arr.min() < -size or arr.max() >= size):
        bad = arr[(arr < -size) | (arr >= size)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for axis with size {size} (at {user_line()})")
    return arr.astype(np.int64)


def gather(x, *indices, axis=0):
    """``x[:, ..., i1, ..., ik]`` from ``axis`` on, the index arrays broadcast together."""
    return mark_weak(bind("gather", x, *indices, axis=axis), x)


def getitem(x, key):
    """NumPy indexing of a traced array: ints, slices, None, ..., and integer arrays."""
    t = type_of(x)
    key = key if isinstance(key, tuple) else (key,)
    items = []
    for k in key:
        if k is None or k is Ellipsis or isinstance(k, slice):
            items.append(k)
        elif isinstance(k, (bool, np.bool_)):
            raise TraceError(f"indexing with a Python bool is not supported (at {user_line()})")
        elif isinstance(k, (int, np.integer)):
            items.append(int(k))
        elif isinstance(k, (Tracer, np.ndarray, list)):
            items.append(k if isinstance(k, Tracer) else np.asarray(k))
        else:
            raise IndexError(f"graphc cannot index with {type(k).__name__} {k!r} (at {user_line()})")
    if sum(k is Ellipsis for k in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(k is not None and k is not Ellipsis for k in items)
    if consumed > t.ndim:
        raise IndexError(f"too many indices for array: array is {t.ndim}-dimensional, but {consumed} "
                         f"were indexed (at {user_line()})")
    fill = [slice(None)] * (t.ndim - consumed)
    if Ellipsis in [k for k in items if not isinstance(k, (np.ndarray, Tracer))]:
        pos = next(i for i, k in enumerate(items) if k is Ellipsis)
        items = items[:pos] + fill + items[pos + 1:]
    else:
        items = items + fill
    has_array = any(isinstance(k, (np.ndarray, Tracer)) for k in items)

    # 0. only integers on the leading axes (x[1], x[0, 2], x[3, :]): a scalar load or a view
    lead = 0
    while lead < len(items) and isinstance(items[lead], int):
        lead += 1
    if not has_array and lead and all(k == slice(None) for k in items[lead:]):
        for d, k in enumerate(items[:lead]):
            if not -t.shape[d] <= k < t.shape[d]:
                raise IndexError(f"index {k} is out of bounds for axis {d} with size {t.shape[d]} "
                                 f"(at {user_line()})")
        indices = tuple(k % t.shape[d] for d, k in enumerate(items[:lead]))
        return mark_weak(bind("index", x, indices=indices), x)

    # 1. basic slicing of every consumed dimension
    slices, dim = [], 0
    for k in items:
        if k is None:
            continue
        n = t.shape[dim]
        if isinstance(k, slice):
            slices.append(slice_bounds(k, n))
        elif isinstance(k, int) and not has_array:
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {dim} with size {n} "
                                 f"(at {user_line()})")
            slices.append((k % n, k % n + 1, 1))
        else:
            slices.append((0, n, 1))
        dim += 1
    y = x
    if any(s != (0, n, 1) for s, n in zip(slices, t.shape)):
        y = mark_weak(bind("slice", x, slices=tuple(slices)), x)
    sliced = type_of(y).shape

    # 2a. no arrays: ints drop their dimension, None adds one
    if not has_array:
        shape, dim = [], 0
        for k in items:
            if k is None:
                shape.append(1)
                continue
            if not isinstance(k, int):
                shape.append(sliced[dim])
            dim += 1
        return prims.reshape(y, shape)

    # 2b. integer arrays (and ints among them): None adds a size-1 dimension, then one gather.
    # Adjacent advanced indices put their broadcast dimensions where they stand; separated by a
    # slice or None, NumPy puts them first: a transpose brings those axes to the front.
    if any(k is None for k in items):
        shape, dim = [], 0
        for k in items:
            shape.append(1 if k is None else sliced[dim])
            dim += k is not None
        y, sliced = prims.reshape(y, shape), tuple(shape)
        items = [slice(None) if k is None else k for k in items]
    adv = [d for d, k in enumerate(items) if not isinstance(k, slice)]
    arrays = [_index_array(items[d], sliced[d], f"axis {d}") for d in adv]
    if adv != list(range(adv[0], adv[-1] + 1)):
        y = prims.transpose(y, adv + [d for d in range(len(items)) if d not in adv])
        return gather(y, *arrays, axis=0)
    return gather(y, *arrays, axis=adv[0])


@implements(np.take)
def take(a, indices, axis=None, out=None, mode=None):
    """``np.take``: elements of ``a`` at integer ``indices`` along ``axis`` (flattened if None)."""
    if out is not None or mode not in (None, "raise"):
        raise TraceError(f"np.take(out=..., mode=...) is not supported (at {user_line()})")
    if axis is None:
        a, axis = prims.ravel(a), 0
    t = type_of(a)
    axis %= t.ndim
    return gather(a, _index_array(indices, t.shape[axis], f"axis {axis}"), axis=axis)


@implements(np.take_along_axis)
def take_along_axis(arr, indices, axis):
    """``np.take_along_axis``: ``arr`` read at ``indices`` along ``axis``, other axes kept."""
    t = type_of(arr)
    if type_of(indices).ndim != t.ndim:
        raise ShapeError(f"take_along_axis: indices {type_of(indices)} must have as many dimensions "
                         f"as {t}\n  at {user_line()}")
    axis %= t.ndim
    idx = [_index_array(indices, t.shape[axis], f"axis {axis}") if d == axis else
           prims.iota(tuple(n if e == d else 1 for e in range(t.ndim)), axis=d)
           for d, n in enumerate(t.shape)]
    return gather(arr, *idx, axis=0)


def one_hot(x, num_classes, dtype="float32"):
    """``[..., num_classes]`` array with 1 at each label of ``x`` (as ``jax.nn.one_hot``)."""
    ndim = type_of(x).ndim
    classes = prims.iota((1,) * ndim + (int(num_classes),), axis=ndim)
    return prims.cast(prims.equal(prims.expand_dims(x, -1), classes), dtype)



@implements(np.select)
def select(condlist, choicelist, default=0):
    """``np.select``: from each position, the choice of the first condition that holds there,
    else ``default`` (a chain of ``where``); dtypes as NumPy (Python scalars are weak)."""
    if len(condlist) != len(choicelist):
        raise numpy_error(ValueError, "list of cases must be same length as list of conditions")
    if len(condlist) == 0:
        raise numpy_error(ValueError, "select with an empty condition list is not possible")
    # NumPy keeps Python int and float as they are (weak) and makes arrays of everything else
    choices = [c if isinstance(c, Tracer) or type(c) in (int, float) else np.asarray(c)
               for c in list(choicelist) + [default]]
    try:
        dtype = result_dtype(*choices)
    except TypeError as exc:
        raise numpy_error(TypeError, f"Choicelist and default value do not have a common dtype: {exc}") from None
    conds = [c if isinstance(c, Tracer) else np.asarray(c) for c in condlist]
    for i, c in enumerate(conds):
        if c.dtype != np.bool_:
            raise numpy_error(TypeError, f"invalid entry {i} in condlist: should be boolean ndarray")
    shape = tuple(np.broadcast_shapes(*[type_of(c).shape for c in conds + choices]))
    result = convert(choices[-1], dtype)
    for cond, choice in zip(conds[::-1], choices[-2::-1]):
        result = prims.where(cond, convert(choice, dtype), result)
    return strong(prims.broadcast_to(result, shape))

# what the other op families call (through graphc.ops.prims)
export(
    gather=gather, getitem=getitem, slice_axis=slice_axis, take=take,
    take_along_axis=take_along_axis,
)
