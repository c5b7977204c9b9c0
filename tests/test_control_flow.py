"""Loops and branches (issue 16): gc.fori_loop, gc.scan, gc.while_loop and gc.cond.

* Values: every program here is written once against a namespace of loop functions (``lp``)
  and run twice: with graphc's (``GC``: one node per loop, traced) and with plain Python
  loops and ifs run eagerly on NumPy arrays (``PY``), which is the first rule's reference.
  Each group of programs is one traced function, checked under both compile modes
  (``never``: the NumPy interpreter; ``eager``: compiled), one compile per group.
* Gradients: check_grads(order=2) in float64, and gradients of a loop against the gradient
  of the same program unrolled by Python (``PY`` traced), including ``loss.backward()``.
* Bad input: each error is graphc's, names the construct and the user's line.
* The IR: printed graphs parse back and verify; a loop is one node whatever its trip count.
"""
from __future__ import annotations

import functools
import os
from types import SimpleNamespace

import numpy as np
import pytest

import graphc as gc
from graphc import ir, nn, optim, pytree
from graphc.ops import registry
from graphc.state import State
from graphc.testing import check_grads
from conftest import Case, _combined, assert_same, check_group, flat_outputs, raw_graph

THIS_FILE = os.path.basename(__file__)
MODES = ["never", "eager"]  # compile= of gc.trace: the NumPy interpreter, and compiled code
R = np.random.default_rng(16)


def rand(shape, dtype=np.float64, scale=1.0):
    return (scale * R.standard_normal(shape)).astype(dtype)


# -- the reference: the same code with Python loops and ifs ---------------------------------
def py_fori(lower, upper, body, val, *, remat=False):
    for i in range(lower, upper):
        val = body(i, val)
    return val


def py_scan(f, carry, xs=None, length=None, reverse=False, *, remat=False):
    leaves, tree = pytree.flatten(xs) if xs is not None else ([], None)
    n = length if xs is None else len(leaves[0])
    ys = [None] * n
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        x = pytree.unflatten(tree, [leaf[t] for leaf in leaves]) if xs is not None else None
        carry, ys[t] = f(carry, x)
    if ys and ys[0] is None:
        return carry, None
    y_leaves = [pytree.flatten(y)[0] for y in ys]
    y_tree = pytree.flatten(ys[0])[1]
    return carry, pytree.unflatten(y_tree, [np.stack([y[k] for y in y_leaves]) for k in range(len(y_leaves[0]))])


def py_while(cond_fun, body_fun, val):
    while cond_fun(val):
        val = body_fun(val)
    return val


def py_cond(pred, true_fun, false_fun, *operands):
    return true_fun(*operands) if pred else false_fun(*operands)


GC = SimpleNamespace(fori_loop=gc.fori_loop, scan=gc.scan, while_loop=gc.while_loop, cond=gc.cond)
PY = SimpleNamespace(fori_loop=py_fori, scan=py_scan, while_loop=py_while, cond=py_cond)


def program_case(name, program, *args, tol=None):
    """``program(GC, *args)`` traced against ``program(PY, *args)`` run eagerly."""
    return Case(name, functools.partial(program, GC), args, ref=functools.partial(program, PY), tol=tol)


# -- programs: fori_loop ---------------------------------------------------------------------
def fori_descent(lp, x, w):
    """A closure's tracer (w) and Python floats read inside the body."""
    return lp.fori_loop(0, 8, lambda i, c: c - 0.1 * (c - w) * np.tanh(c), x)


def fori_python_float_argument(lp, x, lr):
    """A Python float argument (weakly typed) read in the body keeps float32 float32."""
    return lp.fori_loop(0, 4, lambda i, c: c - lr * np.sin(c) * (i + 1), x)


def fori_index_arithmetic(lp, x):
    """The index is a Python int: float32 * i stays float32, i / 4 is a weak float."""
    def body(i, c):
        return c * 0.5 + c * i + i / 4 + (i % 3) * c - i // 2
    return lp.fori_loop(2, 7, body, x)


def fori_index_into_array(lp, table):
    """The index reads a row of an array (dynamic indexing)."""
    return lp.fori_loop(0, table.shape[0], lambda i, c: c * 0.5 + table[i], np.zeros_like(table[0]))


def fori_pytree_carry(lp, x, y):
    """Dicts, nested tuples, and Python numbers in the carry (0.0 takes x's dtype, 0 stays an int)."""
    def body(i, carry):
        d, n = carry
        a, (b, s) = d["a"], d["b"]
        return {"a": a * 0.9 + b.sum(), "b": (b - a.mean(), s + a.sum())}, n + i
    return lp.fori_loop(0, 4, body, ({"a": x, "b": (y, 0.0)}, 0))


def fori_zero_trip(lp, x):
    """Zero-trip loops return their init (as copies); a Python float the body keeps a float."""
    def body(i, c):
        return c * 2 + i
    return (lp.fori_loop(5, 5, body, x), lp.fori_loop(5, 2, body, x),
            lp.fori_loop(3, 3, lambda i, c: (c[0] * 3, c[1] + 1.0), (x, 1.5)))


def fori_scalar(lp, s):
    return lp.fori_loop(0, 5, lambda i, c: c * c * 0.5 + 0.1, s)


def fori_size1_and_empty(lp, one, empty):
    return lp.fori_loop(0, 3, lambda i, c: (c[0] + 1, c[1] * 2 + i), (one, empty))


def fori_special_values(lp, x):
    """inf, -inf, nan and -0.0 go through the loop as NumPy takes them."""
    return lp.fori_loop(0, 3, lambda i, c: np.minimum(c * 0.5, c) - 0.0 * i, x)


def fori_traced_bounds(lp, x, n):
    """Traced bounds (a while_loop inside): n - 3 .. n, 1 .. n, and n .. 2 (zero trips)."""
    def body(i, c):
        return c * 0.5 + i
    return lp.fori_loop(n - 3, n, body, x), lp.fori_loop(1, n, body, x), lp.fori_loop(n, 2, body, x)


def fori_aliasing_carries(lp, x, w):
    """The same array as two carries, swapped each step; a carry that is also read from outside;
    bodies returning a value from outside, a constant, or a Python number (the lowering must
    not write a carry's buffer while something still reads it)."""
    return (lp.fori_loop(0, 5, lambda i, c: (c[1], c[0] + c[1]), (x, x)),
            lp.fori_loop(0, 3, lambda i, c: c * 0.5 + x, x),
            lp.fori_loop(0, 3, lambda i, c: w, x),
            lp.fori_loop(0, 3, lambda i, c: np.ones_like(x), x),
            lp.fori_loop(0, 3, lambda i, c: 1.0, 0.0),
            lp.fori_loop(np.int32(1), np.int64(4), lambda i, c: c + i, x))


def fori_carry_read_out_of_place(lp, x, m):
    """New carries that read the old one at other positions (reversed, matmul, cumsum, roll):
    computed in place, they would read values already overwritten."""
    return (lp.fori_loop(0, 3, lambda i, c: c[::-1] * 0.5 + c, x),
            lp.fori_loop(0, 3, lambda i, c: np.tanh(m @ c), x),
            lp.fori_loop(0, 3, lambda i, c: np.cumsum(c) * 0.5, x),
            lp.fori_loop(0, 3, lambda i, c: np.roll(c, 1) - c * 0.5, x),
            lp.while_loop(lambda c: c[0] < 10, lambda c: c[::-1] + 1, x * 0),
            lp.scan(lambda c, r: (c[::-1] * r, c), x, m))


def fori_long(lp, s):
    """20000 steps: a real loop (never unrolled), cheap to run."""
    return lp.fori_loop(0, 20000, lambda i, c: c * 0.999 + 1e-3, s)


def fori_integer_carry(lp, k):
    return lp.fori_loop(0, 6, lambda i, c: c * i + 1, k)


# -- programs: scan ------------------------------------------------------------------------------
def scan_rnn(lp, h0, xs, w):
    """A matmul against a closure's tracer; ys are per-step sums."""
    return lp.scan(lambda h, x: (np.tanh(h @ w + x), h.sum()), h0, xs)


def scan_reverse(lp, xs):
    return lp.scan(lambda c, x: (c * 0.5 + x, c * x), np.zeros_like(xs[0]), xs, reverse=True)


def scan_without_xs(lp, x):
    return lp.scan(lambda c, _: (c * 0.5 + 1, c), x, length=4)


def scan_pytrees(lp, xs, ys):
    """xs a dict of a tuple; ys a dict of a tuple; the carry a tuple with a Python float."""
    def body(carry, x):
        c, s = carry
        a, (b, b2) = x["a"], x["b"]
        return (c + a * b, s + b2.sum()), {"y": (c * a, c.sum() + s), "z": b2}
    return lp.scan(body, (np.zeros_like(xs[0]), 0.0), {"a": xs, "b": (ys, ys * 2)})


