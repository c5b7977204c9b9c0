"""Matrix products: ``matmul`` over the last two axes with broadcast batch axes, and the
NumPy functions built on it (einsum, tensordot, dot, inner, vdot, kron, trace, diagonal,
diag, tril, triu, eye), which compose existing primitives so their gradients come free.

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

from graphc.ops.scalar import CTOR
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import export, implements, register
from graphc.ops.rules import broadcast_shapes
from graphc.ops import prims
from graphc.trace import Tracer, bind, mark_weak, promote, result_dtype, type_of, user_line


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
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
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
    if transpose_a:
        grad = matmul_t(b, g, transpose_a=transpose_b, transpose_b=True)
    else:
        grad = matmul_t(g, b, transpose_b=not transpose_b)
    return prims.sum_to(grad, a.shape)


def _matmul_vjp_b(g, a, b, out, transpose_a=False, transpose_b=False):
    if transpose_b:
        grad = matmul_t(g, a, transpose_a=True, transpose_b=transpose_a)
    else:
        grad = matmul_t(a, g, transpose_a=not transpose_a)
    return prims.sum_to(grad, b.shape)


def _beyond_blas_ints(node) -> bool:
    """graphc.backend.blas raises for dimensions beyond BLAS's 32-bit ints (a symbolic dimension
    may be that large at some call)."""
    return any(isinstance(d, str) or d > 2**31 - 1 for v in node.inputs for d in v.type.shape)


register("matmul", "matmul", _infer_matmul, _matmul_ref, vjp=(_matmul_vjp_a, _matmul_vjp_b),
         emit=_emit_matmul, raises=_beyond_blas_ints)


# c + op(a) @ op(b) for 2-D floats: one BLAS call adding into c's buffer (beta = 1), with no
# product written and read back. Autodiff makes it for a weight's gradient summed over a loop's
# steps (graphc/ops/control.py), where the loop lowering updates the sum in place; user code's
# `c + a @ b` stays an add of a matmul (BLAS adds c after the product's sum, or after each
# block of a long contraction, so the rounding may differ from NumPy's).
def _infer_matmul_acc(types, transpose_a=False, transpose_b=False):
    c, a, b = types
    product = _infer_matmul((a, b), transpose_a, transpose_b)
    if product.ndim != 2 or product.dtype not in ("float32", "float64") or c != product:
        raise ShapeError(f"matmul_acc adds a 2-D float product to an array of its type: got {c} "
                         f"and a product of {a} and {b} ({product})")
    return c


def _emit_matmul_acc(em, node):
    (c, a, b), out = node.inputs, node.outputs[0]
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    po = em.alloc(out)  # (c's own buffer where the loop lowering updates the sum in place)
    if po != em.name(c):
        em.copy(po, em.name(c), out.type.shape)
    em.imports.add("gemm_acc")
    em.line(f"gemm_acc({em.name(a)}, {em.name(b)}, {po}, {ta}, {tb})")


register("matmul_acc", "matmul", _infer_matmul_acc,
         lambda c, a, b, **flags: c + _matmul_ref(a, b, **flags),
         vjp=(lambda g, c, a, b, out, **flags: g,
              lambda g, c, a, b, out, **flags: _matmul_vjp_a(g, a, b, out, **flags),
              lambda g, c, a, b, out, **flags: _matmul_vjp_b(g, a, b, out, **flags)),
         emit=_emit_matmul_acc, raises=_beyond_blas_ints)


@implements(np.matmul, np.linalg.matmul, ufunc="matmul")
def matmul(x1, x2):
    """``x1 @ x2`` with NumPy's rules for 1-D operands and broadcast batch dimensions."""
    a, b = promote(x1, x2)
    ta, tb = type_of(a), type_of(b)
    if ta.ndim == 0 or tb.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got {ta} and {tb}\n  at {user_line()}")
    a2 = prims.reshape(a, (1,) + ta.shape) if ta.ndim == 1 else a
    b2 = prims.reshape(b, tb.shape + (1,)) if tb.ndim == 1 else b
    ra, rb = type_of(a2).ndim, type_of(b2).ndim
    a2 = prims.reshape(a2, (1,) * (rb - ra) + type_of(a2).shape) if ra < rb else a2
    b2 = prims.reshape(b2, (1,) * (ra - rb) + type_of(b2).shape) if rb < ra else b2
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
    return mark_weak(prims.reshape(out, shape), x1, x2)


