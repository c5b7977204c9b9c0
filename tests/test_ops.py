"""Every op: compiled == interpreter == direct NumPy.

Every case below is checked by the interpreter against NumPy (on the graph as
traced and after the default passes; cheap, no compile). Cases marked ``jit``
(the default) are also compiled: they are split into chunks of at most CHUNK
cases, each chunk ONE graph (shapes are baked into generated code and every
compile costs Numba time), checked on fixed random inputs (broadcasting, size-1
and empty dimensions, every dtype the op takes) and then, with hypothesis, on
new values of the same shapes, which reuse the compiled code.

``test_every_registered_op_is_covered`` fails when an op is added to the
registry without a case here (and when an op is never compiled here).
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from graphc.ops import bitwise
from graphc.ops import registry
from graphc.trace import bind
from conftest import Case, assert_same, check, check_cases, check_group, check_interpreted, raw_graph

R = np.random.default_rng(1234)


def A(shape, dtype="float32", lo=-3.0, hi=3.0):
    """A random array (or NumPy scalar for shape ()) in [lo, hi]."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return R.random(shape) < 0.5
    if dtype.kind in "iu":
        return R.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)
    return R.uniform(lo, hi, size=shape).astype(dtype)


def P(shape, dtype="float32"):
    """Positive random values (log, sqrt, pow bases)."""
    return A(shape, dtype, 0.1, 3.0)


# ------------------------------------------------------------------------------------
# the cases, grouped; each group is one compiled graph
# ------------------------------------------------------------------------------------
GROUPS: dict[str, list[Case]] = {}


def group(name):
    GROUPS[name] = []
    return GROUPS[name]


def np_sigmoid(x):
    return (1 / (1 + np.exp(-x))).astype(x.dtype)


def np_relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


# -- unary elementwise --------------------------------------------------------------
UNARY = {
    # name: (traced function, NumPy reference, op, domain, compiled)
    "exp": (np.exp, None, "exp", A, True),
    "gc.exp": (gc.exp, np.exp, "exp", A, False),
    "log": (np.log, None, "log", P, True),
    "tanh": (np.tanh, None, "tanh", A, True),
    "gc.tanh": (gc.tanh, np.tanh, "tanh", A, False),
    "sin": (np.sin, None, "sin", A, True),
    "cos": (np.cos, None, "cos", A, True),
    "sqrt": (np.sqrt, None, "sqrt", P, True),
    "sigmoid": (gc.sigmoid, np_sigmoid, "sigmoid", A, True),
    "relu": (gc.relu, np_relu, "relu", A, True),
    "neg": (np.negative, None, "neg", A, True),
    "-x": (lambda x: -x, None, "neg", A, False),
    "+x": (lambda x: +x, None, (), A, False),
    "abs": (np.abs, None, "abs", A, True),
    "abs()": (lambda x: abs(x), None, "abs", A, False),
    "gc.abs": (gc.abs, np.abs, "abs", A, False),
    "sign": (np.sign, None, "sign", A, True),
    "square": (np.square, None, "mul", A, True),
    "gc.square": (gc.square, np.square, "mul", A, False),
    "stop_gradient": (gc.stop_gradient, lambda x: x.copy(), "stop_gradient", A, True),
}
# (dtype, shape, which cases compile)
for dtype, shape, jit in (("float32", (3, 4), "all"), ("float64", (2, 1, 3), "all"),
                          ("float32", (0, 3), ("exp", "relu", "sign")), ("float64", (), ("tanh", "abs", "sigmoid"))):
    cases = group(f"unary-{dtype}-{shape}")
    for name, (fn, ref, op, dom, compiled) in UNARY.items():
        ops = (op,) if isinstance(op, str) else op
        x = np.asarray(dom(shape, dtype))
        cases.append(Case(f"{name}:{dtype}{list(shape)}", fn, (x,), ref=ref, ops=ops,
                          jit=compiled and (jit == "all" or name in jit)))

# integer and bool inputs: same dtype for neg/abs/sign/relu, float64 for transcendental ones
cases = group("unary-int")
for dtype in ("int32", "int64"):
    x = A((5,), dtype, -4, 4)
    for name, fn, ref in (("neg", np.negative, None), ("abs", np.abs, None), ("sign", np.sign, None),
                          ("relu", gc.relu, np_relu), ("square", np.square, None)):
        cases.append(Case(f"{name}:{dtype}", fn, (x,), ref=ref, jit=dtype == "int32"))
    pos = A((5,), dtype, 1, 9)
    for name, fn in (("exp", np.exp), ("log", np.log), ("sqrt", np.sqrt), ("tanh", np.tanh), ("sin", np.sin)):
        cases.append(Case(f"{name}:{dtype}->f64", fn, (pos,), ops=("cast", name), jit=name == "log"))
cases.append(Case("sigmoid:int32->f64", gc.sigmoid, (A((5,), "int32"),),
                  ref=lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))))
cases.append(Case("abs:bool", np.abs, (A((5,), "bool"),)))
cases.append(Case("neg:bool is an error in NumPy too", lambda x: np.negative(x.astype(np.int32)), (A((5,), "bool"),),
                  jit=False))