def scan_integer_xs(lp, idx):
    """A Python int carry meets int32 xs: NumPy 2 keeps int32."""
    return lp.scan(lambda c, k: (c + k, c * k), 0, idx)


def scan_length_one(lp, xs):
    return lp.scan(lambda c, x: (c * x, c + x), xs[0] * 0 + 1, xs[:1], reverse=True)


def scan_empty_rows(lp, xs):
    """Rows with an empty dimension."""
    return lp.scan(lambda c, r: (c + r.sum(), r * 2), xs.sum() * 0, xs)


def scan_aliasing(lp, xs):
    """ys that are the new carry, the x slice itself, or an xs leaf passed twice."""
    zero = xs[0] * 0
    return (lp.scan(lambda c, r: (c + r, c + r), zero, xs),
            lp.scan(lambda c, r: (c * r, r), zero + 1, xs, reverse=True),
            lp.scan(lambda c, r: (c + r[0] * r[1], r[0]), zero, (xs, xs)))


def scan_ys_views_and_dtypes(lp, xs):
    """ys that are a transposed carry, bool and int, and 0-d; the xs argument not contiguous."""
    def body(c, r):
        new = c * 0.5 + r[:, None]
        return new, (new.T, new.sum() > 0, (r > 0).sum(), new[0, 0])
    return lp.scan(body, np.zeros((xs.shape[1], 2), xs.dtype), xs)


def scan_length_zero(xs):
    """No steps inside a trace: the carry comes back, and the ys are empty with their dtypes."""
    def body(c, r):
        return c * r, (c, r > 0)
    return gc.scan(body, xs[0], xs[:0]), gc.scan(lambda c, _: (c + 1, c.sum()), xs[0], length=0)


def scan_length_zero_ref(xs):
    # (eagerly a scan over zero steps cannot stack ys it never made: the shapes written out)
    n = xs.shape[1]
    return ((xs[0], (np.zeros((0, n), xs.dtype), np.zeros((0, n), bool))),
            (xs[0], np.zeros((0,), xs.dtype)))


def scan_reads_index(lp, table):
    """xs is an int64 range, used as an index into an array read from outside."""
    return lp.scan(lambda c, k: (c * 0.5 + table[k], c), np.zeros_like(table[0]), np.arange(table.shape[0]))


# -- programs: while_loop ------------------------------------------------------------------------
def while_newton_sqrt(lp, a):
    """The issue's pattern: (x0, np.inf) with a Python number that becomes an array's dtype."""
    def body(state):
        x, _ = state
        new = 0.5 * (x + a / x)
        return new, np.abs(new - x).max()
    tol = 1e-3 if a.dtype == np.float32 else 1e-10
    return lp.while_loop(lambda s: s[1] > tol, body, (a + 1, np.inf))


def while_zero_trip(lp, x):
    return lp.while_loop(lambda c: c.sum() > 1e9, lambda c: c * 2, x)


def while_counter(lp, x):
    """A Python int counter and a dict carry."""
    def body(state):
        return {"i": state["i"] + 1, "x": state["x"] * 1.5 - state["i"]}
    return lp.while_loop(lambda s: (s["i"] < 5) & (s["x"].sum() < 1e6), body, {"i": 0, "x": x})


# -- programs: cond ------------------------------------------------------------------------------
def _branches():
    def true_fun(a, b):
        return {"u": a * b, "v": (a.sum(), np.tanh(b))}

    def false_fun(a, b):
        return {"u": a - b, "v": (a.max(), b * 2)}
    return true_fun, false_fun


def cond_both_branches(lp, x, y):
    """The same cond twice, one predicate true and the other false."""
    t, f = _branches()
    return lp.cond(x.sum() > y.sum(), t, f, x, y), lp.cond(x.sum() <= y.sum(), t, f, x, y)


def cond_closures_only(lp, x):
    """No operands: the branches read x from outside."""
    return lp.cond(x.max() > 0, lambda: x * 2, lambda: -x), lp.cond(x.max() > 1e9, lambda: x * 2, lambda: -x)


def cond_python_operand(lp, x):
    return lp.cond(x[0] > x[-1], lambda a, k: a * k, lambda a, k: a + k, x, 2.5)


def cond_returns_operand(lp, x, y):
    """Branches that return an operand, or a value read from outside, unchanged."""
    return lp.cond(x.sum() > 0, lambda a, b: a, lambda a, b: b, x, y), lp.cond(x.sum() > 0, lambda: y, lambda: x), \
        lp.cond(x.sum() > 0, lambda a: (a, a), lambda a: (a * 2, a), x)


# -- programs: nesting -----------------------------------------------------------------------------
def fori_in_fori(lp, x, w):
    def outer(i, c):
        return lp.fori_loop(0, 3, lambda j, d: np.sin(d * w) + c * 0.1 * i + j, c)
    return lp.fori_loop(0, 3, outer, x)


def cond_in_fori(lp, x):
    return lp.fori_loop(0, 5, lambda i, c: lp.cond(i % 2 == 0, lambda a: a * 2, lambda a: a - 1, c), x)


def cond_on_outer_predicate(lp, x):
    """A predicate from outside the loop, and branches that read the loop's index."""
    flag = x.sum() > 0
    return (lp.fori_loop(0, 3, lambda i, c: lp.cond(flag, lambda a: a * 2 + i, lambda a: a - i, c), x),
            lp.fori_loop(0, 3, lambda i, c: lp.cond(~flag, lambda a: a * 2 + i, lambda a: a - i, c), x))


def loops_in_cond(lp, x):
    def true_fun(a):
        return lp.fori_loop(0, 3, lambda i, c: c * 2, a)

    def false_fun(a):
        return lp.while_loop(lambda c: c.sum() < 100, lambda c: c + 7, a)
    return lp.cond(x.sum() > 0, true_fun, false_fun, x), lp.cond(x.sum() <= 0, true_fun, false_fun, x)


def scan_in_scan(lp, table):
    """The inner body reads the outer carry (a value from two levels out: the table too)."""
    def row(c, r):
        inner, ys = lp.scan(lambda d, v: (d * 0.5 + v * c + table[0, 0], d), c, r)
        return inner, ys
    return lp.scan(row, table[0, 0] * 0 + 1, table)


def while_in_scan(lp, xs):
    def body(c, x):
        halved = lp.while_loop(lambda v: np.abs(v).max() > 1, lambda v: v / 2, x + c)
        return halved, halved.sum()
    return lp.scan(body, np.zeros_like(xs[0]), xs)


def scan_in_fori_with_cond(lp, xs):
    def body(i, c):
        c2, ys = lp.scan(lambda d, x: (lp.cond(d.sum() > 0, lambda: d * 0.5 + x, lambda: d + x), d), c, xs)
        return c2 + ys.mean(0)
    return lp.fori_loop(0, 2, body, np.zeros_like(xs[0]))


