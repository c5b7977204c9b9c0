"""Hostile review of 1034981: a scan's ys value made in its step is computed straight into that
step of the stacked output (graphc/backend/control.py ``_stacked_directly``, codegen
``Emitter.slots``), and a carry whose new value is such a view may hold the view.

Every case is compared with the NumPy interpreter (device="numpy"), the oracle; the bugs it
found (now fixed) are marked by a comment."""
import numpy as np
import pytest

import graphc as gc

from tests.conftest import assert_same, flat_outputs

RNG = np.random.default_rng(4)
BIG = 1100  # a carry of more than COPY_MAX (1024) elements: swapped, so it may hold the view


def _normal(*shape):
    return RNG.standard_normal(shape)


def _against_interpreter(fn, *args, compiled=None):
    """``fn`` compiled (or ``compiled``) on ``args`` == the interpreter; the compiled outputs."""
    got = (compiled or gc.trace(fn))(*args)
    want = gc.trace(fn, device="numpy")(*args)
    got_leaves, want_leaves = flat_outputs(got), flat_outputs(want)
    assert len(got_leaves) == len(want_leaves)
    for k, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        assert_same(g, w, f"{getattr(fn, '__name__', fn)} output {k}", tol=dict(rtol=1e-10, atol=1e-12))
    return got_leaves


def _apart(outputs, inputs=()):
    """No two returned arrays share memory, and none shares memory with an input."""
    arrays = [a for a in outputs if isinstance(a, np.ndarray)]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
        for x in inputs:
            assert not np.shares_memory(a, x)


# -- the view held by a large carry, then written by the next outer step -------------------

def _scan_in_fori(h0, stack):
    """A fori_loop whose carry is the stack of an inner scan whose ys is its (large) new carry."""
    return gc.fori_loop(0, 3, lambda i, s: gc.scan(lambda c, x: (c + x, c + x), h0, s)[1], stack)


def _scan_in_while(h0, stack):
    def body(state):
        i, s = state
        return i + 1, gc.scan(lambda c, x: (c + x, c + x), h0, s)[1]
    return gc.while_loop(lambda state: state[0] < 3, body, (0, stack))[1]


def _scan_in_scan(h0, xss):
    """An outer scan stacking an inner scan's stack; the inner scan starts from a new value."""
    return gc.scan(lambda c, xs: gc.scan(lambda h, x: (h * 0.5 + x,) * 2, c * 2.0, xs), h0, xss)


def _grad_scan_in_scan(w, h0, xss):
    def loss(w):
        inner = lambda c, xs: gc.scan(lambda h, x: (np.tanh(h * w + x),) * 2, c * 0.5, xs)
        return np.sum(np.sin(gc.scan(inner, h0, xss)[1]))
    return gc.value_and_grad(loss)(w)


# (fixed; found by review: the inner scan's carry variable (its buffer hoisted before the outer
#  loop) ends the inner loop bound to the view ys[T-1] of the inner stack; the next outer step
#  copies the inner init into that variable, i.e. over the last step of a stack still live (the
#  fori/while carry, or the outer scan's ys for the previous step): silently wrong values)
@pytest.mark.parametrize("fn, args", [
    (_scan_in_fori, lambda: (_normal(BIG), _normal(4, BIG))),
    (_scan_in_while, lambda: (_normal(BIG), _normal(4, BIG))),
    (_scan_in_scan, lambda: (_normal(BIG), _normal(3, 4, BIG))),
    (_grad_scan_in_scan, lambda: (_normal(BIG) * 0.3, _normal(BIG), _normal(3, 4, BIG))),
], ids=["fori", "while", "scan", "grad_scan"])
def test_a_large_inner_carry_bound_to_its_stack_is_not_overwritten_by_the_next_outer_step(fn, args):
    _against_interpreter(fn, *args())


