"""The CUDA backend (graphc/backend/cuda*.py) against NumPy, the interpreter and the CPU backend.

Runs under Numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1), which runs
one Python thread per GPU thread: shapes are small and each test traces few functions, many
checks in one graph. The PTX test compiles the generated kernels for a real GPU in a
subprocess without the simulator (numba-cuda's NVVM, no GPU needed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import assert_same, raw_graph

import graphc as gc
from graphc.backend.cuda_device import device
from graphc.ops import bitwise, registry

# (the simulator runs kernels on NumPy scalars, which warn about log(-1) and friends; a GPU does not)
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

R = np.random.default_rng(17)


def _no_device_reason():
    try:
        device()
    except gc.DeviceError as exc:
        return str(exc)
    return None


NO_DEVICE = _no_device_reason()
needs_device = pytest.mark.skipif(NO_DEVICE is not None, reason=f"no CUDA device: {NO_DEVICE}")
SIMULATOR_SWITCH_INTERVAL = 2e-4  # seconds (Python's default is 5e-3)


@pytest.fixture(autouse=True, scope="module")
def simulator_speed():
    """Numba's simulator polls its threads in a busy loop holding the GIL: a shorter switch
    interval runs simulated blocks about 3x faster (undone after this module). (Its race on
    shared arrays is worked around by graphc itself: cuda_device._serialize_simulated_shared_arrays.)"""
    from graphc.backend.cuda_device import simulated
    if not simulated():
        yield
        return
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(interval)


F32_TOL = {"rtol": 1e-5, "atol": 1e-6}  # (float32 sums in another order than NumPy's pairwise sum)


def cuda(fn, **options):
    """``fn`` traced for the simulated device, results as NumPy arrays."""
    return gc.trace(fn, device="cuda", to_host=True, **options)


def host(a):
    """A result as a NumPy array (a copy of a GPU array; the simulator's arrays are NumPy's)."""
    from graphc.backend.cuda_device import device
    return np.asarray(device().to_host(a))


def reference(fn, *args):
    """``fn`` run eagerly by NumPy on copies of ``args``, warnings (log(0)...) silenced."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])


def assert_tree(got, want, what, tol=None):
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, (tuple, list)):
            assert_tree(g, w, f"{what}[{k}]", tol)
        else:
            assert_same(g, w, f"{what}[{k}]", tol)


def group(cases):
    """One function computing every case: ``fn(*flat args)`` -> tuple of per-case results."""

    def combined(*flat):
        out, k = [], 0
        for fn, _, arity in cases:
            out.append(fn(*flat[k:k + arity]))
            k += arity
        return tuple(out)
    return combined


def ops_of(fn, *args) -> set:
    """The registry ops in ``fn``'s graph as traced (before any pass)."""
    graph = raw_graph(fn, *args)
    found = set()

    def walk(g):
        for node in g.nodes:
            found.add(node.op)
            for region in node.regions:
                walk(region)
    walk(graph)
    return found


# ------------------------------------------------------------------------------------------
# elementwise ops
# ------------------------------------------------------------------------------------------
def np_sigmoid(x):
    return (1 / (1 + np.exp(-x))).astype(x.dtype)


def np_relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


def with_iota(x):
    """x plus its last axis' index (gc.iota); 0-d x as it is."""
    if x.ndim == 0:
        return x + 0
    return x + gc.iota(x.shape, axis=x.ndim - 1, dtype=x.dtype)


def np_with_iota(x):
    return x + 0 if x.ndim == 0 else x + np.arange(x.shape[-1], dtype=x.dtype)


def other_float(x):
    return x.astype(np.float64 if x.dtype == np.float32 else np.float32)


