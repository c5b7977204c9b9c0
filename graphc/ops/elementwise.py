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
from graphc.ops.rules import broadcast_types, infer_same, same_dtype as _same_dtype
from graphc.ops.registry import ELEMENTWISE, export, implements, register
from graphc.trace import Tracer, bind, convert, mark_weak, promote, result_dtype, user_line


# -- shape rules -------------------------------------------------------------------
def infer_bool(types, **_):
    _same_dtype(types)
    return TensorType(broadcast_types(types), "bool")


def infer_float(types, **_):
    dtype = _same_dtype(types)
    if not dtype.startswith("float"):
        raise ShapeError(f"needs floating-point operands, got {', '.join(str(t) for t in types)}")
    return TensorType(broadcast_types(types), dtype)


def _elementwise(name, reference, scalar, vjp=None, infer=infer_same, differentiable=True, raises=False,
                 math=None, scalar_reason=None):
    """Register an elementwise op. ``math`` names its function in the scalar vocabulary
    (graphc.ops.scalar.MATH), which backends map to fast (vectorizable) code; ``scalar`` is the
    plain rule, used where a backend has no mapping. ``scalar_reason``: why a float op keeps
    scalar code in fused loops."""
    return register(name, ELEMENTWISE, infer, reference, scalar=scalar, vjp=vjp,
                    differentiable=differentiable, raises=raises, math=math, scalar_reason=scalar_reason)


def _float_dtype(x) -> str:
    dtype = result_dtype(x)
    if dtype == "bool":  # NumPy computes bool in float16, a dtype graphc lacks: refuse, never float64
        raise TypeError(f"this NumPy function gives float16 for boolean input, which graphc does not "
                        f"support; cast first, e.g. x.astype(np.float32) (at {user_line()})")
    return dtype if dtype.startswith("float") else "float64"


def _public(name, fn, doc, ufunc=None):
    if ufunc is None and isinstance(getattr(np, name, None), np.ufunc):
        ufunc = name  # np.exp, np.tanh... on tracers come here
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    implements(ufunc=ufunc)(fn)
    return fn


def _unary_float(name, reference, scalar, vjp, ufunc=None, math=None):
    """exp, log, tanh...: integer inputs are computed in float64 as NumPy does."""
    _elementwise(name, reference, scalar, vjp, infer=infer_float, math=math)

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


def _binary(name, reference, scalar, vjp, ufunc, infer=infer_same, float_result=False, raises=False,
            math=None, scalar_reason=None):
    _elementwise(name, reference, scalar, vjp, infer=infer, differentiable=vjp is not None, raises=raises,
                 math=math, scalar_reason=scalar_reason)

    def fn(x, y):
        dtype = result_dtype(x, y)
        if float_result and not dtype.startswith("float"):
            dtype = "float64"
        return mark_weak(bind(name, *promote(x, y, dtype=dtype)), x, y)

    return _public(ufunc, fn, f"Elementwise ``np.{ufunc}`` with NumPy broadcasting and promotion.", ufunc)


# -- arithmetic --------------------------------------------------------------------
def _wrapping(symbol):
    """``a symbol b``, int64 computed in uint64: Numba's signed integer arithmetic is ``nsw``,
    overflow that LLVM may assume never happens (``x + 1 > x`` was true at the largest int64),
    while NumPy wraps; unsigned arithmetic wraps for LLVM too. (Narrower ints are computed in
    int64 by Numba and cast back: they wrap already.)"""
    def scalar(c, a, b):
        return f"np.int64(np.uint64({a}) {symbol} np.uint64({b}))" if c.dtype == "int64" else f"{a} {symbol} {b}"
    return scalar


add = _binary("add", np.add, _wrapping("+"), (lambda g, x, y, out: g, lambda g, x, y, out: g), "add")
subtract = _binary("sub", np.subtract, _wrapping("-"),
                   (lambda g, x, y, out: g, lambda g, x, y, out: negative(g)), "subtract")
