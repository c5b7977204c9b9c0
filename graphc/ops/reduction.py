"""Reductions over any set of axes: sum, mean, prod, max, min, argmax, argmin; and the
NumPy functions composed of them: var, std, average, all, any, isclose, allclose, linalg.norm.

Every reduction primitive has attrs ``axes`` (sorted, non-negative) and
``keepdims``, and declares what it computes as data (``registry.Reduction``: how an element
folds in, the accumulator's dtype and start, the finalization); fusion and the backends'
schedules (graphc/backend/schedule.py on the CPU) read that. float32 sums accumulate in
float64, so they stay at NumPy's accuracy.
"""
from __future__ import annotations

import builtins

import numpy as np

from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.rules import normalize_axes, reduced_shape
from graphc.ops.registry import REDUCTION, Reduction, export, implements, register
from graphc.ops import prims
from graphc.ops.scalar import CTOR, literal
from graphc.trace import bind, convert, is_tracer, promote, result_dtype, type_of, user_line


def _accumulate_dtype(dtype):
    return "int64" if dtype in ("bool", "int32", "int64") else dtype


def _infer(out_dtype, needs_elements=False):
    def infer(types, axes, keepdims):
        (t,) = types
        for a in axes:
            if not 0 <= a < builtins.max(t.ndim, 1):
                raise ShapeError(f"axis {a} is out of bounds for {t}")
        if needs_elements and builtins.any(t.shape[a] == 0 for a in axes if t.ndim):
            raise ShapeError(f"zero-size array {t} to a reduction over axes {axes} that has no identity")
        return TensorType(reduced_shape(t.shape, axes, keepdims), out_dtype(t.dtype))
    return infer


def accumulator_dtype(combine: str, dtype: str, finalize: str = "none") -> str:
    """What a reduction folding elements of ``dtype`` by ``combine`` accumulates in.

    Integer sums and products use int64 (as NumPy); means and float sums use float64
    (NumPy's mean of integers accumulates in float64, so it cannot overflow), so float32
    sums keep NumPy's (pairwise) accuracy at any length; max/min keep the dtype.
    """
    if finalize == "mean":
        return "float64"
    if combine in ("add", "mul"):
        return "int64" if dtype in ("bool", "int32", "int64") else "float64"
    return dtype


def initial_value(combine: str, dtype: str):
    """The accumulator's start: 0, 1, or the lowest/highest value of ``dtype`` for max/min."""
    if combine == "add":
        return 0
    if combine == "mul":
        return 1
    high = combine in ("min", "argmin")  # min starts from the highest value, max from the lowest
    if dtype == "bool":
        return high
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        return info.max if high else info.min
    return np.inf if high else -np.inf


# -- vjp helpers --------------------------------------------------------------------
def _expand_back(g, x, axes, keepdims):
    """Broadcast a reduced cotangent back over the input's shape."""
    return prims.broadcast_to(prims.reshape(g, reduced_shape(x.shape, axes, True)), x.shape)


def _infer_count(types, axes, dtype, offset, minimum):
    (t,) = types
    for a in axes:
        if not 0 <= a < t.ndim:
            raise ShapeError(f"axis {a} is out of bounds for {t}")
    return TensorType((), dtype)


def _count_reference(x, axes, dtype, offset, minimum):
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return np.array(builtins.max(n + offset, minimum), dtype=dtype)


def _emit_count(em, node):
    x, out = node.inputs[0], node.outputs[0]
    dims = [x.type.shape[a] for a in node.attrs["axes"]]
    known = int(np.prod([n for n in dims if not isinstance(n, str)], dtype=np.int64))
    offset, minimum = node.attrs["offset"], node.attrs["minimum"]
    if builtins.any(isinstance(n, str) for n in dims):  # a symbolic dim: counted when the code runs
        product = " * ".join([str(n) for n in dims if isinstance(n, str)] + ([str(known)] if known != 1 else []))
        em.line(f"{em.define(out)} = {CTOR[out.type.dtype]}(max({product} + {offset!r}, {minimum!r}))")
        return
    value = np.array(builtins.max(known + offset, minimum), dtype=out.type.dtype)  # (as _count_reference)
    em.line(f"{em.define(out)} = {literal(value[()], out.type.dtype)}")