# name: (traced function, NumPy reference or None, the registry ops it traces to)
UNARY_FLOAT = {
    "exp": (np.exp, None, {"exp"}), "log": (np.log, None, {"log"}), "tanh": (np.tanh, None, {"tanh"}),
    "sin": (np.sin, None, {"sin"}), "cos": (np.cos, None, {"cos"}), "sqrt": (np.sqrt, None, {"sqrt"}),
    "sigmoid": (gc.sigmoid, np_sigmoid, {"sigmoid"}), "relu": (gc.relu, np_relu, {"relu"}),
    "neg": (np.negative, None, {"neg"}), "abs": (np.abs, None, {"abs"}), "sign": (np.sign, None, {"sign"}),
    "log1p": (np.log1p, None, {"log1p"}), "expm1": (np.expm1, None, {"expm1"}),
    "log2": (np.log2, None, {"log2"}), "log10": (np.log10, None, {"log10"}), "exp2": (np.exp2, None, {"exp2"}),
    "tan": (np.tan, None, {"tan"}), "sinh": (np.sinh, None, {"sinh"}), "cosh": (np.cosh, None, {"cosh"}),
    "arcsin": (np.arcsin, None, {"arcsin"}), "arccos": (np.arccos, None, {"arccos"}),
    "arctan": (np.arctan, None, {"arctan"}), "arcsinh": (np.arcsinh, None, {"arcsinh"}),
    "arccosh": (np.arccosh, None, {"arccosh"}), "arctanh": (np.arctanh, None, {"arctanh"}),
    "floor": (np.floor, None, {"floor"}), "ceil": (np.ceil, None, {"ceil"}), "rint": (np.rint, None, {"rint"}),
    "logical_not": (np.logical_not, None, {"not"}),
    "astype other float": (other_float, None, {"cast"}),
    "astype bool": (lambda x: x.astype(bool), None, {"cast"}),
    "astype int32 (finite)": (lambda x: np.where(np.isfinite(x), x * 3, 0).astype(np.int32), None, {"cast"}),
    "astype int64 (finite)": (lambda x: np.where(np.isnan(x) | np.isinf(x), -7, x * 3).astype(np.int64), None,
                              {"cast"}),
    "clip scalars": (lambda x: np.clip(x, -1.5, 2.0), None, {"clip"}),
    "stop_gradient": (gc.stop_gradient, lambda x: x.copy(), {"stop_gradient"}),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2,) + x.shape), lambda x: np.broadcast_to(x, (2,) + x.shape).copy(),
                     {"broadcast_to"}),
    "iota": (with_iota, np_with_iota, {"iota"}),
    "square": (np.square, None, {"mul"}),
    "x * 2.5 (weak)": (lambda x: x * 2.5, None, {"mul"}),
    "2 ** x (weak)": (lambda x: 2 ** x, None, {"pow"}),
    "x ** 2 (weak)": (lambda x: x ** 2, None, {"mul", "pow"}),
}
BINARY_FLOAT = {
    "add": (np.add, None, {"add"}), "sub": (np.subtract, None, {"sub"}), "mul": (np.multiply, None, {"mul"}),
    "div": (np.divide, None, {"div"}), "pow": (np.power, None, {"pow"}),
    "maximum": (np.maximum, None, {"maximum"}), "minimum": (np.minimum, None, {"minimum"}),
    "fmax": (np.fmax, None, {"fmax"}), "fmin": (np.fmin, None, {"fmin"}),
    "arctan2": (np.arctan2, None, {"arctan2"}), "hypot": (np.hypot, None, {"hypot"}),
    "logaddexp": (np.logaddexp, None, {"logaddexp"}), "logaddexp2": (np.logaddexp2, None, {"logaddexp2"}),
    "floor_divide": (np.floor_divide, None, {"floordiv"}), "remainder": (np.remainder, None, {"mod"}),
    "eq": (np.equal, None, {"eq"}), "ne": (np.not_equal, None, {"ne"}), "lt": (np.less, None, {"lt"}),
    "le": (np.less_equal, None, {"le"}), "gt": (np.greater, None, {"gt"}), "ge": (np.greater_equal, None, {"ge"}),
    "logical_and": (np.logical_and, None, {"and"}), "logical_or": (np.logical_or, None, {"or"}),
    "logical_xor": (np.logical_xor, None, {"xor"}),
    "where": (lambda a, b: np.where(a > b, a, b - 1), None, {"where"}),
    "clip arrays": (lambda a, b: np.clip(b, a, 1.0), None, {"clip"}),
    "fused chain": (lambda a, b: np.tanh(a * b + 1.0) - np.exp(-np.abs(a)) / (1 + b * b), None, set()),
}
UNARY_INT = {
    "neg": (np.negative, None, {"neg"}), "abs": (np.abs, None, {"abs"}), "sign": (np.sign, None, {"sign"}),
    "relu": (gc.relu, np_relu, {"relu"}), "square": (np.square, None, {"mul"}),
    "astype float32": (lambda x: x.astype(np.float32), None, {"cast"}),
    "clip": (lambda x: np.clip(x, -2, 3), None, {"clip"}),
    "logical_not": (np.logical_not, None, {"not"}),
    "exp (to float64)": (np.exp, None, {"exp"}),
    "x + 1 (weak)": (lambda x: x + 1, None, {"add"}),
    "x * 2.5 (to float64)": (lambda x: x * 2.5, None, {"mul"}),
    "iota": (with_iota, np_with_iota, {"iota"}),
}
BINARY_INT = {
    "add": (np.add, None, {"add"}), "sub": (np.subtract, None, {"sub"}), "mul": (np.multiply, None, {"mul"}),
    "div (to float64)": (np.divide, None, {"div"}),
    "pow": (lambda a, b: a ** np.abs(b), None, {"pow"}),
    "maximum": (np.maximum, None, {"maximum"}), "minimum": (np.minimum, None, {"minimum"}),
    "floor_divide": (np.floor_divide, None, {"floordiv"}), "remainder": (np.remainder, None, {"mod"}),
    "eq": (np.equal, None, {"eq"}), "lt": (np.less, None, {"lt"}), "ge": (np.greater_equal, None, {"ge"}),
    "where": (lambda a, b: np.where(a > b, a, b), None, {"where"}),
    "logical_xor": (np.logical_xor, None, {"xor"}),
}
BINARY_INT64 = {
    "bitxor": (bitwise.bitxor, np.bitwise_xor, {"bitxor"}),
    "lshr": (lambda a, b: bitwise.lshr(a * 1000003 + b, 7),
             lambda a, b: ((a * 1000003 + b).view(np.uint64) >> np.uint64(7)).view(np.int64), {"lshr"}),
}
BINARY_BOOL = {
    "and": (np.logical_and, None, {"and"}), "or": (np.logical_or, None, {"or"}),
    "xor": (np.logical_xor, None, {"xor"}), "not": (lambda a, b: ~a, None, {"not"}),
    "add": (np.add, None, {"add"}), "maximum": (np.maximum, None, {"maximum"}),
    "ne": (np.not_equal, None, {"ne"}),
    "where": (lambda a, b: np.where(a, 1.5, b), None, {"where"}),
}
BOOL_FNS = [fn for fn, _, _ in BINARY_BOOL.values()]
TABLES = [UNARY_FLOAT, BINARY_FLOAT, UNARY_INT, BINARY_INT, BINARY_INT64, BINARY_BOOL]
SPECIALS = [np.inf, -np.inf, np.nan, -0.0, 0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 1e-3, 3.0, 0.9]


def test_every_registered_elementwise_op_is_covered():
    covered = {op for table in TABLES for _, _, ops in table.values() for op in ops}
    elementwise = {name for name, op in registry.OPS.items() if op.kind == registry.ELEMENTWISE}
    missing = elementwise - covered
    assert not missing, f"elementwise ops without a case in tests/test_cuda.py: {sorted(missing)}"


def elementwise_cases(unary: dict, binary: dict):
    cases = [(fn, ref or fn, 1) for fn, ref, _ in unary.values()]
    cases += [(fn, ref or fn, 2) for fn, ref, _ in binary.values()]
    names = [f"unary {n}" for n in unary] + [f"binary {n}" for n in binary]
    return names, cases


def check_elementwise(names, cases, shapes_and_args):
    """Trace the group once per argument set (the shapes are baked into the plan) and compare
    each case with NumPy; returns the ops of the first traced graph."""
    fn = group(cases)
    traced = cuda(fn)
    ops, failures = None, []
    for label, (x, a, b) in shapes_and_args:
        flat = [arg for _, _, arity in cases for arg in ((x,) if arity == 1 else (a, b))]
        got = traced(*flat)
        if ops is None:
            ops = ops_of(fn, *flat)
        for name, (_, ref, arity), g in zip(names, cases, got):
            args = (x,) if arity == 1 else (a, b)
            want = reference(ref, *args)
            tol = F32_TOL if np.asarray(want).dtype == np.float32 else None
            try:
                assert_tree(g, want, f"{name} {label}", tol)
            except AssertionError as exc:
                failures.append(" ".join(str(exc).split())[:400])
    assert not failures, f"{len(failures)} cases differ from NumPy:\n" + "\n".join(failures)
    return ops


