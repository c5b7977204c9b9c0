"""Array helpers for generated code that Numba compiles inline, with no nested function.

``ws[a:b].view(np.float32).reshape(shape)`` would cost Numba three overloads per
call site (each typed, lowered and optimised as a function of its own, with
run-time checks) -- in a training step's entry with dozens of workspace
buffers that was ~2 s of compile time. ``view_c`` emits a handful of LLVM
instructions straight into the caller instead:

    view_c(ws, 4096, (64, 256), np.float32)   # C-contiguous array over ws's bytes from 4096

It is for graphc's generated code, where the memory plan guarantees that the
block fits inside ``ws`` and is aligned for the dtype: nothing is checked.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array


def _shape_type(shape) -> bool:
    return isinstance(shape, types.BaseTuple) and all(isinstance(t, types.Integer) for t in shape)


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
        dims = [context.cast(builder, v, t, types.intp)
                for v, t in zip(cgutils.unpack_tuple(builder, args[2], len(sig.args[2])), sig.args[2])]
        item_type = context.get_data_type(arrty.dtype)
        itemsize = ir.Constant(intp, context.get_abi_sizeof(item_type))
        start = builder.gep(builder.bitcast(src.data, ir.IntType(8).as_pointer()),
                            [context.cast(builder, args[1], sig.args[1], types.intp)])
        strides, step = [], itemsize
        for d in reversed(dims):
            strides.append(step)
            step = builder.mul(step, d)
        out = context.make_array(arrty)(context, builder)
        populate_array(out, data=builder.bitcast(start, item_type.as_pointer()), shape=dims,
                       strides=strides[::-1], itemsize=itemsize, meminfo=src.meminfo)
        return impl_ret_borrowed(context, builder, arrty, out._getvalue())
    return arrty(buf, offset, shape, dtype), codegen
