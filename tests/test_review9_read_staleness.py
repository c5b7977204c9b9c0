"""Review 9: ``State.read()`` inside a trace is a DataView (commits ae1ac5d, 217ba3b, 8cab650).

The oracle is the same Python code run eagerly: a State holds a plain NumPy array there,
``read()`` is that array itself, ``write(v)`` writes into it, and ``opt.step()`` runs eagerly
when the gradients are set by hand. Where eager code cannot run (``loss.backward()``), a twin
model is stepped eagerly with the gradients the compiled step left in ``p.grad``, or the result
is computed by hand with NumPy.

Strict xfails are bugs; each docstring gives the eager result and graphc's. False refusals (a
TraceError on a program whose eager and compiled results would agree) come first, then silent
differences. The plain tests are the library paths that call ``read()`` (every optimizer,
schedulers, BatchNorm, Dropout, gradient accumulation, two backwards, a second forward after the
step, loops, gc.grad, check_finite, save/load, device="numpy", the README's training snippets):
regression guards for the staleness check.
"""
import os

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.state import State

from conftest import training_step


def _run(fn, make, x):
    """``fn(x, *states)`` eagerly and compiled on twin States: (eager result, eager States),
    (compiled result, compiled States)."""
    es, cs = make(), make()
    want = np.array(fn(x, *es), copy=True)
    got = np.asarray(gc.trace(lambda x: fn(x, *cs))(x))
    return (want, [np.array(s.data, copy=True) for s in es]), (got, [np.array(s.data, copy=True) for s in cs])


def _check(fn, make, x):
    (want, want_states), (got, got_states) = _run(fn, make, x)
    np.testing.assert_array_equal(got, want)
    for g, w in zip(got_states, want_states):
        np.testing.assert_array_equal(g, w)


def _refused(fn, make, x):
    """Eager runs; traced, a value read before a write and used after it is a TraceError
    naming the line (not NumPy's answer, but not a silent wrong one)."""
    fn(x, *make())
    with pytest.raises(gc.TraceError, match=r"read before .* written .*test_review9_read_staleness\.py:\d+"):
        gc.trace(lambda x: fn(x, *make()))(x)


def _read_op_write(op):
    """``fn(x, s)``: ``v = op(s.read()); s.write(s.read() + x); return v * 1``."""
    def fn(x, s):
        v = op(s.read())
        s.write(s.read() + x)
        return v * 1
    return fn


def _sgd_parameter(lr):
    """``make() -> (p, opt)``: a Parameter [0 1 2] with grad [1 1 1], and plain SGD over it."""
    def make():
        p = nn.Parameter(np.arange(3.0))
        p.grad = np.ones(3)
        return p, optim.SGD([p], lr=lr)
    return make


def _state(*shape):
    n = int(np.prod(shape)) if shape else 1
    return lambda: [State(np.arange(float(n)).reshape(shape))]


# =====================================================================================
# Bugs: false refusals and regressions of programs that worked at e441ea3 (strict xfail)
# =====================================================================================

# NumPy returns a NEW array for these, so `v` keeps the values read even after the State is
# written; graphc builds them from reshape/transpose/slice/broadcast nodes, and bind() marks any
# such node of a DataView as a DataView (a view of the State) -> refused. At e441ea3 (before
# 8cab650) each of these returned the right, old values.
COPIES = {
    "reshape of a transpose (non-contiguous: a copy)": lambda v: v.T.reshape(-1),
    "np.ravel of a transpose": lambda v: np.ravel(v.T),
    "reshape of a strided slice": lambda v: v[:, ::2].reshape(-1),
    "np.tile(v, 1)": lambda v: np.tile(v, 1),
    "np.repeat(v, 1, axis=0)": lambda v: np.repeat(v, 1, axis=0),
    "np.roll(v, 0)": lambda v: np.roll(v, 0),
    "np.stack([v])[0]": lambda v: np.stack([v])[0],
}


_STILL_REFUSED = pytest.mark.xfail(strict=True, raises=gc.TraceError, reason=(
    "a reshape/ravel of a non-contiguous view is a copy in NumPy; graphc does not track contiguity "
    "and keeps it a DataView: refused after a write (a false refusal, not a silent difference)"))