def float_arguments(dtype):
    """(label, (x, a, b)): special values of every pair, broadcasting, 0-d, size-1 and empty."""
    dt = np.dtype(dtype)
    sp = np.array(SPECIALS, dt)
    u = lambda *shape: R.uniform(-3, 3, shape).astype(dt)
    return [
        ("special values (14,) (14,1)x(14,)", (sp, sp.reshape(-1, 1), sp)),
        ("broadcast (3,4) (3,1)x(4,)", (u(3, 4), u(3, 1), u(4))),
        ("0-d with (3,)", (dt.type(0.7), dt.type(-1.25), u(3))),
        ("0-d with 0-d", (np.asarray(-0.3, dt), dt.type(2.0), np.asarray(-0.5, dt))),
        ("size-1 and empty", (u(0, 3), u(1, 3), u(0, 1))),
        ("size-1", (u(1, 1), u(1), u(1, 1, 1))),
    ]


@needs_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_float(dtype):
    names, cases = elementwise_cases(UNARY_FLOAT, BINARY_FLOAT)
    ops = check_elementwise(names, cases, float_arguments(dtype))
    declared = {op for table in (UNARY_FLOAT, BINARY_FLOAT) for _, _, o in table.values() for op in o}
    assert declared <= ops, f"cases that do not trace to their op: {sorted(declared - ops)}"


@needs_device
def test_elementwise_int_and_bool():
    args = []
    for dtype in ("int32", "int64"):
        a, b = R.integers(-5, 6, (3, 1)).astype(dtype), R.integers(-3, 4, 4).astype(dtype)
        b[0] = 0  # (division and remainder by zero give 0, as NumPy's)
        args.append((f"{dtype} (3,1)x(4,)", (R.integers(-4, 5, (3, 4)).astype(dtype), a, b)))
        args.append((f"{dtype} 0-d", (np.asarray(-3, dtype), np.asarray(7, dtype), np.arange(-2, 3, dtype=dtype))))
    names, cases = elementwise_cases(UNARY_INT, BINARY_INT)
    ops = check_elementwise(names, cases, args)
    big = R.integers(-2 ** 62, 2 ** 62, (3, 1))
    names, cases = elementwise_cases({}, BINARY_INT64)
    ops |= check_elementwise(names, cases, [("int64 bits", (None, big, big[::-1, 0].copy()))])
    p, q = R.random((3, 1)) < 0.5, R.random(4) < 0.5
    names, cases = elementwise_cases({}, BINARY_BOOL)
    ops |= check_elementwise(names, cases, [("bool (3,1)x(4,)", (None, p, q)),
                                            ("bool 0-d", (None, np.asarray(True), q))])
    declared = {op for table in (UNARY_INT, BINARY_INT, BINARY_INT64, BINARY_BOOL) for _, _, o in table.values()
                for op in o}
    assert declared <= ops, f"cases that do not trace to their op: {sorted(declared - ops)}"


@needs_device
def test_power_of_minus_inf_to_one_half():
    """C's pow (libdevice's, and the simulator's): NumPy's scalar power has a sqrt shortcut
    that gives nan, its array power gives inf."""
    x = np.array([-np.inf, 4.0])
    assert_same(cuda(lambda x: x ** np.full(2, 0.5))(x), x ** np.full(2, 0.5))


# ------------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------------
AXES_3D = [None, 0, 1, 2, -1, (0, 1), (0, 2), (1, 2), (0, 1, 2)]
# (the simulator's cost grows with the number of reduced outputs: x is (2,3,2), and the
# reductions that need 64+ elements to take the split path reduce rows of `big`, (2,64);
# `col` (9,32) has reductions that keep the innermost axis with 32+ outputs, which run one
# thread per output and part of its column, split in two parts from 8 rows on)


def reduction_cases(ops=("sum", "prod", "mean", "max", "min"), arg_ops=("argmax", "argmin")):
    """(name, fn of (x, y, big, col)): every reduction over every axis set of x, keepdims on a
    few of them, argmax/argmin of x and of y (ties), fused bodies, the split path on big, and
    column reductions on col."""
    cases = []
    for name in ops:
        reduce = getattr(np, name)
        for axis in AXES_3D:
            cases.append((f"{name} axis={axis}", lambda x, y, big, col, f=reduce, a=axis: f(x, axis=a)))
        cases.append((f"{name} of columns", lambda x, y, big, col, f=reduce: f(col, axis=0)))
        for axis in (None, 1, (0, 2)):
            cases.append((f"{name} axis={axis} keepdims",
                          lambda x, y, big, col, f=reduce, a=axis: f(x, axis=a, keepdims=True)))
    for name in arg_ops:
        reduce = getattr(np, name)
        for axis in (None, 0, 1, 2):
            cases.append((f"{name} axis={axis}", lambda x, y, big, col, f=reduce, a=axis: f(x, axis=a)))
        cases.append((f"{name} ties axis=1", lambda x, y, big, col, f=reduce: f(y, axis=1)))
        cases.append((f"{name} ties flat", lambda x, y, big, col, f=reduce: f(y)))
        cases.append((f"{name} of columns", lambda x, y, big, col, f=reduce: f(col, axis=0)))
    cases += [
        ("x.sum() method", lambda x, y, big, col: x.sum(axis=1)),
        ("fused sum(exp(x) * y)", lambda x, y, big, col: np.sum(np.exp(x) * y, axis=2)),
        ("fused mean of squares", lambda x, y, big, col: np.mean((x - y) ** 2)),
        ("fused max(abs) keepdims", lambda x, y, big, col: np.max(np.abs(x - 1), axis=(0, 2), keepdims=True)),
        ("reduction then elementwise", lambda x, y, big, col: np.sqrt(np.sum(x * x, axis=0)) + 1),
        ("softmax", lambda x, y, big, col: np.exp(x - x.max(axis=-1, keepdims=True))
         / np.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True)),
        ("split sum rows", lambda x, y, big, col: np.sum(big, axis=1)),
        ("split full sum, mean, max, min, prod", lambda x, y, big, col: (
            np.sum(big), np.mean(big), np.max(big), np.min(big), np.prod(big * 0.01 + 1))),
        ("split fused keepdims", lambda x, y, big, col: np.sum(np.tanh(big) * 2, axis=1, keepdims=True)),
        ("split mean and max of rows", lambda x, y, big, col: (np.mean(big, axis=-1), np.max(big, axis=1))),
        ("argmax of 64+ (not split)", lambda x, y, big, col: (np.argmax(big), np.argmin(big, axis=1))),
        ("columns keepdims", lambda x, y, big, col: np.sum(col, axis=0, keepdims=True)),
        ("columns fused", lambda x, y, big, col: np.sum(np.exp(col) * 2 - col, axis=0)),
        ("columns of 3-D", lambda x, y, big, col: np.mean(col.reshape(3, 3, 32), axis=(0, 1))),
        ("short columns (not split)", lambda x, y, big, col: np.max(col[:3], axis=0)),
        ("columns and rows of one operand", lambda x, y, big, col: (np.sum(col, axis=0), np.sum(col, axis=1))),
        ("a split column group's elementwise outputs", lambda x, y, big, col: (
            np.exp(col) * 2, np.sum(np.exp(col) * 2, axis=0), np.max(col, axis=0))),
        ("a split row group's elementwise outputs", lambda x, y, big, col: (
            np.tanh(big) + 1, np.mean(np.tanh(big) + 1, axis=1))),
    ]
    return cases


