"""np.linalg's solvers and decompositions: inv, det, slogdet, solve, cholesky, eigh, svd, pinv.

Each is a primitive over stacks of matrices ``(..., m, n)`` whose lowering loops over the
leading dimensions and calls Numba's ``np.linalg`` (LAPACK through SciPy) on each matrix.
Their vjp rules are the standard matrix-calculus ones, written with these primitives and
matmul, so gradients of gradients work.

Autodiff follows one output per node, so ops with several results return them packed in
one array that the public function slices apart: ``slogdet`` -> ``(..., 2)`` (sign,
logabsdet), ``eigh`` -> ``(..., n + 1, n)`` (eigenvalues in row 0, eigenvectors below),
``svd`` -> ``(..., m*k + k + k*n)`` (U, S, Vh flattened).

Where NumPy and the compiled code differ, the compiled behaviour is the rule here too (the
interpreter's reference raises the same way), so results never silently differ:

* a matrix holding inf or NaN raises ``numpy.linalg.LinAlgError`` ("Array must not contain
  infs or NaNs"), where NumPy returns whatever LAPACK made of it (often partly NaN);
* a singular matrix to inv/solve and a matrix that is not positive definite to cholesky
  raise ``numpy.linalg.LinAlgError``, as in NumPy (the message is Numba's);
* eigh and cholesky read the lower triangle only, as NumPy's do, so their gradients are
  zero above the diagonal: the derivative of what is computed. For a symmetric input built
  from other values (``A = X @ X.T``) the chain rule gives the usual symmetric result.
* Eigenvectors and singular vectors are unique only up to sign (and to a basis within a
  repeated value): compiled code and NumPy may choose differently.

The gradients of det and slogdet use inv(A), so at a singular A they raise LinAlgError (the
adjugate would be defined there); pinv's assumes the rank is constant near A.
Gradients of eigh and svd divide by differences of eigenvalues (squared singular values),
and svd's also by the singular values where m != n: at repeated values (or zero singular
values) the affected terms are dropped (taken as 0), which is exact for functions that do
not depend on the choice of basis (e.g. of the eigenvalues alone) and otherwise undefined.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.scalar import CTOR
from graphc.errors import ShapeError, TraceError
from graphc.ir import TensorType
from graphc.ops.registry import export, implements, register
from graphc.ops import prims
from graphc.trace import bind, promote, result_dtype, type_of, user_line

try:  # NumPy 2's result types, so traced code gets the same named tuples as eager code
    from numpy.linalg._linalg import EighResult, SlogdetResult, SVDResult
except ImportError:  # pragma: no cover - a NumPy without them: the same fields
    from collections import namedtuple
    EighResult = namedtuple("EighResult", "eigenvalues eigenvectors")
    SlogdetResult = namedtuple("SlogdetResult", "sign logabsdet")
    SVDResult = namedtuple("SVDResult", "U S Vh")


# -- helpers ----------------------------------------------------------------------------
def _mT(x):
    return prims.swapaxes(x, -1, -2)


def _expand2(x):
    """``x[..., None, None]``."""
    return prims.reshape(x, tuple(type_of(x).shape) + (1, 1))


def _safe_reciprocal(x):
    """1 / x, and 0 where x == 0 (degenerate eigenvalue gaps, zero singular values)."""
    zero = x == 0
    return prims.where(zero, 0.0, 1.0 / prims.where(zero, 1.0, x))


def _gap_reciprocal(w):
    """``F[..., i, j] = 1 / (w[j] - w[i])`` off the diagonal, 0 on it (and at repeated values)."""
    return _safe_reciprocal(prims.expand_dims(w, -2) - prims.expand_dims(w, -1))


def _finite(name, *arrays):
    """The reference's check, matching the compiled code (Numba's LAPACK wrappers)."""
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")


def _stack_ref(fn):
    """A NumPy reference that checks for non-finite input as the compiled code does."""
    def ref(*arrays, **attrs):
        _finite("", *arrays)
        return fn(*arrays, **attrs)
    return ref


def _float_matrices(a, name, square=True):
    """``a`` as a float stack of matrices (ints and bools become float64, as in NumPy)."""
    t = type_of(a)
    if t.ndim < 2:
        raise ShapeError(f"np.linalg.{name}: {t.ndim}-dimensional array given; array must be at "
                         f"least two-dimensional\n  at {user_line()}")
    if square and t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"np.linalg.{name}: last 2 dimensions of the array must be square, got "
                         f"{t}\n  at {user_line()}")
    (a,) = promote(a, dtype=t.dtype if t.dtype.startswith("float") else "float64")
    return a


def _matrix_type(types, name, square=True):
    (t,) = types[:1]
    if t.ndim < 2 or (square and t.shape[-1] != t.shape[-2]) or not t.dtype.startswith("float"):
        raise ShapeError(f"{name} needs a float stack of {'square ' if square else ''}matrices, got {t}")
    return t


def _emit_batched(body, check_finite=False):
    """Lowering: loop over the batch dims (all inputs share them), ``body`` handles one matrix.

    ``body(em, node, ins, at)``: ``ins`` are the input matrices' expressions, ``at(*core)`` the
    output element (or slice) text for the core index ``core`` at this batch position.
    ``check_finite``: raise LinAlgError on inf or NaN first, as Numba's other wrappers do.
    """
    def emit(em, node):
        out = node.outputs[0]
        em.alloc(out)
        batch = node.inputs[0].type.shape[:-2]
        with em.loops(batch) as idx:
            ins = [f"{em.name(v)}[{', '.join(idx)}]" if idx else em.name(v) for v in node.inputs]
            if check_finite:
                with em.block(f"if not np.all(np.isfinite({ins[0]})):"):
                    em.line('raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")')

            def at(*rest):
                return f"{em.name(out)}[{', '.join(list(idx) + [str(r) for r in rest])}]"
            body(em, node, ins, at)
    return emit


def _emit_copy(em, src, dst_at, shape, offset=None):
    """Copy matrix (or vector) ``src`` of ``shape`` elementwise into the output: at the same
    index, or, with ``offset``, flattened into the last axis from ``offset`` on."""
    with em.loops(shape) as idx:
        if offset is None:
            em.line(f"{dst_at(*idx)} = {src}[{', '.join(idx)}]")
        else:
            flat = " + ".join([str(offset)] + [f"{i} * {int(np.prod(shape[d + 1:], dtype=np.int64))}"
                                               for d, i in enumerate(idx)])
            em.line(f"{dst_at(flat)} = {src}[{', '.join(idx)}]")


def _register(name, infer, reference, vjp, body, check_finite=False):
    # every one raises at run time: LinAlgError on singular or non-finite input
    return register(name, "linalg", infer, _stack_ref(reference), vjp=vjp,
                    emit=_emit_batched(body, check_finite), raises=True)


def _empty_result(fn, a, *more):
    """The result for matrices with a zero dimension (a static shape): NumPy's, as a constant."""
    args = [np.zeros(type_of(x).shape, type_of(x).dtype) for x in (a,) + more]
    return fn(*args)