# -- binary elementwise ----------------------------------------------------------------
BINARY = {
    # name: (function, op, domain of a, domain of b); operator spellings trace to the same ops
    "add": (np.add, "add", A, A), "+": (lambda a, b: a + b, "add", A, A),
    "sub": (np.subtract, "sub", A, A), "-": (lambda a, b: a - b, "sub", A, A),
    "mul": (np.multiply, "mul", A, A), "*": (lambda a, b: a * b, "mul", A, A),
    "div": (np.divide, "div", A, P), "/": (lambda a, b: a / b, "div", A, P),
    "pow": (np.power, "pow", P, A), "**": (lambda a, b: a ** b, "pow", P, A),
    "maximum": (np.maximum, "maximum", A, A), "gc.maximum": (gc.maximum, "maximum", A, A),
    "minimum": (np.minimum, "minimum", A, A), "gc.minimum": (gc.minimum, "minimum", A, A),
    "eq": (np.equal, "eq", A, A), "==": (lambda a, b: a == b, "eq", A, A),
    "ne": (np.not_equal, "ne", A, A), "!=": (lambda a, b: a != b, "ne", A, A),
    "lt": (np.less, "lt", A, A), "<": (lambda a, b: a < b, "lt", A, A),
    "le": (np.less_equal, "le", A, A), "<=": (lambda a, b: a <= b, "le", A, A),
    "gt": (np.greater, "gt", A, A), ">": (lambda a, b: a > b, "gt", A, A),
    "ge": (np.greater_equal, "ge", A, A), ">=": (lambda a, b: a >= b, "ge", A, A),
    "gc.add/sub/mul/div/pow": (lambda a, b: (gc.add(a, b), gc.subtract(a, b), gc.multiply(a, b),
                                             gc.divide(a, b), gc.power(abs(a), b), gc.equal(a, b),
                                             gc.not_equal(a, b), gc.less(a, b), gc.less_equal(a, b),
                                             gc.greater(a, b), gc.greater_equal(a, b)), (), A, P),
}
# broadcasting, size-1 and empty dimensions, 0-d operands
SHAPE_PAIRS = [((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((0, 3), (1, 3)), ((), (2,)), ((3, 4), (3, 4)), ((1,), ())]
for dtype, rotate in (("float32", 0), ("float64", 3)):
    cases = group(f"binary-{dtype}")
    for k, (name, (fn, op, da, db)) in enumerate(BINARY.items()):
        for j, (sa, sb) in enumerate(SHAPE_PAIRS):
            a, b = np.asarray(da(sa, dtype)), np.asarray(db(sb, dtype))
            if name in ("eq", "ne", "==", "!=", "le", "ge"):
                a, b = a.round(), b.round()  # ties happen
            # each spelled-out op compiles for one shape pair (rotating), the rest is interpreted
            jit = name[0].isalpha() and not name.startswith("gc.") and (k // 2 + rotate) % len(SHAPE_PAIRS) == j
            cases.append(Case(f"{name}:{dtype}{list(sa)}{list(sb)}", fn, (a, b), ops=(op,) if op else (), jit=jit))

# integer binary ops, and mixed dtypes (NumPy 2 promotion inserts casts)
cases = group("binary-int-mixed")
for dtype in ("int32", "int64"):
    a, b = A((3, 4), dtype, -5, 5), A((4,), dtype, 1, 5)
    for name in ("add", "subtract", "multiply", "maximum", "minimum", "less", "greater_equal", "equal"):
        cases.append(Case(f"{name}:{dtype}", getattr(np, name), (a, b),
                          jit=dtype == "int32" and name in ("add", "subtract", "multiply", "maximum", "less")))
    cases.append(Case(f"divide:{dtype}->f64", np.divide, (a, b), ops=("cast", "div"), jit=True))
    cases.append(Case(f"power:{dtype}", np.power, (a, A((4,), dtype, 0, 3)), jit=dtype == "int64"))
for da, db in (("float32", "float64"), ("int32", "float32"), ("int32", "int64"), ("bool", "float32"),
               ("int64", "float32"), ("bool", "int32")):
    a, b = A((3, 4), da), A((4,), db)
    for name in ("add", "multiply", "maximum", "less"):
        cases.append(Case(f"{name}:{da}+{db}", getattr(np, name), (a, b), ops=("cast",), jit=name == "add"))
bools = (A((3, 4), "bool"), A((4,), "bool"))
cases.append(Case("add:bool", np.add, bools))
cases.append(Case("mul:bool", np.multiply, bools))
cases.append(Case("maximum:bool", np.maximum, bools))
cases.append(Case("eq:bool", np.equal, bools, jit=False))

# weak Python scalars (NumPy 2: they never upcast an array)
cases = group("weak-scalars")
for dtype in ("float32", "float64", "int32", "int64"):
    x = A((2, 3), dtype, 1, 4)
    jit = dtype in ("float32", "int32")
    cases += [
        Case(f"x*2.0:{dtype}", lambda x: x * 2.0, (x,), jit=jit),
        Case(f"2.0*x:{dtype}", lambda x: 2.0 * x, (x,), jit=False),
        Case(f"x+1:{dtype}", lambda x: x + 1, (x,), jit=jit),
        Case(f"1-x:{dtype}", lambda x: 1 - x, (x,), jit=False),
        Case(f"x/2:{dtype}", lambda x: x / 2, (x,), jit=jit),
        Case(f"1/x:{dtype}", lambda x: 1 / x, (x,), jit=False),
        Case(f"x**2:{dtype}", lambda x: x ** 2, (x,), jit=jit),
        Case(f"2**x:{dtype}", lambda x: 2 ** x, (x,), jit=False),
        Case(f"x>1.5:{dtype}", lambda x: x > 1.5, (x,), jit=False),
        Case(f"maximum(x,0.5):{dtype}", lambda x: np.maximum(x, 0.5), (x,), jit=False),
        Case(f"where(x>2,x,0.0):{dtype}", lambda x: np.where(x > 2, x, 0.0), (x,), jit=jit),
        Case(f"clip(x,1.5,3):{dtype}", lambda x: np.clip(x, 1.5, 3), (x,), jit=False),
        Case(f"x*np.float64(2):{dtype}", lambda x: x * np.float64(2), (x,), jit=False),
        Case(f"x+True:{dtype}", lambda x: x + True, (x,), jit=False),
    ]
# traced Python scalars are weak too: f(x_f32, 2.0) stays float32
for dtype in ("float32", "int32"):
    x = A((2, 3), dtype, 1, 4)
    cases.append(Case(f"traced float scalar:{dtype}", lambda x, s: x * s, (x, 2.5)))
    cases.append(Case(f"traced int scalar:{dtype}", lambda x, s: x + s, (x, 3)))
    cases.append(Case(f"scalar-only:{dtype}", lambda x, s, t: (s * t + 1.0) * x, (x, 0.5, 3)))

# -- logic -----------------------------------------------------------------------------
cases = group("logic")
p, q, r = A((3, 4), "bool"), A((4,), "bool"), A((), "bool")
for name in ("logical_and", "logical_or", "logical_xor"):
    op = {"logical_and": "and", "logical_or": "or", "logical_xor": "xor"}[name]
    cases.append(Case(f"{name}", getattr(np, name), (p, q), ops=(op,)))
    cases.append(Case(f"{name}:gc", getattr(gc, name), (p, np.asarray(r)), ref=getattr(np, name), ops=(op,), jit=False))
    cases.append(Case(f"{name}:float", getattr(np, name), (A((3, 4), "float32", -1, 1).round(), A((4,), "int32", -1, 1)),
                      ops=(op, "cast"), jit=name == "logical_and"))
cases.append(Case("logical_not", np.logical_not, (p,), ops=("not",)))
cases.append(Case("gc.logical_not", gc.logical_not, (p,), ref=np.logical_not, ops=("not",), jit=False))
cases.append(Case("logical_not:float", np.logical_not, (A((3, 4), "float64", -1, 1).round(),), ops=("not",)))
cases.append(Case("&", lambda a, b: a & b, (p, q), ops=("and",), jit=False))
cases.append(Case("|", lambda a, b: a | b, (p, q), ops=("or",), jit=False))
cases.append(Case("^", lambda a, b: a ^ b, (p, q), ops=("xor",), jit=False))
cases.append(Case("~", lambda a: ~a, (p,), ops=("not",), jit=False))
cases.append(Case("(x>0)&(x<1)", lambda x: (x > 0) & (x < 1), (A((3, 4)),), ops=("and", "gt", "lt")))
cases.append(Case("empty and", np.logical_and, (A((0, 2), "bool"), A((2,), "bool"))))

# -- where, cast, clip ------------------------------------------------------------------------
cases = group("where")
for dtype in ("float32", "float64", "int32", "int64", "bool"):
    c, a, b = A((3, 4), "bool"), A((3, 4), dtype), A((4,), dtype)
    cases.append(Case(f"where:{dtype}", np.where, (c, a, b), ops=("where",), jit=dtype != "int64"))
cases.append(Case("gc.where", gc.where, (A((3, 1), "bool"), A((4,)), A((3, 1))), ref=np.where, ops=("where",)))
cases.append(Case("where mixed", np.where, (A((3, 4), "bool"), A((3, 4), "int32"), A((4,), "float32"))))
cases.append(Case("where nonbool cond", np.where, (A((3, 4), "float32", -1, 1).round(), A((4,)), A((3, 4)))))
cases.append(Case("where empty", np.where, (A((0, 4), "bool"), A((4,)), A((1, 4)))))
cases.append(Case("where 0-d", np.where, (np.asarray(A((), "bool")), np.asarray(A(())), np.asarray(A(()))), jit=False))

cases = group("cast")
for src in ("float32", "float64", "int32", "int64", "bool"):
    x = A((2, 5), src, -4, 4)
    for dst in ("float32", "float64", "int32", "int64", "bool"):
        cases.append(Case(f"astype:{src}->{dst}", lambda x, dst=dst: x.astype(dst), (x,),
                          ops=("cast",) if src != dst else (), jit=src != dst and "int64" not in (src, dst)))
    cases.append(Case(f"gc.cast:{src}", lambda x: gc.cast(x, np.float32), (x,),
                      ref=lambda x: x.astype(np.float32), jit=False))
    cases.append(Case(f"gc.astype:{src}", lambda x: gc.astype(x, "int64"), (x,),
                      ref=lambda x: x.astype(np.int64), jit=False))
cases.append(Case("astype negative float -> int truncates", lambda x: x.astype(np.int32),
                  (np.array([-2.7, -0.5, 0.5, 2.7, 1e9], np.float64),)))

cases = group("clip")
for dtype in ("float32", "float64", "int32"):
    x = A((3, 4), dtype, -5, 5)
    jit = dtype == "float32"
    cases += [
        Case(f"clip scalars:{dtype}", lambda x: np.clip(x, -2, 2), (x,), ops=("clip",), jit=dtype != "float64"),
        Case(f"clip arrays:{dtype}", np.clip, (x, A((4,), dtype, -4, -1), A((3, 1), dtype, 1, 4)), ops=("clip",),
             jit=dtype != "int32"),
        Case(f"clip lo only:{dtype}", lambda x: np.clip(x, -1, None), (x,), ops=("maximum",), jit=jit),
        Case(f"clip hi only:{dtype}", lambda x: np.clip(x, None, 1), (x,), ops=("minimum",), jit=jit),
        Case(f"clip lo>hi:{dtype}", lambda x: np.clip(x, 2, -2), (x,), ops=("clip",), jit=jit),
        Case(f"clip kw:{dtype}", lambda x: np.clip(x, min=-1, max=1), (x,), ops=("clip",), jit=False),
        Case(f".clip:{dtype}", lambda x: x.clip(0, 1), (x,), ops=("clip",), jit=False),
        Case(f"gc.clip:{dtype}", lambda x: gc.clip(x, -1, 1), (x,), ref=lambda x: np.clip(x, -1, 1), jit=False),
    ]

# -- reductions ---------------------------------------------------------------------------
REDUCTIONS = {"sum": np.sum, "mean": np.mean, "prod": np.prod, "max": np.max, "min": np.min}
AXES = [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2)]
# which (axis, keepdims) combinations compile, per dtype
REDUCE_JIT = {"float32": {(None, False), ((0, 2), True), (-1, False)},
              "float64": {(1, True), ((2, 0), False)}}
for dtype in ("float32", "float64"):
    cases = group(f"reduce-{dtype}")
    x = A((2, 3, 4), dtype, 0.5, 1.5)  # near 1 so prod stays tame
    tol = dict(atol=1e-5) if dtype == "float32" else None
    for name, fn in REDUCTIONS.items():
        for axis in AXES:
            for keepdims in (False, True):
                cases.append(Case(f"{name}(axis={axis}, keepdims={keepdims}):{dtype}",
                                  lambda x, fn=fn, axis=axis, keepdims=keepdims: fn(x, axis=axis, keepdims=keepdims),
                                  (x,), ops=(name,), tol=tol, jit=(axis, keepdims) in REDUCE_JIT[dtype]))
        cases.append(Case(f"x.{name}():{dtype}", lambda x, name=name: getattr(x, name)(), (x,), ops=(name,), jit=False))
        cases.append(Case(f"x.{name}(1):{dtype}", lambda x, name=name: getattr(x, name)(1), (x,), ops=(name,), jit=False))
        cases.append(Case(f"gc.{name}:{dtype}", lambda x, name=name: getattr(gc, name)(x, axis=-1),
                          (x,), ref=lambda x, fn=fn: fn(x, axis=-1), ops=(name,), jit=False))
        if name in ("max", "min"):
            cases.append(Case(f"np.a{name}:{dtype}", lambda x, name=name: getattr(np, "a" + name)(x, 0), (x,), jit=False))
        # size-1 dims, 0-d and 1-d inputs, kept empty dimensions
        cases.append(Case(f"{name} size-1:{dtype}", lambda x, fn=fn: fn(x, axis=1), (A((4, 1, 2), dtype),),
                          jit=dtype == "float64"))
        cases.append(Case(f"{name} 0-d:{dtype}", fn, (np.asarray(A((), dtype)),), jit=dtype == "float64"))
        if name != "mean":  # np.mean(0-d, axis=0) is an AxisError; graphc accepts it
            cases.append(Case(f"{name} 0-d axis:{dtype}", lambda x, fn=fn: (fn(x, axis=0), fn(x, axis=-1, keepdims=True)),
                              (np.asarray(A((), dtype)),), jit=False))
        cases.append(Case(f"{name} 1-d:{dtype}", fn, (A((7,), dtype),), jit=dtype == "float32"))
        cases.append(Case(f"{name} keep empty:{dtype}", lambda x, fn=fn: fn(x, axis=1), (A((0, 3), dtype),),
                          jit=dtype == "float32" and name in ("sum", "max")))
    # empty reduced axes: sum -> 0, prod -> 1, mean -> nan (identity-less max/min raise, see test_errors)
    for name in ("sum", "prod", "mean"):
        cases.append(Case(f"{name} over empty:{dtype}", lambda x, name=name: REDUCTIONS[name](x, axis=0),
                          (A((0, 3), dtype),), jit=dtype == "float32"))
        cases.append(Case(f"{name} all empty:{dtype}", REDUCTIONS[name], (A((0, 3), dtype),), jit=False))
    for name, fn in (("argmax", np.argmax), ("argmin", np.argmin)):
        for axis in (None, 0, 1, -1):
            cases.append(Case(f"{name}(axis={axis}):{dtype}", lambda x, fn=fn, axis=axis: fn(x, axis=axis),
                              (x,), ops=(name,), jit=(axis is None) == (dtype == "float32")))
        cases.append(Case(f"{name} keepdims:{dtype}", lambda x, fn=fn: fn(x, axis=2, keepdims=True), (x,),
                          jit=dtype == "float32"))
        cases.append(Case(f"x.{name}(0):{dtype}", lambda x, name=name: getattr(x, name)(0), (x,), jit=False))
        cases.append(Case(f"gc.{name}:{dtype}", lambda x, name=name: getattr(gc, name)(x, axis=1), (x,),
                          ref=lambda x, fn=fn: fn(x, axis=1), jit=False))
        ties = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [0, 0, 5, 5]], dtype)
        cases.append(Case(f"{name} ties:{dtype}", lambda x, fn=fn: fn(x, axis=1), (ties,)))
        cases.append(Case(f"{name} flat keepdims:{dtype}", lambda x, fn=fn: fn(x, keepdims=True), (x,),
                          jit=dtype == "float64"))
        cases.append(Case(f"{name} 0-d:{dtype}", lambda x, fn=fn: (fn(x), fn(x, axis=0), fn(x, keepdims=True)),
                          (np.asarray(A((), dtype)),), jit=False))

    # np.var divides by a ``count`` node (the element count, generic in a symbolic batch size)
    cases.append(Case(f"var ddof:{dtype}", lambda x: (np.var(x, axis=(0, 2), ddof=1), np.std(x, ddof=1.5)), (x,),
                      ops=("count",), jit=dtype == "float32"))
    cases.append(Case(f"var over empty:{dtype}", lambda x: np.var(x, axis=0), (A((0, 3), dtype),), jit=False))

