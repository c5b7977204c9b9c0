"""Review 8: ``p.data`` inside a traced function (commit ae1ac5d: StateView / DataView).

The oracle is the same Python code run eagerly (a State holds a plain NumPy array there, and
``State.read()`` / ``write()`` work), or a hand computation with NumPy (PyTorch semantics for
``.data`` in training code). Strict xfails are bugs: each docstring says what eager NumPy does
and what graphc does. The plain tests are attacks graphc handles (regression guards).
"""
import os
import threading

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.state import State


def _twins(*arrays):
    """Two sets of States with equal copies of ``arrays``: one run eagerly, one compiled."""
    return [State(np.array(a, copy=True)) for a in arrays], [State(np.array(a, copy=True)) for a in arrays]


def _same(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
        assert np.asarray(g).dtype == np.asarray(w).dtype


def _check(fn, arrays, xs):
    """Run ``fn(x, *states)`` eagerly and compiled for each x in ``xs``: same results, same States."""
    es, cs = _twins(*arrays)
    f = gc.trace(lambda x: fn(x, *cs))
    for x in xs:
        _same(f(x), fn(x, *es))
        for e, c in zip(es, cs):
            _same(c.data, e.data)
    return f


# =====================================================================================
# Bugs (strict xfail)
# =====================================================================================

# -- `p.data = v` is a rebinding in NumPy/PyTorch: refused inside a trace ------------------
# (graphc wrote v into the State's old array: a name for that array, inside the function or
# the caller's, then saw v, and a later update of the State did not reach v. Fixed by refusing:
# a compiled call can only write into the array the State has.)

def _refused(fn, arrays, x):
    """``fn`` runs eagerly; traced, it raises a TraceError naming ``.data = value`` and the line."""
    es, cs = _twins(*arrays)
    fn(x, *es)
    with pytest.raises(gc.TraceError, match=r"\.data = value inside a traced function is not supported "
                                             r"\(at .*test_review8_state_data\.py:\d+"):
        gc.trace(lambda x: fn(x, *cs))(x)
    for c, a in zip(cs, arrays):
        np.testing.assert_array_equal(c.data, a)  # nothing written


def test_name_for_data_keeps_old_values_after_rebinding_assignment():
    """Eager: ``d = s.data; s.data = x * 2`` rebinds s; ``d`` keeps the old values."""
    def fn(x, s):
        d = s.data
        s.data = x * 2
        return d + 0

    _refused(fn, [np.arange(3.0)], np.ones(3))


def test_assigned_array_is_aliased_by_the_state_as_in_numpy():
    """Eager: ``s.data = y`` makes ``y`` the State's array; ``s.data += 1`` changes ``y``."""
    def fn(x, s):
        y = x * 2
        s.data = y
        s.data += 1
        return y

    _refused(fn, [np.zeros(3)], np.ones(3))


def test_state_assigned_another_states_data_shares_it():
    """Eager: ``p.data = q.data`` makes p and q one array."""
    def fn(x, p, q):
        p.data = q.data
        q.data += 1
        return p.data + 0

    _refused(fn, [np.arange(3.0), np.ones(3)], np.ones(3))


def test_caller_reference_to_old_array_survives_rebinding_call():
    """Eager: a caller's ``held = s.data`` keeps its values when a call does ``s.data = x * 2``."""
    def fn(x, s):
        s.data = x * 2
        return x

    _refused(fn, [np.arange(3.0)], np.ones(3))


# -- 0-d States: x[()] is a scalar copy in NumPy --------------------------------------

def test_zero_d_data_empty_tuple_index_is_a_copy():
    """Eager: for a 0-d array ``a[()]`` is an np.float64 copy: ``old = lr.data[()]; lr.data *= 0.5;
    return x * old`` gives x * 0.5. graphc: ``lr.data[()]`` is the StateView itself, read after
    the update: x * 0.25."""
    def fn(x, lr):
        old = lr.data[()]
        lr.data *= 0.5
        return x * old

    _check(fn, [np.array(0.5)], [np.ones(3), np.ones(3)])


# -- a name for .data captured by a loop/branch body ------------------------------------

@pytest.mark.parametrize("construct", ["fori_loop", "cond", "scan"])
def test_data_name_captured_by_a_body(construct):
    """Eager (and graphc before ae1ac5d): ``d = s.data`` then a body closing over ``d`` runs fine
    (fori_loop: x + 2 * s; cond: x + s; scan: carry + sum of xs * s). graphc: KeyError
    Value(f64[2]) from the passes (PassWarning "please report this as a graphc bug"), and the
    compiled call fails too. Root cause: Builder.detached_value binds stop_gradient while the
    body is the current trace, so the node goes into the body graph, and RegionBuilder.value_of
    then captures a body value as if it were the enclosing graph's."""
    s = State(np.array([1.0, 2.0]))

    def f(x):
        d = s.data
        if construct == "fori_loop":
            return gc.fori_loop(0, 2, lambda i, acc: acc + d, x)
        if construct == "cond":
            return gc.cond(x.sum() > 0, lambda v: v + d, lambda v: v - d, x)
        return gc.scan(lambda c, xi: (c + xi * d, c), x, np.ones((3, 2)))[0]

    want = {"fori_loop": [2.0, 4.0], "cond": [2.0, 3.0], "scan": [4.0, 7.0]}[construct]
    np.testing.assert_array_equal(gc.trace(f)(np.ones(2) if construct != "fori_loop" else np.zeros(2)), want)


# -- gradients through in-place arithmetic on .data ----------------------------------------

@pytest.mark.parametrize("spelling", ["iadd", "name_imul"])
def test_in_place_update_of_data_carries_no_gradient(spelling):
    """PyTorch: ``p.data += q`` (or ``d = p.data; d *= q``) changes p's values outside autograd;
    a loss of ``p`` then reaches p only: p.grad = x, q.grad None. graphc: the State's new value
    keeps q's gradient, so q.grad = x (or x * p_old). ``p.data = q * 1`` is detached already."""
    p, q = nn.Parameter(np.array([1.0, 2.0])), nn.Parameter(np.array([3.0, 4.0]))

    @gc.trace
    def step(x):
        p.grad = None
        q.grad = None
        if spelling == "iadd":
            p.data += q.read()
        else:
            d = p.data
            d *= q.read()
        loss = (p.read() * x).sum()
        loss.backward()
        return p.grad

    x = np.array([10.0, 100.0])
    np.testing.assert_array_equal(step(x), x)
    assert q.grad is None or not np.any(q.grad)


# -- NumPy's checks on assignment ------------------------------------------------------------

def test_setitem_python_int_out_of_range_raises():
    """Eager: ``a[...] = 2**40`` on an int32 array raises OverflowError (Python integer out of
    bounds for int32). graphc writes 0 into the State."""
    def fn(x, s):
        s.data[...] = 2 ** 40
        return x

    es, cs = _twins(np.zeros(3, np.int32))
    with pytest.raises(OverflowError):
        fn(np.ones(1), es[0])
    with pytest.raises(OverflowError):
        gc.trace(lambda x: fn(x, cs[0]))(np.ones(1))


def test_setitem_value_with_leading_ones():
    """Eager: ``a = np.zeros(3); a[...] = np.ones((1, 3))`` works (NumPy drops leading size-1
    dims in assignment). graphc: ShapeError 'cannot write a value of shape (1, 3) into state
    of shape (3,)' (also for s.write)."""
    def fn(x, s):
        s.data[...] = x
        return s.data * 1

    _check(fn, [np.zeros(3)], [np.ones((1, 3))])


@pytest.mark.parametrize("key", ["traced_mask", "numpy_bool", "numpy_int", "traced_int"])
def test_data_setitem_with_an_array_key_is_a_clear_error(key):
    """Eager: ``s.data[s.data < 0] = 0`` (clamping; a common idiom) and fancy-index assignment
    work in NumPy. graphc refuses keys other than ``...``/``:``/``()`` by design, but
    StateView.__setitem__ tests ``key == ()`` first: for a traced mask that is an elementwise
    comparison ('ShapeError: eq: operands f64[3] and f64[0] cannot be broadcast'), for a NumPy
    array a ValueError with no user line, for a traced int a TraceError about Python control
    flow. Expected: the TraceError 'p.data[key] = value ... writes the whole array only'."""
    s = State(np.array([1.0, -2.0, 3.0]))
    make = {"traced_mask": lambda x: s.data < 0, "numpy_bool": lambda x: np.array([True, False, True]),
            "numpy_int": lambda x: np.array([0, 2]), "traced_int": lambda x: x.astype(np.int64)}[key]

    def fn(x):
        s.data[make(x)] = 0.0
        return x

    with pytest.raises(gc.TraceError, match=r"p.data\[key\] = value.*test_review8_state_data.py:\d+"):
        gc.trace(fn)(np.ones(1))


# -- randomness drawn at trace time --------------------------------------------------------

def test_nn_init_inside_a_trace_is_not_frozen():
    """Eager: ``nn.init.normal_(p)`` draws fresh values on each call. graphc: the draw made
    while tracing is a constant of the graph (written via p.data[...] = values), so every call
    sets p to the same numbers. Acceptable: a TraceError; not acceptable: the same values."""
    p = nn.Parameter(np.zeros(4))

    @gc.trace
    def reinit(x):
        nn.init.normal_(p)
        return x

    try:
        reinit(np.ones(1))
        first = p.data.copy()
        reinit(np.ones(1))
    except gc.TraceError:
        return
    assert not np.array_equal(first, p.data)


# -- refusals of valid programs ----------------------------------------------------------------

@pytest.mark.parametrize("which", ["copied_row", "row", "transpose"])
def test_view_used_before_an_in_place_update_is_fine(which):
    """Eager: ``kept = s.data[0].copy(); s.data -= x; return kept`` returns the old row (the README
    says: ``.copy()`` a view to keep the old values); ``s.data -= s.data[0]`` and
    ``s.data += s.data.T`` are fine in NumPy (>= 1.13 handles the overlap). graphc: each in-place
    update raises TraceError 'this array has a view ... taken earlier, which NumPy would update
    too' (methods._update_in_place scans the graph for any view node of the detached value),
    though no view is used after the update. With ``s.write(...)`` or ``opt.step()`` instead of
    the in-place spelling the copied row works, so ``w.data -= lr * w.grad`` after logging
    ``w.data[0].copy()`` is refused while the optimizer equivalent is not."""
    def fn(x, s):
        kept = x
        if which == "copied_row":
            kept = s.data[0].copy()
            s.data -= x
        elif which == "row":
            s.data -= s.data[0]
        else:
            s.data += s.data.T
        return kept

    shape = (2, 2) if which == "transpose" else (2, 3)
    _check(fn, [np.arange(6.0)[:shape[0] * shape[1]].reshape(shape)], [np.ones(shape)])


@pytest.mark.parametrize("copy", ["tile", "repeat", "vstack", pytest.param("T.reshape", marks=pytest.mark.xfail(
    strict=True, reason="d.T.reshape(-1) is a copy in NumPy (d.T is not contiguous); graphc tracks no "
                        "contiguity, keeps it a view of p.data and refuses its use after a write"))])
def test_numpy_copies_of_data_keep_old_values(copy):
    """Eager: np.tile(d, 2), np.repeat(d, 2), np.vstack([d]) and d.T.reshape(-1) (of a 2-d d)
    are new arrays: after s.write(...) they keep the old values. graphc builds them from
    broadcast_to/reshape (NUMPY_VIEWS), makes them DataViews and raises TraceError 'a view ...
    taken before State was written ... is used after that write'."""
    make = {"tile": lambda d: np.tile(d, 2), "repeat": lambda d: np.repeat(d, 2),
            "vstack": lambda d: np.vstack([d]), "T.reshape": lambda d: d.T.reshape(-1)}[copy]

    def fn(x, s):
        old = make(s.data)
        s.write(s.read() + x)
        return old * 1

    _check(fn, [np.arange(6.0).reshape(2, 3) if copy == "T.reshape" else np.arange(3.0)], [np.ones(1)])


@pytest.mark.parametrize("spelling", ["einsum", "diff0"])
def test_identity_numpy_functions_of_data_are_views(spelling):
    """Eager: ``v = np.einsum('ij->ij', s.data)`` shares s's memory (so does np.diff(d, n=0)),
    so after ``s.write(s + 1)`` ``v`` shows the new values. graphc gave a snapshot of the old
    values (silently); now such a result is a DataView, whose use after the write is refused."""
    make = {"einsum": lambda d: np.einsum("ij->ij", d), "diff0": lambda d: np.diff(d, n=0)}[spelling]

    def fn(x, s):
        v = make(s.data)
        s.write(s.read() + x.sum())
        return v * 1

    with pytest.raises(gc.TraceError, match=r"read before State was written .* used after that write"):
        gc.trace(lambda x: fn(x, State(np.arange(6.0).reshape(2, 3))))(np.ones(1))


# -- older (not from ae1ac5d), same family: aliasing of State values ------------------------

def test_write_then_in_place_update_of_the_written_value():
    """Eager: ``s.write(t)`` copies t into the State's array; ``t += 1`` changes t only: s = x * 2,
    returns x * 2 + 1. graphc: s = x * 2 + 1 (write_state stores the tracer object t, whose
    value _update_in_place later replaces)."""
    def fn(x, s):
        t = x * 2
        s.write(t)
        t += 1
        return t

    _check(fn, [np.zeros(3)], [np.ones(3)])


def test_read_then_write_shows_through_the_read():
    """Eager: ``old = s.read()`` is the array; ``s.write(old + x)`` writes into it, so
    ``return old * 1`` gives the new values [1, 2, 3]. graphc returned [0, 1, 2] (older than
    ae1ac5d); now a value read before a write and used after it is refused, naming the line.
    The same for ``p.T`` of a Parameter (``read().T``: a NumPy view) taken before ``p.data *= 2``."""
    def fn(x, s):
        old = s.read()
        s.write(old + x)
        return old * 1

    def transposed(x, p):
        t = p.T
        p.data *= 2
        return t + x

    for f, make in ((fn, lambda: State(np.arange(3.0))), (transposed, lambda: nn.Parameter(np.eye(2)))):
        eager, traced = make(), make()
        x = np.ones(eager.shape)
        f(x, eager)
        with pytest.raises(gc.TraceError, match=r"read before .* written .*test_review8_state_data\.py:\d+"):
            gc.trace(lambda x: f(x, traced))(x)
        np.testing.assert_array_equal(traced.data, make().data)  # nothing written


def test_learning_rate_changed_inside_the_traced_step():
    """Eager/PyTorch: ``opt.param_groups[0]['lr'] *= 0.5`` in each call halves lr per call.
    graphc once wrote State._data while tracing (once, before the first call) and never again;
    now setting a hyperparameter inside a trace is a TraceError naming the line, and nothing
    is changed."""
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1)

    @gc.trace
    def step(x):
        opt.zero_grad()
        (p.read() * x).sum().backward()
        opt.step()
        opt.param_groups[0]["lr"] *= 0.5
        return p.data

    with pytest.raises(gc.TraceError, match=r"param_group\['lr'\] = value inside a traced function.*"
                                             r"test_review8_state_data\.py:\d+"):
        step(np.ones(2))
    assert opt.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(p.data, [1.0, -2.0])


