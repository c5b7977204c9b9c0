"""Introspection and conversion: ``np.ndim``/``np.shape``/``np.size``, ``np.asarray``,
``np.array`` (also of lists of traced values), ``np.r_``/``np.c_``.

``np.float32(x)`` (and the other scalar types) cast a traced value where user code calls
them directly; everywhere else the name stays NumPy's own type (see ``graphc.capture``).

``np.ndim``, ``np.shape`` and ``np.size`` dispatch to tracers through NumPy's
``__array_function__`` and give static values. ``np.asarray``, ``np.array`` and
``np.r_``/``np.c_`` do not dispatch: traced user code sees
the replacements in ``registry.NUMPY_OVERRIDES`` instead (``graphc.capture``
hands them out when the code reads ``np``), and each falls back to NumPy's own
function when no traced value is involved.
"""
from __future__ import annotations

import numpy as np

from graphc import pytree
from graphc.errors import ShapeError
from graphc.ops import registry
from graphc.ops import prims
from graphc.trace import Tracer, result_dtype, type_of, user_line


def _has_tracer(x) -> bool:
    if isinstance(x, Tracer):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(leaf, Tracer) for leaf in pytree.flatten(x)[0])


# -- static facts -------------------------------------------------------------------
@registry.implements(np.ndim)
def ndim(a):
    """``np.ndim``: the number of dimensions (a static int)."""
    return type_of(a).ndim


@registry.implements(np.shape)
def shape(a):
    """``np.shape``: the shape (a static tuple)."""
    return type_of(a).shape


@registry.implements(np.size)
def size(a, axis=None):
    """``np.size``: the number of elements, or the length of ``axis`` (a static int)."""
    t = type_of(a)
    return t.size if axis is None else t.shape[axis]


# -- building arrays from traced values -------------------------------------------------
def _dtype_of_leaves(x):
    """The dtype NumPy's array constructor gives a nest of scalars and arrays (Python
    numbers count as their default dtype here: np.array([x_f32, 2.0]) is float64)."""
    dtypes = [leaf.dtype if isinstance(leaf, (Tracer, np.ndarray, np.generic)) else np.asarray(leaf).dtype
              for leaf in pytree.flatten(x)[0]]
    return np.result_type(*dtypes)


def _build(x, dtype):
    if isinstance(x, (list, tuple)):
        if not x:
            raise ShapeError(f"np.array: an empty list inside traced values has no shape to stack "
                             f"(at {user_line()})")
        parts = [_build(e, dtype) for e in x]
        shapes = {type_of(p).shape for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"setting an array element with a sequence: the parts have shapes "
                             f"{sorted(shapes)} (inhomogeneous), at {user_line()}")
        return prims.stack(parts)
    return prims.cast(x, dtype) if isinstance(x, Tracer) else np.asarray(x, dtype=dtype)


def asarray(a, dtype=None, order=None, **kwargs):
    """``np.asarray``: a traced value as it is (or cast to ``dtype``); lists of traced values stacked."""
    if not _has_tracer(a):
        return np.asarray(a, dtype=dtype, order=order, **kwargs)
    if isinstance(a, Tracer):
        if a.weak:  # np.asarray(0.5) is a strong float64 array: a Python number's weak typing ends here
            a = Tracer(a.value, a.builder)
        return a if dtype is None else prims.cast(a, dtype)
    return _build(a, np.dtype(dtype) if dtype is not None else _dtype_of_leaves(a))


def array(obj, dtype=None, *, copy=True, order="K", subok=False, ndmin=0, **kwargs):
    """``np.array``: like ``asarray`` on traced values (each result is a new value anyway)."""
    if not _has_tracer(obj):
        return np.array(obj, dtype=dtype, copy=copy, order=order, subok=subok, ndmin=ndmin, **kwargs)
    out = asarray(obj, dtype)
    missing = ndmin - type_of(out).ndim
    out = prims.reshape(out, (1,) * missing + type_of(out).shape) if missing > 0 else out
    return prims.owned_copy(out) if copy is not False and out is obj else out  # a new array, as NumPy's


# -- np.r_ and np.c_ -------------------------------------------------------------------
def _index_piece(item):
    if isinstance(item, slice):  # 1:5, 0:1:5j: NumPy's arange / linspace shorthand
        return np.r_[item]
    return item


class _RowJoin:
    """``np.r_[a, b, 1:3]`` on traced values: 1-d pieces concatenated (NumPy's r_ without string
    directives); ``np.c_[a, b]``: 1-d pieces become columns, 2-d ones are joined along axis 1."""

    def __init__(self, numpy_version, columns):
        self.numpy_version, self.columns = numpy_version, columns

    def __getitem__(self, key):
        items = key if isinstance(key, tuple) else (key,)
        if not any(_has_tracer(i) for i in items):
            return self.numpy_version[key]
        if any(isinstance(i, str) for i in items):
            raise ShapeError(f"np.{'c_' if self.columns else 'r_'} with string directives is not supported on "
                             f"traced values (at {user_line()}); use np.concatenate or np.stack")
        pieces = [_index_piece(i) for i in items]
        dtype = result_dtype(*pieces)  # Python numbers weak, as NumPy's r_ (np.r_[x_f32, 0.5] is float32)
        pieces = [asarray(p, dtype) for p in pieces]
        if not self.columns:
            return prims.concatenate([prims.reshape(p, (1,)) if type_of(p).ndim == 0 else p for p in pieces])
        cols = [prims.reshape(p, (type_of(p).size, 1)) if type_of(p).ndim <= 1 else p for p in pieces]
        return prims.concatenate(cols, axis=-1)

    def __len__(self):
        return 0


registry.NUMPY_OVERRIDES.update({
    np.asarray: asarray, np.asanyarray: asarray, np.ascontiguousarray: asarray, np.array: array,
    np.r_: _RowJoin(np.r_, columns=False), np.c_: _RowJoin(np.c_, columns=True),
})


def _scalar_type_call(scalar_type):
    def convert(value=0, *args, **kwargs):
        if _has_tracer(value):
            return asarray(value, dtype=scalar_type)
        return scalar_type(value, *args, **kwargs)
    convert.__name__ = convert.__qualname__ = scalar_type.__name__
    convert.__doc__ = f"``np.{scalar_type.__name__}(x)``: a traced value cast to {scalar_type.__name__}."
    return convert


for _t in (np.float32, np.float64, np.int32, np.int64, np.bool_):
    registry.NUMPY_CALL_OVERRIDES[_t] = _scalar_type_call(_t)


def take(a, indices, axis=None, out=None, mode=None):
    """``np.take`` with traced indices into a plain array (NumPy dispatches on ``a`` alone)."""
    if isinstance(a, Tracer) or _has_tracer(indices):
        return prims.take(a, indices, axis=axis, out=out, mode=mode)
    return np.take(a, indices, axis=axis, out=out, mode=mode if mode is not None else "raise")


registry.NUMPY_OVERRIDES[np.take] = take

