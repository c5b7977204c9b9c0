"""Algebraic simplification: a table of local rewrite rules, each exact.

Every rule must give the same result as the original for *every* input,
including NaN, ±inf and -0.0 (the differential tests check it), which is why
several textbook identities carry a guard:

==========================  =============================  ===========================
pattern                     becomes                        only when
==========================  =============================  ===========================
reshape/transpose/cast/     x                              it does not change x's type
broadcast_to/stop_gradient
x * 1, 1 * x, x / 1         x (broadcast to the result)
x + (-0.0), x - 0           x                              floats (x + 0.0 maps -0 to +0)
x + 0, 0 + x                x                              integers
x * 0, 0 * x, x - x         0                              integers (inf * 0 and inf - inf are NaN)
x * -1, -1 * x              -x
--x                         x
x ** 1                      x
x ** 2                      x * x                          (NumPy's own fast path: identical)
x ** -1, x ** 0             1 / x, 1                       (likewise)
x ** 0.5                    sqrt(x)                        NumPy takes its sqrt path there
                                                           (elementwise.sqrt_fast_path)
exp(log x)                  x + 0.0                        x is known >= 0 (or NaN); + 0.0
                                                           makes -0.0 the +0.0 exp gives
exp(log x)                  where(x >= 0, x + 0.0, nan)    otherwise
log(exp x)                  x + 0.0                        x is known to lie where exp is normal
transpose(transpose x)      one transpose (or x)
reshape(reshape x)          one reshape (or x)
reshape(reduce keepdims)    reduce(x, keepdims=False)      the reshape only drops reduced dims
broadcast(broadcast x)      one broadcast
op(broadcast scalars...)    broadcast(op(scalars...))      elementwise op, scalar operands; not
                                                           pow where that would switch NumPy's
                                                           sqrt path for ** 0.5 on
uniform constant array      broadcast(scalar constant)
sum/mean/max/min(broadcast  n * s, s, s, s (broadcast)     float s of shape ()
  of scalar s)
matmul(transpose x, y)      matmul(x, y, transpose_a)      the transpose swaps the last two
                            (likewise for y)               axes (BLAS reads the view: no copy)
transpose(matmul(a, b))     matmul(b, a, flags flipped)    the same swap, and the product
                                                           has no other use
matmul(a, b) summing over   a * b + 0.0 (a column times    floats (BLAS's sum starts at +0.0, so
  one term (an outer          a row, broadcast)            a -0.0 product is +0.0, as x + 0.0
  product)                                                 makes it)
==========================  =============================  ===========================
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ops import registry
from graphc.ops.elementwise import sqrt_fast_path
from graphc.ops.registry import ELEMENTWISE
from graphc.passes.rewrite import Rewriter, is_const, splat


_REDUCTIONS = ("sum", "mean", "prod", "max", "min", "argmax", "argmin")


def _is_float(v):
    return v.type.dtype.startswith("float")


def _is_int(v):
    return v.type.dtype.startswith("int") or v.type.dtype == "bool"


def _fit(rw, x, out):
    """``x`` as a value of ``out``'s type (broadcast up if needed), or None."""
    if x.type == out.type:
        return x
    if x.type.dtype != out.type.dtype:
        return None
    return rw.make("broadcast_to", [x], shape=out.type.shape)


def _zeros(rw, out):
    scalar = rw.constant(np.zeros((), out.type.dtype))
    return scalar if not out.type.shape else rw.make("broadcast_to", [scalar], shape=out.type.shape)


# -- value facts ----------------------------------------------------------------------
_BOUNDED = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "sin": (-1.0, 1.0), "cos": (-1.0, 1.0)}