# -- inv ----------------------------------------------------------------------------------
def _inv_body(em, node, ins, at):
    em.line(f"{at(':', ':')} = np.linalg.inv({ins[0]})")


def _inv_vjp(g, a, out):
    # d(A^-1) = -A^-1 dA A^-1  =>  gA = -A^-T g A^-T
    return -prims.matmul_t(prims.matmul_t(out, g, transpose_a=True), out, transpose_b=True)


_register("inv", lambda types: _matrix_type(types, "inv"), np.linalg.inv, (_inv_vjp,), _inv_body)


@implements(np.linalg.inv)
def inv(a):
    """``np.linalg.inv`` of a stack of square matrices."""
    a = _float_matrices(a, "inv")
    if type_of(a).shape[-1] == 0:
        return _empty_result(np.linalg.inv, a)
    return bind("inv", a)


# -- det, slogdet -----------------------------------------------------------------------------
def _infer_det(types):
    t = _matrix_type(types, "det")
    return TensorType(t.shape[:-2], t.dtype)


def _det_body(em, node, ins, at):
    ctor = CTOR[node.outputs[0].type.dtype]
    out = node.outputs[0]
    expr = f"{ctor}(np.linalg.det({ins[0]}))"
    em.line(f"{at() if out.type.shape else em.name(out)} = {expr}")