multiply = _binary("mul", np.multiply, _wrapping("*"),
                   (lambda g, x, y, out: g * y, lambda g, x, y, out: g * x), "multiply")
divide = _binary("div", np.true_divide, lambda c, a, b: f"{a} / {b}",
                 (lambda g, x, y, out: g / y, lambda g, x, y, out: negative(g) * out / y),
                 "divide", infer=infer_float, float_result=True)
implements(ufunc="true_divide")(divide)


def _pow_dy(g, x, y, out):
    # d/dy x**y = x**y * log(x); 0 where x == 0 (PyTorch's convention) instead of 0 * -inf
    zero = equal(x, 0)  # log of a safe 1 there, so second derivatives do not see 0 * -inf
    return where(zero, 0, g * out * log(where(zero, 1, x)))


def _known_nonzero(v) -> bool:
    """Is ``v`` a constant with no zero element (so x ** v needs no guard at v == 0)?"""
    producer = getattr(getattr(v, "value", None), "producer", None)
    if producer is None or producer.op != "constant":
        return False
    return bool(np.all(producer.attrs["value"].array != 0))


def _pow_dx(g, x, y, out):
    if _known_nonzero(y):
        return g * y * x ** (y - 1)
    # d/dx x**0 = 0 everywhere, also at x = 0 where y * x**(y-1) is 0 * inf: a base of 1 there.
    # Only there, so that the derivative of this rule by y at y = 0 stays x**-1 elsewhere
    base = where(logical_and(equal(x, 0), equal(y, 0)), 1, x)
    return g * y * base ** (y - 1)


def sqrt_fast_path(node) -> bool:
    """Does ``np.power`` compute this pow node's x ** 0.5 as ``sqrt(x)``?

    NumPy does when the exponent is one value broadcast over the whole loop (a 0-d
    exponent, or a one-element one with a bigger result), and sqrt differs from C's
    pow at -0.0 (-0.0, not 0.0) and -inf (nan, not inf). Measured on NumPy 2.4:
    shapes (3,)**(), (3,)**(1,), (3, 1)**(1, 1) take it; (1,)**(1,), ()**(1,),
    (3, 4)**(3, 1) do not.
    """
    y, out = node.inputs[1].type, node.outputs[0].type
    return out.dtype.startswith("float") and y.size == 1 and (not y.shape or out.size > 1)


def pow_expr(c, x, y, pow_call: str) -> str:
    """The scalar expression of pow ``x ** y`` given the call computing C's pow."""
    if not c.dtype.startswith("float"):
        return f"{c.helper('power_int')}({x}, {y})"  # raises for y < 0, as NumPy
    if sqrt_fast_path(c.node) and not _known_other_than(c.node.inputs[1], 0.5):
        return f"(np.sqrt({x}) if {y} == {c.lit(0.5)} else {pow_call})"
    return pow_call


def _known_other_than(v, value) -> bool:
    producer = v.producer
    return producer is not None and producer.op == "constant" and bool(np.all(producer.attrs["value"].array != value))


def _check_int_power(x, y):
    """NumPy refuses integer arrays to negative integer powers: so do we, for constant exponents."""
    if isinstance(y, Tracer):
        return  # (checked when the compiled code runs)
    if result_dtype(x, y).startswith(("int", "bool")) and np.any(np.asarray(y) < 0):
        raise ValueError("Integers to negative integer powers are not allowed.")


_power_node = _binary("pow", np.power, lambda c, a, b: pow_expr(c, a, b, f"{a} ** {b}"), (_pow_dx, _pow_dy), "power",
        # power_int raises ValueError for a negative exponent (NumPy does too)
        raises=lambda node: not node.outputs[0].type.dtype.startswith("float"), math="pow")


def _power(x, y):
    _check_int_power(x, y)
    return _power_node(x, y)


