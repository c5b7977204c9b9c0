"""Accuracy, special values and vectorization of graphc.backend.vecmath.

Reference values are computed by NumPy in higher precision (float64 for
float32 inputs, np.longdouble -- x87 80-bit -- for float64 inputs) and errors
are measured in ulps of the result dtype at the exact value.  Special values
(NaN, +-inf, +-0, overflow/underflow results) must equal NumPy's same-dtype
result bit for bit (any NaN matches any NaN).

Every function is compiled once per dtype inside a `range` loop (the form the
generated code uses); the same compiled loops are then checked for
vectorization, so the whole file costs ~22 Numba compilations (~12 s of CPU
time in total on the 2-core dev machine).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from numba import njit, prange

from graphc.backend import vecmath as vm

F32, F64 = np.float32, np.float64
UNARY = ["exp", "log", "tanh", "sigmoid", "sin", "cos", "sin_cw", "cos_cw", "expm1", "log1p", "exp2", "log2",
         "log10", "sinh", "cosh", "tan", "arcsinh", "arccosh", "arctanh", "arctan", "arcsin", "arccos"]

BINARY = {"pow": "power", "arctan2": "arctan2", "hypot": "hypot"}  # vecmath name -> NumPy's

# Max ulp error allowed (measured maxima are in the vecmath docstring; these
# are those plus a small margin).
ULP_BOUND = {
    "exp": 1.25, "log": 1.0, "tanh": 1.75, "sigmoid": 1.75, "sin": 1.0, "cos": 1.0,
    "sin_cw": 1.0, "cos_cw": 1.0, "pow": 1.0, "expm1": 2.0, "log1p": 1.6, "exp2": 1.0, "log2": 0.75,
    "log10": 0.75, "sinh": 2.5, "cosh": 1.5, "tan": 2.0, "arcsinh": 2.0, "arccosh": 2.75, "arctanh": 2.0,
    "arctan": 1.0, "arcsin": 1.75, "arccos": 1.75, "arctan2": 1.25, "hypot": 0.75,
}

HAS_LONGDOUBLE = np.finfo(np.longdouble).nmant >= 63
needs_ld = pytest.mark.skipif(not HAS_LONGDOUBLE,
                              reason="float64 reference needs an 80-bit long double")


def _ref_dtype(dtype):
    return np.float64 if dtype == F32 else np.longdouble


# ---------------------------------------------------------------- helpers --

_LOOPS: dict = {}


def loop(name, dtype):
    """njit `range` loop applying vm.<name>_<dtype> elementwise (cached)."""
    key = (name, np.dtype(dtype).name)
    if key not in _LOOPS:
        f = vm.lookup(name, dtype)
        if name in BINARY:
            @njit(error_model="numpy")
            def run(x, y, out):
                for i in range(x.size):
                    out[i] = f(x[i], y[i])
        else:
            @njit(error_model="numpy")
            def run(x, out):
                for i in range(x.size):
                    out[i] = f(x[i])
        _LOOPS[key] = run
    return _LOOPS[key]


def apply(name, *args):
    out = np.empty_like(args[0])
    loop(name, args[0].dtype)(*args, out)
    return out


def reference(name, x, y=None):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if name == "sigmoid":
            return 1 / (1 + np.exp(-x))
        if name in BINARY:
            return getattr(np, BINARY[name])(x, y)
        return getattr(np, name.replace("_cw", ""))(x)


def ulp_errors(got, ref, dtype):
    """|got - ref| in ulps of dtype at the exact value ref (high precision);
    only where ref rounds to a finite dtype value."""
    p = np.finfo(dtype).nmant + 1
    emin = np.finfo(dtype).minexp - p + 1          # exponent of the smallest denormal
    with np.errstate(all="ignore"):
        refd = ref.astype(dtype)
    fin = np.isfinite(refd)
    _, e = np.frexp(ref[fin])
    ulp = np.ldexp(np.ones_like(ref[fin]), np.maximum(e.astype(np.int64) - p, emin))
    err = np.abs(got[fin].astype(ref.dtype) - ref[fin]) / ulp
    return err.astype(np.float64), fin


def bits_equal(a, b):
    ui = np.uint32 if a.dtype == F32 else np.uint64
    return (a.view(ui) == b.view(ui)) | (np.isnan(a) & np.isnan(b))


def random_bits(n, dtype, rng):
    ui = np.uint32 if dtype == F32 else np.uint64
    return rng.integers(0, np.iinfo(ui).max, n, dtype=ui, endpoint=True).view(dtype)


def specials(dtype):
    fi = np.finfo(dtype)
    v = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, -2.0, 0.5,
         fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal,
         fi.smallest_subnormal * 12345, fi.max, -fi.max, fi.eps, 1 + fi.eps, 1 - fi.epsneg]
    return np.array(v, dtype=dtype)


# Dense ranges where each function is "interesting" (in addition to random bit
# patterns that cover every exponent).
DENSE = {
    "exp": {F32: [(-104.5, 89.0)], F64: [(-746.0, 710.0)]},
    "log": {F32: [(0.0, 4.0), (0.0, 1e6)], F64: [(0.0, 4.0), (0.0, 1e6)]},
    "tanh": {F32: [(-1.0, 1.0), (-10.0, 10.0)], F64: [(-1.0, 1.0), (-20.0, 20.0)]},
    "sigmoid": {F32: [(-105.0, 20.0)], F64: [(-746.0, 40.0)]},
    "sin": {F32: [(-10.0, 10.0), (-1e5, 1e5)], F64: [(-10.0, 10.0), (-1e6, 1e6)]},
}
DENSE["cos"] = DENSE["sin_cw"] = DENSE["cos_cw"] = DENSE["tan"] = DENSE["sin"]
DENSE.update({
    "expm1": {F32: [(-20.0, 20.0), (-1.0, 1.0), (-1e-3, 1e-3)], F64: [(-40.0, 40.0), (-1.0, 1.0), (-1e-3, 1e-3)]},
    "log1p": {F32: [(-1.0, 1.0), (-1e-3, 1e-3), (0.0, 1e6)], F64: [(-1.0, 1.0), (-1e-3, 1e-3), (0.0, 1e6)]},
    "exp2": {F32: [(-150.0, 129.0), (-1.0, 1.0)], F64: [(-1075.0, 1025.0), (-1.0, 1.0)]},
    "log2": DENSE["log"], "log10": DENSE["log"],
    "sinh": {F32: [(-1.0, 1.0), (-90.0, 90.0), (-1e-3, 1e-3)], F64: [(-1.0, 1.0), (-711.0, 711.0), (-1e-3, 1e-3)]},
})
DENSE["cosh"] = DENSE["sinh"]
DENSE.update({d: {F32: r, F64: r} for d, r in (
    ("arcsinh", [(-3.0, 3.0), (-1e-3, 1e-3), (-1e9, 1e9)]), ("arccosh", [(1.0, 3.0), (1.0, 1.01), (1.0, 1e9)]),
    ("arctanh", [(-1.0, 1.0), (-1e-3, 1e-3), (0.49, 0.51)]), ("arctan", [(-3.0, 3.0), (-1e-3, 1e-3), (-1e6, 1e6)]),
    ("arcsin", [(-1.0, 1.0), (0.99, 1.0), (-1e-3, 1e-3)]), ("arccos", [(-1.0, 1.0), (0.99, 1.0), (-1e-3, 1e-3)]))})


def sweep(name, dtype, n):
    rng = np.random.default_rng(1234)
    parts = [random_bits(n, dtype, rng), specials(dtype)]
    for lo, hi in DENSE[name][dtype]:
        parts.append(rng.uniform(lo, hi, n).astype(dtype))
    # every binade, both signs
    with np.errstate(all="ignore"):
        mag = np.geomspace(np.finfo(dtype).smallest_subnormal, np.finfo(dtype).max, n // 4)
    parts += [mag.astype(dtype), -mag.astype(dtype)]
    x = np.concatenate(parts)
    if name.endswith("_cw"):                           # documented range only
        x = x[~(np.abs(x) >= vm.SINCOS_CW_LIMIT[np.dtype(dtype).name])]
    return x


def _params(names):
    out = []
    for name in names:
        out.append(pytest.param(name, F32, id=name + "-f32"))
        out.append(pytest.param(name, F64, id=name + "-f64", marks=needs_ld))
    return out


# ------------------------------------------------------------- accuracy --

@pytest.mark.parametrize("name,dtype", _params(UNARY))
def test_unary_accuracy(name, dtype):
    x = sweep(name, dtype, 1 << 16 if dtype == F32 else 1 << 14)
    got = apply(name, x)
    with np.errstate(all="ignore"):
        ref = reference(name, x.astype(_ref_dtype(dtype)))
    err, fin = ulp_errors(got, ref, dtype)
    worst = np.argmax(err)
    assert err[worst] <= ULP_BOUND[name], (
        "%s(%r) = %r, reference %r: %.3f ulp" % (name, x[fin][worst], got[fin][worst],
                                                 ref[fin][worst], err[worst]))
    # Where the reference rounds to inf / nan, the result must be exactly that.
    with np.errstate(all="ignore"):
        refd = ref.astype(dtype)
    assert bits_equal(got[~fin], refd[~fin]).all()


@pytest.mark.parametrize("name,dtype", _params(UNARY))
def test_unary_special_values(name, dtype):
    base = name.replace("_cw", "")
    fi = np.finfo(dtype)
    big = 1e3 if dtype == F32 else 1e4
    common = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, fi.smallest_subnormal,
              -fi.smallest_subnormal]
    extra = {
        "exp": [big, -big, fi.max, -fi.max],
        "log": [1.0, -1.0, -fi.max, -fi.smallest_subnormal],
        "tanh": [big, -big, fi.max, -fi.max, 30.0, -30.0],
        "sigmoid": [big, -big, fi.max, -fi.max],
        "sin": [], "cos": [], "tan": [],
        "expm1": [big, -big, fi.max, -fi.max, 1e-30, -1e-30],
        "log1p": [-1.0, -2.0, fi.max, -fi.max, 1e-30, -1e-30],
        "exp2": [big, -big, fi.max, -fi.max, 1.0, 3.0, -3.0, 10.0, -10.0, 100.0, -100.0],
        "log2": [1.0, 2.0, 8.0, 0.5, 1024.0, 2.0 ** -20, -1.0, fi.tiny, fi.smallest_subnormal],
        "log10": [1.0, 10.0, -1.0],  # (NumPy's float32 log10(100) is 2.0000002: not a special value)
        "sinh": [big, -big, fi.max, -fi.max], "cosh": [big, -big, fi.max, -fi.max],
        "arcsinh": [], "arccosh": [1.0, 0.5, -1.0, -fi.max],  # (the rest: in the accuracy sweep)
        "arctanh": [1.0, -1.0, 2.0, -2.0, fi.max, -fi.max],
        "arctan": [fi.max, -fi.max], "arcsin": [1.0, -1.0, 2.0, -2.0], "arccos": [1.0, -1.0, 2.0, -2.0],
    }[base]
    x = np.array(common + extra, dtype=dtype)
    got = apply(name, x)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ref = reference(name, x)
    assert bits_equal(got, ref).all(), list(zip(x, got, ref))


def test_exp_overflow_underflow_thresholds():
    # The last finite / first infinite results and the denormal range.
    for dtype in (F32, F64):
        fi = np.finfo(dtype)
        lnmax = np.log(np.float64(fi.max)) if dtype == F32 else np.log(np.longdouble(fi.max))
        x = np.array([lnmax, np.nextafter(dtype(lnmax), dtype(np.inf)),
                      np.nextafter(dtype(lnmax), dtype(-np.inf))], dtype=dtype)
        ref = np.exp(x.astype(_ref_dtype(dtype)))
        with np.errstate(all="ignore"):
            assert bits_equal(apply("exp", x), ref.astype(dtype)).all()
        # denormal results: ulp error is measured in denormal ulps
        lo = -103.0 if dtype == F32 else -744.0
        x = np.linspace(lo, lo + 20, 4001, dtype=dtype)
        err, _ = ulp_errors(apply("exp", x), np.exp(x.astype(_ref_dtype(dtype))), dtype)
        assert err.max() <= ULP_BOUND["exp"]


def test_worst_measured_cases():
    # The worst inputs of the exhaustive float32 / long float64 sweeps quoted
    # in the vecmath docstring, and the switch between float32 tanh's two
    # formulas (|x| = 0.55): all 2**20 float32 values around it.
    cases = {
        "exp": ([-5.8430023], [471.72462542827]),
        "tanh": ([0.55280346, -0.55280346, 0.5239716, 0.5532036], [0.5503495462678383]),
        "sigmoid": ([-5.836315], [-29.42048388394869]),
    }
    for name, (x32, x64) in cases.items():
        for dtype, xs in ((F32, x32), (F64, x64)):
            if dtype == F64 and not HAS_LONGDOUBLE:
                continue
            x = np.array(xs, dtype=dtype)
            err, _ = ulp_errors(apply(name, x), reference(name, x.astype(_ref_dtype(dtype))), dtype)
            assert err.max() <= ULP_BOUND[name], (name, dtype, err)
    b = np.array([0.55], dtype=F32).view(np.int32)[0]
    x = np.arange(b - (1 << 19), b + (1 << 19), dtype=np.int32).view(F32)
    x = np.concatenate([x, -x])
    err, _ = ulp_errors(apply("tanh", x), np.tanh(x.astype(np.float64)), F32)
    assert err.max() <= ULP_BOUND["tanh"]


def test_sincos_hard_reduction_cases():
    # x within ~2**-61 (float64) / ~2**-24 relative of a multiple of pi/2:
    # the result is tiny and every bit of the argument reduction counts.
    # Expected values: correctly rounded (computed with mpmath, 4000 bits).
    x = np.array([6381956970095103 * 2.0 ** 797])
    assert apply("cos", x)[0] == float.fromhex("-0x1.14ae72e6ba22fp-61")
    assert apply("sin", x)[0] == 1.0
    x = np.array([float.fromhex("0x1.0f79ap+59")], dtype=F32)
    assert apply("sin", x)[0] == F32(float.fromhex("0x1.c859fcp-25"))
    assert apply("cos", x)[0] == F32(1.0)


def test_sincos_cw_range_limit():
    for dtype in (F32, F64):
        lim = vm.SINCOS_CW_LIMIT[np.dtype(dtype).name]
        x = np.array([lim, -lim, lim * 4, np.finfo(dtype).max], dtype=dtype)
        assert np.isnan(apply("sin_cw", x)).all() and np.isnan(apply("cos_cw", x)).all()
        x = np.array([np.nextafter(dtype(lim), dtype(0)), 1.0, -0.0], dtype=dtype)
        assert bits_equal(apply("sin_cw", x), apply("sin", x)).all()
        assert bits_equal(apply("cos_cw", x), apply("cos", x)).all()


# ------------------------------------------------------------------- pow --

def pow_sweep(dtype, n, seed=99):
    rng = np.random.default_rng(seed)
    fi = np.finfo(dtype)
    lmax = np.log(fi.max)
    xs, ys = [], []
    # positive x of every exponent, y such that |y log x| covers the finite,
    # overflow and underflow range
    x = np.abs(random_bits(n, dtype, rng))
    x = np.where(np.isfinite(x) & (x != 0), x, dtype(1.5))
    t = rng.uniform(-1.1, 1.1, n) * lmax * 1.05
    with np.errstate(all="ignore"):
        y = (t / np.log(x.astype(np.float64))).astype(dtype)
    xs.append(x); ys.append(np.where(np.isfinite(y), y, dtype(0.5)))
    # x near 1 with large y (cancellation-sensitive)
    xs.append((1 + rng.uniform(-1e-2, 1e-2, n)).astype(dtype))
    ys.append(rng.uniform(-3e4, 3e4, n).astype(dtype))
    # negative x with integer y (sign), and general moderate values
    xs.append(-rng.uniform(0.01, 10, n).astype(dtype))
    ys.append(rng.integers(-40, 40, n).astype(dtype))
    xs.append(rng.uniform(0, 10, n).astype(dtype))
    ys.append(rng.uniform(-30, 30, n).astype(dtype))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("dtype", [F32, pytest.param(F64, marks=needs_ld)], ids=["f32", "f64"])
def test_pow_accuracy(dtype):
    x, y = pow_sweep(dtype, 1 << 15 if dtype == F32 else 1 << 13)
    got = apply("pow", x, y)
    R = _ref_dtype(dtype)
    ref = reference("pow", x.astype(R), y.astype(R))
    err, fin = ulp_errors(got, ref, dtype)
    worst = np.argmax(err)
    assert err[worst] <= ULP_BOUND["pow"], (x[fin][worst], y[fin][worst], got[fin][worst],
                                            ref[fin][worst], err[worst])
    with np.errstate(all="ignore"):
        assert bits_equal(got[~fin], ref[~fin].astype(dtype)).all()


@pytest.mark.parametrize("dtype", [F32, pytest.param(F64, marks=needs_ld)], ids=["f32", "f64"])
def test_pow_special_values(dtype):
    fi = np.finfo(dtype)
    v = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 2.5, -2.5,
                  np.inf, -np.inf, np.nan, fi.smallest_subnormal, -fi.smallest_subnormal,
                  fi.max, -fi.max, 7.0, -7.0, 1 + fi.eps, 1 - fi.epsneg, -(1 + fi.eps),
                  2.0 ** 24 + 2 if dtype == F32 else 2.0 ** 53 + 2, 1e30, -1e30],
                 dtype=dtype)
    X, Y = (a.ravel() for a in np.meshgrid(v, v))
    got = apply("pow", X, Y)
    with np.errstate(all="ignore"):
        ref_same = np.power(X, Y)
        R = _ref_dtype(dtype)
        ref = np.power(X.astype(R), Y.astype(R))
    # special inputs: exactly NumPy's result (C99 Annex F cases)
    special = (np.isnan(X) | np.isnan(Y) | ~np.isfinite(X) | ~np.isfinite(Y)
               | (X == 0) | (Y == 0) | (np.abs(X) == 1))
    bad = special & ~bits_equal(got, ref_same)
    assert not bad.any(), list(zip(X[bad], Y[bad], got[bad], ref_same[bad]))[:10]
    # everything else (including negative bases, overflow and underflow):
    # against the high-precision reference
    err, fin = ulp_errors(got[~special], ref[~special], dtype)
    assert err.max() <= ULP_BOUND["pow"]
    with np.errstate(all="ignore"):
        assert bits_equal(got[~special][~fin], ref[~special][~fin].astype(dtype)).all()
    # exact cases are exact
    for x, y, r in [(2.0, 10.0, 1024.0), (-2.0, 3.0, -8.0), (-0.5, -2.0, 4.0),
                    (4.0, 0.5, 2.0), (-8.0, 1.0, -8.0), (10.0, -1.0, 0.1)]:
        assert apply("pow", np.array([x], dtype), np.array([y], dtype))[0] == dtype(r)


# ---------------------------------------------------------- vectorization --

@pytest.mark.parametrize("name", ["arctan2", "hypot"])
@pytest.mark.parametrize("dtype", [F32, pytest.param(F64, marks=needs_ld)], ids=["f32", "f64"])
def test_binary_accuracy_and_special_values(name, dtype):
    rng = np.random.default_rng(3)
    n = 1 << 15
    y = np.concatenate([random_bits(n, dtype, rng), rng.uniform(-3, 3, n).astype(dtype)])
    x = np.concatenate([random_bits(n, dtype, rng), rng.uniform(-3, 3, n).astype(dtype)])
    got = apply(name, y, x)
    with np.errstate(invalid="ignore"):  # (NaN references cast)
        err, fin = ulp_errors(got, reference(name, y.astype(_ref_dtype(dtype)), x.astype(_ref_dtype(dtype))), dtype)
    assert err.max() <= ULP_BOUND[name], (y[fin][np.argmax(err)], x[fin][np.argmax(err)], err.max())
    # every pair of special values (signed zeros, infinities, NaN) bit for bit
    s = specials(dtype)
    s = s[(s == 0) | ~np.isfinite(s) | (np.abs(s) == 1)]
    yy, xx = (a.ravel() for a in np.meshgrid(s, s))
    keep = (np.abs(yy) != 1) | (np.abs(xx) != 1)  # (NumPy's float32 atan2(1, 1) is 1 ulp below pi/4)
    yy, xx = yy[keep], xx[keep]
    assert bits_equal(apply(name, yy, xx), reference(name, yy, xx)).all()


def test_cpu_has_simd_floats():
    # Sanity for the checks below: the host's vector width is what LLVM uses.
    x = np.ones(64, F32)
    apply("exp", x)
    assert vm.is_vectorized(loop("exp", F32))


@pytest.mark.parametrize("name,dtype", [pytest.param(n, d, id="%s-%s" % (n, np.dtype(d).name))
                                        for n in UNARY + list(BINARY) for d in (F32, F64)])
def test_range_loop_is_vectorized(name, dtype):
    run = loop(name, dtype)
    if not run.signatures:
        a = np.ones(8, dtype)
        apply(name, *([a, a] if name in BINARY else [a]))
    assert vm.is_vectorized(run)
    llvm = run.inspect_llvm(run.signatures[0])
    lanes = {F32: "float>", F64: "double>"}[dtype]
    assert " x " + lanes in llvm
    if dtype == F32:                  # really computed in float32
        assert "double" not in llvm


def test_prange_loop_is_vectorized_and_matches_range():
    f = vm.tanh_f32

    @njit(error_model="numpy", parallel=True)
    def run(x, out):
        for i in prange(x.size):
            out[i] = f(x[i])

    x = np.linspace(-12, 12, 10001, dtype=F32)
    out = np.empty_like(x)
    run(x, out)
    assert vm.is_vectorized(run)
    assert bits_equal(out, apply("tanh", x)).all()


@pytest.mark.parametrize("parallel", [False, True], ids=["range", "prange"])
def test_numpy_tanh_loop_is_not_vectorized(parallel):
    # Proves the check can fail: without SVML, np.tanh in a loop becomes
    # @llvm.tanh.v16f32 (vector in the IR), scalarized into 16 tanhf calls.
    if parallel:
        @njit(error_model="numpy", parallel=True)
        def run(x, out):
            for i in prange(x.size):
                out[i] = np.tanh(x[i])
    else:
        @njit(error_model="numpy")
        def run(x, out):
            for i in range(x.size):
                out[i] = np.tanh(x[i])

    x = np.ones(16, F32)
    run(x, x.copy())
    assert not vm.is_vectorized(run)


def test_fastmath_caller_keeps_special_values():
    # The caller's fastmath flags must not leak into the inlined functions
    # (default error_model here: a separate compile of the implementations).
    f, g = vm.tanh_f32, vm.log_f32

    @njit(fastmath=True)
    def run(x, o1, o2):
        for i in range(x.size):
            o1[i] = f(x[i])
            o2[i] = g(x[i])

    x = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, -0.0, 0.25] * 4, dtype=F32)
    o1, o2 = np.empty_like(x), np.empty_like(x)
    run(x, o1, o2)
    with np.errstate(all="ignore"):
        assert bits_equal(o1, np.tanh(x)).all()
        assert bits_equal(o2, np.log(x)).all()
    assert vm.is_vectorized(run)


def test_scalar_call_from_python_matches_loop():
    x = np.array([0.3, -2.5, 40.0, 1e-30], dtype=F32)
    loop_out = apply("tanh", x)
    assert [F32(vm.tanh_f32(v)) for v in x] == list(loop_out)
    assert vm.pow_f64(2.0, 0.5) == apply("pow", np.array([2.0]), np.array([0.5]))[0]
    # other numeric argument types are cast to the function's dtype
    assert vm.exp_f32(1) == F32(np.e) and vm.pow_f32(2, 3) == 8.0
    assert vm.lookup("exp", "float32") is vm.exp_f32
    assert vm.FUNCTIONS["sigmoid"]["float64"] is vm.sigmoid_f64