def _bounds(v, depth=0):
    """An interval containing every non-NaN value of ``v``, or None if unknown."""
    node = v.producer
    if node is None or depth > 8:
        return None
    if node.op in _BOUNDED:
        return _BOUNDED[node.op]
    s = splat(v)
    if s is not None and s.dtype.kind == "f" and np.isfinite(s):
        return (float(s), float(s))
    if node.op in ("broadcast_to", "reshape", "transpose", "stop_gradient"):
        return _bounds(node.inputs[0], depth + 1)
    if node.op == "neg":
        b = _bounds(node.inputs[0], depth + 1)
        return (-b[1], -b[0]) if b else None
    if node.op == "clip":
        lo, hi = _bounds(node.inputs[1], depth + 1), _bounds(node.inputs[2], depth + 1)
        if lo and hi:
            return (min(lo[0], hi[0]), hi[1])
    return None


def _nonneg(v, depth=0) -> bool:
    node = v.producer
    if node is None or depth > 8:
        return False
    if node.op in ("abs", "exp", "sqrt", "sigmoid", "relu"):
        return True
    if node.op == "mul" and node.inputs[0] is node.inputs[1]:
        return True
    if node.op in ("broadcast_to", "reshape", "transpose", "stop_gradient"):
        return _nonneg(node.inputs[0], depth + 1)
    b = _bounds(v, depth)
    return b is not None and b[0] >= 0


def _never_negative_zero(v) -> bool:
    node = v.producer
    return node is not None and (node.op in ("abs", "exp", "sigmoid")
                                 or node.op == "mul" and node.inputs[0] is node.inputs[1])


def _exp_normal_range(dtype):
    info = np.finfo(dtype)
    return math.log(float(info.tiny)) + 1e-3, math.log(float(info.max)) - 1e-3


# -- rules: each takes (rw, node, *operands) and returns a Value or None --------------
def identity(rw, node, x):
    out = node.outputs[0]
    return x if x.type == out.type else None


def mul(rw, node, a, b):
    out = node.outputs[0]
    for x, c in ((a, b), (b, a)):
        if is_const(c, 1):
            return _fit(rw, x, out)
        if is_const(c, -1) and x.type.dtype == out.type.dtype:
            return _fit(rw, rw.make("neg", [x]), out)
        if _is_int(out) and out.type.dtype != "bool" and is_const(c, 0):
            return _zeros(rw, out)
    return None


def div(rw, node, a, b):
    return _fit(rw, a, node.outputs[0]) if is_const(b, 1) else None


def add(rw, node, a, b):
    out = node.outputs[0]
    for x, c in ((a, b), (b, a)):
        if (_is_float(out) and is_const(c, -0.0)) or (_is_int(out) and is_const(c, 0)):
            return _fit(rw, x, out)
    return None


def sub(rw, node, a, b):
    out = node.outputs[0]
    if (_is_float(out) and is_const(b, 0.0)) or (_is_int(out) and is_const(b, 0)):
        return _fit(rw, a, out)
    if a is b and _is_int(out):
        return _zeros(rw, out)
    return None


def neg(rw, node, x):
    if x.producer is not None and x.producer.op == "neg":
        return x.producer.inputs[0]
    return None


def power(rw, node, x, y):
    out = node.outputs[0]
    if not _is_float(out):
        return None
    if is_const(y, 1):
        return _fit(rw, x, out)
    if is_const(y, 2):
        return rw.make("mul", [x, x]) if x.type == out.type else None
    if is_const(y, -1):  # C's pow(x, -1) is 1/x correctly rounded, as NumPy's own fast path
        return _fit(rw, rw.make("div", [rw.constant(np.ones((), out.type.dtype)), x]), out)
    if is_const(y, 0) or is_const(y, -0.0):  # x ** 0 is 1 for every x, NaN included
        return _fit(rw, rw.constant(np.ones((), out.type.dtype)), out)
    if is_const(y, 0.5) and sqrt_fast_path(node):  # what NumPy computes there (pow would differ at -0, -inf)
        return _fit(rw, rw.make("sqrt", [x]), out)
    return None