@pytest.mark.parametrize("spelling", [pytest.param(k, marks=_STILL_REFUSED) if "reshape" in k or "ravel" in k
                                      else k for k in COPIES])
def test_copy_of_a_read_made_by_view_ops_is_refused_after_a_write(spelling):
    """``v = OP(s.read()); s.write(s.read() + 1); return v * 1`` with s = arange(6).reshape(2, 3).
    Eager: OP returns a copy, so v keeps the values read (e.g. [0 3 1 4 2 5] for v.T.reshape(-1),
    [[0 1 2] [3 4 5]] for tile/repeat/roll/stack). graphc: TraceError "a value of State read
    before State was written ... is used after that write". (At e441ea3: the right values.)"""
    op = COPIES[spelling]

    fn = _read_op_write(op)
    _check(fn, _state(2, 3), np.float64(1.0))


def test_writing_back_the_value_read_is_refused():
    """``v = s.read(); s.write(v); return v * x``: eagerly s.write(v) copies the array onto
    itself, v keeps its values: [0 1 2] * x. graphc: TraceError (v "used after that write").
    (At e441ea3: the right values.)"""
    def fn(x, s):
        v = s.read()
        s.write(v)
        return v * x

    _check(fn, _state(3), np.ones(3))


@pytest.mark.parametrize("make, key, values", [
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), "momentum", (0.9, 0.8, 0.7)),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.1), "weight_decay", (0.1, 0.2, 0.3)),
    (lambda ps: optim.Adam(ps, lr=0.1), "betas", ((0.9, 0.999), (0.8, 0.99), (0.85, 0.9))),
    (lambda ps: optim.RMSprop(ps, lr=0.1, centered=True), "alpha", (0.99, 0.9, 0.8)),
], ids=["SGD-momentum", "SGD-weight_decay", "Adam-betas", "RMSprop-alpha"])
def test_changing_a_numeric_hyperparameter_between_calls_does_not_retrace(make, key, values):
    """README: "Hyperparameters are 0-d states, so changing them never retraces". Setting
    ``opt.param_groups[0]['momentum']`` (or betas, weight_decay, alpha) between calls: at e441ea3
    one signature; now each new value retraces (ParamGroup.__getitem__ adds a guard on the number
    when Optimizer._guard / _buffer_names read it inside the trace), so a momentum or beta
    schedule compiles every step and warns RetraceWarning after 8. (Results stay right.)"""
    x = np.ones((4, 3), np.float32)
    model = nn.Linear(3, 2)
    opt = make(model.parameters())

    @gc.trace
    def step(x):
        opt.zero_grad()
        loss = (model(x) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    for v in values:
        opt.param_groups[0][key] = v
        step(x)
    assert step.signatures == 1


# =====================================================================================
# Bugs: silent differences (strict xfail)
# =====================================================================================

@pytest.mark.parametrize("spelling", ["einsum ij->ij", "einsum ij", "diff n=0"])
def test_identity_functions_of_a_read_are_views(spelling):
    """``v = F(s.read()); s.write(s.read() + 1); return v * 1`` with F one of
    np.einsum("ij->ij", .), np.einsum("ij", .), np.diff(., n=0): NumPy returns the array itself
    (or a view), eager gives the new values [[1 2 3] [4 5 6]]. graphc: [[0 1 2] [3 4 5]], silently
    (the same spellings of s.data were fixed in 217ba3b). Now refused, naming the line."""
    op = {"einsum ij->ij": lambda v: np.einsum("ij->ij", v), "einsum ij": lambda v: np.einsum("ij", v),
          "diff n=0": lambda v: np.diff(v, n=0)}[spelling]

    fn = _read_op_write(op)
    _refused(fn, _state(2, 3), np.float64(1.0))


@pytest.mark.parametrize("spelling", ["reshape(())", pytest.param("[0, ...]", marks=pytest.mark.xfail(
    strict=True, reason="x[0, ...] is a 0-d view in NumPy and x[0] a scalar copy: graphc's index op "
                        "does not tell them apart and takes both for copies (a silent difference)"))])
def test_zero_dimensional_view_of_a_read(spelling):
    """``v = s.read().reshape(())`` (s of shape (1,)) or ``s.read()[0, ...]`` (s of shape (3,)),
    then ``s.write(s.read() + 1); return v * 1``. NumPy: a 0-d view, eager 1.0. graphc: 0.0
    (bind() treats every 0-d result of a view op as a copy, as x[0] is)."""
    op = {"reshape(())": lambda v: v.reshape(()), "[0, ...]": lambda v: v[0, ...]}[spelling]
    make = _state(1) if spelling == "reshape(())" else _state(3)

    fn = _read_op_write(op)
    if spelling == "[0, ...]":
        _check(fn, make, np.float64(1.0))
    else:
        _refused(fn, make, np.float64(1.0))


@pytest.mark.parametrize("case", ["1-d", "0-d", "argument written"])
def test_in_place_update_of_a_read_after_a_write_reaches_the_state(case):
    """``s.write(x * 2); v = s.read(); v += 1; return v * 1``. Eager: v IS the State's array,
    so the State becomes 2x + 1 = [3 3 3] (0-d: 3.0). graphc returns [3 3 3] but leaves the
    State at [2 2 2], silently: the update went to the tracer only. With ``s.write(x)`` (an
    argument) instead, eager leaves x alone and updates s; graphc refuses: "x += value on a
    traced argument ... NumPy would change the caller's array" (it would not). (Before any write,
    ``v = s.read(); v += 1`` is refused the same way.)"""
    def fn(x, s):
        s.write(x if case == "argument written" else x * 2)
        v = s.read()
        v += 1
        return v * 1

    make = _state() if case == "0-d" else _state(3)
    _check(fn, make, np.float64(1.0) if case == "0-d" else np.ones(3))


def test_in_place_update_of_a_parameter_read_after_the_step():
    """``opt.step(); w = p.read(); w -= x; return w * 1`` (p.grad set by hand, SGD lr=0.1).
    Eager: w is p's array, p ends at [-2.1 -1.1 -0.1]. graphc returns that too but p stays at
    the stepped [-0.1 0.9 1.9]."""
    make = _sgd_parameter(lr=0.1)

    def fn(x, p, opt):
        opt.step()
        w = p.read()
        w -= x
        return w * 1

    (pe, oe), (pc, oc) = make(), make()
    want = np.array(fn(np.full(3, 2.0), pe, oe))
    got = gc.trace(lambda x: fn(x, pc, oc))(np.full(3, 2.0))
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(pc.data, pe.data)


@pytest.mark.parametrize("first", ["data[...] = 0", "write(zeros)"])
def test_read_of_a_constant_written_state_is_checked(first):
    """``s.data[...] = 0`` (or ``s.write(np.zeros(3))``), ``v = s.read()``, ``s.data += x``,
    ``return v * 1``. Eager: v is the State's array: [1 1 1]. graphc: [0 0 0], silently
    (Builder.read_view returns the constant as is, not a DataView)."""
    def fn(x, s):
        if first == "write(zeros)":
            s.write(np.zeros(3))
        else:
            s.data[...] = 0
        v = s.read()
        d = s.data
        d += x
        return v * 1

    _refused(fn, _state(3), np.ones(3))


@pytest.mark.xfail(strict=True, reason="(older than these commits) p.grad inside a trace is a snapshot: "
                                       "an update of the gradient does not show through an earlier name")
@pytest.mark.parametrize("update", ["zero_grad(set_to_none=False)", "p.grad += x"])
def test_name_for_grad_sees_a_later_in_place_update(update):
    """p.grad = ones, ``g = p.grad``, then ``opt.zero_grad(set_to_none=False)`` (eager:
    ``g[...] = 0``) or ``p.grad += x``, ``return g * x`` with x = 2. Eager (and PyTorch): g is the
    gradient array, updated in place: [0 0 0] / [6 6 6]. graphc: [2 2 2] (the old gradient)."""
    make = _sgd_parameter(lr=0.1)

    def fn(x, p, opt):
        g = p.grad
        if update == "p.grad += x":
            p.grad += x
        else:
            opt.zero_grad(set_to_none=False)
        return g * x

    (pe, oe), (pc, oc) = make(), make()
    want = np.array(fn(np.full(3, 2.0), pe, oe))
    got = gc.trace(lambda x: fn(x, pc, oc))(np.full(3, 2.0))
    np.testing.assert_array_equal(got, want)


@pytest.mark.xfail(strict=True, reason="(older) a compiled zero_grad(set_to_none=False) hands p.grad a new "
                                       "array; the caller's name for the old one is not zeroed")
def test_compiled_zero_grad_keeps_the_gradient_array():
    """``g0 = p.grad`` outside, then a function calling ``opt.zero_grad(set_to_none=False)``.
    Eager: zeroes the array in place, g0 == [0 0 0] and g0 is p.grad. Compiled: g0 stays
    [1 1 1] and p.grad is a new array."""
    p = nn.Parameter(np.arange(3.0))
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)
    g0 = p.grad

    @gc.trace
    def f(x):
        opt.zero_grad(set_to_none=False)
        return x * 1

    f(np.ones(1))
    np.testing.assert_array_equal(p.grad, np.zeros(3))
    np.testing.assert_array_equal(g0, np.zeros(3))