# -- contractions: einsum and the functions built on it ------------------------------------
def _strong(x):
    """``x`` as NumPy's array functions see it: they call np.asarray, which types a Python
    number (and so a weak traced one) strongly: np.dot(x_f32, 2.0) is float64 in NumPy."""
    if isinstance(x, Tracer):
        return Tracer(x.value, x.builder) if x.weak else x
    return np.asarray(x)


def _compute_dtype(operands, dtype=None):
    """The result dtype: ``dtype`` if given, else NumPy's result type of the operands."""
    return np.dtype(dtype).name if dtype is not None else result_dtype(*operands)


def _diagonal_labels(x, labels):
    """Take the diagonal of every label repeated within one operand (``ii`` -> ``i``)."""
    labels = list(labels)
    while len(set(labels)) < len(labels):
        first = next(d for d, l in enumerate(labels) if labels.index(l) != d)
        d1 = labels.index(labels[first])
        n1, n2 = type_of(x).shape[d1], type_of(x).shape[first]
        if n1 != n2:
            raise ShapeError(f"einsum: dimensions in an operand for a repeated subscript must be "
                             f"equal, got {n1} and {n2} in {type_of(x)}\n  at {user_line()}")
        label = labels[d1]
        x = diagonal(x, 0, d1, first)  # drops both axes, appends the diagonal last
        labels = [l for d, l in enumerate(labels) if d not in (d1, first)] + [label]
    return x, labels


def _sum_labels(x, labels, drop):
    """Sum ``x`` over the axes whose labels are in ``drop`` (keeping x's dtype, as einsum does)."""
    axes = tuple(d for d, l in enumerate(labels) if l in drop)
    if not axes:
        return x, labels
    # integer sums accumulate in int64; the cast back wraps as NumPy's einsum does
    return prims.cast(prims.sum(x, axis=axes), type_of(x).dtype), [l for l in labels if l not in drop]


def _arrange(x, labels, order):
    """Transpose ``x`` so its axes follow ``order`` (a permutation of ``labels``)."""
    return prims.transpose(x, [labels.index(l) for l in order])


def _broadcast_labels(x, labels, sizes, which):
    """Broadcast size-1 axes of ``x`` whose labels are in ``which`` to their full size."""
    shape = tuple(sizes[l] if l in which else n for l, n in zip(labels, type_of(x).shape))
    return prims.broadcast_to(x, shape)


def _contract_pair(a, la, b, lb, keep, sizes):
    """Contract two labelled operands over their shared labels not in ``keep``: one matmul
    (batched over shared kept labels), or a broadcast multiply when nothing is summed."""
    a, la = _sum_labels(a, la, {l for l in la if l not in lb and l not in keep})
    b, lb = _sum_labels(b, lb, {l for l in lb if l not in la and l not in keep})
    batch = [l for l in la if l in lb and l in keep]
    summed = [l for l in la if l in lb and l not in keep]
    a_free = [l for l in la if l not in lb]
    b_free = [l for l in lb if l not in la]
    size_of = lambda x, lab: dict(zip(lab, type_of(x).shape))  # noqa: E731
    if not summed:  # an outer or elementwise product: broadcasting multiply
        sa, sb = size_of(a, la), size_of(b, lb)
        a2 = prims.reshape(_arrange(a, la, batch + a_free), [sa[l] for l in batch + a_free] + [1] * len(b_free))
        b2 = prims.reshape(_arrange(b, lb, batch + b_free),
                     [sb[l] for l in batch] + [1] * len(a_free) + [sb[l] for l in b_free])
        return prims.multiply(a2, b2), batch + a_free + b_free
    # matmul over (batch..., M, K) @ (batch..., K, N), reading a transposed operand in place
    a = _broadcast_labels(a, la, sizes, summed)
    b = _broadcast_labels(b, lb, sizes, summed)
    sa, sb = size_of(a, la), size_of(b, lb)
    ta = la == batch + summed + a_free and la != batch + a_free + summed
    tb = lb == batch + b_free + summed and lb != batch + summed + b_free
    a2 = a if ta else _arrange(a, la, batch + a_free + summed)
    b2 = b if tb else _arrange(b, lb, batch + summed + b_free)
    bdims_a, bdims_b = [sa[l] for l in batch], [sb[l] for l in batch]
    m = int(np.prod([sa[l] for l in a_free], dtype=np.int64))
    n = int(np.prod([sb[l] for l in b_free], dtype=np.int64))
    k = int(np.prod([sa[l] for l in summed], dtype=np.int64))
    a2 = prims.reshape(a2, bdims_a + ([k, m] if ta else [m, k]))
    b2 = prims.reshape(b2, bdims_b + ([n, k] if tb else [k, n]))
    out = matmul_t(a2, b2, transpose_a=ta, transpose_b=tb)
    bshape = list(type_of(out).shape[:-2])
    return prims.reshape(out, bshape + [sa[l] for l in a_free] + [sb[l] for l in b_free]), batch + a_free + b_free