cases = group("reduce-int-bool")
for dtype in ("int32", "int64", "bool"):
    x = A((3, 4), dtype, -3, 3)
    for name, fn in REDUCTIONS.items():
        for axis in (None, 0, -1):
            cases.append(Case(f"{name}(axis={axis}):{dtype}", lambda x, fn=fn, axis=axis: fn(x, axis=axis), (x,),
                              jit=axis == 0 and (dtype == "int32" or name in ("sum", "max"))))
    for fn in (np.argmax, np.argmin):
        cases.append(Case(f"{fn.__name__}:{dtype}", lambda x, fn=fn: fn(x, axis=1), (x,), jit=dtype == "int64"))
        cases.append(Case(f"{fn.__name__} flat:{dtype}", fn, (x,), jit=dtype == "bool"))
    cases.append(Case(f"sum(dtype=float32):{dtype}", lambda x: np.sum(x, axis=0, dtype=np.float32), (x,),
                      jit=dtype == "int64"))
    cases.append(Case(f"mean(dtype=float32):{dtype}", lambda x: np.mean(x, dtype=np.float32), (x,), jit=False))

# -- scans and sorts (more cases in tests/test_reductions_numpy.py) ---------------------------
cases = group("scan-sort")
for dtype in ("float32", "int32"):
    x = A((3, 4), dtype)
    cases += [
        Case(f"cumsum:{dtype}", lambda x: (np.cumsum(x, axis=0), np.cumsum(x)), (x,), ops=("cumsum",)),
        Case(f"cumprod:{dtype}", lambda x: np.cumprod(x, axis=1), (x,), ops=("cumprod",)),
        Case(f"sort:{dtype}", lambda x: (np.sort(x), np.sort(x, axis=0)), (x,), ops=("sort",)),
        Case(f"argsort:{dtype}", lambda x: np.argsort(x, axis=0), (x,), ref=lambda x: np.argsort(x, axis=0, kind="stable"),
             ops=("argsort",)),
    ]

# -- shape ops ------------------------------------------------------------------------------
cases = group("shape")
for dtype in ("float32", "int64", "bool"):
    x = A((2, 3, 4), dtype)
    J = dtype == "float32"
    cases += [
        Case(f"reshape:{dtype}", lambda x: np.reshape(x, (6, 4)), (x,), ops=("reshape",)),
        Case(f"reshape -1:{dtype}", lambda x: x.reshape(4, -1), (x,), ops=("reshape",), jit=J),
        Case(f"reshape tuple:{dtype}", lambda x: x.reshape((-1,)), (x,), ops=("reshape",), jit=False),
        Case(f"ravel:{dtype}", np.ravel, (x,), jit=False),
        Case(f"flatten:{dtype}", lambda x: x.flatten(), (x,), jit=False),
        Case(f"transpose:{dtype}", np.transpose, (x,), ops=("transpose",)),
        Case(f"transpose perm:{dtype}", lambda x: np.transpose(x, (1, 0, 2)), (x,), ops=("transpose",), jit=J),
        Case(f"transpose neg perm:{dtype}", lambda x: np.transpose(x, (-1, 0, 1)), (x,), jit=False),
        Case(f".transpose(*):{dtype}", lambda x: x.transpose(2, 0, 1), (x,), jit=J),
        Case(f".transpose(tuple):{dtype}", lambda x: x.transpose((0, 2, 1)), (x,), jit=False),
        Case(f".T:{dtype}", lambda x: x.T, (x,), jit=False),
        Case(f".mT:{dtype}", lambda x: x.mT, (x,), ref=lambda x: np.swapaxes(x, -1, -2), jit=J),
        Case(f"swapaxes:{dtype}", lambda x: np.swapaxes(x, 0, 2), (x,), jit=False),
        Case(f"expand_dims:{dtype}", lambda x: np.expand_dims(x, 1), (x,), jit=J),
        Case(f"expand_dims -1:{dtype}", lambda x: np.expand_dims(x, -1), (x,), jit=False),
        Case(f"expand_dims tuple:{dtype}", lambda x: np.expand_dims(x, (0, 4)), (x,), jit=False),
        Case(f"gc.expand_dims:{dtype}", lambda x: gc.expand_dims(x, 0), (x,), ref=lambda x: np.expand_dims(x, 0),
             jit=False),
        Case(f"squeeze:{dtype}", np.squeeze, (A((1, 3, 1, 2), dtype),), jit=J),
        Case(f"squeeze axis:{dtype}", lambda x: np.squeeze(x, axis=2), (A((1, 3, 1, 2), dtype),), jit=False),
        Case(f"squeeze neg axis:{dtype}", lambda x: x.squeeze(-2), (A((1, 3, 1, 2), dtype),), jit=False),
        Case(f"broadcast_to:{dtype}", lambda x: np.broadcast_to(x, (5, 2, 3, 4)), (x,), ops=("broadcast_to",)),
        Case(f"broadcast_to size-1:{dtype}", lambda x: np.broadcast_to(x, (3, 4)), (A((3, 1), dtype),),
             ops=("broadcast_to",), jit=J),
        Case(f"gc.broadcast_to:{dtype}", lambda x: gc.broadcast_to(x, (2, 4)), (A((4,), dtype),),
             ref=lambda x: np.broadcast_to(x, (2, 4)).copy(), jit=False),
        Case(f"concatenate:{dtype}", lambda x, y: np.concatenate([x, y]), (x, A((1, 3, 4), dtype)),
             ops=("concatenate",)),
        Case(f"concatenate axis 1:{dtype}", lambda x, y: np.concatenate((x, y, x), axis=1), (x, A((2, 1, 4), dtype)),
             jit=J),
        Case(f"concatenate axis -1:{dtype}", lambda x, y: np.concatenate([x, y], axis=-1), (x, A((2, 3, 2), dtype)),
             jit=False),
        Case(f"concatenate None:{dtype}", lambda x, y: np.concatenate([x, y], axis=None), (x, A((5,), dtype)),
             jit=False),
        Case(f"concatenate empty:{dtype}", lambda x, y: np.concatenate([x, y]), (A((0, 4), dtype), A((2, 4), dtype)),
             jit=J),
        Case(f"stack:{dtype}", lambda x, y: np.stack([x, y]), (x, A((2, 3, 4), dtype)), ops=("concatenate",), jit=False),
        Case(f"stack -1:{dtype}", lambda x, y: np.stack([x, y, x], axis=-1), (x, A((2, 3, 4), dtype)), jit=J),
        Case(f"hstack:{dtype}", lambda x, y: np.hstack([x, y]), (A((3,), dtype), A((2,), dtype)), jit=False),
        Case(f"vstack:{dtype}", lambda x, y: np.vstack([x, y]), (A((3,), dtype), A((2, 3), dtype)), jit=False),
        Case(f"gc.concatenate:{dtype}", lambda x, y: gc.concatenate([x, y], axis=1), (A((2, 2), dtype), A((2, 3), dtype)),
             ref=lambda x, y: np.concatenate([x, y], axis=1), jit=False),
        Case(f"gc.stack:{dtype}", lambda x, y: gc.stack([x, y], axis=1), (A((2, 2), dtype), A((2, 2), dtype)),
             ref=lambda x, y: np.stack([x, y], axis=1), jit=False),
        Case(f"gc.reshape/transpose/squeeze/ravel:{dtype}",
             lambda x: (gc.reshape(x, (3, 8)), gc.transpose(x), gc.squeeze(x[None]), gc.ravel(x), gc.swapaxes(x, 0, 1)),
             (x,), ref=lambda x: (x.reshape(3, 8), x.T, x, x.ravel(), x.swapaxes(0, 1)), jit=False),
    ]
