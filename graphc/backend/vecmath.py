"""Vectorizable scalar math for generated Numba loops.

Without Intel SVML, Numba lowers ``np.exp``/``np.tanh``/... inside a loop to
scalar libm calls, so the loop is not vectorized (LLVM may even emit
``@llvm.tanh.v16f32``, which instruction selection scalarizes back into 16
``tanhf`` calls).  The functions here are branch-free (selects only): range
reduction, polynomials evaluated with ``llvm.fma``, 2**n scaling by integer
bit manipulation, all through LLVM intrinsics that have SIMD forms -- so a
loop calling them is vectorized (``<16 x float>`` / ``<8 x double>`` with
AVX-512, 8/4 lanes with AVX2).  float32 variants compute entirely in float32
(no ``double`` appears in their IR).

Public API (each a Numba dispatcher; callable from njit code and, for
debugging, from Python)::

    exp_f32(x)       exp_f64(x)
    log_f32(x)       log_f64(x)
    tanh_f32(x)      tanh_f64(x)
    sigmoid_f32(x)   sigmoid_f64(x)      # 1 / (1 + exp(-x))
    sin_f32(x)       sin_f64(x)          # full range (Payne-Hanek for huge |x|)
    cos_f32(x)       cos_f64(x)
    sin_cw_f32(x)    sin_cw_f64(x)       # faster; NaN for |x| >= SINCOS_CW_LIMIT
    cos_cw_f32(x)    cos_cw_f64(x)
    pow_f32(x, y)    pow_f64(x, y)       # np.power semantics for float x, y
    expm1_f32(x)     expm1_f64(x)        # built on exp's reduction (see below)
    log1p_f32(x)     log1p_f64(x)
    exp2_f32(x)      exp2_f64(x)         # pow(2, x): exact for integer x
    log2_f32(x)      log2_f64(x)         # pow's double-length log: exact for powers of 2
    log10_f32(x)     log10_f64(x)
    sinh_f32(x)      sinh_f64(x)
    cosh_f32(x)      cosh_f64(x)
    tan_f32(x)       tan_f64(x)          # sin/cos's full-range reduction
    arcsinh_f32(x)   arcsinh_f64(x)      # glibc's formulas on log1p / log
    arccosh_f32(x)   arccosh_f64(x)
    arctanh_f32(x)   arctanh_f64(x)
    arctan_f32(x)    arctan_f64(x)       # one polynomial, reduction at tan(pi/8)
    arctan2_f32(y, x) arctan2_f64(y, x)  # C99 special cases (signed zeros, infinities)
    arcsin_f32(x)    arcsin_f64(x)       # atan2(x, sqrt(1 - x^2))
    arccos_f32(x)    arccos_f64(x)       # atan2(sqrt(1 - x^2), x)
    hypot_f32(x, y)  hypot_f64(x, y)     # double-length squares, no spurious over/underflow

    # scalar (not vectorizable) helpers with NumPy's semantics, end of this module:
    floor_divide_f32/_f64/_int(a, b)  remainder_f32/_f64/_int(a, b)  power_int(a, b)

    lookup(name, dtype) -> dispatcher     # lookup("tanh", np.float32)
    FUNCTIONS[name][dtype_name]           # FUNCTIONS["tanh"]["float32"]
    is_vectorized(dispatcher, signature=None, min_lanes=2) -> bool
    SINCOS_CW_LIMIT = {"float32": 2.0**17, "float64": 2.0**40}

From generated source::

    from graphc.backend.vecmath import tanh_f32, pow_f64
    ...
    out[i] = tanh_f32(x[i])

Arguments of other numeric types (ints, Python floats, float64 passed to an
``_f32`` function) are cast to the function's dtype; the result has that
dtype.  Derivatives need no extra helpers (tanh' = 1 - t*t,
sigmoid' = s*(1 - s), exp' = exp, log' = 1/x, sin' = cos, cos' = -sin,
d(x**y)/dx = y*pow(x, y-1), d(x**y)/dy = log(x)*pow(x, y)).

How it is always inlined: a public function is an ``inline='always'`` Numba
function whose body is one intrinsic call; the intrinsic compiles the real
implementation with this module's own flags (``error_model='numpy'``, no
fastmath) and emits the call with the ``alwaysinline`` call-site attribute.
(A plain ``@njit`` pow/sin is too big for LLVM's inliner, and a ``range``
loop calling it was measured not to vectorize.)  The inlined instructions
keep their own strict floating-point flags whatever the caller's fastmath;
still, do not rely on ``nnan``/``ninf``/``fast`` in the calling loop for
code around these calls.  FMA hardware is assumed (every x86-64-v3 CPU; this
machine is AMD Zen 4 with AVX-512); without it ``llvm.fma`` is a libm call.
Compile cost: ~0.2-0.5 s per function and dtype, once per process (cached
per signature by Numba); works with ``cache=True`` callers.

Accuracy target: a few ulp (at most 2), not correct rounding.  exp, tanh
and sigmoid use a plain single-length Cody-Waite reduction and polynomial
(no double-length corrections); float32 tanh adds a short odd polynomial
below |x| = 0.55 and 1 - 2/(exp(2|x|) + 1) above (exp(2|x|) + 1 from a
reduction in |x|'s units, rounded once: see tanh_poly); sigmoid folds the rounding
errors of 1 + exp(-|x|) and of its one division back in with one FMA (the
plain formula reaches 2.4 ulp in float32).  float64 tanh is -em/(2 + em) with
em = expm1(-2|x|) kept double-length only where it is cheap (the FMA's own
rounding error) and the division corrected the same way as sigmoid's (a
plain single-length version reaches 2.6 ulp; the earlier fully double-length
one, 0.78 ulp, was 20% slower).  log was already a plain formula; sin/cos
and pow keep their double-length corrections.

Measured accuracy: max error in ulps of the result dtype against a
higher-precision reference (float64 libm for float32 inputs; x87 80-bit
``np.longdouble`` NumPy for float64 inputs), ulp taken at the exact value,
denormal results in denormal ulps.

    function    float32     float64    float32 domain     float64 domain
    exp         1.070       0.971      all 2**32 inputs   random*
    log         0.840       0.822      all 2**32 inputs   random*
    tanh        1.378       1.353      all 2**32 inputs   random*
    sigmoid     1.526       1.379      all 2**32 inputs   random*
    sin         0.758       0.737      all 2**32 inputs   random* + huge |x|
    cos         0.755       0.741      all 2**32 inputs   random* + huge |x|
    sin_cw/cos_cw: identical results to sin/cos for |x| < SINCOS_CW_LIMIT
    pow         0.801       0.868      5e7 pairs**        1.2e7 pairs**
    expm1       1.632       1.795      test sweep***      test sweep***
    log1p       1.430       1.296
    exp2        0.737       0.731
    log2        0.500       0.500
    log10       0.500       0.500
    sinh        2.059       2.293
    cosh        1.335       1.161
    tan         1.853       1.827
    arcsinh     1.782       1.733
    arccosh     2.481       2.262
    arctanh     1.822       1.663
    arctan      0.878       0.978
    arcsin      1.386       1.570
    arccos      1.397       1.545
    arctan2     1.082       1.016      2**17 random pairs (bits and [-3, 3]); specials bit for bit
    hypot       0.500       0.500      likewise
    *** tests/backend/test_vecmath.py's sweep: 2**16 (float32) / 2**14
      (float64) random bit patterns, the same count in each dense range
      of DENSE, log-spaced magnitudes and special values.
    expm1(x) = fma(2^n, q, 2^n - 1) with q = expm1(r) from exp's reduction
    (2^n - 1 exact, no cancellation); log1p(x) = log(u) + (x - (u-1))/u,
    u = 1 + x (the second term restores u's rounding error); log2/log10
    multiply pow's double-length log by a double-length 1/ln2, 1/ln10;
    cosh = e + 1/(4e), sinh = e - 1/(4e) with e = exp(|x|)/2 scaled so it
    overflows only where the result does, and sinh = (m + m/(m+1))/2,
    m = expm1(|x|), below |x| = 1; tan = +-sin/cos of the reduced argument;
    arcsinh/arccosh/arctanh: glibc's log1p/log formulas (e.g. arctanh =
    log1p(2x/(1-x))/2), with llvm.sqrt; arctan: atan(t) = t + t^3 P(t^2)
    for t <= tan(pi/8), else pi/4 + atan((t-1)/(t+1)) with the quotient's
    rounding error carried (and 1/t above 1, pi/2 - ...), pi/4, pi/2, pi
    double-length.

    (worst float32 inputs: exp -5.8430023, tanh 0.55280346, sigmoid
    -5.836315; float64: exp 471.72462542827, tanh 0.20537244377030262,
    sigmoid -6.236838356167141.  float64 exp/tanh/sigmoid: max over the test
    file's sweep(name, float64, n) for n = 2**20 and 4 x 2**20, i.e. the
    points below plus 2 x n/4 log-spaced magnitudes.)
    * float64: 4 x 2**20 uniformly random bit patterns (every exponent, both
      signs) + 4 x 2**20 uniform points in each of the function's
      interesting ranges (exp [-746, 710]; log (0, 4], (0, 1e6]; tanh
      [-1, 1], [-20, 20]; sigmoid [-746, 40]; sin/cos [-10, 10], [-1e6, 1e6],
      [-1e15, 1e15] and random exponents up to 1e308) + special values;
      sin/cos also the worst case for float64 argument reduction,
      x = 6381956970095103 * 2**797 (|x mod pi/2| ~ 2**-61): cos correctly
      rounded (error 0.05 ulp).
    ** pow: positive x of every exponent with y chosen so that y*log(x)
      covers the finite, overflow and underflow range, x in 1 +- 1e-2 with
      |y| < 3e4, negative x with integer y, and x in [0, 10], |y| < 30.
    Where the reference overflows/underflows to inf/0 (or is NaN) the results
    are identical, in every sweep.

Special values match NumPy bit for bit (any NaN for NaN): NaN in -> NaN out;
exp overflow -> inf, underflow -> 0 with correctly rounded denormals in
between; log(+-0) = -inf, log(x < 0) = nan, log(inf) = inf, log of
denormals accurate; tanh(+-inf) = +-1, tanh(-0) = -0, tanh(denormal) = x;
sigmoid(-inf) = 0, sigmoid(inf) = 1, sigmoid(x << 0) gives the denormal
exp(x) (NumPy's 1/(1+exp(-x)) formula would give 0 there); sin/cos(+-inf) =
nan, sin(-0) = -0, sin(denormal) = x; pow follows C99 Annex F / np.power:
x**+-0 = 1 (even x = nan), 1**y = 1 (even y = nan), (-1)**+-inf = 1,
(negative finite)**(non-integer) = nan, odd integer y keeps the sign of x
(including -0 and -inf bases), +-0 and +-inf bases with every sign of y,
|x| < 1 / > 1 with y = +-inf, overflow to +-inf and underflow to +-0.
Caveat: ``np.power(a, 0.5)`` with a *scalar* 0.5 takes NumPy's sqrt fast
path, which differs from C99 pow at -0 and -inf (gives -0.0 and nan, pow
gives +0.0 and inf); NumPy likewise uses x*x / 1/x for scalar exponents
2 / -1.  Lower such constant exponents to sqrt / x*x / 1/x in generated code
to match NumPy bit for bit (pow is not guaranteed correctly rounded).
NumPy's RuntimeWarnings / FP exception flags are not reproduced.

sin/cos argument reduction: Cody-Waite with a 3-part pi/2 and FMA
(r = x - n*pi/2 kept as a double-length r + rl) for |x| < 2**17 (float32) /
2**40 (float64); above that an exact Payne-Hanek reduction with a table of
(2**E * 2/pi) mod 4 in four p-bit chunks per exponent (gathered; vectorizes
with vgatherdps/vgatherdpd).  Both reductions are computed for every element
(branch-free), which makes full-range sin/cos ~4x slower than the ``_cw``
variants; use those when |x| is known to stay small.

Speed on this machine (2-core AMD Zen 4, shared; 1e7 elements, one thread,
``o[i] = f(x[i])`` njit loop, median of 21 interleaved runs, load average
~1.2; previous double-length version in parentheses):

    float32   tanh 4.4 ms (7.1)   sigmoid 4.9 (7.4)   exp 3.2 (4.6)   log 4.5 (same)
              NumPy: tanh 3.8, 1/(1+exp(-x)) 10.0, exp 4.7, log 4.3;
              copy loop 2.6
    float64   tanh 17.0 (same)    sigmoid 13.2 (17.7) exp 8.8 (11.0)  log 10.3 (same)
              tanh 14.0 since the single-length expm1 (16.8 before, NumPy
              16.8, in one run of 21 interleaved samples)
              NumPy: tanh 17.5, 1/(1+exp(-x)) 20.9, exp 8.6, log 8.7;
              copy loop 5.7

float32 tanh since the folded reduction (an Intel Rocket Lake, LLVM at
256-bit width; 64k elements, one process per variant, load average 2-4):
27-30 us per 64k against 40-44 before and NumPy's AVX-512 20-24 (2**32
inputs: 1.378 ulp, 1.496 before).

Older figures: Numba loop with np.tanh 146 ms; sin 26 ms / sin_cw 5.9 ms
(NumPy 5.3 ms, Numba loop with np.sin 84 ms).  A fused
tanh(x*w + b) * sigmoid(x) forward+backward loop (float32, 1e7, one thread)
takes 16.6 ms (23.0 before), i.e. it is compute-bound, not memory-bound.
Cold compile of one loop calling tanh_f32, sigmoid_f32, exp_f32 and log_f32:
0.91 s CPU (1.11 s before).
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "exp_f32", "exp_f64", "log_f32", "log_f64", "tanh_f32", "tanh_f64",
    "sigmoid_f32", "sigmoid_f64", "sin_f32", "sin_f64", "cos_f32", "cos_f64",
    "pow_f32", "pow_f64", "FUNCTIONS", "lookup", "is_vectorized",
    "sin_cw_f32", "sin_cw_f64", "cos_cw_f32", "cos_cw_f64", "SINCOS_CW_LIMIT",
    "expm1_f32", "expm1_f64", "log1p_f32", "log1p_f64", "exp2_f32", "exp2_f64", "log2_f32", "log2_f64",
    "log10_f32", "log10_f64", "sinh_f32", "sinh_f64", "cosh_f32", "cosh_f64", "tan_f32", "tan_f64",
    "arcsinh_f32", "arcsinh_f64", "arccosh_f32", "arccosh_f64", "arctanh_f32", "arctanh_f64",
    "arctan_f32", "arctan_f64", "arctan2_f32", "arctan2_f64", "arcsin_f32", "arcsin_f64",
    "arccos_f32", "arccos_f64", "hypot_f32", "hypot_f64",
    "floor_divide_f32", "floor_divide_f64", "remainder_f32", "remainder_f64", "floor_divide_int",
    "remainder_int", "power_int",
]

_JIT = dict(error_model="numpy", nogil=True)

# --------------------------------------------------------------------------
# LLVM intrinsics (all vectorizable, none produce poison)
# --------------------------------------------------------------------------

_FLOAT_TO_INT = {types.float32: types.int32, types.float64: types.int64}
_INT_TO_FLOAT = {types.int32: types.float32, types.int64: types.float64}


def _llvm_suffix(ty):
    return "f32" if ty == types.float32 else "f64"


@intrinsic
def _bits(typingctx, x):
    """Reinterpret float32 -> int32 / float64 -> int64."""
    if x not in _FLOAT_TO_INT:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))

    return _FLOAT_TO_INT[x](x), codegen


@intrinsic
def _from_bits(typingctx, i):
    """Reinterpret int32 -> float32 / int64 -> float64."""
    if i not in _INT_TO_FLOAT:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(sig.return_type))

    return _INT_TO_FLOAT[i](i), codegen


def _float_intrinsic(llvm_name, nargs):
    def impl(typingctx, *args):
        if len(args) != nargs or args[0] not in _FLOAT_TO_INT:
            return None
        if any(a != args[0] for a in args):
            return None

        def codegen(context, builder, sig, llargs):
            lt = context.get_value_type(sig.return_type)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(lt, [lt] * nargs),
                "llvm.%s.%s" % (llvm_name, _llvm_suffix(sig.return_type)))
            return builder.call(fn, llargs)

        return args[0](*args), codegen

    return impl


def _fma_typer(typingctx, a, b, c):
    return _float_intrinsic("fma", 3)(typingctx, a, b, c)


def _rint_typer(typingctx, a):
    return _float_intrinsic("rint", 1)(typingctx, a)


def _floor_typer(typingctx, a):
    return _float_intrinsic("floor", 1)(typingctx, a)


def _sqrt_typer(typingctx, a):
    return _float_intrinsic("sqrt", 1)(typingctx, a)


def _copysign_typer(typingctx, a, b):
    return _float_intrinsic("copysign", 2)(typingctx, a, b)


_fma_typer.__name__ = "_fma"
_rint_typer.__name__ = "_rint"
_floor_typer.__name__ = "_floor"
_copysign_typer.__name__ = "_copysign"
_sqrt_typer.__name__ = "_sqrt"
_fma = intrinsic(_fma_typer)            # a*b + c, single rounding
_rint = intrinsic(_rint_typer)          # round half to even, any magnitude
_floor = intrinsic(_floor_typer)
_copysign = intrinsic(_copysign_typer)
_sqrt = intrinsic(_sqrt_typer)           # correctly rounded (IEEE), vectorizable


@intrinsic
def _select(typingctx, c, a, b):
    """``a if c else b`` as one LLVM select: Numba lowers a conditional expression to
    branches, which LLVM may keep (the loop is then not vectorized) when one arm is a
    division only that arm uses."""
    if not isinstance(c, types.Boolean) or a != b:
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])

    return a(c, a, b), codegen


def _int_binop(opname):
    def impl(typingctx, a, b):
        if a not in _INT_TO_FLOAT or a != b:
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, opname)(*args)

        return a(a, b), codegen

    impl.__name__ = "_i" + opname
    return intrinsic(impl)


# Same-width integer ops (numba would promote int32 arithmetic to int64,
# which doubles the vector register pressure in float32 loops).
_iadd = _int_binop("add")
_isub = _int_binop("sub")
_iand = _int_binop("and_")
_ishl = _int_binop("shl")
_ishr = _int_binop("ashr")


# --------------------------------------------------------------------------
# Polynomial coefficients (Chebyshev/near-minimax fits made with mpmath,
# ascending order).  See the fit intervals next to each.
# --------------------------------------------------------------------------

# exp(r) = 1 + r + r^2 * P(r),  r in [-0.354, 0.354]
_EXP_P = {
    np.float32: [0.5, 0.1666656962811547595182364, 0.04166654542109553467661376,
                 0.008364380693291068906077644, 0.001392768461657500435610932],
    np.float64: [0.5, 0.1666666666666667193264997, 0.04166666666666667042731405,
                 0.008333333333324905706797333, 0.001388888888888287036440703,
                 0.0001984126987903304382779638, 0.00002480158732855585912171796,
                 0.000002755725016302917992825118, 0.0000002755726990321579286625359,
                 2.510735376726187735704706e-8, 2.091621283749385332237953e-9],
}
# log(1+f) = f - f^2/2 + s*(f^2/2 + z*Q(z)),  s = f/(2+f), z = s^2 in [0, 0.0297]
_LOG_Q = {
    np.float32: [0.6666668562146652190764131, 0.3998854361711773076878534,
                 0.2959064858013795843089698],
    np.float64: [0.6666666666666669914304219, 0.399999999998930158050839,
                 0.285714286289034772927851, 0.2222221065929347304412922,
                 0.1818292359145320633112483, 0.1533058183634363902261629,
                 0.146304653871061961147264],
}
# 2*atanh(s) = 2s + (2/3)s^3 + s^5 * T(s^2)   (pow's extended-precision log)
_POW_T = {
    np.float32: [0.3999999990093432001836698, 0.2857153507568686415827661,
                 0.222043948874501547213037, 0.1913039534790803436698251],
    np.float64: [0.399999999999999998014395, 0.2857142857142942581562065,
                 0.2222222222161959612247835, 0.1818181834357712897301202,
                 0.1538459409251661377093322, 0.1333485176920906873612607,
                 0.1170498215333545736546722, 0.117362269044982912809552],
}
# float32 tanh(x) = x + x^3 * P(x^2),  |x| < 0.55 (relative error of tanh 3.8e-8 with the
# coefficients rounded to float32; minimax fit by Lawson iteration.  Four coefficients: the
# earlier five, 1.0e-9, were more than float32 needs; this branch's max is 1.29 ulp)
_TANH_P = [float.fromhex(h) for h in ("-0x1.555452p-2", "0x1.10cef6p-3", "-0x1.af7cc4p-5",
                                       "0x1.0d5018p-6")]
# float32 tanh: expm1(2r)/2 = r + r^2 * E(r), E(r) = 2 P(2r) for exp's float32 P above
# (coefficients 2^(k+1) c_k: exact, so the values are exactly those of exp's polynomial at 2r)
_TANH_E = [2.0 * c * 2.0 ** k for k, c in enumerate(_EXP_P[np.float32])]
# sin(r) = r + r^3 * S(r^2), cos(r) = 1 - r^2/2 + r^4 * C(r^2),  |r| <= 1.01*pi/4
_SIN_S = {
    np.float32: [-0.1666666666362283188158563, 0.008333331785217695401614366,
                 -0.0001984003887255674768665997, 0.000002724378140946122914993168],
    np.float64: [-0.1666666666666666666533467, 0.008333333333333331258830547,
                 -0.0001984126984126456589491733, 0.000002755731921895476226401529,
                 -2.505210610025598923011533e-8, 1.605851087531919491260234e-10,
                 -7.58548648523593814048389e-13],
}
_COS_C = {
    np.float32: [0.04166666453632113422917334, -0.001388827933055691694978121,
                 0.00002454287111087026096901388],
    np.float64: [0.04166666666666666522685277, -0.001388888888888724137620986,
                 0.0000248015872985322590451067, -0.0000002755731715185886455305068,
                 2.087612153460845556625393e-9, -1.138086817144991338593673e-11],
}


# atan(x) = x + x^3 * P(x^2),  |x| <= tan(pi/8)  (mpmath chebyfit; max abs error of P:
# 5.4e-10 (float32), 1.2e-18 (float64))
_ATAN_P = {
    np.float32: [-0.333333332792548001280186, 0.199999772586883855522815, -0.1428415119362861391738253,
                 0.1107136502188479398085007, -0.08624676145249493652144608, 0.05048138512079744392816238],
    np.float64: [-0.3333333333333333321694618, 0.1999999999999980452614351, -0.1428571428565982760583286,
                 0.1111111110515544656543661, -0.09090908753500876844219288, 0.07692296375032142399055941,
                 -0.06666424885738255333496285, 0.05878928997834775132728112, -0.05230454270650244518280748,
                 0.04551593220626549169264178, -0.03457056198142774688152702, 0.01628575685522102829082487],
}


def _helper(fn):
    """Internal helper: inlined at Numba-IR level into the public impls (which
    are compiled with this module's flags, not the caller's)."""
    return njit(inline="always", **_JIT)(fn)


def _horner(coeffs, T, name):
    """njit p(x) = c0 + x*(c1 + x*(...)) evaluated with FMAs in dtype T."""
    ns = {"_fma": _fma}
    expr = "c%d" % (len(coeffs) - 1)
    for i, c in enumerate(coeffs):
        ns["c%d" % i] = T(c)
    for i in range(len(coeffs) - 2, -1, -1):
        expr = "_fma(%s, x, c%d)" % (expr, i)
    src = "def %s(x):\n    return %s\n" % (name, expr)
    exec(src, ns)
    return _helper(ns[name])


def _hex(T, s):
    return T(float.fromhex(s))


# --------------------------------------------------------------------------
# Per-dtype constants
# --------------------------------------------------------------------------

class _C:
    pass


def _two_over_pi_fixed(nbits):
    """floor(2/pi * 2**nbits) using integer Machin arithmetic."""
    g = nbits + 64
    one = 1 << g

    def atan_inv(k):
        total, term, n, sign = 0, one // k, 1, 1
        k2 = k * k
        while term:
            total += sign * (term // n)
            term //= k2
            n += 2
            sign = -sign
        return total

    pi = 16 * atan_inv(5) - 4 * atan_inv(239)      # pi * 2**g (+- a few ulp)
    return (2 << (g + nbits)) // pi


def _payne_hanek_table(T, p, bias, be_min, be_max):
    """Rows for biased exponents be_min..be_max: (2**E * 2/pi) mod 4, with
    E = be - bias - (p-1), split into four chunks of p bits each."""
    Q = be_max - bias + 5 * p + 64                 # fractional bits kept
    top = _two_over_pi_fixed(Q)
    rows = []
    for be in range(be_min, be_max + 1):
        E = be - bias - (p - 1)
        F = (top << E) if E >= 0 else (top >> -E)
        F %= 4 << Q                                # (2**E * 2/pi) mod 4, Q frac bits
        row = []
        for i in range(4):
            shift = Q - ((i + 1) * p - 2)          # chunk i: bits of weight 2**(1-i*p) .. 2**(2-(i+1)p)
            chunk = F >> shift
            F -= chunk << shift
            row.append(float(chunk) * 2.0 ** -((i + 1) * p - 2))
        rows.extend(row)
    tab = np.array(rows, dtype=T)
    assert np.all(tab.astype(np.float64) == np.array(rows))  # exact
    return tab


def _consts(T):
    c = _C()
    f32 = T is np.float32
    I = np.int32 if f32 else np.int64
    c.T, c.I = T, I
    c.ZERO, c.HALF, c.ONE, c.TWO = T(0.0), T(0.5), T(1.0), T(2.0)
    c.INF, c.NAN = T(np.inf), T(np.nan)
    c.MANT = I(23 if f32 else 52)                 # mantissa bits
    c.BIAS = I(127 if f32 else 1023)
    c.MAGIC = T(1.5 * 2.0 ** (23 if f32 else 52))  # x + MAGIC rounds x to int
    c.MAGIC_BITS = np.array([c.MAGIC], dtype=T).view(I)[0]
    c.LOG2E = _hex(T, "0x1.7154760000000p+0" if f32 else "0x1.71547652b82fep+0")
    # ln2 = LN2HI + LN2LO (full-precision split; used with FMA)
    c.LN2HI = _hex(T, "0x1.62e4300000000p-1" if f32 else "0x1.62e42fefa39efp-1")
    c.LN2LO = _hex(T, "-0x1.05c6100000000p-29" if f32 else "0x1.abc9e3b39803fp-56")
    # ln2 = LN2HI_S + LN2LO_S with LN2HI_S having 16/32 significant bits, so
    # k*LN2HI_S is exact for any exponent k
    c.LN2HI_S = _hex(T, "0x1.62e4000000000p-1" if f32 else "0x1.62e42fee00000p-1")
    c.LN2LO_S = _hex(T, "0x1.7f7d1c0000000p-20" if f32 else "0x1.a39ef35793c76p-33")
    # exp argument clamp: below LO the result rounds to 0, above HI to inf;
    # |n| stays small enough for the two-step 2^n scaling.
    c.EXP_LO = T(-104.0 if f32 else -746.0)
    c.EXP_HI = T(89.0 if f32 else 710.0)
    # log: denormal pre-scaling and the sqrt(1/2) mantissa split
    c.TINY = T(np.finfo(T).tiny)
    c.SCALE_UP = T(2.0 ** (23 if f32 else 54))
    c.SCALE_E = T(23 if f32 else 54)
    sqh = np.array([np.sqrt(0.5)], dtype=T).view(I)[0]
    c.SQH_BITS = I(sqh)
    c.LOG_OFF = I(np.array([1.0], dtype=T).view(I)[0] - sqh)
    c.MMASK = I((1 << (23 if f32 else 52)) - 1)
    # tanh: |x| beyond which tanh(x) rounds to +-1
    c.TANH_Y = T(2 * (9.1 if f32 else 19.1))
    c.TANH_X = T(9.1 if f32 else 19.1)
    c.TANH_SMALL = T(0.55)                        # tanh(0.55) > 1/2
    # float32 tanh's exp(2y) reduced in y's units: y - n*ln2/2 (one constant: see tanh_poly)
    c.TANH_LOG2E2 = T(2.0) * c.LOG2E
    c.TANH_LN2H = T(0.6931471805599453 / 2)
    c.MAGIC_BIAS = I(c.MAGIC_BITS - c.BIAS)
    c.MAGIC_BIAS1 = I(c.MAGIC_BIAS - 1)           # 2**(n+1) from t = n + MAGIC
    c.MAGIC_BIAS64 = I(c.MAGIC_BITS - c.BIAS - 64)
    c.TWO_M64 = T(2.0 ** -64)
    # sin/cos
    c.TWO_OVER_PI = _hex(T, "0x1.45f3060000000p-1" if f32 else "0x1.45f306dc9c883p-1")
    c.PIO2_1 = _hex(T, "0x1.921fb60000000p+0" if f32 else "0x1.921fb54442d18p+0")
    c.PIO2_2 = _hex(T, "-0x1.777a5c0000000p-25" if f32 else "0x1.1a62633145c07p-54")
    c.PIO2_3 = _hex(T, "-0x1.ee59da0000000p-50" if f32 else "-0x1.f1976b7ed8fbcp-110")
    c.FOUR, c.QUARTER, c.THREE = T(4.0), T(0.25), T(3.0)
    # sin/cos Payne-Hanek table (see _payne_hanek_table)
    p = 24 if f32 else 53
    bias = 127 if f32 else 1023
    ph_k = 17 if f32 else 40                       # used for |x| >= 2**ph_k
    be_min = bias + ph_k
    be_max = 254 if f32 else 2046
    c.PH_TAB = _payne_hanek_table(T, p, bias, be_min, be_max)
    c.PH_BE_MIN = I(be_min)
    c.PH_ROWS1 = I(be_max - be_min)
    c.PH_MIN = T(2.0 ** ph_k)
    c.M_INT_BITS = I((bias + p - 1) << (p - 1))     # 1.f * 2**(p-1) exponent
    # pow
    c.C23H = _hex(T, "0x1.5555560000000p-1" if f32 else "0x1.5555555555555p-1")
    c.C23L = _hex(T, "-0x1.5555560000000p-26" if f32 else "0x1.5555555555555p-55")
    # expm1: below EM1_LO the result rounds to -1; at EM1_HI and above, exp(x) - 1 rounds as exp(x)
    c.EM1_LO = T(-(p + 3) * 0.6931471805599453)
    c.EM1_HI = T((p + 3) * 0.6931471805599453)
    c.SINH_HI = T(90.0 if f32 else 711.0)         # exp(x)/2 overflows above ~89.4 / 710.5
    c.LN2 = T(0.6931471805599453)
    # hypot: scale operands above HYP_BIG down, below HYP_SMALL up (squares stay normal)
    c.HYP_BIG, c.HYP_SMALL = T(2.0 ** (50 if f32 else 500)), T(2.0 ** (-50 if f32 else -500))
    c.HYP_DOWN, c.HYP_UP = T(2.0 ** (-70 if f32 else -600)), T(2.0 ** (90 if f32 else 600))
    c.ASINH_BIG = T(2.0 ** 28)                    # above: asinh(x) = log(x) + ln2 after rounding
    # atan: pi/4, pi/2, pi as sums hi + lo; the reduction point tan(pi/8)
    c.TAN_PI8 = T(0.41421356237309503)
    with localcontext() as ctx:
        ctx.prec = 40
        pi = Decimal("3.141592653589793238462643383279502884197")
        for name, value in (("PI4", pi / 4), ("PI2", pi / 2), ("PI", pi)):
            hi = T(float(value))
            setattr(c, name + "_H", hi)
            setattr(c, name + "_L", T(float(value - Decimal(float(hi)))))
    # 1/ln2 and 1/ln10 as a sum hi + lo (log2, log10)
    for name, value in (("L2E", _inverse_log(2)), ("L10E", _inverse_log(10))):
        hi = T(float(value))
        setattr(c, name + "_H", hi)
        setattr(c, name + "_L", T(float(value - Decimal(float(hi)))))
    return c


def _inverse_log(base):
    """1 / ln(base) to 40 digits."""
    with localcontext() as ctx:
        ctx.prec = 40
        return 1 / Decimal(base).ln()


# --------------------------------------------------------------------------
# Function factories (one instantiation per dtype, all constants typed T)
# --------------------------------------------------------------------------

def _make(T):
    c = _CONSTS[T]
    sfx = "f32" if T is np.float32 else "f64"
    T_, I_ = c.T, c.I
    ZERO, HALF, ONE, TWO, INF, NAN = c.ZERO, c.HALF, c.ONE, c.TWO, c.INF, c.NAN
    MANT, BIAS, MAGIC, MAGIC_BITS = c.MANT, c.BIAS, c.MAGIC, c.MAGIC_BITS
    LOG2E, LN2HI, LN2LO, LN2HI_S, LN2LO_S = c.LOG2E, c.LN2HI, c.LN2LO, c.LN2HI_S, c.LN2LO_S
    EXP_LO, EXP_HI = c.EXP_LO, c.EXP_HI
    TINY, SCALE_UP, SCALE_E, SQH_BITS, LOG_OFF, MMASK = (
        c.TINY, c.SCALE_UP, c.SCALE_E, c.SQH_BITS, c.LOG_OFF, c.MMASK)
    TANH_Y, TANH_X, TANH_SMALL, MAGIC_BIAS = c.TANH_Y, c.TANH_X, c.TANH_SMALL, c.MAGIC_BIAS
    TANH_LOG2E2, TANH_LN2H, MAGIC_BIAS1 = c.TANH_LOG2E2, c.TANH_LN2H, c.MAGIC_BIAS1
    MAGIC_BIAS64, TWO_M64 = c.MAGIC_BIAS64, c.TWO_M64
    TWO_OVER_PI, PIO2_1, PIO2_2, PIO2_3 = c.TWO_OVER_PI, c.PIO2_1, c.PIO2_2, c.PIO2_3
    FOUR, QUARTER, THREE = c.FOUR, c.QUARTER, c.THREE
    C23H, C23L = c.C23H, c.C23L
    EM1_LO, EM1_HI, SINH_HI = c.EM1_LO, c.EM1_HI, c.SINH_HI
    L2E_H, L2E_L, L10E_H, L10E_L = c.L2E_H, c.L2E_L, c.L10E_H, c.L10E_L
    LN2, ASINH_BIG = c.LN2, c.ASINH_BIG
    HYP_BIG, HYP_SMALL, HYP_DOWN, HYP_UP = c.HYP_BIG, c.HYP_SMALL, c.HYP_DOWN, c.HYP_UP
    TAN_PI8, PI4_H, PI4_L, PI2_H, PI2_L, PI_H, PI_L = (
        c.TAN_PI8, c.PI4_H, c.PI4_L, c.PI2_H, c.PI2_L, c.PI_H, c.PI_L)
    ONE_I, TWO_I, THREE_I, ZERO_I = I_(1), I_(2), I_(3), I_(0)
    PH_TAB, PH_BE_MIN, PH_ROWS1, PH_MIN, M_INT_BITS = (
        c.PH_TAB, c.PH_BE_MIN, c.PH_ROWS1, c.PH_MIN, c.M_INT_BITS)

    exp_p = _horner(_EXP_P[T], T, "exp_p_" + sfx)
    log_q = _horner(_LOG_Q[T], T, "log_q_" + sfx)
    pow_t = _horner(_POW_T[T], T, "pow_t_" + sfx)
    sin_s = _horner(_SIN_S[T], T, "sin_s_" + sfx)
    cos_c = _horner(_COS_C[T], T, "cos_c_" + sfx)
    tanh_p = _horner(_TANH_P, T, "tanh_p_" + sfx) if T is np.float32 else None
    tanh_e = _horner(_TANH_E, T, "tanh_e_" + sfx) if T is np.float32 else None
    atan_p = _horner(_ATAN_P[T], T, "atan_p_" + sfx)

    @_helper
    def _scale2(p, t):
        # p * 2**n where n = bits(t) - MAGIC_BITS (t = n + MAGIC); two steps so
        # that 2**n1 and 2**n2 are normal: exact unless the product over- or
        # underflows, in which case it is rounded once (denormals correct).
        ni = _isub(_bits(t), MAGIC_BITS)
        n1 = _ishr(ni, ONE_I)
        n2 = _isub(ni, n1)
        s1 = _from_bits(_ishl(_iadd(n1, BIAS), MANT))
        s2 = _from_bits(_ishl(_iadd(n2, BIAS), MANT))
        return (p * s1) * s2

    @_helper
    def _two_sum(a, b):
        s = a + b
        bb = s - a
        return s, (a - (s - bb)) + (b - bb)

    @_helper
    def _exp_reduce(xh, xl):
        # xh + xl = n*ln2 + r + rl, |r| <= ~ln2/2;  t = n + MAGIC
        t = _fma(xh, LOG2E, MAGIC)
        n = t - MAGIC
        rh = _fma(-n, LN2HI, xh)                  # exact
        rt = _fma(-n, LN2LO, xl)
        r, rl = _two_sum(rh, rt)
        return t, r, rl

    @_helper
    def _exp_parts(xh, xl):
        # exp(xh + xl) = 2^n * (s + x), |x| << s;  for xh in [EXP_LO, EXP_HI]
        t, r, rl = _exp_reduce(xh, xl)
        s = ONE + r
        sl = (ONE - s) + r                         # exact: |r| < 1
        return t, s, sl + _fma(r * r, exp_p(r), _fma(rl, r, rl))

    @_helper
    def _exp_core(xh, xl):
        t, s, x = _exp_parts(xh, xl)
        return _scale2(s + x, t)

    @_helper
    def _expm1_poly(x):
        # exp(x) = 2^n * (1 + q) for x in [EXP_LO, EXP_HI];  t = n + MAGIC.
        # Plain (single-length) Cody-Waite reduction: q = expm1(r) has <~1
        # ulp error (rounding of r and of r + r^2 P(r)).
        t = _fma(x, LOG2E, MAGIC)
        n = t - MAGIC
        r = _fma(-n, LN2HI, x)                    # exact
        r = _fma(-n, LN2LO, r)
        return t, _fma(r * r, exp_p(r), r)

    @_helper
    def _exp_poly(x):
        # exp(x) = 2^n * p, p = 1 + expm1(r) (one more rounding)
        t, q = _expm1_poly(x)
        return t, ONE + q

    @_helper
    def _scale1(p, t):
        # p * 2**n (t = n + MAGIC) in one multiply; 2**n must be normal
        return p * _from_bits(_ishl(_isub(_bits(t), MAGIC_BIAS), MANT))

    def exp_(x):
        xc = x if x > EXP_LO else EXP_LO          # NaN -> EXP_LO (fixed below)
        xc = xc if xc < EXP_HI else EXP_HI
        t, p = _exp_poly(xc)
        res = _scale2(p, t)
        return res if x == x else x

    @_helper
    def _log_reduce(x):
        # x = 2**k * m, m in [sqrt(1/2), sqrt(2)); valid for finite x > 0
        small = x < TINY
        xs = x * SCALE_UP if small else x
        kadj = SCALE_E if small else ZERO
        ix = _iadd(_bits(xs), LOG_OFF)
        k = T_(_isub(_ishr(ix, MANT), BIAS)) - kadj
        m = _from_bits(_iadd(_iand(ix, MMASK), SQH_BITS))
        return k, m

    def log_(x):
        k, m = _log_reduce(x)
        f = m - ONE
        hfsq = HALF * f * f
        s = f / (TWO + f)
        z = s * s
        R = z * log_q(z)
        res = _fma(k, LN2HI_S, -((hfsq - _fma(s, hfsq + R, k * LN2LO_S)) - f))
        res = -INF if x == ZERO else res
        res = NAN if x < ZERO else res
        return x if (x == INF) | (x != x) else res

    def tanh_expm1(x):
        # float64: tanh(|x|) = -em / (2 + em), em = expm1(-2|x|) in (-1, 0]
        # = 2^n * expm1(r) + (2^n - 1) with n <= 0, so no cancellation.  em is
        # kept double-length (h + l: the FMA's rounding error recovered
        # exactly), and the rounding errors of 2 + h and of the division are
        # folded back with one Newton step (1/d = (1 - th)/2)
        ax = abs(x)
        y = ax + ax
        y = y if y < TANH_Y else TANH_Y           # NaN -> TANH_Y (fixed below)
        t, q = _expm1_poly(-y)                    # expm1(-y) = s*q + (s - 1)
        s = _scale1(ONE, t)
        sm1 = s - ONE
        sl = s - (sm1 + ONE)                      # s - 1 = sm1 + sl (sl = 0 for n >= -53)
        h = _fma(s, q, sm1)                       # expm1(-y) = h + l, in (-1, 0]
        l = _fma(s, q, (sm1 - h) + sl)            # (sm1 - h exact: Sterbenz)
        d = TWO + h
        dl = ((TWO - d) + h) + l                  # d + dl = 2 + h + l
        th = h / d
        rcp = _fma(th, -HALF, HALF)               # ~ 1/d
        th = _fma(_fma(-th, dl, _fma(-th, d, h) + l), rcp, th)
        res = _copysign(-th, x)
        return res if x == x else x

    def tanh_poly(x):
        # float32: x + x^3 P(x^2) below TANH_SMALL (tanh < 1/2), else 1 - 2/(exp(2|x|) + 1)
        # (tanh >= 1/2: the subtraction does not amplify the errors); both computed, one
        # selected.  exp(2y) = 2^n (1 + 2 qh), qh = expm1(2r)/2, is reduced in y's units,
        # r = y - n ln2/2 (the doubling folded into the constants), with ln2/2 in one part:
        # its error, below n * 1e-9, is damped by tanh's 2e/(e^2 - 1).  The denominator
        # exp(2y) + 1 = fma(2^(n+1), qh, 2^n + 1) is rounded once (2^n + 1 is exact up to
        # n = 23; above, tanh rounds to 1 anyway).  The loop is bound by the
        # count of vector instructions (and their dependency chain): the previous form, with
        # a second reduction constant, 1 + q, * 2^n, + 1 and a NaN select, took ~35% longer.
        ax = abs(x)
        y = ax if ax < TANH_X else TANH_X          # NaN -> TANH_X (the select below fixes it)
        t = _fma(y, TANH_LOG2E2, MAGIC)
        n = t - MAGIC
        r = _fma(-n, TANH_LN2H, y)
        qh = _fma(r * r, tanh_e(r), r)
        s = _from_bits(_ishl(_isub(_bits(t), MAGIC_BIAS), MANT))     # 2^n
        s2 = _from_bits(_ishl(_isub(_bits(t), MAGIC_BIAS1), MANT))   # 2^(n+1)
        big = ONE - TWO / _fma(s2, qh, s + ONE)
        z = ax * ax
        small = _fma(ax * z, tanh_p(z), ax)        # exact x for tiny/denormal x; NaN for NaN
        # `>=` is False for NaN: the small branch returns the NaN (no separate NaN select)
        return _copysign(_select(ax >= TANH_SMALL, big, small), x)

    tanh_ = tanh_poly if T is np.float32 else tanh_expm1

    def sigmoid_(x):
        # e = exp(-|x|) (plain), d = 1 + e; x >= 0: 1/d, x < 0: e/d.  The
        # rounding error of d (dl) and the division's residual are folded
        # back in with one FMA, using 1/d ~ q (x >= 0) or 1 - q (x < 0)
        ax = abs(x)
        xc = -ax if ax < -EXP_LO else EXP_LO      # NaN -> EXP_LO (fixed below)
        t, p = _exp_poly(xc)
        # e = p * 2**n with n <= 0: 2**(n+64) is normal, p * 2**(n+64) exact,
        # and the multiply by 2**-64 rounds once (correct denormals)
        e = (p * _from_bits(_ishl(_isub(_bits(t), MAGIC_BIAS64), MANT))) * TWO_M64
        d = ONE + e
        dl = (ONE - d) + e                         # exact: d + dl = 1 + e
        pos = x >= ZERO
        n = ONE if pos else e
        q = n / d
        m = q if pos else ONE - q                  # ~ 1/d
        q = _fma(_fma(-q, d, n) - q * dl, m, q)
        return q if x == x else x

    @_helper
    def _reduce_cw(x):
        # Cody-Waite: x - n*pi/2 = r + rl for |x| < PH_MIN
        n = _rint(x * TWO_OVER_PI)
        r1 = _fma(-n, PIO2_1, x)                  # exact for |x| < PH_MIN
        ph = n * PIO2_2
        pl = _fma(n, PIO2_2, -ph)
        r, e = _two_sum(r1, -ph)
        rl = (e - pl) - n * PIO2_3
        return n, r, rl

    @_helper
    def _reduce_ph(ax):
        # Payne-Hanek for finite ax >= PH_MIN (garbage, but no traps, below):
        # ax = m * 2**E with integer-valued m; PH_TAB[E] holds
        # (2**E * 2/pi) mod 4 as four p-bit chunks t0 > t1 > t2 > t3, so
        # ax*2/pi mod 4 = m*t0 + m*t1 + m*t2 + m*t3 (mod 4).  Every integer
        # part is split off exactly before summing the fractions.
        ib = _bits(ax)
        idx = _isub(_ishr(ib, MANT), PH_BE_MIN)
        idx = idx if idx > ZERO_I else ZERO_I
        idx = idx if idx < PH_ROWS1 else PH_ROWS1
        j = _ishl(idx, TWO_I)
        t0 = PH_TAB[j]
        t1 = PH_TAB[_iadd(j, ONE_I)]
        t2 = PH_TAB[_iadd(j, TWO_I)]
        t3 = PH_TAB[_iadd(j, THREE_I)]
        m = _from_bits(_iadd(_iand(ib, MMASK), M_INT_BITS))
        h0 = m * t0
        l0 = _fma(m, t0, -h0)                      # m*t0 = h0 + l0 exactly
        a = h0 - FOUR * _floor(h0 * QUARTER)       # h0 mod 4, exact
        ka = _rint(a)
        kl = _rint(l0)
        s0 = (a - ka) + (l0 - kl)                  # exact, |s0| <= 1
        h1 = m * t1
        l1 = _fma(m, t1, -h1)
        k1 = _rint(h1)
        s1, e1 = _two_sum(s0, h1 - k1)
        k2 = _rint(s1)
        s1 = s1 - k2                               # exact, |s1| <= 1/2
        c2 = m * t2
        c2l = _fma(m, t2, -c2)
        # add the mid-size terms exactly (the result may be tiny: x close to
        # a multiple of pi/2), then the rest, which is tiny relative to it
        f, ea = _two_sum(s1, c2)
        f, eb = _two_sum(f, l1)
        f, ec = _two_sum(f, e1)
        lo = (ea + eb) + (ec + (c2l + m * t3))
        k3 = _rint(f)
        f = f - k3                                 # |f| <= 1/2 (+ tiny)
        fh = f + lo
        fl = lo - (fh - f)                         # frac = fh + fl
        rh = fh * PIO2_1
        rl = _fma(fh, PIO2_1, -rh) + (fh * PIO2_2 + fl * PIO2_1)
        return ka + kl + k1 + k2 + k3, rh, rl

    @_helper
    def _sincos_poly(x, n, r, rl):
        q = n - FOUR * _floor(n * QUARTER)        # quadrant in {0,1,2,3}
        z = r * r
        zl = _fma(r, r, -z)
        hz = HALF * z
        w = ONE - hz
        sr = r + _fma(r * z, sin_s(z), rl * w)
        cr = w + ((((ONE - w) - hz) - _fma(HALF, zl, r * rl)) + (z * z) * cos_c(z))
        return q, sr, cr

    @_helper
    def _sincos_full(x):
        ax = abs(x)
        n, r, rl = _reduce_cw(x)
        nb, rb, rlb = _reduce_ph(ax)
        neg = x < ZERO
        big = ax >= PH_MIN
        n = (-nb if neg else nb) if big else n
        r = (-rb if neg else rb) if big else r
        rl = (-rlb if neg else rlb) if big else rl
        q, sr, cr = _sincos_poly(x, n, r, rl)
        # inf/nan -> nan (the Payne-Hanek path does not produce it by itself)
        bad = (ax == INF) | (x != x)
        return q, (NAN if bad else sr), (NAN if bad else cr)

    @_helper
    def _sincos_cw(x):
        n, r, rl = _reduce_cw(x)
        q, sr, cr = _sincos_poly(x, n, r, rl)
        bad = not (abs(x) < PH_MIN)                # out of range, inf, nan
        return q, (NAN if bad else sr), (NAN if bad else cr)

    @_helper
    def _sin_select(x, q, sr, cr):
        v = cr if (q == ONE) | (q == THREE) else sr
        v = -v if q >= TWO else v
        return x if x == ZERO else v

    @_helper
    def _cos_select(q, sr, cr):
        v = sr if (q == ONE) | (q == THREE) else cr
        return -v if (q == ONE) | (q == TWO) else v

    def sin_(x):
        q, sr, cr = _sincos_full(x)
        return _sin_select(x, q, sr, cr)

    def cos_(x):
        q, sr, cr = _sincos_full(x)
        return _cos_select(q, sr, cr)

    def sin_cw_(x):
        q, sr, cr = _sincos_cw(x)
        return _sin_select(x, q, sr, cr)

    def cos_cw_(x):
        q, sr, cr = _sincos_cw(x)
        return _cos_select(q, sr, cr)

    @_helper
    def _log_dd(ax):
        # log(ax) as an unevaluated sum hi + lo (~2**-(2p-10) relative error)
        k, m = _log_reduce(ax)
        f = m - ONE                                # exact
        d = f + TWO
        dl = (TWO - d) + f                         # d + dl = 2 + f exactly
        q = f / d
        ql = (_fma(-q, d, f) - q * dl) / d         # s = q + ql = f/(2+f)
        z = q * q
        zl = _fma(q, q, -z) + TWO * q * ql         # s^2
        s3 = z * q
        s3l = _fma(z, q, -s3) + (z * ql + zl * q)  # s^3
        t3 = C23H * s3
        t3l = _fma(C23H, s3, -t3) + (C23H * s3l + C23L * s3)  # (2/3) s^3
        t5 = s3 * z * pow_t(z)                     # s^5 T(s^2)
        h, l = _two_sum(k * LN2HI_S, TWO * q)      # k*LN2HI_S exact
        l = l + (TWO * ql + k * LN2LO_S)
        h, l2 = _two_sum(h, t3)
        l = l + (l2 + t3l) + t5
        hi = h + l
        lo = l - (hi - h)
        return hi, lo

    def pow_(x, y):
        ax = abs(x)
        lh, ll = _log_dd(ax)
        lh = -INF if ax == ZERO else lh
        lh = INF if ax == INF else lh
        ll = ll if (ax > ZERO) & (ax < INF) else ZERO
        ph = y * lh
        pl = _fma(y, lh, -ph) + y * ll
        # exp(ph + pl)
        inr = (ph > EXP_LO) & (ph < EXP_HI)
        pl = pl if inr else ZERO
        phc = ph if ph > EXP_LO else EXP_LO        # NaN -> EXP_LO (fixed below)
        phc = phc if phc < EXP_HI else EXP_HI
        res = _exp_core(phc, pl)
        # special cases (C99 Annex F / np.power)
        yint = _rint(y) == y
        yh = y * HALF
        yodd = yint & (_rint(yh) != yh)
        neg = _bits(x) < ZERO_I                    # signbit(x), includes -0
        res = -res if neg & yodd else res
        res = NAN if (x < ZERO) & (x > -INF) & (not yint) else res
        res = x + y if (x != x) | (y != y) else res
        res = ONE if (x == ONE) | (y == ZERO) else res
        res = ONE if (x == -ONE) & (abs(y) == INF) else res
        return res

    # -- built on the above: expm1, log1p, exp2, log2, log10, sinh, cosh, tan --------
    _log_h = _helper(log_)
    _exp_h = _helper(exp_)
    _pow_h = _helper(pow_)

    @_helper
    def _expm1_core(x):
        # expm1(x) = 2^n (1 + q) - 1 = fma(2^n, q, 2^n - 1): 2^n - 1 is exact for |n| <= p,
        # and no cancellation (q is expm1 of the reduced argument, |r| <= ln2/2)
        xc = x if x > EM1_LO else EM1_LO          # below: -1 after rounding (and NaN -> EM1_LO)
        xc = xc if xc < EM1_HI else EM1_HI        # above: exp(x) (2^n would overflow)
        t, q = _expm1_poly(xc)
        s = _scale1(ONE, t)
        return _fma(s, q, s - ONE)

    def expm1_(x):
        res = _expm1_core(x) if x < EM1_HI else _exp_h(x)
        res = x if x == ZERO else res             # keeps -0.0
        return res if x == x else x

    @_helper
    def _log1p_core(x):
        # log(u) + (x - (u - 1)) / u, u = 1 + x: the second term restores the rounding error of u
        u = ONE + x
        c = (x - (u - ONE)) / u
        lu = _log_h(u)
        return lu + c if (u > ZERO) & (u < INF) else lu

    def log1p_(x):
        res = _log1p_core(x)
        return x if (x == ZERO) | (x != x) else res

    def exp2_(x):
        return _pow_h(TWO, x)                     # exact for integer x (2^n, double-length log 2)

    @_helper
    def _log_scaled(x, ch, cl):
        # log(x) * (ch + cl) with log(x) double-length: exact for powers of two (log2)
        lh, ll = _log_dd(x)
        h = lh * ch
        res = h + (_fma(lh, ch, -h) + (lh * cl + ll * ch))
        res = -INF if x == ZERO else res
        res = NAN if x < ZERO else res
        return x if (x == INF) | (x != x) else res

    def log2_(x):
        return _log_scaled(x, L2E_H, L2E_L)

    def log10_(x):
        return _log_scaled(x, L10E_H, L10E_L)

    @_helper
    def _exp_half(ax):
        # exp(ax) / 2 for ax >= 0, overflowing only where the result does (cosh, sinh)
        axc = ax if ax < SINH_HI else SINH_HI     # NaN -> SINH_HI (fixed by the callers)
        t, p = _exp_poly(axc)
        return _scale2(p * HALF, t)

    def cosh_(x):
        eh = _exp_half(abs(x))
        res = eh + QUARTER / eh
        return res if x == x else x

    def sinh_(x):
        ax = abs(x)
        em = _expm1_core(ax if ax < ONE else ZERO)
        small = HALF * (em + em / (em + ONE))      # no cancellation for |x| < 1
        eh = _exp_half(ax)
        res = _copysign(small if ax < ONE else eh - QUARTER / eh, x)
        return res if x == x else x

    def tan_(x):
        q, sr, cr = _sincos_full(x)
        odd = (q == ONE) | (q == THREE)
        res = -cr / sr if odd else sr / cr
        return x if x == ZERO else res

    # -- inverse hyperbolic functions from log1p and log (glibc's formulas) ------------
    def arctanh_(x):
        ax = abs(x)
        t = ax + ax
        small = HALF * _log1p_core(_fma(t, ax / (ONE - ax), t))   # |x| < 1/2
        large = HALF * _log1p_core(t / (ONE - ax))                  # inf at 1, nan above
        return _copysign(small if ax < HALF else large, x)

    def arcsinh_(x):
        ax = abs(x)
        z = ax * ax
        small = _log1p_core(ax + z / (ONE + _sqrt(ONE + z)))           # |x| <= 2
        mid = _log_h(_fma(TWO, ax, ONE / (_sqrt(z + ONE) + ax)))       # 2 < |x| <= ASINH_BIG
        big = _log_h(ax) + LN2                                         # also inf, nan
        res = small if ax <= TWO else (mid if ax <= ASINH_BIG else big)
        return _copysign(res if x == x else x, x)

    def arccosh_(x):
        t = x - ONE
        small = _log1p_core(t + _sqrt(_fma(t, t, t + t)))              # 1 <= x <= 2
        mid = _log_h(_fma(TWO, x, -ONE / (x + _sqrt(_fma(x, x, -ONE)))))  # 2 < x <= ASINH_BIG
        big = _log_h(x) + LN2
        res = small if x <= TWO else (mid if x <= ASINH_BIG else big)
        res = NAN if x < ONE else res
        return res if x == x else x

    # -- inverse trigonometric functions: one polynomial after Cody-Waite-like reduction --
    @_helper
    def _atan_unit(t, tl):
        # atan(t + tl) for t in [0, 1] (or NaN), tl a small correction, as h + l + a (h + l a
        # multiple of pi/4 in two parts): above tan(pi/8), atan(t) = pi/4 + atan((t - 1)/(t + 1)),
        # the quotient's rounding errors (and tl) carried in ul
        big = t > TAN_PI8
        d = ONE + t
        ed = (t - (d - ONE)) + tl                  # d + ed = 1 + t + tl (Fast2Sum: 1 >= t)
        n = t - ONE
        en = (t - (n + ONE)) + tl
        q = n / d
        ql = (_fma(-q, d, n) + en - q * ed) / d
        u = q if big else t
        ul = ql if big else tl
        z = u * u
        a = _fma(u * z, atan_p(z), ul / (ONE + z)) + u
        return (PI4_H if big else ZERO), (PI4_L if big else ZERO), a

    @_helper
    def _atan2_abs(ay, ax):
        # atan2(ay, ax) for finite ay, ax >= 0 (not both 0), in [0, pi/2]
        swap = ay > ax
        num = ax if swap else ay
        den = ay if swap else ax
        t = num / den
        tl = _fma(-t, den, num) / den              # t + tl = num / den to twice the precision
        tl = tl if (tl == tl) & (abs(tl) < INF) else ZERO
        h, l, a = _atan_unit(t, tl)
        # swap: pi/2 - (h + l + a), with pi/2 - pi/4 = pi/4 exact in hi/lo
        h2 = (PI2_H - h) if swap else h
        l2 = (PI2_L - l) if swap else l
        a2 = -a if swap else a
        return h2, l2, a2

    @_helper
    def _atan2_(y, x):
        ax, ay = abs(x), abs(y)
        zeros = (ax == ZERO) & (ay == ZERO)
        infs = (ax == INF) & (ay == INF)
        axs = ONE if zeros | infs else ax              # 0/0 -> atan 0, inf/inf -> atan 1
        ays = (ZERO if zeros else ONE) if zeros | infs else ay
        # one infinite operand: atan2 is 0 or pi/2 (as atan2(finite, finite) of 0 / 1)
        axs = (ZERO if ays == INF else ONE) if (axs == INF) != (ays == INF) else axs
        ays = (ONE if ays == INF else ZERO) if (ax == INF) != (ay == INF) else ays
        h, l, a = _atan2_abs(ays, axs)
        neg = _bits(x) < ZERO_I                          # signbit: -0.0 counts as negative
        res = (PI_H - h) + ((PI_L - l) - a) if neg else h + (l + a)
        res = _copysign(res, y)
        return res if (x == x) & (y == y) else x + y

    def arctan2_(y, x):
        return _atan2_(y, x)

    def arctan_(x):
        ax = abs(x)
        h, l, a = _atan2_abs(ax if ax == ax else ZERO, ONE)
        res = _copysign(h + (l + a), x)
        return res if x == x else x

    def arcsin_(x):
        # atan2(x, sqrt(1 - x^2)), 1 - x^2 rounded once (an FMA)
        return _atan2_(x, _sqrt(_fma(-x, x, ONE)))

    def arccos_(x):
        return _atan2_(_sqrt(_fma(-x, x, ONE)), x)

    def hypot_(x, y):
        # sqrt(b^2 + s^2) with the squares and their sum kept double-length and one Newton
        # correction of the square root; b, s scaled by a power of 2 away from over/underflow
        ax, ay = abs(x), abs(y)
        b = ax if ax > ay else ay
        sm = ay if ax > ay else ax
        scale = HYP_DOWN if b > HYP_BIG else (HYP_UP if b < HYP_SMALL else ONE)
        b, sm = b * scale, sm * scale              # exact (s may lose bits far below b's ulp)
        bh = b * b
        bl = _fma(b, b, -bh)
        sh = sm * sm
        sl = _fma(sm, sm, -sh)
        hi, lo = _two_sum(bh, sh)
        lo = lo + (bl + sl)
        w = hi + lo
        wl = lo - (w - hi)
        h = _sqrt(w)
        h = h + (_fma(-h, h, w) + wl) / (h + h) if h > ZERO else h
        res = h / scale
        res = res if (x == x) & (y == y) else x + y
        return INF if (ax == INF) | (ay == INF) else res

    impls = dict(exp=exp_, log=log_, tanh=tanh_, sigmoid=sigmoid_, sin=sin_,
                 cos=cos_, sin_cw=sin_cw_, cos_cw=cos_cw_, pow=pow_, expm1=expm1_,
                 log1p=log1p_, exp2=exp2_, log2=log2_, log10=log10_, sinh=sinh_,
                 cosh=cosh_, tan=tan_, arctanh=arctanh_, arcsinh=arcsinh_, arccosh=arccosh_,
                 arctan=arctan_, arctan2=arctan2_, arcsin=arcsin_, arccos=arccos_, hypot=hypot_)
    return {name: _public(fn, T, "%s_%s" % (name, sfx)) for name, fn in impls.items()}


# --------------------------------------------------------------------------
# Public wrappers
# --------------------------------------------------------------------------
#
# LLVM only inlines a callee into a loop when its inline cost is small, and
# the larger functions here (pow, sin, ...) exceed Numba's threshold: a
# `range` loop calling a plain @njit pow is not vectorized.  So every public
# function is an `inline='always'` Numba function whose body is a single call
# of an intrinsic; the intrinsic compiles the real implementation with this
# module's own flags (error_model='numpy', no fastmath) via
# `compile_subroutine` and emits the call with the `alwaysinline` call-site
# attribute.  LLVM then always inlines it, and the inlined instructions keep
# their own (strict) floating-point flags whatever the caller's fastmath.


def _impl_flags():
    from numba.core import compiler

    flags = compiler.Flags()
    flags.error_model = "numpy"
    return flags


def _call_inline(context, builder, impl, sig, args):
    # compile_subroutine's pipeline inherits fastmath / boundscheck from the
    # *caller's* target context unless the flags set them, so switch them off
    # explicitly: a fastmath=True caller must not turn our NaN/inf selects
    # into garbage (its cache is shared, so this also keeps it consistent).
    strict = context.subtarget(fastmath=False, enable_boundscheck=False,
                               auto_parallel=False)
    cres = strict.compile_subroutine(builder, impl, sig, flags=_impl_flags())
    fn = context.declare_function(builder.module, cres.fndesc)
    _status, res = context.call_conv.call_function(
        builder, fn, sig.return_type, sig.args, args)
    for instr in reversed(builder.block.instructions):
        if isinstance(instr, ir.CallInstr) and instr.callee is fn:
            instr.attributes.add("alwaysinline")
            break
    return res   # impls cannot raise: the status is always OK


def _public(impl, T, name):
    nbT = types.float32 if T is np.float32 else types.float64
    nargs = impl.__code__.co_argcount
    target = nbT(*([nbT] * nargs))

    def check(args):
        return all(isinstance(a, (types.Float, types.Integer, types.Boolean))
                   for a in args)

    def codegen(context, builder, sig, args):
        vals = [context.cast(builder, v, t, nbT) for v, t in zip(args, sig.args)]
        return _call_inline(context, builder, impl, target, vals)

    if nargs == 1:
        def typer(typingctx, x):
            return (nbT(x), codegen) if check([x]) else None
        src = "def %s(x):\n    return _intr(x)\n" % name
    else:
        def typer(typingctx, x, y):
            return (nbT(x, y), codegen) if check([x, y]) else None
        src = "def %s(x, y):\n    return _intr(x, y)\n" % name
    typer.__name__ = "_" + name + "_intrinsic"
    ns = {"_intr": intrinsic(typer)}
    exec(src, ns)
    fn = ns[name]
    fn.__module__ = __name__
    fn.__qualname__ = name
    fn.__doc__ = ("%s computed in %s (arguments are cast to %s). Vectorizable; "
                  "see the module docstring." % (name, nbT, nbT))
    return njit(inline="always", **_JIT)(fn)


_CONSTS = {np.float32: _consts(np.float32), np.float64: _consts(np.float64)}
_F32 = _make(np.float32)
_F64 = _make(np.float64)

exp_f32, exp_f64 = _F32["exp"], _F64["exp"]
log_f32, log_f64 = _F32["log"], _F64["log"]
tanh_f32, tanh_f64 = _F32["tanh"], _F64["tanh"]
sigmoid_f32, sigmoid_f64 = _F32["sigmoid"], _F64["sigmoid"]
sin_f32, sin_f64 = _F32["sin"], _F64["sin"]
cos_f32, cos_f64 = _F32["cos"], _F64["cos"]
sin_cw_f32, sin_cw_f64 = _F32["sin_cw"], _F64["sin_cw"]
cos_cw_f32, cos_cw_f64 = _F32["cos_cw"], _F64["cos_cw"]
pow_f32, pow_f64 = _F32["pow"], _F64["pow"]
expm1_f32, expm1_f64 = _F32["expm1"], _F64["expm1"]
log1p_f32, log1p_f64 = _F32["log1p"], _F64["log1p"]
exp2_f32, exp2_f64 = _F32["exp2"], _F64["exp2"]
log2_f32, log2_f64 = _F32["log2"], _F64["log2"]
log10_f32, log10_f64 = _F32["log10"], _F64["log10"]
sinh_f32, sinh_f64 = _F32["sinh"], _F64["sinh"]
cosh_f32, cosh_f64 = _F32["cosh"], _F64["cosh"]
tan_f32, tan_f64 = _F32["tan"], _F64["tan"]
arctanh_f32, arctanh_f64 = _F32["arctanh"], _F64["arctanh"]
arcsinh_f32, arcsinh_f64 = _F32["arcsinh"], _F64["arcsinh"]
arccosh_f32, arccosh_f64 = _F32["arccosh"], _F64["arccosh"]
arctan_f32, arctan_f64 = _F32["arctan"], _F64["arctan"]
arctan2_f32, arctan2_f64 = _F32["arctan2"], _F64["arctan2"]
arcsin_f32, arcsin_f64 = _F32["arcsin"], _F64["arcsin"]
arccos_f32, arccos_f64 = _F32["arccos"], _F64["arccos"]
hypot_f32, hypot_f64 = _F32["hypot"], _F64["hypot"]

#: FUNCTIONS[name][dtype_name] -> dispatcher; names: exp log tanh sigmoid sin cos
#: sin_cw cos_cw pow expm1 log1p exp2 log2 log10 sinh cosh tan arcsinh arccosh arctanh
#: arctan arctan2 arcsin arccos hypot
FUNCTIONS = {name: {"float32": _F32[name], "float64": _F64[name]} for name in _F32}

#: sin_cw/cos_cw return NaN for |x| >= this (float32: 2**17, float64: 2**40);
#: sin/cos switch to the Payne-Hanek reduction there.
SINCOS_CW_LIMIT = {"float32": float(_CONSTS[np.float32].PH_MIN),
                   "float64": float(_CONSTS[np.float64].PH_MIN)}


def lookup(name, dtype):
    """Dispatcher for ``name`` ('exp', 'tanh', ...) and a float dtype."""
    return FUNCTIONS[name][np.dtype(dtype).name]


# --------------------------------------------------------------------------
# Vectorization check
# --------------------------------------------------------------------------

_VEC_RE = re.compile(r"<(\d+) x (half|float|double)>")
# Vector forms of these LLVM intrinsics have no SIMD instruction on x86 and are
# scalarized into one libm call per lane at instruction selection (unless
# LLVM was built with SVML): the loop looks vectorized in the IR but is not.
_SCALARIZED_RE = re.compile(
    r"@llvm\.(exp|exp2|exp10|log|log2|log10|sin|cos|tan|asin|acos|atan|atan2|"
    r"sinh|cosh|tanh|pow|powi|ldexp|frexp|sincos|modf)\.v\d+f(16|32|64)\b"
    r"|\bfrem <")
# Scalar libm calls left anywhere in the function (a loop calling them is not
# vectorized, even if another loop in the same function is).
_LIBM_CALL_RE = re.compile(
    r"call [^\n@]*@\"?(exp|exp2|expm1|log|log2|log10|log1p|sin|cos|tan|asin|acos|"
    r"atan|atan2|sinh|cosh|tanh|asinh|acosh|atanh|pow|fmod|erf|erfc|cbrt|hypot|"
    r"lgamma|tgamma)f?\"?\(")


def is_vectorized(dispatcher, signature=None, min_lanes=2):
    """True if the compiled code of ``dispatcher`` for ``signature`` (default:
    its first compiled signature) contains a loop that LLVM's loop vectorizer
    turned into real SIMD code on floating-point vectors of at least
    ``min_lanes`` lanes.

    Inspects the optimized LLVM IR (``dispatcher.inspect_llvm``): requires the
    ``llvm.loop.isvectorized`` loop metadata and a vector type such as
    ``<16 x float>`` / ``<8 x double>``, and rejects loops whose vector code
    calls math intrinsics that are scalarized back into per-lane libm calls
    (e.g. ``np.tanh`` in a loop becomes ``@llvm.tanh.v16f32``: vectorized in
    the IR, 16 ``tanhf`` calls in the machine code) and functions that still
    call scalar libm functions (``tanhf``, ``exp``, ...) anywhere, e.g. in a
    second, unvectorized loop.  For ``parallel=True`` dispatchers the
    outlined parfor gufunc is part of the same IR.
    """
    if signature is None:
        if not dispatcher.signatures:
            raise ValueError("dispatcher has no compiled signature")
        signature = dispatcher.signatures[0]
    llvm = dispatcher.inspect_llvm(signature)
    if "llvm.loop.isvectorized" not in llvm:
        return False
    if _SCALARIZED_RE.search(llvm) or _LIBM_CALL_RE.search(llvm):
        return False
    return any(int(m.group(1)) >= min_lanes for m in _VEC_RE.finditer(llvm))


# --------------------------------------------------------------------------
# NumPy's floor division, remainder and integer power, for generated code
# --------------------------------------------------------------------------
#
# Scalar helpers with np.floor_divide / np.remainder / np.power semantics (not
# Python's, which raise on a zero divisor).  Float floor division and remainder
# follow NumPy's npy_divmod (fmod, then a sign fix-up): fmod has no SIMD form
# (LLVM's `frem` is a libm call per lane), so these do not vectorize; integer
# division has no SIMD instruction on x86 either.

def _make_divmod(T):
    zero, one, half = T(0.0), T(1.0), T(0.5)

    def floor_divide(a, b):
        if b == zero:
            return a / b                           # inf, -inf or nan, as NumPy
        mod = np.fmod(a, b)
        div = (a - mod) / b
        if mod != zero and (b < zero) != (mod < zero):
            div = div - one
        if div == zero:
            return np.copysign(zero, a / b)
        floor = np.floor(div)
        return floor + one if div - floor > half else floor

    def remainder(a, b):
        mod = np.fmod(a, b)
        if b == zero:
            return mod                             # nan, as NumPy
        if mod == zero:
            return np.copysign(zero, b)
        return mod + b if (b < zero) != (mod < zero) else mod

    return (njit(inline="always", **_JIT)(floor_divide), njit(inline="always", **_JIT)(remainder))


floor_divide_f32, remainder_f32 = _make_divmod(np.float32)
floor_divide_f64, remainder_f64 = _make_divmod(np.float64)


@njit(inline="always", **_JIT)
def floor_divide_int(a, b):
    """a // b rounding toward -inf; 0 for b == 0 and wrap-around for MIN // -1, as NumPy."""
    if b == 0:
        return a - a
    if b == -1:
        return -a                                 # (MIN // -1 would trap in the CPU's divide)
    return a // b


@njit(inline="always", **_JIT)
def remainder_int(a, b):
    """a % b with the sign of b; 0 for b == 0 or -1, as NumPy."""
    if b == 0 or b == -1:
        return a - a
    return a % b


@njit(inline="always", **_JIT)
def power_int(a, b):
    """a ** b for integers, wrapping on overflow as NumPy; negative b raises as NumPy does."""
    if b < 0:
        raise ValueError("Integers to negative integer powers are not allowed.")
    result = a - a + 1
    base = a
    while b > 0:
        if b & 1:
            result = result * base
        base = base * base
        b = b >> 1
    return result