power = _public("power", _power, "``x ** y`` as ``np.power``, with NumPy broadcasting and promotion. Integers "
                "to a negative integer power raise ValueError, as in NumPy: at trace time for a constant "
                "exponent, when the compiled code runs for a traced one.", "power")


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

negative = _unary_same("neg", np.negative,  # (-x of the smallest int64 wraps to itself; -0.0 stays)
                       lambda c, a: _wrapping("-")(c, "0", a) if c.dtype == "int64" else f"-{a}",
                       (lambda g, x, out: negative(g),), ufunc="negative")
absolute = _unary_same("abs", np.abs, lambda c, a: f"abs({a})", (lambda g, x, out: g * sign(x),),
                       ufunc="absolute")
sign = _unary_same("sign", np.sign, lambda c, a: f"np.sign({a})", (None,), ufunc="sign")


def _relu_ref(x):
    return np.maximum(x, np.zeros((), x.dtype))


# np.maximum(x, 0): NaN stays, and -0.0 gives 0.0 (a tie takes the zero)
relu = _unary_same("relu", _relu_ref, lambda c, a: f"{a} if ({a} > {c.lit(0)} or {a} != {a}) else {c.lit(0)}",
                   (lambda g, x, out: where(greater(x, 0), g, 0),))

# -- transcendental ------------------------------------------------------------------
exp = _unary_float("exp", np.exp, lambda c, a: f"np.exp({a})", (lambda g, x, out: g * out,), math="exp")
log = _unary_float("log", np.log, lambda c, a: f"np.log({a})", (lambda g, x, out: g / x,), math="log")
tanh = _unary_float("tanh", np.tanh, lambda c, a: f"np.tanh({a})",
                    (lambda g, x, out: g * (1 - out * out),), math="tanh")
sin = _unary_float("sin", np.sin, lambda c, a: f"np.sin({a})", (lambda g, x, out: g * cos(x),), math="sin")
cos = _unary_float("cos", np.cos, lambda c, a: f"np.cos({a})",
                   (lambda g, x, out: negative(g) * sin(x),), math="cos")
sqrt = _unary_float("sqrt", np.sqrt, lambda c, a: f"np.sqrt({a})",
                    (lambda g, x, out: g * 0.5 / out,))


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


sigmoid = _unary_float("sigmoid", _sigmoid_ref,
                       lambda c, a: f"{c.lit(1)} / ({c.lit(1)} + np.exp(-{a}))",
                       (lambda g, x, out: g * out * (1 - out),), math="sigmoid")
sigmoid.__doc__ = "The logistic function 1 / (1 + exp(-x)), stable for large |x|."


def square(x):
    """x * x, as ``np.square``."""
    return multiply(x, x)


implements(ufunc="square")(square)


def _refusing_bool(fn, ufunc, numpy_gives):
    """``fn`` that refuses all-boolean operands, where NumPy raises or gives int8 (graphc has no
    int8): a clear TypeError, never a bool or int64 result NumPy would not give."""
    def checked(*args):
        if result_dtype(*args) == "bool":
            raise TypeError(f"np.{ufunc} of booleans {numpy_gives}; cast them first, e.g. "
                            f"x.astype(np.int32) (at {user_line()})")
        return fn(*args)
    return _public(ufunc, checked, fn.__doc__, ufunc)


subtract = _refusing_bool(subtract, "subtract", "raises a TypeError in NumPy (use np.logical_xor)")
negative = _refusing_bool(negative, "negative", "raises a TypeError in NumPy (use np.logical_not)")
sign = _refusing_bool(sign, "sign", "raises a TypeError in NumPy")
square = _refusing_bool(square, "square", "gives int8 in NumPy, which graphc does not support")
power = _refusing_bool(power, "power", "gives int8 in NumPy, which graphc does not support")
_power_any = power