cases += [
    Case("concatenate promotes", lambda x, y: np.concatenate([x, y]), (A((2, 3), "int32"), A((1, 3), "float32"))),
    Case("concatenate dtype", lambda x, y: np.concatenate([x, y], dtype=np.float64), (A((2, 3)), A((1, 3))), jit=False),
    Case("reshape 0-d", lambda x: x.reshape(1, 1), (np.asarray(A(())),)),
    Case("reshape to 0-d", lambda x: x.reshape(()), (A((1, 1)),)),
    Case("reshape empty", lambda x: x.reshape(3, 0, 2), (A((0, 6)),)),
    Case("transpose empty", lambda x: x.T, (A((0, 3)),)),
    Case("broadcast 0-d", lambda x: np.broadcast_to(x, (2, 3)), (np.asarray(A(())),)),
    Case("transpose of transpose", lambda x: (x.T + 1).T, (A((2, 3)),)),
    Case("reshape of non-contiguous result", lambda x: x.T.reshape(-1), (A((2, 3)),)),
]

# -- indexing ---------------------------------------------------------------------------------
cases = group("indexing")
INDEX_KEYS = [
    ("[1]", 1), ("[-1]", -1), ("[1:3]", slice(1, 3)), ("[::2]", slice(None, None, 2)),
    ("[::-1]", slice(None, None, -1)), ("[3:0:-2]", slice(3, 0, -2)), ("[-3:]", slice(-3, None)),
    ("[10:]", slice(10, None)), ("[1,2]", (1, 2)), ("[1,2,3]", (1, 2, 3)), ("[-1,-2,-3]", (-1, -2, -3)),
    ("[:,1]", (slice(None), 1)), ("[None]", None), ("[:,None,1:]", (slice(None), None, slice(1, None))),
    ("[...,0]", (Ellipsis, 0)), ("[0,...]", (0, Ellipsis)), ("[...,None]", (Ellipsis, None)),
    ("[1,...,::-2]", (1, Ellipsis, slice(None, None, -2))), ("[...]", Ellipsis), ("[:]", slice(None)),
    ("[np.int64(2)]", np.int64(2)), ("[None,1,None,:2]", (None, 1, None, slice(None, 2))),
    ("[idx]", np.array([0, 2, -1])), ("[list]", [3, 0]), ("[idx2d]", np.array([[0, 1], [3, 3]])),
    ("[1,idx]", (1, np.array([4, 0, 1]))), ("[:,idx]", (slice(None), np.array([4, -5]))),
    ("[idx,idx]", (np.array([0, 1, 3]), np.array([4, 4, 0]))),
    ("[idx,idx bcast]", (np.array([[0], [3]]), np.array([1, 2, 3]))),
    ("[:,idx,idx]", (slice(None), np.array([1, 2]), np.array([5, 0]))),
    ("[idx,1:3]", (np.array([2, 0]), slice(1, 3))), ("[...,idx]", (Ellipsis, np.array([1, 1]))),
    ("[1:3,idx]", (slice(1, 3), np.array([0, 4]))), ("[empty idx]", np.zeros(0, np.int64)),
    ("[int32 idx]", np.array([1, 2], np.int32)),
]
INDEX_JIT = {"[1]", "[-1]", "[::-1]", "[3:0:-2]", "[1,2,3]", "[:,None,1:]", "[1,...,::-2]", "[None,1,None,:2]",
             "[idx]", "[idx2d]", "[1,idx]", "[:,idx]", "[idx,idx bcast]", "[:,idx,idx]", "[1:3,idx]",
             "[empty idx]", "[int32 idx]", "[10:]"}
for dtype in ("float32", "int32"):
    x = A((4, 5, 6), dtype)
    J = dtype == "float32"
    for label, key in INDEX_KEYS:
        ops = {"[1]": ("index",), "[1,2,3]": ("index",), "[1:3]": ("slice",), "[::-1]": ("slice",),
               "[idx]": ("gather",)}.get(label, ())
        cases.append(Case(f"x{label}:{dtype}", lambda x, key=key: x[key], (x,), ops=ops,
                          jit=label in INDEX_JIT if J else label in ("[1,2]", "[idx,idx]", "[::2]")))
    idx = np.array([[3, 0], [1, -1]])
    cases.append(Case(f"x[traced idx]:{dtype}", lambda x, i: x[i], (x, idx), ops=("gather",)))
    cases.append(Case(f"x[:,traced idx]:{dtype}", lambda x, i: x[:, i], (x, np.array([4, 0, -2], np.int32)),
                      ops=("gather",), jit=J))
    cases.append(Case(f"x[traced, traced]:{dtype}", lambda x, i, j: x[i, j], (x, np.array([0, 3]), np.array([[1], [4]])),
                      jit=J))
    cases.append(Case(f"iterate:{dtype}", lambda x: [r for r in x[:2]], (x,), ref=lambda x: list(x[:2]), jit=False))
    cases.append(Case(f"take:{dtype}", lambda x: np.take(x, [1, 3, -1], axis=1), (x,), ops=("gather",), jit=J))
    cases.append(Case(f"take flat:{dtype}", lambda x: np.take(x, [[0, 7], [100, 119]]), (x,), jit=J))
    cases.append(Case(f"take neg axis:{dtype}", lambda x: np.take(x, np.array([5, 0]), axis=-1), (x,), jit=False))
    cases.append(Case(f"x.take:{dtype}", lambda x: x.take([2, 0], 0), (x,), ref=lambda x: x.take([2, 0], 0), jit=False))
    cases.append(Case(f"gc.take:{dtype}", lambda x, i: gc.take(x, i, axis=2), (x, np.array([[5], [1]])),
                      ref=lambda x, i: np.take(x, i, axis=2), jit=False))
    cases.append(Case(f"take_along_axis:{dtype}", lambda x, i: np.take_along_axis(x, i, axis=1),
                      (x, A((4, 2, 6), "int64", 0, 4)), ops=("gather", "iota")))
    cases.append(Case(f"take_along_axis bcast:{dtype}", lambda x, i: np.take_along_axis(x, i, axis=-1),
                      (x, A((1, 5, 3), "int64", -6, 5)), jit=J))
    cases.append(Case(f"gc.take_along_axis:{dtype}", lambda x, i: gc.take_along_axis(x, i, 0),
                      (x, A((2, 5, 6), "int32", 0, 3)), ref=lambda x, i: np.take_along_axis(x, i, 0), jit=False))
    cases.append(Case(f"take_along_axis argmax:{dtype}",
                      lambda x: np.take_along_axis(x, np.argmax(x, axis=2)[..., None], axis=2), (x,), jit=J))
    cases.append(Case(f"gc.gather:{dtype}", lambda x, i: gc.gather(x, i, axis=1), (x, np.array([4, 0])),
                      ref=lambda x, i: x[:, i], jit=False))


def np_one_hot(x, n, dtype=np.float32):
    return (x[..., None] == np.arange(n)).astype(dtype)


cases = group("one_hot-iota-scatter")
cases.append(Case("one_hot", lambda y: gc.one_hot(y, 5), (A((6,), "int64", 0, 4),),
                  ref=lambda y: np_one_hot(y, 5), ops=("iota", "eq", "cast", "reshape")))
cases.append(Case("one_hot 2-d int32 f64", lambda y: gc.one_hot(y, 3, dtype=np.float64), (A((2, 3), "int32", 0, 2),),
                  ref=lambda y: np_one_hot(y, 3, np.float64)))
cases.append(Case("one_hot out of range", lambda y: gc.one_hot(y, 3), (np.array([0, 3, -1, 2]),),
                  ref=lambda y: np_one_hot(y, 3), jit=False))
cases.append(Case("one_hot 0-d", lambda y: gc.one_hot(y, 4), (np.asarray(np.int64(2)),), ref=lambda y: np_one_hot(y, 4)))
cases.append(Case("iota", lambda x: x + gc.iota((3, 4), axis=1, dtype=np.float32), (A((3, 4)),),
                  ref=lambda x: x + np.arange(4, dtype=np.float32), ops=("iota",)))
cases.append(Case("iota neg axis", lambda x: x * gc.iota((2, 3), axis=-2), (A((2, 3), "int64"),),
                  ref=lambda x: x * np.arange(2)[:, None]))