def _det_vjp(g, a, out):
    # d det(A) = det(A) tr(A^-1 dA)  =>  gA = g det(A) A^-T
    return _expand2(g * out) * _mT(inv(a))


_register("det", _infer_det, np.linalg.det, (_det_vjp,), _det_body, check_finite=True)  # Numba's does not


@implements(np.linalg.det)
def det(a):
    """``np.linalg.det`` of a stack of square matrices."""
    a = _float_matrices(a, "det")
    if type_of(a).shape[-1] == 0:
        return _empty_result(np.linalg.det, a)
    return bind("det", a)


def _infer_slogdet(types):
    t = _matrix_type(types, "slogdet")
    return TensorType(t.shape[:-2] + (2,), t.dtype)


def _slogdet_ref(a):
    sign, logdet = np.linalg.slogdet(a)
    return np.stack([sign, logdet], axis=-1)


def _slogdet_body(em, node, ins, at):
    s, l = em.tmp("s"), em.tmp("l")
    em.line(f"{s}, {l} = np.linalg.slogdet({ins[0]})")
    em.line(f"{at(0)} = {s}")
    em.line(f"{at(1)} = {l}")


def _slogdet_vjp(g, a, out):
    # the sign is piecewise constant; d log|det A| = tr(A^-1 dA)
    return _expand2(prims.getitem(g, (Ellipsis, 1))) * _mT(inv(a))


register("slogdet", "linalg", _infer_slogdet, _stack_ref(_slogdet_ref), vjp=(_slogdet_vjp,),
         emit=_emit_batched(_slogdet_body), raises=True)


@implements(np.linalg.slogdet)
def slogdet(a):
    """``np.linalg.slogdet``: ``SlogdetResult(sign, logabsdet)``."""
    a = _float_matrices(a, "slogdet")
    if type_of(a).shape[-1] == 0:
        return _empty_result(np.linalg.slogdet, a)
    packed = bind("slogdet", a)
    return SlogdetResult(prims.getitem(packed, (Ellipsis, 0)), prims.getitem(packed, (Ellipsis, 1)))


# -- solve -------------------------------------------------------------------------------------
def _infer_solve(types):
    a, b = types
    _matrix_type([a], "solve")
    if b.dtype != a.dtype or b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or b.shape[-2] != a.shape[-1]:
        raise ShapeError(f"solve needs b of shape (..., {a.shape[-1]}, k) with a's batch dims and dtype, "
                         f"got a {a} and b {b}")
    return b


def _solve_body(em, node, ins, at):
    em.line(f"{at(':', ':')} = np.linalg.solve({ins[0]}, {ins[1]})")


def _solve_vjp(g, a, b, out):
    # x = A^-1 b: gb = A^-T g, gA = -gb x^T
    gb = bind("solve", _mT(a), g)
    return -prims.matmul_t(gb, out, transpose_b=True), gb


register("solve", "linalg", _infer_solve, _stack_ref(np.linalg.solve),
         vjp=_solve_vjp, emit=_emit_batched(_solve_body), raises=True)


@implements(np.linalg.solve)
def solve(a, b):
    """``np.linalg.solve(a, b)``: b is a vector when 1-D, else a stack of (n, k) matrices whose
    batch dims broadcast with a's (NumPy 2's rule)."""
    dtype = result_dtype(a, b)
    a, b = promote(a, b, dtype=dtype if dtype.startswith("float") else "float64")
    a = _float_matrices(a, "solve")
    ta, tb = type_of(a), type_of(b)
    vector = tb.ndim == 1
    b2 = prims.reshape(b, (tb.shape[0], 1)) if vector else b
    tb2 = type_of(b2)
    if tb2.ndim < 2 or tb2.shape[-2] != ta.shape[-1]:
        raise ShapeError(f"np.linalg.solve: b of shape {tb.shape} does not fit a of shape {ta.shape}\n"
                         f"  at {user_line()}")
    try:
        batch = tuple(np.broadcast_shapes(ta.shape[:-2], tb2.shape[:-2]))
    except ValueError:
        raise ShapeError(f"np.linalg.solve: batch dimensions of {ta.shape} and {tb.shape} cannot be "
                         f"broadcast together\n  at {user_line()}") from None
    a = prims.broadcast_to(a, batch + ta.shape[-2:])
    b2 = prims.broadcast_to(b2, batch + tb2.shape[-2:])
    if ta.shape[-1] == 0 or tb2.shape[-1] == 0:
        x = _empty_result(np.linalg.solve, a, b2)
    else:
        x = bind("solve", a, b2)
    return prims.reshape(x, batch + (ta.shape[-1],)) if vector else x


