"""NumPy's elementwise functions on traced values: special values, dtypes, operators, np.power.

Each group compiles one graph and checks compiled == interpreter == NumPy (conftest's
check_cases) on inputs full of special values (inf, -inf, nan, -0.0, ties, zero divisors);
``exact`` cases also compare bit for bit (the sign of zero included).
"""
from __future__ import annotations

import operator
import warnings

import numpy as np
import pytest

import graphc as gc
from conftest import Case, check_cases, flat_outputs

SPECIAL = [-np.inf, -7.0, -3.5, -2.5, -1.0, -0.75, -0.5, -0.0, 0.0, 1e-30, 0.25, 0.5, 1.0, 1.5, 2.5,
           3.0, 7.25, 100.0, 1e30, np.inf, np.nan]

UNARY = [np.log1p, np.expm1, np.log2, np.log10, np.exp2, np.tan, np.sinh, np.cosh, np.arcsin, np.arccos,
         np.arctan, np.arcsinh, np.arccosh, np.arctanh, np.floor, np.ceil, np.rint, np.round, np.around,
         np.fabs, np.reciprocal, np.sinc, np.deg2rad, np.rad2deg, np.radians, np.degrees, np.nan_to_num,
         np.isnan, np.isinf, np.isfinite]
BINARY = [np.arctan2, np.hypot, np.logaddexp, np.logaddexp2, np.fmax, np.fmin, np.remainder, np.mod,
          np.floor_divide, np.divmod, divmod, np.power, operator.floordiv, operator.mod]
# results that must match NumPy bit for bit (the others are vecmath or libm: within a few ulp)
EXACT = {"floor", "ceil", "rint", "round", "around", "fabs", "reciprocal", "deg2rad", "rad2deg", "radians",
         "degrees", "nan_to_num", "isnan", "isinf", "isfinite", "remainder", "floor_divide", "divmod", "floordiv",
         "mod", "round(x, 2)", "round(x, -1)", "nan_to_num(options)"}
# (fmax/fmin of 0.0 and -0.0: NumPy's SIMD loops return y, its scalar loop x; see test_fmax_fmin_ties)


def _name(fn):
    return fn.__name__


def assert_bitwise(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if want.dtype.kind == "f":
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=what)
        np.testing.assert_array_equal(got[~nan], want[~nan], err_msg=what)
        np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(want[~nan]), err_msg=f"{what}: sign of zero")
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def numpy_result(fn, *args):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


def check_cases_bitwise(cases, exact=lambda case: True):
    """check_cases (compiled == interpreter == NumPy, within tolerance), then the same compiled
    graph's results equal NumPy's bit for bit for the cases ``exact`` selects."""
    traced = check_cases(cases)
    got = traced(*[a for c in cases for a in c.args])
    for case, out in zip(cases, got):
        if exact(case):
            for g, w in zip(flat_outputs(out), flat_outputs(numpy_result(case.fn, *case.args))):
                assert_bitwise(g, w, case.name)