def _groups():
    groups = {"fori": [], "scan": [], "while": [], "cond": [], "nested": []}
    for dt in (np.float32, np.float64):
        n = np.dtype(dt).name
        special = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1.5], dt)
        groups["fori"] += [
            program_case(f"descent_{n}", fori_descent, rand(5, dt), rand(5, dt)),
            program_case(f"descent_fortran_order_{n}", fori_descent, np.asfortranarray(rand((3, 4), dt)),
                         np.asfortranarray(rand((3, 4), dt))),
            program_case(f"python_float_argument_{n}", fori_python_float_argument, rand(3, dt), 0.05),
            program_case(f"index_arithmetic_{n}", fori_index_arithmetic, rand((2, 3), dt)),
            program_case(f"index_into_array_{n}", fori_index_into_array, rand((4, 3), dt)),
            program_case(f"pytree_carry_{n}", fori_pytree_carry, rand(3, dt), rand(3, dt)),
            program_case(f"zero_trip_{n}", fori_zero_trip, rand(3, dt)),
            program_case(f"scalar_{n}", fori_scalar, np.asarray(0.7, dt)),
            program_case(f"size1_and_empty_{n}", fori_size1_and_empty, rand((1, 1), dt), np.zeros((0, 3), dt)),
            program_case(f"special_values_{n}", fori_special_values, special),
            program_case(f"traced_bounds_{n}", fori_traced_bounds, rand(3, dt), np.int64(5)),
            program_case(f"aliasing_carries_{n}", fori_aliasing_carries, rand(3, dt), rand(3, dt)),
            program_case(f"carry_read_out_of_place_{n}", fori_carry_read_out_of_place, rand(4, dt),
                         rand((4, 4), dt, 0.5)),
            program_case(f"long_{n}", fori_long, np.asarray(0.5, dt), tol={"rtol": 1e-4}),
        ]
        groups["scan"] += [
            program_case(f"rnn_{n}", scan_rnn, rand((2, 3), dt), rand((5, 2, 3), dt), rand((3, 3), dt, 0.5)),
            program_case(f"reverse_{n}", scan_reverse, rand((4, 2), dt)),
            program_case(f"reverse_broadcast_xs_{n}", scan_reverse, np.broadcast_to(rand(2, dt), (4, 2))),
            program_case(f"without_xs_{n}", scan_without_xs, rand(3, dt)),
            program_case(f"pytrees_{n}", scan_pytrees, rand((4, 2), dt), rand((4, 2), dt)),
            program_case(f"length_one_{n}", scan_length_one, rand((3, 2), dt)),
            program_case(f"empty_rows_{n}", scan_empty_rows, np.zeros((3, 0), dt)),
            program_case(f"reads_index_{n}", scan_reads_index, rand((4, 2), dt)),
            program_case(f"aliasing_{n}", scan_aliasing, rand((4, 2), dt)),
            program_case(f"ys_views_and_dtypes_{n}", scan_ys_views_and_dtypes, rand((3, 8), dt).T[::2]),
            Case(f"length_zero_{n}", scan_length_zero, (rand((3, 2), dt),), ref=scan_length_zero_ref),
        ]
        groups["while"] += [
            program_case(f"newton_sqrt_{n}", while_newton_sqrt, np.abs(rand(4, dt)) + 0.5),
            program_case(f"zero_trip_{n}", while_zero_trip, rand(3, dt)),
            program_case(f"counter_{n}", while_counter, rand(2, dt)),
        ]
        groups["cond"] += [
            program_case(f"both_branches_{n}", cond_both_branches, rand(3, dt), rand(3, dt)),
            program_case(f"closures_only_{n}", cond_closures_only, rand(3, dt)),
            program_case(f"python_operand_{n}", cond_python_operand, np.array([2.0, -1.0], dt)),
            program_case(f"python_operand_false_{n}", cond_python_operand, np.array([-2.0, 1.0], dt)),
            program_case(f"returns_operand_{n}", cond_returns_operand, rand(3, dt), rand(3, dt)),
        ]
        groups["nested"] += [
            program_case(f"fori_in_fori_{n}", fori_in_fori, rand(3, dt), rand(3, dt)),
            program_case(f"cond_in_fori_{n}", cond_in_fori, rand(3, dt)),
            program_case(f"loops_in_cond_{n}", loops_in_cond, np.abs(rand(3, dt)) + 0.1),
            program_case(f"cond_on_outer_predicate_{n}", cond_on_outer_predicate, rand(3, dt)),
            program_case(f"scan_in_scan_{n}", scan_in_scan, rand((3, 4), dt, 0.5)),
            program_case(f"while_in_scan_{n}", while_in_scan, rand((4, 3), dt, 3)),
            program_case(f"scan_in_fori_with_cond_{n}", scan_in_fori_with_cond, rand((3, 2), dt)),
        ]
    groups["fori"] += [
        program_case("integer_carry", fori_integer_carry, np.ones(3, np.int32)),
        # carries above the lowering's copy size (graphc/backend/control.py COPY_MAX) are swapped
        program_case("aliasing_carries_large", fori_aliasing_carries, rand(2000), rand(2000)),
        program_case("carry_read_out_of_place_large", fori_carry_read_out_of_place, rand(1100),
                     rand((1100, 1100), scale=0.03)),
    ]
    groups["scan"].append(program_case("integer_xs", scan_integer_xs, np.arange(1, 6, dtype=np.int32)))
    return groups


GROUPS = _groups()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("group", list(GROUPS))
def test_values_match_python_loops(group, mode):
    """Each group is one traced function (one compile); each program's outputs have NumPy's
    values, dtypes and shapes, compiled and interpreted (the interpreter runs the graph after
    the passes)."""
    cases = GROUPS[group]
    traced = gc.trace(_combined(cases), compile=mode)
    try:
        check_group(cases, traced=traced)
    except Exception:
        if mode != "never":
            raise
        failures = []  # (cheap without compiling: name each failing program)
        for c in cases:
            try:
                check_group([c], traced=gc.trace(_combined([c]), compile="never"))
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{c.name}: {type(exc).__name__}: {str(exc)[:500]}")
        raise AssertionError(f"{len(failures)} of {len(cases)} programs fail:\n" + "\n".join(failures))
    assert traced.signatures == 1


def test_python_loops_are_the_reference_and_gc_functions_run_them_eagerly():
    """Outside a trace the gc functions are the Python loops: the reference is what users
    get eagerly too."""
    for cases in GROUPS.values():
        for c in cases:
            if not isinstance(c.fn, functools.partial):
                continue  # (a case with a reference of its own)
            got = flat_outputs(c.fn(*c.args))
            want = flat_outputs(c.ref(*c.args))
            assert len(got) == len(want), c.name
            for k, (g, w) in enumerate(zip(got, want)):
                assert_same(g, w, f"{c.name}[{k}] eager gc vs Python loops")


# -- more values ---------------------------------------------------------------------------------
def _aliasing_outputs(x, y):
    """Loops and branches that may hand back a buffer they did not make (small and large)."""
    return (gc.fori_loop(4, 4, lambda i, c: c * 2, x),           # zero trips
            gc.fori_loop(0, 3, lambda i, c: c, x),               # the body returns its carry
            gc.scan(lambda c, r: (c, r), x, y[:0])[0],           # a scan of length 0
            gc.scan(lambda c, _: (c, c.sum()), x, length=2)[0],   # a scan returning its carry
            gc.while_loop(lambda c: c.sum() > 1e9, lambda c: c, x),
            gc.cond(x.sum() > 0, lambda a, b: a, lambda a, b: b, x, y[0]),
            gc.cond(x.sum() <= 0, lambda a, b: a, lambda a, b: b, x, y[0]))


def _loop_results(x):
    """Loop results made in the loops' own buffers (small and large carries, ys)."""
    c, ys = gc.scan(lambda c, r: (c * 0.5 + r, c), x[0], x)
    return gc.fori_loop(0, 3, lambda i, c: c * 0.5 + i, x), c, ys, gc.while_loop(lambda v: v[0] < 5, lambda v: v + 1, x)


@pytest.mark.parametrize("mode", MODES)
def test_outputs_are_fresh_arrays(mode):
    """A loop that runs zero times, or returns its carry unchanged, and a branch that returns
    its operand, give new arrays: never the caller's, nor each other's, small or large."""
    f = gc.trace(_aliasing_outputs, compile=mode)
    for x, y in ((rand(3), rand((2, 3))), (rand(1500), rand((2, 1500)))):
        x_in, y_in = x.copy(), y.copy()
        outs = f(x, y)
        np.testing.assert_array_equal(x, x_in, err_msg="the call wrote into its argument x")
        np.testing.assert_array_equal(y, y_in, err_msg="the call wrote into its argument y")
        for k, out in enumerate(outs):
            assert isinstance(out, np.ndarray), k
            assert not np.shares_memory(out, x) and not np.shares_memory(out, y), f"output {k} shares an input's memory"
            for j in range(k):
                assert not np.shares_memory(out, outs[j]), f"outputs {j} and {k} share memory"
        before = [o.copy() for o in outs]
        x[...] = 100.0
        y[...] = 100.0
        for k, (o, b) in enumerate(zip(outs, before)):
            np.testing.assert_array_equal(o, b, err_msg=f"output {k} changed with the input")


@pytest.mark.parametrize("mode", MODES)
def test_a_second_call_leaves_the_first_calls_results_alone(mode):
    """Loop buffers are not shared between calls: results of one call survive the next."""
    f = gc.trace(_loop_results, compile=mode)
    for shape in ((4,), (2000,)):
        first_x, second_x = rand(shape), rand(shape)
        first = f(first_x)
        kept = [o.copy() for o in first]
        second = f(second_x)
        for k, (o, want) in enumerate(zip(first, kept)):
            np.testing.assert_array_equal(o, want, err_msg=f"output {k} of the first call changed")
            assert not np.shares_memory(o, second[k])
        for k, (g, w) in enumerate(zip(second, _loop_results(second_x))):
            assert_same(g, w, f"output {k} of the second call")


@pytest.mark.parametrize("mode", MODES)
def test_python_number_carries_come_back_as_eager_code_returns_them(mode):
    """A Python int carry stays a Python int; a Python float that meets a float32 array becomes a
    NumPy float32 (as eagerly); a zero-trip loop hands back the number it got."""
    x = rand(3, np.float32)

    def f(x):
        return (gc.fori_loop(0, 4, lambda i, c: c + i, 0),
                gc.fori_loop(0, 4, lambda i, c: c + i, 0.5),
                gc.fori_loop(0, 3, lambda i, c: (c[0] * 2, c[1] + c[0].sum()), (x, 0.0))[1],
                gc.fori_loop(2, 2, lambda i, c: c + 1, 7))

    def ref(x):
        return py_fori(0, 4, lambda i, c: c + i, 0), py_fori(0, 4, lambda i, c: c + i, 0.5), \
            py_fori(0, 3, lambda i, c: (c[0] * 2, c[1] + c[0].sum()), (x, 0.0))[1], 7

    got, want = gc.trace(f, compile=mode)(x), ref(x)
    for k, (g, w) in enumerate(zip(got, want)):
        assert type(g) is type(w), f"output {k}: {type(g).__name__}, eager code returns {type(w).__name__}"
        assert_same(g, w, f"output {k}")


