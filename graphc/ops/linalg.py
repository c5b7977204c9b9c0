"""Matrix products: ``matmul`` over the last two axes with broadcast batch axes.

The primitive needs both operands of rank >= 2 and equal rank; the public
``matmul`` handles NumPy's 1-D promotion and rank padding with reshapes.
Float products go to BLAS through Numba's ``np.dot``; integer ones are loops.
"""
from __future__ import annotations

import numpy as np

from graphc.backend.codegen import CTOR
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import implements, register
from graphc.trace import bind, mark_weak, promote, type_of, user_line


def _infer_matmul(types):
    a, b = types
    if a.dtype != b.dtype:
        raise ShapeError(f"operand dtypes differ: {a}, {b}")
    if a.ndim < 2 or a.ndim != b.ndim:
        raise ShapeError(f"primitive matmul needs operands of equal rank >= 2, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"shapes {a} and {b} are not aligned: {a.shape[-1]} (dim {a.ndim - 1}) != "
                         f"{b.shape[-2]} (dim {b.ndim - 2})")
    try:
        batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise ShapeError(f"batch dimensions of {a} and {b} cannot be broadcast together") from None
    return TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _batch_operand(em, v, idx, batch) -> str:
    """The 2-D matrix of ``v`` at batch position ``idx`` (broadcast dims read index 0)."""
    if not batch:
        return em.name(v)
    sub = ["0" if n == 1 and batch[d] != 1 else idx[d] for d, n in enumerate(v.type.shape[:-2])]
    return f"{em.name(v)}[{', '.join(sub)}]"


def _emit_matmul(em, node):
    (a, b), out = node.inputs, node.outputs[0]
    em.alloc(out)
    batch = out.type.shape[:-2]
    with em.loops(batch) as idx:
        pa, pb, po = (_batch_operand(em, v, idx, batch) for v in (a, b, out))
        if out.type.dtype.startswith("float"):
            em.line(f"np.dot({pa}, {pb}, {po})")  # BLAS gemm into the preallocated buffer
            return
        n, k, m = a.type.shape[-2], a.type.shape[-1], b.type.shape[-1]
        with em.loops((n, m)) as (i, j):
            acc = em.tmp("acc")
            em.line(f"{acc} = 0")
            with em.loops((k,)) as (p,):
                em.line(f"{acc} += {pa}[{i}, {p}] * {pb}[{p}, {j}]")
            em.line(f"{po}[{i}, {j}] = {CTOR[out.type.dtype]}({acc})")


def _swap(x):
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    from graphc.ops.shape import transpose
    return transpose(x, perm)


def _matmul_vjp_a(g, a, b, out):
    from graphc.ops.shape import sum_to
    return sum_to(bind("matmul", g, _swap(b)), a.shape)


def _matmul_vjp_b(g, a, b, out):
    from graphc.ops.shape import sum_to
    return sum_to(bind("matmul", _swap(a), g), b.shape)


register("matmul", "matmul", _infer_matmul, np.matmul, vjp=(_matmul_vjp_a, _matmul_vjp_b),
         emit=_emit_matmul)


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
