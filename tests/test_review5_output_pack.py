"""Hostile review of the output pack (plan.OutputPack, 'WIP output pack').

Attacks that held are plain tests; no bug was found (no xfail tests). Each compares the
compiled call (compile="eager") with eager NumPy or the NumPy interpreter, and checks that
every returned array is fresh: no bytes shared with another result, an input, or an
earlier call's results.
"""
import time

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.backend import plan as memory


def leaves(t):
    if isinstance(t, (list, tuple)):
        for x in t:
            yield from leaves(x)
    else:
        yield t


def assert_same(got, ref):
    got, ref = list(leaves(got)), list(leaves(ref))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        g, r = np.asarray(g), np.asarray(r)
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12)


def assert_fresh(arrays, inputs=()):
    arrays = [a for a in arrays if isinstance(a, np.ndarray) and a.ndim]
    for i, a in enumerate(arrays):
        assert a.flags.writeable
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
        for x in inputs:
            assert not np.shares_memory(a, x)


X = np.random.default_rng(0).standard_normal((4, 4))
XI = np.random.default_rng(1).integers(0, 4, (4, 4))
ODD = {
    "sort": (lambda a: (np.sort(a, axis=1), np.sort(a, axis=0), np.sort(-a, axis=1)), X),
    "argsort": (lambda a: (np.argsort(a, axis=1, kind="stable"), np.argsort(-a, axis=0, kind="stable")), XI),
    "argmax": (lambda a: (np.argmax(a, axis=1), np.argmin(a, axis=1), np.argmax(-a, axis=0)), X),
    "bool": (lambda a: (a > 0, a < 0, np.isfinite(a)), X),
    "int": (lambda a: (a % 3, a // 2, a + 1), XI),
    "float32": (lambda a: (a + 1, a * 2, a / 3), X.astype(np.float32)),
    "size1": (lambda a: (a[:1] + 1, a[:1] * 2, a[:, :1] - 3), X),
    "linalg": (lambda a: (np.linalg.inv(a), np.linalg.solve(a + 1, a), a @ a.T), X),
    "scans": (lambda a: (np.cumsum(a, 0), np.cumprod(a, 1), np.flip(a, 0) + 0), X),
    "shapes": (lambda a: (np.concatenate([a, -a]), np.stack([a, a + 1]), np.pad(a, 1), (a + 1).T), X),
    "constants": (lambda a: (np.zeros((4, 4)), np.ones((4, 4)), np.eye(4), np.full((4, 4), 2.0) + a), X),
    "one_hot": (lambda a: (gc.one_hot(a[0], 4), gc.one_hot(a[1], 4)), XI),
    "softmax": (lambda a: (gc.softmax(a, axis=1), gc.softmax(a, axis=0)), X),
    "same_value_twice": (lambda a: (lambda b: (b, b, a * 2, a * 3))(a + 1), X),
}


@pytest.mark.parametrize("name", list(ODD))
def test_pack_min_1_odd_ops_match_numpy_and_are_fresh(monkeypatch, name):
    monkeypatch.setattr(memory, "PACK_MIN", 1)
    fn, a = ODD[name]
    f = gc.trace(fn, compile="eager")
    first, second = f(a), f(a)
    assert "view_c(ob," in f.source
    assert_same(first, fn(a))
    assert_same(second, fn(a))
    assert_fresh(list(first) + list(second), [a])


def test_parameters_named_like_the_buffers_in_an_outlined_chain():
    rng = np.random.default_rng(1)

    def fwd(ob, ws, offsets, p0):
        h, hs = ob, []
        for w in ws:
            h = np.tanh(h @ w + offsets) + 0.5 * h + p0
            hs.append(h)
        return hs

    a, o, p0 = (rng.standard_normal((8, 8)) for _ in range(3))
    ws = [rng.standard_normal((8, 8)) * 0.3 for _ in range(12)]
    f = gc.trace(fwd, compile="eager")
    got = f(a, ws, o, p0)
    assert "view_c(ob," in f.source and "offsets_c" in f.source
    assert_same(got, fwd(a, ws, o, p0))
    assert_fresh(list(got) + list(f(a, ws, o, p0)), [a, o, p0, *ws])


def test_packed_outputs_read_again_by_later_outlined_runs(monkeypatch):
    monkeypatch.setattr(memory, "PACK_MIN", 1)
    rng = np.random.default_rng(2)
    h0, ws = rng.standard_normal((8, 8)), [rng.standard_normal((8, 8)) * 0.3 for _ in range(16)]

    def loss(h, ws):
        for w in ws:
            h = np.tanh(h @ w) + 0.5 * h
        return np.sum(h * h)

    def both(h, ws):
        hs, x = [], h
        for w in ws:
            x = np.tanh(x @ w) + 0.5 * x
            hs.append(x)
        _, gs = gc.value_and_grad(loss, argnums=1)(h, ws)
        return hs, [g @ g for g in gs], gs, np.sum(hs[0] * hs[-1])

    f = gc.trace(both, compile="eager")
    got = f(h0, ws)
    assert "view_c(ob," in f.source
    assert_same(got, gc.trace(both, device="numpy")(h0, ws))
    assert_fresh(list(leaves(got)) + list(leaves(f(h0, ws))), [h0, *ws])


@pytest.mark.parametrize("make_opt", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                      lambda ps: optim.Adam(ps, lr=1e-2)], ids=["sgd", "adam"])
def test_training_step_with_equal_layers_matches_the_interpreter(make_opt):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 8)), rng.standard_normal((16, 8))
    runs, initial = [], None
    for device in ("cpu", "numpy"):
        model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(8, 8), nn.Tanh())], nn.Linear(8, 8))
        if initial is None:
            initial = {k: np.array(v) for k, v in model.state_dict().items()}
        else:
            model.load_state_dict(initial)
        opt = make_opt(model.parameters())

        def step(x, y):
            opt.zero_grad()
            loss = np.mean((model(x) - y) ** 2)
            loss.backward()
            opt.step()
            return loss

        f = gc.trace(step, device=device, compile="eager") if device == "cpu" else gc.trace(step, device=device)
        losses = [f(x, y) for _ in range(3)]
        held = [p.grad for p in model.parameters()]
        kept = [g.copy() for g in held]
        losses.append(f(x, y))
        for g, k in zip(held, kept):  # a gradient the user kept is not written by the next step
            np.testing.assert_array_equal(g, k)
        if device == "cpu":
            assert "view_c(ob," in f.source
            arrays = [np.asarray(p) for p in model.parameters()] + [p.grad for p in model.parameters()]
            assert_fresh(arrays)
        runs.append((model, losses))
    (m1, l1), (m2, l2) = runs
    np.testing.assert_allclose(l1, l2, rtol=1e-5)  # float32 parameters, math="fast"
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_accumulated_grads_and_packed_outputs_fed_back_as_arguments():
    rng = np.random.default_rng(4)
    base = [rng.standard_normal((4, 4)) * 0.3 for _ in range(5)]
    x = rng.standard_normal((4, 4))
    results = []
    for device in ("cpu", "numpy"):
        ps = [nn.Parameter(b.copy()) for b in base]

        def acc(x, extra):
            h = x
            for p in ps:
                h = np.tanh(h @ p)
            loss = np.sum(h * h) + np.sum(extra)
            loss.backward()  # no zero_grad: gradients accumulate over calls
            return loss, h * 1, h * 2, h * 3, h * 4

        f = gc.trace(acc, device=device)
        f(x, np.zeros((4, 4)))
        out = f(x, ps[0].grad)  # a gradient (a view of the last call's buffer) as an argument
        out = f(x, out[1])  # a packed output as an argument
        results.append(([p.grad.copy() for p in ps], out))
    assert_same(results[0], results[1])