def contract(operands, labels, out_labels, dtype=None):
    """Einstein summation over integer-labelled operands (the engine of einsum, tensordot...).

    Repeated labels within an operand take a diagonal; labels in one operand only and not in
    the output are summed first; then operands are contracted pairwise, left to right, each
    pair one matmul. Size-1 axes broadcast against their label's size in other operands.
    """
    operands = [_strong(x) for x in operands]
    dtype = _compute_dtype(operands, dtype)
    work = "int64" if dtype == "bool" else dtype
    operands = promote(*operands, dtype=work)
    sizes = {}
    items = []
    for x, lab in zip(operands, labels):
        t = type_of(x)
        if len(lab) != t.ndim:
            raise ShapeError(f"einsum: an operand of shape {t.shape} has {len(lab)} subscripts\n  at {user_line()}")
        x, lab = _diagonal_labels(x, lab)
        for l, n in zip(lab, type_of(x).shape):
            if sizes.get(l, 1) not in (1, n) and n != 1:
                raise ShapeError(f"einsum: operands could not be broadcast together: a subscript has "
                                 f"sizes {sizes[l]} and {n}\n  at {user_line()}")
            sizes[l] = n if sizes.get(l, 1) == 1 else sizes[l]
        items.append((x, lab))
    out_labels = list(out_labels)
    for k in range(len(items)):  # labels only this operand has, not in the output: sum them now
        others = set(out_labels).union(*[set(lab) for j, (_, lab) in enumerate(items) if j != k])
        x, lab = items[k]
        items[k] = _sum_labels(x, lab, {l for l in lab if l not in others})
    x, lab = items[0]
    for k in range(1, len(items)):
        keep = set(out_labels).union(*[set(l) for _, l in items[k + 1:]])
        x, lab = _contract_pair(x, lab, *items[k], keep, sizes)
    x, lab = _sum_labels(x, lab, {l for l in lab if l not in out_labels})
    x = _broadcast_labels(x, lab, sizes, set(lab))
    x = _arrange(x, lab, out_labels)
    return prims.not_equal(x, 0) if dtype == "bool" else prims.cast(x, dtype)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parse_einsum(subscripts, ndims):
    """``(labels per operand, output labels)`` for an einsum string; ``...`` dims get negative labels."""
    text = subscripts.replace(" ", "")
    explicit = "->" in text
    ins, out = text.split("->") if explicit else (text, None)
    terms = ins.split(",")
    if len(terms) != len(ndims):
        raise ShapeError(f"einsum: {len(terms)} operand subscripts for {len(ndims)} operands\n  at {user_line()}")
    for term in terms + ([out] if explicit else []):
        bad = set(term.replace("...", "")) - set(_LETTERS)
        if bad or term.count("...") > 1:
            raise ShapeError(f"einsum: invalid subscript string {subscripts!r}\n  at {user_line()}")
    n_ell = 0
    for term, nd in zip(terms, ndims):
        letters = len(term.replace("...", ""))
        if "..." in term:
            n_ell = max(n_ell, nd - letters)
            if nd < letters:
                raise ShapeError(f"einsum: operand has fewer dimensions than subscripts in {term!r}\n"
                                 f"  at {user_line()}")
        elif nd != letters:
            raise ShapeError(f"einsum: operand of {nd} dimensions given subscripts {term!r}\n  at {user_line()}")
    ell = list(range(-n_ell, 0))

    def expand(term, nd):
        if "..." not in term:
            return [ord(c) for c in term]
        left, right = term.split("...")
        k = nd - len(left) - len(right)
        return [ord(c) for c in left] + ell[len(ell) - k:] + [ord(c) for c in right]

    labels = [expand(term, nd) for term, nd in zip(terms, ndims)]
    if not explicit:
        counts = {}
        for term in terms:
            for c in term.replace("...", ""):
                counts[c] = counts.get(c, 0) + 1
        return labels, ell + sorted(ord(c) for c, n in counts.items() if n == 1)
    if "..." not in out and n_ell and any("..." in t for t in terms):
        widths = [nd - len(t.replace("...", "")) for t, nd in zip(terms, ndims) if "..." in t]
        if any(widths):
            raise ShapeError(f"einsum: output has more dimensions than subscripts given in {subscripts!r}, "
                             f"but no '...' to broadcast the extra dimensions\n  at {user_line()}")
    out_labels = expand(out, n_ell + len(out.replace("...", "")))
    every = set().union(*[set(l) for l in labels])
    if len(set(out_labels)) != len(out_labels) or not set(out_labels) <= every:
        raise ShapeError(f"einsum: output subscripts of {subscripts!r} must be distinct and appear "
                         f"in an input\n  at {user_line()}")
    return labels, out_labels


