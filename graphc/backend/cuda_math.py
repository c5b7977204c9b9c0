"""What ``np`` means inside generated CUDA kernels: the scalar vocabulary on CUDA's math.

Elementwise ops write their scalar rules with NumPy names (``np.exp(a)``,
``np.float32(0.5)``: graphc/ops/scalar.py). numba-cuda types only some NumPy ufuncs on
scalars, so a CUDA kernel module binds ``np`` to this module instead: NumPy's scalar types
and constants as they are, and each math function as a device function over Python's
``math`` (which numba-cuda lowers to libdevice: ``math.exp`` of a float32 is ``__nv_expf``,
so float32 math stays float32). Under the simulator the same functions run as Python.
"""
from __future__ import annotations

import math

import numpy
from numba import cuda
from numba.core import config

from graphc.backend.cuda_kernels import TYPED_NAMES

# NumPy's scalar types and constants, unchanged (np.float32(x) is a typed cast in a kernel)
float32, float64, int32, int64, bool_ = numpy.float32, numpy.float64, numpy.int32, numpy.int64, numpy.bool_
uint64 = numpy.uint64  # (int64 + - * wrap through it: graphc.ops.elementwise._wrapping)
nan, inf, pi, e = numpy.nan, numpy.inf, numpy.pi, numpy.e

_device = cuda.jit(device=True, inline="always")  # (a call would need the driver to link, even for PTX)


def _unary(fn):
    return _device(lambda x: fn(x))


def _binary(fn):
    return _device(lambda x, y: fn(x, y))


# NumPy's name -> Python's math function, which numba-cuda lowers to libdevice for its type
exp, expm1, log, log2, log10, log1p, sqrt = map(_unary, (math.exp, math.expm1, math.log, math.log2,
                                                         math.log10, math.log1p, math.sqrt))
sin, cos, tan, arcsin, arccos, arctan = map(_unary, (math.sin, math.cos, math.tan, math.asin, math.acos, math.atan))
sinh, cosh, tanh, arcsinh, arccosh, arctanh = map(_unary, (math.sinh, math.cosh, math.tanh, math.asinh,
                                                           math.acosh, math.atanh))
power, arctan2, hypot = map(_binary, (math.pow, math.atan2, math.hypot))


# Functions whose result needs constants of the operand's type (1, 2, 0.5) or a float floor:
# written once per float type with typed constants and libdevice's typed functions, so that a
# float32 kernel computes in float32 (``x - x + 1`` or ``math.floor`` would make it float64).
# Kernels of float nodes call the ``_f32``/``_f64`` names (graphc/backend/cuda_kernels.py); the
# plain ``sign`` takes integers.
def _typed(T, floor, ceil, rint, exp2, fmod, copysign, log1p):
    zero, one, half = T(0), T(1), T(0.5)
    ln2, log2e = T(math.log(2.0)), T(1.0 / math.log(2.0))

    @_device
    def sign(x):
        if x > zero:
            return one
        if x < zero:
            return -one
        if x == zero:
            return zero  # (+0 for -0.0 too, as NumPy)
        return x  # NaN

    @_device
    def logaddexp(x, y):
        if x == y:  # (also both inf: inf - inf would give NaN)
            return x + ln2
        m = x if x > y else y
        return m + log1p(math.exp(-abs(x - y)))

    @_device
    def logaddexp2(x, y):
        if x == y:
            return x + one
        m = x if x > y else y
        return m + log1p(exp2(-abs(x - y))) * log2e

    @_device
    def floor_divide(a, b):  # NumPy's npy_divmod: fmod, then a sign fix-up
        if b == zero:
            return a / b  # inf, -inf or nan, as NumPy
        mod = fmod(a, b)
        div = (a - mod) / b
        if mod != zero and (b < zero) != (mod < zero):
            div = div - one
        if div == zero:
            return copysign(zero, a / b)
        low = floor(div)
        return low + one if div - low > half else low

    @_device
    def remainder(a, b):
        mod = fmod(a, b)
        if b == zero:
            return mod  # nan, as NumPy
        if mod == zero:
            return copysign(zero, b)
        return mod + b if (b < zero) != (mod < zero) else mod

    def wrap(fn):
        return _device(fn)

    return dict(sign=sign, logaddexp=logaddexp, logaddexp2=logaddexp2, floor_divide=floor_divide,
                remainder=remainder, floor=wrap(lambda x: floor(x)), ceil=wrap(lambda x: ceil(x)),
                rint=wrap(lambda x: rint(x)), exp2=wrap(lambda x: exp2(x)))


if not config.ENABLE_CUDASIM:
    from numba.cuda import libdevice as _ld

    _F32 = _typed(float32, _ld.floorf, _ld.ceilf, _ld.rintf, _ld.exp2f, _ld.fmodf, _ld.copysignf, _ld.log1pf)
    _F64 = _typed(float64, _ld.floor, _ld.ceil, _ld.rint, _ld.exp2, _ld.fmod, _ld.copysign, _ld.log1p)
    for _name in TYPED_NAMES:
        globals()[_name + "_f32"], globals()[_name + "_f64"] = _F32[_name], _F64[_name]
    floor_divide_f32, floor_divide_f64 = _F32["floor_divide"], _F64["floor_divide"]
    remainder_f32, remainder_f64 = _F32["remainder"], _F64["remainder"]


@_device
def sign(x):  # (integers: float nodes call sign_f32 / sign_f64)
    if x > 0:
        return x - x + 1
    if x < 0:
        return x - x - 1
    return x - x


from graphc.backend.vecmath import floor_divide_int, power_int, remainder_int  # noqa: E402,F401

# Under the simulator kernels run as Python on NumPy scalars, where Python's math raises for
# log(0) or sqrt(-1): there each function is NumPy's own, which gives -inf and nan as the
# GPU's libdevice does (the PTX check compiles the versions above)
if config.ENABLE_CUDASIM:
    def _array_power(x, y):
        """C's pow through NumPy's power of two-element arrays (a scalar or a one-element
        exponent takes a sqrt shortcut for y == 0.5, which gives nan for -inf where C's pow,
        the CPU backend's and libdevice's give inf)."""
        with numpy.errstate(all="ignore"):
            return numpy.power(numpy.array([x, x]), numpy.array([y, y]))[0]

    for _name in ("exp", "expm1", "log", "log2", "log10", "log1p", "sqrt", "sin", "cos", "tan", "arcsin",
                  "arccos", "arctan", "arctan2", "hypot", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
                  "arctanh") + TYPED_NAMES:
        globals()[_name] = globals()[_name + "_f32"] = globals()[_name + "_f64"] = getattr(numpy, _name)
    power = _array_power
    from graphc.backend.vecmath import (floor_divide_f32, floor_divide_f64, remainder_f32,  # noqa: F401,F811
                                        remainder_f64)