def power(x, y):  # noqa: F811  (a boolean base too: `b ** 2` is np.square in NumPy, an int8)
    if type_of_kind(x) == "b":
        raise TypeError(f"a power of booleans gives int8 or int64 in NumPy depending on the exponent; cast the "
                        f"base first, e.g. x.astype(np.int32) (at {user_line()})")
    return _power_any(x, y)


power = _public("power", power, _power_any.__doc__, "power")


def positive(x):
    """``+x``: a copy; NumPy refuses booleans."""
    if type_of_kind(x) == "b":
        raise TypeError(f"np.positive of booleans raises a TypeError in NumPy (at {user_line()})")
    return x


def type_of_kind(x) -> str:
    return np.dtype(result_dtype(x)).kind if not isinstance(x, bool) else "b"

# -- comparisons and logic -----------------------------------------------------------
def _cmp(name, reference, sym, ufunc):
    compare = _binary(name, reference, lambda c, a, b: f"{a} {sym} {b}", None, ufunc, infer=infer_bool)

    def fn(x, y):
        """A Python int compares with an integer array by value, as in NumPy 2 (``x_int32 < 2**40``
        is True, not an OverflowError): in int64, or known outright beyond int64's range."""
        for a, b, flipped in ((x, y, False), (y, x, True)):
            if _python_int(a) and getattr(b, "dtype", np.dtype(float)).kind == "i":
                if isinstance(a, int) and not -2**63 <= a < 2**63:
                    less = (a > 0) == flipped  # is the left operand the smaller one everywhere?
                    outright = {"lt": less, "le": less, "gt": not less, "ge": not less,
                                "eq": False, "ne": True}[name]
                    same = equal(b, b)
                    return same if outright else logical_not(same)
                wide = convert(b, "int64")
                return compare(wide, a) if flipped else compare(a, wide)
        return compare(x, y)

    return _public(ufunc, fn, compare.__doc__, ufunc)


def _python_int(a) -> bool:
    """A Python int, or a traced value born from one (weakly typed)."""
    if isinstance(a, Tracer):
        return a.weak and a.dtype.kind == "i"
    return isinstance(a, int) and not isinstance(a, (bool, np.generic))


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


# -- more transcendental functions: vectorized math by their ``math`` name, NumPy's otherwise ----
_LN2, _LN10 = float(np.log(2.0)), float(np.log(10.0))


def _libm_unary(name, vjp):
    return _unary_float(name, getattr(np, name), lambda c, a: f"np.{name}({a})", (vjp,), math=name)


log1p = _libm_unary("log1p", lambda g, x, out: g / (1 + x))
expm1 = _libm_unary("expm1", lambda g, x, out: g * (out + 1))
log2 = _libm_unary("log2", lambda g, x, out: g / (x * _LN2))
log10 = _libm_unary("log10", lambda g, x, out: g / (x * _LN10))
exp2 = _libm_unary("exp2", lambda g, x, out: g * out * _LN2)
tan = _libm_unary("tan", lambda g, x, out: g * (1 + out * out))
sinh = _libm_unary("sinh", lambda g, x, out: g * cosh(x))
cosh = _libm_unary("cosh", lambda g, x, out: g * sinh(x))
arcsin = _libm_unary("arcsin", lambda g, x, out: g / sqrt(1 - x * x))
arccos = _libm_unary("arccos", lambda g, x, out: negative(g) / sqrt(1 - x * x))
arctan = _libm_unary("arctan", lambda g, x, out: g / (1 + x * x))
arcsinh = _libm_unary("arcsinh", lambda g, x, out: g / sqrt(x * x + 1))
arccosh = _libm_unary("arccosh", lambda g, x, out: g / (sqrt(x - 1) * sqrt(x + 1)))
arctanh = _libm_unary("arctanh", lambda g, x, out: g / (1 - x * x))