def strong_number_carries(lp, x):
    """Python numbers in the carry that the body turns into NumPy scalars of the same dtype
    (np.float64, np.int64): after a step they are strong, so x (float32) * s is float64."""
    s = lp.fori_loop(0, 3, lambda i, c: c + np.float64(0.5), 0.0)
    k = lp.fori_loop(0, 3, lambda i, c: c + np.int64(1), 0)
    t, _ = lp.scan(lambda c, r: (c + np.float64(0.5) * r, r), 0.0, x)
    return x * s, x * k, x * t


@pytest.mark.parametrize("mode", MODES)
def test_a_python_number_carry_the_body_makes_strong_is_strong(mode):
    x = np.array([1.0, 2.0], np.float32)
    want = strong_number_carries(PY, x)
    assert [w.dtype for w in want] == [np.float64] * 3  # (NumPy 2: np.float64 * float32 array)
    got = gc.trace(functools.partial(strong_number_carries, GC), compile=mode)(x)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_same(g, w, f"output {k}")


def ints_that_become_floats(lp, x):
    """Python ints in a carry or a branch that the code turns into Python floats: eagerly they
    are floats (2.0, 0.0625, 2.5); truncating them to ints would be silently wrong."""
    return (lp.fori_loop(0, 4, lambda i, c: c + 0.5, 0),
            lp.fori_loop(0, 4, lambda i, c: c / 2, 1),
            lp.scan(lambda c, r: (c + 0.5, c), 0, x)[0],
            lp.while_loop(lambda s: s[0] < 4, lambda s: (s[0] + 1, s[1] + 0.5), (0, 0))[1],  # (bounded by s[0])
            lp.cond(x.sum() < 0, lambda: 1, lambda: 2.5),
            lp.cond(x.sum() < 0, lambda a: a * 2, lambda a: a + 0.5, 1),
            lp.cond(x.sum() < 0, lambda: True, lambda: 3))


@pytest.mark.parametrize("mode", MODES)
def test_python_ints_that_become_floats_are_never_truncated(mode):
    """Either the eager values (the carry or output takes the float type) or a clear error."""
    x = np.ones(3)
    want = ints_that_become_floats(PY, x)
    assert want == (2.0, 0.0625, 1.5, 2.0, 2.5, 1.5, 3)
    try:
        got = gc.trace(functools.partial(ints_that_become_floats, GC), compile=mode)(x)
    except gc.TraceError as exc:  # (an error is fine if it says why)
        assert "int" in str(exc) and "float" in str(exc), str(exc)
        return
    wrong = [f"output {k}: {g!r}, eager code gives {w!r}" for k, (g, w) in enumerate(zip(got, want))
             if not (g == w and type(g) is type(w))]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("mode", MODES)
def test_scan_with_ys_none(mode):
    """A body whose y is None (only the carry matters) returns ys None, as JAX's lax.scan."""
    xs = rand((4, 3))

    def f(xs):
        return gc.scan(lambda c, x: (c * 0.5 + x, None), np.zeros(3), xs)

    carry, ys = gc.trace(f, compile=mode)(xs)
    want, _ = py_scan(lambda c, x: (c * 0.5 + x, None), np.zeros(3), xs)
    assert ys is None
    assert_same(carry, want, "carry")


@pytest.mark.parametrize("mode", MODES)
def test_scan_as_a_map_with_no_carry(mode):
    """JAX's map idiom, scan(lambda _, x: (None, f(x)), None, xs), and an empty tuple carry."""
    xs = rand((3, 2))

    def f(xs):
        return gc.scan(lambda c, x: (None, x * 2), None, xs), gc.scan(lambda c, x: ((), np.sin(x)), (), xs)

    (c1, ys1), (c2, ys2) = gc.trace(f, compile=mode)(xs)
    assert c1 is None and c2 == ()
    assert_same(ys1, xs * 2, "ys of the None carry")
    assert_same(ys2, np.sin(xs), "ys of the () carry")


def test_empty_carries_and_outputs_work_or_raise_a_graphc_error():
    """A loop with an empty carry or a cond with no outputs: what eager code returns, or a
    graphc error (never an IndexError from inside graphc)."""
    x = np.ones(3)
    for fn in (lambda x: (gc.fori_loop(0, 3, lambda i, c: c, ()), x * 2),
               lambda x: (gc.cond(x.sum() > 0, lambda: (), lambda: ()), x * 2),
               lambda x: (gc.while_loop(lambda c: x.sum() < 0, lambda c: c, ()), x * 2)):
        try:
            got = gc.trace(fn, compile="never")(x)
        except (gc.TraceError, gc.ShapeError):
            continue
        want = fn(x)
        assert got[0] == want[0] == ()
        assert_same(got[1], want[1], "the other output")


def test_scan_with_ys_none_outside_a_trace():
    carry, ys = gc.scan(lambda c, x: (c + x, None), 0.0, np.arange(3.0))
    assert ys is None and carry == 3.0


G_TABLE = np.array([1.0, 2.0, 3.0])  # a global array read inside loop bodies
G_STATE = State(np.array([0.5, 0.25, 2.0]))


def _reads_outside(x):
    a = gc.fori_loop(0, 3, lambda i, c: c * G_TABLE + i, x)
    b, ys = gc.scan(lambda c, r: (c + r * G_STATE.read(), c.sum()), x, np.stack([x, x * 2]))
    c = gc.cond(x.sum() > -1e9, lambda: x + G_TABLE + G_STATE.read(), lambda: x)
    d = gc.while_loop(lambda v: v.max() < 50, lambda v: v + G_TABLE, x)
    return a, b, ys, c, d


def _reads_outside_ref(x):
    a = py_fori(0, 3, lambda i, c: c * G_TABLE + i, x)
    b, ys = py_scan(lambda c, r: (c + r * G_STATE.data, c.sum()), x, np.stack([x, x * 2]))
    c = x + G_TABLE + G_STATE.data
    d = py_while(lambda v: v.max() < 50, lambda v: v + G_TABLE, x)
    return a, b, ys, c, d


@pytest.mark.parametrize("mode", MODES)
def test_bodies_read_globals_and_state_at_each_call(mode):
    """Global arrays and State read inside bodies: each call sees their current contents
    (edited in place between calls), without tracing again."""
    x = np.array([0.5, -1.0, 2.0])
    f = gc.trace(_reads_outside, compile=mode)
    old_table, old_state = G_TABLE.copy(), G_STATE.data.copy()
    try:
        for table, state in (([1.0, 2.0, 3.0], [0.5, 0.25, 2.0]), ([2.0, 0.5, 1.0], [1.0, -1.0, 3.0])):
            G_TABLE[...] = table
            G_STATE.data[...] = state
            for k, (g, w) in enumerate(zip(f(x), _reads_outside_ref(x))):
                assert_same(g, w, f"output {k} with table {table} and state {state}")
    finally:
        G_TABLE[...] = old_table
        G_STATE.data[...] = old_state
    assert f.signatures == 1


@pytest.mark.parametrize("mode", MODES)
def test_modules_inside_branches_and_loops_follow_their_parameters(mode):
    """An nn.Linear called in a cond branch, a fori_loop body and a while_loop body (forward):
    the values of eager code; new parameter values are used without tracing again."""
    nn.manual_seed(1)
    lin = nn.Linear(3, 3)

    def f(x):
        return (gc.cond(x.sum() > 0, lambda a: lin(a), lambda a: a, x),
                gc.fori_loop(0, 3, lambda i, c: np.tanh(lin(c)), x),
                gc.while_loop(lambda s: s[0] < 4, lambda s: (s[0] + 1, lin(s[1]) * 0.5), (0, x))[1])

    def ref(x):
        w, b = lin.weight.data, lin.bias.data
        return (x @ w.T + b, py_fori(0, 3, lambda i, c: np.tanh(c @ w.T + b), x),
                py_fori(0, 4, lambda i, c: (c @ w.T + b) * 0.5, x))

    traced = gc.trace(f, compile=mode)
    x = np.abs(rand((2, 3), np.float32)) + 0.5  # (the true branch)
    for step in range(2):
        for k, (g, w) in enumerate(zip(traced(x), ref(x))):
            assert_same(g, w, f"output {k} at step {step}")
        lin.weight.data[...] = rand((3, 3), np.float32)
    assert traced.signatures == 1


