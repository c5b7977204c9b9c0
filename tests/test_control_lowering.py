"""Loops and branches through the pipeline and the CPU backend: what the generated code does
(graphc/backend/control.py), the passes inside bodies, export, symbolic sizes, effects.
(tests/test_control_flow.py checks values, gradients and errors of the public functions.)"""
from __future__ import annotations

import itertools
import os
import re

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(7)
W = RNG.standard_normal((3, 3)) * 0.3
U = RNG.standard_normal((5, 3)) * 0.3


def rnn(h0, xs):
    def cell(h, x):
        h = np.tanh(h @ W + x @ U)
        return h, h
    return gc.scan(cell, h0, xs)


def descend(x0, lr):
    def step(i, x):
        return x - lr * gc.gradient(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2), x)
    return gc.fori_loop(0, 50, step, x0)


def _entry_lines(source):
    body = source.split("def entry(")[1]
    return body.split("\n@njit")[0].splitlines()


def test_the_loop_is_a_loop_and_its_buffers_are_made_before_it():
    f = gc.trace(descend)
    x0 = np.array([-1.0, 1.5, 0.5])
    got = f(x0, 1e-3)
    x = x0.copy()
    for _ in range(50):
        x = x - 1e-3 * gc.grad(lambda v: np.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2))(x)
    np.testing.assert_allclose(got, x, rtol=1e-12)
    lines = _entry_lines(f.source)
    loop = next(k for k, ln in enumerate(lines) if re.match(r"\s+for t_\d+ in range\(50\):", ln))
    depth = len(lines[loop]) - len(lines[loop].lstrip())
    inside = [ln for ln in lines[loop + 1:] if len(ln) - len(ln.lstrip()) > depth or not ln.strip()]
    assert not any("empty_c(" in ln or "zeros_c(" in ln for ln in inside), "an allocation per step"
    assert sum("empty_c(" in ln for ln in lines[:loop]) >= 2  # the carry's and the body's buffers


def test_compile_time_does_not_grow_with_the_trip_count():
    """The generated source for 3 and for 3000 steps differs only in the trip count."""
    sources = []
    for n in (3, 3000):
        f = gc.trace(lambda x, n=n: gc.fori_loop(0, n, lambda i, v: np.sin(v) * 0.5 + 0.1, x))
        f(np.ones(4))
        sources.append(f.source)
    assert len(sources[0].splitlines()) == len(sources[1].splitlines())
    assert sources[0].replace("range(3)", "range(3000)").replace("stop=3)", "stop=3000)") == sources[1]


def test_passes_run_inside_bodies_and_invariants_move_out():
    def f(x, w, lr):
        def body(i, v):
            return np.tanh(v @ w.T) * (lr * 2.0) + 1.0
        return gc.fori_loop(0, 4, body, x)

    tf = gc.trace(f)
    args = (RNG.standard_normal((2, 3)), W, 0.5)
    np.testing.assert_allclose(tf(*args), f(*args), rtol=1e-12)
    graph = tf.lower(*args).graph
    loop = next(n for n in graph.nodes if n.op == "fori_loop")
    assert {"transpose", "mul"} <= {n.op for n in graph.nodes}  # moved out: w.T, lr * 2.0
    body_ops = [n.op for n in loop.regions[0].nodes]
    assert "transpose" not in body_ops and body_ops.count("fused") == 1 and "tanh" not in body_ops