def test_learning_rate_read_inside_the_traced_step_is_current():
    """``lr = group['lr']`` (a Python number) read inside a trace: a scheduler's change between
    calls retraces instead of leaving the trace-time number in the graph."""
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1)

    @gc.trace
    def step(x):
        return x * opt.param_groups[0]["lr"]

    np.testing.assert_allclose(step(np.ones(2)), [0.1, 0.1])
    opt.param_groups[0]["lr"] = 0.05
    np.testing.assert_allclose(step(np.ones(2)), [0.05, 0.05])


# =====================================================================================
# Attacks graphc handles (regression guards)
# =====================================================================================

def test_two_names_for_data_see_each_others_updates():
    def fn(x, s):
        a = s.data
        b = s.data
        a -= x
        c = b + 0
        b *= 2.0
        return c, a + 0, s.data.sum()

    _check(fn, [np.arange(3.0)], [np.ones(3), np.full(3, 2.0)])


def test_copy_before_writes_keeps_old_values_and_is_owned():
    def fn(x, s):
        c = s.data.copy()
        s.data *= 2
        c += 1  # (updates the copy only)
        a = s.data.astype(np.float64)  # (a copy too)
        s.data -= x
        return c, a, s.data + 0

    _check(fn, [np.arange(3.0)], [np.ones(3), np.ones(3)])


