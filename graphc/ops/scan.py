"""Scans along one axis: cumsum, cumprod (primitives), and diff (slices and subtractions).

``cumsum`` and ``cumprod`` have attrs ``axis`` (non-negative) and ``reverse`` (scan from
the end of the axis: the transpose of a forward cumsum, which its vjp needs). They
accumulate in the output dtype, element after element, as NumPy does (integers and
booleans in int64), so compiled results equal NumPy's bit for bit.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.scalar import CTOR
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import implements, register
from graphc.ops import prims
from graphc.ops.rules import normalize_axes
from graphc.trace import bind, is_tracer, promote, type_of, user_line


def scan_dtype(dtype: str) -> str:
    """NumPy's cumsum/cumprod result dtype: integers and booleans accumulate in int64."""
    return "int64" if dtype in ("bool", "int32", "int64") else dtype


def _infer_scan(types, axis, reverse):
    (t,) = types
    if not 0 <= axis < t.ndim:
        raise ShapeError(f"axis {axis} is out of bounds for {t}")
    return TensorType(t.shape, scan_dtype(t.dtype))


def _scan_reference(numpy_fn):
    def reference(x, axis, reverse):
        dtype = scan_dtype(x.dtype.name)
        if reverse:
            return np.flip(numpy_fn(np.flip(x, axis), axis=axis, dtype=dtype), axis)
        return numpy_fn(x, axis=axis, dtype=dtype)
    return reference


def _emit_scan(symbol):
    def emit(em, node):
        """Rows of the scanned axis in order, each combined with the previous output row: the
        loop over the dims after ``axis`` is innermost and contiguous (it vectorizes)."""
        (x,), out = node.inputs, node.outputs[0]
        axis, reverse = node.attrs["axis"], node.attrs["reverse"]
        shape = x.type.shape
        n = shape[axis]
        ctor = CTOR[out.type.dtype]
        em.alloc(out)
        if 0 in shape:  # (a symbolic dim is never 0: B >= 2 where it compiles for every size)
            return
        with em.loops(shape[:axis]) as pre:
            with em.loops(shape[axis + 1:]) as post:  # the first row: a copy
                first = str(n - 1) if reverse else "0"
                em.store(out, pre + [first] + post, f"{ctor}({em.name(x)}[{', '.join(pre + [first] + post)}])")
            with em.loops([n - 1]) as (j,):
                row, prev = (f"{n - 2} - {j}", f"{n - 1} - {j}") if reverse else (f"{j} + 1", j)
                with em.loops(shape[axis + 1:]) as post:
                    at, before = ", ".join(pre + [row] + post), ", ".join(pre + [prev] + post)
                    em.store(out, pre + [row] + post,
                             f"{em.name(out)}[{before}] {symbol} {ctor}({em.name(x)}[{at}])")
    return emit


def _cumsum_vjp(g, x, out, axis, reverse):
    return bind("cumsum", g, axis=axis, reverse=not reverse)


def _cumprod_vjp(g, x, out, axis, reverse):
    """d/dx_i of sum_j g_j out_j = sum_{j >= i} g_j prod_{m <= j, m != i} x_m, exact with zeros.

    Where x_i != 0 that is revcumsum(g * out)_i / x_i. At a zero it is revcumsum(g * N * W)_i,
    where N is the scan of x with its zeros replaced by 1 and W the scan of the zeros after the
    first one (1 before the second zero, 0 from there on): no division by a zero anywhere, and
    the second derivatives are exact where a scanned row holds at most one zero.
    """
    scan = dict(axis=axis, reverse=reverse)
    back = dict(axis=axis, reverse=not reverse)
    zero = prims.equal(x, 0)
    first = prims.logical_and(zero, prims.equal(bind("cumsum", zero, **scan), 1))
    at_nonzero = bind("cumsum", g * out, **back) / prims.where(zero, 1, x)
    nonzero_scan = bind("cumprod", prims.where(zero, 1, x), **scan)
    later_zeros = bind("cumprod", prims.where(prims.logical_and(zero, prims.logical_not(first)), x, 1), **scan)
    at_zero = bind("cumsum", g * nonzero_scan * later_zeros, **back)
    return prims.where(zero, at_zero, at_nonzero)


register("cumsum", "scan", _infer_scan, _scan_reference(np.cumsum), vjp=(_cumsum_vjp,), emit=_emit_scan("+"))
register("cumprod", "scan", _infer_scan, _scan_reference(np.cumprod), vjp=(_cumprod_vjp,), emit=_emit_scan("*"))


# -- public functions ------------------------------------------------------------------
def _scan(name, a, axis, dtype, out):
    if out is not None:
        raise TraceError(f"np.{name}(..., out=...) is not supported by graphc (at {user_line()})")
    if dtype is not None and scan_dtype(np.dtype(dtype).name) != np.dtype(dtype).name:
        raise TraceError(f"np.{name}(..., dtype={np.dtype(dtype).name}) accumulates in {np.dtype(dtype).name} "
                         f"in NumPy; graphc accumulates integers and booleans in int64 only (at {user_line()}); "
                         f"leave dtype out and cast the result")
    (a,) = promote(a) if dtype is None else promote(a, dtype=np.dtype(dtype).name)
    if axis is None:  # over the flattened array, as NumPy
        a, axis = prims.ravel(a), 0
    ndim = type_of(a).ndim
    if ndim == 0:
        raise ShapeError(f"np.{name}: axis {axis} is out of bounds for a 0-d array (at {user_line()})")
    (axis,) = normalize_axes(axis, ndim)
    return bind(name, a, axis=axis, reverse=False)


@implements(np.cumsum)
def cumsum(a, axis=None, dtype=None, out=None):
    """``np.cumsum``: running sums along ``axis`` (the flattened array if None); integers
    and booleans accumulate in int64."""
    return _scan("cumsum", a, axis, dtype, out)


@implements(np.cumprod)
def cumprod(a, axis=None, dtype=None, out=None):
    """``np.cumprod``: running products along ``axis`` (the flattened array if None); its
    gradient is exact where the input holds zeros."""
    return _scan("cumprod", a, axis, dtype, out)


@implements(np.diff)
def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    """``np.diff``: the ``n``-th differences along ``axis`` (``!=`` for booleans, as NumPy);
    ``prepend``/``append`` values are broadcast along the other axes."""
    if int(n) != n:
        raise TypeError(f"np.diff: n must be an integer, got {n!r}")
    n = int(n)
    if n < 0:
        raise ValueError(f"order must be non-negative but got {n!r}")
    if n == 0:
        return a
    (a,) = promote(a)
    t = type_of(a)
    if t.ndim == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    (axis,) = normalize_axes(axis, t.ndim)
    parts = []
    for extra in (prepend, append):
        if extra is np._NoValue:
            parts.append(None)
            continue
        extra = extra if is_tracer(extra) else np.asarray(extra)  # as NumPy: an array, never weak
        parts.append(extra if type_of(extra).ndim else prims.broadcast_to(
            extra, tuple(1 if d == axis else m for d, m in enumerate(t.shape))))
    if parts[0] is not None or parts[1] is not None:
        pieces = [p for p in (parts[0], a, parts[1]) if p is not None]
        a = prims.concatenate(promote(*pieces), axis=axis)
        t = type_of(a)
    step = prims.not_equal if t.dtype == "bool" else prims.subtract
    for _ in range(n):
        length = type_of(a).shape[axis]
        if length == 0:
            break
        a = step(prims.slice_axis(a, axis, 1, length), prims.slice_axis(a, axis, 0, length - 1))
    return a