def _libm_binary(name, vjp, scalar_reason=None):
    fn = _binary(name, getattr(np, name), lambda c, a, b: f"np.{name}({a}, {b})", vjp, name,
                 infer=infer_float, float_result=True, math=None if scalar_reason else name,
                 scalar_reason=scalar_reason)

    def checked(x, y):
        _float_dtype(x if result_dtype(x, y) == "bool" else y)  # (booleans: float16 in NumPy, refused)
        return fn(x, y)
    return _public(name, checked, fn.__doc__, name)


arctan2 = _libm_binary("arctan2", (lambda g, y, x, out: g * x / (x * x + y * y),
                                   lambda g, y, x, out: negative(g) * y / (x * x + y * y)))
hypot = _libm_binary("hypot", (lambda g, x, y, out: g * x / out, lambda g, x, y, out: g * y / out))
_LOGADDEXP_SCALAR = ("NumPy's formula m + log1p(exp(-|x - y|)) cancels where m is near -log(2): "
                     "vectorized exp and log1p errors would grow there, so NumPy's libm calls are kept")
logaddexp = _libm_binary("logaddexp", (lambda g, x, y, out: g * exp(x - out),
                                       lambda g, x, y, out: g * exp(y - out)), _LOGADDEXP_SCALAR)
logaddexp2 = _libm_binary("logaddexp2", (lambda g, x, y, out: g * exp2(x - out),
                                         lambda g, x, y, out: g * exp2(y - out)), _LOGADDEXP_SCALAR)

# fmax/fmin: like maximum/minimum, but a NaN loses (the other operand wins). On a tie of 0.0 and
# -0.0 NumPy's result depends on the memory layout (its SIMD loops return y, its scalar loop x):
# y here, as maximum/minimum do and as NumPy does for contiguous arrays of the same shape
fmax = _binary("fmax", np.fmax, lambda c, a, b: f"{a} if ({a} > {b} or {b} != {b}) else {b}",
               (_maximum_grad(True), _maximum_grad(False)), "fmax")
fmin = _binary("fmin", np.fmin, lambda c, a, b: f"{a} if ({a} < {b} or {b} != {b}) else {b}",
               (_maximum_grad(True), _maximum_grad(False)), "fmin")


# -- rounding: float primitives (integers pass through as NumPy 2 does) -------------------------
# NumPy 2.0-2.2 return float64 for np.floor/np.ceil of integers, 2.3 on keeps the integer dtype
_FLOOR_KEEPS_INTEGERS = np.floor(np.zeros(1, np.int64)).dtype.kind == "i"


def _rounding(name, reference, ufunc):
    _elementwise(name, reference, lambda c, a: f"np.{name}({a})", (None,), infer=infer_float)

    def fn(x):
        dtype = result_dtype(x)
        if dtype == "bool":
            raise TypeError(f"np.{ufunc} of booleans gives float16 in NumPy, which graphc does not support "
                            f"(at {user_line()})")
        if dtype.startswith("int"):  # an integer is its own floor, ceil and rint
            keeps = ufunc != "rint" and _FLOOR_KEEPS_INTEGERS
            return x if keeps else mark_weak(cast(x, "float64"), x)
        return mark_weak(bind(name, x), x)

    return _public(ufunc, fn, f"Elementwise ``np.{ufunc}`` (zero gradient almost everywhere).", ufunc)


floor = _rounding("floor", np.floor, "floor")
ceil = _rounding("ceil", np.ceil, "ceil")
rint = _rounding("rint", np.rint, "rint")