@pytest.mark.parametrize("view", ["[:]", "[...]", "asarray", "reshape_same", "ravel_1d", "T_1d",
                                  "squeeze_noop", "astype_nocopy", "ascontiguous", "0d[...]"])
def test_no_op_views_of_data_stay_current(view):
    """A view that is the whole array (no node) is the StateView itself: current after a write.
    (np.asarray goes through a lambda: graphc hands traced code its replacement for ``np.asarray``
    when the code reads ``np``; a reference taken outside the trace is NumPy's own.)"""
    make = {"[:]": lambda d: d[:], "[...]": lambda d: d[...], "asarray": lambda d: np.asarray(d),
            "reshape_same": lambda d: d.reshape(d.shape), "ravel_1d": lambda d: d.ravel(),
            "T_1d": lambda d: d.T, "squeeze_noop": lambda d: d.squeeze(),
            "astype_nocopy": lambda d: d.astype(d.dtype, copy=False),
            "ascontiguous": lambda d: np.ascontiguousarray(d), "0d[...]": lambda d: d[...]}[view]

    def fn(x, s):
        v = make(s.data)
        s.write(s.read() + x.sum())
        return v * 1

    _check(fn, [np.array(2.0) if view == "0d[...]" else np.arange(3.0)], [np.ones(1)])