cases = group("bitwise")
_BITS = np.array([0, 1, -1, 2**62 + 12345, -(2**63), 2**63 - 1, -987654321], np.int64)
cases.append(Case("bitxor", lambda a, b: bitwise.bitxor(a, b), (_BITS, _BITS[::-1].copy()),
                  ref=np.bitwise_xor, ops=("bitxor",)))
for _shift in (1, 30, 63):
    cases.append(Case(f"lshr {_shift}", lambda a, s=_shift: bitwise.lshr(a, s), (_BITS,),
                      ref=lambda a, s=_shift: (a.view(np.uint64) >> np.uint64(s)).view(np.int64),
                      ops=("lshr",)))


# scatter primitives (made by vjp rules; checked directly here)
def _scatter_add(g, i):
    return bind("scatter_add", g, i, shape=(5, 3), axis=0)


def _np_scatter_add(g, i):
    out = np.zeros((5, 3), g.dtype)
    np.add.at(out, i, g)
    return out


def _scatter_slice(g):
    return bind("scatter_slice", g, shape=(4, 6), slices=((1, 4, 2), (5, -1, -2)))


def _np_scatter_slice(g):
    out = np.zeros((4, 6), g.dtype)
    out[1:4:2, 5::-2] = g
    return out


for dtype in ("float32", "float64"):
    cases.append(Case(f"scatter_add:{dtype}", _scatter_add, (A((4, 3), dtype), np.array([0, 4, 0, -1])),
                      ref=_np_scatter_add, ops=("scatter_add",)))
    cases.append(Case(f"scatter_slice:{dtype}", _scatter_slice, (A((2, 3), dtype),),
                      ref=_np_scatter_slice, ops=("scatter_slice",)))

# -- matmul ---------------------------------------------------------------------------------
MM_TOL = dict(rtol=1e-5, atol=1e-5)
MM_SHAPES = [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((2, 4), (4, 3)), ((5, 2, 4), (4, 3)),
             ((2, 4), (5, 4, 3)), ((5, 1, 2, 4), (3, 4, 2)), ((5, 2, 4), (4,)), ((4,), (5, 4, 2)),
             ((1, 4), (4, 1)), ((0, 4), (4, 3)), ((2, 0), (0, 3)), ((3, 2, 4), (3, 4, 1))]
MM_JIT = {"float32": range(len(MM_SHAPES)), "float64": (0, 3, 6, 11), "int32": (3, 6, 0), "int64": (4, 11)}
cases = group("matmul")
for dtype in ("float32", "float64", "int32", "int64"):
    for k, (sa, sb) in enumerate(MM_SHAPES):
        a, b = A(sa, dtype), A(sb, dtype)
        cases.append(Case(f"@:{dtype}{list(sa)}{list(sb)}", lambda a, b: a @ b, (a, b), ops=("matmul",), tol=MM_TOL,
                          jit=k in MM_JIT[dtype]))
cases = group("matmul-functions")
for dtype in ("float32", "float64", "int64"):
    x, y = A((3, 4), dtype), A((4, 2), dtype)
    v, w = A((4,), dtype), A((3,), dtype)
    J = dtype == "float64"
    cases += [
        Case(f"np.matmul:{dtype}", np.matmul, (x, y), tol=MM_TOL, jit=False),
        Case(f"gc.matmul:{dtype}", gc.matmul, (x, y), ref=np.matmul, tol=MM_TOL, jit=False),
        Case(f"np.dot 2d:{dtype}", np.dot, (x, y), tol=MM_TOL, jit=False),
        Case(f"np.dot 1d:{dtype}", np.dot, (v, v), tol=MM_TOL, jit=J),
        # np.dot np.asarray-s the 2: int64, so a float32 v gives float64, as in NumPy
        Case(f"np.dot scalar:{dtype}", lambda v: np.dot(v, 2), (v,), tol=MM_TOL, jit=False),
        Case(f"x.dot:{dtype}", lambda x, v: x.dot(v), (x, v), tol=MM_TOL, jit=J),
        Case(f"gc.dot:{dtype}", gc.dot, (v, x.T.copy()), ref=np.dot, tol=MM_TOL, jit=False),
        Case(f"np.outer:{dtype}", np.outer, (w, v), tol=MM_TOL, jit=J),
        Case(f"gc.outer:{dtype}", gc.outer, (w, v), ref=np.outer, tol=MM_TOL, jit=False),
        Case(f"np.inner:{dtype}", np.inner, (v, v), tol=MM_TOL, jit=False),
        Case(f"np.vdot:{dtype}", np.vdot, (v, v), tol=MM_TOL, jit=False),
        Case(f"rmatmul const:{dtype}", lambda x: np.ones((2, 3), dtype) @ x, (x,), tol=MM_TOL, jit=J),
    ]
cases.append(Case("@ f32xf64", lambda a, b: a @ b, (A((2, 3), "float32"), A((3, 2), "float64")), tol=MM_TOL))
cases.append(Case("@ i32xf32", lambda a, b: a @ b, (A((2, 3), "int32"), A((3, 2), "float32")), tol=MM_TOL))
cases.append(Case("@ bool", lambda a, b: a @ b, (A((2, 3), "bool"), A((3, 2), "bool")), jit=False))
cases.append(Case("@ of views", lambda a, b: a.T @ b[::2], (A((3, 2)), A((6, 4))), tol=MM_TOL))


def _matmul_acc(ta, tb):  # c + op(a) @ op(b): made by autodiff for a loop's summed weight gradient
    flags = {k: True for k, on in (("transpose_a", ta), ("transpose_b", tb)) if on}
    return lambda c, a, b: bind("matmul_acc", c, a, b, **flags)


for dtype in ("float32", "float64"):
    for ta, tb in ((False, False), (True, False), (False, True), (True, True)):
        sa, sb = ((4, 3) if ta else (3, 4)), ((5, 4) if tb else (4, 5))
        args = (A((3, 5), dtype), A(sa, dtype), A(sb, dtype))
        cases.append(Case(f"matmul_acc:{dtype}:{ta:d}{tb:d}", _matmul_acc(ta, tb), args, ops=("matmul_acc",),
                          ref=lambda c, a, b, ta=ta, tb=tb: c + (a.T if ta else a) @ (b.T if tb else b), tol=MM_TOL))
cases.append(Case("matmul_acc:empty", _matmul_acc(True, False), (A((2, 3)), A((0, 2)), A((0, 3))),
                  ops=("matmul_acc",), ref=lambda c, a, b: c + a.T @ b, tol=MM_TOL))

# -- np.linalg decompositions (more cases, errors and gradients: tests/test_linalg_numpy.py) ----
def _gram(a):  # a well-conditioned symmetric positive definite matrix from any values in [-3, 3]
    return a @ np.swapaxes(a, -1, -2) + 3 * np.eye(a.shape[-1], dtype=a.dtype)


def _eigh_rebuilt(a):  # V diag(w) V^T: the symmetric matrix eigh read, whatever the vectors' signs
    w, v = np.linalg.eigh(a)
    return (v * w[..., None, :]) @ np.swapaxes(v, -1, -2)


def _svd_rebuilt(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    return (u * s[..., None, :]) @ vh, s


# the functions hold for any input values (test_compiled_random_values redraws them)
LA_TOL = dict(rtol=1e-4, atol=1e-4)
cases = group("linalg-decompositions")
cases += [
    Case("inv", lambda a: np.linalg.inv(_gram(a)), (A((2, 3, 3), "float64"),), tol=LA_TOL, ops=("inv",)),
    Case("det", np.linalg.det, (A((2, 3, 3), "float64"),), tol=LA_TOL, ops=("det",)),
    Case("slogdet", lambda a: np.linalg.slogdet(_gram(a)), (A((2, 3, 3), "float32"),), tol=LA_TOL, ops=("slogdet",)),
    Case("solve", lambda a, b: np.linalg.solve(_gram(a), b), (A((2, 3, 3), "float64"), A((3,), "float64")),
         tol=LA_TOL, ops=("solve",)),
    Case("cholesky", lambda a: np.linalg.cholesky(_gram(a)), (A((2, 3, 3), "float64"),), tol=LA_TOL, ops=("cholesky",)),
    Case("eigh", _eigh_rebuilt, (A((2, 3, 3), "float64"),), ref=lambda a: np.tril(a) + np.swapaxes(np.tril(a, -1), -1, -2),
         tol=LA_TOL, ops=("eigh",)),
    Case("svd", _svd_rebuilt, (A((4, 3), "float64"),), ref=lambda a: (a, np.linalg.svd(a, compute_uv=False)),
         tol=LA_TOL, ops=("svd",)),
    Case("pinv", lambda a: np.linalg.pinv(a + 10 * np.eye(2, 3)), (A((2, 3), "float64"),), tol=LA_TOL, ops=("pinv",)),
]

# -- nn ---------------------------------------------------------------------------------


def np_logsumexp(x, axis=None, keepdims=False):
    return scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)


def np_softmax(x, axis=-1):
    return scipy.special.softmax(x, axis=axis)


def np_log_softmax(x, axis=-1):
    return scipy.special.log_softmax(x, axis=axis)