# ``max(prod(x.shape[axes]) + offset, minimum)`` as a node, not a Python number: the divisor
# of a mean's gradient and of np.var stays right when the batch size is symbolic
register("count", "shape", _infer_count, _count_reference, emit=_emit_count, differentiable=False,
         shape_only=True)


def element_count(x, axes, dtype, offset=0, minimum=0):
    """The number of elements of ``x`` over ``axes`` (plus ``offset``, at least ``minimum``)."""
    return bind("count", x, axes=tuple(axes), dtype=dtype, offset=offset, minimum=minimum)


def _sum_vjp(g, x, out, axes, keepdims):
    return _expand_back(g, x, axes, keepdims)


def _mean_vjp(g, x, out, axes, keepdims):
    return _expand_back(g, x, axes, keepdims) / element_count(x, axes, type_of(g).dtype, minimum=1)


def _extreme_vjp(g, x, out, axes, keepdims):
    # the gradient goes to the maxima, split evenly among ties (PyTorch's convention)
    hit = prims.cast(prims.equal(x, _expand_back(out, x, axes, keepdims)), x.dtype)
    ties = bind("sum", hit, axes=axes, keepdims=True)
    return hit * _expand_back(g, x, axes, keepdims) / ties


def _prod_vjp(g, x, out, axes, keepdims):
    # d prod / d x_i = product of the others, exact with zeros in the input. Written as
    # prod(others nonzero) * prod(others zero) with no division by a zero, so that
    # second derivatives are finite and exact where a slice holds at most one zero
    zero = prims.equal(x, 0)
    nonzero = prims.where(zero, 1, x)
    nonzero_prod = bind("prod", nonzero, axes=axes, keepdims=True)
    zero_prod = bind("prod", prims.where(zero, x, 1), axes=axes, keepdims=True)  # 1, or 0 with its slope
    zeros = bind("sum", zero, axes=axes, keepdims=True)
    others = nonzero_prod / nonzero * prims.where(zero, prims.where(zeros == 1, 1, 0), zero_prod)
    return _expand_back(g, x, axes, keepdims) * others


def _ref(fn):
    def reference(x, axes, keepdims):
        return fn(x, axis=axes, keepdims=keepdims)
    return reference


def _reduction(combine, finalize="none", fusable=True):
    return Reduction(combine, accumulator=lambda dtype: accumulator_dtype(combine, dtype, finalize),
                     initial=lambda dtype: initial_value(combine, dtype), finalize=finalize, fusable=fusable)


register("sum", REDUCTION, _infer(_accumulate_dtype), _ref(lambda x, **k: np.sum(x, dtype=_accumulate_dtype(x.dtype.name), **k)),
         vjp=(_sum_vjp,), reduction=_reduction("add"))
register("prod", REDUCTION, _infer(_accumulate_dtype), _ref(lambda x, **k: np.prod(x, dtype=_accumulate_dtype(x.dtype.name), **k)),
         vjp=(_prod_vjp,), reduction=_reduction("mul"))
register("mean", REDUCTION, _infer(lambda d: d if d.startswith("float") else "float64"),
         _ref(lambda x, **k: np.mean(x, dtype=np.float64 if x.dtype.kind in "biu" else None, **k)),
         vjp=(_mean_vjp,), reduction=_reduction("add", finalize="mean"))
register("max", REDUCTION, _infer(lambda d: d, needs_elements=True), _ref(np.max),
         vjp=(_extreme_vjp,), reduction=_reduction("max"))
register("min", REDUCTION, _infer(lambda d: d, needs_elements=True), _ref(np.min),
         vjp=(_extreme_vjp,), reduction=_reduction("min"))


def _infer_arg(types, axes, keepdims):
    if len(axes) != 1:
        raise ShapeError(f"argmax/argmin reduce exactly one axis, got {axes}")
    return _infer(lambda d: "int64", needs_elements=True)(types, axes, keepdims)


register("argmax", REDUCTION, _infer_arg, lambda x, axes, keepdims: np.argmax(x, axis=axes[0], keepdims=keepdims),
         reduction=_reduction("argmax", fusable=False), differentiable=False)
register("argmin", REDUCTION, _infer_arg, lambda x, axes, keepdims: np.argmin(x, axis=axes[0], keepdims=keepdims),
         reduction=_reduction("argmin", fusable=False), differentiable=False)