# -- cholesky -------------------------------------------------------------------------------------
def _cholesky_body(em, node, ins, at):
    em.line(f"{at(':', ':')} = np.linalg.cholesky({ins[0]})")


def _lower_read(gs):
    """The gradient of a function of A's lower triangle from the one for symmetric perturbations:
    entries below the diagonal stand for both of their symmetric places."""
    return prims.tril(gs) + prims.tril(gs, -1)


def _cholesky_vjp(g, a, out):
    # Murray (2016): S = L^-T Phi(L^T gL) L^-1, Phi = lower triangle with half the diagonal
    n = type_of(a).shape[-1]
    phi = prims.tril(prims.matmul_t(out, g, transpose_a=True))
    phi = phi - 0.5 * (phi * np.eye(n, dtype=type_of(a).dtype))
    linv = inv(out)
    s = prims.matmul_t(prims.matmul_t(linv, phi, transpose_a=True), linv)
    return _lower_read(0.5 * (s + _mT(s)))


_register("cholesky", lambda types: _matrix_type(types, "cholesky"), np.linalg.cholesky,
          (_cholesky_vjp,), _cholesky_body, check_finite=True)  # Numba's does not check


@implements(np.linalg.cholesky)
def cholesky(a, /, *, upper=False):
    """``np.linalg.cholesky``: the lower factor L (``upper=True``: L^T); reads a's lower triangle."""
    a = _float_matrices(a, "cholesky")
    if type_of(a).shape[-1] == 0:
        return _empty_result(np.linalg.cholesky, a)
    lower = bind("cholesky", a)
    return _mT(lower) if upper else lower


# -- eigh -------------------------------------------------------------------------------------
def _infer_eigh(types):
    t = _matrix_type(types, "eigh")
    return TensorType(t.shape[:-2] + (t.shape[-1] + 1, t.shape[-1]), t.dtype)


def _eigh_ref(a):
    w, v = np.linalg.eigh(a)
    return np.concatenate([w[..., None, :], v], axis=-2)


def _eigh_body(em, node, ins, at):
    w, v = em.tmp("w"), em.tmp("v")
    n = node.inputs[0].type.shape[-1]
    em.line(f"{w}, {v} = np.linalg.eigh({ins[0]})")
    _emit_copy(em, w, lambda j: at(0, j), (n,))
    _emit_copy(em, v, lambda i, j: at(f"{i} + 1", j), (n, n))


def _unpack_eigh(packed):
    return prims.getitem(packed, (Ellipsis, 0, slice(None))), prims.getitem(packed, (Ellipsis, slice(1, None), slice(None)))


def _eigh_vjp(g, a, out):
    # gA = V (diag(gw) + F o (V^T gV)) V^T, F_ij = 1 / (w_j - w_i), for symmetric perturbations
    w, v = _unpack_eigh(out)
    gw, gv = _unpack_eigh(g)
    n = type_of(a).shape[-1]
    inner = (prims.expand_dims(gw, -2) * np.eye(n, dtype=type_of(a).dtype)
             + _gap_reciprocal(w) * prims.matmul_t(v, gv, transpose_a=True))
    full = prims.matmul_t(prims.matmul_t(v, inner), v, transpose_b=True)
    return _lower_read(0.5 * (full + _mT(full)))


register("eigh", "linalg", _infer_eigh, _stack_ref(_eigh_ref), vjp=(_eigh_vjp,),
         emit=_emit_batched(_eigh_body), raises=True)


