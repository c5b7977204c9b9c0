"""Regression tests from a hostile review of loops and branches (graphc/ops/control.py and their
CPU lowering): each one a case that once gave a wrong answer or a foreign error."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def test_fori_bounds_beyond_int64_are_a_trace_error():
    """The compiled loop's index is an int64: a bound outside it was an OverflowError from the
    generated code (or a loop of a wrapped trip count), now a TraceError naming the bound."""
    for lower, upper, what in ((0, 2 ** 64 + 3, "upper bound"), (2 ** 63 - 2, 2 ** 63 + 1, "upper bound"),
                               (-2 ** 63, 2 ** 62, "more steps than an int64")):
        f = gc.trace(lambda a, lower=lower, upper=upper: gc.fori_loop(lower, upper, lambda i, c: c + 1, a))
        with pytest.raises(gc.TraceError, match=what):
            f(np.zeros(2))
    f = gc.trace(lambda a: gc.fori_loop(2 ** 63 - 3, 2 ** 63 - 1, lambda i, c: (c[0] + 1, i), (a, 0)))
    assert f(0) == (2, 2 ** 63 - 2)  # the last int64s are fine