cases = group("nn")
NN_TOL = dict(rtol=1e-5, atol=1e-5)
for dtype in ("float32", "float64"):
    x = A((3, 5), dtype, -5, 5)
    big = (x * 100).astype(dtype)  # exp(x) would overflow: stable forms must not
    J = dtype == "float32"
    for axis in (-1, 0, (0, 1)):
        cases.append(Case(f"softmax(axis={axis}):{dtype}", lambda x, axis=axis: gc.softmax(x, axis=axis), (x,),
                          ref=lambda x, axis=axis: np_softmax(x, axis), ops=("exp", "max", "sum", "div"), tol=NN_TOL,
                          jit=J and axis == -1))
        cases.append(Case(f"log_softmax(axis={axis}):{dtype}", lambda x, axis=axis: gc.log_softmax(x, axis=axis),
                          (x,), ref=lambda x, axis=axis: np_log_softmax(x, axis), tol=NN_TOL, jit=J and axis == 0))
    for axis in (None, 0, 1, (0, 1)):
        for keepdims in (False, True):
            cases.append(Case(f"logsumexp({axis},{keepdims}):{dtype}",
                              lambda x, axis=axis, keepdims=keepdims: gc.logsumexp(x, axis=axis, keepdims=keepdims),
                              (x,), ref=lambda x, axis=axis, keepdims=keepdims: np_logsumexp(x, axis, keepdims),
                              ops=("log", "stop_gradient"), tol=NN_TOL,
                              jit=J and (axis, keepdims) in ((None, False), (1, True))))
    cases.append(Case(f"softmax big:{dtype}", gc.softmax, (big,), ref=np_softmax, tol=NN_TOL, jit=not J))
    cases.append(Case(f"log_softmax big:{dtype}", gc.log_softmax, (big,), ref=np_log_softmax, tol=NN_TOL, jit=False))
    cases.append(Case(f"logsumexp big:{dtype}", lambda x: gc.logsumexp(x, axis=1), (big,),
                      ref=lambda x: np_logsumexp(x, 1), tol=NN_TOL, jit=False))
    ninf = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], dtype)
    cases.append(Case(f"logsumexp -inf rows:{dtype}", lambda x: gc.logsumexp(x, axis=1), (ninf,),
                      ref=lambda x: np_logsumexp(x, 1), jit=J))
    cases.append(Case(f"softmax -inf entries:{dtype}", lambda x: gc.softmax(x[:1]), (ninf,),
                      ref=lambda x: np_softmax(x[:1]), jit=False))
    cases.append(Case(f"log_softmax -inf entries:{dtype}", lambda x: gc.log_softmax(x[:1]), (ninf,),
                      ref=lambda x: np_log_softmax(x[:1]), jit=False))
cases.append(Case("softmax int -> f64", gc.softmax, (A((2, 3), "int32"),), ref=lambda x: np_softmax(x.astype(float)),
                  jit=False))
cases.append(Case("logsumexp 0-d", gc.logsumexp, (np.asarray(A((), "float64")),), ref=lambda x: x.copy(), jit=False))

# -- creation and constants -------------------------------------------------------------
cases = group("creation")
for dtype in ("float32", "int32", "bool"):
    x = A((2, 3), dtype)
    J = dtype == "float32"
    cases += [
        Case(f"zeros_like:{dtype}", np.zeros_like, (x,), ops=("constant",), jit=J),
        Case(f"ones_like:{dtype}", np.ones_like, (x,), jit=False),
        Case(f"full_like:{dtype}", lambda x: np.full_like(x, 7), (x,), jit=dtype == "int32"),
        Case(f"zeros_like dtype:{dtype}", lambda x: np.zeros_like(x, dtype=np.float64), (x,), jit=False),
        Case(f"full_like dtype:{dtype}", lambda x: np.full_like(x, 2.5, dtype=np.float32), (x,), jit=dtype == "bool"),
        Case(f"gc.zeros_like:{dtype}", gc.zeros_like, (x,), ref=np.zeros_like, jit=False),
        Case(f"gc.ones_like:{dtype}", lambda x: gc.ones_like(x) + x, (x,), ref=lambda x: np.ones_like(x) + x, jit=J),
        Case(f"gc.full_like:{dtype}", lambda x: gc.full_like(x, 3), (x,), ref=lambda x: np.full_like(x, 3), jit=False),
    ]
cases += [
    Case("zeros_like 0-d", np.zeros_like, (np.asarray(A(())),), jit=False),
    Case("gc.zeros/ones/full", lambda x: (x + gc.zeros((2, 3), np.float32), x * gc.ones(3, np.float32),
                                          x - gc.full((2, 1), 1.5, np.float32)), (A((2, 3)),),
         ref=lambda x: (x + np.zeros((2, 3), np.float32), x * np.ones(3, np.float32), x - np.full((2, 1), 1.5, np.float32)),
         ops=("constant",)),
    Case("gc.arange const", lambda x: x + gc.arange(3), (A((2, 3)),), ref=lambda x: x + np.arange(3)),
    Case("array constant", lambda x: x * np.array([1.0, -2.0, 3.0], np.float32), (A((2, 3)),)),
    Case("f64 const upcasts f32", lambda x: x * np.array([1.0, 2.0, 3.0]), (A((2, 3)),)),
    Case("int const", lambda x: x + np.arange(3, dtype=np.int32), (A((2, 3), "int32"),), jit=False),
    Case("bool const", lambda x: np.where(np.array([True, False, True]), x, -x), (A((2, 3)),)),
    Case("constant output", lambda x: (x, np.float32(1.5), 3), (A((2,)),),
         ref=lambda x: (x, np.float32(1.5), np.asarray(3))),
    Case("nan/inf constants", lambda x: x + np.array([np.nan, np.inf, -np.inf], np.float32), (A((2, 3)),)),
    Case("input returned as is", lambda x: (x, x), (A((2, 3)),)),
]


# -- shapes that once broke the fused code generator (kept as regressions) ---------------------
cases = group("fusion-regressions")
cases += [
    # kernels named k0, k1... were shadowed by reduction counters k3... in the entry
    Case("several fused reductions", lambda x: (x.sum(), x.max(), x.mean(), (x * 2).min(), x.prod()),
         (A((7,)),), tol=dict(atol=1e-5)),
    # a size-1 operand of a flattened (1, 1) domain was read as p[0, 0]
    Case("full logsumexp of (3, 5)", gc.logsumexp, (A((3, 5)),), ref=np_logsumexp, tol=dict(atol=1e-5)),
    Case("(1,1) domain with a size-1 operand", lambda a, b: np.tanh(a + b) * b, (A((1, 1)), A((1,)))),
    # a keepdims reduction over a size-1 domain has the domain's shape but was flattened
    Case("keepdims reduction of a (1, 1, 1) domain", lambda a, b, c: (np.sum(np.sqrt(np.abs(a - b)) * c, axis=(0, 1, 2),
                                                                             keepdims=True), np.tanh(a - b)),
         (A((1,)), A((1, 1, 1)), A((1, 1)))),
    Case("keepdims mean of (1, 1)", lambda a, b: np.mean(np.minimum(gc.sigmoid(a + b), b), axis=(0, 1), keepdims=True),
         (A((1,)), A((1, 1))), ref=lambda a, b: np.mean(np.minimum(np_sigmoid(a + b), b), axis=(0, 1), keepdims=True)),
    # a group must not read the reduction of a group it is merged with
    Case("elementwise after a size-1 reduction", lambda a: (np.abs(a).T > 0.3) / np.sum(np.abs(np.abs(a).T > 0.3) + 1,
                                                                                          axis=-1, keepdims=True),
         (A((1, 2)),)),
    Case("normalize rows of width 1", lambda a: a / np.sum(a * a, axis=1, keepdims=True) + a.max(axis=1, keepdims=True),
         (A((4, 1)),)),
]


# -- NaN and inf, exactly as NumPy ----------------------------------------------------------
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 3.5], np.float32)
ROW_SPECIAL = np.array([[1.0, np.nan, 3.0, np.nan], [np.inf, -np.inf, 0.0, 2.0],
                        [-np.inf, -np.inf, -np.inf, -np.inf], [5.0, 5.0, np.nan, 1.0]])


def _nan_cases(dtype):
    x = SPECIAL.astype(dtype)
    rows = ROW_SPECIAL.astype(dtype)
    y = np.roll(x, 3)
    return [
        Case("maximum", np.maximum, (x[:, None], y)), Case("minimum", np.minimum, (x[:, None], y)),
        Case("clip", lambda x: np.clip(x, -1, 2), (x,)), Case("clip nan bounds", np.clip, (x, y, 2 * y)),
        Case("relu", gc.relu, (x,), ref=np_relu), Case("log", np.log, (x,)), Case("sqrt", np.sqrt, (x,)),
        Case("div", np.divide, (x[:, None], x)), Case("1/x", lambda x: 1 / x, (x,)),
        Case("pow", np.power, (x[:, None], x)), Case("mul", np.multiply, (x[:, None], x)),
        Case("sub", np.subtract, (x[:, None], x)), Case("exp", np.exp, (x,)), Case("tanh", np.tanh, (x,)),
        Case("sigmoid", gc.sigmoid, (x,), ref=np_sigmoid), Case("sin", np.sin, (x,)),
        Case("sign", np.sign, (x,)), Case("abs", np.abs, (x,)), Case("neg", np.negative, (x,)),
        Case("cmp", lambda a, b: (a < b, a == b, a != b, a >= b), (x[:, None], y)),
        Case("where", lambda x: np.where(x > 0, x, 0), (x,)),
        Case("max rows", lambda r: np.max(r, axis=1), (rows,)), Case("min rows", lambda r: np.min(r, axis=1), (rows,)),
        Case("max cols", lambda r: np.max(r, axis=0), (rows,)), Case("max all", np.max, (rows,)),
        Case("argmax rows", lambda r: np.argmax(r, axis=1), (rows,)),
        Case("argmin rows", lambda r: np.argmin(r, axis=1), (rows,)),
        Case("argmax cols", lambda r: np.argmax(r, axis=0), (rows,)), Case("argmin flat", np.argmin, (rows,)),
        Case("sum", lambda r: np.sum(r, axis=1), (rows,)), Case("mean", lambda r: np.mean(r, axis=0), (rows,)),
        Case("prod", lambda r: np.prod(r, axis=1), (rows,)),
        Case("softmax", gc.softmax, (rows,), ref=np_softmax),
        Case("logsumexp", lambda r: gc.logsumexp(r, axis=1), (rows,), ref=lambda r: np_logsumexp(r, 1)),
        Case("cast to bool", lambda x: x.astype(bool), (x,)),
        Case("int div by zero", lambda a, b: a / b, (np.array([1, 0, -1], np.int32), np.zeros(3, np.int32))),
    ]


