"""Vectorizable scalar math for generated Numba loops.

Why this exists: without Intel SVML, Numba lowers ``np.exp``/``np.tanh``/...
inside a loop to scalar libm calls, which LLVM cannot vectorize.  The
functions here are branch-free (selects only), use Cody-Waite range reduction,
minimax-style polynomials evaluated with ``llvm.fma`` and integer bit tricks
for the 2**n scaling, so a loop that calls them is vectorized by LLVM
(``<16 x float>`` / ``<8 x double>`` on AVX-512, 8/4 lanes on AVX2).

Public functions (all ``numba.njit(error_model='numpy')`` dispatchers, no
fastmath flags at all; float32 variants compute entirely in float32)::

    exp_f32(x)      exp_f64(x)
    log_f32(x)      log_f64(x)
    tanh_f32(x)     tanh_f64(x)
    sigmoid_f32(x)  sigmoid_f64(x)      # 1 / (1 + exp(-x))
    sin_f32(x)      sin_f64(x)
    cos_f32(x)      cos_f64(x)
    pow_f32(x, y)   pow_f64(x, y)       # np.power semantics

Use from generated source (the functions are ordinary njit dispatchers that
LLVM inlines into the caller's loop)::

    from graphc.backend.vecmath import tanh_f32, exp_f64

or by name: ``lookup('tanh', np.float32)`` / ``FUNCTIONS['tanh']['float32']``.
Derivatives need no extra helpers (tanh' = 1 - t*t, sigmoid' = s*(1-s),
exp' = exp, log' = 1/x, sin' = cos, cos' = -sin, pow via exp/log/mul).
``is_vectorized(dispatcher, signature)`` checks compiled LLVM IR for a
vectorized loop.

Caller requirements: do not compile the calling loop with fastmath flags
``nnan``/``ninf``/``fast`` (special-value handling relies on NaN/inf
semantics); FMA hardware is assumed (true for every x86-64-v3+ CPU; without
it ``llvm.fma`` becomes a slow libm call).

Measured accuracy (max error in ulp of the result dtype, against a
higher-precision reference: float64 NumPy for float32, np.longdouble (x87
80-bit) NumPy for float64; ulp measured at the exact value, denormal results
in denormal ulps).  Domain swept: float32 unary functions EXHAUSTIVELY over
all 2**32 float32 inputs (sin/cos: see ranges); float64: 4e6 random bit
patterns (all exponents, both signs) + 4e6 dense points over the "interesting"
range of each function + special values.  pow: 2e7 random (x, y) pairs per
dtype drawn so |y*log(x)| covers the whole finite/overflow/underflow range,
plus integer exponents and negative bases.

    function  | float32 (ulp) | float64 (ulp) | notes
    ----------+---------------+---------------+------------------------------
    exp       |  1.0x         |  1.0x         | denormal results included
    log       |  1.0x         |  1.0x         | denormal inputs included
    tanh      |  1.0x         |  1.0x         |
    sigmoid   |  1.0x         |  1.0x         | denormal results for x << 0
    sin, cos  |  1.0x         |  1.0x         | |x| <= RANGE (see below)
    pow       |  1.0x         |  1.0x         |

(The table above is filled in from the measurement script; see bottom of this
docstring for sin/cos range limits.)

sin/cos large arguments: Cody-Waite reduction with a 3-part pi/2 and FMA; no
Payne-Hanek.  Accurate to the bound above for |x| <= SINCOS_ACCURATE_F32 /
SINCOS_ACCURATE_F64.  Beyond that the result is a finite value in [-1, 1]
with degraded accuracy (it is NOT NaN); see measurements.

Special values match NumPy bit-for-bit (checked by the tests): NaN in -> NaN
out, exp overflow -> inf / underflow -> 0 (with correctly rounded denormals),
log(+-0) = -inf, log(x<0) = nan, log(inf) = inf, tanh(+-inf) = +-1,
tanh(-0) = -0, sigmoid(-inf) = 0, sin/cos(+-inf) = nan, sin(-0) = -0, and all
C99/np.power cases of pow (x**0 = 1 even for nan, 1**y = 1 even for nan,
(-1)**+-inf = 1, negative**non-integer = nan, sign for odd integer exponents,
+-0 and +-inf bases).  No floating-point exception flags/warnings are raised
deliberately; NumPy's RuntimeWarnings are not reproduced.
"""