@implements(np.round, np.around)
def round(a, decimals=0, out=None):  # noqa: A001 - NumPy's name
    """Round half to even to ``decimals`` (a static int) places, as ``np.round``.

    Floats: ``rint(a * 10**d) / 10**d`` for ``d > 0`` (``rint(a / 10**-d) * 10**-d`` for
    ``d < 0``), the very operations NumPy performs; integers are unchanged for ``d >= 0``.
    """
    if out is not None:
        raise TraceError(f"np.round(..., out=...) cannot be traced (at {user_line()})")
    if isinstance(decimals, Tracer) or not isinstance(decimals, (int, np.integer)):
        raise TraceError(f"np.round: decimals must be a static int, got {decimals!r} (at {user_line()})")
    decimals = int(decimals)
    dtype = result_dtype(a)
    if dtype == "bool":
        raise TypeError(f"np.round of booleans gives float16 in NumPy, which graphc does not support "
                        f"(at {user_line()})")
    if dtype.startswith("int") and decimals >= 0:
        return a
    if decimals == 0:
        return rint(a)
    x = cast(a, "float64") if dtype.startswith("int") else a
    scale = 10.0 ** abs(decimals)
    rounded = rint(x * scale) / scale if decimals > 0 else rint(x / scale) * scale
    return cast(rounded, dtype) if dtype.startswith("int") else rounded


around = round


# -- compositions of existing ops (exact: the same operations NumPy performs) --------------------
def _floating(x):
    """``x`` cast to float64 unless it is floating already (NumPy's choice for float ufuncs)."""
    return mark_weak(cast(x, _float_dtype(x)), x)


@implements(ufunc="fabs")
def fabs(x):
    """Absolute value of a float (integers become float64), as ``np.fabs``."""
    return absolute(_floating(x))


@implements(ufunc="reciprocal")
def reciprocal(x):
    """``1 / x`` keeping the dtype, as ``np.reciprocal`` (integers: 1 // x truncated toward 0,
    the most negative integer for 0, as NumPy on x86)."""
    dtype = result_dtype(x)
    if dtype == "bool":
        raise TypeError(f"np.reciprocal of booleans is not supported by NumPy either (at {user_line()})")
    if dtype.startswith("float"):
        return divide(1, x)
    unit = equal(absolute(x), 1)
    return where(equal(x, 0), np.iinfo(dtype).min, where(unit, x, 0))


def _scaled(x, factors):
    x = _floating(x)
    return multiply(x, factors[x.dtype.name if isinstance(x, Tracer) else np.result_type(x).name])


# NumPy's constants: x * (pi / 180) computed in the result's precision (float32: pi_f / 180_f)
_DEG2RAD = {"float64": np.pi / 180.0, "float32": np.float32(np.float32(np.pi) / np.float32(180.0))}
_RAD2DEG = {"float64": 180.0 / np.pi, "float32": np.float32(np.float32(180.0) / np.float32(np.pi))}


@implements(ufunc="deg2rad")
def deg2rad(x):
    """Degrees to radians, as ``np.deg2rad`` (``x * (pi / 180)``)."""
    return _scaled(x, {k: float(v) for k, v in _DEG2RAD.items()})


@implements(ufunc="rad2deg")
def rad2deg(x):
    """Radians to degrees, as ``np.rad2deg`` (``x * (180 / pi)``)."""
    return _scaled(x, {k: float(v) for k, v in _RAD2DEG.items()})


radians = implements(ufunc="radians")(deg2rad)
degrees = implements(ufunc="degrees")(rad2deg)


@implements(np.sinc)
def sinc(x):
    """``sin(pi x) / (pi x)``, 1 at 0, as ``np.sinc`` (the same operations)."""
    y = multiply(np.pi, _floating(x))
    # near 0 the series 1 - y^2/6 + y^4/120 (within an ulp of sin(y)/y there): its derivatives
    # at 0 are sinc's own (the second is -pi^2/3), where a stand-in for y = 0 would give 0
    small = less(absolute(y), 2.0 ** -12)
    safe = where(small, 1.0, y)
    y2 = y * y
    return where(small, 1.0 - y2 / 6.0 + y2 * y2 / 120.0, divide(sin(safe), safe))


@implements(ufunc="isnan")
def isnan(x):
    """Elementwise ``x != x`` (False for integers), as ``np.isnan``."""
    return not_equal(x, x)