@pytest.mark.parametrize("reset", ["p.data[...] = 0", "nn.init.zeros_(p)", "p.write(np.zeros(3))"])
def test_parameter_reset_to_a_constant_then_backward(reset):
    """Inside the step: ``with gc.no_grad(): p.data[...] = 0`` (or nn.init.zeros_(p), or
    p.write(np.zeros(3))), then ``loss = (p * x).sum(); loss.backward(); return loss, p.grad``.
    PyTorch: loss 0, p.grad == x. graphc: TraceError "backward(): the loss depends on no Parameter
    that requires grad" (p.read() returns the written ndarray, so nothing records the read). At
    e441ea3 the first two spellings traced (with their own, older, bug)."""
    p = nn.Parameter(np.ones(3))

    def f(x):
        with gc.no_grad():
            if reset == "p.data[...] = 0":
                p.data[...] = 0
            elif reset == "nn.init.zeros_(p)":
                nn.init.zeros_(p)
            else:
                p.write(np.zeros(3))
        loss = (p * x).sum()
        loss.backward()
        return loss, p.grad * 1

    x = np.arange(3.0)
    loss, g = gc.trace(f)(x)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(g, x)


@pytest.mark.xfail(strict=True, reason="a loop or branch that passes s.read() through returns a snapshot; "
                                       "eagerly it returns the State's array itself")