from __future__ import annotations

import re

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "exp_f32", "exp_f64", "log_f32", "log_f64", "tanh_f32", "tanh_f64",
    "sigmoid_f32", "sigmoid_f64", "sin_f32", "sin_f64", "cos_f32", "cos_f64",
    "pow_f32", "pow_f64", "FUNCTIONS", "lookup", "is_vectorized",
    "SINCOS_ACCURATE_F32", "SINCOS_ACCURATE_F64",
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


def _copysign_typer(typingctx, a, b):
    return _float_intrinsic("copysign", 2)(typingctx, a, b)


_fma_typer.__name__ = "_fma"
_rint_typer.__name__ = "_rint"
_floor_typer.__name__ = "_floor"
_copysign_typer.__name__ = "_copysign"
_fma = intrinsic(_fma_typer)            # a*b + c, single rounding
_rint = intrinsic(_rint_typer)          # round half to even, any magnitude
_floor = intrinsic(_floor_typer)
_copysign = intrinsic(_copysign_typer)


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
    return njit(**_JIT)(ns[name])


def _hex(T, s):
    return T(float.fromhex(s))


# --------------------------------------------------------------------------
# Per-dtype constants
# --------------------------------------------------------------------------

class _C:
    pass


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
    # sin/cos
    c.TWO_OVER_PI = _hex(T, "0x1.45f3060000000p-1" if f32 else "0x1.45f306dc9c883p-1")
    c.PIO2_1 = _hex(T, "0x1.921fb60000000p+0" if f32 else "0x1.921fb54442d18p+0")
    c.PIO2_2 = _hex(T, "-0x1.777a5c0000000p-25" if f32 else "0x1.1a62633145c07p-54")
    c.PIO2_3 = _hex(T, "-0x1.ee59da0000000p-50" if f32 else "-0x1.f1976b7ed8fbcp-110")
    c.FOUR, c.QUARTER, c.THREE = T(4.0), T(0.25), T(3.0)
    # pow
    c.C23H = _hex(T, "0x1.5555560000000p-1" if f32 else "0x1.5555555555555p-1")
    c.C23L = _hex(T, "-0x1.5555560000000p-26" if f32 else "0x1.5555555555555p-55")
    return c


# --------------------------------------------------------------------------
# Function factories (one instantiation per dtype, all constants typed T)
# --------------------------------------------------------------------------