def _exact(case):
    return case.name.split(":")[0] in EXACT


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_functions_match_numpy_on_special_values(dtype):
    x = np.array(SPECIAL, dtype)
    cases = [Case(f"{_name(f)}:{dtype}", f, (x,)) for f in UNARY]
    cases.append(Case(f"round(x, 2):{dtype}", lambda x: np.round(x * 1.2345, 2), (x,)))
    cases.append(Case(f"round(x, -1):{dtype}", lambda x: np.round(x * 12.345, -1), (x,)))
    cases.append(Case(f"nan_to_num(options):{dtype}", lambda x: np.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0),
                      (x,)))
    check_cases_bitwise(cases, _exact)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_functions_match_numpy_on_special_values(dtype):
    """Every pair of special values (an outer product: broadcasting (n, 1) against (n,))."""
    x = np.array(SPECIAL, dtype)
    a, b = x[:, None], x
    cases = [Case(f"{_name(f)}:{dtype}", f, (a, b)) for f in BINARY]
    check_cases_bitwise(cases, _exact)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_inputs_follow_numpy(dtype):
    info = np.iinfo(dtype)
    a = np.array([7, -7, 7, -7, 0, 5, info.min, info.min, info.max, 3, 1, -1], dtype)
    b = np.array([2, 2, -2, -2, 3, 0, -1, 1, -1, 7, 0, 0], dtype)
    cases = [Case(f"{name}:{dtype}", fn, (a, b)) for name, fn in [
        ("//", lambda a, b: a // b), ("%", lambda a, b: a % b), ("divmod", divmod),
        ("np.divmod", np.divmod), ("fmax/fmin", lambda a, b: (np.fmax(a, b), np.fmin(a, b))),
        ("reciprocal", lambda a, b: np.reciprocal(a)), ("round", lambda a, b: (np.round(a), np.round(a, 1))),
        ("round(a, -1)", lambda a, b: np.round(a, -1)), ("floor/ceil/rint", lambda a, b: (np.floor(b), np.ceil(b), np.rint(b))),
        ("is*", lambda a, b: (np.isnan(a), np.isinf(a), np.isfinite(a))), ("nan_to_num", lambda a, b: np.nan_to_num(a)),
        ("fabs", lambda a, b: np.fabs(b)), ("degrees", lambda a, b: np.degrees(b)),
        ("to float", lambda a, b: (np.log1p(abs(b)), np.arctan2(a, b), np.hypot(b, b), np.sinc(b))),
        ("power", lambda a, b: a ** abs(b)), ("weak", lambda a, b: (a // 2, 7 % b, a // 2.5, 7.5 % b))]]
    check_cases(cases)


def test_operators_keep_weak_scalars_weak():
    x = np.array([-2.5, -0.0, 3.0, 7.0], np.float32)

    def f(x):
        return x // 2, 7 // x, x % 2.0, 7.0 % x, divmod(x, 2), divmod(7, x), np.float32(7) % x

    for got, want in zip(flat_outputs(gc.trace(f)(x)), flat_outputs(numpy_result(f, x))):
        assert got.dtype == np.float32
        assert_bitwise(got, want, "operator")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fmax_fmin_ties_and_nans_bit_for_bit_as_numpy_on_contiguous_arrays(dtype):
    x = np.array(SPECIAL, dtype)
    a, b = np.repeat(x, len(x)), np.tile(x, len(x))  # every pair, same shape, contiguous
    got = gc.trace(lambda a, b: (np.fmax(a, b), np.fmin(a, b), np.maximum(a, b), np.minimum(a, b)))(a, b)
    for name, g in zip(("fmax", "fmin", "maximum", "minimum"), got):
        assert_bitwise(g, numpy_result(getattr(np, name), a, b), f"{name} {dtype}")


def test_boolean_floor_division_is_refused_as_graphc_has_no_int8():
    b = np.array([True, False])
    with pytest.raises(TypeError, match="int8"):
        gc.trace(lambda a: a // a)(b)
    with pytest.raises(TypeError, match="float16"):
        gc.trace(np.floor)(b)


# -- np.power -----------------------------------------------------------------------------------
# NumPy computes x ** 0.5 as sqrt(x) when the exponent is one value broadcast over the whole loop
# (and sqrt differs from C's pow at -0.0 and -inf); shapes measured on NumPy 2.4
POW_SHAPES = [((5,), ()), ((5,), (1,)), ((5, 1), (1, 1)), ((1,), (1,)), ((), (1,)), ((5, 4), (5, 1)),
              ((1, 1), (1, 1)), ((5,), (5,))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_power_of_one_half_is_numpys_sqrt_where_numpy_takes_it(dtype):
    def x_of(shape):
        return np.resize(np.array([-0.0, -np.inf, 4.0, 0.0, -1.0], dtype), shape)

    cases = []
    for sx, sy in POW_SHAPES:
        x, y = x_of(sx), np.full(sy, 0.5, dtype)
        cases.append(Case(f"traced {sx}**{sy}", np.power, (x, y)))
        cases.append(Case(f"constant {sx}**{sy}", lambda x, y=y: np.power(x, y), (x,)))
    x = x_of((5,))
    cases += [Case("x ** 0.5", lambda x: x ** 0.5, (x,)), Case("np.power(x, 0.5)", lambda x: np.power(x, 0.5), (x,)),
              Case("traced scalar exponent", lambda x, y: x ** y, (x, 0.5)),
              Case("traced exponent 1.5", lambda x, y: x ** y, (x, 1.5)),
              Case("x ** 2, x ** -1, x ** 0", lambda x: (x ** 2, x ** -1, x ** 0, x ** 1), (x,))]
    check_cases_bitwise(cases)


def test_power_of_constants_simplifies_to_numpys_fast_paths():
    x = np.array([-0.0, -np.inf, 2.0, np.nan])
    f = gc.trace(lambda x: (x ** 0.5, x ** -1, x ** 0, np.power(x, np.full(4, 0.5))))
    for got, want in zip(f(x), numpy_result(lambda x: (x ** 0.5, x ** -1, x ** 0, np.power(x, np.full(4, 0.5))), x)):
        assert_bitwise(got, want, "pow")
    ops = [op for n in f.graph.nodes for op in ([n.op] if not n.regions else [m.op for m in n.regions[0].nodes])]
    assert "sqrt" in ops and "div" in ops and ops.count("pow") == 1  # (the (4,) exponent is C's pow)


def test_integers_to_negative_powers_raise_as_numpy():
    x = np.array([2, 3])
    for fn in (lambda x: x ** -1, lambda x: np.power(x, np.array([1, -2])), lambda x: np.int64(2) ** -x):
        with pytest.raises(ValueError, match="negative integer powers"):
            gc.trace(fn)(x)
    f = gc.trace(lambda x, y: x ** y)  # a traced exponent: checked when the compiled code runs
    np.testing.assert_array_equal(f(x, np.array([2, 3])), [4, 27])
    with pytest.raises(ValueError, match="negative integer powers"):
        f(x, np.array([2, -3]))
    assert gc.trace(lambda x: x ** -1.0)(x).dtype == np.float64  # a float exponent is fine
    np.testing.assert_array_equal(gc.trace(lambda x: x ** 2)(x.astype(np.int32)), np.array([4, 9], np.int32))


def test_power_gradient_at_zero_exponent_is_zero():
    x = np.array([0.0, 2.0, -1.5])
    np.testing.assert_array_equal(gc.grad(lambda x: np.sum(x ** 0))(x), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(gc.grad(lambda x: np.sum(x ** 0.0))(x), [0.0, 0.0, 0.0])
    g = gc.grad(lambda x, y: np.sum(x ** y))(x, np.array([0.0, 0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, -3.0])
    from graphc.testing import check_grads
    check_grads(lambda x, y: x ** y, (np.array([0.7, 1.3]), np.array([0.0, 2.0])), order=2)


# -- round ----------------------------------------------------------------------------------------
def test_round_takes_a_static_decimals_only():
    x = np.array([1.25, 2.5, -0.125])
    for d in (0, 1, 2, -1):
        np.testing.assert_array_equal(gc.trace(lambda x, d=d: np.round(x, d))(x), np.round(x, d))
    assert gc.trace(lambda x: np.around(x, decimals=1))(x).dtype == np.float64
    with pytest.raises(gc.TraceError, match="decimals must be a static int"):
        gc.trace(lambda x, d: np.round(x, d))(x, np.int64(1))


# -- simplification stays exact -----------------------------------------------------------------------
def test_simplified_exp_of_log_and_log_of_exp_keep_positive_zero():
    x = np.array([-0.0, 0.0, 0.5, -2.0, np.nan, np.inf], np.float64)

    def f(x):
        return np.exp(np.log(np.sqrt(x))), np.exp(np.log(x)), np.log(np.exp(np.tanh(x))), np.exp(np.log(np.abs(x)))

    got, want = flat_outputs(gc.trace(f)(x)), flat_outputs(numpy_result(f, x))
    for k, (g, w) in enumerate(zip(got, want)):
        nan = np.isnan(w)
        np.testing.assert_array_equal(np.isnan(g), nan)
        np.testing.assert_allclose(g[~nan], w[~nan], rtol=1e-15)
        np.testing.assert_array_equal(np.signbit(g[~nan]), np.signbit(w[~nan]), err_msg=f"output {k}: sign of zero")


def test_scalar_pow_folding_keeps_numpys_pow_path():
    """pow(broadcast(a), broadcast(0.5)) is C pow in NumPy (the exponent is a full array); hoisting it
    to pow(a, 0.5) on 0-d operands would switch it to sqrt (-0.0 for -0.0, nan for -inf)."""
    def f(a):
        return np.power(np.broadcast_to(a, (3,)), np.full(3, 0.5))

    for a in (np.float64(-0.0), np.float64(-np.inf)):
        assert_bitwise(gc.trace(f)(a), numpy_result(f, a), f"pow of broadcast {a}")


# -- accuracy of the transcendental functions in compiled loops (graphc.backend.vecmath or libm) ------
ULP_DOMAINS = {"log1p": (-0.99, 1e3), "expm1": (-30, 30), "log2": (1e-3, 1e6), "log10": (1e-3, 1e6),
               "exp2": (-100, 100), "tan": (-10, 10), "sinh": (-50, 50), "cosh": (-50, 50), "arcsin": (-1, 1),
               "arccos": (-1, 1), "arctan": (-1e3, 1e3), "arcsinh": (-1e3, 1e3), "arccosh": (1, 1e3),
               "arctanh": (-1, 1)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_transcendental_functions_are_within_a_few_ulp_of_numpy(dtype):
    rng = np.random.default_rng(7)
    n = 4096
    xs = {name: rng.uniform(lo, hi, n).astype(dtype) for name, (lo, hi) in ULP_DOMAINS.items()}
    y = rng.uniform(-5, 5, n).astype(dtype)
    names = list(ULP_DOMAINS)

    def f(y, *args):
        outs = [getattr(np, name)(x) for name, x in zip(names, args)]
        return outs + [np.arctan2(y, args[0]), np.hypot(y, args[0]), np.logaddexp(y, args[0]),
                       np.logaddexp2(y, args[0])]

    args = [xs[name] for name in names]
    got = gc.trace(f)(y, *args)
    want = numpy_result(f, y, *args)
    for name, g, w in zip(names + ["arctan2", "hypot", "logaddexp", "logaddexp2"], got, want):
        assert g.dtype == w.dtype == np.dtype(dtype), name
        finite = np.isfinite(w)
        np.testing.assert_array_equal(g[~finite], w[~finite], err_msg=name)
        ulps = np.abs(g[finite].astype(np.float64) - w[finite]) / np.spacing(np.abs(w[finite])).astype(np.float64)
        assert ulps.max() <= 4, f"{name} {dtype}: {ulps.max():.1f} ulp from NumPy"