NAN_F64_JIT = {"maximum", "minimum", "clip", "relu", "max rows", "argmax rows", "argmin flat", "pow", "div", "log",
               "logsumexp", "min rows"}
for dtype in ("float32", "float64"):
    cases = group(f"nan-inf-{dtype}")
    for case in _nan_cases(dtype):
        case.name += f":{dtype}"
        case.jit = dtype == "float32" or case.name.split(":")[0] in NAN_F64_JIT
        cases.append(case)


# -- NumPy's other elementwise functions (tests/test_elementwise_numpy.py checks special values) ---
UNIT = lambda shape, dtype: A(shape, dtype, -0.9, 0.9)  # noqa: E731 - arcsin, arccos, arctanh
NUMPY_UNARY = {  # name: (domain, op)
    "log1p": (lambda s, d: A(s, d, -0.9, 3.0), "log1p"), "expm1": (A, "expm1"), "log2": (P, "log2"),
    "log10": (P, "log10"), "exp2": (A, "exp2"), "tan": (UNIT, "tan"), "sinh": (A, "sinh"), "cosh": (A, "cosh"),
    "arcsin": (UNIT, "arcsin"), "arccos": (UNIT, "arccos"), "arctan": (A, "arctan"), "arcsinh": (A, "arcsinh"),
    "arccosh": (lambda s, d: A(s, d, 1.1, 4.0), "arccosh"), "arctanh": (UNIT, "arctanh"),
    "floor": (A, "floor"), "ceil": (A, "ceil"), "rint": (A, "rint"),
}
NUMPY_BINARY = {  # name: (domain of b, op)
    "arctan2": (A, "arctan2"), "hypot": (A, "hypot"), "logaddexp": (A, "logaddexp"),
    "logaddexp2": (A, "logaddexp2"), "fmax": (A, "fmax"), "fmin": (A, "fmin"),
    "floor_divide": (P, "floordiv"), "remainder": (P, "mod"),
}
for dtype, (sa, sb) in (("float64", ((2, 3), (3,))), ("float32", ((3, 1), (1, 4)))):
    cases = group(f"numpy-elementwise-{dtype}")
    for name, (dom, op) in NUMPY_UNARY.items():
        cases.append(Case(f"{name}:{dtype}", getattr(np, name), (dom(sa, dtype),), ops=(op,), jit=dtype == "float64"))
    for name, (dom, op) in NUMPY_BINARY.items():
        cases.append(Case(f"{name}:{dtype}", getattr(np, name), (A(sa, dtype), dom(sb, dtype)), ops=(op,),
                          jit=dtype == "float32"))
cases = group("numpy-elementwise-int")
for dtype in ("int32", "int64"):
    a, b = A((3, 4), dtype, -9, 9), A((4,), dtype, -3, 3)  # zero divisors included
    cases += [Case(f"floor_divide:{dtype}", np.floor_divide, (a, b), ops=("floordiv",), jit=dtype == "int32"),
              Case(f"remainder:{dtype}", np.remainder, (a, b), ops=("mod",), jit=dtype == "int64"),
              Case(f"fmax:{dtype}", np.fmax, (a, b), ops=("fmax",), jit=False),
              Case(f"hypot:{dtype}->f64", np.hypot, (a, b), ops=("cast", "hypot"), jit=False)]


# ------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------
# ops that other work owns and that may appear in the registry before their tests:
# loops and branches (graphc/ops/control.py): the reference is the same code run eagerly,
# where gc.fori_loop & co. are Python loops and ifs (tests/test_control_flow.py has the rest)
cases = group("control")
_W = A((4, 4), "float32", -0.5, 0.5)
cases.append(Case("fori_loop:f32", lambda x: gc.fori_loop(0, 5, lambda i, v: np.tanh(v @ _W) + i * 0.5, x),
                  (A((3, 4)),), ops=("fori_loop",)))
cases.append(Case("scan:f32", lambda h, xs: gc.scan(lambda c, x: (np.tanh(c + x), np.sum(c * x)), h, xs),
                  (A((4,)), A((6, 4))), ops=("scan",)))
cases.append(Case("scan:reverse,f64", lambda xs: gc.scan(lambda c, x: (c * 0.5 + x, c), np.zeros(3), xs,
                                                         reverse=True), (A((5, 3), "float64"),), ops=("scan",)))
cases.append(Case("while_loop:f64", lambda a: gc.while_loop(lambda s: s[1] > 1e-10,
                                                            lambda s: (0.5 * (s[0] + a / s[0]), np.abs(s[0] - a / s[0])),
                                                            (a, np.inf))[0], (P((), "float64"),), ops=("while_loop",)))
cases.append(Case("cond:f32", lambda p, x: gc.cond(p > 0, lambda a: a * 2, lambda a: np.sin(a), x),
                  (A((), "float32"), A((3,))), ops=("cond",)))

ALLOWLIST = {
    "fused",  # made by passes/fusion (tested with the passes), never by tracing
    "debug_print",  # gc.print: an effect, no value to compare (tested in tests/test_torch_semantics.py)
}

# compiled cases are split into chunks of at most CHUNK cases, each chunk one graph:
# Numba's compile time grows faster than linearly with the size of one function
CHUNK = 10
CHUNKS: dict[str, list[Case]] = {}
for _name, _cases in GROUPS.items():
    _jit = [c for c in _cases if c.jit]
    _n = -(-len(_jit) // CHUNK)
    for _k in range(_n):
        CHUNKS[f"{_name}/{_k}" if _n > 1 else _name] = _jit[_k::_n]

_COMPILED: dict = {}


def _compiled(name):
    if name not in _COMPILED:
        _COMPILED[name] = check_cases(CHUNKS[name])
    return _COMPILED[name]


@pytest.mark.parametrize("name", list(CHUNKS))
def test_compiled(name):
    """Compiled == interpreter == NumPy on fixed inputs (one compile per chunk)."""
    _compiled(name)


@pytest.mark.parametrize("name", list(GROUPS))
def test_interpreted(name):
    """Every case, compiled or not: the interpreter (traced and optimized graph) == NumPy."""
    check_interpreted(GROUPS[name])


@pytest.mark.parametrize("name", list(GROUPS))
def test_group_traces_its_ops(name):
    """Each case's graph (as traced, before passes) contains the ops the case claims to cover."""
    for case in GROUPS[name]:
        if case.ops:
            ops = {n.op for n in raw_graph(case.fn, *case.args).nodes}
            assert set(case.ops) <= ops, f"{case.name}: expected ops {case.ops}, traced {sorted(ops)}"


def test_every_registered_op_is_covered():
    covered = {op for cases in GROUPS.values() for c in cases for op in c.ops}
    missing = set(registry.OPS) - covered - ALLOWLIST
    assert not missing, f"ops without a test case in tests/test_ops.py: {sorted(missing)}"
    compiled = {op for cases in CHUNKS.values() for c in cases for op in c.ops}
    missing = set(registry.OPS) - compiled - ALLOWLIST
    assert not missing, f"ops never compiled by tests/test_ops.py: {sorted(missing)}"


def _redraw(data, arr):
    """A new value with the same shape and dtype, inside the original's range."""
    if isinstance(arr, (bool, np.bool_)) or not isinstance(arr, (np.ndarray, np.generic, int, float)):
        return arr
    a = np.asarray(arr)
    if a.size == 0:
        return arr
    if a.dtype.kind == "b":
        new = data.draw(hnp.arrays(a.dtype, a.shape))
    elif a.dtype.kind in "iu":
        new = data.draw(hnp.arrays(a.dtype, a.shape, elements=st.integers(int(a.min()), int(a.max()))))
    else:
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return arr
        width = 32 if a.dtype == np.float32 else 64
        new = data.draw(hnp.arrays(a.dtype, a.shape, elements=st.floats(
            lo, hi, width=width, allow_subnormal=False, allow_nan=False)))
    if isinstance(arr, (int, float)):
        return type(arr)(new[()])
    return new if isinstance(arr, np.ndarray) else new[()]


@pytest.mark.parametrize("name", list(CHUNKS))
@given(data=st.data())
def test_compiled_random_values(name, data):
    """New values of the same shapes (index arrays stay in range): reuses the compiled graph."""
    traced = _compiled(name)
    cases = CHUNKS[name]
    new_args = [tuple(_redraw(data, a) for a in c.args) for c in cases]
    check_group(cases, new_args, traced=traced)
    assert traced.signatures == 1


# -- interpreter vs NumPy, broadly (cheap: no compile) -----------------------------------
@given(data=st.data(),
       shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3),
       dtypes=st.tuples(*[st.sampled_from(["float32", "float64", "int32", "int64", "bool"])] * 2),
       op=st.sampled_from(["add", "subtract", "multiply", "maximum", "minimum", "equal", "less",
                           "greater_equal", "logical_and", "logical_xor", "divide", "where"]))