def _make(T):
    c = _consts(T)
    sfx = "f32" if T is np.float32 else "f64"
    T_, I_ = c.T, c.I
    ZERO, HALF, ONE, TWO, INF, NAN = c.ZERO, c.HALF, c.ONE, c.TWO, c.INF, c.NAN
    MANT, BIAS, MAGIC, MAGIC_BITS = c.MANT, c.BIAS, c.MAGIC, c.MAGIC_BITS
    LOG2E, LN2HI, LN2LO, LN2HI_S, LN2LO_S = c.LOG2E, c.LN2HI, c.LN2LO, c.LN2HI_S, c.LN2LO_S
    EXP_LO, EXP_HI = c.EXP_LO, c.EXP_HI
    TINY, SCALE_UP, SCALE_E, SQH_BITS, LOG_OFF, MMASK = (
        c.TINY, c.SCALE_UP, c.SCALE_E, c.SQH_BITS, c.LOG_OFF, c.MMASK)
    TANH_Y = c.TANH_Y
    TWO_OVER_PI, PIO2_1, PIO2_2, PIO2_3 = c.TWO_OVER_PI, c.PIO2_1, c.PIO2_2, c.PIO2_3
    FOUR, QUARTER, THREE = c.FOUR, c.QUARTER, c.THREE
    C23H, C23L = c.C23H, c.C23L
    ONE_I = I_(1)
    ZERO_I = I_(0)

    exp_p = _horner(_EXP_P[T], T, "exp_p_" + sfx)
    log_q = _horner(_LOG_Q[T], T, "log_q_" + sfx)
    pow_t = _horner(_POW_T[T], T, "pow_t_" + sfx)
    sin_s = _horner(_SIN_S[T], T, "sin_s_" + sfx)
    cos_c = _horner(_COS_C[T], T, "cos_c_" + sfx)

    @njit(**_JIT)
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

    @njit(**_JIT)
    def _two_sum(a, b):
        s = a + b
        bb = s - a
        return s, (a - (s - bb)) + (b - bb)

    @njit(**_JIT)
    def _exp_reduce(xh, xl):
        # xh + xl = n*ln2 + r + rl, |r| <= ~ln2/2;  t = n + MAGIC
        t = _fma(xh, LOG2E, MAGIC)
        n = t - MAGIC
        rh = _fma(-n, LN2HI, xh)                  # exact
        rt = _fma(-n, LN2LO, xl)
        r, rl = _two_sum(rh, rt)
        return t, r, rl

    @njit(**_JIT)
    def _exp_parts(xh, xl):
        # exp(xh + xl) = 2^n * (s + x), |x| << s;  for xh in [EXP_LO, EXP_HI]
        t, r, rl = _exp_reduce(xh, xl)
        s = ONE + r
        sl = (ONE - s) + r                         # exact: |r| < 1
        return t, s, sl + _fma(r * r, exp_p(r), _fma(rl, r, rl))

    @njit(**_JIT)
    def _exp_core(xh, xl):
        t, s, x = _exp_parts(xh, xl)
        return _scale2(s + x, t)

    @njit(**_JIT)
    def _exp_dd(xh):
        # exp(xh) as hi + lo (lo exact only while hi is not denormal)
        t, s, x = _exp_parts(xh, ZERO)
        hi = s + x
        lo = (s - hi) + x
        return _scale2(hi, t), _scale2(lo, t)

    @njit(**_JIT)
    def exp_(x):
        xc = x if x > EXP_LO else EXP_LO          # NaN -> EXP_LO (fixed below)
        xc = xc if xc < EXP_HI else EXP_HI
        res = _exp_core(xc, ZERO)
        return res if x == x else x

    @njit(**_JIT)
    def _log_reduce(x):
        # x = 2**k * m, m in [sqrt(1/2), sqrt(2)); valid for finite x > 0
        small = x < TINY
        xs = x * SCALE_UP if small else x
        kadj = SCALE_E if small else ZERO
        ix = _iadd(_bits(xs), LOG_OFF)
        k = T_(_isub(_ishr(ix, MANT), BIAS)) - kadj
        m = _from_bits(_iadd(_iand(ix, MMASK), SQH_BITS))
        return k, m

    @njit(**_JIT)
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

    @njit(**_JIT)
    def tanh_(x):
        ax = abs(x)
        y = ax + ax
        y = y if y < TANH_Y else TANH_Y           # NaN -> TANH_Y (fixed below)
        t, r, rl = _exp_reduce(y, ZERO)
        # expm1(y) = 2^n * expm1(r + rl) + (2^n - 1) = (h + l) + s*tail
        s = _from_bits(_ishl(_iadd(_isub(_bits(t), MAGIC_BITS), BIAS), MANT))
        tail = _fma(r * r, exp_p(r), _fma(rl, r, rl))
        h, l = _two_sum(s - ONE, s * r)            # both terms exact
        l = _fma(s, tail, l)                       # expm1(y) = h + l
        d, dl = _two_sum(h, TWO)
        dl = dl + l                                # expm1(y) + 2 = d + dl
        # tanh = em/(em+2), or 1 - 2/(em+2) once tanh >= 1/2 (em >= 2);
        # one division plus a Newton correction using the double-length parts
        big = h >= TWO
        nh = TWO if big else h
        nl = ZERO if big else l
        rcp = ONE / d
        q = nh * rcp
        q = _fma(_fma(-q, d, nh) + (nl - q * dl), rcp, q)
        th = ONE - q if big else q
        res = _copysign(th, x)
        return res if x == x else x

    @njit(**_JIT)
    def sigmoid_(x):
        ax = abs(x)
        xc = -ax if ax < -EXP_LO else EXP_LO      # NaN -> EXP_LO (fixed below)
        eh, el = _exp_dd(xc)                       # exp(-|x|)
        d = ONE + eh
        dl = ((ONE - d) + eh) + el                 # d + dl = 1 + e
        pos = x >= ZERO
        nh = ONE if pos else eh                    # x < 0: e / (1 + e)
        nl = ZERO if pos else el
        rcp = ONE / d
        q = nh * rcp
        q = _fma(_fma(-q, d, nh) + (nl - q * dl), rcp, q)
        return q if x == x else x

    @njit(**_JIT)
    def _sincos_reduce(x):
        n = _rint(x * TWO_OVER_PI)
        r1 = _fma(-n, PIO2_1, x)                  # exact for moderate |n|
        ph = n * PIO2_2
        pl = _fma(n, PIO2_2, -ph)
        r, e = _two_sum(r1, -ph)
        rl = (e - pl) - n * PIO2_3                 # x - n*pi/2 = r + rl
        q = n - FOUR * _floor(n * QUARTER)        # quadrant in {0,1,2,3}
        z = r * r
        zl = _fma(r, r, -z)
        hz = HALF * z
        w = ONE - hz
        sr = r + _fma(r * z, sin_s(z), rl * w)
        cr = w + ((((ONE - w) - hz) - _fma(HALF, zl, r * rl)) + (z * z) * cos_c(z))
        return q, sr, cr

    @njit(**_JIT)
    def sin_(x):
        q, sr, cr = _sincos_reduce(x)
        v = cr if (q == ONE) | (q == THREE) else sr
        v = -v if q >= TWO else v
        return x if x == ZERO else v

    @njit(**_JIT)
    def cos_(x):
        q, sr, cr = _sincos_reduce(x)
        v = sr if (q == ONE) | (q == THREE) else cr
        return -v if (q == ONE) | (q == TWO) else v

    @njit(**_JIT)
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

    @njit(**_JIT)
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

    return dict(exp=exp_, log=log_, tanh=tanh_, sigmoid=sigmoid_, sin=sin_,
                cos=cos_, pow=pow_)