@pytest.mark.parametrize("mode", MODES)
def test_symbolic_sizes_in_loops(mode):
    """dynamic=: a scan over a symbolic number of steps, and a carry with a symbolic batch."""
    def rnn(xs, h0):
        return gc.scan(lambda h, x: (np.tanh(h * 0.5 + x), h.sum()), h0, xs)

    def ref(xs, h0):
        return py_scan(lambda h, x: (np.tanh(h * 0.5 + x), h.sum()), h0, xs)

    for dynamic, shapes in (({"xs": 0}, [((3, 2, 4), (2, 4)), ((6, 2, 4), (2, 4))]),
                            ({"xs": 1, "h0": 0}, [((3, 2, 4), (2, 4)), ((3, 5, 4), (5, 4))])):
        traced = gc.trace(rnn, dynamic=dynamic, compile=mode)
        for xs_shape, h_shape in shapes:
            xs, h0 = rand(xs_shape), rand(h_shape)
            for k, (g, w) in enumerate(zip(flat_outputs(traced(xs, h0)), flat_outputs(ref(xs, h0)))):
                assert_same(g, w, f"output {k} with dynamic={dynamic}, xs {xs_shape}")


@pytest.mark.parametrize("mode", MODES)
def test_traced_trip_count_is_one_graph_for_every_count(mode):
    f = gc.trace(lambda x, n: gc.fori_loop(0, n, lambda i, c: c * 0.5 + i, x), compile=mode)
    x = rand(3, np.float32)
    for n in (0, 1, 4, 9):
        got = f(x, np.int64(n))
        assert_same(got, py_fori(0, n, lambda i, c: c * 0.5 + i, x), f"n={n}")
        assert not np.shares_memory(got, x)
    assert f.signatures == 1


def test_bodies_and_branches_are_traced_once():
    """The body's Python runs once whatever the trip count (it is not unrolled)."""
    calls = {"fori": 0, "scan": 0, "true": 0, "false": 0, "cond_fun": 0, "while": 0}

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)
        return wrapper

    def f(x):
        a = gc.fori_loop(0, 100, counted("fori", lambda i, c: c * 0.5), x)
        b, _ = gc.scan(counted("scan", lambda c, r: (c + r, c)), x, np.zeros((50, 3)))
        c = gc.cond(x.sum() > 0, counted("true", lambda a: a), counted("false", lambda a: -a), x)
        d = gc.while_loop(counted("cond_fun", lambda v: v.sum() < 10), counted("while", lambda v: v + 1), x)
        return a, b, c, d

    raw_graph(f, rand(3))
    assert calls == {"fori": 1, "scan": 1, "true": 1, "false": 1, "cond_fun": 1, "while": 1}


# -- gradients ---------------------------------------------------------------------------------
def grad_fori(x, w):
    return gc.fori_loop(0, 4, lambda i, c: np.sin(c * w) + c * i * 0.1, x)


def grad_fori_reads_consts(x, w, b):
    """Values from outside the body (w, b) get gradients through the loop."""
    return gc.fori_loop(1, 4, lambda i, c: np.tanh(c @ w + b) * i, x)


def grad_scan(h0, xs, w):
    return gc.scan(lambda h, x: (np.tanh(h @ w + x), (h * x).sum()), h0, xs)


def grad_scan_reverse(h0, xs):
    return gc.scan(lambda h, x: (np.sin(h * x) + h, h * h), h0, xs, reverse=True)


def grad_scan_pytree(x, xs):
    def body(carry, inp):
        a, b = carry
        return (a * np.cos(inp["u"]) + b, b * 0.5 + inp["v"].sum()), {"p": a * b}
    return gc.scan(body, (x, x.sum()), {"u": xs, "v": xs * 2})


def grad_scan_without_xs(x, w):
    return gc.scan(lambda c, _: (np.sin(c) * w, c.sum()), x, length=3)


def grad_cond(x, w):
    return gc.cond(x.sum() > 0, lambda a, b: np.sin(a * b), lambda a, b: a ** 3 * b, x, w)


def grad_cond_unused_operand(x, w):
    """The false branch ignores w: its cotangent there is zero."""
    return gc.cond(x.sum() > 0, lambda a, b: np.sin(a * b), lambda a, b: a ** 3, x, w)


def grad_cond_closure(x, w):
    return gc.cond(x.sum() > 0, lambda: np.exp(x * w), lambda: x * x)


def grad_nested(x, w):
    def outer(i, c):
        return gc.fori_loop(0, 2, lambda j, d: np.sin(d * w) + c, c)
    return gc.fori_loop(0, 3, outer, x)


def grad_cond_in_scan(h0, xs):
    def body(h, x):
        return gc.cond(x.sum() > 0, lambda a: np.tanh(a * x), lambda a: a * 0.5 + x, h), h.sum()
    return gc.scan(body, h0, xs)


def grad_scan_in_cond(x, xs):
    return gc.cond(x.sum() > 0, lambda: gc.scan(lambda c, r: (np.sin(c + r), c), x, xs)[0], lambda: x * 2)