def check_reductions(x, y, big, col, cases, tol=None):
    traced = cuda(lambda x, y, big, col: tuple(fn(x, y, big, col) for _, fn in cases))
    got = traced(x, y, big, col)
    failures = []
    for (name, fn), g in zip(cases, got):
        want = reference(fn, x, y, big, col)
        try:
            assert_tree(g, want, name, tol)
        except AssertionError as exc:
            failures.append(" ".join(str(exc).split())[:400])
    assert not failures, f"{len(failures)} reductions differ from NumPy:\n" + "\n".join(failures)


def reduction_arguments(dtype):
    x = R.uniform(0.5, 1.5, (2, 3, 2)).astype(dtype)
    y = R.integers(0, 3, (2, 3, 2)).astype(dtype)  # ties
    big = R.uniform(-1, 1, (2, 64)).astype(dtype)
    col = R.uniform(-1, 1, (9, 32)).astype(dtype)
    return x, y, big, col


@needs_device
def test_reductions_float32():
    check_reductions(*reduction_arguments("float32"), reduction_cases(), F32_TOL)


@needs_device
def test_reductions_float64():
    check_reductions(*reduction_arguments("float64"), reduction_cases(("sum", "max"), ("argmin",)))


@needs_device
def test_reductions_with_nan_and_inf():
    x, y, big, col = reduction_arguments("float64")
    x[0, 1, 1] = x[1, 2, 0] = np.nan
    x[1, 0, 1] = np.inf
    y[1, 2, 1] = -np.inf
    big[1, 40] = np.nan  # (in the second half of a split row)
    col[6, 3] = col[1, 5] = np.nan  # (in either part of a split column)
    col[2, 7] = -np.inf
    cases = [(name, fn) for name, fn in reduction_cases(("max", "min"), ("argmax", "argmin"))
             if "keepdims" not in name and "(" not in name.split("=")[-1]]
    check_reductions(x, y, big, col, cases)


@needs_device
def test_reductions_of_ints_and_bools():
    def fn(x, b, big):
        return (np.sum(x), np.sum(x, axis=1), np.prod(x, axis=(0, 2)), np.mean(x, axis=0), np.max(x, axis=2),
                np.min(x), np.argmax(x, axis=1), np.argmin(x), np.sum(b, axis=0), np.any(b, axis=1), np.all(b),
                np.max(b, axis=2), np.mean(b), np.sum(x > 0), np.sum(big, axis=1), np.max(big),
                np.sum(b.astype(np.float32) * 0.5, axis=(1, 2)))
    x = R.integers(-3, 4, (2, 3, 2)).astype(np.int32)
    b = R.random((2, 3, 2)) < 0.5
    big = R.integers(-5, 6, (2, 64))
    assert_tree(cuda(fn)(x, b, big), reference(fn, x, b, big), "int and bool reductions")


@needs_device
def test_reductions_over_empty_and_size_one_axes():
    def fn(x, w):
        return (np.sum(x, axis=1), np.prod(x, axis=(0, 1)), np.sum(x), np.max(x, axis=0), np.mean(x, axis=2),
                np.sum(w, axis=(0, 2)), np.max(w, axis=0, keepdims=True), np.argmax(w, axis=1))
    x = R.uniform(-1, 1, (3, 0, 2)).astype(np.float32)
    w = R.uniform(-1, 1, (1, 4, 1)).astype(np.float32)
    assert_tree(cuda(fn)(x, w), reference(fn, x, w), "empty and size-1 reductions", F32_TOL)


# ------------------------------------------------------------------------------------------
# matrix products, shapes, and the ops that run on the host
# ------------------------------------------------------------------------------------------
def shapes_and_products(a, b, c, v, x3):
    """a (2,3), b (3,4), c (2,5), v (4,), x3 (2,3,2): products with transposed operands, batched
    products, reshapes, transposes, slices and joins."""
    return (
        a @ b, a.T @ a, b.T @ a.T, v @ b.T, b @ v, np.dot(a, b),
        np.matmul(x3, x3.transpose(0, 2, 1)), x3 @ c, x3.transpose(0, 2, 1) @ a.T,
        a.reshape(-1), a.reshape(3, 2), np.transpose(x3, (2, 0, 1)), x3.T, a[1:, ::-1], a[::2], a[0], a[:, 1],
        x3[..., None][:, 0], np.concatenate([a, a * 2], axis=0), np.concatenate([a, b.T[:2]], axis=1),
        np.stack([v, v + 1]), np.squeeze(x3[:, :1]), a.flatten(), np.broadcast_to(v, (2, 4)) * 1,
    )


@needs_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_and_shape_ops(dtype):
    u = lambda *shape: R.uniform(-1, 1, shape).astype(dtype)
    args = (u(2, 3), u(3, 4), u(2, 5), u(4), u(2, 3, 2))
    got = cuda(shapes_and_products)(*args)
    assert_tree(got, reference(shapes_and_products, *args), "products and shapes",
                F32_TOL if dtype == "float32" else None)


