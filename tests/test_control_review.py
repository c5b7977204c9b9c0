"""Regression tests from a hostile review of loops and branches (graphc/ops/control.py and their
CPU lowering): each one a case that once gave a wrong answer or a foreign error."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def test_fori_bounds_beyond_int64_are_a_trace_error():
    """The compiled loop's index is an int64: a bound outside it was an OverflowError from the
    generated code, or (0 to 2**64 + 3) a compiled call that did not return; now a TraceError."""
    for lower, upper, what in ((0, 2 ** 64 + 3, "upper bound"), (2 ** 63 - 2, 2 ** 63 + 1, "upper bound"),
                               (-2 ** 63, 2 ** 62, "more steps than an int64")):
        f = gc.trace(lambda a, lower=lower, upper=upper: gc.fori_loop(lower, upper, lambda i, c: c + 1, a))
        with pytest.raises(gc.TraceError, match=what):
            f(np.zeros(2))
    f = gc.trace(lambda a: gc.fori_loop(2 ** 63 - 3, 2 ** 63 - 1, lambda i, c: (c[0] + 1, i), (a, 0)))
    assert f(0) == (2, 2 ** 63 - 2)  # the last int64s are fine


def test_a_dict_carry_or_branch_may_list_its_keys_in_another_order():
    """A dict is the same dict whatever order its keys were written in (and eagerly the loop runs):
    a body returning {"p", "q"} for a carry {"q", "p"} was a TraceError saying
    'dict(an array, an array) instead of dict(an array, an array)'."""
    def f(a):
        c, ys = gc.scan(lambda c, t: ({"p": c["p"] + t, "q": c["q"] * 2}, c["q"]), {"q": a[1], "p": a[0]}, a)
        b = gc.cond(a[0, 0] > 0, lambda u: {"x": u, "y": u.sum()}, lambda u: {"y": u.max(), "x": -u}, a)
        return c, ys, b

    a = np.random.default_rng(3).standard_normal((4, 3))
    for sign in (1, -1):
        (c, ys, b), (c2, ys2, b2) = gc.trace(f)(a * sign), f(a * sign)
        for got, want in ((c, c2), (b, b2)):
            assert set(got) == set(want)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
        np.testing.assert_allclose(ys, ys2, rtol=1e-12)
    with pytest.raises(gc.TraceError, match=r"\{'b': an array, 'c': an array\} instead of \{'a': an array, 'b'"):
        gc.trace(lambda a: gc.fori_loop(0, 3, lambda i, c: {"b": c["a"], "c": c["b"]}, {"a": a, "b": a}))(a)


def test_gc_print_in_a_body_of_values_from_outside_it(capfd):
    """gc.print of a value the body captures (the loop's index inside a cond, an argument of the
    function) was a KeyError: the print node used the outer value without capturing it."""
    def f(a):
        def body(i, c):
            return gc.cond(i == 1, lambda v: (gc.print("i={} a={}", i, a), v * 2)[1], lambda v: v, c)
        return gc.fori_loop(0, 3, body, a)

    a = np.array([1.0, 2.0])
    for mode in ("eager", "never"):
        np.testing.assert_array_equal(gc.trace(f, compile=mode)(a), [2.0, 4.0])
        assert capfd.readouterr().out == "i=1 a=[1. 2.]\n"


def test_eager_scan_stacks_ys_as_the_traced_scan_does():
    """Outside a trace gc.scan stacked its ys with np.stack, so a Python number among them (the
    init, returned as y at the first step) made int32 ys int64 and float32 ys float64, while the
    traced scan, whose carry takes the body's dtype, gave int32 and float32."""
    def f(a):
        return gc.scan(lambda c, t: (c + t, c), 0, a)

    for a in (np.arange(5, dtype=np.int32), np.arange(5, dtype=np.float32)):
        (c, ys), (c2, ys2) = gc.trace(f)(a), f(a)
        assert ys.dtype == ys2.dtype == a.dtype and c.dtype == c2.dtype == a.dtype
        np.testing.assert_array_equal(ys, ys2)
    _, ys = gc.scan(lambda c, t: (c + t, c), 0, np.arange(3), reverse=True)
    assert ys.dtype == np.int64


def test_a_python_number_carry_the_body_makes_an_array_value_is_no_longer_weak():
    """``gc.fori_loop(0, 3, lambda i, c: c + x[i], 0.0)`` is eagerly a np.float64 (the body's value),
    which times a float32 array is float64; the traced loop kept the carry weakly typed, like the
    Python 0.0 it started as, and silently gave float32 (and int32 for an int64 count)."""
    def f(x, flags):
        total = gc.fori_loop(0, 3, lambda i, c: c + x[i], 0.0)
        count = gc.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] + np.where(flags[c[0]], 1, 0)), (0, 0))[1]
        empty = gc.fori_loop(0, 0, lambda i, c: c + x[i], 0.0)  # (runs zero times: the Python 0.0)
        return total * np.ones(2, np.float32), count + np.int32(1), empty * np.ones(2, np.float32)

    args = (np.array([0.1, 0.2, 0.3]), np.array([True, False, True]))
    for got, want in zip(gc.trace(f)(*args), f(*args)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-15)


def test_cond_branches_returning_an_int_and_a_float_number_give_the_float():
    """``gc.cond(p, lambda: 1, lambda: 2.5)`` took the first branch's int type and truncated 2.5
    to 2 (silently); two Python numbers now promote as NumPy's weak scalars do: a float."""
    def f(x):
        return (gc.cond(x.sum() < 0, lambda: 1, lambda: 2.5),
                gc.cond(x.sum() < 0, lambda a: a * 2, lambda a: a + 0.5, 1),
                gc.cond(x.sum() < 0, lambda: True, lambda: 3))

    assert gc.trace(f)(np.ones(3)) == (2.5, 1.5, 3) == f(np.ones(3))
    assert gc.trace(f)(-np.ones(3)) == (1.0, 2.0, 1) == f(-np.ones(3))


def test_a_shape_error_raised_outside_bind_in_a_body_names_the_body_line():
    """``c.reshape(5)`` raises its ShapeError before any node is made: the message named the
    loop's call (the stack when the body's error was caught), not the line in the body."""
    def body(i, c):
        bad = c.reshape(5)  # the line to name
        return bad

    with pytest.raises(gc.ShapeError, match=r"in the body of gc.fori_loop, at .*test_control_review.py:\d+: "
                                            r"bad = c.reshape\(5\)  # the line to name"):
        gc.trace(lambda x: gc.fori_loop(0, 3, body, x))(np.zeros(3))


def test_loops_and_branches_with_empty_carries_or_results(capfd):
    """A node with no outputs (an empty carry, a cond returning ()) was an IndexError in bind."""
    def f(x):
        return (gc.fori_loop(0, 2, lambda i, c: (gc.print("step {}", i), c)[1], ()),
                gc.cond(x.sum() > 0, lambda: (), lambda: ()),
                gc.while_loop(lambda c: x.sum() < 0, lambda c: c, ()),
                gc.scan(lambda c, t: ((), t * 2), (), np.stack([x, x]))[1])

    x = np.ones(3)
    got, want = gc.trace(f)(x), f(x)
    assert got[:3] == want[:3] == ((), (), ())
    np.testing.assert_array_equal(got[3], want[3])
    assert capfd.readouterr().out == "step 0\nstep 1\n" * 2
