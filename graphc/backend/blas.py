"""Matrix products in generated code: one direct BLAS ``sgemm``/``dgemm`` call.

    gemm(a, b, out, transpose_a, transpose_b)      # out[...] = op(a) @ op(b)
    gemm_acc(a, b, out, transpose_a, transpose_b)  # out[...] += op(a) @ op(b)

``a``, ``b`` and ``out`` are 2-D C-contiguous arrays of one float dtype
(float32 or float64), ``op`` transposes where its flag is true; ``out`` must
not overlap ``a`` or ``b``. ``gemm`` overwrites it (never reads it, so it may
hold garbage); ``gemm_acc`` adds the product to it (BLAS's beta = 1: the
product's sum for each element, or for each block of a long contraction, is
added to ``out``'s element). Shapes are checked at run time (ValueError), and
so are BLAS's 32-bit dimension limits.

Numba's ``np.dot(a, b, out)`` does the same through the same BLAS, but each
call site costs ~0.1 s of compile time: a nested function per signature with
layout and shape checks, copies of non-contiguous operands and its own
optimisation and machine-code passes. This ``@intrinsic`` emits the call
inline: a shape check, the arguments stored to stack slots, the call.

The BLAS is SciPy's (``scipy.linalg.cython_blas``, the one Numba's ``np.dot``
uses). Its ``sgemm``/``dgemm`` are registered with LLVM under
the names ``graphc_sgemm``/``graphc_dgemm``, and compiled code calls them by
name, so machine code loaded from Numba's disk cache links to the addresses of
the current process. ``prepare`` registers them; the CPU backend calls it before
it compiles or loads a generated module, and ``gemm``'s typing calls it too.

Neither graphc nor Numba's registries import ``scipy.linalg`` for that (~0.15 s of
every process's first compile or cache load: the package pulls in numpy.f2py and
SciPy's array API layer). ``numba.np.arraymath``, loaded with Numba's registries,
asks ``numba.np.linalg.ensure_blas()`` whether a BLAS is there, which imports
scipy.linalg: ``prepare`` loads the registries (under Numba's compiler lock, as
Numba's own first compile does) with that check answered by the presence of SciPy's
``cython_blas`` extension file and Numba's own LP64/ILP64 check. The addresses are
the BLAS functions that extension calls (``scipy_sgemm_``...), looked up through the
extension's shared library without importing it as a module, and checked by one
2x3 @ 3x2 product each; anything else found (another SciPy build, a failed check)
takes the addresses from ``cython_blas`` itself, importing scipy.linalg as before.
Nothing in ``sys.modules`` is touched, so the user's imports of SciPy are unaffected.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.machinery
import importlib.util
import os
import sys

import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import cpu_target
from numba.np import linalg as numba_linalg
from numba.extending import get_cython_function_address, intrinsic

_SYMBOLS = {types.float32: "graphc_sgemm", types.float64: "graphc_dgemm"}
INT_MAX = 2**31 - 1  # BLAS takes 32-bit dimensions and leading dimensions

CYTHON_BLAS = "scipy.linalg.cython_blas"
_prepared = False


def prepare():
    """Load Numba's registries and register graphc_sgemm/graphc_dgemm with LLVM (once per
    process), without importing scipy.linalg where it can (see the module docstring)."""
    global _prepared
    if _prepared:
        return
    with global_compiler_lock:
        if _prepared:
            return
        extension = _extension_path()
        with _blas_check_answered(extension is not None):
            cpu_target.typing_context.refresh()
            cpu_target.target_context.refresh()
        addresses = _addresses_in(extension) or {
            name: get_cython_function_address(CYTHON_BLAS, name[-5:]) for name in _SYMBOLS.values()}
        for name, address in addresses.items():
            ll.add_symbol(name, address)
        _prepared = True


@contextlib.contextmanager
def _blas_check_answered(present: bool):
    """numba.np.linalg.ensure_blas as numba.np.arraymath calls it when Numba loads its registries:
    the extension file's presence and Numba's int-width check instead of importing scipy.linalg.
    (Under the compiler lock: no Numba compile runs meanwhile; Numba's later calls get the real one.)"""
    check_width = getattr(numba_linalg, "_check_lapack_int_width", None)
    if not present or check_width is None or "numba.np.arraymath" in sys.modules:
        yield
        return
    real = numba_linalg.ensure_blas
    numba_linalg.ensure_blas = check_width
    try:
        yield
    finally:
        numba_linalg.ensure_blas = real
        arraymath = sys.modules.get("numba.np.arraymath")
        if arraymath is not None and getattr(arraymath, "ensure_blas", None) is check_width:
            arraymath.ensure_blas = real  # (it imported the name)


def _extension_path() -> str | None:
    """The file of SciPy's cython_blas extension, found without importing scipy.linalg."""
    try:
        scipy = importlib.util.find_spec("scipy")
        folder = os.path.join(os.path.dirname(scipy.origin), "linalg")
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "cython_blas" + suffix)
        if os.path.isfile(path):
            return path
    return None


def _addresses_in(extension: str | None) -> dict | None:
    """{graphc_sgemm: address, graphc_dgemm: address} of the BLAS the extension calls, each checked
    by a small product; None where they cannot be found or fail the check."""
    if extension is None:
        return None
    try:
        library = ctypes.CDLL(extension)  # (its BLAS comes with it; no module is initialized)
    except OSError:
        return None
    for prefix in ("scipy_", ""):
        found = {}
        for name, dtype in (("graphc_sgemm", np.float32), ("graphc_dgemm", np.float64)):
            function = getattr(library, f"{prefix}{name[-5:]}_", None)
            address = ctypes.cast(function, ctypes.c_void_p).value if function is not None else None
            if address is None or not _computes_a_product(address, dtype):
                break
            found[name] = address
        else:
            return found
    return None