@pytest.mark.parametrize("view", ["ravel_2d", "flip", "np.flip", "swapaxes", "split", "iterate",
                                  "broadcast_to", "atleast_1d_of_0d", "None", "col", "diagonal"])
@pytest.mark.parametrize("write", ["write", "setitem", "iadd"])
def test_real_views_of_data_used_after_a_write_are_refused(view, write):
    """NumPy shows the write through these views; graphc cannot and must say so."""
    make = {"ravel_2d": lambda d: d.ravel(), "flip": lambda d: d[::-1], "np.flip": lambda d: np.flip(d),
            "swapaxes": lambda d: np.swapaxes(d, 0, 1), "split": lambda d: np.split(d, 2)[0],
            "iterate": lambda d: list(d)[0], "broadcast_to": lambda d: np.broadcast_to(d, (3,) + d.shape),
            "atleast_1d_of_0d": lambda d: np.atleast_1d(d), "None": lambda d: d[None], "col": lambda d: d[:, 1],
            "diagonal": lambda d: np.diagonal(d)}[view]
    s = State(np.array(2.0) if view == "atleast_1d_of_0d" else np.arange(4.0).reshape(2, 2))

    def fn(x):
        v = make(s.data)
        if write == "write":
            s.write(s.read() + 1)
        elif write == "setitem":
            s.data[...] = s.read() + 1
        else:
            s.data += 1  # (refused at the update: the view was taken earlier)
        return v * 1

    with pytest.raises(gc.TraceError, match=r"view .*test_review8_state_data.py:\d+"):
        gc.trace(fn)(np.ones(1))
    assert np.all(s.data == (2.0 if view == "atleast_1d_of_0d" else np.arange(4.0).reshape(2, 2)))