@pytest.mark.parametrize("construct", ["cond", "fori_loop", "scan", "while_loop"])
def test_control_flow_passing_a_read_through_is_a_view(construct):
    """``v = gc.cond(pred, lambda y: y, lambda y: y * 2, s.read())`` (or a fori_loop/scan whose
    body returns the carry unchanged, a while_loop that runs no iteration), then
    ``s.write(s.read() + x); return v * 1``. Eager: the construct hands back the State's array
    itself: [1 2 3]. graphc: [0 1 2], silently (the DataView check does not reach through regions).
    Contrived, but the same code path as a value returned through a region."""
    def fn(x, s):
        v = s.read()
        if construct == "cond":
            v = gc.cond(x.sum() > 0, lambda y: y, lambda y: y * 2, v)
        elif construct == "fori_loop":
            v = gc.fori_loop(0, 2, lambda i, c: c, v)
        elif construct == "scan":
            v, _ = gc.scan(lambda c, xi: (c, xi), v, x)
        else:
            v = gc.while_loop(lambda c: c.sum() < -1, lambda c: c + 1, v)
        s.write(s.read() + x)
        return v * 1

    _check(fn, _state(3), np.ones(3))


S_ALIASED = State(np.arange(3.0))
D_ALIAS = S_ALIASED.data  # a global name for the State's array (NumPy: the same array)


@pytest.mark.xfail(strict=True, reason="(older) a captured global aliasing a State is read at call start "
                                       "and never sees a write of the State in the same call")
def test_global_alias_of_a_state_array_sees_the_write():
    """``D = s.data`` at module level; traced ``s.write(s.read() + x); return D * 1``. Eager: D is
    s's array: [1 2 3]. graphc: [0 1 2] (D is captured by reference, as a separate input)."""
    S_ALIASED.data[...] = np.arange(3.0)

    def fn(x):
        S_ALIASED.write(S_ALIASED.read() + x)
        return D_ALIAS * 1

    want = fn(np.ones(3))
    S_ALIASED.data[...] = np.arange(3.0)
    got = gc.trace(fn)(np.ones(3))
    np.testing.assert_array_equal(got, want)