def test_loops_reading_packed_values(monkeypatch):
    monkeypatch.setattr(memory, "PACK_MIN", 1)

    def f(a):
        outs = [a * 1.5, a * 2, a * 3, a * 4]
        r1 = gc.fori_loop(0, 5, lambda i, c: c + 1.0, outs[0])
        h, ys = gc.scan(lambda c, xx: (c + xx, c * xx), outs[0][0], outs[1])
        r2 = gc.cond(a[0, 0] > 0, lambda t: t * 2, lambda t: -t, outs[2])
        r3 = gc.while_loop(lambda s: s[1] < 3, lambda s: (s[0] * 2, s[1] + 1), (outs[3], 0))[0]
        return outs + [r1, h, ys, r2, r3]

    c = gc.trace(f, compile="eager")
    got = c(X)
    assert "view_c(ob," in c.source
    assert_same(got, gc.trace(f, device="numpy")(X))
    assert_fresh(list(got) + list(c(X)), [X])


def test_symbolic_sizes_and_per_size_kernels(monkeypatch):
    monkeypatch.setattr(memory, "PACK_MIN", 1)
    x = np.random.default_rng(5).standard_normal((8, 4))

    def f(x):
        return (np.cumsum(x, 0), np.sort(x, 0), np.cumsum(x * 2, 0), np.sort(-x, 0),
                x[:2] * 3, x[:2] + 1, x[:2] - 1, x[:2] / 2)

    d = gc.trace(f, dynamic={"x": 0}, compile="eager")
    for n in (8, 5, 3, 2, 8, 5):
        got = d(x[:n])
        assert_same(got, f(x[:n]))
        assert_fresh(got, [x])