def host_fallbacks(x, m, idx, s):
    """x (3,4), m (3,3) well conditioned, idx (3,4) int indices into x's rows, s a float scalar."""
    carry, ys = gc.scan(lambda c, row: (c * 0.5 + row, np.sum(c * row)), np.zeros(4, x.dtype), x)
    looped = gc.fori_loop(0, 3, lambda i, val: val * 2 + i, x[0])
    branch = gc.cond(s > 0, lambda y: np.exp(y), lambda y: -y, x[1])
    return (np.sort(x, axis=1), np.argsort(x[0]), np.linalg.solve(m, x), np.linalg.inv(m), np.linalg.det(m),
            np.take_along_axis(x, idx, axis=1), x[:, idx[0]], np.cumsum(x, axis=0), np.cumprod(x[0]),
            carry, ys, looped, branch)


def np_host_fallbacks(x, m, idx, s):
    c, ys = np.zeros(4, x.dtype), []
    for row in x:
        ys.append(np.sum(c * row))
        c = c * x.dtype.type(0.5) + row
    val = x[0].copy()
    for i in range(3):
        val = val * 2 + i
    branch = np.exp(x[1]) if s > 0 else -x[1]
    return (np.sort(x, axis=1), np.argsort(x[0]), np.linalg.solve(m, x), np.linalg.inv(m), np.linalg.det(m),
            np.take_along_axis(x, idx, axis=1), x[:, idx[0]], np.cumsum(x, axis=0), np.cumprod(x[0]),
            c, np.array(ys, x.dtype), val, branch)


@needs_device
def test_ops_through_the_host_fallback():
    x = R.uniform(-1, 1, (3, 4))
    m = R.uniform(-1, 1, (3, 3)) + 3 * np.eye(3)
    idx = R.integers(0, 4, (3, 4))
    traced = cuda(host_fallbacks)
    for s in (1.5, -1.5):  # (both branches of gc.cond, one plan)
        assert_tree(traced(x, m, idx, s), np_host_fallbacks(x, m, idx, s), f"host fallbacks s={s}")


def indexing(x, idx, rows):
    """Gathers (integer-array indexing, negative indices, take_along_axis) and, through
    gc.grad, their scatter-adds with repeated indices."""
    loss = lambda x: np.sum(x[idx] ** 2) + np.sum(np.take_along_axis(x, rows, axis=1) * 3)
    return x[idx], x[:, idx[0]], np.take_along_axis(x, rows, axis=1), x[np.array([-1, 0])], gc.grad(loss)(x)


def np_indexing(x, idx, rows):
    grad = np.zeros_like(x)
    np.add.at(grad, idx, 2 * x[idx])
    np.add.at(grad, (np.arange(x.shape[0])[:, None], rows), 3.0)
    return x[idx], x[:, idx[0]], np.take_along_axis(x, rows, axis=1), x[np.array([-1, 0])], grad


@needs_device
def test_gathers_and_scatter_adds_with_repeated_indices():
    x = R.uniform(-1, 1, (3, 4))
    idx = np.array([[0, 2, 2], [1, 0, 0]])  # (repeated rows: the gradient adds them up)
    rows = np.array([[1, 1, 3], [0, 0, 0], [2, 3, 2]])
    assert_tree(cuda(indexing)(x, idx, rows), np_indexing(x, idx, rows), "gathers and scatter-adds")


@needs_device
def test_an_index_out_of_range_is_an_index_error():
    f = cuda(lambda x, i: x[i] * 2)
    x = np.arange(3.0)
    assert_same(f(x, np.array([2, -3])), x[np.array([2, -3])] * 2, "in range")
    for bad in (np.array([0, 3]), np.array([-4, 1])):
        with pytest.raises(IndexError, match="test_cuda.py"):
            f(x, bad)


def loops_and_branches(x, v):
    """Loops and branches whose bodies hold kernels (reductions, a split one, matmul), tuple
    carries with host numbers, a while condition and a cond predicate read from the device,
    and gradients through scan and cond."""
    return (
        gc.fori_loop(0, 4, lambda i, c: (c[0] * 0.9 + i, c[1] + np.sum(c[0])), (x, 0.0)),
        gc.while_loop(lambda c: np.sum(c[0]) < 50, lambda c: (c[0] * 2 + 1, c[1] + 1), (np.abs(x), 0)),
        gc.cond(np.sum(x) > 0, lambda a: a * 2, lambda a: np.tanh(a) - 1, x),
        gc.scan(lambda c, r: (c * 0.5 + r, (c, np.max(r))), np.zeros(4), x, reverse=True),
        gc.fori_loop(0, 2, lambda i, c: c - np.mean(c) + np.max(c), v),
        gc.fori_loop(0, 2, lambda i, c: gc.fori_loop(0, 3, lambda j, d: np.tanh(d @ x.T @ x * 0.1) + j, c), x),
        gc.grad(lambda x: np.sum(gc.scan(lambda c, r: (np.tanh(c + r), c * r), np.zeros(4), x)[1]))(x),
        gc.grad(lambda x: np.sum(gc.cond(np.sum(x) > 0, lambda a: a ** 2, lambda a: np.exp(a), x)))(x),
    )


@needs_device
def test_loops_and_branches_with_kernels_in_their_bodies():
    traced, oracle = cuda(loops_and_branches), gc.trace(loops_and_branches, device="numpy")
    v = R.uniform(-1, 1, 100)
    for x in (R.uniform(0, 1, (3, 4)), R.uniform(-1, 0, (3, 4))):  # (both branches)
        assert_tree(traced(x, v), oracle(x, v), f"loops, sum(x)={np.sum(x):.2f}")


def zero_d_traffic(x, v, s, i, flag):
    """0-d values made on the host (scalar arguments), on the device (a reduction's or a dot
    product's result) and by host fallbacks, used by kernels, host arithmetic and each other."""
    dot = v @ v
    return (x - np.mean(x), dot * s + 1, dot, dot, np.sum(v) * dot, np.sort(x, axis=1) * np.sum(x),
            np.ones((2, 3)) * s, s * s + 1, np.where(s > 0, x, 0.0), np.where(flag, v, -v), x[i] * 2,
            np.sum(x * s, axis=1), np.sum(x[:, :1] * v, axis=0), np.max(np.cumsum(x, axis=1), axis=0),
            np.sum(np.broadcast_to(v, (3, 4)), axis=0), np.linalg.det(x[:, :3]) * dot)


