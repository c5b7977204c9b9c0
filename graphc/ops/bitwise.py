"""Integer bit ops on int64 (wrapping, as NumPy and Numba): xor and a logical right shift.

They exist for counter-based random numbers (graphc.nn's dropout masks), whose
hash needs the bits of int64 values; they have no gradient.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir import TensorType
from graphc.ops.registry import ELEMENTWISE, register
from graphc.ops.rules import broadcast_types
from graphc.trace import bind, promote


def _infer_int64(types, **_):
    for t in types:
        if t.dtype != "int64":
            raise ShapeError(f"needs int64 operands, got {', '.join(str(t) for t in types)}")
    return TensorType(broadcast_types(types), "int64")


def _lshr_ref(x, shift):
    return (np.asarray(x, np.int64).view(np.uint64) >> np.uint64(shift)).view(np.int64)


register("bitxor", ELEMENTWISE, _infer_int64, np.bitwise_xor,
         scalar=lambda c, a, b: f"{a} ^ {b}", vjp=(None, None), differentiable=False)
register("lshr", ELEMENTWISE, _infer_int64, _lshr_ref,
         # an arithmetic shift, then the sign-extended high bits masked off
         scalar=lambda c, a: f"({a} >> {c.attrs['shift']}) & {c.lit((1 << (64 - c.attrs['shift'])) - 1)}",
         vjp=(None,), differentiable=False)


def bitxor(a, b):
    """Bitwise xor of int64 values."""
    return bind("bitxor", *promote(a, b, dtype="int64"))


def lshr(a, shift: int):
    """Logical (unsigned) right shift of int64 bits by a static amount in [1, 63]."""
    shift = int(shift)
    if not 1 <= shift <= 63:
        raise ValueError(f"lshr: shift must be in [1, 63], got {shift}")
    (a,) = promote(a, dtype="int64")
    return bind("lshr", a, shift=shift)
