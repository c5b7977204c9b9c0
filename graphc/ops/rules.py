"""Shape and dtype rule helpers shared by the op families (broadcasting, axes, NumPy's errors).

They sit below every family, so a family's shape rule never imports a sibling.
"""
from __future__ import annotations

import builtins

import numpy as np

from graphc.context import probe_sizes
from graphc.errors import NotGeneric, ShapeError
from graphc.ir import TensorType
from graphc.trace import user_line


def broadcast_types(types) -> tuple:
    """The broadcast shape of operand types (NumPy rules), or a ShapeError naming them."""
    try:
        return broadcast_shapes(*[t.shape for t in types])
    except ValueError as exc:
        raise ShapeError("operands " + " and ".join(str(t) for t in types)
                         + " cannot be broadcast together" + _why(exc)) from None


def _why(exc) -> str:
    return f" ({exc.args[0]})" if isinstance(exc, ShapeError) else ""


def broadcast_shapes(*shapes) -> tuple:
    """``np.broadcast_shapes`` for shapes whose dims may be symbols (``"B"``): a symbol
    broadcasts with itself and with 1; against another symbol or another size it would hold
    only at some sizes, so it raises ShapeError (a ValueError, as NumPy's) instead of guessing."""
    if not any(isinstance(d, str) for shape in shapes for d in shape):
        return tuple(np.broadcast_shapes(*shapes))
    ndim = builtins.max(len(shape) for shape in shapes)
    out = []
    for k in range(-ndim, 0):
        dims = list(dict.fromkeys(shape[k] for shape in shapes if len(shape) >= -k and shape[k] != 1))
        if len(dims) > 1:
            raise ShapeError(f"dimension {ndim + k} is {' and '.join(map(str, dims))}, which broadcast "
                             f"together only at some sizes of the symbolic dimension")
        out.append(dims[0] if dims else 1)
    return tuple(out)


def same_dtype(types):
    if len({t.dtype for t in types}) > 1:
        raise ShapeError("operand dtypes differ: " + ", ".join(str(t) for t in types))
    return types[0].dtype


def infer_same(types, **_):
    return TensorType(broadcast_types(types), same_dtype(types))


def normalize_axes(axis, ndim) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        a = int(a)
        if not -builtins.max(ndim, 1) <= a < builtins.max(ndim, 1):  # a 0-d array takes axis 0 or -1
            raise ShapeError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        out.append(a % builtins.max(ndim, 1) if ndim else 0)
    if len(set(out)) != len(out):
        raise ShapeError(f"duplicate value in axis {axis}")
    return tuple(sorted(out)) if ndim else ()


def reduced_shape(shape, axes, keepdims) -> tuple:
    if keepdims:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def numpy_error(cls, message):
    """The exception NumPy raises for these arguments, with the user's line added."""
    return cls(f"{message} (at {user_line()})")


def slice_bounds(k: slice, n: int) -> tuple:
    """``k.indices(n)``. While a symbolic dimension is probed (``n`` is a probe size), a bound that
    fits only because ``n`` is that large (``x[:1500]`` of a batch probed at 1009, which is all
    of it) raises NotGeneric: at a larger batch the same code slices."""
    if n in probe_sizes():
        for bound in (k.start, k.stop):
            if bound is not None and not -n <= bound <= n:
                raise NotGeneric(f"slice {k.start}:{k.stop}:{k.step} of the symbolic dimension depends "
                                 f"on the batch size (it is the whole axis only while the batch holds "
                                 f"at least {abs(bound)}), at {user_line()}")
    return k.indices(n)