@needs_device
def test_zero_d_values_between_host_device_and_kernels():
    x, v = R.uniform(-1, 1, (3, 4)), R.uniform(-1, 1, 4)
    traced = cuda(zero_d_traffic)
    for s, i, flag in ((1.5, 1, True), (-0.5, 2, False)):
        assert_tree(traced(x, v, s, i, flag), reference(zero_d_traffic, x, v, s, i, flag), f"s={s}")


@needs_device
def test_symbolic_batch_dimension():
    f = cuda(lambda x, w: np.mean(np.tanh(x @ w), axis=0), dynamic={"x": 0})
    w = R.uniform(-1, 1, (4, 2))
    for n in (3, 5, 3):
        x = R.uniform(-1, 1, (n, 4))
        assert_same(f(x, w), np.mean(np.tanh(x @ w), axis=0), f"batch {n}")


# ------------------------------------------------------------------------------------------
# gradients and a compiled training step, against the CPU backend
# ------------------------------------------------------------------------------------------
def mlp_loss(params, x, t):
    w1, b1, w2, b2 = params
    h = np.tanh(x @ w1 + b1)
    y = gc.sigmoid(h @ w2.T + b2)
    return np.mean((y - t) ** 2) + 0.01 * np.sum(w1 * w1) + np.max(np.abs(b2))


def mlp_arguments(dtype):
    u = lambda *shape: R.uniform(-1, 1, shape).astype(dtype)
    return (u(4, 5), u(5), u(3, 5), u(3)), u(6, 4), u(6, 3)


@needs_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_value_and_grad_of_an_mlp_equals_the_cpu_one(dtype):
    args = mlp_arguments(dtype)
    got = gc.value_and_grad(mlp_loss, device="cuda", to_host=True)(*args)
    want = gc.value_and_grad(mlp_loss, device="cpu")(*args)
    tol = F32_TOL if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-14}
    assert_tree(got, want, "value_and_grad", tol)
    grads = gc.grad(mlp_loss, argnums=(0, 1), device="cuda", to_host=True)(*args)
    assert_tree(grads, gc.grad(mlp_loss, argnums=(0, 1), device="numpy")(*args), "grad argnums=(0, 1)", tol)


@needs_device
def test_second_order_gradient_equals_the_cpu_one():
    def hessian_vector(x, v):
        g = lambda x: gc.grad(lambda x: np.sum(np.sin(x) * x ** 3 + np.exp(-x * x)))(x)
        return gc.grad(lambda x: np.sum(g(x) * v))(x), gc.grad(lambda x: np.sum(g(x)))(x)
    x, v = R.uniform(-1, 1, 5), R.uniform(-1, 1, 5)
    assert_tree(cuda(hessian_vector)(x, v), gc.trace(hessian_vector, device="cpu")(x, v), "second order",
                {"rtol": 1e-12, "atol": 1e-14})


def training_step(device, opt_name, move=False):
    """A compiled training step ``step(x, y) -> loss`` of a 20-16-4 ReLU MLP with cross-entropy
    and Adam or SGD with momentum; returns (model, step). ``move``: ``model.to(device)`` first."""
    from graphc import nn, optim
    gen = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    for p in model.parameters():
        p.data[...] = gen.standard_normal(p.data.shape).astype(np.float32) * 0.3
    if move:
        model.to(device)
    opt = (optim.Adam(model.parameters(), lr=1e-2) if opt_name == "adam"
           else optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    return model, compiled_step(model, opt, device)


def compiled_step(model, opt, device):
    """``step(x, y) -> loss``: one cross-entropy training step of ``model`` with ``opt``, traced
    for ``device``."""
    from graphc import nn

    @gc.trace(device=device)
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def train(device, opt_name, x, y, steps=4, move=False):
    """Losses and final parameters (from state_dict(), host arrays) after ``steps`` compiled
    training steps."""
    model, step = training_step(device, opt_name, move)
    losses = [float(step(x, y)) for _ in range(steps)]
    if device == "cuda":
        assert "@cuda.jit" in step.source  # (it ran as CUDA kernels)
    state = model.state_dict()
    assert all(type(v) is np.ndarray for v in state.values()), {k: type(v) for k, v in state.items()}
    if move:
        model.to("cpu")
        assert all(type(p.data) is np.ndarray for p in model.parameters())
    return losses, [v.copy() for v in state.values()]


@needs_device
@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_training_step_equals_the_cpu_one(opt_name):
    x = R.standard_normal((8, 20)).astype(np.float32)
    y = R.integers(0, 4, 8)
    # (Adam's model is moved with model.to("cuda"); SGD's stays on the host, copied each call)
    losses, params = train("cuda", opt_name, x, y, move=opt_name == "adam")
    want_losses, want_params = train("cpu", opt_name, x, y)
    for k, (got, want) in enumerate(zip(losses, want_losses)):
        np.testing.assert_allclose(got, want, err_msg=f"{opt_name} loss of step {k}", **F32_TOL)
    assert want_losses[-1] < want_losses[0]  # (it trains)
    for k, (got, want) in enumerate(zip(params, want_params)):
        assert_same(got, want, f"{opt_name} parameter {k} after {len(losses)} steps", F32_TOL)


# ------------------------------------------------------------------------------------------
# the first rule: fresh arrays, NumPy's dtypes, weak Python numbers
# ------------------------------------------------------------------------------------------
CONSTANT = np.array([1.0, 2.0, 3.0], np.float32)


def aliasing_outputs(x, s):
    y = x * s
    return x, x.reshape(-1), x.T, x[1:], CONSTANT, np.ones(3, np.float32), y, y, s


@needs_device
@pytest.mark.parametrize("to_host", [False, True])
def test_results_are_fresh_arrays(to_host):
    x = R.uniform(-1, 1, (2, 3)).astype(np.float32)
    keep = x.copy()
    f = gc.trace(aliasing_outputs, device="cuda", to_host=to_host)
    first = f(x, 2.5)
    want = aliasing_outputs(keep, 2.5)
    assert_tree(tuple(host(r) for r in first[:-1]) + (first[-1],), want, "first call")
    for k, a in enumerate(first[:-1]):
        assert a is not x, f"result {k} is the input"
        assert not (isinstance(a, np.ndarray) and np.shares_memory(a, x)), f"result {k} aliases the input"
        for j, b in enumerate(first[:k]):
            assert a is not b, f"results {j} and {k} are one array"
            assert not (isinstance(a, np.ndarray) and np.shares_memory(a, b)), f"results {j} and {k} alias"
    for a in first[:-1]:  # (the caller owns its results: writing to them changes nothing of ours)
        a[...] = 99
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(CONSTANT, [1.0, 2.0, 3.0])
    again = f(x, 2.5)
    assert_tree(tuple(host(r) for r in again[:-1]) + (again[-1],), want, "second call")
    if to_host:
        assert all(type(r) is np.ndarray for r in first[:-1])


@needs_device
def test_python_numbers_are_weak_and_float32_stays_float32():
    def fn(x, s, n):
        y = np.tanh(x) * s + gc.sigmoid(x) * 2.5 - n
        return y, np.mean(y, axis=0), x ** 2 / (1 + np.exp(-x)), np.maximum(x, 0.5), x * s, np.float32(s) * x
    x = R.uniform(-1, 1, (3, 4)).astype(np.float32)
    f = cuda(fn)
    assert_tree(f(x, 2.5, 3), reference(fn, x, 2.5, 3), "weak scalars", F32_TOL)
    nodes = [inner for node in f.graph.nodes for inner in (node.regions[0].nodes if node.op == "fused" else [node])]
    dtypes = {v.type.dtype for node in nodes for v in node.outputs}
    assert dtypes == {"float32"}, f"a float32 function computes in {sorted(dtypes)}"
    elementwise = cuda(lambda x, s, n: fn(x, s, n)[::2])  # (no mean: its float32 sum accumulates in float64)
    elementwise(x, 2.5, 3)
    assert "@cuda.jit" in elementwise.source and "float64" not in elementwise.source, elementwise.source


@needs_device
def test_float32_arguments_keep_their_dtype_in_gradients():
    args = mlp_arguments("float32")
    value, grads = gc.value_and_grad(mlp_loss, device="cuda", to_host=True)(*args)
    assert np.asarray(value).dtype == np.float32
    assert [g.dtype for g in grads] == [np.float32] * 4


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
class FakeGPUArray:
    """What a CuPy array or a PyTorch CUDA tensor shows graphc: a __cuda_array_interface__."""

    shape, dtype = (3,), np.dtype(np.float32)

    @property
    def __cuda_array_interface__(self):
        return {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}


def test_a_gpu_array_passed_to_a_cpu_function_is_a_device_error():
    with pytest.raises(gc.DeviceError, match=r"argument 'x' is a GPU array") as info:
        gc.trace(lambda x: x + 1, device="cpu")(FakeGPUArray())
    assert "device='cuda'" in str(info.value) or 'device="cuda"' in str(info.value)


@needs_device
def test_a_gpu_array_under_the_simulator_is_a_device_error():
    from graphc.backend.cuda_device import simulated
    if not simulated():
        pytest.skip("a real GPU: its arrays are the simulator-free path")
    with pytest.raises(gc.DeviceError, match="simulator"):
        cuda(lambda x: x + 1)(FakeGPUArray())


@needs_device
def test_unknown_options_of_the_cuda_device_are_value_errors():
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"device 'cuda' has no option 'math'"):
        gc.trace(lambda x: x + 1, device="cuda", math="fast")(x)
    with pytest.raises(ValueError, match=r"to_host"):
        gc.trace(lambda x: x + 1, device="cuda", to_host="yes")(x)