def test_interpreter_binary_broadly(data, shapes, dtypes, op):
    a = data.draw(hnp.arrays(dtypes[0], shapes.input_shapes[0], elements=_elements(dtypes[0])))
    b = data.draw(hnp.arrays(dtypes[1], shapes.input_shapes[1], elements=_elements(dtypes[1])))
    if op == "subtract" and a.dtype == b.dtype == np.bool_:
        return  # NumPy refuses boolean subtract
    if op == "where":
        fn = lambda a, b: np.where(a > b, a, b)  # noqa: E731
    else:
        fn = getattr(np, op)
    g = raw_graph(fn, a, b)
    with np.errstate(all="ignore"):
        want = fn(a, b)
    (got,) = gc.interpret(g, a, b)
    assert_same(got, want, f"{op}{a.shape}{a.dtype}{b.shape}{b.dtype}")


def _elements(dtype):
    if dtype == "bool":
        return st.booleans()
    if dtype.startswith("int"):
        return st.integers(-10, 10)
    return st.floats(-10, 10, width=32 if dtype == "float32" else 64)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
       dtype=st.sampled_from(["float32", "float64", "int32", "bool"]),
       op=st.sampled_from(["sum", "mean", "prod", "max", "min", "argmax", "argmin"]),
       keepdims=st.booleans())
def test_interpreter_reductions_broadly(data, shape, dtype, op, keepdims):
    x = data.draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    if op.startswith("arg"):
        axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
        keepdims = keepdims and axis is not None
    else:
        axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1)
                         | st.lists(st.integers(0, len(shape) - 1), unique=True).map(tuple))
    fn = lambda x: getattr(np, op)(x, axis=axis, keepdims=keepdims)  # noqa: E731
    try:
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = fn(x)
    except ValueError:  # max/argmax of an empty axis
        with pytest.raises(gc.ShapeError):
            raw_graph(fn, x)
        return
    (got,) = gc.interpret(raw_graph(fn, x), x)
    assert_same(got, want, f"{op}(axis={axis}, keepdims={keepdims}) of {x.dtype}{x.shape}",
                tol=dict(rtol=1e-4, atol=1e-4))


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
def test_interpreter_slicing_broadly(data, shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    key = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    (got,) = gc.interpret(raw_graph(lambda x: x[key], x), x)
    assert_same(got, x[key], f"x{shape}[{key}]")


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3))
def test_interpreter_shape_ops_broadly(data, shape):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    cat_axis = data.draw(st.integers(-len(shape), len(shape) - 1))

    def fn(x):
        return (np.transpose(x, perm), np.expand_dims(x, axis), np.squeeze(x), x.reshape(-1, shape[-1]),
                np.concatenate([x, x], axis=cat_axis), np.stack([x, x], axis=axis))

    got = gc.interpret(raw_graph(fn, x), x)
    for k, (g, w) in enumerate(zip(got, fn(x))):
        assert_same(g, w, f"shape op {k} on {shape}")


def test_float32_stays_float32():
    x, w = A((3, 4)), A((4, 2))

    def f(x, w):
        h = np.tanh(x @ w + 1.0) * 2 - 0.5
        return h, np.sum(h, axis=1) / 3, np.mean(h), gc.softmax(h), np.sqrt(np.abs(h)), h ** 2, np.float32(2) * h

    traced = check(f, x, w)
    assert all(v.type.dtype == "float32" for v in traced.graph.outputs)
    assert all(n.outputs[0].type.dtype != "float64" for n in traced.graph.nodes)


def test_eager_functions_on_plain_arrays():
    """gc.* functions outside a trace run the NumPy references (no graph, no compile)."""
    x = A((3, 4))
    assert_same(gc.softmax(x), np_softmax(x), "softmax", tol=dict(rtol=1e-5))
    assert_same(gc.logsumexp(x, axis=1), np_logsumexp(x, 1), "logsumexp", tol=dict(rtol=1e-5))
    assert_same(gc.tanh(x), np.tanh(x), "tanh")
    assert_same(gc.where(x > 0, x, 0.0), np.where(x > 0, x, 0.0), "where")
    assert_same(gc.one_hot(np.array([1, 0]), 3), np_one_hot(np.array([1, 0]), 3), "one_hot")
    assert_same(gc.take(x, [2, 0], axis=1), np.take(x, [2, 0], axis=1), "take")
    assert_same(gc.relu(x), np_relu(x), "relu")
    assert_same(gc.sum(x, axis=0), np.sum(x, axis=0), "sum")
    assert_same(gc.matmul(x, x.T), x @ x.T, "matmul", tol=MM_TOL)


# -- transcendental functions over the whole float range (one compile per dtype and math mode) -----
def _wide(dtype):
    rng = np.random.default_rng(5)
    top = 4 if dtype == "float32" else 6
    x = (10.0 ** rng.uniform(-8, top, 2000) * rng.choice([-1, 1], 2000)).astype(dtype)
    special = [0.0, -0.0, np.nan, np.inf, -np.inf, 88.7, 89.0, -87.0, -104.0, 709.7, 710.0, -745.0, 1e-30, 1e30]
    return np.concatenate([x, np.array(special, dtype)])


def _transcendentals(x, y):
    a = np.abs(x)
    return np.exp(x), np.log(a), np.tanh(x), np.sin(x), np.cos(x), gc.sigmoid(x), a ** y, np.sqrt(a), np.exp(-a)


@pytest.mark.parametrize("dtype, math", [("float32", "fast"), ("float64", "fast"), ("float32", "libm")])
def test_transcendentals_over_the_whole_range(dtype, math):
    """Within 4 ulp of NumPy everywhere (a tiny absolute slack below the normal range); NaN/inf exact."""
    x = _wide(dtype)
    y = np.random.default_rng(6).uniform(-4, 4, x.size).astype(dtype)
    got = gc.trace(_transcendentals, math=math)(x, y)
    with np.errstate(all="ignore"):
        want = _transcendentals(x, y)
    tiny = np.finfo(dtype).tiny
    names = ["exp", "log", "tanh", "sin", "cos", "sigmoid", "pow", "sqrt", "exp(-|x|)"]
    for name, g, w in zip(names, got, want):
        assert g.dtype == w.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{name}: NaN positions")
        np.testing.assert_array_equal(np.where(np.isinf(w), w, 0), np.where(np.isinf(g), g, 0),
                                      err_msg=f"{name}: infinities")
        fin = np.isfinite(w)
        err = np.abs(g[fin].astype(np.float64) - w[fin])
        bound = np.maximum(4 * np.spacing(np.abs(w[fin])).astype(np.float64), tiny)
        bad = np.flatnonzero(err > bound)
        assert not bad.size, f"{name}({math}): x={x[fin][bad[:3]]} gives {g[fin][bad[:3]]}, NumPy {w[fin][bad[:3]]}"


# -- random elementwise/broadcast/reduction programs, compiled (what fusion groups) --------------
_PROGRAM_BINARY = [np.add, np.subtract, np.multiply, np.maximum, np.minimum, lambda a, b: np.where(a > b, a, b * 2.0)]
_PROGRAM_UNARY = [np.tanh, np.exp, np.negative, np.abs, lambda a: np.sqrt(np.abs(a)), lambda a: a * 0.5 + 1.0,
                  gc.relu, gc.sigmoid]
_PROGRAM_REDUCE = [np.sum, np.max, np.min, np.mean, np.prod]


@st.composite
def _programs(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=1, max_side=4))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    ops = draw(st.tuples(st.sampled_from(_PROGRAM_BINARY), st.sampled_from(_PROGRAM_UNARY),
                         st.sampled_from(_PROGRAM_UNARY), st.sampled_from(_PROGRAM_BINARY),
                         st.sampled_from(_PROGRAM_REDUCE)))
    nd = len(shapes.result_shape)
    axis = draw(st.none() | st.lists(st.integers(0, max(nd - 1, 0)), min_size=1, unique=True).map(tuple)) if nd else None
    keepdims, both = draw(st.booleans()), draw(st.booleans())
    return shapes.input_shapes, dtype, ops, axis, keepdims, both


@settings(max_examples=6)
@given(program=_programs(), data=st.data())
def test_random_fused_programs(program, data):
    """binary -> unary -> unary -> binary (broadcasting) -> reduction, compiled with the default passes."""
    shapes, dtype, (b1, u1, u2, b2, red), axis, keepdims, both = program
    a, b, c = (data.draw(hnp.arrays(dtype, s, elements=st.floats(-2, 2, width=32))) for s in shapes)

    def f(a, b, c):
        h = u1(b1(a, b))
        out = red(b2(u2(h), c), axis=axis, keepdims=keepdims)
        return (out, h) if both else out

    check(f, a, b, c, tol=dict(rtol=1e-4, atol=1e-5))


def test_relu_of_negative_zero_is_zero_as_np_maximum():
    # relu is np.maximum(x, 0): a tie takes the 0, so -0.0 gives +0.0; NaN stays
    f = gc.trace(lambda x: (gc.relu(x), np.sum(gc.relu(x), axis=-1)))
    for dtype in ("float32", "float64"):
        x = np.array([[-0.0, 0.0, np.nan, -1.0, 2.0, -np.inf, np.inf]], dtype)
        for got, want in zip(f(x), (np_relu(x), np.sum(np_relu(x), axis=-1))):
            assert_same(got, want, dtype)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
