"""Third hostile review of issue 16's scan changes: ``matmul_acc`` (a weight's gradient summed
over a scan's steps by BLAS, beta = 1, graphc/ops/control.py ``_accumulate``), the in-place
update of that sum in the loop lowering (graphc/backend/control.py ``_updated_in_place``,
``Emitter.reuse``), and the shifted stacks (a carry stacked as each step began and as it ended,
two stacks in one workspace block a step apart: ``shifted_stacks``, ``MemoryPlan.shifted``,
graphc/backend/plan.py).

Each test compares the compiled code with graphc's NumPy interpreter (device="numpy") and, where
the graph itself could be wrong, with a plain NumPy loop or finite differences; the memory plan is
verified (GRAPHC_VERIFY=1, set by tests/conftest.py) on every compile."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backend import plan as memory_plan
from graphc.testing import check_grads

RNG = np.random.default_rng(2026)


def _normal(*shape, dtype="float64", scale=0.4):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def _leaves(tree):
    return gc.pytree.flatten(tree)[0]


def _assert_close(got, want, tol):
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want)
    for k, (g, e) in enumerate(zip(got, want)):
        g, e = np.asarray(g), np.asarray(e)
        assert g.dtype == e.dtype and g.shape == e.shape, (k, g.dtype, e.dtype, g.shape, e.shape)
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol, err_msg=f"leaf {k}")


def _against_interpreter(fn, args, tol):
    """Compile ``fn``, check it against the interpreter at ``args``; the compiled function."""
    compiled = gc.trace(fn)
    _assert_close(compiled(*args), gc.trace(fn, device="numpy")(*args), tol)
    return compiled


# -- matmul_acc: the weights' gradients summed per step ------------------------------------------

def _rnn(w, u, h0, xs, reverse):
    """An RNN whose input weight is used transposed (x @ u.T); loss of every h and the last."""
    def cell(h, x):
        h = np.tanh(x @ u.T + h @ w)
        return h, h
    h_last, hs = gc.scan(cell, h0, xs, reverse=reverse)
    return np.sum(hs ** 2) + np.sum(h_last * 0.5)


def _rnn_unrolled(w, u, h0, xs, reverse):
    h, total = h0, 0.0
    for x in (xs[::-1] if reverse else xs):
        h = np.tanh(x @ u.T + h @ w)
        total = total + np.sum(h ** 2)
    return total + np.sum(h * 0.5)


@pytest.mark.parametrize("batch,dtype,reverse", [(1, "float64", False), (7, "float32", True),
                                                 (8, "float64", True), (9, "float32", False),
                                                 (64, "float64", False)])
def test_value_and_gradient_of_an_rnn_either_side_of_the_batched_rows_threshold(batch, dtype, reverse):
    """Batches around BATCHED_ROWS (8): below it one long product after the loop, from it on a
    matmul_acc per step updated in place. Value and gradients w.r.t. both weights, h0 and xs,
    forward and reverse scans, float32 stays float32; against the interpreter and the unrolled
    loop (a different graph: no scan, no matmul_acc)."""
    tol = 1e-10 if dtype == "float64" else 2e-4
    args = (_normal(6, 6, dtype=dtype), _normal(6, 5, dtype=dtype), _normal(batch, 6, dtype=dtype),
            _normal(4, batch, 5, dtype=dtype))
    vg = gc.value_and_grad(lambda *a: _rnn(*a, reverse), argnums=(0, 1, 2, 3))
    compiled = _against_interpreter(vg, args, tol)
    unrolled = gc.value_and_grad(lambda *a: _rnn_unrolled(*a, reverse), argnums=(0, 1, 2, 3))
    _assert_close(compiled(*args), gc.trace(unrolled, device="numpy")(*args), tol)
    assert ("gemm_acc(" in compiled.source) == (batch >= 8)
    again = (_normal(6, 6, dtype=dtype),) + args[1:]  # (the same workspace, other weights)
    _assert_close(compiled(*again), gc.trace(unrolled, device="numpy")(*again), tol)


def _lin_power(w):  # the weight is the initial carry and the loop's const: both feed its gradient
    return np.sum(np.sin(gc.fori_loop(0, 4, lambda i, x: x @ w, w)))


def _carry_also_summed(w, x0):  # the carry that is the product's operand is also summed
    def body(i, c):
        x, s = c
        return np.tanh(x @ w), s + x
    x, s = gc.fori_loop(0, 4, body, (x0, x0 * 0.0))
    return np.sum(np.sin(x) + s ** 2)


def _weights_as_xs_and_const(w, ws, x0):  # one weight per step (xs) and one for every step
    def cell(x, wt):
        x = np.tanh(x @ wt + x @ w)
        return x, x
    return np.sum(gc.scan(cell, x0, ws)[1] ** 2)


def test_matrix_carries_whose_weight_gradients_are_summed_in_place():
    """fori_loop and scan gradients with matrix carries (9 rows: matmul_acc in place) where the
    weight is also the initial carry, where the product's operand is a carry also summed
    elsewhere, and where weights come both as xs and as a const; against the interpreter."""
    n = 9
    cases = ((_lin_power, (_normal(n, n, scale=0.3),)),
             (_carry_also_summed, (_normal(n, n, scale=0.3), _normal(n, n))),
             (_weights_as_xs_and_const, (_normal(n, n, scale=0.3), _normal(3, n, n, scale=0.3), _normal(n, n))))
    for fn, args in cases:
        compiled = _against_interpreter(gc.grad(fn, argnums=tuple(range(len(args)))), args, 1e-10)
        assert "gemm_acc(" in compiled.source, fn.__name__


def _nested(w, u, h0, xs):  # a scan in a fori_loop, and the cell rematerialized
    def outer(i, h):
        def cell(h, x):
            h = np.tanh(x @ u + h @ w)
            return h, h
        return gc.scan(gc.checkpoint(cell), h, xs)[0]
    return np.sum(gc.fori_loop(0, 2, outer, h0) ** 2)


def _scan_in_scan(w, u, h0, xss):
    def outer(h, xs):
        def cell(h, x):
            h = np.tanh(x @ u + h @ w)
            return h, h
        h, hs = gc.scan(cell, h, xs)
        return h, np.sum(hs)
    h, sums = gc.scan(outer, h0, xss, reverse=True)
    return np.sum(h ** 2) + np.sum(sums)


@pytest.mark.parametrize("fn", [_nested, _scan_in_scan])
def test_nested_loops_and_checkpoint_with_summed_weight_gradients(fn):
    """Loops in loops (each inner backward scan updates its sums in place, inside an outer loop
    that runs it again) and gc.checkpoint: compiled against the interpreter, the gradient
    against finite differences, and second order (float64) in the interpreter."""
    xs = _normal(3, 8, 2) if fn is _nested else _normal(2, 3, 8, 2)
    args = (_normal(3, 3), _normal(2, 3), _normal(8, 3), xs)
    compiled = _against_interpreter(gc.grad(fn, argnums=(0, 1, 2, 3)), args, 1e-10)
    assert "gemm_acc(" in compiled.source
    check_grads(fn, args, order=2)


def test_a_hessian_vector_product_through_summed_weight_gradients_compiled():
    """A Hessian-vector product through a scan at batch 8 (matmul_acc's own vjp, a backward scan
    of a backward scan), compiled, against the interpreter."""
    v = _normal(4, 4)
    grad_w = gc.grad(lambda w, u, h0, xs: _rnn(w, u, h0, xs, False), argnums=0)
    hvp = gc.grad(lambda w, u, h0, xs: np.sum(grad_w(w, u, h0, xs) * v), argnums=(0, 1, 2, 3))
    _against_interpreter(hvp, (_normal(4, 4), _normal(4, 5), _normal(8, 4), _normal(3, 8, 5)), 1e-10)


def test_a_gradient_of_symbolic_batch_or_length_compiles_once():
    """dynamic= batch: per-step products (matmul_acc of a symbolic contraction) for every batch
    from one compile; batches 1 and 0 (which graphc compiles apart, as for any dynamic= dim)
    right too: an empty contraction adds nothing."""
    vg = gc.value_and_grad(lambda w, u, h0, xs: _rnn(w, u, h0, xs, False), argnums=(0, 1, 2, 3))
    f = gc.trace(lambda w, u, h0, xs: vg(w, u, h0, xs), dynamic={"xs": {1: "B"}, "h0": {0: "B"}})
    w, u = _normal(4, 4), _normal(4, 5)
    for b in (9, 2, 8, 7, 1, 0):
        args = (w, u, _normal(b, 4), _normal(3, b, 5))
        _assert_close(f(*args), gc.trace(vg, device="numpy")(*args), 1e-10)
        if b == 7:
            assert f.signatures == 1
    by_length = gc.trace(lambda w, u, h0, xs: vg(w, u, h0, xs), dynamic={"xs": {0: "T"}})
    for t in (5, 2):  # (batch 9: a matmul_acc per step at every length)
        args = (w, u, _normal(9, 4), _normal(t, 9, 5))
        _assert_close(by_length(*args), gc.trace(vg, device="numpy")(*args), 1e-10)
    assert by_length.signatures == 1 and "gemm_acc(" in by_length.source


def test_a_saved_gradient_with_summed_weight_gradients_loads_and_runs(tmp_path):
    """gc.save of a scan's value and gradient (matmul_acc in the file, op set 2), loaded and run
    at batches either side of 8."""
    vg = gc.value_and_grad(lambda w, u, h0, xs: _rnn(w, u, h0, xs, False), argnums=(0, 1))

    def step(h0, xs_by_batch, w, u):
        return vg(w, u, h0, np.swapaxes(xs_by_batch, 0, 1))
    path = str(tmp_path / "grad.gcx")
    w, u = _normal(4, 4), _normal(4, 5)
    gc.save(gc.trace(step), path, _normal(9, 4), _normal(9, 3, 5), w, u)
    loaded = gc.load(path)
    for b in (1, 8, 12):
        args = (_normal(b, 4), _normal(b, 3, 5), w, u)
        _assert_close(loaded(*args), gc.trace(step, device="numpy")(*args), 1e-10)


def test_the_background_compile_and_the_cuda_backend_give_the_interpreters_gradient():
    """compile="background" (the interpreter's first call, then the worker's code: in-place sums
    and shifted stacks, the graph sent to another process) and device="cuda" (the simulator in
    the tests: matmul_acc as a device call), batch 8, against the interpreter."""
    vg = gc.value_and_grad(lambda w, u, h0, xs: _rnn(w, u, h0, xs, False), argnums=(0, 1, 2, 3))
    args = (_normal(8, 8), _normal(8, 5), _normal(8, 8), _normal(3, 8, 5))
    want = gc.trace(vg, device="numpy")(*args)
    background = gc.trace(vg, compile="background")
    _assert_close(background(*args), want, 1e-10)
    assert background.wait_compiled(300)
    _assert_close(background(*args), want, 1e-10)
    assert "gemm_acc(" in background.source
    _assert_close(gc.trace(vg, device="cuda", to_host=True)(*args), want, 1e-10)


# -- shifted stacks: a carry stacked as each step began and as it ended ------------------------

def _loop(step, carry, xs, reverse=False):
    """The plain NumPy scan: final carry and stacked ys."""
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    ys = [None] * len(xs)
    for t in order:
        carry, ys[t] = step(carry, xs[t])
    return carry, tuple(np.stack([y[k] for y in ys]) for k in range(len(ys[0])))


def _shifted(compiled, args) -> bool:
    """Whether the memory plan of ``compiled`` (already compiled for ``args``) shifts stacks."""
    return bool(memory_plan.plan(compiled.lower(*args).graph).shifted)


def _swap_step(c, x):  # two carries trading places: each stack is the other's a step apart
    a, b = c
    return (b, np.sin(a) + x), (a, b)


def _same_step(c, x):  # two carries taking one new value, stacked twice
    a, b = c
    n = a * 0.5 + b * 0.25 + x
    return (n, n), (a, n, b, n)


def _mixed_step(c, x):  # an int carry, a 2-D carry, a 0-d carry, a pass-through, an xs carry
    i, h, s, p, z = c
    h2 = np.tanh(h + x[:, None])
    return (i * 3 + 1, h2, s + np.sum(x), p, x), (i, i * 3 + 1, h, h2, s, s + np.sum(x), p, z, x)


def _summaries(ys):
    """Reductions of the stacks (the stacks stay inside the graph, so the plan may shift them)
    and a product of two of them (both read after the loop)."""
    return tuple(np.sum(y * (k + 1.0), axis=0) for k, y in enumerate(ys)) + (ys[0] * ys[1][::-1],)


@pytest.mark.parametrize("name,step,carry,length,reverse", [
    ("swap", _swap_step, (8,), 5, False),
    ("swap-reverse", _swap_step, (8,), 5, True),
    ("same-length-1", _same_step, (16,), 1, False),
    ("same-reverse-f32-2d", _same_step, (2, 8), 3, True),
    ("same-48-bytes", _same_step, (6,), 4, False),  # (a step not a multiple of 64 bytes)
])
def test_user_scans_stacking_a_carry_as_each_step_began_and_ended(name, step, carry, length, reverse):
    """User-written scans whose ys hold a carry before and after each step: values after two
    calls with other values (the workspace block is reused), forward and reverse, length 1."""
    dtype = "float32" if "f32" in name else "float64"

    def fn(a0, b0, xs):
        (a, b), ys = gc.scan(step, (a0, b0), xs, reverse=reverse)
        return (a, b) + _summaries(ys)

    def eager(a0, b0, xs):
        (a, b), ys = _loop(step, (a0, b0), xs, reverse)
        return (a, b) + _summaries(ys)

    args = (_normal(*carry, dtype=dtype), _normal(*carry, dtype=dtype), _normal(length, *carry, dtype=dtype))
    compiled = gc.trace(fn)
    for call in range(2):
        if call:
            args = tuple(_normal(*a.shape, dtype=dtype) for a in args)
        _assert_close(compiled(*args), eager(*args), 1e-6)
    assert _shifted(compiled, args) == (name != "same-48-bytes")


def test_a_scan_mixing_int_0d_passed_through_and_xs_carries_with_shifted_stacks():
    """Shifted stacks next to an int carry (its own stacks, 128 bytes a step), a 0-d carry (never
    shifted), a carry passed through unchanged and a carry that becomes each step's x."""
    def fn(i0, h0, s0, p0, z0, xs):
        c, ys = gc.scan(_mixed_step, (i0, h0, s0, p0, z0), xs)
        return c + _summaries(ys)

    def eager(i0, h0, s0, p0, z0, xs):
        c, ys = _loop(_mixed_step, (i0, h0, s0, p0, z0), xs)
        return tuple(c) + _summaries(ys)

    def args():
        return (RNG.integers(-5, 5, 16), _normal(16, 4), np.float64(RNG.standard_normal()),
                _normal(16), _normal(16), _normal(5, 16))
    compiled = gc.trace(fn)
    for _ in range(2):
        a = args()
        _assert_close(compiled(*a), eager(*a), 1e-12)
    assert _shifted(compiled, a)


