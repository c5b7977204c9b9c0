"""Matrix products: ``matmul`` over the last two axes with broadcast batch axes.

The primitive needs both operands of rank >= 2 and equal rank; the public
``matmul`` handles NumPy's 1-D promotion and rank padding with reshapes.
Optional attrs ``transpose_a`` / ``transpose_b`` multiply by an operand's
transpose (its last two axes swapped) without copying it: BLAS reads the
transposed view. Gradients use them, and the simplifier folds ``x @ w.T`` into
them. Float products are one direct BLAS gemm call each (``graphc.backend.blas``,
transpose flags passed through, no copies; far cheaper to compile than Numba's
``np.dot``); integer ones are loops.
"""
from __future__ import annotations

import numpy as np

from graphc.backend.codegen import CTOR
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import implements, register
from graphc.trace import bind, mark_weak, promote, type_of, user_line


def _swap_last(shape):
    return tuple(shape[:-2]) + (shape[-1], shape[-2])


def _infer_matmul(types, transpose_a=False, transpose_b=False):
    a, b = types
    if a.dtype != b.dtype:
        raise ShapeError(f"operand dtypes differ: {a}, {b}")
    if a.ndim < 2 or a.ndim != b.ndim:
        raise ShapeError(f"primitive matmul needs operands of equal rank >= 2, got {a} and {b}")
    sa = _swap_last(a.shape) if transpose_a else a.shape
    sb = _swap_last(b.shape) if transpose_b else b.shape
    if sa[-1] != sb[-2]:
        raise ShapeError(f"shapes {a} and {b} are not aligned: {sa[-1]} (dim {a.ndim - 1}) != "
                         f"{sb[-2]} (dim {b.ndim - 2})")
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise ShapeError(f"batch dimensions of {a} and {b} cannot be broadcast together") from None
    return TensorType(batch + (sa[-2], sb[-1]), a.dtype)


def _matmul_ref(a, b, transpose_a=False, transpose_b=False):
    return np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a,
                     np.swapaxes(b, -1, -2) if transpose_b else b)


def _batch_operand(em, v, idx, batch) -> str:
    """The 2-D matrix of ``v`` at batch position ``idx`` (broadcast dims read index 0)."""
    if not batch:
        return em.name(v)
    sub = ["0" if n == 1 and batch[d] != 1 else idx[d] for d, n in enumerate(v.type.shape[:-2])]
    return f"{em.name(v)}[{', '.join(sub)}]"


def _emit_matmul(em, node):
    (a, b), out = node.inputs, node.outputs[0]
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    em.alloc(out)
    batch = out.type.shape[:-2]
    with em.loops(batch) as idx:
        pa, pb, po = (_batch_operand(em, v, idx, batch) for v in (a, b, out))
        if out.type.dtype in ("float32", "float64"):
            # BLAS gemm into the preallocated buffer, reading transposed operands in place
            em.imports.add("gemm")
            em.line(f"gemm({pa}, {pb}, {po}, {ta}, {tb})")
            return
        n, m = out.type.shape[-2], out.type.shape[-1]
        k = a.type.shape[-2] if ta else a.type.shape[-1]
        with em.loops((n, m)) as (i, j):
            acc = em.tmp("acc")
            em.line(f"{acc} = 0")
            with em.loops((k,)) as (p,):
                ea = f"{pa}[{p}, {i}]" if ta else f"{pa}[{i}, {p}]"
                eb = f"{pb}[{j}, {p}]" if tb else f"{pb}[{p}, {j}]"
                em.line(f"{acc} += {ea} * {eb}")
            em.line(f"{po}[{i}, {j}] = {CTOR[out.type.dtype]}({acc})")


def matmul_t(a, b, transpose_a=False, transpose_b=False):
    """``op(a) @ op(b)`` for operands of equal rank >= 2, op a transpose of the last two axes
    where asked: no transposed copy is made."""
    flags = {k: True for k, on in (("transpose_a", transpose_a), ("transpose_b", transpose_b)) if on}
    return bind("matmul", a, b, **flags)


# y = op(A) @ op(B): dA = g op(B)^T (transposed back when A was), dB = op(A)^T g (likewise)
def _matmul_vjp_a(g, a, b, out, transpose_a=False, transpose_b=False):
    from graphc.ops.shape import sum_to
    if transpose_a:
        grad = matmul_t(b, g, transpose_a=transpose_b, transpose_b=True)
    else:
        grad = matmul_t(g, b, transpose_b=not transpose_b)
    return sum_to(grad, a.shape)


def _matmul_vjp_b(g, a, b, out, transpose_a=False, transpose_b=False):
    from graphc.ops.shape import sum_to
    if transpose_b:
        grad = matmul_t(g, a, transpose_a=True, transpose_b=transpose_a)
    else:
        grad = matmul_t(a, g, transpose_a=not transpose_a)
    return sum_to(grad, b.shape)


register("matmul", "matmul", _infer_matmul, _matmul_ref, vjp=(_matmul_vjp_a, _matmul_vjp_b),
         emit=_emit_matmul,  # graphc.backend.blas raises for dimensions beyond BLAS's 32-bit ints
         raises=lambda node: any(d > 2**31 - 1 for v in node.inputs for d in v.type.shape))


@implements(np.matmul, ufunc="matmul")
def matmul(x1, x2):
    """``x1 @ x2`` with NumPy's rules for 1-D operands and broadcast batch dimensions."""
    from graphc.ops.shape import reshape
    a, b = promote(x1, x2)
    ta, tb = type_of(a), type_of(b)
    if ta.ndim == 0 or tb.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got {ta} and {tb}\n  at {user_line()}")
    a2 = reshape(a, (1,) + ta.shape) if ta.ndim == 1 else a
    b2 = reshape(b, tb.shape + (1,)) if tb.ndim == 1 else b
    ra, rb = type_of(a2).ndim, type_of(b2).ndim
    a2 = reshape(a2, (1,) * (rb - ra) + type_of(a2).shape) if ra < rb else a2
    b2 = reshape(b2, (1,) * (ra - rb) + type_of(b2).shape) if rb < ra else b2
    try:
        out = bind("matmul", a2, b2)
    except ShapeError as exc:
        raise ShapeError(str(exc).replace(str(type_of(a2)), str(ta), 1)
                         .replace(str(type_of(b2)), str(tb), 1)) from None
    shape = type_of(out).shape
    if ta.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if tb.ndim == 1:
        shape = shape[:-1]
    return mark_weak(reshape(out, shape), x1, x2)


@implements(np.dot)
def dot(a, b, out=None):
    """``np.dot`` for 1-D and 2-D operands (use matmul for batches)."""
    if out is not None:
        raise TraceError(f"np.dot(..., out=...) cannot be traced (at {user_line()})")
    if type_of(a).ndim > 2 or type_of(b).ndim > 2:
        raise TraceError(f"np.dot of arrays with more than 2 dimensions is not supported "
                         f"(at {user_line()}); use np.matmul or @")
    if type_of(a).ndim == 0 or type_of(b).ndim == 0:
        from graphc.ops.elementwise import multiply
        return multiply(a, b)
    return matmul(a, b)


@implements(np.vdot, np.inner)
def inner(a, b):
    """Inner product of two 1-D arrays."""
    if type_of(a).ndim != 1 or type_of(b).ndim != 1:
        raise TraceError(f"np.inner/np.vdot are only supported for 1-D arrays (at {user_line()})")
    return matmul(a, b)


@implements(np.outer)
def outer(a, b, out=None):
    from graphc.ops.shape import reshape
    return matmul(reshape(a, (-1, 1)), reshape(b, (1, -1)))