def exp(rw, node, x):
    if x.producer is None or x.producer.op != "log":
        return None
    (y,) = x.producer.inputs
    # y + 0.0: exp(log(-0.0)) is +0.0 (and y may be -0.0 even when known >= 0: sqrt(-0.0), relu)
    zero = rw.constant(np.zeros((), y.type.dtype))
    positive = y if _never_negative_zero(y) else rw.make("add", [y, zero])
    if _nonneg(y):
        return positive
    nan = rw.constant(np.full((), np.nan, y.type.dtype))
    return rw.make("where", [rw.make("ge", [y, zero]), positive, nan])


def log(rw, node, x):
    if x.producer is None or x.producer.op != "exp":
        return None
    (y,) = x.producer.inputs
    b = _bounds(y)
    lo, hi = _exp_normal_range(y.type.dtype)
    if b is not None and lo <= b[0] and b[1] <= hi:
        if _never_negative_zero(y):
            return y
        return rw.make("add", [y, rw.constant(np.zeros((), y.type.dtype))])  # log(exp(-0.0)) is +0.0
    return None


def _single_use(rw, v) -> bool:
    return rw.uses(v) == 1


def transpose(rw, node, x):
    p = x.producer
    if p is not None and p.op == "matmul" and _swaps_last_two(node.attrs["perm"]) and _single_use(rw, x):
        # (op(A) op(B))^T = op(B)^T op(A)^T: BLAS writes the transposed product directly
        ta, tb = p.attrs.get("transpose_a", False), p.attrs.get("transpose_b", False)
        flags = {k: True for k, on in (("transpose_a", not tb), ("transpose_b", not ta)) if on}
        return rw.make("matmul", [p.inputs[1], p.inputs[0]], **flags)
    if x.producer is None or x.producer.op != "transpose":
        # only the identity permutation is a no-op (a square matrix keeps its type when transposed)
        return x if tuple(node.attrs["perm"]) == tuple(range(len(node.attrs["perm"]))) else None
    inner, outer = x.producer.attrs["perm"], node.attrs["perm"]
    perm = tuple(inner[p] for p in outer)
    src = x.producer.inputs[0]
    if perm == tuple(range(len(perm))):
        return src
    return rw.make("transpose", [src], perm=perm)


def reshape(rw, node, x):
    out = node.outputs[0]
    p = x.producer
    if p is not None and p.op in _REDUCTIONS and p.attrs["keepdims"] and \
            tuple(out.type.shape) == tuple(n for d, n in enumerate(x.type.shape) if d not in p.attrs["axes"]):
        return rw.make(p.op, p.inputs, axes=p.attrs["axes"], keepdims=False)
    if x.producer is not None and x.producer.op == "reshape":
        src = x.producer.inputs[0]
        return src if src.type == out.type else rw.make("reshape", [src], shape=out.type.shape)
    return identity(rw, node, x)


def broadcast_to(rw, node, x):
    out = node.outputs[0]
    if x.producer is not None and x.producer.op == "broadcast_to":
        return rw.make("broadcast_to", [x.producer.inputs[0]], shape=out.type.shape)
    return identity(rw, node, x)


def constant(rw, node):
    out = node.outputs[0]
    if not out.type.shape or out.type.size < 1:
        return None
    s = splat(out)
    if s is None:
        return None
    return rw.make("broadcast_to", [rw.constant(s.astype(out.type.dtype))], shape=out.type.shape)


def _scalar_source(v):
    if not v.type.shape:
        return v
    if v.producer is not None and v.producer.op == "broadcast_to" and not v.producer.inputs[0].type.shape:
        return v.producer.inputs[0]
    return None


def scalar_elementwise(rw, node, *xs):
    """op(broadcast(a), broadcast(b)) -> broadcast(op(a, b)) when every operand is a scalar."""
    out = node.outputs[0]
    if not out.type.shape or not xs or node.op == "broadcast_to" or len(node.outputs) != 1:
        return None
    scalars = [_scalar_source(v) for v in xs]
    if any(s is None for s in scalars):
        return None
    if node.op == "pow" and not sqrt_fast_path(node):
        return None  # pow of 0-d operands would take NumPy's sqrt path for ** 0.5; this one does not
    attrs = dict(node.attrs)
    value = rw.make(node.op, scalars, **attrs)
    return rw.make("broadcast_to", [value], shape=out.type.shape)