X3 = np.array([0.3, -0.2, 0.5])
W3 = np.array([1.1, 0.7, -0.4])
XS = R.standard_normal((4, 3))
GRAD_CASES = {
    "fori": (grad_fori, (X3, W3)),
    "fori_reads_consts": (grad_fori_reads_consts, (X3[None], 0.5 * R.standard_normal((3, 3)), W3)),
    "scan": (grad_scan, (X3, XS, 0.5 * R.standard_normal((3, 3)))),
    "scan_reverse": (grad_scan_reverse, (X3, XS)),
    "scan_pytree": (grad_scan_pytree, (X3, XS)),
    "scan_without_xs": (grad_scan_without_xs, (X3, W3)),
    "cond_true": (grad_cond, (X3 + 1, W3)),
    "cond_false": (grad_cond, (X3 - 1, W3)),
    "cond_unused_operand_true": (grad_cond_unused_operand, (X3 + 1, W3)),
    "cond_unused_operand_false": (grad_cond_unused_operand, (X3 - 1, W3)),
    "cond_closure_true": (grad_cond_closure, (X3 + 1, W3)),
    "cond_closure_false": (grad_cond_closure, (X3 - 1, W3)),
    "nested_fori": (grad_nested, (X3, W3)),
    "cond_in_scan": (grad_cond_in_scan, (X3, XS)),
    "scan_in_cond": (grad_scan_in_cond, (X3 + 1, XS)),
    "fori_zero_trip": (lambda x: gc.fori_loop(3, 3, lambda i, c: np.sin(c), x) * x, (X3,)),
    "scan_length_0": (lambda x, xs: gc.scan(lambda c, r: (np.sin(c) * r, c), x, xs[:0])[0] * x, (X3, XS)),
    "fori_integer_carry": (lambda x: gc.fori_loop(0, 3, lambda i, c: (np.sin(c[0]) * c[1], c[1] + 1), (x, 1))[0],
                           (X3,)),
    "scan_integer_xs": (lambda x: gc.scan(lambda c, k: (np.sin(c) * k, c * k), x, np.arange(1, 4)), (X3,)),
    "scan_ys_only": (lambda x, xs: gc.scan(lambda c, r: (np.cos(c) * r, c * r), x, xs)[1], (X3, XS)),
    "scan_carry_only": (lambda x, xs: gc.scan(lambda c, r: (np.cos(c) * r, c * r), x, xs)[0], (X3, XS)),
    # bodies whose saved per-step values include masks and indices (np.where, argmax, take)
    "fori_where_argmax": (lambda x, w: gc.fori_loop(0, 3, lambda i, c: np.where(c > 0, c * w, -0.5 * c)
                                                    + c[np.argmax(c)] * 0.1, x), (X3 + 0.05, W3)),
    "scan_take_max": (lambda x, xs: gc.scan(lambda c, r: (np.take(c, [2, 0, 1]) * r + np.max(c), np.maximum(c, r)),
                                            x, xs), (X3, XS)),
    "scan_body_with_a_while_on_constants": (lambda x, xs: gc.scan(lambda c, r: (
        np.sin(c) * r * gc.while_loop(lambda k: k < 3, lambda k: k + 1, 0), c), x, xs), (X3, XS)),
    "scan_integer_and_float_ys": (lambda x, xs: gc.scan(lambda c, r: ((np.sin(c[0]) * r, np.argmax(r) + c[1]),
                                                                        (np.argmin(c[0]), c[0] * r)), (x, 0), xs),
                                  (X3, XS)),
    # remat (gc.checkpoint): the backward loop recomputes the body's values from the saved carry
    "fori_remat": (lambda x, w: gc.fori_loop(0, 4, lambda i, c: np.sin(c * w) + c * i * 0.1, x, remat=True), (X3, W3)),
    "scan_checkpoint": (lambda h0, xs, w: gc.scan(gc.checkpoint(lambda h, x: (np.tanh(h @ w + x), (h * x).sum())),
                                                  h0, xs), (X3, XS, 0.5 * R.standard_normal((3, 3)))),
    "scan_reverse_remat": (lambda h0, xs: gc.scan(lambda h, x: (np.sin(h * x) + h, h * h), h0, xs, reverse=True,
                                                  remat=True), (X3, XS)),
    "nested_remat_outer": (lambda x, xs: gc.fori_loop(0, 2, gc.checkpoint(lambda i, c: gc.scan(
        lambda d, r: (np.tanh(d * r + c), d), c, xs)[0]), x), (X3, XS)),
    "cond_in_scan_remat": (lambda h0, xs: gc.scan(lambda h, x: (gc.cond(x.sum() > 0, lambda a: np.tanh(a * x),
                                                                         lambda a: a * 0.5 + x, h), h.sum()),
                                                  h0, xs, remat=True), (X3, XS)),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_check_grads_order_2(name):
    fn, args = GRAD_CASES[name]
    check_grads(fn, args, order=2)


@pytest.mark.parametrize("mode", MODES)
def test_check_grads_compiled(mode):
    """fori_loop (a scan with an index in reverse mode) and cond, taking each branch, in one
    function: its second-order gradient graph compiled once (eager)."""
    def f(x, w):
        return grad_fori(x, w), grad_cond(x, w), grad_cond(-x - 1, w)
    check_grads(f, (X3, W3), order=2, compiled=mode == "eager")


def unrolled_and_looped(lp, x, xs, w):
    """A scalar loss through fori_loop and scan: with PY (traced) Python unrolls the loops."""
    c = lp.fori_loop(0, 3, lambda i, c: np.sin(c * w) * 0.9 + c * i * 0.1, x)
    h, ys = lp.scan(lambda h, r: (np.tanh(h * w + r), (h * r).sum()), c, xs, reverse=True)
    return (h * h).sum() + ys.sum()


@pytest.mark.parametrize("mode", MODES)
def test_value_and_grad_match_the_unrolled_program(mode):
    """gc.value_and_grad and gc.grad through loops give what they give for the same program
    unrolled by Python loops: values and dtypes, in float32 (float64: check_grads)."""
    dtype = "float32"
    x, xs, w = rand(3, dtype), rand((4, 3), dtype), rand(3, dtype)
    looped = gc.trace(gc.value_and_grad(functools.partial(unrolled_and_looped, GC), argnums=(0, 1, 2)), compile=mode)
    unrolled = gc.trace(gc.value_and_grad(functools.partial(unrolled_and_looped, PY), argnums=(0, 1, 2)),
                        compile="never")
    tol = {"rtol": 1e-5, "atol": 1e-6}
    got, want = flat_outputs(looped(x, xs, w)), flat_outputs(unrolled(x, xs, w))
    assert len(got) == len(want) == 4
    for k, (g, v) in enumerate(zip(got, want)):
        assert_same(g, v, f"value_and_grad output {k}", tol)
    g_only = gc.trace(gc.grad(functools.partial(unrolled_and_looped, GC), argnums=1), compile="never")(x, xs, w)
    assert_same(g_only, want[2], "gc.grad argnums=1", tol)


def rosenbrock(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def descent_and_gradients(lp, x0, w):
    """The issue's descent: gc.gradient inside the body, with a step size decaying with the
    index; then gradients of one loop's outputs taken three times in the same trace, and
    gradients through loops that recompute their bodies (remat)."""
    x = lp.fori_loop(0, 12, lambda i, x: x - 1e-3 / (1 + i) ** 0.5 * gc.gradient(rosenbrock(x), x), x0)
    y = lp.fori_loop(0, 3, lambda i, c: np.sin(c * w) + i * 0.1, x0)
    h, ys = lp.scan(lambda c, r: (np.tanh(c + r), c * r), y, np.stack([x0, w, x0 * w]))
    z = lp.fori_loop(0, 3, lambda i, c: np.sin(c * w) + i * 0.1, x0, remat=True)
    h2, _ = lp.scan(gc.checkpoint(lambda c, r: (np.tanh(c + r), c * r)), z, np.stack([x0, w, x0 * w]), remat=True)
    return (x, gc.gradient(y.sum(), x0), gc.gradient((y ** 2).sum() + ys.sum(), x0, w), gc.gradient((h * y).sum(), w),
            gc.gradient((h2 * z).sum(), x0, w))


@pytest.mark.parametrize("mode", MODES)
def test_gradients_inside_and_after_loops_match_the_unrolled_program(mode):
    x0, w = np.array([-1.2, 1.0, 0.5]), np.array([1.1, 0.7, -0.4])
    got = gc.trace(functools.partial(descent_and_gradients, GC), compile=mode)(x0, w)
    want = gc.trace(functools.partial(descent_and_gradients, PY), compile="never")(x0, w)
    for k, (g, v) in enumerate(zip(flat_outputs(got), flat_outputs(want))):
        assert_same(g, v, f"output {k}")


def test_while_loop_is_fine_where_no_cotangent_reaches_it():
    """Only reverse mode *through* a while_loop is an error: a stop_gradient before it, or a
    loop on values that do not depend on the argument, differentiate."""
    def f(x):
        scale = gc.stop_gradient(gc.while_loop(lambda c: c.sum() < 10, lambda c: c * 2, x))
        steps = gc.while_loop(lambda k: k < 3, lambda k: k + 1, 0)
        return (x * x * scale).sum() * steps

    x = np.array([1.0, 2.0, 3.0])
    g = gc.trace(gc.grad(f), compile="never")(x)
    assert_same(g, 2 * x * py_while(lambda c: c.sum() < 10, lambda c: c * 2, x) * 3, "gradient")


def _rnn_step(lp, cell, opt):
    def step(xs, h0, target):
        opt.zero_grad()

        def body(h, x):
            h = np.tanh(cell(x) + h)  # the cell's Parameters are read inside the body
            return h, h.mean()
        h, ys = lp.scan(body, h0, xs)
        h = lp.fori_loop(0, 2, lambda i, c: np.tanh(cell(c)) + c, h)
        h = gc.cond(h.sum() > 0, lambda a: cell(a), lambda a: a * 2, h)  # (a Python if cannot unroll this one)
        loss = ((h - target) ** 2).mean() + 0.1 * (ys ** 2).sum()
        loss.backward()
        opt.step()
        return loss
    return step


@pytest.mark.parametrize("mode", MODES)
def test_loss_backward_through_loops_that_read_parameters(mode):
    """PyTorch-style training with an nn.Linear inside a scan body, a fori_loop body and a cond
    branch: losses, gradients and the updated parameters equal the same step with the loops
    unrolled by Python."""
    models = []
    for lp, how in ((GC, mode), (PY, "never")):
        nn.manual_seed(3)
        cell = nn.Linear(3, 3)
        opt = optim.SGD(cell.parameters(), lr=0.1, momentum=0.9)
        models.append((cell, gc.trace(_rnn_step(lp, cell, opt), compile=how)))
    xs, h0, target = rand((5, 2, 3), np.float32), np.zeros((2, 3), np.float32), rand((2, 3), np.float32)
    for step in range(2):
        (looped, f), (unrolled, g) = models
        assert_same(f(xs, h0, target), g(xs, h0, target), f"loss at step {step}", {"rtol": 1e-5})
        for (name, p), q in zip(looped.named_parameters(), unrolled.parameters()):
            assert_same(p.grad, q.grad, f"{name}.grad at step {step}", {"rtol": 1e-5, "atol": 1e-6})
            assert_same(p.data, q.data, f"{name} at step {step}", {"rtol": 1e-5, "atol": 1e-6})


# -- bad input --------------------------------------------------------------------------------------
def trace_error(exc_type, fn, *args):
    """The message of the error tracing ``fn`` raises (compile="never": nothing is compiled)."""
    with pytest.raises(exc_type) as info:
        gc.trace(fn, compile="never")(*args)
    return str(info.value)


def grows(i, c):
    return np.concatenate([c, c])


def becomes_float64(i, c):
    return {"a": c["a"], "b": c["b"].astype(np.float64)}


def test_carry_shape_change_names_the_loop_the_leaf_the_types_and_the_line():
    x = np.zeros(3, np.float32)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3, grows, x), x)
    for part in ("gc.fori_loop", "init_val", "f32[6]", "f32[3]", THIS_FILE, "gc.fori_loop(0, 3, grows, x)"):
        assert part in msg, (part, msg)


def test_carry_dtype_change_names_the_leaf_in_a_pytree():
    x = np.zeros(3, np.float32)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 2, becomes_float64, {"a": x, "b": x}), x)
    for part in ("gc.fori_loop", "init_val['b']", "f64[3]", "f32[3]", "gc.fori_loop(0, 2, becomes_float64"):
        assert part in msg, (part, msg)
    msg = trace_error(gc.TraceError, lambda x: gc.scan(lambda c, r: ((c[0], c[1][:1]), r), (x, x), np.stack([x, x])), x)
    for part in ("gc.scan", "init[1]", "f32[1]", "f32[3]", THIS_FILE):
        assert part in msg, (part, msg)
    msg = trace_error(gc.TraceError, lambda x: gc.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 1.5),
                                                             (0, x.astype(np.int32))), x)
    for part in ("gc.while_loop", "init_val[1]", "f64[3]", "i32[3]"):
        assert part in msg, (part, msg)