def _computes_a_product(address: int, dtype) -> bool:
    """Whether the Fortran gemm at ``address`` (32-bit integers) computes a 2x3 @ 3x2 product."""
    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    pointer = ctypes.POINTER
    gemm_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, *[pointer(ctypes.c_int)] * 3,
                                 pointer(real), pointer(real), pointer(ctypes.c_int), pointer(real),
                                 pointer(ctypes.c_int), pointer(real), pointer(real), pointer(ctypes.c_int))
    a = np.arange(1, 7, dtype=dtype).reshape(2, 3)
    b = np.arange(7, 13, dtype=dtype).reshape(3, 2)
    out = np.zeros((2, 2), dtype)
    two, three = ctypes.c_int(2), ctypes.c_int(3)
    as_real = lambda x: x.ctypes.data_as(pointer(real))  # noqa: E731
    # column-major: out^T (2x2) = b^T (2x3) @ a^T (3x2), the same call as the intrinsic's
    gemm_type(address)(b"N", b"N", ctypes.byref(two), ctypes.byref(two), ctypes.byref(three),
                       ctypes.byref(real(1.0)), as_real(b), ctypes.byref(two), as_real(a), ctypes.byref(three),
                       ctypes.byref(real(0.0)), as_real(out), ctypes.byref(two))
    return bool(np.array_equal(out, a @ b))


def _matrix(t) -> bool:
    return isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"


@intrinsic
def gemm(typingctx, a, b, out, transpose_a, transpose_b):
    """``out[...] = op(a) @ op(b)`` through BLAS; see the module docstring."""
    return _gemm(a, b, out, transpose_a, transpose_b, beta=0.0)


@intrinsic
def gemm_acc(typingctx, a, b, out, transpose_a, transpose_b):
    """``out[...] += op(a) @ op(b)`` through BLAS (beta = 1); see the module docstring."""
    return _gemm(a, b, out, transpose_a, transpose_b, beta=1.0)


def _gemm(a, b, out, transpose_a, transpose_b, beta: float):
    """The typing and code of ``out = op(a) @ op(b) + beta * out``."""
    prepare()
    if not all(_matrix(t) for t in (a, b, out)) or not out.mutable:
        return None
    if not (a.dtype == b.dtype == out.dtype and a.dtype in _SYMBOLS):
        return None
    if not all(isinstance(t, types.Boolean) for t in (transpose_a, transpose_b)):
        return None

    def codegen(context, builder, sig, args):
        aty, bty, oty, taty, tbty = sig.args
        A = context.make_array(aty)(context, builder, args[0])
        B = context.make_array(bty)(context, builder, args[1])
        C = context.make_array(oty)(context, builder, args[2])
        ta = context.cast(builder, args[3], taty, types.boolean)
        tb = context.cast(builder, args[4], tbty, types.boolean)
        (ar, ac), (br, bc), (m, n) = (cgutils.unpack_tuple(builder, X.shape, 2) for X in (A, B, C))
        # op(a) is m x k, op(b) is k x n
        am, k = builder.select(ta, ac, ar), builder.select(ta, ar, ac)
        bk, bn = builder.select(tb, bc, br), builder.select(tb, br, bc)
        limit = ir.Constant(ar.type, INT_MAX)
        bad = cgutils.false_bit
        for cond in (builder.icmp_signed("!=", am, m), builder.icmp_signed("!=", bk, k),
                     builder.icmp_signed("!=", bn, n)):
            bad = builder.or_(bad, cond)
        for dim in (ar, ac, br, bc):
            bad = builder.or_(bad, builder.icmp_signed(">", dim, limit))
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(
                builder, ValueError, ("gemm: operand shapes do not match or exceed BLAS's 32-bit limit",))

        # BLAS is column-major: a C-order matrix is its transpose there, so compute
        # out^T (n x m) = op(b)^T op(a)^T, i.e. call gemm with the operands swapped
        i32, i8 = ir.IntType(32), ir.IntType(8)
        fty = context.get_value_type(aty.dtype)

        def slot(value):
            ptr = cgutils.alloca_once(builder, value.type)
            builder.store(value, ptr)
            return ptr

        def dim(value):
            return builder.trunc(value, i32)

        def ld(value):  # leading dimension: the row length, at least 1 (empty matrices)
            v = dim(value)
            one = ir.Constant(i32, 1)
            return builder.select(builder.icmp_signed("<", v, one), one, v)

        flag = {True: ir.Constant(i8, ord("T")), False: ir.Constant(i8, ord("N"))}
        fp, ip, cp = fty.as_pointer(), i32.as_pointer(), i8.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [cp, cp, ip, ip, ip, fp, fp, ip, fp, ip, fp, fp, ip])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _SYMBOLS[aty.dtype])
        builder.call(fn, [
            slot(builder.select(tb, flag[True], flag[False])),
            slot(builder.select(ta, flag[True], flag[False])),
            slot(dim(n)), slot(dim(m)), slot(dim(k)),
            slot(ir.Constant(fty, 1.0)),
            builder.bitcast(B.data, fp), slot(ld(bc)),
            builder.bitcast(A.data, fp), slot(ld(ac)),
            slot(ir.Constant(fty, beta)),
            builder.bitcast(C.data, fp), slot(ld(n)),
        ])
        return context.get_dummy_value()

    return types.none(a, b, out, transpose_a, transpose_b), codegen