@implements(np.linalg.eigh)
def eigh(a, UPLO="L"):
    """``np.linalg.eigh``: ``EighResult(eigenvalues, eigenvectors)`` of the symmetric matrices
    whose lower triangle ``a`` holds (``UPLO="U"``: upper); eigenvalues ascending."""
    if UPLO not in ("L", "l"):
        if UPLO not in ("U", "u"):
            raise ValueError("UPLO argument must be 'L' or 'U'")
        a = _mT(a)  # the upper triangle of a is the lower one of its transpose
    a = _float_matrices(a, "eigh")
    if type_of(a).shape[-1] == 0:
        return _empty_result(np.linalg.eigh, a)
    return EighResult(*_unpack_eigh(bind("eigh", a)))


@implements(np.linalg.eigvalsh)
def eigvalsh(a, UPLO="L"):
    """``np.linalg.eigvalsh``: the eigenvalues of eigh (their gradient needs the vectors too)."""
    return eigh(a, UPLO)[0]


# -- svd -------------------------------------------------------------------------------------
def _svd_sizes(m, n, full_matrices):
    k = min(m, n)
    mu, nv = (m, n) if full_matrices else (k, k)
    return k, mu, nv  # U is (m, mu), S (k,), Vh (nv, n)


def _infer_svd(types, full_matrices):
    t = _matrix_type(types, "svd", square=False)
    m, n = t.shape[-2:]
    k, mu, nv = _svd_sizes(m, n, full_matrices)
    return TensorType(t.shape[:-2] + (m * mu + k + nv * n,), t.dtype)


def _svd_ref(a, full_matrices):
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    batch = a.shape[:-2]
    return np.concatenate([u.reshape(batch + (-1,)), s, vh.reshape(batch + (-1,))], axis=-1)


def _svd_body(em, node, ins, at):
    m, n = node.inputs[0].type.shape[-2:]
    fm = node.attrs["full_matrices"]
    k, mu, nv = _svd_sizes(m, n, fm)
    u, s, vh = em.tmp("u"), em.tmp("s"), em.tmp("vh")
    em.line(f"{u}, {s}, {vh} = np.linalg.svd({ins[0]}, full_matrices={fm})")
    _emit_copy(em, u, at, (m, mu), offset=0)
    _emit_copy(em, s, at, (k,), offset=m * mu)
    _emit_copy(em, vh, at, (nv, n), offset=m * mu + k)


def _unpack_svd(packed, m, n, full_matrices):
    k, mu, nv = _svd_sizes(m, n, full_matrices)
    batch = tuple(type_of(packed).shape[:-1])
    u = prims.reshape(prims.getitem(packed, (Ellipsis, slice(0, m * mu))), batch + (m, mu))
    s = prims.getitem(packed, (Ellipsis, slice(m * mu, m * mu + k)))
    vh = prims.reshape(prims.getitem(packed, (Ellipsis, slice(m * mu + k, None))), batch + (nv, n))
    return u, s, vh


def _svd_vjp(g, a, out, full_matrices):
    # Townsend (2016), real case, with F_ij = 1 / (s_j^2 - s_i^2):
    # gA = U [(F o (U^T gU - gU^T U)) S + diag(gS) + S (F o (V^T gV - gV^T V))] V^T
    #      + (I - U U^T) gU S^-1 V^T + U S^-1 gV^T (I - V V^T)
    m, n = type_of(a).shape[-2:]
    k = min(m, n)
    if full_matrices and m != n:
        raise TraceError(f"the gradient of np.linalg.svd(full_matrices=True) of a non-square matrix "
                         f"is not defined (the extra singular vectors are arbitrary); use "
                         f"full_matrices=False (at {user_line()})")
    u, s, vh = _unpack_svd(out, m, n, full_matrices)
    gu, gs, gvh = _unpack_svd(g, m, n, full_matrices)
    eye = np.eye(k, dtype=type_of(a).dtype)
    f = _gap_reciprocal(s * s)
    s_row = prims.expand_dims(s, -2)  # X * s_row = X @ diag(s); diag(s) @ X = X * s_col
    s_col = prims.expand_dims(s, -1)
    utgu = prims.matmul_t(u, gu, transpose_a=True)
    vtgv = prims.matmul_t(vh, gvh, transpose_b=True)  # V^T gV = Vh gVh^T
    inner = ((f * (utgu - _mT(utgu))) * s_row + prims.expand_dims(gs, -2) * eye
             + s_col * (f * (vtgv - _mT(vtgv))))
    grad = prims.matmul_t(prims.matmul_t(u, inner), vh)
    inv_s = _safe_reciprocal(s)
    if m > k:  # (I - U U^T) gU S^-1 V^T
        proj = gu - prims.matmul_t(u, utgu)
        grad = grad + prims.matmul_t(proj * prims.expand_dims(inv_s, -2), vh)
    if n > k:  # U S^-1 gV^T (I - V V^T), gV^T = gVh
        proj = gvh - prims.matmul_t(vtgv, vh, transpose_a=True)
        grad = grad + prims.matmul_t(u, prims.expand_dims(inv_s, -1) * proj)
    return grad