def _interleaved(args):
    """``einsum(a, [0, 1], b, [1, 2], [0, 2])`` -> labels (ints are labels as they are)."""
    ops = list(args[0:-1:2]) if len(args) % 2 else list(args[0::2])
    subs = list(args[1::2])
    out = list(args[-1]) if len(args) % 2 else None

    def convert(sub):
        return [-1000 if s is Ellipsis else int(s) for s in sub]

    if any(s is Ellipsis for sub in subs + [out or []] for s in sub):
        raise TraceError(f"einsum: '...' in the interleaved (operand, sublist) form is not supported; "
                         f"use a subscript string (at {user_line()})")
    labels = [convert(s) for s in subs]
    if out is None:
        flat = [l for s in labels for l in s]
        out = sorted(l for l in set(flat) if flat.count(l) == 1)
    return ops, labels, convert(out)


@implements(np.einsum)
def einsum(*operands, out=None, dtype=None, order="K", casting="safe", optimize=False):
    """``np.einsum``: any subscripts (explicit or implicit output, repeated subscripts for
    diagonals and traces, ``...`` broadcasting), lowered to transposes, reshapes, sums and
    one matmul per pair of operands (``optimize`` is accepted; operands contract left to right)."""
    if out is not None:
        raise TraceError(f"np.einsum(..., out=...) cannot be traced (at {user_line()})")
    if isinstance(operands[0], str):
        ops = operands[1:]
        labels, out_labels = _parse_einsum(operands[0], [type_of(x).ndim for x in ops])
    else:
        ops, labels, out_labels = _interleaved(operands)
    if not ops:
        raise ShapeError(f"einsum: no operands given\n  at {user_line()}")
    if dtype is not None:  # NumPy casts the operands to dtype under `casting` ('safe' by default)
        for x in ops:
            source = np.dtype(type_of(x).dtype)
            if not np.can_cast(source, np.dtype(dtype), casting):
                raise TypeError(f"np.einsum: cannot cast the {source} operand to {np.dtype(dtype)} with "
                                f"casting={casting!r}, as NumPy (at {user_line()})")
    return contract(list(ops), labels, out_labels, dtype)


def _axes_list(axes, ndim, what):
    axes = [int(a) for a in (axes if isinstance(axes, (tuple, list)) else (axes,))]
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"{what}: axis {a} is out of bounds for an array of dimension {ndim}\n  at {user_line()}")
    return [a % ndim for a in axes]