def reduce_broadcast(rw, node, x):
    """sum/mean/max/min of a broadcast scalar."""
    out = node.outputs[0]
    s = _scalar_source(x)
    if s is None or not x.type.shape or not _is_float(x) or s.type.dtype != out.type.dtype:
        return None
    count = int(np.prod([x.type.shape[a] for a in node.attrs["axes"]], dtype=np.int64))
    if count == 0:  # an empty sum is 0 and an empty mean NaN, whatever the scalar (inf * 0 is NaN)
        return None
    if node.op == "sum":
        s = rw.make("mul", [s, rw.constant(np.array(count, s.type.dtype))])
    if not out.type.shape:
        return s
    return rw.make("broadcast_to", [s], shape=out.type.shape)


# op -> rules tried in order (the first that returns a value wins)
def _swaps_last_two(perm) -> bool:
    n = len(perm)
    return n >= 2 and tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


def matmul_of_transpose(rw, node, a, b):
    """matmul(transpose(x), y) -> matmul(x, y, transpose_a=True), and likewise for y."""
    flags = {"transpose_a": node.attrs.get("transpose_a", False),
             "transpose_b": node.attrs.get("transpose_b", False)}
    operands, changed = [], False
    for v, key in ((a, "transpose_a"), (b, "transpose_b")):
        p = v.producer
        if p is not None and p.op == "transpose" and _swaps_last_two(p.attrs["perm"]):
            operands.append(p.inputs[0])
            flags[key] = not flags[key]
            changed = True
        else:
            operands.append(v)
    if not changed:
        return None
    return rw.make("matmul", operands, **{k: True for k, on in flags.items() if on})


def outer_product(rw, node, a, b):
    """matmul over a contraction of size 1 (``g[:, None] @ w[None, :]``, the backward pass of a
    matrix-vector product) -> a broadcast multiply, which fuses into the elementwise work around
    it instead of a BLAS call and an array written and read back."""
    out = node.outputs[0]
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    if a.type.ndim < 2 or b.type.ndim < 2 or not out.type.dtype.startswith("float") \
            or a.type.shape[-2 if ta else -1] != 1 or a.type.dtype != b.type.dtype:
        return None
    column = rw.make("reshape", [a], shape=_swap_last(a.type.shape)) if ta else a  # (..., m, 1)
    row = rw.make("reshape", [b], shape=_swap_last(b.type.shape)) if tb else b  # (..., 1, n)
    product = rw.make("mul", [column, row])
    return rw.make("add", [product, rw.constant(np.zeros((), out.type.dtype))])


def _swap_last(shape) -> tuple:
    return tuple(shape[:-2]) + (shape[-1], shape[-2])


RULES = {
    "matmul": [matmul_of_transpose, outer_product],
    "mul": [mul],
    "div": [div],
    "add": [add],
    "sub": [sub],
    "neg": [neg],
    "pow": [power],
    "exp": [exp],
    "log": [log],
    "transpose": [transpose],
    "reshape": [reshape],
    "broadcast_to": [broadcast_to],
    "cast": [identity],
    "stop_gradient": [identity],
    "constant": [constant],
    "sum": [reduce_broadcast],
    "mean": [reduce_broadcast],
    "max": [reduce_broadcast],
    "min": [reduce_broadcast],
}


def _rule(rw, node):
    rules = list(RULES.get(node.op, ()))
    if registry.get(node.op).kind == ELEMENTWISE:
        rules.append(scalar_elementwise)
    for rule in rules:
        new = rule(rw, node, *node.inputs)
        if new is not None:
            return new
    return None


def run(graph):
    return Rewriter(graph).run(_rule)