register("svd", "linalg", _infer_svd, _stack_ref(_svd_ref), vjp=(_svd_vjp,),
         emit=_emit_batched(_svd_body), raises=True)


@implements(np.linalg.svd)
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """``np.linalg.svd``: ``SVDResult(U, S, Vh)``, or S alone with ``compute_uv=False``.

    ``hermitian`` is accepted; the general algorithm gives the same factorization up to signs.
    """
    a = _float_matrices(a, "svd", square=False)
    m, n = type_of(a).shape[-2:]
    full = bool(full_matrices) and bool(compute_uv) and m != n
    if m == 0 or n == 0:
        return _empty_result(lambda x: np.linalg.svd(x, full_matrices=full, compute_uv=compute_uv), a)
    u, s, vh = _unpack_svd(bind("svd", a, full_matrices=full), m, n, full)
    return SVDResult(u, s, vh) if compute_uv else s


@implements(np.linalg.svdvals)
def svdvals(x, /):
    """``np.linalg.svdvals``: the singular values, descending."""
    return svd(x, compute_uv=False)


# -- pinv -------------------------------------------------------------------------------------
def _infer_pinv(types, rcond):
    t = _matrix_type(types, "pinv", square=False)
    return TensorType(t.shape[:-2] + (t.shape[-1], t.shape[-2]), t.dtype)


def _pinv_body(em, node, ins, at):
    em.line(f"{at(':', ':')} = np.linalg.pinv({ins[0]}, {node.attrs['rcond']!r})")


def _pinv_vjp(g, a, out, rcond):
    # Golub & Pereyra (1973), for A of locally constant rank, X = A+:
    # gA = -X^T g X^T + (I - A X) g^T X X^T + X^T X g^T (I - X A)
    x = out
    grad = -prims.matmul_t(prims.matmul_t(x, g, transpose_a=True), x, transpose_b=True)
    left = prims.matmul_t(prims.matmul_t(g, x, transpose_a=True), x, transpose_b=True)  # g^T X X^T
    grad = grad + left - prims.matmul_t(a, prims.matmul_t(x, left))
    right = prims.matmul_t(prims.matmul_t(x, x, transpose_a=True), g, transpose_b=True)  # X^T X g^T
    return grad + right - prims.matmul_t(prims.matmul_t(right, x), a)


register("pinv", "linalg", _infer_pinv, _stack_ref(lambda a, rcond: np.linalg.pinv(a, rcond=rcond)),
         vjp=(_pinv_vjp,), emit=_emit_batched(_pinv_body), raises=True)


@implements(np.linalg.pinv)
def pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    """``np.linalg.pinv``: singular values at most ``rcond`` times the largest count as zero
    (NumPy 2's defaults: 1e-15, or ``max(m, n) * eps`` with ``rtol=None``)."""
    a = _float_matrices(a, "pinv", square=False)
    t = type_of(a)
    if rcond is None:
        if rtol is np._NoValue:
            rcond = 1e-15
        elif rtol is None:
            rcond = max(t.shape[-2:]) * float(np.finfo(t.dtype).eps)
        else:
            rcond = rtol
    if not isinstance(rcond, (int, float, np.integer, np.floating)):
        raise TraceError(f"np.linalg.pinv: rcond must be a number, not {type(rcond).__name__} (at {user_line()})")
    if 0 in t.shape[-2:]:
        return _empty_result(np.linalg.pinv, a)
    return bind("pinv", a, rcond=float(rcond))

# what the other op families call (through graphc.ops.prims)
export(
    inv=inv, svdvals=svdvals,
)