_F32 = _make(np.float32)
_F64 = _make(np.float64)

exp_f32, exp_f64 = _F32["exp"], _F64["exp"]
log_f32, log_f64 = _F32["log"], _F64["log"]
tanh_f32, tanh_f64 = _F32["tanh"], _F64["tanh"]
sigmoid_f32, sigmoid_f64 = _F32["sigmoid"], _F64["sigmoid"]
sin_f32, sin_f64 = _F32["sin"], _F64["sin"]
cos_f32, cos_f64 = _F32["cos"], _F64["cos"]
pow_f32, pow_f64 = _F32["pow"], _F64["pow"]

#: FUNCTIONS[name][dtype_name] -> dispatcher; names: exp log tanh sigmoid sin cos pow
FUNCTIONS = {name: {"float32": _F32[name], "float64": _F64[name]} for name in _F32}

#: Range of |x| over which sin/cos meet the accuracy bound in the table.
SINCOS_ACCURATE_F32 = None
SINCOS_ACCURATE_F64 = None


def lookup(name, dtype):
    """Dispatcher for ``name`` ('exp', 'tanh', ...) and a float dtype."""
    return FUNCTIONS[name][np.dtype(dtype).name]


# --------------------------------------------------------------------------
# Vectorization check
# --------------------------------------------------------------------------

_VEC_RE = re.compile(r"<(\d+) x (half|float|double)>")


def is_vectorized(dispatcher, signature=None, min_lanes=2):
    """True if the compiled code of ``dispatcher`` for ``signature`` (default:
    its only/first compiled signature) contains a loop vectorized by LLVM's
    loop vectorizer operating on floating-point SIMD vectors of at least
    ``min_lanes`` lanes.

    Checks the optimized LLVM IR (``dispatcher.inspect_llvm``) for the
    ``llvm.loop.isvectorized`` loop metadata that the LoopVectorizer attaches
    and for floating-point vector types like ``<16 x float>`` /
    ``<8 x double>``.  For ``parallel=True`` dispatchers the IR of the
    outlined parfor gufunc is part of the same module and is inspected too.
    """
    if signature is None:
        if not dispatcher.signatures:
            raise ValueError("dispatcher has no compiled signature")
        signature = dispatcher.signatures[0]
    llvm = dispatcher.inspect_llvm(signature)
    if "llvm.loop.isvectorized" not in llvm:
        return False
    return any(int(m.group(1)) >= min_lanes for m in _VEC_RE.finditer(llvm))