def test_the_same_nestings_with_a_small_inner_carry():
    """(A carry of <= 1024 elements is copied, never bound to the view: right today.)"""
    def nestings(h0, stack, xss):
        return _scan_in_fori(h0, stack), _scan_in_while(h0, stack), _scan_in_scan(h0, xss)
    _against_interpreter(nestings, _normal(7), _normal(4, 7), _normal(3, 4, 7))


def _again_into_a_recycled_output(fn, *args):
    """``fn`` against the interpreter twice: the second call's output (over 128 KiB) is the
    runtime's recycled array from the first, which the user filled with 123 and dropped, so
    memory the call fails to write shows deterministically (a fresh array may be zeros)."""
    compiled = gc.trace(fn)
    (first,) = _against_interpreter(fn, *args, compiled=compiled)
    first[...] = 123.0
    del first
    _against_interpreter(fn, *args, compiled=compiled)


# -- emitters that allocate their output with a fill value --------------------------------

# (fixed; found by review: Emitter.alloc binds a slot (ys[t]) and drops its fill argument; reshape
#  of a 0-d value to an array spreads the scalar with alloc(out, fill=src), so the stack keeps
#  whatever empty_c left there)
def test_ys_a_scalar_reshaped_into_an_array():
    fn = lambda c, xs: gc.scan(lambda c, x: (c + x, np.reshape(np.sum(c * x), (1, 1))), c, xs)
    _against_interpreter(fn, _normal(6), _normal(5, 6))


# (fixed; found by review: the backward scan's per-step cotangent of a sliced xs is scatter_slice,
#  allocated with fill='0'; bound to the stack's step the zero fill is dropped (outside the slice
#  the stack keeps what its memory held: garbage, or a recycled output's old values))
def test_grad_through_a_slice_of_each_step_of_xs():
    def fn(c, xs):
        loss = lambda xs: np.sum(gc.scan(lambda c, x: (c * x[1:4].sum() + c, None), c, xs)[0] ** 2)
        return gc.grad(loss)(xs)
    _again_into_a_recycled_output(fn, _normal(4000) * 0.1, _normal(5, 4000) * 0.1)


# (fixed; found by review: the backward scan's per-step cotangent of an xs indexed by an integer
#  array is scatter_add, allocated with fill='0' and accumulated with +=; bound to the stack's step
#  the zero fill is dropped)
def test_grad_through_an_integer_index_of_each_step_of_xs():
    idx = np.array([0, 2, 2, 5])

    def fn(c, xs):
        loss = lambda xs: np.sum(gc.scan(lambda c, x: (c + np.sum(x[idx] * c[:4]), None), c, xs)[0] ** 2)
        return gc.grad(loss)(xs)
    _again_into_a_recycled_output(fn, _normal(4000) * 0.1, _normal(5, 4000) * 0.1)


# -- what holds -----------------------------------------------------------------------------

W = _normal(8, 8) * 0.3


def _many_ys(c_small, c_big, xs_small, xs_big):
    """ys made every way: the new carries (small and large), the old carries, a value twice, a
    matmul, fused groups, a reduction, np.where, int and bool, 0-d, views of body values."""
    def body(carry, x):
        cs, cb = carry
        new_small = np.tanh(cs @ W + x[0])
        new_big = cb * 0.9 + x[1]
        return (new_small, new_big), (
            new_small, new_big, cs, cb, new_small, np.sum(new_big, axis=-1),
            np.where(new_small > 0, new_small, -new_small), (new_big > 0).astype(np.int64) + 3,
            new_big > 0.5, np.sum(new_small), new_small.T, new_big.reshape(-1), new_small[1:3],
            cs @ W)
    return gc.scan(body, (c_small, c_big), (xs_small, xs_big))


@pytest.mark.parametrize("length", [6, 1, 0])
def test_ys_of_every_kind_with_small_and_large_new_carries(length):
    args = (_normal(4, 8), _normal(40, 30), _normal(length, 4, 8), _normal(length, 40, 30))
    got = _against_interpreter(_many_ys, *args)
    _apart(got, args)


