"""Review 7: in-place outputs not returned by the entry (plan.OutputPack.from_inputs) and
views between the calls of a loop of calls (outline._continues). Attacks that held are
plain tests; bugs are strict xfails."""
import os
import re
import threading

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.errors import NonFiniteError
from graphc.state import State


def _build(opt_name, depth=4, wd=0.0):
    nn.manual_seed(0)
    layers = [nn.Linear(6, 8), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(8, 8), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(8, 3))
    for p in model.parameters():
        p.data = p.data.astype("float64")
    opt = {"sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=wd),
           "plain": lambda ps: optim.SGD(ps, lr=0.1, weight_decay=wd),
           "adam": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=wd)}[opt_name](model.parameters())
    return model, opt


def _step(model, opt, ret="loss"):
    def step(x, y):
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
        opt.step()
        if ret == "read":
            return loss, model[0].weight.read(), model[2].bias.read(), model[0].weight.grad
        if ret == "data":
            return loss, model[0].weight.data
        return loss
    return step


def _pair(opt_name, ret="loss", depth=4, wd=0.0, **options):
    m1, o1 = _build(opt_name, depth, wd)
    m2, o2 = _build(opt_name, depth, wd)
    return m1, gc.trace(_step(m1, o1, ret), **options), m2, gc.trace(_step(m2, o2, ret), device="numpy")


def _same_params(m1, m2):
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-9, atol=1e-12)
        if q.grad is not None:
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12)


_RNG = np.random.default_rng(0)
X = _RNG.standard_normal((23, 6))
L = _RNG.integers(0, 3, 23)


@pytest.mark.parametrize("opt_name,wd", [("sgd", 0.01), ("adam", 0.01), ("plain", 0.0)])
def test_deep_model_steps_match_interpreter_in_place(opt_name, wd):
    """4 equal hidden layers: packed gradients in ob, in-place updates and loops of calls
    together; 4 steps match device="numpy", every parameter keeps its array."""
    m1, s1, m2, s2 = _pair(opt_name, "read", wd=wd)
    arrays = [p.data for p in m1.parameters()]
    for _ in range(4):
        r1, r2 = s1(X[:8], L[:8]), s2(X[:8], L[:8])
        assert type(r1[0]) is type(r2[0])
        for a, b in zip(r1, r2):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        assert not any(np.shares_memory(a, p.data) for a in r1[1:] for p in m1.parameters())
        _same_params(m1, m2)
    pack = s1._last.compiled.pack
    assert pack.from_inputs and pack.groups
    assert all(p.data is a for p, a in zip(m1.parameters(), arrays))


@pytest.mark.parametrize("kind", ["T", "strided", "bigendian", "replaced", "shared", "as_arg", "view_arg"])
def test_odd_parameters(kind):
    m1, s1, m2, s2 = _pair("adam", depth=1)
    for m in (m1, m2):
        w = m[0].weight.data
        if kind == "T":
            m[0].weight.data = np.ascontiguousarray(w.T).T
        elif kind == "strided":
            big = np.zeros((w.shape[0], 2 * w.shape[1]))
            big[:, ::2] = w
            m[0].weight.data = big[:, ::2]
        elif kind == "bigendian":
            m[0].weight.data = w.astype(">f8")
        elif kind == "shared":
            m[2].bias.data = m[2].weight.data[0]  # (8 of the 8x8 weight)
    for k in range(3):
        if kind == "replaced" and k == 2:
            for m in (m1, m2):
                m[0].weight.data = m[0].weight.data * 0.5
        if kind in ("as_arg", "view_arg"):  # the parameter's memory as the input x
            a1 = m1[2].weight.data[:, :6] if kind == "view_arg" else m1[0].weight.data[:, :6]
            a2 = m2[2].weight.data[:, :6] if kind == "view_arg" else m2[0].weight.data[:, :6]
            np.testing.assert_allclose(s1(a1, L[:8]), s2(a2, L[:8]), rtol=1e-9)
        else:
            np.testing.assert_allclose(s1(X[:8], L[:8]), s2(X[:8], L[:8]), rtol=1e-9)
        _same_params(m1, m2)