def test_zero_d_hyperparameter_state_through_data():
    """0-d States (a learning rate): in-place through .data and a name for it, as NumPy 0-d arrays."""
    def fn(x, lr):
        a = lr.data
        lr.data *= 0.5
        y = x * a  # (a is the array: the new value)
        a += 1.0
        return y, x * lr.data

    _check(fn, [np.array(0.5)], [np.ones(3), np.ones(3)])
    _check(fn, [np.array(0.5, np.float32)], [np.ones(3, np.float32)])


def test_learning_rate_state_halved_through_data_inside_the_step():
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1)
    lr = opt.param_groups[0].states["lr"]

    @gc.trace
    def step(x):
        opt.zero_grad()
        (p.read() * x).sum().backward()
        opt.step()
        lr.data *= 0.5
        return p.data

    got = [step(np.ones(2)).copy() for _ in range(3)]
    np.testing.assert_allclose([g[0] for g in got], [0.9, 0.85, 0.825])
    assert opt.param_groups[0]["lr"] == 0.0125


def test_dtypes_of_in_place_updates_follow_numpy_casting():
    def fn(x, f, i, b):
        f.data += x  # float64 into float32: same_kind
        i.data += 1
        i.data //= 2
        b.data &= x > 0.5
        return f.data * 1, i.data * 1, b.data * 1

    _check(fn, [np.arange(3, dtype=np.float32), np.array([1, 2, 3], np.int32), np.ones(3, bool)],
           [np.full(3, 1 / 3), np.array([0.0, 1.0, 0.7])])
    s = State(np.array([1, 2]))
    with pytest.raises(TypeError, match="same_kind"):  # (NumPy: UFuncTypeError, a TypeError)
        gc.trace(lambda x: s.data.__iadd__(x) * 1)(np.full(2, 0.5))
    t = State(np.array([1, 2], np.int32))

    def big(x):
        t.data += 2 ** 40
        return x

    with pytest.raises(OverflowError):
        gc.trace(big)(np.ones(1))
    np.testing.assert_array_equal(s.data, [1, 2])
    np.testing.assert_array_equal(t.data, [1, 2])