def test_background_switch_save_and_load(tmp_path):
    x, w = np.random.default_rng(6).standard_normal((8, 4)), np.random.default_rng(7).standard_normal((4, 4))

    def f(x, w):
        h = x @ w
        return h * 1.5, h + 2, np.tanh(h), h * h, np.sum(h, axis=1)

    b = gc.trace(f, compile="background")
    outs = []
    for _ in range(100):  # the interpreter's calls, then the compiled code's
        outs.append(b(x, w))
        time.sleep(0.005)
    assert "view_c(ob," in b.source
    for r in outs:
        assert_same(r, f(x, w))
    assert_fresh([a for r in outs[-3:] for a in r], [x, w])
    gc.save(b, tmp_path / "f.gcx")
    loaded = gc.load(tmp_path / "f.gcx")
    for n in (8, 3, 2):
        assert_same(loaded(x[:n], w), f(x[:n], w))
    gc.save(b, tmp_path / "g.gcx", dynamic=False)
    loaded = gc.load(tmp_path / "g.gcx")
    r1, r2 = loaded(x, w), loaded(x, w)
    assert_same(r1, f(x, w))
    assert_fresh(list(r1) + list(r2), [x, w])


def test_an_index_error_mid_call_then_the_next_call():
    x = np.arange(12.0).reshape(3, 4)
    h = gc.trace(lambda a, i: (a[i] + 1, a[i] * 2, a[i] * 3, a[i] * 4), compile="eager")
    first = h(x, 1)
    with pytest.raises(IndexError):
        h(x, 7)
    second = h(x, 2)
    assert "view_c(ob," in h.source
    assert_same(first, (x[1] + 1, x[1] * 2, x[1] * 3, x[1] * 4))
    assert_same(second, (x[2] + 1, x[2] * 2, x[2] * 3, x[2] * 4))
    assert_fresh(list(first) + list(second), [x])


@pytest.mark.parametrize("passes", ["O0", "O1"])
def test_without_a_memory_plan(monkeypatch, passes):
    monkeypatch.setattr(memory, "PACK_MIN", 1)
    x = np.arange(12.0).reshape(3, 4)

    def fn(a):
        return a * 1, a + 0, a * 2, (a * 2).copy(), a.T + 1, np.asarray(a) * 3

    c = gc.trace(fn, passes=passes, compile="eager")
    r1, r2 = c(x), c(x)
    assert "view_c(ob," in c.source
    assert_same(r1, fn(x))
    assert_fresh(list(r1) + list(r2), [x])