def test_two_dropout_draws_in_one_trace_match_numpy():
    """The dropout generator (graphc/nn/random.py) relies on int64 wraparound ("NumPy and Numba
    both wrap"). Two draws of shape (6, 5) in one trace (a model with Dropout run twice: a second
    forward after opt.step(), or two backward passes) fuse into one loop; the compiled bits in
    columns 2-4 of every row are one constant, -9223372032559808512, not NumPy's (device="numpy"
    and eager agree; shapes (5, 6) fail too), so the compiled
    masks and losses differ (loss 1.30 vs eager 1.17 for a small MLP). A single draw of that
    shape, and shapes (30,), (2, 3), (4, 4), agree. The generated source run as plain Python
    agrees with NumPy; compiled by Numba (whose LLVM IR has `mul nsw i64`: overflow is poison) it
    does not, also without graphc's LLVM options, and it does with NUMBA_OPT=0 (numba 0.68.1,
    llvmlite 0.50.0). Fixed: the hash multiplies and adds with ops.bitwise.wrapping_mul/_add."""
    def draws(gen):
        return gen.bits((6, 5)), gen.bits((6, 5))

    want = draws(nn.Generator(3))
    gen = nn.Generator(3)
    got = gc.trace(lambda x: draws(gen))(np.ones(1))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_integer_overflow_wraps_as_numpy(dtype):
    """The cause of the dropout bug, in user code: compiled ``x + 1 > x`` was true at the largest
    int64 (Numba's signed arithmetic is nsw: overflow undefined), NumPy's is false (it wraps)."""
    def f(x):
        return (np.where(x + 1 > x, 1, 0), np.where(x * 2 > x, 1, 0), np.where(-x < 0, 1, 0),
                x * 3 - 7, x - x.max())

    info = np.iinfo(dtype)
    x = np.array([info.max, info.min, 5, -5, 2**30], dtype)
    with np.errstate(over="ignore"):
        want = f(x)
    for device in ("cpu", "numpy"):
        got = gc.trace(f, device=device)(x)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
            assert g.dtype == w.dtype


# =====================================================================================
# Regression guards: what works
# =====================================================================================

# -- the staleness check itself -------------------------------------------------------
@pytest.mark.parametrize("spelling", ["read", "T", "row", "ravel", "opt.step"])
def test_a_read_used_after_the_write_is_refused_naming_the_line(spelling):
    """Eager shows the new values through the array read; graphc refuses, naming this file's line,
    and writes nothing."""
    p = nn.Parameter(np.arange(6.0).reshape(2, 3))
    p.grad = np.ones((2, 3))
    opt = optim.SGD([p], lr=0.1)

    def fn(x):
        v = {"read": p.read, "T": lambda: p.T, "row": lambda: p[0], "ravel": lambda: np.ravel(p.read()),
             "opt.step": p.read}[spelling]()
        if spelling == "opt.step":
            opt.step()
        else:
            with gc.no_grad():
                p.data *= 2
        return v * x

    with pytest.raises(gc.TraceError, match=r"read before .* written .*test_review9_read_staleness\.py:\d+"):
        gc.trace(fn)(np.float64(1.0))
    np.testing.assert_array_equal(p.data, np.arange(6.0).reshape(2, 3))


def test_a_stale_read_captured_by_a_loop_body_is_refused_naming_the_line():
    s = State(np.arange(3.0))

    def fn(x):
        v = s.read()
        s.write(v + 1)
        return gc.fori_loop(0, 2, lambda i, c: c + v, x)

    with pytest.raises(gc.TraceError, match=r"read before .* written .*test_review9_read_staleness\.py:\d+"):
        gc.trace(fn)(np.ones(3))
    np.testing.assert_array_equal(s.data, np.arange(3.0))


@pytest.mark.parametrize("spelling", ["copy", "astype", "concatenate", "fancy", "mask", "times 1", "flatten",
                                      "sum", "np.array"])