def test_small_and_large_carries_swapped_passed_through_and_duplicated():
    def f(a, b, big):
        def body(i, c):
            x, y, z, _ = c
            return y, x + 1.0, np.tanh(z) + i, z  # swap two carries, a large one, a passed-through one
        return gc.fori_loop(0, 5, body, (a, b, big, big))

    args = (np.zeros(3), np.ones(3), RNG.standard_normal((40, 40)))
    for got, want in zip(gc.trace(f)(*args), f(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_loop_never_writes_or_returns_its_operands():
    x = np.arange(4.0)
    keep = x.copy()
    for fn in (lambda v: gc.fori_loop(0, 0, lambda i, c: c, v),
               lambda v: gc.fori_loop(0, 3, lambda i, c: c, v),
               lambda v: gc.while_loop(lambda c: c[0][0] > 10, lambda c: c, (v, v))[1],
               lambda v: gc.cond(v[0] < 1, lambda a: a, lambda a: a * 2, v),
               lambda v: gc.scan(lambda c, t: (c, t), v, v)[1]):
        for mode in ("eager", "never"):
            out = gc.trace(fn, compile=mode)(x)
            assert not np.shares_memory(out, x)
            out[...] = -1
            np.testing.assert_array_equal(x, keep)


def test_a_print_in_a_body_runs_every_step_once_even_when_differentiated(capfd):
    def f(x):
        def body(i, v):
            gc.print("step {}", i)
            return np.sin(v)
        return np.sum(gc.fori_loop(0, 3, body, x))

    value, grad = gc.trace(gc.value_and_grad(f))(np.ones(2))
    assert capfd.readouterr().out.split("\n")[:3] == ["step 0", "step 1", "step 2"]
    _, unused = gc.trace(lambda x: (x * 2, gc.fori_loop(0, 2, lambda i, v: (gc.print("{}", i), v)[1], x)))(np.ones(1))
    assert capfd.readouterr().out.split() == ["0", "1"]  # (its result unused: the loop still runs)
    np.testing.assert_allclose(grad, np.cos(np.sin(np.sin(np.ones(2)))) * np.cos(np.sin(np.ones(2))) * np.cos(1.0))


def test_a_symbolic_length_compiles_once_for_every_length():
    f = gc.trace(lambda h0, xs: np.sum(rnn(h0, xs)[1], axis=0), dynamic={"xs": {0: "T"}})
    for t in (3, 7, 2, 11):
        h0, xs = RNG.standard_normal((2, 3)), RNG.standard_normal((t, 2, 5))
        np.testing.assert_allclose(f(h0, xs), np.sum(rnn(h0, xs)[1], axis=0), rtol=1e-12)
    assert "length=T" in str(f.template(h0, xs))


def test_export_round_trip_and_onnx_refusal(tmp_path):
    f = gc.trace(rnn)
    args = (RNG.standard_normal((2, 3)), RNG.standard_normal((4, 2, 5)))
    path = os.fspath(tmp_path / "rnn.gcx")
    gc.save(f, path, *args, dynamic=False)
    loaded = gc.load(path)
    for got, want in zip(loaded(*args), rnn(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(gc.ExportError, match="scan"):
        gc.onnx.export(f, os.fspath(tmp_path / "rnn.onnx"), *args, dynamic_batch=False)


def test_scan_ys_may_hold_none():
    def f(h, xs):
        return gc.scan(lambda c, x: (c + x, (c, None)), h, xs)

    args = (np.ones(3), RNG.standard_normal((4, 3)))
    (c, (ys, nothing)), (c2, (ys2, _)) = gc.trace(f)(*args), f(*args)
    assert nothing is None
    np.testing.assert_allclose(c, c2, rtol=1e-12)
    np.testing.assert_allclose(ys, ys2, rtol=1e-12)


def _rnn_loss(wh, wx, h0, xs):
    def cell(h, x):
        h = np.tanh(x @ wx + h @ wh)
        return h, h
    return np.sum(gc.scan(cell, h0, xs)[1] ** 2)


def _rnn_unrolled(wh, wx, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = np.tanh(x @ wx + h @ wh)
        total = total + np.sum(h ** 2)
    return total


def test_weight_gradients_of_a_scan_are_one_product_after_the_loop():
    """sum_t x_t^T g_t (a weight's gradient in each step) becomes one matrix product of the
    stacked x and g after the backward loop (a batch of 2); the gradient equals the unrolled
    program's."""
    wx = RNG.standard_normal((5, 3)) * 0.3
    args = (W, wx, RNG.standard_normal((2, 3)), RNG.standard_normal((6, 2, 5)))
    grad = gc.trace(gc.grad(_rnn_loss, argnums=(0, 1)))
    got = grad(*args)
    want = gc.trace(gc.grad(_rnn_unrolled, argnums=(0, 1)))(*args)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    graph = grad.lower(*args).graph
    back = [n for n in graph.nodes if n.op == "scan" and n.attrs["reverse"]][0]
    assert [n.op for n in back.regions[0].nodes].count("matmul") == 1  # (only h's cotangent: g @ w.T)
    assert sum(n.op == "matmul" for n in graph.nodes) == 2  # the two weights' products, after the loop


def test_a_scan_saves_per_step_only_what_varies_and_cannot_be_recomputed_cheaply():
    """The forward loop of a gradient saves, per step, the carry it started from and the values
    the backward loop reads; not a reshaped weight (the backward body makes it again, once, out
    of its loop) nor tanh's 1 - h * h (arithmetic of the saved h, done again in the backward
    body). The backward step multiplies by a transposed copy of the weight made before the loop,
    and its outer product (the output's cotangent times wo) is a broadcast multiply."""
    wh, wx, wo = RNG.standard_normal((3, 3)) * 0.5, RNG.standard_normal((5, 3)) * 0.3, RNG.standard_normal(3)

    def loss(wh, wx, wo, h0, xs):
        def cell(h, x):
            h = np.tanh(x @ wx + h @ wh)
            return h, h @ wo
        return np.sum(gc.scan(cell, h0, xs)[1] ** 2)

    def unrolled(wh, wx, wo, h0, xs):
        h, total = h0, 0.0
        for x in xs:
            h = np.tanh(x @ wx + h @ wh)
            total = total + np.sum((h @ wo) ** 2)
        return total

    T, B = 40, 2  # (80 rows in all: the transposed copy repays itself, passes/hoist.py)
    args = (wh, wx, wo, RNG.standard_normal((B, 3)), RNG.standard_normal((T, B, 5)))
    grad = gc.trace(gc.value_and_grad(loss, argnums=(0, 1, 2)))
    value, grads = grad(*args)
    want_value, want = gc.trace(gc.value_and_grad(unrolled, argnums=(0, 1, 2)))(*args)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    for g, e in zip(grads, want):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    graph = grad.lower(*args).graph
    forward, back = [n for n in graph.nodes if n.op == "scan"]
    stacked = [v.type.shape for v in forward.outputs[2:]]  # (after the final carry and the ys)
    assert stacked == [(T, B, 3), (T, B, 3)], stacked  # the carry it started from, and h
    body = back.regions[0]
    assert not any(n.op == "matmul" and n.attrs.get("transpose_b") for n in body.nodes)
    assert sum(n.op == "matmul" for n in body.nodes) == 2  # g @ wh.T, and wo's gradient h^T g
    transposes = [n for n in graph.nodes if n.op == "transpose"]
    assert [n.inputs[0] for n in transposes if n.outputs[0].type.shape == (3, 3)] == [graph.inputs[0]]


@pytest.mark.parametrize("batch, hidden", [(1, 3), (4, 3), (8, 3), (16, 3), (8, 96), (16, 96)])
def test_weight_gradients_of_a_wide_batch_are_added_into_their_sum_in_place(batch, hidden):
    """A weight's gradient over a scan is a product per step added into the running sum by BLAS
    (matmul_acc, beta = 1) in the sum's own buffer (no product written and read back, no buffer
    swapped) where the step's product has at least 8 rows and one row per 8 KB of the sum
    (graphc.ops.control._pays_per_step: a 96 x 96 float64 weight, 72 KB, needs 9); else one long
    product after the loop. Both equal the unrolled program's gradient."""
    from graphc.ops.control import _pays_per_step
    wh, wx = RNG.standard_normal((hidden, hidden)) * 0.5 / np.sqrt(hidden), RNG.standard_normal((5, hidden)) * 0.3
    args = (wh, wx, RNG.standard_normal((batch, hidden)), RNG.standard_normal((7, batch, 5)))
    grad = gc.trace(gc.grad(_rnn_loss, argnums=(0, 1)))
    got = grad(*args)
    want = gc.trace(gc.grad(_rnn_unrolled, argnums=(0, 1)))(*args)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    per_step = [_pays_per_step(batch, gc.ir.TensorType(w.shape, "float64")) for w in (wh, wx)]
    assert per_step == [batch >= 8 and hidden < 96 or batch >= 16, batch >= 8]  # (the rule, spelled out)
    graph = grad.lower(*args).graph
    back = [n for n in graph.nodes if n.op == "scan" and n.attrs["reverse"]][0]
    body_ops = [n.op for n in back.regions[0].nodes]
    assert body_ops.count("matmul_acc") == sum(per_step)
    assert sum(n.op == "matmul" for n in graph.nodes) == 2 - sum(per_step)  # the long products after the loop
    lines = _entry_lines(grad.source)
    summed = [re.match(r"\s*gemm_acc\(\w+, \w+, (\w+), True, False\)", l) for l in lines]
    sums = [m.group(1) for m in summed if m]
    assert len(sums) == sum(per_step) and all(s.startswith("c_") for s in sums), sums  # the carries themselves
    start = next(k for k, l in enumerate(lines) if "range(7 - 1, -1, -1)" in l)
    depth = len(lines[start]) - len(lines[start].lstrip())
    loop = [l for l in itertools.takewhile(lambda l: len(l) - len(l.lstrip()) > depth, lines[start + 1:])]
    for s in sums:  # read and written by its gemm_acc alone in the loop: no copy, no swap
        assert len([l for l in loop if re.search(rf"\b{s}\b", l)]) == 1, (s, loop)


def test_matmul_acc_in_a_loop_body_is_in_place_only_where_nothing_else_reads_the_sum():
    """The lowering writes matmul_acc into its carry's buffer only where the old sum is read by
    it alone: not where the sum is also the product's operand, is read by another node, or is
    returned; each against the interpreter (device="numpy")."""
    from graphc.trace import bind
    a, b = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    w = RNG.standard_normal((3, 3)) * 0.5

    def own_operand(c0):  # c + c @ w: the old sum is the product's left operand
        return gc.fori_loop(0, 3, lambda i, c: bind("matmul_acc", c, c, w), c0)

    def read_elsewhere(c0):  # the old sum also feeds the second carry
        return gc.fori_loop(0, 3, lambda i, s: (bind("matmul_acc", s[0], a, b, transpose_a=True),
                                                s[1] + np.sum(s[0])), (c0, 0.0))

    def returned(c0, xs):  # the old sum is also a per-step output
        return gc.scan(lambda c, x: (bind("matmul_acc", c, x, b, transpose_a=True), c), c0, xs)

    def in_place(c0, xs):
        return gc.scan(lambda c, x: (bind("matmul_acc", c, x, b, transpose_a=True), np.sum(x)), c0, xs)

    c0, xs = RNG.standard_normal((3, 3)), RNG.standard_normal((5, 4, 3))
    for fn, args, acc_in_place in ((own_operand, (c0,), False), (read_elsewhere, (c0,), False),
                                   (returned, (c0, xs), False), (in_place, (c0, xs), True)):
        compiled = gc.trace(fn)
        got, want = compiled(*args), gc.trace(fn, device="numpy")(*args)
        for g, e in zip(gc.pytree.flatten(got)[0], gc.pytree.flatten(want)[0]):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=fn.__name__)
        into = [re.match(r"\s*gemm_acc\(\w+, \w+, (\w+),", l) for l in _entry_lines(compiled.source)]
        targets = [m.group(1) for m in into if m]
        assert len(targets) == 1 and targets[0].startswith("c_") == acc_in_place, (fn.__name__, targets)


def test_second_order_gradient_through_the_summed_weight_gradient():
    """Gradients of the gradient of a scan whose weight gradient is summed per step
    (matmul_acc's own vjp), against finite differences in float64."""
    from graphc.testing import check_grads
    wh, wx = RNG.standard_normal((3, 3)) * 0.5, RNG.standard_normal((5, 3)) * 0.3
    args = (wh, wx, RNG.standard_normal((8, 3)) * 0.5, RNG.standard_normal((4, 8, 5)) * 0.5)
    check_grads(lambda wh, wx, h0, xs: gc.grad(_rnn_loss, argnums=(0, 1))(wh, wx, h0, xs), args, order=1)
    check_grads(_rnn_loss, args, order=2)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_carry_saved_as_its_step_began_and_ended_is_written_once_per_step(reverse):
    """A gradient's forward loop saves the carry each step began with and the new carry h (the
    backward step reads both): the memory plan puts the two stacks in one block a step apart
    (graphc/backend/control.py: shifted_stacks), and the loop writes h once per step. Forward
    and reverse scans, against the unrolled program; a step of 48 bytes (not a multiple of the
    plan's 64-byte alignment) keeps two stacks."""
    from graphc.backend import plan as memory_plan

    def loss(wh, wx, h0, xs):
        def cell(h, x):
            h = np.tanh(x @ wx + h @ wh)
            return h, h
        return np.sum(gc.scan(cell, h0, xs, reverse=reverse)[1] ** 2)

    def unrolled(wh, wx, h0, xs):
        h, total = h0, 0.0
        for x in (xs[::-1] if reverse else xs):
            h = np.tanh(x @ wx + h @ wh)
            total = total + np.sum(h ** 2)
        return total

    wh, wx = RNG.standard_normal((3, 3)) * 0.5, RNG.standard_normal((5, 3)) * 0.3
    for batch, shared in ((8, True), (2, False)):  # (a step of 8 x 3 float64: 192 bytes; 2 x 3: 48)
        args = (wh, wx, RNG.standard_normal((batch, 3)), RNG.standard_normal((6, batch, 5)))
        grad = gc.trace(gc.grad(loss, argnums=(0, 1, 2)))
        got = grad(*args)
        want = gc.trace(gc.grad(unrolled, argnums=(0, 1, 2)))(*args)
        for g, e in zip(got, want):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
        graph = grad.lower(*args).graph
        placed = memory_plan.plan(graph)
        memory_plan.verify_plan(graph, placed)
        assert bool(placed.shifted) == shared
        lines = _entry_lines(grad.source)
        start = next(k for k, l in enumerate(lines) if l.strip().startswith("for t_"))
        depth = len(lines[start]) - len(lines[start].lstrip())
        loop = list(itertools.takewhile(lambda l: len(l) - len(l.lstrip()) > depth, lines[start + 1:]))
        # h (the ys, also the next step's start) and 1 - h * h (the backward step reads no h
        # here) are computed straight into their step of the stack; the step's start is copied
        # there where the stacks are apart
        copied = [l for l in loop if re.search(r"\w+\[t_\d+, \w+, \w+\] = ", l)]
        assert len(copied) == (0 if shared else 1), copied
        direct = [l for l in loop if re.fullmatch(r"\s*v\d+ = v\d+\[t_\d+\]", l)]  # (not the xs read)
        assert len(direct) == 2, loop


def test_ys_computed_straight_into_their_stack_are_right_and_fresh():
    """A ys value made in its step is computed straight into that step of the stacked output
    (graphc/backend/control.py: _stacked_directly). The final carry, when it is that value, is
    still a fresh array apart from the stack; a value stacked twice fills both stacks; reverse
    and nested scans. Against the interpreter."""
    w = RNG.standard_normal((3, 3)) * 0.5

    def carry_and_ys(h0, xs):  # (h, hs): the final h and the stack of every h
        return gc.scan(lambda h, x: (np.tanh(h @ w + x),) * 2, h0, xs)

    def twice(h0, xs):
        return gc.scan(lambda h, x: (np.tanh(h @ w + x), (np.tanh(h @ w + x), np.tanh(h @ w + x) * 1.0)),
                       h0, xs, reverse=True)

    def nested(h0, xs):  # a scan in a fori_loop's body: its stacks are the outer body's values
        return gc.fori_loop(0, 3, lambda i, h: gc.scan(lambda c, x: (np.sin(c * x) + c, c * 2.0), h, xs)[1][-1], h0)

    h0, xs = RNG.standard_normal((400, 3)), RNG.standard_normal((5, 400, 3))  # (1200 elements: swapped)
    for fn in (carry_and_ys, twice, nested):
        compiled = gc.trace(fn)
        got, want = compiled(h0, xs), gc.trace(fn, device="numpy")(h0, xs)
        for g, e in zip(gc.pytree.flatten(got)[0], gc.pytree.flatten(want)[0]):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=fn.__name__)
    h, hs = gc.trace(carry_and_ys)(h0, xs)
    assert not np.shares_memory(h, hs)
    np.testing.assert_array_equal(h, hs[-1])
    hs[-1] = 0.0  # (the user's stack: the carry is not a view of it)
    assert np.all(h != 0.0)
    again = gc.trace(carry_and_ys)(h0 * 0.5, xs)  # a second call: new values, the old results kept
    assert not np.shares_memory(again[0], h) and not np.shares_memory(again[1], hs)