def test_stacks_returned_to_the_user_are_fresh_and_survive_mutation():
    """Stacks the user gets back are never shifted (their own arrays): correct, fresh on every
    call, not views of each other, and unchanged by the next call after the user wrote into
    the previous results; a view of one returned keeps the other stack right too."""
    def step(h, x):
        h2 = np.tanh(h * 0.9 + x)
        return h2, (h, h2)

    def fn(h0, xs):
        _, (old, new) = gc.scan(step, h0, xs)
        return old, new, new[1:], np.sum(old * new)

    def eager(h0, xs):
        _, (old, new) = _loop(step, h0, xs)
        return old, new, new[1:], np.sum(old * new)

    compiled = gc.trace(fn)
    args = (_normal(16), _normal(3, 16))
    first = compiled(*args)
    _assert_close(first, eager(*args), 1e-12)
    kept = [np.array(a) for a in first]
    assert not np.shares_memory(first[0], first[1])
    for a in first[:3]:
        a[...] = 99.0
    args2 = (_normal(16), _normal(3, 16))
    second = compiled(*args2)
    _assert_close(second, eager(*args2), 1e-12)
    assert not any(np.shares_memory(a, b) for a in first[:3] for b in second[:3])
    _assert_close(first[3], kept[3], 0)


# (89fe215 placed a pair of empty stacks in a workspace the entry never received: NameError ws)
@pytest.mark.parametrize("carry", [(0,), (8, 0)])
def test_a_scan_stacking_an_empty_carry_before_and_after_each_step(carry):
    """An empty carry stacked as each step began and ended (an RNN of hidden size 0 takes the
    same path in its gradient's forward loop): NumPy gives empty results, graphc must too."""
    def step(h, x):
        h2 = h * 0.5 + x
        return h2, (h, h2)

    def fn(h0, xs):
        h, (old, new) = gc.scan(step, h0, xs)
        return h, np.sum(old, axis=0) + np.sum(new, axis=0)

    def eager(h0, xs):
        h, (old, new) = _loop(step, h0, xs)
        return h, np.sum(old, axis=0) + np.sum(new, axis=0)

    args = (np.ones(carry), np.ones((4,) + carry))
    _assert_close(gc.trace(fn)(*args), eager(*args), 0)


def test_the_gradient_of_an_rnn_of_hidden_size_zero():
    """Value and gradient of an RNN with an empty hidden state: the value is the constant, every
    gradient an empty (or zero) array of its argument's shape, as the interpreter gives."""
    vg = gc.value_and_grad(lambda w, u, h0, xs: _rnn(w, u, h0, xs, False) + 1.0, argnums=(0, 1, 2, 3))
    args = (_normal(0, 0), _normal(0, 5), _normal(8, 0), _normal(3, 8, 5))
    _assert_close(gc.trace(vg)(*args), gc.trace(vg, device="numpy")(*args), 0)