# -- public functions ------------------------------------------------------------------
def _check_unsupported(name, **kwargs):
    for k, v in kwargs.items():
        if v is not None and v is not np._NoValue:
            raise TraceError(f"np.{name}(..., {k}=...) is not supported by graphc (at {user_line()})")


def _reduce(name, a, axis, keepdims, dtype=None):
    (a,) = promote(a) if dtype is None else promote(a, dtype=np.dtype(dtype).name)
    axes = normalize_axes(axis, type_of(a).ndim)
    out = bind(name, a, axes=axes, keepdims=bool(keepdims))
    # NumPy returns the dtype asked for: int32 sums wrap in int32 (as the int64 sum cast down),
    # an integer mean is the float mean truncated
    return out if dtype is None else convert(out, np.dtype(dtype).name)


def _reduction_function(name, numpy_fns):
    def fn(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
        _check_unsupported(name, out=out, initial=initial, where=where)
        return _reduce(name, a, axis, keepdims, dtype)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``np.{name}`` over ``axis`` (None, an int or a tuple), with ``keepdims``."
    return implements(*numpy_fns)(fn)


sum = _reduction_function("sum", [np.sum])
prod = _reduction_function("prod", [np.prod])


@implements(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    """``np.mean`` over ``axis``; integer inputs give float64."""
    _check_unsupported("mean", out=out, where=where)
    return _reduce("mean", a, axis, keepdims, dtype)


def _extreme_function(name, numpy_fns):
    def fn(a, axis=None, out=None, keepdims=False, initial=None, where=None):
        _check_unsupported(name, out=out, initial=initial, where=where)
        return _reduce(name, a, axis, keepdims)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``np.{name}`` over ``axis``; NaN propagates as in NumPy."
    return implements(*numpy_fns)(fn)


max = _extreme_function("max", [np.max, np.amax])
min = _extreme_function("min", [np.min, np.amin])


def _arg_function(name, numpy_fn):
    def fn(a, axis=None, out=None, *, keepdims=False):
        _check_unsupported(name, out=out)
        (a,) = promote(a)
        ndim = type_of(a).ndim
        if axis is None or ndim == 0:  # over the flattened array (a 0-d array has one element)
            normalize_axes(axis, ndim)  # still an error for a bad axis
            index = bind(name, prims.reshape(a, (-1,)), axes=(0,), keepdims=False)
            return prims.reshape(index, (1,) * ndim) if keepdims else index
        axes = normalize_axes(axis, ndim)
        return bind(name, a, axes=axes, keepdims=bool(keepdims))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``np.{name}``: index of the first extreme along ``axis`` (flattened if None)."
    return implements(numpy_fn)(fn)


argmax = _arg_function("argmax", np.argmax)
argmin = _arg_function("argmin", np.argmin)


# -- compositions: variance, averages, truth tests, closeness, norms ------------------------
def _float_dtype_of(dtype: str) -> str:
    """What NumPy's mean, var and average compute integers and booleans in."""
    return dtype if dtype.startswith("float") else "float64"


@implements(np.var)
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    """``np.var``: mean squared deviation over ``axis``, divided by ``n - ddof`` (inf or NaN
    where that is <= 0, as NumPy with its warning); integers give float64."""
    _check_unsupported("var", out=out, where=where, mean=mean)
    if correction is not None:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TraceError(f"np.var/np.std with an integer or boolean dtype= (NumPy truncates the result or "
                         f"raises) is not supported by graphc (at {user_line()}); use a float dtype")
    (a,) = promote(a)
    x = convert(a, np.dtype(dtype).name if dtype is not None else _float_dtype_of(type_of(a).dtype))
    axes = normalize_axes(axis, type_of(x).ndim)
    deviation = x - bind("mean", x, axes=axes, keepdims=True)
    total = bind("sum", deviation * deviation, axes=axes, keepdims=bool(keepdims))
    return total / element_count(x, axes, type_of(total).dtype, offset=-ddof, minimum=0)


@implements(np.std)
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    """``np.std``: the square root of ``np.var`` (same arguments)."""
    return prims.sqrt(var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean, correction=correction))


@implements(np.average)
def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """``np.average``: the mean, or ``sum(a * w) / sum(w)`` over ``axis`` with ``weights`` of
    ``a``'s shape or of the shape of ``a`` along ``axis``; ``returned`` adds the weights' sum.

    Weights that sum to zero raise ZeroDivisionError when they are concrete; traced weights
    cannot be checked while tracing and give inf or NaN there.
    """
    (a,) = promote(a)
    t = type_of(a)
    if weights is None:
        avg = mean(a, axis, keepdims=keepdims)
        if type_of(avg).size == 0:  # NumPy's a.size / avg.size
            raise ZeroDivisionError("division by zero")
        scale = np.asarray(t.size / type_of(avg).size, type_of(avg).dtype)
    else:
        w = weights if is_tracer(weights) else np.asarray(weights)  # an array: never weakly typed
        wt = type_of(w)
        dtype = np.result_type(t.dtype, wt.dtype, *(["f8"] if t.dtype in ("bool", "int32", "int64") else [])).name
        if wt.shape != t.shape:
            if axis is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            given = tuple(int(ax) % builtins.max(t.ndim, 1) for ax in (axis if isinstance(axis, (tuple, list)) else (axis,)))
            normalize_axes(given, t.ndim)  # range and duplicates
            if wt.shape != tuple(t.shape[ax] for ax in given):
                raise ValueError("Shape of weights must be consistent with shape of a along specified axis.")
            order = tuple(int(i) for i in np.argsort(given))
            if order != tuple(range(len(order))):
                w = prims.transpose(w, order)
            w = prims.reshape(w, tuple(n if d in given else 1 for d, n in enumerate(t.shape)))
        if not is_tracer(weights) and np.any(np.sum(np.asarray(w, dtype), axis=axis, keepdims=True) == 0):
            raise ZeroDivisionError("Weights sum to zero, can't be normalized")
        scale = sum(prims.broadcast_to(convert(w, dtype), t.shape), axis=axis, keepdims=keepdims)
        avg = sum(convert(a, dtype) * convert(w, dtype), axis=axis, keepdims=keepdims) / scale
    if not returned:
        return avg
    return avg, prims.broadcast_to(scale, type_of(avg).shape)


def _truth(a):
    (a,) = promote(a)
    return a if type_of(a).dtype == "bool" else prims.not_equal(a, 0)  # NaN is true, as in NumPy


@implements(np.all)
def all(a, axis=None, out=None, keepdims=False, *, where=None):
    """``np.all``: no element along ``axis`` is zero/False (True over an empty axis)."""
    _check_unsupported("all", out=out, where=where)
    a = _truth(a)
    falses = bind("sum", prims.logical_not(a), axes=normalize_axes(axis, type_of(a).ndim), keepdims=bool(keepdims))
    return prims.equal(falses, 0)


@implements(np.any)
def any(a, axis=None, out=None, keepdims=False, *, where=None):
    """``np.any``: some element along ``axis`` is nonzero/True (False over an empty axis)."""
    _check_unsupported("any", out=out, where=where)
    a = _truth(a)
    trues = bind("sum", a, axes=normalize_axes(axis, type_of(a).ndim), keepdims=bool(keepdims))
    return prims.not_equal(trues, 0)


@implements(np.isclose)
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``np.isclose``: ``|a - b| <= atol + rtol * |b|`` where ``b`` is finite, else ``a == b``;
    NaNs are close to each other only with ``equal_nan``. Computed in ``b``'s dtype promoted
    to float, as NumPy 2."""
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, (int, float, np.generic)):
            raise TraceError(f"np.isclose: {name} must be a number in graphc, got {type(tol).__name__} "
                             f"(at {user_line()})")
    if type(b) in (bool, int):  # a Python number stays weakly typed, as in NumPy
        b = float(b)
    elif type(b) is not float:
        b = convert(b, result_dtype(b, 1.0))
    close = prims.less_equal(prims.absolute(a - b), atol + rtol * prims.absolute(b))
    result = prims.logical_or(prims.logical_and(close, prims.less(prims.absolute(b), np.inf)), prims.equal(a, b))
    if equal_nan:
        result = prims.logical_or(result, prims.logical_and(prims.not_equal(a, a), prims.not_equal(b, b)))
    return result


@implements(np.allclose)
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``np.allclose`` as a traced 0-d boolean (NumPy returns a Python bool, which a trace
    cannot: use it with gc.where or return it)."""
    return all(isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def _max_from_zero(x, axes, keepdims):
    """``np.max(x, axis, initial=0)`` of non-negative ``x``: 0 over an empty axis (NumPy's
    norms), the plain max elsewhere."""
    t = type_of(x)
    if builtins.any(t.shape[a] == 0 for a in normalize_axes(axes, t.ndim)):
        return np.zeros(reduced_shape(t.shape, normalize_axes(axes, t.ndim), keepdims), t.dtype)
    return max(x, axis=axes, keepdims=keepdims)


def _norm_of_vectors(x, ord, axis, keepdims):
    axes = (axis,)
    if ord is None or ord == 2:
        return prims.sqrt(sum(x * x, axis=axes, keepdims=keepdims))
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    if ord == np.inf:
        return _max_from_zero(prims.absolute(x), axes, keepdims)
    if ord == -np.inf:
        return min(prims.absolute(x), axis=axes, keepdims=keepdims)
    if ord == 0:
        return sum(prims.cast(prims.not_equal(x, 0), type_of(x).dtype), axis=axes, keepdims=keepdims)
    if ord == 1:
        return sum(prims.absolute(x), axis=axes, keepdims=keepdims)
    dtype = type_of(x).dtype
    total = sum(prims.power(prims.absolute(x), np.asarray(ord, dtype)[()]), axis=axes, keepdims=keepdims)
    return prims.power(total, np.reciprocal(np.asarray(ord, dtype))[()])


def _norm_of_matrices(x, ord, axes, keepdims):
    row, col = axes
    if row == col:
        raise ValueError("Duplicate axes given.")
    if ord in (None, "fro", "f"):
        return prims.sqrt(sum(x * x, axis=axes, keepdims=keepdims))
    if ord in (2, -2, "nuc"):  # from the singular values, as NumPy's
        values = prims.svdvals(prims.moveaxis(x, (row, col), (-2, -1)))
        ret = {2: max, -2: min, "nuc": sum}[ord](values, axis=-1)
    elif ord in (1, -1, np.inf, -np.inf):
        pick = max if ord in (1, np.inf) else min
        reduced, across = (row, col - (col > row)) if ord in (1, -1) else (col, row - (row > col))
        sums = sum(prims.absolute(x), axis=reduced)
        ret = _max_from_zero(sums, (across,), False) if pick is max else min(sums, axis=across)
    else:
        raise ValueError("Invalid norm order for matrices.")
    if keepdims:
        ret = prims.reshape(ret, tuple(1 if d in axes else n for d, n in enumerate(type_of(x).shape)))
    return ret


def norm(x, ord=None, axis=None, keepdims=False):
    """``np.linalg.norm``: vector norms (``ord`` None/2, 1, inf, -inf, 0 or any p) along one
    axis, matrix norms (None/'fro', 1, -1, inf, -inf, and from an SVD 2, -2, 'nuc') over two;
    integers give float64."""
    (x,) = promote(x)
    x = convert(x, _float_dtype_of(type_of(x).dtype))
    ndim = type_of(x).ndim
    if axis is None:
        if ord is None or (ord in ("f", "fro") and ndim == 2) or (ord == 2 and ndim == 1):
            ret = prims.sqrt(sum(x * x))
            return prims.reshape(ret, (1,) * ndim) if keepdims else ret
        if ndim not in (1, 2):
            raise ValueError("Improper number of dimensions to norm.")
        axis = tuple(range(ndim))
    elif not isinstance(axis, (tuple, list)):
        if int(axis) != axis:
            raise TypeError("'axis' must be None, an integer or a tuple of integers")
        axis = (int(axis),)
    if len(axis) == 1:
        (a,) = normalize_axes(axis, ndim)
        return _norm_of_vectors(x, ord, a, keepdims)
    if len(axis) == 2:
        if not builtins.all(-ndim <= int(d) < ndim for d in axis):
            raise ShapeError(f"axis {tuple(axis)} is out of bounds for an array of dimension {ndim}")
        return _norm_of_matrices(x, ord, tuple(int(d) % ndim for d in axis), keepdims)
    raise ValueError("Improper number of dimensions to norm.")


implements(np.linalg.norm)(norm)

# what the other op families call (through graphc.ops.prims)
export(
    max=max, mean=mean, min=min, sum=sum,
)