def test_a_copy_of_a_read_keeps_the_old_values(spelling):
    """NumPy copies: the values read survive the write, eagerly and compiled."""
    op = {"copy": lambda v: v.copy(), "astype": lambda v: v.astype(np.float64),
          "concatenate": lambda v: np.concatenate([v]), "fancy": lambda v: v[[0, 1]],
          "mask": lambda v: v[np.array([True, False])], "times 1": lambda v: v * 1,
          "flatten": lambda v: v.flatten(), "sum": lambda v: v.sum(axis=0),
          "np.array": lambda v: v + 0}[spelling]

    fn = _read_op_write(op)
    _check(fn, _state(2, 3), np.float64(1.0))


def test_swap_with_a_copy_and_read_again_after_write():
    def fn(x, a, b):
        va = a.read().copy()
        a.write(b.read())
        b.write(va + x)
        return a.read() * 1 + b.read()  # fresh reads after the writes

    def make():
        return [State(np.arange(3.0)), State(np.arange(3.0) * 10)]

    (want, ws), (got, gs) = _run(fn, make, np.ones(3))
    np.testing.assert_array_equal(got, want)
    for g, w in zip(gs, ws):
        np.testing.assert_array_equal(g, w)


def test_data_views_follow_numpy():
    """``p.data`` after ``opt.step()`` is the updated array; ``d = p.data; d *= 0.5`` and
    ``p.data[...] = v`` write p (README)."""
    make = _sgd_parameter(lr=0.5)

    def fn(x, p, opt):
        opt.step()
        after = p.data * 1
        with gc.no_grad():
            d = p.data
            d *= 0.5
        halved = p.data * 1
        p.data[...] = p.data + x
        return after, halved, p.read() * 1

    (pe, oe), (pc, oc) = make(), make()
    want = fn(np.ones(3), pe, oe)
    want = tuple(np.array(w, copy=True) for w in want)
    got = gc.trace(lambda x: fn(x, pc, oc))(np.ones(3))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(pc.data, pe.data)


# -- optimizers, schedulers, BatchNorm, Dropout: compiled step vs an eager twin -----------
OPTIMIZERS = {
    "SGD-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "SGD-nesterov-wd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "SGD-dampening-maximize": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.5, dampening=0.1, maximize=True),
    "Adam-wd-amsgrad": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
    "AdamW-amsgrad": lambda ps: optim.AdamW(ps, lr=0.01, amsgrad=True),
    "AdamW-small-betas": lambda ps: optim.AdamW(ps, lr=0.01, betas=(0.3, 0.4)),
    "RMSprop-centered-momentum-wd": lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.9,
                                                             weight_decay=0.1),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.1,
                                        initial_accumulator_value=0.1),
}

_RNG = np.random.default_rng(9)
X = _RNG.standard_normal((6, 4)).astype(np.float32)
Y = _RNG.standard_normal((6, 2)).astype(np.float32)


def _model(bn=False, drop=False):
    gen = nn.Generator(3)
    layers = [nn.Linear(4, 5)] + ([nn.BatchNorm1d(5)] if bn else []) + [nn.ReLU()]
    layers += [nn.Dropout(0.3, generator=gen)] if drop else []
    return nn.Sequential(*layers, nn.Linear(5, 2)), gen


def _twins(bn=False, drop=False):
    nn.init.manual_seed(5)
    a, ga = _model(bn, drop)
    b, gb = _model(bn, drop)
    b.load_state_dict(a.state_dict())
    return (a, ga), (b, gb)


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-6)