def test_the_index_is_a_python_int_so_np_sin_of_it_is_float64():
    """Eagerly ``c + np.sin(i)`` makes a float32 carry float64 (np.sin of a Python int is an
    np.float64): in a loop that changes the carry's dtype, an error (not a silent float32)."""
    x = np.zeros(3, np.float32)
    assert py_fori(0, 2, lambda i, c: c + np.sin(i), x).dtype == np.float64
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 2, lambda i, c: c + np.sin(i), x), x)
    assert "f64[3]" in msg and "f32[3]" in msg


def test_body_returning_another_structure():
    x = np.zeros(3)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3, lambda i, c: (c[0], c[1], c[0]), (x, x)), x)
    assert "gc.fori_loop" in msg and "structure" in msg and "(an array, an array, an array)" in msg and THIS_FILE in msg
    msg = trace_error(gc.TraceError, lambda x: gc.scan(lambda c, r: c + r, 0.0, x), x)
    assert "gc.scan" in msg and "pair (carry, y)" in msg and THIS_FILE in msg
    msg = trace_error(gc.TraceError, lambda x: gc.scan(lambda c, r: ((c, c), r), 0.0, x), x)
    assert "gc.scan" in msg and "structure" in msg
    msg = trace_error(gc.TraceError, lambda x: gc.while_loop(lambda c: c.sum() > 0, lambda c: (c, c), x), x)
    assert "gc.while_loop" in msg and "structure" in msg
    msg = trace_error(gc.TraceError, lambda x: gc.cond(x.sum() > 0, lambda a: (a, a), lambda a: a, x), x)
    assert "gc.cond" in msg and "different structures" in msg and THIS_FILE in msg


def test_dict_carries_with_other_keys_name_the_keys():
    """A body returning a dict with a renamed key: the message must say which keys differ (both
    structures printed as "dict(an array, an array)" would not tell). The same keys in another
    order are the same dict to Python: they work, or the error names the keys too."""
    x = np.ones(3)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(
        0, 2, lambda i, c: {"a": c["a"] + 1, "c": c["b"] * 2}, {"a": x, "b": x}), x)
    assert "'b'" in msg and "'c'" in msg, msg

    def reordered(x):
        return gc.fori_loop(0, 2, lambda i, c: {"b": c["b"] * 2, "a": c["a"] + 1}, {"a": x, "b": x})

    try:
        got = gc.trace(reordered, compile="never")(x)
    except gc.TraceError as exc:
        assert "'a'" in str(exc) and "'b'" in str(exc), str(exc)
        return
    want = reordered(x)
    for key in ("a", "b"):
        assert_same(got[key], want[key], key)


def test_cond_branches_of_different_types():
    x = np.zeros(3, np.float32)
    msg = trace_error(gc.TraceError, lambda x: gc.cond(x.sum() > 0, lambda a: a, lambda a: a[:2], x), x)
    assert "false branch of gc.cond" in msg and "f32[2]" in msg and "f32[3]" in msg and THIS_FILE in msg
    msg = trace_error(gc.TraceError, lambda x: gc.cond(x.sum() > 0, lambda a: a, lambda a: a.astype(np.float64), x), x)
    assert "gc.cond" in msg and "f64[3]" in msg


@pytest.mark.parametrize("pred, got", [(lambda x: x.sum(), "f32[]"), (lambda x: x > 0, "bool[3]"),
                                       (lambda x: (x > 0).astype(np.int32)[0], "i32[]")],
                         ids=["float", "vector", "int"])
def test_predicates_must_be_boolean_scalars(pred, got):
    x = np.ones(3, np.float32)
    msg = trace_error(gc.TraceError, lambda x: gc.cond(pred(x), lambda a: a, lambda a: -a, x), x)
    assert "gc.cond" in msg and "boolean scalar" in msg and got in msg and THIS_FILE in msg
    msg = trace_error(gc.TraceError, lambda x: gc.while_loop(lambda c: pred(c), lambda c: c / 2, x), x)
    assert "gc.while_loop" in msg and "cond_fun" in msg and "boolean scalar" in msg and got in msg and THIS_FILE in msg


def test_while_loop_cond_fun_returning_a_tuple():
    x = np.ones(3)
    msg = trace_error(gc.TraceError, lambda x: gc.while_loop(lambda c: (c.sum() > 0, True), lambda c: c / 2, x), x)
    assert "cond_fun" in msg and "boolean scalar" in msg


def test_reverse_mode_through_while_loop_is_a_clear_error():
    def f(x):
        return gc.while_loop(lambda c: c.sum() > 1, lambda c: c / 2, x).sum()

    msg = trace_error(gc.TraceError, gc.grad(f), np.ones(3) * 4)
    assert "while_loop" in msg and "reverse-mode" in msg and "gc.fori_loop" in msg and "gc.scan" in msg
    assert THIS_FILE in msg


def test_reverse_mode_through_fori_loop_with_traced_bounds_is_a_clear_error():
    def f(x, n):
        return gc.fori_loop(0, n, lambda i, c: c * 2, x).sum()  # traced n

    msg = trace_error(gc.TraceError, gc.grad(f), np.ones(3), np.int64(3))
    assert "fori_loop" in msg and "traced" in msg and "reverse-mode" in msg and THIS_FILE in msg


def test_loss_backward_through_while_loop_is_a_clear_error():
    nn.manual_seed(0)
    lin = nn.Linear(3, 3)

    def step(x):
        loss = gc.while_loop(lambda c: c.sum() < 10, lambda c: lin(c) + 1.0, x).sum()
        loss.backward()
        return loss

    msg = trace_error(gc.TraceError, step, np.ones(3, np.float32))
    assert "while_loop" in msg and "reverse-mode" in msg


def matmul_in_body(i, c):
    return c @ np.ones((4, 4))  # the shape error's line


def reshape_in_body(i, c):
    bad = c.reshape(5)  # the shape error's line
    return c + bad.sum()


def inner_error(j, d):
    return d @ np.ones((4, 4))  # the nested body's line


@pytest.mark.parametrize("body, line", [(matmul_in_body, "return c @ np.ones((4, 4))  # the shape error's line"),
                                        (reshape_in_body, "bad = c.reshape(5)  # the shape error's line")],
                         ids=["matmul", "reshape"])
def test_shape_error_inside_a_body_names_the_line_in_the_body(body, line):
    x = np.zeros(3)
    msg = trace_error(gc.ShapeError, lambda x: gc.fori_loop(0, 3, body, x), x)
    assert f"{THIS_FILE}:" in msg and line in msg, msg
    msg = trace_error(gc.ShapeError, lambda x: gc.scan(lambda c, r: (body(0, c), r), x, np.stack([x, x])), x)
    assert line in msg, msg


def test_errors_inside_a_while_cond_fun_and_a_branch_name_their_lines():
    x = np.zeros(3)
    msg = trace_error(gc.ShapeError, lambda x: gc.while_loop(
        lambda c: (c @ np.ones((4, 4))).sum() > 0, lambda c: c, x), x)  # the cond_fun's line
    assert "the cond_fun's line" in msg, msg
    msg = trace_error(gc.TraceError, lambda x: gc.cond(
        x.sum() > 0, lambda a: np.fft.fft(a), lambda a: a, x), x)  # the branch's line
    assert "np.fft" in msg and "the branch's line" in msg, msg


def test_shape_error_in_a_nested_body_names_the_innermost_line():
    x = np.zeros(3)
    msg = trace_error(gc.ShapeError, lambda x: gc.fori_loop(
        0, 2, lambda i, c: gc.cond(c.sum() > 0, lambda a: gc.fori_loop(0, 2, inner_error, a), lambda a: a, c), x), x)
    assert "return d @ np.ones((4, 4))  # the nested body's line" in msg, msg


COUNTER = State(np.zeros(3))
COUNTER.name = "COUNTER"


def writes_state(i, c):
    COUNTER.write(c)  # the State write's line
    return c + 1


def test_writing_state_inside_a_body_is_a_clear_error():
    x = np.zeros(3)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3, writes_state, x), x)
    assert "gc.fori_loop" in msg and "COUNTER" in msg and "COUNTER.write(c)  # the State write's line" in msg
    assert "carry" in msg  # what to do instead
    msg = trace_error(gc.TraceError, lambda x: gc.cond(x.sum() > 0, lambda a: writes_state(0, a), lambda a: a, x), x)
    assert "gc.cond" in msg and "COUNTER" in msg


def test_dropout_inside_a_body_is_a_clear_error():
    """Dropout advances its generator's State: not inside a body (the message says what to do)."""
    nn.manual_seed(0)
    drop = nn.Dropout(0.5)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3, lambda i, c: drop(c), x), np.ones(3, np.float32))
    assert "gc.fori_loop" in msg and "State" in msg and "generator" in msg and THIS_FILE in msg


def python_if_in_body(i, c):
    if c.sum() > 0:  # Python control flow on a traced value
        return c
    return -c


def python_while(x):
    while x.sum() < 10:  # a Python while on a traced value
        x = x * 2
    return x


