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

# NumPy's scalar types and constants, unchanged (np.float32(x) is a typed cast in a kernel)
float32, float64, int32, int64, bool_ = numpy.float32, numpy.float64, numpy.int32, numpy.int64, numpy.bool_
nan, inf, pi, e = numpy.nan, numpy.inf, numpy.pi, numpy.e

_device = cuda.jit(device=True, inline="always")  # (a call would need the driver to link, even for PTX)


@_device
def exp(x):
    return math.exp(x)


@_device
def exp2(x):
    return math.pow(x - x + 2, x)


@_device
def expm1(x):
    return math.expm1(x)


@_device
def log(x):
    return math.log(x)


@_device
def log2(x):
    return math.log2(x)


@_device
def log10(x):
    return math.log10(x)


@_device
def log1p(x):
    return math.log1p(x)


@_device
def sqrt(x):
    return math.sqrt(x)


@_device
def power(x, y):
    return math.pow(x, y)


@_device
def sin(x):
    return math.sin(x)


@_device
def cos(x):
    return math.cos(x)


@_device
def tan(x):
    return math.tan(x)


@_device
def arcsin(x):
    return math.asin(x)


@_device
def arccos(x):
    return math.acos(x)


@_device
def arctan(x):
    return math.atan(x)


@_device
def arctan2(y, x):
    return math.atan2(y, x)


@_device
def hypot(x, y):
    return math.hypot(x, y)


@_device
def sinh(x):
    return math.sinh(x)


@_device
def cosh(x):
    return math.cosh(x)


@_device
def tanh(x):
    return math.tanh(x)


@_device
def arcsinh(x):
    return math.asinh(x)


@_device
def arccosh(x):
    return math.acosh(x)


@_device
def arctanh(x):
    return math.atanh(x)


@_device
def floor(x):
    return x - x + math.floor(x)  # (math.floor gives an integer; keep the float type)


@_device
def ceil(x):
    return x - x + math.ceil(x)


@_device
def rint(x):
    # round half to even, as np.rint (Python's round of a float is too, but returns an int)
    r = math.floor(x)
    d = x - r
    if d > 0.5 or (d == 0.5 and math.fmod(r, 2.0) != 0.0):
        r += 1
    return x - x + r if x == x and not math.isinf(x) else x


@_device
def sign(x):
    if x > 0:
        return x - x + 1
    if x < 0:
        return x - x - 1
    if x == 0:
        return x - x  # +0 for -0.0 too, as NumPy
    return x  # NaN


@_device
def logaddexp(x, y):
    if x == y:  # (also both inf: inf - inf would give NaN)
        return x + math.log(x - x + 2)
    m = x if x > y else y
    return m + math.log1p(math.exp(-abs(x - y)))


@_device
def logaddexp2(x, y):
    if x == y:
        return x + (x - x + 1)
    m = x if x > y else y
    return m + math.log1p(math.pow(x - x + 2, -abs(x - y))) / math.log(x - x + 2)


# NumPy's floor division and remainder of floats (npy_divmod: fmod, then a sign fix-up), as
# graphc.backend.vecmath's CPU versions; the integer ones are vecmath's own (plain integer
# arithmetic, which numba-cuda compiles as it is)
@_device
def floor_divide_float(a, b):
    zero = a - a
    if b == zero:
        return a / b  # inf, -inf or nan, as NumPy
    mod = math.fmod(a, b)
    div = (a - mod) / b
    if mod != zero and (b < zero) != (mod < zero):
        div = div - 1
    if div == zero:
        return math.copysign(zero, a / b)
    low = zero + math.floor(div)
    return low + 1 if div - low > 0.5 else low


@_device
def remainder_float(a, b):
    mod = math.fmod(a, b)
    if b == a - a:
        return mod  # nan, as NumPy
    if mod == a - a:
        return math.copysign(a - a, b)
    return mod + b if (b < a - a) != (mod < a - a) else mod


floor_divide_f32 = floor_divide_f64 = floor_divide_float
remainder_f32 = remainder_f64 = remainder_float
from graphc.backend.vecmath import floor_divide_int, power_int, remainder_int  # noqa: E402,F401

# Under the simulator kernels run as Python on NumPy scalars, where Python's math raises for
# log(0) or sqrt(-1): there each function is NumPy's own, which gives -inf and nan as the
# GPU's libdevice does (the PTX check compiles the versions above)
if config.ENABLE_CUDASIM:
    for _name in ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "power", "sin", "cos",
                  "tan", "arcsin", "arccos", "arctan", "arctan2", "hypot", "sinh", "cosh", "tanh", "arcsinh",
                  "arccosh", "arctanh", "floor", "ceil", "rint", "sign", "logaddexp", "logaddexp2"):
        globals()[_name] = getattr(numpy, _name)
    from graphc.backend.vecmath import (floor_divide_f32, floor_divide_f64, remainder_f32,  # noqa: F401,F811
                                        remainder_f64)