def test_refusals_change_no_state():
    """Labels out of range, a read-only parameter, check_finite: a clear error, no state
    written; training goes on matching the interpreter."""
    m1, s1, m2, s2 = _pair("sgd", depth=1, check_finite=True)
    s1(X[:8], L[:8]), s2(X[:8], L[:8])
    before = [p.data.copy() for p in m1.parameters()]
    bad = L[:8].copy()
    bad[3] = 7
    with pytest.raises(ValueError, match="out of range"):
        s1(X[:8], bad)
    m1[2].weight.data.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        s1(X[:8], L[:8])
    m1[2].weight.data.setflags(write=True)
    xb = X[:8].copy()
    xb[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        s1(xb, L[:8])
    assert all(np.array_equal(a, p.data) for a, p in zip(before, m1.parameters()))
    for _ in range(2):
        np.testing.assert_allclose(s1(X[:8], L[:8]), s2(X[:8], L[:8]), rtol=1e-10)
    _same_params(m1, m2)


def test_dynamic_partial_batches_background_threads():
    m1, s1, m2, s2 = _pair("adam", dynamic={"x": {0: "B"}, "y": {0: "B"}})
    for _ in range(2):
        for i in range(0, 23, 8):  # (a last batch of 7)
            np.testing.assert_allclose(s1(X[i:i + 8], L[i:i + 8]), s2(X[i:i + 8], L[i:i + 8]), rtol=1e-9)
    _same_params(m1, m2)
    m1, s1, m2, s2 = _pair("sgd", depth=1, compile="background")
    arrays = [p.data for p in m1.parameters()]
    for k in range(12):
        np.testing.assert_allclose(s1(X[:8], L[:8]), s2(X[:8], L[:8]), rtol=1e-9)
        if k == 3:
            s1._last.switch(wait=True)
    assert s1._last.upgraded is not None
    _same_params(m1, m2)
    assert all(p.data is a for p, a in zip(m1.parameters(), arrays))
    errors = []

    def work():
        try:
            for _ in range(10):
                s1(X[:8], L[:8])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and all(np.isfinite(p.data).all() for p in m1.parameters())


def test_save_load_training_step(tmp_path):
    m1, s1, m2, s2 = _pair("adam")
    for _ in range(2):
        s1(X[:8], L[:8]), s2(X[:8], L[:8])
    gc.save(s1, tmp_path / "s.gcx")
    loaded = gc.load(tmp_path / "s.gcx")
    for _ in range(2):
        np.testing.assert_allclose(loaded(X[:8], L[:8]), s2(X[:8], L[:8]), rtol=1e-9)
    gc.save(loaded, tmp_path / "s2.gcx")
    np.testing.assert_allclose(gc.load(tmp_path / "s2.gcx")(X[:8], L[:8]), s2(X[:8], L[:8]), rtol=1e-9)


@pytest.mark.parametrize("ret", ["input", "old", "new", "none", "view", "x1"])
def test_generic_states_updated_in_place(ret):
    """Plain States written in place, with the user returning its input, a State's old or
    new value, a view of one, nothing; the input is also the State's memory."""
    results = []
    for device in (None, "numpy"):
        st = [State(np.arange(6.0).reshape(2, 3) + i) for i in range(5)]

        def f(x):
            old = st[0].read().copy()  # (eagerly read() is the array: a copy keeps the old values)
            for s in st:
                s.write(s.read() * 0.5 + x)
            return {"input": lambda: x, "old": lambda: old, "new": lambda: (st[1].read(), st[2].read() + 0),
                    "none": lambda: None, "view": lambda: [st[0].read().T, x.T],
                    "x1": lambda: (x * 1.0, x + 0.0)}[ret]()
        g = gc.trace(f, device=device) if device else gc.trace(f)
        outs = []
        for a in (np.ones((2, 3)), st[1].data, st[2].data[0], st[0].data):
            r = g(a)
            leaves = [] if r is None else list(r) if isinstance(r, (tuple, list)) else [r]
            assert not any(np.shares_memory(z, s.data) for z in leaves for s in st)
            outs.append([z.copy() for z in leaves])
        if device is None:
            assert g._last.compiled.pack.from_inputs
        results.append((outs, [s.data.copy() for s in st]))
    (o1, s1), (o2, s2) = results
    for a, b in zip(o1, o2):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert u.dtype == v.dtype
            np.testing.assert_array_equal(u, v)
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a, b)


def _chain(h, ws):
    for w in ws:
        h = np.tanh(h @ w) + 0.5 * h
    return np.sum(h)


_REF = gc.value_and_grad(_chain, argnums=1, device="numpy")


@pytest.mark.parametrize("n", [4, 9, 24, 40])
def test_deep_chain_rolled_calls_with_views_between(n):
    rng = np.random.default_rng(n)
    h, ws = rng.normal(size=(8, 8)), [rng.normal(size=(8, 8)) * 0.3 for _ in range(n)]
    f = gc.value_and_grad(_chain, argnums=1)
    for scale in (1.0, 1.1):
        wsk = [w * scale for w in ws]
        (v, g), (v2, g2) = f(h, wsk), _REF(h, wsk)
        np.testing.assert_allclose(v, v2, rtol=1e-11)
        assert len(g) == n and not any(np.shares_memory(a, b) for i, a in enumerate(g) for b in g[i + 1:])
        for a, b in zip(g, g2):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    compiled = f._last.compiled
    module = compiled.entry.py_func.__globals__
    for o in compiled._emitter.outlined:
        assert len(module[o["name"]].signatures) <= 1
    if n >= 9:
        assert re.findall(r"for k_\d+ in range\((\d+)\):", f.source)


def test_returned_parameter_data_is_current():
    """p.data read after opt.step() in a trace is the updated parameter, as in PyTorch (it was
    once a constant of the graph: the parameter as it was when traced)."""
    m1, s1, m2, s2 = _pair("sgd", "data", depth=0)
    for _ in range(3):
        loss, w = s1(X[:8], L[:8])
        np.testing.assert_allclose(w, m1[0].weight.data)