def _train_against_eager(make_opt, steps=3, bn=False, drop=False, sched=None, zero="none",
                         second_forward=False, two_backward=False, device="cpu", eval_after=False):
    """The compiled step (forward, backward, step) on model A; model B runs the same forward and
    ``opt.step()`` eagerly with A's gradients. Losses, parameters, buffers, optimizer state and
    the dropout counter agree."""
    (a, ga), (b, gb) = _twins(bn, drop)
    opt_a, opt_b = make_opt(a.parameters()), make_opt(b.parameters())
    sa, sb = (sched(opt_a), sched(opt_b)) if sched else (None, None)
    mse = nn.functional.mse_loss

    @gc.trace(device=device)
    def step(x, y):
        if zero != "keep":
            opt_a.zero_grad(set_to_none=zero == "none")
        loss = mse(a(x), y)
        loss.backward()
        if two_backward:
            (a(x) ** 2).mean().backward()
        opt_a.step()
        return (loss, mse(a(x), y)) if second_forward else loss

    for _ in range(steps):
        got = step(X, Y)
        want = [mse(b(X), Y)]
        if two_backward:
            b(X)
        for pa, pb in zip(a.parameters(), b.parameters()):
            pb.grad = np.array(pa.grad, copy=True)
        opt_b.step()
        if second_forward:
            want.append(mse(b(X), Y))
        for g, w in zip(got if second_forward else (got,), want):
            _close(g, w)
        if sa:
            sa.step()
            sb.step()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        _close(va, vb)
    for pa, pb in zip(a.parameters(), b.parameters()):
        for (na, st_a), (nb, st_b) in zip(opt_a.state[pa].items(), opt_b.state[pb].items()):
            assert na == nb
            _close(st_a.data, st_b.data)
    assert int(ga.counter.data) == int(gb.counter.data)
    if eval_after:  # BatchNorm's running statistics, Dropout off
        a.eval()
        b.eval()
        _close(gc.trace(a)(X), b(X))
    return step


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n != "AdamW-amsgrad"])  # (that one: below)
def test_every_optimizer_compiled_matches_eager(name):
    step = _train_against_eager(OPTIMIZERS[name])
    assert step.signatures == 1


@pytest.mark.parametrize("case", ["batchnorm-dropout-eval", "scheduler", "accumulate", "zero-to-zeros",
                                  "two-backward-second-forward", "numpy-device"])
def test_training_paths_compiled_match_eager(case):
    kw = {"batchnorm-dropout-eval": {"bn": True, "drop": True, "eval_after": True},
          "scheduler": {"sched": lambda o: optim.lr_scheduler.StepLR(o, 1, 0.5)},
          "accumulate": {"zero": "keep"},
          "zero-to-zeros": {"zero": "zeros"},
          # (with Dropout too: see test_two_dropout_draws_in_one_trace_match_numpy)
          "two-backward-second-forward": {"two_backward": True, "second_forward": True},
          "numpy-device": {"device": "numpy", "bn": True, "drop": True}}[case]
    make = OPTIMIZERS["SGD-momentum"] if case in ("accumulate", "scheduler") else OPTIMIZERS["AdamW-amsgrad"]
    step = _train_against_eager(make, **kw)
    if case == "scheduler":
        assert step.signatures == 1  # a new learning rate is data


def test_gradient_accumulation_over_compiled_calls_adds_up():
    (a, _), _ = _twins()

    @gc.trace
    def accumulate(x, y):
        loss = nn.functional.mse_loss(a(x), y)
        loss.backward()
        return loss

    accumulate(X, Y)
    g1 = [np.array(p.grad, copy=True) for p in a.parameters()]
    accumulate(X, Y)
    for p, g in zip(a.parameters(), g1):
        _close(p.grad, 2 * g)


def test_weight_tying_compiled_matches_eager():
    """One Parameter in two layers: its gradient is the sum of both uses; Adam steps it once."""
    def tied():
        l1, l2 = nn.Linear(4, 4), nn.Linear(4, 4)
        l2.weight = l1.weight
        return nn.Sequential(l1, nn.Tanh(), l2)

    nn.init.manual_seed(1)
    a = tied()
    b = tied()
    b.load_state_dict(a.state_dict())
    assert len(list(a.parameters())) == 3
    opt_a, opt_b = optim.Adam(a.parameters(), lr=0.01), optim.Adam(b.parameters(), lr=0.01)
    x = X

    @gc.trace
    def step(x):
        opt_a.zero_grad()
        loss = (a(x) ** 2).mean()
        loss.backward()
        opt_a.step()
        return loss

    for _ in range(2):
        got = step(x)
        _close(got, (b(x) ** 2).mean())
        for pa, pb in zip(a.parameters(), b.parameters()):
            pb.grad = np.array(pa.grad, copy=True)
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        _close(pa.data, pb.data)


