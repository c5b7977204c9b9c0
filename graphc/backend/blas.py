"""Matrix products in generated code: one direct BLAS ``sgemm``/``dgemm`` call.

    gemm(a, b, out, transpose_a, transpose_b)    # out[...] = op(a) @ op(b)

``a``, ``b`` and ``out`` are 2-D C-contiguous arrays of one float dtype
(float32 or float64), ``op`` transposes where its flag is true; ``out`` is
overwritten (never read, so it may hold garbage, but must not overlap ``a`` or
``b``). Shapes are checked at run time (ValueError), and so are BLAS's 32-bit
dimension limits.

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

``import scipy.linalg.cython_blas`` first imports the package ``scipy.linalg``,
~0.15 s (it pulls in numpy.f2py and SciPy's array API layer), and Numba does that
import when it loads its registries for the first compile or cache load of a
process (``numba.np.arraymath`` checks that a BLAS is there). Both need only the
extension module, which loads in ~10 ms. So ``prepare`` loads it from its file,
puts it in ``sys.modules`` while Numba loads its registries and the addresses are
taken, then takes it out again unless scipy.linalg was imported meanwhile: a later
``import scipy.linalg.cython_blas`` runs the package and gets the same module
object back (Python keeps an extension's module), with the package's attribute set
as usual. A warm start's first result is ~0.15 s sooner.
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys

import llvmlite.binding as ll
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.registry import cpu_target
from numba.extending import get_cython_function_address, intrinsic

_SYMBOLS = {types.float32: "graphc_sgemm", types.float64: "graphc_dgemm"}
INT_MAX = 2**31 - 1  # BLAS takes 32-bit dimensions and leading dimensions

CYTHON_BLAS = "scipy.linalg.cython_blas"
_prepared = False


def prepare():
    """Load Numba's registries and register graphc_sgemm/graphc_dgemm with LLVM (once), without
    importing scipy.linalg (see the module docstring)."""
    global _prepared
    if _prepared:
        return
    with _cython_blas_alone():
        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
        for name in _SYMBOLS.values():  # graphc_sgemm -> scipy's sgemm
            ll.add_symbol(name, get_cython_function_address(CYTHON_BLAS, name[-5:]))
    _prepared = True


@contextlib.contextmanager
def _cython_blas_alone():
    """SciPy's cython_blas extension in ``sys.modules`` without scipy.linalg, for the block."""
    module = None if CYTHON_BLAS in sys.modules or "scipy.linalg" in sys.modules else _load_extension()
    if module is not None:
        sys.modules[CYTHON_BLAS] = module
    try:
        yield
    finally:
        if module is not None and "scipy.linalg" not in sys.modules:
            sys.modules.pop(CYTHON_BLAS, None)


def _load_extension():
    """The cython_blas extension module loaded from its file, or None where it cannot be found
    that way (then the plain import runs)."""
    try:
        scipy = importlib.util.find_spec("scipy")
        folder = os.path.join(os.path.dirname(scipy.origin), "linalg")
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "cython_blas" + suffix)
            if os.path.isfile(path):
                spec = importlib.util.spec_from_file_location(CYTHON_BLAS, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
    except (ImportError, AttributeError, OSError, TypeError):
        pass
    return None


def _matrix(t) -> bool:
    return isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"


@intrinsic
def gemm(typingctx, a, b, out, transpose_a, transpose_b):
    """``out[...] = op(a) @ op(b)`` through BLAS; see the module docstring."""
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
            slot(ir.Constant(fty, 0.0)),
            builder.bitcast(C.data, fp), slot(ld(n)),
        ])
        return context.get_dummy_value()

    return types.none(a, b, out, transpose_a, transpose_b), codegen