def test_reverse_nested_and_twice_returned_values():
    """reverse=True; ys made by a fori_loop, a cond and a scan in the body; one value returned
    as two carries and as two ys beside the old carry; int and bool large carries."""
    def fn(c, xs, n, b, bs):
        rev = gc.scan(lambda c, x: (np.sin(c) + x,) * 2, c, xs, reverse=True)

        def body(c, x):
            a = gc.fori_loop(0, 3, lambda i, h: h * 0.5 + x, c)
            m = gc.cond(np.sum(x) > 0, lambda h: h + 1.0, lambda h: h - 1.0, a)
            last, inner = gc.scan(lambda h, y: (h + y, h * y), m, np.stack([x, x * 2]))
            return last, (a, m, last, inner)
        nested = gc.scan(body, c, xs)

        def two(cc, x):
            v = cc[0] + cc[1] + x
            return (v, v), (v, cc[0], v)
        twice = gc.scan(two, (c, c * 2), xs)
        ints = gc.scan(lambda c, x: (c + x,) * 2, n, n[None] * np.arange(4)[:, None])
        bools = gc.scan(lambda c, x: (c ^ x,) * 2, b, bs)
        return rev, nested, twice, ints, bools
    args = (_normal(BIG), _normal(4, BIG), np.arange(BIG), np.zeros(BIG, bool), _normal(4, BIG) > 0)
    _apart(_against_interpreter(fn, *args), args)


def _rnn(w, u, h0, xs, unrolled=False, reverse=False):
    if unrolled:
        h, hs = h0, []
        for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
            h = np.tanh(h @ w + xs[t] @ u)
            hs.append(h)
        hs = np.stack(hs[::-1] if reverse else hs)
    else:
        h, hs = gc.scan(lambda h, x: (np.tanh(h @ w + x @ u),) * 2, h0, xs, reverse=reverse)
    return np.sum(h ** 2) + np.sum(np.sin(hs))


def test_rnn_value_and_gradient_with_a_large_hidden_state():
    """Forward and reverse RNN (hidden 40 x 30 = 1200 elements: the carry holds the view) against
    the interpreter and against the Python loop unrolled and traced by graphc, float64."""
    def both(*a):
        return _rnn(*a) + _rnn(*a, reverse=True)

    def both_unrolled(*a):
        return _rnn(*a, unrolled=True) + _rnn(*a, unrolled=True, reverse=True)
    args = (_normal(30, 30) * 0.3, _normal(5, 30) * 0.3, _normal(40, 30), _normal(6, 40, 5))
    vg = gc.value_and_grad(both, argnums=(0, 1, 2, 3))
    got = _against_interpreter(vg, *args)
    unrolled = flat_outputs(gc.trace(gc.value_and_grad(both_unrolled, argnums=(0, 1, 2, 3)))(*args))
    for g, e in zip(got, unrolled):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
    _apart(got, args)


def test_results_stay_apart_across_calls_and_user_writes():
    """A symbolic batch; two calls keep the first call's results; the user writing into a
    returned stack changes nothing else; dropped results may be recycled but stay right."""
    fn = lambda c, xs: gc.scan(lambda c, x: (np.tanh(c + x),) * 2, c, xs)
    compiled = gc.trace(fn, dynamic={"c": {0: "B"}, "xs": {1: "B"}})
    for batch in (7, BIG):
        c, xs = _normal(batch), _normal(4, batch)
        h1, hs1 = _against_interpreter(fn, c, xs, compiled=compiled)
        kept = h1.copy(), hs1.copy()
        hs1[...] = 7.0
        h2, hs2 = _against_interpreter(fn, c * 2.0, xs, compiled=compiled)
        np.testing.assert_array_equal(h1, kept[0])
        assert np.all(hs1 == 7.0)
        _apart([h1, hs1, h2, hs2], (c, xs))
        del h1, hs1
        h3, hs3 = _against_interpreter(fn, c, xs, compiled=compiled)
        np.testing.assert_array_equal(h3, kept[0])
        np.testing.assert_array_equal(hs3, kept[1])
        _apart([h2, hs2, h3, hs3], (c, xs))