def test_whole_array_setitem_casts_as_numpy():
    def fn(x, i, b):
        i.data[...] = x  # float into int: unsafe cast (truncation), as NumPy's setitem
        b.data[:] = x
        return i.data * 1, b.data * 1

    _check(fn, [np.zeros(3, np.int64), np.zeros(3, bool)], [np.array([-1.9, 2.9, 0.0])])


def test_in_place_sort_and_matmul_on_data():
    def fn(x, s, m):
        d = s.data
        d.sort()
        m.data @= x
        return s.data * 1, m.data * 1

    _check(fn, [np.array([3.0, 1.0, 2.0]), np.arange(4.0).reshape(2, 2)], [np.array([[0.0, 1.0], [1.0, 0.0]])])


def test_data_read_inside_bodies_and_nested_loops():
    s = State(np.array([1.0, 2.0]))

    @gc.trace
    def f(x):
        s.data *= 2
        inner = gc.fori_loop(0, 2, lambda i, acc: gc.fori_loop(0, 2, lambda j, a: a + s.data, acc), x)
        branch = gc.cond(x.sum() >= 0, lambda v: v + s.data[1:], lambda v: v - s.data[:1], x[:1])
        return inner, branch

    a, b = f(np.zeros(2))
    np.testing.assert_array_equal(a, [8.0, 16.0])
    np.testing.assert_array_equal(b, [4.0])
    np.testing.assert_array_equal(s.data, [2.0, 4.0])


def test_a_stale_view_used_in_a_body_is_refused():
    s = State(np.array([1.0, 2.0]))

    @gc.trace
    def f(x):
        v = s.data[0:1]
        s.write(s.read() * 2)
        return gc.fori_loop(0, 2, lambda i, acc: acc + v, x)

    with pytest.raises(gc.TraceError, match="view"):
        f(np.zeros(1))


def test_data_in_grad_and_value_and_grad():
    s = State(np.array([1.0, 2.0, 3.0]))

    def f(x):
        return (x * s.data * x).sum()

    @gc.trace
    def h(x):
        v, g = gc.value_and_grad(f)(x)
        s.data += 1
        return v, g, gc.grad(f)(x), gc.grad(lambda a: (a ** 2).sum())(s.data)

    x = np.array([1.0, 2.0, 0.5])
    for k in range(2):
        e = np.array([1.0, 2.0, 3.0]) + k
        v, g, g2, g3 = h(x)
        np.testing.assert_allclose(v, (x * e * x).sum())
        np.testing.assert_allclose(g, 2 * e * x)
        np.testing.assert_allclose(g2, 2 * (e + 1) * x)
        np.testing.assert_allclose(g3, 2 * (e + 1))


def test_data_state_shared_by_two_traced_functions():
    s = State(np.zeros(2))
    read = gc.trace(lambda x: s.data * x)

    def bump(x):
        s.data += x
        return x

    write = gc.trace(bump)
    got = [read(np.ones(2))]
    for _ in range(2):
        write(np.ones(2))
        got.append(read(np.ones(2)))
    np.testing.assert_array_equal(got, [[0, 0], [1, 1], [2, 2]])
    assert read.signatures == 1 and write.signatures == 1