@implements(ufunc="isinf")
def isinf(x):
    """``|x| == inf`` (False for integers), as ``np.isinf``."""
    if not result_dtype(x).startswith("float"):
        return not_equal(x, x)
    return equal(absolute(x), np.inf)


@implements(ufunc="isfinite")
def isfinite(x):
    """``|x| < inf`` (NaN is not finite; integers always are), as ``np.isfinite``."""
    if not result_dtype(x).startswith("float"):
        return equal(x, x)
    return less(absolute(x), np.inf)


@implements(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """NaN -> ``nan``, inf -> ``posinf`` (default: the dtype's max), -inf -> ``neginf`` (its
    min), as ``np.nan_to_num``; integers are unchanged."""
    if not copy and isinstance(x, Tracer):
        raise TraceError(f"np.nan_to_num(x, copy=False) changes x in place, which a traced array cannot "
                         f"(at {user_line()}); write x = np.nan_to_num(x)")
    dtype = result_dtype(x)
    if not dtype.startswith("float"):
        return x
    info = np.finfo(dtype)
    hi = float(info.max) if posinf is None else posinf
    lo = float(info.min) if neginf is None else neginf
    # every mask from the input, as NumPy's (nan=np.inf must stay inf, not become posinf)
    return where(isnan(x), nan, where(equal(x, np.inf), hi, where(equal(x, -np.inf), lo, x)))


# -- floor division and remainder (NumPy's semantics: graphc.backend.vecmath helpers) --------------
def _divmod_scalar(name):
    def scalar(c, a, b):
        suffix = {"float32": "f32", "float64": "f64"}.get(c.dtype, "int")
        return f"{c.helper(f'{name}_{suffix}')}({a}, {b})"
    return scalar


def _integer_operands(name):
    def check(x, y):
        if result_dtype(x, y) == "bool":
            raise TypeError(f"np.{name} of two booleans gives int8 in NumPy, which graphc does not support; "
                            f"cast them first (at {user_line()})")
    return check


_FMOD_SCALAR = "NumPy's floor division needs fmod, which has no SIMD form (LLVM's frem is a libm call per lane)"
_floordiv_node = _binary("floordiv", np.floor_divide, _divmod_scalar("floor_divide"), (None, None), "floor_divide",
                         scalar_reason=_FMOD_SCALAR)
_mod_node = _binary("mod", np.remainder, _divmod_scalar("remainder"),
                    (lambda g, x, y, out: g, lambda g, x, y, out: negative(g) * floor_divide(x, y)), "remainder",
                    scalar_reason=_FMOD_SCALAR)


def _floor_divide(x, y):
    _integer_operands("floor_divide")(x, y)
    return _floordiv_node(x, y)


def _remainder(x, y):
    _integer_operands("remainder")(x, y)
    return _mod_node(x, y)


floor_divide = _public("floor_divide", _floor_divide, "``x // y`` rounded toward -inf, as ``np.floor_divide``: "
                       "integers divided by 0 give 0, floats inf or nan (zero gradient).", "floor_divide")
remainder = _public("remainder", _remainder, "``x % y`` with the sign of ``y``, as ``np.remainder`` "
                    "(``np.mod``): 0 for an integer divisor of 0, nan for a float one.", "remainder")
mod = remainder


@implements(ufunc="divmod")
def divmod(x, y):  # noqa: A001 - NumPy's name
    """``(x // y, x % y)``, as ``np.divmod``."""
    return floor_divide(x, y), remainder(x, y)

# what the other op families call (through graphc.ops.prims)
export(
    absolute=absolute, add=add, cast=cast, divide=divide, equal=equal, exp=exp, greater=greater,
    iota=iota, less=less, less_equal=less_equal, log=log, logical_and=logical_and,
    logical_not=logical_not, logical_or=logical_or, multiply=multiply, not_equal=not_equal,
    power=power, sqrt=sqrt, subtract=subtract, where=where,
)
