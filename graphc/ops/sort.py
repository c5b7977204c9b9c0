"""Sorting along one axis: ``sort`` and ``argsort`` (primitives), ``np.partition``.

Both primitives have the attr ``axis`` (non-negative). NaN sorts last, as in NumPy.
``argsort`` is stable (ties keep their order: NumPy's ``kind="stable"``); NumPy's default
kind leaves the order of ties unspecified, so a stable order is one of its valid results.
The lowering copies each line along ``axis`` into a scratch vector and sorts it there with
a stable merge sort that the generated module defines once per dtype (``_line_kernel``):
Numba's own sorts cost seconds of compile time per dtype and kind, this a fraction of it.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import implements, register
from graphc.ops import prims
from graphc.ops.rules import normalize_axes
from graphc.trace import bind, promote, type_of, user_line


def _infer_sort(dtype_of):
    def infer(types, axis):
        (t,) = types
        if not 0 <= axis < t.ndim:
            raise ShapeError(f"axis {axis} is out of bounds for {t}")
        return TensorType(t.shape, dtype_of(t.dtype))
    return infer


def _less(a, b, dtype):
    """Source of ``a`` sorts before ``b``: NaN last, as NumPy."""
    return f"{a} < {b} or ({b} != {b} and {a} == {a})" if dtype.startswith("float") else f"{a} < {b}"


RUN = 16  # the merge sort starts from runs this long, sorted by insertion


def _emit_merge_sort(em, items, spare, n, key, less):
    """A stable bottom-up merge sort of ``items[0:n]`` (``spare``: a scratch array as long),
    comparing ``key(item)``."""
    width, lo, mid, hi, i, k, o = (em.tmp(p) for p in ("w", "lo", "mid", "hi", "i", "k", "o"))
    # runs of RUN items first, by insertion (stable: an item moves left past strictly greater ones)
    v = em.tmp("v")
    with em.block(f"for {lo} in range(0, {n}, {RUN}):"):
        with em.block(f"for {i} in range({lo} + 1, min({lo} + {RUN}, {n})):"):
            em.line(f"{v} = {items}[{i}]")
            em.line(f"{k} = {i} - 1")
            with em.block(f"while {k} >= {lo} and ({less(key(v), key(f'{items}[{k}]'))}):"):
                em.line(f"{items}[{k} + 1] = {items}[{k}]")
                em.line(f"{k} -= 1")
            em.line(f"{items}[{k} + 1] = {v}")
    em.line(f"{width} = {RUN}")
    with em.block(f"while {width} < {n}:"):
        em.line(f"{lo} = 0")
        with em.block(f"while {lo} < {n} - {width}:"):
            em.line(f"{mid} = {lo} + {width}")
            em.line(f"{hi} = min({lo} + 2 * {width}, {n})")
            em.line(f"{i}, {k}, {o} = {lo}, {mid}, {lo}")
            with em.block(f"while {i} < {mid} and {k} < {hi}:"):
                # the right run's item goes first only when strictly less: ties keep their order
                with em.block(f"if {less(key(f'{items}[{k}]'), key(f'{items}[{i}]'))}:"):
                    em.line(f"{spare}[{o}] = {items}[{k}]")
                    em.line(f"{k} += 1")
                with em.block("else:"):
                    em.line(f"{spare}[{o}] = {items}[{i}]")
                    em.line(f"{i} += 1")
                em.line(f"{o} += 1")
            with em.block(f"while {i} < {mid}:"):
                em.line(f"{spare}[{o}] = {items}[{i}]")
                em.line(f"{i} += 1")
                em.line(f"{o} += 1")
            with em.block(f"for {o} in range({lo}, {k}):"):  # the right run's rest is in place
                em.line(f"{items}[{o}] = {spare}[{o}]")
            em.line(f"{lo} += 2 * {width}")
        em.line(f"{width} *= 2")


def _line_kernel(em, dtype: str, arg: bool) -> str:
    """The name of the generated module's function sorting one line of ``dtype`` (values, or
    indices for argsort), written once per graph and shared by every sort node."""
    name = f"{'argsort' if arg else 'sort'}_line_{dtype}"
    if any(f"def {name}(" in text for text in em.kernels):
        return name
    k = type(em)(em.graph)  # a fresh emitter of the backend's kind for the kernel's body
    less = lambda a, b: _less(a, b, dtype)  # noqa: E731
    k.line("n = len(keys)")
    if arg:
        with k.block("for j in range(n):"):
            k.line("items[j] = j")
        _emit_merge_sort(k, "items", "spare", "n", lambda item: f"keys[{item}]", less)
    else:
        _emit_merge_sort(k, "keys", "spare", "n", lambda item: item, less)
    params = "keys, items, spare" if arg else "keys, spare"
    em.kernels.append("\n".join([f"@njit({em.kernel_options})", f"def {name}({params}):"] + k.lines))
    return name


def _emit_sort(arg):
    def emit(em, node):
        (x,), out = node.inputs, node.outputs[0]
        axis, shape, dtype = node.attrs["axis"], x.type.shape, x.type.dtype
        n = shape[axis]
        em.alloc(out)
        if 0 in out.type.shape:  # (a symbolic dim is never 0: B >= 2 where compiled for every size)
            return
        kernel = _line_kernel(em, dtype, arg)
        line, spare = em.tmp("line"), em.tmp("spare")
        em.line(f"{line} = {em.scratch((n,), dtype)}")
        em.line(f"{spare} = {em.scratch((n,), 'int64' if arg else dtype)}")
        if arg:
            perm = em.tmp("perm")
            em.line(f"{perm} = {em.scratch((n,), 'int64')}")
        others = shape[:axis] + shape[axis + 1:]
        with em.loops(others) as idx:
            j = em.tmp("j")
            at = ", ".join(idx[:axis] + [j] + idx[axis:])
            with em.block(f"for {j} in range({n}):"):
                em.line(f"{line}[{j}] = {em.name(x)}[{at}]")
            em.line(f"{kernel}({line}, {perm}, {spare})" if arg else f"{kernel}({line}, {spare})")
            with em.block(f"for {j} in range({n}):"):
                em.line(f"{em.name(out)}[{at}] = {perm if arg else line}[{j}]")
    return emit


def _sort_vjp(g, x, out, axis):
    """The cotangent goes back to where each sorted element came from: g read through the
    inverse of the sorting permutation."""
    inverse = bind("argsort", bind("argsort", x, axis=axis), axis=axis)
    return prims.take_along_axis(g, inverse, axis)


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
    (a,) = promote(a)
    if axis is None:  # the flattened array, as NumPy
        a, axis = prims.ravel(a), 0
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