@implements(np.tensordot, np.linalg.tensordot)
def tensordot(a, b, axes=2):
    """``np.tensordot``: sum products over ``axes`` (an int N: a's last N and b's first N)."""
    a, b = _strong(a), _strong(b)
    ta, tb = type_of(a), type_of(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > min(ta.ndim, tb.ndim):
            raise ShapeError(f"tensordot: cannot sum over {n} axes of {ta} and {tb}\n  at {user_line()}")
        axes_a, axes_b = list(range(ta.ndim - n, ta.ndim)), list(range(n))
    else:
        axes_a = _axes_list(axes[0], ta.ndim, "tensordot")
        axes_b = _axes_list(axes[1], tb.ndim, "tensordot")
    if len(axes_a) != len(axes_b) or any(ta.shape[i] != tb.shape[j] for i, j in zip(axes_a, axes_b)):
        raise ShapeError(f"tensordot: shape-mismatch for sum over axes {axes_a} of {ta} and {axes_b} "
                         f"of {tb}\n  at {user_line()}")
    la = list(range(ta.ndim))
    lb = [la[axes_a[axes_b.index(j)]] if j in axes_b else ta.ndim + j for j in range(tb.ndim)]
    out = [l for d, l in enumerate(la) if d not in axes_a] + [l for j, l in enumerate(lb) if j not in axes_b]
    return contract([a, b], [la, lb], out)


@implements(np.dot)
def dot(a, b, out=None):
    """``np.dot``: matmul up to 2-D; above, the sum over a's last axis and b's second-to-last."""
    if out is not None:
        raise TraceError(f"np.dot(..., out=...) cannot be traced (at {user_line()})")
    a, b = _strong(a), _strong(b)
    ta, tb = type_of(a), type_of(b)
    if ta.ndim == 0 or tb.ndim == 0:
        return prims.multiply(a, b)
    if ta.ndim <= 2 and tb.ndim <= 2:
        return matmul(a, b)
    if ta.shape[-1] != tb.shape[max(tb.ndim - 2, 0)]:
        raise ShapeError(f"dot: shapes {ta.shape} and {tb.shape} not aligned: {ta.shape[-1]} (dim "
                         f"{ta.ndim - 1}) != {tb.shape[max(tb.ndim - 2, 0)]} (dim {max(tb.ndim - 2, 0)})\n"
                         f"  at {user_line()}")
    return tensordot(a, b, axes=([ta.ndim - 1], [max(tb.ndim - 2, 0)]))


@implements(np.inner)
def inner(a, b):
    """``np.inner``: the sum over the last axes of ``a`` and ``b`` (a product for 0-d operands)."""
    a, b = _strong(a), _strong(b)
    ta, tb = type_of(a), type_of(b)
    if ta.ndim == 0 or tb.ndim == 0:
        return prims.multiply(a, b)
    if ta.shape[-1] != tb.shape[-1]:
        raise ShapeError(f"inner: shapes {ta.shape} and {tb.shape} not aligned: the last dimensions "
                         f"differ\n  at {user_line()}")
    return tensordot(a, b, axes=([-1], [-1]))


@implements(np.vdot)
def vdot(a, b):
    """``np.vdot`` for real arrays: the dot product of the flattened operands."""
    if type_of(a).size != type_of(b).size:
        raise ShapeError(f"vdot: vectors have different lengths ({type_of(a)} and {type_of(b)})\n  at {user_line()}")
    return contract([prims.ravel(a), prims.ravel(b)], [[0], [0]], [])


@implements(np.outer, np.linalg.outer)
def outer(a, b, out=None):
    """``np.outer`` of the flattened operands."""
    if out is not None:
        raise TraceError(f"np.outer(..., out=...) cannot be traced (at {user_line()})")
    return matmul(prims.reshape(_strong(a), (-1, 1)), prims.reshape(_strong(b), (1, -1)))


@implements(np.kron)
def kron(a, b):
    """``np.kron``: the Kronecker product, a broadcast multiply and a reshape."""
    a, b = _strong(a), _strong(b)
    ta, tb = type_of(a), type_of(b)
    nd = max(ta.ndim, tb.ndim)
    sa, sb = (1,) * (nd - ta.ndim) + ta.shape, (1,) * (nd - tb.ndim) + tb.shape
    if nd == 0:
        return prims.multiply(a, b)
    a2 = prims.reshape(a, [n for d in sa for n in (d, 1)])
    b2 = prims.reshape(b, [n for d in sb for n in (1, d)])
    return prims.reshape(prims.multiply(a2, b2), [x * y for x, y in zip(sa, sb)])


# -- diagonals and triangles ----------------------------------------------------------
@implements(np.diagonal)
def diagonal(a, offset=0, axis1=0, axis2=1):
    """``np.diagonal`` (a copy, not a view): the diagonal of axes ``axis1``/``axis2`` moves last.

    The square block holding the diagonal is flattened and read with stride n + 1.
    """
    t = type_of(a)
    if t.ndim < 2:
        raise ShapeError(f"diagonal requires an array of at least two dimensions, got {t}\n  at {user_line()}")
    ax1, ax2 = _axes_list([axis1, axis2], t.ndim, "diagonal")
    if ax1 == ax2:
        raise ShapeError(f"diagonal: axis1 and axis2 cannot be the same\n  at {user_line()}")
    offset = int(offset)
    n1, n2 = t.shape[ax1], t.shape[ax2]
    size = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    row, col = (0, offset) if offset >= 0 else (-offset, 0)
    rest = [d for d in range(t.ndim) if d not in (ax1, ax2)]
    x = prims.transpose(a, rest + [ax1, ax2])
    if (size, size) != (n1, n2):
        x = prims.getitem(x, (Ellipsis, slice(row, row + size), slice(col, col + size)))
    lead = tuple(t.shape[d] for d in rest)
    flat = prims.reshape(x, lead + (size * size,))
    return prims.getitem(flat, (Ellipsis, slice(None, None, size + 1))) if size > 1 else prims.reshape(flat, lead + (size,))


@implements(np.linalg.diagonal)
def linalg_diagonal(x, *, offset=0):
    """``np.linalg.diagonal``: the diagonals of the last two axes."""
    return diagonal(x, offset, -2, -1)


@implements(np.trace)
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """``np.trace``: the sum of a diagonal (``dtype`` as np.sum's: small ints sum in int64)."""
    if out is not None:
        raise TraceError(f"np.trace(..., out=...) cannot be traced (at {user_line()})")
    return prims.sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


@implements(np.linalg.trace)
def linalg_trace(x, *, offset=0, dtype=None):
    """``np.linalg.trace``: traces of the last two axes."""
    return trace(x, offset, -2, -1, dtype)


def _masked(m, mask):
    zero = np.zeros((), type_of(m).dtype)
    return mark_weak(prims.where(mask, m, zero), m)


@implements(np.tril)
def tril(m, k=0):
    """``np.tril``: zero above the k-th diagonal of the last two axes (a where with a static mask)."""
    t = type_of(m)
    if t.ndim == 0:
        raise ShapeError(f"tril: input must be at least 1-d\n  at {user_line()}")
    return _masked(m, np.tri(*t.shape[-2:], k=int(k), dtype=bool))


@implements(np.triu)
def triu(m, k=0):
    """``np.triu``: zero below the k-th diagonal of the last two axes."""
    t = type_of(m)
    if t.ndim == 0:
        raise ShapeError(f"triu: input must be at least 1-d\n  at {user_line()}")
    return _masked(m, ~np.tri(*t.shape[-2:], k=int(k) - 1, dtype=bool))


@implements(np.diag)
def diag(v, k=0):
    """``np.diag``: a 1-D array's diagonal matrix (k-th diagonal), or a 2-D array's k-th diagonal."""
    t = type_of(v)
    k = int(k)
    if t.ndim == 2:
        return diagonal(v, k)
    if t.ndim != 1:
        raise ShapeError(f"diag: input must be 1- or 2-d, got {t}\n  at {user_line()}")
    n = t.shape[0] + abs(k)
    if k:  # place v[i] at column i + k (k > 0) or row i - k (k < 0) of the row vector spread below
        pad = np.zeros(abs(k), t.dtype)
        v = prims.concatenate([pad, v] if k > 0 else [v, pad])
    return _masked(prims.reshape(v, (1, n)), np.eye(n, k=k, dtype=bool))


def eye(N, M=None, k=0, dtype=float, order="C", *, device=None, like=None):
    """``np.eye``: a static identity (a constant where a trace uses it)."""
    return np.eye(N, M, k, dtype, order)


# -- more of np.linalg's array-API functions ------------------------------------------------
@implements(np.linalg.matrix_transpose)
def matrix_transpose(x, /):
    """``np.linalg.matrix_transpose``: swap the last two axes."""
    if type_of(x).ndim < 2:
        raise ShapeError(f"matrix_transpose: input must be at least 2-d, got {type_of(x)}\n  at {user_line()}")
    return prims.swapaxes(x, -1, -2)


@implements(np.linalg.vecdot)
def vecdot(x1, x2, /, *, axis=-1):
    """``np.linalg.vecdot`` (real): the sum over ``axis`` of ``x1 * x2``, broadcasting the rest."""
    x1, x2 = _strong(x1), _strong(x2)
    t1, t2 = type_of(x1), type_of(x2)
    nd = max(t1.ndim, t2.ndim)
    if min(t1.ndim, t2.ndim) == 0 or t1.shape[axis] != t2.shape[axis]:
        raise ShapeError(f"vecdot: {t1} and {t2} differ along axis {axis}\n  at {user_line()}")
    # integer sums accumulate in int64: back to the operands' dtype, as NumPy's vecdot keeps it
    return prims.cast(prims.sum(prims.multiply(x1, x2), axis=axis % nd), _compute_dtype([x1, x2]))


@implements(np.linalg.multi_dot)
def multi_dot(arrays, *, out=None):
    """``np.linalg.multi_dot``: the product of a chain of matrices (first and last may be 1-D),
    multiplied in the order of fewest scalar multiplications, as NumPy chooses it."""
    if out is not None:
        raise TraceError(f"np.linalg.multi_dot(..., out=...) cannot be traced (at {user_line()})")
    arrays = list(arrays)
    if len(arrays) < 2:
        raise ShapeError(f"multi_dot: expecting at least two arrays\n  at {user_line()}")
    if len(arrays) == 2:
        return dot(arrays[0], arrays[1])
    shapes = [type_of(a).shape for a in arrays]
    first_1d, last_1d = len(shapes[0]) == 1, len(shapes[-1]) == 1
    if any(len(s) != 2 for s in shapes[1:-1]) or len(shapes[0]) not in (1, 2) or len(shapes[-1]) not in (1, 2):
        raise ShapeError(f"multi_dot: the inner arrays must be 2-d, the first and last 1-d or 2-d; "
                         f"got shapes {shapes}\n  at {user_line()}")
    mats = list(arrays)
    if first_1d:
        mats[0] = prims.reshape(mats[0], (1, -1))
    if last_1d:
        mats[-1] = prims.reshape(mats[-1], (-1, 1))
    dims = [type_of(m).shape[0] for m in mats] + [type_of(mats[-1]).shape[1]]
    order = _chain_order(dims)

    def product(i, j):
        return mats[i] if i == j else dot(product(i, order[i][j]), product(order[i][j] + 1, j))

    result = product(0, len(mats) - 1)
    if first_1d and last_1d:
        return prims.reshape(result, ())
    if first_1d or last_1d:
        return prims.reshape(result, (-1,))
    return result


def _chain_order(dims):
    """The matrix-chain split points (NumPy's multi_dot dynamic program, same tie-breaking)."""
    n = len(dims) - 1
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = float("inf")
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k
    return split


@implements(np.linalg.matrix_power)
def matrix_power(a, n):
    """``np.linalg.matrix_power``: repeated squaring (n < 0: of the inverse; n == 0: identity)."""
    t = type_of(a)
    if t.ndim < 2 or t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"matrix_power: last 2 dimensions of the array must be square, got {t}\n  at {user_line()}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)):
        raise TypeError("exponent must be an integer")
    n = int(n)
    if n == 0:
        eye_n = np.eye(t.shape[-1], dtype=t.dtype)
        return prims.broadcast_to(eye_n, t.shape) if isinstance(a, Tracer) else np.broadcast_to(eye_n, t.shape).copy()
    if n < 0:
        a, n = prims.inv(a), -n
    result, base = None, a
    while n:  # binary powering, lowest bit first, as NumPy does
        if n & 1:
            result = base if result is None else matmul(result, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return result

# what the other op families call (through graphc.ops.prims)
export(
    matmul_t=matmul_t, tril=tril,
)