def test_nested_traced_function_updating_its_argument_updates_the_state():
    """Eager: g(s.data) with ``a += 1`` inside changes s."""
    s = State(np.arange(3.0))

    @gc.trace
    def g(a):
        a += 1
        return a * 2

    @gc.trace
    def f(x):
        return g(s.data), s.data * 1

    r, now = f(np.ones(1))
    np.testing.assert_array_equal(r, [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(now, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.data, [1.0, 2.0, 3.0])


def test_returned_data_is_fresh_and_not_changed_by_later_calls():
    s = State(np.zeros((2, 2)))

    @gc.trace
    def f(x):
        s.data += x
        return s.data, s.data, s.data.T, s.data[0], s.read()

    first = f(np.ones((2, 2)))
    kept = [a.copy() for a in first]
    second = f(np.ones((2, 2)))
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    for k, a in enumerate(second):
        assert not np.shares_memory(a, s.data)
        for b in second[k + 1:]:
            assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(second[0], np.full((2, 2), 2.0))


def test_trace_in_one_thread_does_not_change_data_in_another():
    s = State(np.arange(3.0))
    seen, started, done = [], threading.Event(), threading.Event()

    def other():
        started.wait(10)
        seen.append(type(s.data))
        done.set()

    t = threading.Thread(target=other)
    t.start()

    @gc.trace
    def f(x):
        d = s.data
        started.set()
        done.wait(10)
        return d + x

    np.testing.assert_array_equal(f(np.ones(3)), [1.0, 2.0, 3.0])
    t.join()
    assert seen == [np.ndarray]


def test_manual_sgd_steps_through_data_match_numpy():
    """Two ``w.data -= lr * w.grad`` steps in one call, and gradient accumulation across calls."""
    w = nn.Parameter(np.array([1.0, 2.0]))
    v = nn.Parameter(np.array([0.5, 0.5]))
    x = np.array([0.5, -1.0])

    @gc.trace
    def step(x):
        for _ in range(2):
            w.grad = None
            (((w.read() * x).sum() - 1.0) ** 2).backward()
            w.data -= 0.1 * w.grad
        ((v.read() * x).sum() ** 2).backward()  # (v.grad accumulates: no zero_grad)
        v.data -= 0.1 * v.grad
        return w.data, v.grad

    ew, ev, eg = np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.zeros(2)
    for _ in range(3):
        for _ in range(2):
            ew = ew - 0.1 * 2 * ((ew * x).sum() - 1.0) * x
        eg = eg + 2 * (ev * x).sum() * x
        ev = ev - 0.1 * eg
        got_w, got_g = step(x)
        np.testing.assert_allclose(got_w, ew, rtol=1e-12)
        np.testing.assert_allclose(got_g, eg, rtol=1e-12)
        np.testing.assert_allclose(v.data, ev, rtol=1e-12)
        np.testing.assert_allclose(v.grad, eg, rtol=1e-12)


def test_optimizer_buffers_and_batchnorm_stats_read_through_data():
    nn.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    bn.train()
    p = nn.Parameter(np.array([1.0, -2.0], np.float32))
    opt = optim.Adam([p], lr=0.1)
    x = np.random.default_rng(0).random((5, 3)).astype(np.float32)

    @gc.trace
    def step(x):
        opt.zero_grad()
        (p.read() * p.read()).sum().backward()
        opt.step()
        bn(x)
        st = opt.state[p]
        return st["exp_avg"].data, st["step"].data, bn.running_mean.data, bn.num_batches_tracked.data

    for k in range(2):
        avg, n, mean, nb = step(x + k)
        np.testing.assert_array_equal(avg, opt.state[p]["exp_avg"].data)
        assert float(n) == k + 1 == float(opt.state[p]["step"].data)
        np.testing.assert_array_equal(mean, bn.running_mean.data)
        assert int(nb) == k + 1 == int(bn.num_batches_tracked.data)


def test_module_to_dtype_and_load_state_dict_between_calls():
    nn.manual_seed(0)
    lin = nn.Linear(2, 1)

    @gc.trace
    def f(x):
        lin.weight.data *= 2.0
        return x @ lin.weight.data.T

    w0 = lin.weight.data.copy()
    np.testing.assert_allclose(f(np.ones((1, 2), np.float32)), (w0 * 2).sum(keepdims=True), rtol=1e-6)
    lin.to(np.float64)
    got = f(np.ones((1, 2)))
    assert got.dtype == np.float64 and lin.weight.data.dtype == np.float64
    np.testing.assert_allclose(got, (w0.astype(np.float64) * 4).sum(keepdims=True), rtol=1e-6)
    lin.load_state_dict({"weight": np.array([[5.0, 7.0]]), "bias": np.zeros(1)})
    np.testing.assert_array_equal(f(np.ones((1, 2))), [[24.0]])


def test_reseeding_and_zero_init_inside_a_trace_happen_on_every_call():
    drop = nn.Dropout(0.5)
    drop.train()
    p = nn.Parameter(np.ones(3))

    @gc.trace
    def f(x):
        nn.manual_seed(3)
        nn.init.zeros_(p)
        p.data += 1.0
        return drop(x)

    x = np.ones(16, np.float32)
    a, b = f(x).copy(), f(x).copy()
    nn.manual_seed(3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, drop(x))  # (eager dropout after the same seed)
    np.testing.assert_array_equal(p.data, 1.0)


def test_save_and_load_a_step_that_updates_data(tmp_path):
    s = State(np.zeros(3))
    w = State(np.zeros(3))

    @gc.trace
    def f(x):
        s.data += x
        w.data[...] = x * 2  # (written, never read)
        return s.data * 1, w.data + 1

    f(np.ones(3))
    path = os.path.join(tmp_path, "step.gcx")
    gc.save(f, path, dynamic=False)
    loaded = gc.load(path)
    a, b = loaded(np.ones(3))
    np.testing.assert_array_equal(a, 2.0)
    np.testing.assert_array_equal(b, 3.0)
    np.testing.assert_array_equal(loaded(np.ones(3))[0], 3.0)
    np.testing.assert_array_equal(s.data, 1.0)  # (the loaded function has its own copy)


def test_data_as_loop_and_branch_operands():
    s = State(np.array([1.0, 2.0]))
    m = State(np.arange(6.0).reshape(3, 2))

    @gc.trace
    def f(x):
        d = s.data
        r = gc.fori_loop(0, 2, lambda i, a: a * 2, d)  # (the carry starts from d; d itself is not changed)
        d += x
        scanned = gc.scan(lambda c, xi: (c + xi, c), x, m.data)[0]
        branch = gc.cond(x.sum() > 0, lambda v: v * 2, lambda v: v, s.data)
        return r, d * 1, scanned, branch

    r, d, scanned, branch = f(np.ones(2))
    np.testing.assert_array_equal(r, [4.0, 8.0])
    np.testing.assert_array_equal(d, [2.0, 3.0])
    np.testing.assert_array_equal(scanned, [7.0, 10.0])
    np.testing.assert_array_equal(branch, [4.0, 6.0])
    np.testing.assert_array_equal(s.data, [2.0, 3.0])


def test_copied_row_then_optimizer_step():
    """A copy of a view of p.data taken before opt.step() keeps the old values."""
    p = nn.Parameter(np.arange(6.0).reshape(2, 3))
    opt = optim.SGD([p], lr=0.1)

    @gc.trace
    def step(x):
        opt.zero_grad()
        first = p.data[0].copy()
        (p.read() * x).sum().backward()
        opt.step()
        return first, p.data[0] * 1

    first, now = step(np.ones((2, 3)))
    np.testing.assert_array_equal(first, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(now, [-0.1, 0.9, 1.9])


def test_check_finite_refuses_a_data_update():
    s = State(np.array([1.0, 2.0]))

    @gc.trace(check_finite=True)
    def f(x):
        s.data /= x
        return s.data * 1

    np.testing.assert_array_equal(f(np.ones(2)), [1.0, 2.0])
    with pytest.raises(gc.errors.NonFiniteError):
        f(np.zeros(2))
    np.testing.assert_array_equal(s.data, [1.0, 2.0])


def test_interpreter_device_matches():
    (es,), (cs,) = _twins(np.arange(3.0))

    def fn(x, s):
        s.data -= x
        return s.data[1:] * 1

    f = gc.trace(lambda x: fn(x, cs), device="numpy")
    for _ in range(2):
        _same(f(np.ones(3)), fn(np.ones(3), es))
        _same(cs.data, es.data)
