"""Sorting along one axis: ``sort`` and ``argsort`` (primitives), ``np.partition``.

Both primitives have the attr ``axis`` (non-negative). NaN sorts last, as in NumPy.
``argsort`` is stable (ties keep their order: NumPy's ``kind="stable"``); NumPy's default
kind leaves the order of ties unspecified, so a stable order is one of its valid results.
The lowering copies each line along ``axis`` into a scratch vector and sorts it with
Numba's ``ndarray.sort`` / ``np.argsort(kind="mergesort")``.
"""
from __future__ import annotations

import numpy as np

from graphc.backend.codegen import CTOR
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.reduction import normalize_axes
from graphc.ops.registry import implements, register
from graphc.trace import bind, promote, type_of, user_line


def _infer_sort(dtype_of):
    def infer(types, axis):
        (t,) = types
        if not 0 <= axis < t.ndim:
            raise ShapeError(f"axis {axis} is out of bounds for {t}")
        return TensorType(t.shape, dtype_of(t.dtype))
    return infer


def _emit_sort(arg):
    def emit(em, node):
        (x,), out = node.inputs, node.outputs[0]
        axis, shape = node.attrs["axis"], x.type.shape
        n = shape[axis]
        em.alloc(out)
        if out.type.size == 0:
            return
        line = em.tmp("line")
        em.line(f"{line} = {em.scratch((n,), x.type.dtype)}")
        others = shape[:axis] + shape[axis + 1:]
        with em.loops(others) as idx:
            j = em.tmp("j")
            at = ", ".join(idx[:axis] + [j] + idx[axis:])
            with em.block(f"for {j} in range({n}):"):
                em.line(f"{line}[{j}] = {em.name(x)}[{at}]")
            if arg:
                perm = em.tmp("perm")
                em.line(f"{perm} = np.argsort({line}, kind='mergesort')")
                with em.block(f"for {j} in range({n}):"):
                    em.line(f"{em.name(out)}[{at}] = {CTOR['int64']}({perm}[{j}])")
            else:
                em.line(f"{line}.sort()")
                with em.block(f"for {j} in range({n}):"):
                    em.line(f"{em.name(out)}[{at}] = {line}[{j}]")
    return emit


def _sort_vjp(g, x, out, axis):
    """The cotangent goes back to where each sorted element came from: g read through the
    inverse of the sorting permutation."""
    from graphc.ops.indexing import take_along_axis
    inverse = bind("argsort", bind("argsort", x, axis=axis), axis=axis)
    return take_along_axis(g, inverse, axis)


register("sort", "sort", _infer_sort(lambda d: d), lambda x, axis: np.sort(x, axis=axis, kind="stable"),
         vjp=(_sort_vjp,), emit=_emit_sort(False))
register("argsort", "sort", _infer_sort(lambda d: "int64"), lambda x, axis: np.argsort(x, axis=axis, kind="stable"),
         emit=_emit_sort(True), differentiable=False)


# -- public functions ------------------------------------------------------------------
_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")


def _sorted_axis(name, a, axis, kind, order):
    if order is not None:
        raise TraceError(f"np.{name}(..., order=...) needs a structured array; graphc has none (at {user_line()})")
    if kind not in _KINDS:
        raise ValueError(f"np.{name}: sort kind must be one of {_KINDS[1:]}, got {kind!r}")
    from graphc.ops.shape import ravel
    (a,) = promote(a)
    if axis is None:  # the flattened array, as NumPy
        a, axis = ravel(a), 0
    ndim = type_of(a).ndim
    if ndim == 0:
        raise ShapeError(f"np.{name}: axis {axis} is out of bounds for a 0-d array (at {user_line()})")
    (axis,) = normalize_axes(axis, ndim)
    return a, axis


@implements(np.sort)
def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """``np.sort`` along ``axis`` (the flattened array if None); NaN last. Differentiable: the
    gradient is scattered back through the sorting permutation."""
    a, axis = _sorted_axis("sort", a, axis, kind, order)
    return bind("sort", a, axis=axis)


@implements(np.argsort)
def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """``np.argsort`` along ``axis`` (the flattened array if None): a stable order, so ties keep
    their positions (NumPy's ``kind="stable"``, a valid result of every kind)."""
    a, axis = _sorted_axis("argsort", a, axis, kind, order)
    return bind("argsort", a, axis=axis)


def _check_kth(name, a, kth, axis):
    t = type_of(a)
    if axis is not None and t.ndim == 0:
        raise ShapeError(f"np.{name}: axis {axis} is out of bounds for a 0-d array (at {user_line()})")
    n = t.size if axis is None else t.shape[normalize_axes(axis, t.ndim)[0]]
    kth = np.atleast_1d(np.asarray(kth))
    if kth.dtype.kind not in "iu":
        raise TypeError("Partition index must be integer")
    for k in kth.ravel():
        if not -n <= int(k) < n:
            raise ValueError(f"kth(={int(k)}) out of bounds ({n})")


@implements(np.partition)
def partition(a, kth, axis=-1, kind="introselect", order=None):
    """``np.partition``, computed as a full sort along ``axis``: a sorted line is a valid
    partition for every ``kth`` (NumPy leaves the order within each part unspecified)."""
    _check_kth("partition", a, kth, axis)
    return sort(a, axis=axis, order=order)


@implements(np.argpartition)
def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """``np.argpartition``, computed as a stable argsort along ``axis`` (a valid result)."""
    _check_kth("argpartition", a, kth, axis)
    return argsort(a, axis=axis, order=order)