@pytest.mark.parametrize("fn, line", [
    (lambda x: gc.fori_loop(0, 3, python_if_in_body, x), "if c.sum() > 0:  # Python control flow on a traced value"),
    (python_while, "while x.sum() < 10:  # a Python while on a traced value"),
    (lambda x: x if x.sum() > 0 else -x, "x if x.sum() > 0 else -x")], ids=["if_in_body", "while", "if_expression"])
def test_python_control_flow_on_traced_values_points_to_cond_while_loop_and_where(fn, line):
    msg = trace_error(gc.TraceError, fn, np.ones(3))
    for part in ("gc.cond", "gc.where", "gc.while_loop", "gc.fori_loop", line):
        assert part in msg, (part, msg)


def test_a_body_value_used_after_the_loop_is_a_clear_error():
    leaked = []

    def body(i, c):
        leaked.append(c)
        return c * 2

    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3, body, x) + leaked[-1], np.ones(3))
    assert "escaped" in msg and THIS_FILE in msg


def test_bad_bounds_lengths_and_carries():
    x = np.zeros(3)
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3.0, lambda i, c: c, x), x)
    assert "gc.fori_loop" in msg and "upper" in msg and "float" in msg and THIS_FILE in msg
    msg = trace_error(gc.TraceError, lambda x, n: gc.fori_loop(0, n, lambda i, c: c, x), x, 3.0)
    assert "gc.fori_loop" in msg and "f64[]" in msg and "integer" in msg
    msg = trace_error(gc.TraceError, lambda x, n: gc.fori_loop(0, n, lambda i, c: c, x), x, np.array([3, 4]))
    assert "gc.fori_loop" in msg and "i64[2]" in msg
    msg = trace_error(gc.TraceError, lambda x: gc.scan(lambda c, r: (c, r), 0.0, (x, x[:2])), x)
    assert "gc.scan" in msg and "[2, 3]" in msg
    msg = trace_error(gc.TraceError, lambda x: gc.scan(lambda c, r: (c, r), 0.0, x, length=5), x)
    assert "gc.scan" in msg and "[3, 5]" in msg
    msg = trace_error(gc.TraceError, lambda x: gc.scan(lambda c, r: (c, r), 0.0, x.sum()), x)
    assert "gc.scan" in msg and "leading axis" in msg
    msg = trace_error(gc.TraceError, lambda x: gc.fori_loop(0, 3, lambda i, c: c, (x, "abc")), x)
    assert "gc.fori_loop" in msg and "init_val[1]" in msg and "str" in msg


# -- the IR ---------------------------------------------------------------------------------------
def _ir_programs(n):
    """One program per construct (and their gradients) with trip count ``n``."""
    return {
        "fori_loop": lambda x: gc.fori_loop(0, n, lambda i, c: c * 0.5 + i, x),
        "scan": lambda x: gc.scan(lambda c, r: (c + r.sum(), {"y": c * r}), 0.0, np.ones((n, 3)) * x, reverse=True),
        "scan_length": lambda x: gc.scan(lambda c, _: (np.sin(c), c), x, length=n),
        "while_loop": lambda x: gc.while_loop(lambda s: s[1] < n, lambda s: (s[0] / 2, s[1] + 1), (x, 0)),
        "fori_traced_bounds": lambda x: gc.fori_loop(0, x.shape[0] * 0 + np.int64(n) + (x[0] > 0).astype(np.int64),
                                                     lambda i, c: c * 2, x),
        "cond": lambda x: gc.cond(x.sum() > n, lambda a: a * 2, lambda a: -a, x),
        "nested": lambda x: gc.fori_loop(0, n, lambda i, c: gc.cond(
            c.sum() > 0, lambda: gc.scan(lambda d, r: (d + r, d), c, np.ones((n, 3)))[0], lambda: c), x),
        "grad": gc.grad(lambda x: (gc.fori_loop(0, n, lambda i, c: np.sin(c), x).sum()
                                   + gc.scan(lambda c, r: (np.tanh(c * r), c), x[0], x * n)[1].sum()
                                   + gc.cond(x[0] > 0, lambda a: a * a, lambda a: a, x).sum())),
        "grad_of_grad": gc.grad(lambda x: gc.grad(
            lambda y: gc.fori_loop(0, n, lambda i, c: np.sin(c) * y, y).sum())(x).sum()),
        "grad_remat": gc.grad(lambda x: (
            gc.fori_loop(0, n, lambda i, c: np.sin(c) * x, x, remat=True).sum()
            + gc.scan(gc.checkpoint(lambda c, r: (np.tanh(c * r), c)), x[0], x * n)[1].sum())),
    }


def _walk_nodes(graph):
    for node in graph.nodes:
        yield node
        for region in node.regions:
            yield from _walk_nodes(region)


@pytest.mark.parametrize("name", list(_ir_programs(3)))
def test_printed_graphs_parse_back_and_verify(name):
    x = np.array([0.5, -0.25, 1.0])
    fn = _ir_programs(3)[name]
    raw = raw_graph(fn, x)
    optimized = gc.trace(fn, compile="never")
    optimized(x)
    for label, graph in (("traced", raw), ("optimized", optimized.graph)):
        assert any(n.op in ("fori_loop", "scan", "while_loop", "cond") for n in graph.nodes), label
        registry.verify(graph)
        parsed = ir.parse(str(graph))
        assert parsed == graph, f"{label} graph of {name} does not print back as itself"
        registry.verify(parsed)
        got = gc.interpret(parsed, x)  # the parsed graph runs, and as the original does
        for g, w in zip(got, gc.interpret(graph, x)):
            assert_same(g, w, f"{label} {name}: parsed graph")


@pytest.mark.parametrize("name", list(_ir_programs(3)))
def test_a_loop_is_one_node_whatever_its_trip_count(name):
    """As traced and after the passes (nothing unrolls a loop)."""
    x = np.array([0.5, -0.25, 1.0])
    small, large = raw_graph(_ir_programs(2)[name], x), raw_graph(_ir_programs(200)[name], x)
    optimized = []
    for n in (2, 200):
        traced = gc.trace(_ir_programs(n)[name], compile="never")
        traced(x)
        optimized.append(traced.graph)
    for label, (a, b) in (("traced", (small, large)), ("optimized", optimized)):
        assert len(a.nodes) == len(b.nodes), label
        assert [n.op for n in _walk_nodes(a)] == [n.op for n in _walk_nodes(b)], label
        assert any(n.op in ("fori_loop", "scan", "while_loop", "cond") for n in _walk_nodes(a)), label


def test_remat_saves_only_the_carry_per_step():
    """Without remat the backward loop reads the body's saved values per step; with remat
    (fori_loop(remat=True), gc.checkpoint) only the carries, and it recomputes the rest."""
    def per_step_inputs(remat, wrap=lambda f: f):
        g = raw_graph(gc.grad(lambda x: (gc.fori_loop(0, 5, wrap(lambda i, c: np.sin(np.exp(c)) * x), x,
                                                      remat=remat)).sum()), rand(3))
        backward = [n for n in g.nodes if n.op == "scan"][-1]
        return backward.attrs["xs"]

    saved, recomputed = per_step_inputs(False), per_step_inputs(True)
    assert recomputed == 1 < saved
    assert per_step_inputs(False, gc.checkpoint) == recomputed


def test_a_fori_loop_is_a_single_node_with_its_body_as_a_region():
    g = raw_graph(lambda x, w: gc.fori_loop(0, 100, lambda i, c: c * w + i, x), rand(3), rand(3))
    loops = [n for n in g.nodes if n.op == "fori_loop"]
    assert len(loops) == 1 and len(loops[0].regions) == 1
    assert loops[0].attrs["start"] == 0 and loops[0].attrs["stop"] == 100
    body = loops[0].regions[0]
    assert [str(v.type) for v in body.inputs] == ["i64[]", "f64[3]", "f64[3]"]  # index, carry, w (read from outside)
    assert sum(1 for n in g.nodes if n.op == "mul") == 0  # the arithmetic is in the body, once
    assert sum(1 for n in body.nodes if n.op == "mul") == 1


def test_every_control_op_is_covered_here():
    """Every op of kind "control" runs in a value group here, and every differentiable one but
    while_loop (whose reverse mode is an error, tested above) in a gradient check."""
    control = {name for name, op in registry.OPS.items() if op.kind == "control"}
    assert {"fori_loop", "scan", "while_loop", "cond"} <= control
    valued = {n.op for cases in GROUPS.values() for c in cases for n in _walk_nodes(raw_graph(c.fn, *c.args))}
    assert control <= valued, f"control ops with no value test: {sorted(control - valued)}"
    graded = {n.op for fn, args in GRAD_CASES.values() for n in _walk_nodes(raw_graph(fn, *args))}
    differentiable = {name for name in control if registry.OPS[name].differentiable} - {"while_loop"}
    assert differentiable <= graded, f"control ops with no gradient check: {sorted(differentiable - graded)}"
