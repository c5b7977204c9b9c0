"""Elementwise ops: arithmetic, math, comparisons, logic, where, cast, clip, iota.

Primitives broadcast like NumPy but require equal operand dtypes; the public
functions below do NumPy's promotion (inserting ``cast`` nodes) first. Each
``vjp`` is a tuple with one rule per operand, ``rule(g, *operands, out)``,
or None where the operand gets no gradient.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import ELEMENTWISE, implements, register
from graphc.trace import bind, mark_weak, promote, result_dtype, user_line


# -- shape rules -------------------------------------------------------------------
def broadcast_types(types) -> tuple:
    try:
        return tuple(np.broadcast_shapes(*[t.shape for t in types]))
    except ValueError:
        raise ShapeError("operands " + " and ".join(str(t) for t in types)
                         + " cannot be broadcast together") from None


def _same_dtype(types):
    if len({t.dtype for t in types}) > 1:
        raise ShapeError("operand dtypes differ: " + ", ".join(str(t) for t in types))
    return types[0].dtype


def infer_same(types, **_):
    return TensorType(broadcast_types(types), _same_dtype(types))


def infer_bool(types, **_):
    _same_dtype(types)
    return TensorType(broadcast_types(types), "bool")


def infer_float(types, **_):
    dtype = _same_dtype(types)
    if not dtype.startswith("float"):
        raise ShapeError(f"needs floating-point operands, got {', '.join(str(t) for t in types)}")
    return TensorType(broadcast_types(types), dtype)


def _elementwise(name, reference, scalar, vjp=None, infer=infer_same, differentiable=True, raises=False):
    return register(name, ELEMENTWISE, infer, reference, scalar=scalar, vjp=vjp,
                    differentiable=differentiable, raises=raises)


def _float_dtype(x) -> str:
    dtype = result_dtype(x)
    return dtype if dtype.startswith("float") else "float64"


def _public(name, fn, doc, ufunc=None):
    if ufunc is None and isinstance(getattr(np, name, None), np.ufunc):
        ufunc = name  # np.exp, np.tanh... on tracers come here
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    implements(ufunc=ufunc)(fn)
    return fn


def _unary_float(name, reference, scalar, vjp, ufunc=None):
    """exp, log, tanh...: integer inputs are computed in float64 as NumPy does."""
    _elementwise(name, reference, scalar, vjp, infer=infer_float)

    def fn(x):
        (x2,) = promote(x, dtype=_float_dtype(x))
        return mark_weak(bind(name, x2), x)

    return _public(name, fn, f"Elementwise {name}, as ``np.{ufunc or name}``.", ufunc)


def _unary_same(name, reference, scalar, vjp, ufunc=None):
    _elementwise(name, reference, scalar, vjp)

    def fn(x):
        (x2,) = promote(x)
        return mark_weak(bind(name, x2), x)

    return _public(name, fn, f"Elementwise {name}, as ``np.{ufunc or name}``.", ufunc)


def _binary(name, reference, scalar, vjp, ufunc, infer=infer_same, float_result=False, raises=False):
    _elementwise(name, reference, scalar, vjp, infer=infer, differentiable=vjp is not None, raises=raises)

    def fn(x, y):
        dtype = result_dtype(x, y)
        if float_result and not dtype.startswith("float"):
            dtype = "float64"
        return mark_weak(bind(name, *promote(x, y, dtype=dtype)), x, y)

    return _public(ufunc, fn, f"Elementwise ``np.{ufunc}`` with NumPy broadcasting and promotion.", ufunc)


# -- arithmetic --------------------------------------------------------------------
add = _binary("add", np.add, lambda c, a, b: f"{a} + {b}",
              (lambda g, x, y, out: g, lambda g, x, y, out: g), "add")
subtract = _binary("sub", np.subtract, lambda c, a, b: f"{a} - {b}",
                   (lambda g, x, y, out: g, lambda g, x, y, out: negative(g)), "subtract")
multiply = _binary("mul", np.multiply, lambda c, a, b: f"{a} * {b}",
                   (lambda g, x, y, out: g * y, lambda g, x, y, out: g * x), "multiply")
divide = _binary("div", np.true_divide, lambda c, a, b: f"{a} / {b}",
                 (lambda g, x, y, out: g / y, lambda g, x, y, out: negative(g) * out / y),
                 "divide", infer=infer_float, float_result=True)
implements(ufunc="true_divide")(divide)


def _pow_dy(g, x, y, out):
    # d/dy x**y = x**y * log(x); 0 where x == 0 (PyTorch's convention) instead of 0 * -inf
    zero = equal(x, 0)  # log of a safe 1 there, so second derivatives do not see 0 * -inf
    return where(zero, 0, g * out * log(where(zero, 1, x)))


power = _binary("pow", np.power, lambda c, a, b: f"{a} ** {b}",
                (lambda g, x, y, out: g * y * x ** (y - 1), _pow_dy), "power",
                # Numba's integer power raises OverflowError for an exponent of -2**63
                raises=lambda node: not node.outputs[0].type.dtype.startswith("float"))


def _maximum_grad(pick_x):
    def rule(g, x, y, out):
        mine = (x == out) if pick_x else (y == out)
        theirs = (y == out) if pick_x else (x == out)
        share = where(mine, where(theirs, 0.5, 1.0), 0.0)  # ties split evenly, as PyTorch
        return g * share
    return rule


maximum = _binary("maximum", np.maximum, lambda c, a, b: f"{a} if ({a} > {b} or {a} != {a}) else {b}",
                  (_maximum_grad(True), _maximum_grad(False)), "maximum")
minimum = _binary("minimum", np.minimum, lambda c, a, b: f"{a} if ({a} < {b} or {a} != {a}) else {b}",
                  (_maximum_grad(True), _maximum_grad(False)), "minimum")

negative = _unary_same("neg", np.negative, lambda c, a: f"-{a}", (lambda g, x, out: negative(g),),
                       ufunc="negative")
absolute = _unary_same("abs", np.abs, lambda c, a: f"abs({a})", (lambda g, x, out: g * sign(x),),
                       ufunc="absolute")
sign = _unary_same("sign", np.sign, lambda c, a: f"np.sign({a})", (None,), ufunc="sign")


def _relu_ref(x):
    return np.maximum(x, np.zeros((), x.dtype))


relu = _unary_same("relu", _relu_ref, lambda c, a: f"{c.lit(0)} if {a} < {c.lit(0)} else {a}",
                   (lambda g, x, out: where(greater(x, 0), g, 0),))

# -- transcendental ------------------------------------------------------------------
exp = _unary_float("exp", np.exp, lambda c, a: f"np.exp({a})", (lambda g, x, out: g * out,))
log = _unary_float("log", np.log, lambda c, a: f"np.log({a})", (lambda g, x, out: g / x,))
tanh = _unary_float("tanh", np.tanh, lambda c, a: f"np.tanh({a})",
                    (lambda g, x, out: g * (1 - out * out),))
sin = _unary_float("sin", np.sin, lambda c, a: f"np.sin({a})", (lambda g, x, out: g * cos(x),))
cos = _unary_float("cos", np.cos, lambda c, a: f"np.cos({a})",
                   (lambda g, x, out: negative(g) * sin(x),))
sqrt = _unary_float("sqrt", np.sqrt, lambda c, a: f"np.sqrt({a})",
                    (lambda g, x, out: g * 0.5 / out,))


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


sigmoid = _unary_float("sigmoid", _sigmoid_ref,
                       lambda c, a: f"{c.lit(1)} / ({c.lit(1)} + np.exp(-{a}))",
                       (lambda g, x, out: g * out * (1 - out),))
sigmoid.__doc__ = "The logistic function 1 / (1 + exp(-x)), stable for large |x|."


def square(x):
    """x * x, as ``np.square``."""
    return multiply(x, x)


implements(ufunc="square")(square)

# -- comparisons and logic -----------------------------------------------------------
def _cmp(name, reference, sym, ufunc):
    return _binary(name, reference, lambda c, a, b: f"{a} {sym} {b}", None, ufunc, infer=infer_bool)


equal = _cmp("eq", np.equal, "==", "equal")
not_equal = _cmp("ne", np.not_equal, "!=", "not_equal")
less = _cmp("lt", np.less, "<", "less")
less_equal = _cmp("le", np.less_equal, "<=", "less_equal")
greater = _cmp("gt", np.greater, ">", "greater")
greater_equal = _cmp("ge", np.greater_equal, ">=", "greater_equal")


def infer_logical(types, **_):
    for t in types:
        if t.dtype != "bool":
            raise ShapeError(f"needs boolean operands, got {', '.join(str(t) for t in types)}")
    return TensorType(broadcast_types(types), "bool")


def _logical(name, reference, scalar, ufunc):
    _elementwise(name, reference, scalar, None, infer=infer_logical, differentiable=False)

    def fn(*args):
        return bind(name, *promote(*args, dtype="bool"))

    return _public(ufunc, fn, f"Elementwise ``np.{ufunc}`` (operands are taken as booleans).", ufunc)


logical_and = _logical("and", np.logical_and, lambda c, a, b: f"{a} & {b}", "logical_and")
logical_or = _logical("or", np.logical_or, lambda c, a, b: f"{a} | {b}", "logical_or")
logical_xor = _logical("xor", np.logical_xor, lambda c, a, b: f"{a} != {b}", "logical_xor")
logical_not = _logical("not", np.logical_not, lambda c, a: f"not {a}", "logical_not")


# -- where, cast, clip ------------------------------------------------------------------
def infer_where(types, **_):
    cond, a, b = types
    if cond.dtype != "bool":
        raise ShapeError(f"condition must be boolean, got {cond}")
    return TensorType(broadcast_types(types), _same_dtype([a, b]))


_elementwise("where", np.where, lambda c, p, a, b: f"{a} if {p} else {b}",
             (None, lambda g, c, a, b, out: where(c, g, 0), lambda g, c, a, b, out: where(c, 0, g)),
             infer=infer_where)


@implements(np.where)
def where(condition, x=None, y=None):
    """Choose ``x`` where ``condition`` holds, else ``y`` (the traced alternative to ``if``)."""
    if x is None or y is None:
        raise TraceError(f"np.where(condition) with one argument has a data-dependent shape and "
                         f"cannot be traced (at {user_line()}); use where(condition, x, y)")
    (cond,) = promote(condition, dtype="bool")
    return mark_weak(bind("where", cond, *promote(x, y)), x, y)


def infer_cast(types, dtype):
    (t,) = types
    return TensorType(t.shape, dtype)


def _cast_vjp(g, x, out, dtype):
    return cast(g, x.dtype.name) if x.dtype.kind == "f" else None


_elementwise("cast", lambda x, dtype: x.astype(dtype), lambda c, a: a, (_cast_vjp,), infer=infer_cast)


def cast(x, dtype):
    """``x.astype(dtype)``: a node only when the dtype changes."""
    dtype = np.dtype(dtype).name
    (out,) = promote(x, dtype=dtype)
    return out


astype = cast


def _clip_ref(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def _clip_scalar(c, x, lo, hi):
    # min(max(x, lo), hi) as np.clip: a NaN in x or in a bound gives NaN; lo > hi gives hi
    low = f"({lo} if ({x} < {lo} or {lo} != {lo}) else {x})"
    return f"{hi} if ({low} > {hi} or {hi} != {hi}) else {low}"


_elementwise("clip", _clip_ref, _clip_scalar,
             (lambda g, x, lo, hi, out: where(logical_and(x >= lo, x <= hi), g, 0),
              # out = min(max(x, lo), hi): lo wins where x < lo <= hi, hi where max(x, lo) > hi
              lambda g, x, lo, hi, out: where(logical_and(x < lo, lo <= hi), g, 0),
              lambda g, x, lo, hi, out: where(logical_or(x > hi, lo > hi), g, 0)))


@implements(np.clip)
def clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None):
    """Limit values to ``[a_min, a_max]`` (either may be None), as ``np.clip``."""
    if out is not None:
        raise TraceError(f"np.clip(..., out=...) cannot be traced (at {user_line()})")
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    if lo is None and hi is None:
        raise ValueError("clip needs a_min or a_max")
    if lo is None:
        return minimum(a, hi)
    if hi is None:
        return maximum(a, lo)
    return mark_weak(bind("clip", *promote(a, lo, hi)), a, lo, hi)


# -- iota: the loop index as a value (arange without a constant array) --------------------
def infer_iota(types, shape, axis, dtype):
    if not -len(shape) <= axis < len(shape):
        raise ShapeError(f"axis {axis} is out of range for shape {shape}")
    return TensorType(tuple(shape), dtype)


def _iota_ref(shape, axis, dtype):
    ramp = np.arange(shape[axis], dtype=dtype)
    return np.broadcast_to(ramp.reshape([-1 if d == axis % len(shape) else 1 for d in range(len(shape))]),
                           shape).copy()


_elementwise("iota", _iota_ref, lambda c: c.index(c.attrs["axis"] % len(c.attrs["shape"])),
             infer=infer_iota, differentiable=False)


def iota(shape, axis=0, dtype="int64"):
    """0, 1, 2... along ``axis`` of ``shape`` (as ``lax.broadcasted_iota``); fuses into loops."""
    return bind("iota", shape=tuple(shape), axis=axis, dtype=np.dtype(dtype).name)
