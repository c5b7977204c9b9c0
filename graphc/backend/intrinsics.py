"""Array helpers for generated code that Numba compiles inline, with no nested function.

``np.empty``, ``np.zeros``, ``ndarray.reshape`` and ``ws[a:b].view(dtype).reshape(shape)``
are Numba overloads: every distinct signature is compiled as a function of its
own (typed, lowered, optimised and turned into machine code), then linked into
the caller and optimised again, with run-time checks. In a generated entry with
dozens of buffers that was seconds of a training step's cold compile. These
``@intrinsic`` versions emit a handful of LLVM instructions straight into the
caller instead:

    empty_c((64, 256), np.float32)            # C-contiguous, uninitialised
    zeros_c((64, 10), np.float32)             # C-contiguous, all bytes zero
    reshape_c(a, (64,))                       # C-contiguous view of C-contiguous ``a``
    view_c(ws, 4096, (64, 256), np.float32)   # C-contiguous array over ws's bytes from 4096

They are for graphc's generated code, where shapes are static and the memory
plan guarantees that a ``view_c`` block fits inside ``ws`` and is aligned for the
dtype: ``reshape_c`` does not check that the new shape has as many elements as
``a`` (the graph's types guarantee it) and only accepts arrays Numba knows are
C-contiguous; ``view_c`` checks nothing.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed, impl_ret_new_ref
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array


def _shape_type(shape) -> bool:
    return isinstance(shape, types.BaseTuple) and all(isinstance(t, types.Integer) for t in shape)


def _dims(context, builder, shape_type, shape):
    return [context.cast(builder, v, t, types.intp)
            for v, t in zip(cgutils.unpack_tuple(builder, shape, len(shape_type)), shape_type)]


def _alloc_type(shape, dtype):
    if not _shape_type(shape) or not isinstance(dtype, (types.NumberClass, types.DType)):
        return None
    return types.Array(dtype.dtype, len(shape), "C")


def _allocate(context, builder, sig, args, zero):
    """A new C-contiguous array: one NRT allocation (Numba's ``_empty_nd_impl`` minus its
    nested allocator function, which would be one more compiled function to link)."""
    arrty = sig.return_type
    dims = _dims(context, builder, sig.args[0], args[0])
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(arrty.dtype)))
    nbytes, overflow = itemsize, cgutils.false_bit
    strides = []
    for d in reversed(dims):
        strides.append(nbytes)
        prod = builder.smul_with_overflow(nbytes, d)
        nbytes = builder.extract_value(prod, 0)
        overflow = builder.or_(overflow, builder.extract_value(prod, 1))
    with cgutils.if_unlikely(builder, overflow):
        context.call_conv.return_user_exc(builder, ValueError, ("array is too big",))
    align = context.get_constant(types.uint32, context.get_preferred_array_alignment(arrty.dtype))
    meminfo = context.nrt.meminfo_alloc_aligned(builder, nbytes, align)
    with cgutils.if_unlikely(builder, cgutils.is_null(builder, meminfo)):
        context.call_conv.return_user_exc(builder, MemoryError, ("cannot allocate an array",))
    data = builder.bitcast(context.nrt.meminfo_data(builder, meminfo),
                           context.get_data_type(arrty.dtype).as_pointer())
    if zero:
        cgutils.memset(builder, data, nbytes, 0)
    ary = context.make_array(arrty)(context, builder)
    populate_array(ary, data=data, shape=dims, strides=strides[::-1], itemsize=itemsize, meminfo=meminfo)
    return impl_ret_new_ref(context, builder, arrty, ary._getvalue())


def _allocator(name: str, zero: bool, doc: str):
    def typer(typingctx, shape, dtype):
        arrty = _alloc_type(shape, dtype)
        if arrty is None:
            return None

        def codegen(context, builder, sig, args):
            return _allocate(context, builder, sig, args, zero=zero)
        return arrty(shape, dtype), codegen
    typer.__name__ = typer.__qualname__ = name  # Numba's cache finds an intrinsic by module and name
    typer.__doc__ = doc
    return intrinsic(typer)


empty_c = _allocator("empty_c", False, "``np.empty(shape, dtype)`` for a tuple of ints and a NumPy scalar type.")
zeros_c = _allocator("zeros_c", True, "``np.zeros(shape, dtype)`` for a tuple of ints and a NumPy scalar type.")


def _c_strides(builder, dims, itemsize) -> list:
    """Byte strides of a C-contiguous array with ``dims`` (LLVM values), outermost first."""
    strides, step = [], itemsize
    for d in reversed(dims):
        strides.append(step)
        step = builder.mul(step, d)
    return strides[::-1]


@intrinsic
def reshape_c(typingctx, a, shape):
    """A C-contiguous view of C-contiguous ``a`` with ``shape`` (same element count: unchecked)."""
    if not (isinstance(a, types.Array) and a.layout == "C" and _shape_type(shape)):
        return None
    rty = a.copy(ndim=len(shape), layout="C")

    def codegen(context, builder, sig, args):
        aty, sty = sig.args
        src = context.make_array(aty)(context, builder, args[0])
        dims = _dims(context, builder, sty, args[1])
        out = context.make_array(sig.return_type)(context, builder)
        populate_array(out, data=src.data, shape=dims, strides=_c_strides(builder, dims, src.itemsize),
                       itemsize=src.itemsize,
                       meminfo=src.meminfo, parent=src.parent)
        return impl_ret_borrowed(context, builder, sig.return_type, out._getvalue())
    return rty(a, shape), codegen


@intrinsic
def view_c(typingctx, buf, offset, shape, dtype):
    """A C-contiguous ``dtype`` array of ``shape`` over the bytes of 1-d ``buf`` from byte ``offset``."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"
            and isinstance(offset, types.Integer) and _shape_type(shape)
            and isinstance(dtype, (types.NumberClass, types.DType))):
        return None
    arrty = types.Array(dtype.dtype, len(shape), "C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        intp = context.get_value_type(types.intp)
        dims = _dims(context, builder, sig.args[2], args[2])
        item_type = context.get_data_type(arrty.dtype)
        itemsize = ir.Constant(intp, context.get_abi_sizeof(item_type))
        start = builder.gep(builder.bitcast(src.data, ir.IntType(8).as_pointer()),
                            [context.cast(builder, args[1], sig.args[1], types.intp)])
        out = context.make_array(arrty)(context, builder)
        populate_array(out, data=builder.bitcast(start, item_type.as_pointer()), shape=dims,
                       strides=_c_strides(builder, dims, itemsize), itemsize=itemsize, meminfo=src.meminfo)
        return impl_ret_borrowed(context, builder, arrty, out._getvalue())
    return arrty(buf, offset, shape, dtype), codegen


@intrinsic
def offsets_c(typingctx, values):
    """A tuple of integers (workspace offsets) as a ``UniTuple(intp)``, not as Numba literals.

    An integer constant passed to an ``@njit`` function is typed ``Literal[int](2048)``, and
    Numba compiles the callee once per distinct literal value; graphc.backend.outline passes its
    functions' workspace offsets through this, so each compiles once.
    """
    if not (isinstance(values, types.BaseTuple) and all(isinstance(t, types.Integer) for t in values)):
        return None
    rty = types.UniTuple(types.intp, len(values))

    def codegen(context, builder, sig, args):
        items = [context.cast(builder, v, t, types.intp)
                 for v, t in zip(cgutils.unpack_tuple(builder, args[0], len(sig.args[0])), sig.args[0])]
        return context.make_tuple(builder, sig.return_type, items)
    return rty(values), codegen


@intrinsic
def row_c(typingctx, table, k, width):
    """Row ``k`` of a table of integers (a flat 1-d array, ``width`` per row) as a
    ``UniTuple(intp, width)``: the workspace offsets of one call in a loop of calls
    (graphc.backend.outline), the same type ``offsets_c`` gives, so the callee compiles once."""
    if not (isinstance(table, types.Array) and table.ndim == 1 and isinstance(table.dtype, types.Integer)
            and isinstance(k, types.Integer) and isinstance(width, types.IntegerLiteral)):
        return None
    n = width.literal_value
    rty = types.UniTuple(types.intp, n)

    def codegen(context, builder, sig, args):
        rows = context.make_array(sig.args[0])(context, builder, args[0])
        start = builder.mul(context.cast(builder, args[1], sig.args[1], types.intp),
                            context.get_constant(types.intp, n))
        items = []
        for j in range(n):
            at = builder.add(start, context.get_constant(types.intp, j))
            value = builder.load(builder.gep(rows.data, [at]))
            items.append(context.cast(builder, value, sig.args[0].dtype, types.intp))
        return context.make_tuple(builder, rty, items)
    return rty(table, k, width), codegen


@intrinsic
def seq_c(typingctx, arrays):
    """A tuple of C-contiguous arrays of one dtype and rank as a ``UniTuple``, so a loop can
    index it with a run-time index: the arguments of a loop of calls (graphc.backend.outline).

    Arrays of one Numba type keep it (the callee's signature is then that of the calls left
    outside loops: one compile). Where the types differ (a read-only or unaligned input among
    them) every item gets one type, writable and alignment not assumed; read-only inputs stay
    unwritten: generated code writes an input only where it is a State the runtime checked
    writable."""
    if not (isinstance(arrays, types.BaseTuple) and len(arrays) and all(
            isinstance(t, types.Array) and t.layout == "C" for t in arrays)):
        return None
    first = arrays[0]
    if any(t.dtype != first.dtype or t.ndim != first.ndim for t in arrays):
        return None
    same = all(t == first for t in arrays)
    item = first if same else types.Array(first.dtype, first.ndim, "C", aligned=False)
    rty = types.UniTuple(item, len(arrays))

    def codegen(context, builder, sig, args):
        items = cgutils.unpack_tuple(builder, args[0], len(sig.args[0]))
        for t, v in zip(sig.args[0], items):
            context.nrt.incref(builder, t, v)  # (the tuple holds new references, as a built tuple does)
        return context.make_tuple(builder, rty, items)
    return rty(arrays), codegen