# -- gradients read after backward and after the step ----------------------------------
def test_grad_read_after_backward_and_after_step_and_clipping():
    w = nn.Parameter(np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0]]))
    opt = optim.SGD([w], lr=0.1)
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])

    @gc.trace
    def step(x):
        opt.zero_grad()
        loss = ((x @ w) ** 2).sum()
        loss.backward()
        g = w.grad * 1
        norm = np.sqrt((w.grad ** 2).sum())
        w.grad *= np.minimum(1.0, 1.0 / norm)  # clip to norm 1
        opt.step()
        return loss, g, w.grad * 1, w.data * 1

    w0 = np.array(w.data, copy=True)
    loss, g, clipped, after = step(x)
    want_g = 2 * x.T @ (x @ w0)
    _close(loss, ((x @ w0) ** 2).sum())
    _close(g, want_g)
    _close(clipped, want_g / np.linalg.norm(want_g))
    _close(after, w0 - 0.1 * want_g / np.linalg.norm(want_g))
    _close(w.grad, clipped)


# -- the README's training snippets ---------------------------------------------------
# (The README's training and manual-update snippets: tests/test_nn.py and
# tests/test_torch_semantics.py run them; this review ran them again and they passed.)


def test_save_and_load_a_training_step_resumes_identically(tmp_path):
    (a, _), (b, _) = _twins()
    opt_a, opt_b = optim.Adam(a.parameters(), lr=0.01), optim.Adam(b.parameters(), lr=0.01)

    sa, sb = gc.trace(training_step(a, opt_a, nn.MSELoss())), gc.trace(training_step(b, opt_b, nn.MSELoss()))
    sa(X, Y)
    sb(X, Y)
    path = os.path.join(tmp_path, "step.gcx")
    gc.save(sa, path)
    resumed = gc.load(path)
    for _ in range(2):
        _close(resumed(X, Y), sb(X, Y))
    for k, v in b.state_dict().items():
        _close(resumed.state_dict()["model"][k], v)


# -- loops, gradients, check_finite ------------------------------------------------------
def test_loops_read_parameters_before_and_after_a_manual_update():
    w = nn.Parameter(np.eye(3) * 0.5)
    b = nn.Parameter(np.ones(3))
    x = np.array([[0.1, 0.2, 0.3], [-0.3, 0.0, 0.2]])

    @gc.trace
    def step(x):
        y = gc.fori_loop(0, 2, lambda i, c: np.tanh(c @ w + b), x)
        c, ys = gc.scan(lambda c, xi: (c + xi @ w.T, c.sum()), np.zeros(3), x)
        z = gc.cond(x.sum() > 0, lambda a: a @ w, lambda a: a - b, x)
        loss = (y ** 2).sum() + c.sum() + ys.sum() + z.sum()
        loss.backward()
        with gc.no_grad():
            w.data -= 0.1 * w.grad
            b.data -= 0.1 * b.grad
        w.grad = None
        b.grad = None
        return loss, gc.fori_loop(0, 2, lambda i, c: c @ w + b, x)

    _loss, y2 = step(x)
    wn, bn_ = w.data, b.data
    assert not np.allclose(wn, np.eye(3) * 0.5)
    _close(y2, (x @ wn + bn_) @ wn + bn_)


def test_grad_of_functions_reading_states():
    w = nn.Parameter(np.array([[1.0, 2.0], [3.0, -1.0]]))
    s = State(np.array([0.5, -2.0]))
    f = lambda x: ((x @ w) ** 2).sum() + (x * s.read()).sum() + (w.T[0] * x).sum()
    x = np.array([1.0, -1.0])
    want = 2 * w.data @ (x @ w.data) + s.data + w.data[:, 0]
    _close(gc.grad(f)(x), want)
    v, g = gc.value_and_grad(f)(x)
    _close(g, want)
    _close(v, f(x))


def test_check_finite_refuses_and_writes_nothing():
    p = nn.Parameter(np.ones(3))
    s = State(np.zeros(3))

    @gc.trace(check_finite=True)
    def f(x):
        v = s.read().copy()
        s.write(v + x)
        p.data[...] = np.log(x)
        return v

    np.testing.assert_array_equal(f(np.ones(3)), np.zeros(3))
    with pytest.raises(gc.errors.NonFiniteError):
        f(-np.ones(3))
    np.testing.assert_array_equal(s.data, np.ones(3))
    np.testing.assert_array_equal(p.data, np.zeros(3))