NO_DEVICE_SCRIPT = """
import graphc as gc
from numba import cuda
if cuda.is_available():
    print("GPU")
else:
    try:
        gc.trace(lambda x: x + 1, device="cuda")
        print("no error")
    except gc.DeviceError as exc:
        print("DeviceError:", exc)
"""


def test_cuda_without_a_device_or_the_simulator_is_a_device_error():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    run = subprocess.run([sys.executable, "-c", NO_DEVICE_SCRIPT], env=env, capture_output=True, text=True, check=False,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = run.stdout.strip()
    if out == "GPU":
        pytest.skip("this machine has a CUDA device")
    assert out.startswith("DeviceError:"), run.stdout + run.stderr
    assert "no CUDA device or driver was found" in out
    assert "NUMBA_ENABLE_CUDASIM=1" in out and 'pip install "graphc[cuda]"' in out


# ------------------------------------------------------------------------------------------
# PTX: every generated kernel compiles for a real GPU (numba-cuda's NVVM, no GPU needed)
# ------------------------------------------------------------------------------------------
REDUCTIONS = {name for name, op in registry.OPS.items() if op.reduction is not None}
# float32 kernels with float64 instructions in their PTX: libdevice's own argument reduction
# of sinf/cosf/tanf (one mul.f64 on its slow path)
LIBDEVICE_F64 = {"sin", "cos", "tan"}


def ptx_graphs() -> dict:
    """name -> optimized graph of (a) the MLP training step, (b) the elementwise fwd+bwd
    benchmark function, (c) every elementwise op at float32, float64 and on ints/bools
    (traced with device="numpy": no CUDA device is needed to get a graph)."""
    graphs = {}
    _, step = training_step("numpy", "adam")
    step(np.zeros((8, 20), np.float32), np.zeros(8, np.int64))
    graphs["training step"] = step.graph
    bench = gc.value_and_grad(lambda x, y: np.sum(np.tanh(x) * gc.sigmoid(y)), argnums=(0, 1), device="numpy")
    bench(np.ones(1000, np.float32), np.ones(1000, np.float32))
    graphs["elementwise fwd+bwd"] = bench.graph
    for dtype in ("float32", "float64"):
        _, cases = elementwise_cases(UNARY_FLOAT, BINARY_FLOAT)
        x, a, b = float_arguments(dtype)[1][1]
        f = gc.trace(group(cases), device="numpy")
        f(*[arg for _, _, arity in cases for arg in ((x,) if arity == 1 else (a, b))])
        graphs[f"every elementwise op {dtype}"] = f.graph
    cases = elementwise_cases(UNARY_INT, BINARY_INT)[1] + elementwise_cases({}, BINARY_INT64)[1]
    ints = R.integers(1, 5, (3, 4)), R.integers(1, 5, (3, 1)), R.integers(1, 5, 4)
    cases += elementwise_cases({}, BINARY_BOOL)[1]
    bools = ints[1] > 2, ints[2] > 2
    f = gc.trace(group(cases), device="numpy")
    f(*[arg for fn, _, arity in cases for arg in (ints[:1] if arity == 1 else bools if fn in BOOL_FNS else ints[1:])])
    graphs["every elementwise op on ints"] = f.graph
    loops = gc.trace(lambda x: gc.fori_loop(0, 3, lambda i, v: np.tanh(v) * 0.5 + i, x)
                     + gc.scan(lambda c, r: (c + r, np.sum(c * r)), np.zeros(4, np.float32), x)[0], device="numpy")
    loops(np.ones((3, 4), np.float32))
    graphs["loop bodies"] = loops.graph
    return graphs


def ptx_report() -> dict:
    """For each graph of ptx_graphs: kernel -> its ops, the dtypes its body computes in and
    its PTX's float64 instructions (run in a process without the simulator)."""
    from graphc.backend.cuda import CUDAGraph, PTXTarget, ptx
    report = {}
    for name, graph in ptx_graphs().items():
        plans, nodes = [CUDAGraph(graph, dev=PTXTarget())], {}  # (the kernels' nodes, as ptx() plans them)
        while plans:  # (a loop's or branch's body is a plan of its own)
            plan = plans.pop()
            plans += plan.subplans
            nodes.update(plan.kernel_nodes)
        texts = ptx(graph)
        kernels = {}
        for kernel, node in nodes.items():
            body = node.regions[0].nodes if node.op == "fused" else [node]
            kernels[kernel] = {
                "ops": sorted({n.op for n in body}),
                "dtypes": sorted({v.type.dtype for n in body for v in list(n.inputs) + list(n.outputs)}),
                "entry": f".entry {kernel}" in texts.get(kernel, "") or ".entry" in texts.get(kernel, ""),
                "f64": [line.strip() for line in texts.get(kernel, "").splitlines()
                        if ".f64" in line and not line.strip().startswith(".reg")],
            }
        report[name] = {"kernels": kernels, "compiled": sorted(texts)}
    return report


PTX_SCRIPT = """
import json, sys
try:
    from numba.cuda.cudadrv.nvvm import NVVM
    NVVM()
except Exception as exc:
    print(json.dumps({"skip": f"numba-cuda or its NVVM cannot be loaded ({type(exc).__name__}: {exc})"}))
    sys.exit()
sys.path.insert(0, sys.argv[1])
import test_cuda
print(json.dumps(test_cuda.ptx_report()))
"""


@pytest.fixture(scope="module")
def ptx_kernels():
    """ptx_report() from one subprocess without the simulator (skips without numba-cuda's NVVM)."""
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    run = subprocess.run([sys.executable, "-c", PTX_SCRIPT, tests], env=env, capture_output=True, text=True, check=False,
                         timeout=600, cwd=os.path.dirname(tests))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(report["skip"])
    return report


def test_every_kernel_compiles_to_ptx(ptx_kernels):
    assert set(ptx_kernels) == {"training step", "elementwise fwd+bwd", "every elementwise op float32",
                                "every elementwise op float64", "every elementwise op on ints", "loop bodies"}
    for name, graph in ptx_kernels.items():
        assert graph["kernels"], f"{name}: no kernels"
        assert set(graph["compiled"]) == set(graph["kernels"]), name
        assert all(k["entry"] for k in graph["kernels"].values()), name
    ops = {op for graph in ptx_kernels.values() for k in graph["kernels"].values() for op in k["ops"]}
    elementwise = {name for name, op in registry.OPS.items() if op.kind == registry.ELEMENTWISE}
    dropped = {"stop_gradient"}  # (the identity of the forward pass: simplify removes it)
    assert elementwise - dropped <= ops, f"elementwise ops in no PTX kernel: {sorted(elementwise - dropped - ops)}"
    assert {"sum", "max"} <= ops  # (the training step's block reductions)


def float32_elementwise_kernels(ptx_kernels):
    """(graph, kernel, info) of every kernel without a reduction that computes in float32 only."""
    for name, graph in ptx_kernels.items():
        for kernel, info in graph["kernels"].items():
            if set(info["dtypes"]) <= {"float32", "bool", "int64"} and "float32" in info["dtypes"] \
                    and not REDUCTIONS & set(info["ops"]):
                yield name, kernel, info


def test_float32_elementwise_kernels_have_no_float64_instructions(ptx_kernels):
    checked, offenders = 0, []
    for name, kernel, info in float32_elementwise_kernels(ptx_kernels):
        if set(info["ops"]) & LIBDEVICE_F64:
            continue
        checked += 1
        if info["f64"]:
            offenders.append(f"{name}: {kernel} ({', '.join(info['ops'])}): {info['f64'][:3]}")
    assert checked >= 30, checked
    assert not offenders, "float32 kernels computing in float64:\n" + "\n".join(offenders)


@needs_device
def test_check_finite_refuses_a_non_finite_update_on_the_device():
    from graphc import nn, optim
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    opt = optim.SGD(model.parameters(), lr=0.1)

    @gc.trace(device="cuda", check_finite=True)
    def step(x):
        opt.zero_grad()
        loss = np.mean(model(x) ** 2)
        loss.backward()
        opt.step()
        return loss
    x = np.ones((2, 4), np.float32)
    step(x)
    before = [p.data.copy() for p in model.parameters()]
    x[0, 0] = np.nan
    with pytest.raises(gc.errors.NonFiniteError, match="no state was written back"):
        step(x)
    for old, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(p.data, old)


@needs_device
def test_batchnorm_and_dropout_training_step_equals_the_interpreter():
    """BatchNorm's running statistics (State updated in the step) and Dropout's counter-based
    masks (int64 bit hashing: bitxor, lshr) on the device, against the NumPy interpreter."""
    from graphc import nn, optim

    def run(device):
        nn.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # (Adam would amplify the rounding
        # noise of the first bias' gradient, which BatchNorm makes zero)
        step = compiled_step(model, opt, device)
        x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
        y = np.array([0, 1, 2, 1, 0])
        return [step(x, y) for _ in range(3)], model.state_dict()

    losses, state = run("cuda")
    want_losses, want_state = run("numpy")
    for k, (got, want) in enumerate(zip(losses, want_losses)):
        assert_same(host(got), np.asarray(want), f"loss of step {k}", F32_TOL)
    assert list(state) == list(want_state)
    for name, value in state.items():
        assert type(value) is np.ndarray, f"state_dict()[{name!r}] is a {type(value).__name__}, not a host array"
        assert_same(value, want_state[name], name, F32_TOL)
