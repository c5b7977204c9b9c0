"""Fresh outputs written into one per-call byte buffer (plan.OutputPack, graphc/backend/cpu.py).

Numba's code for returning K arrays costs ~15 ms of compile per array (issue 15: 41 gradients
of the N=40 chain were ~0.7 s), so groups of at least ``PACK_MIN`` outputs of one dtype and
shape are computed straight into views of ``ob``, a byte buffer the runtime allocates per call,
and split out after it. The user must not be able to tell: values, dtypes, positions, fresh
memory per output and per call, writable C-contiguous arrays.
"""
import re
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.backend import codegen
from graphc.backend import plan as memory


def chain(h, ws):
    for w in ws:
        h = np.tanh(h @ w) + 0.5 * h
    return np.sum(h * h)


def chain_inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 8)), [rng.standard_normal((8, 8)) * 0.3 for _ in range(n)]


def assert_fresh(arrays):
    """Writable C-contiguous arrays, no two sharing a byte."""
    for i, a in enumerate(arrays):
        assert a.flags.c_contiguous and a.flags.writeable
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)


def test_many_gradients_come_from_one_output_buffer():
    h, ws = chain_inputs(6)
    f = gc.value_and_grad(chain, argnums=1)
    value, grads = f(h, ws)
    assert "view_c(ob," in f.source and "def entry(" in f.source
    ref_value, ref_grads = gc.value_and_grad(chain, argnums=1, device="numpy")(h, ws)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    assert len(grads) == 6
    for g, r in zip(grads, ref_grads):
        assert g.dtype == np.float64 and g.shape == (8, 8)
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-13)
    assert_fresh(grads)
    kept = [g.copy() for g in grads]
    grads[0][...] = 7.0  # the user's writes reach no other result, nor the next call's
    _, again = f(h, ws)
    assert_fresh(list(grads) + list(again))
    for g, k in zip(again, kept):
        np.testing.assert_array_equal(g, k)
    assert np.all(grads[0] == 7.0)
    np.testing.assert_array_equal(grads[1], kept[1])


def test_positions_dtypes_and_the_outputs_that_stay_out_of_the_buffer():
    """Two packed groups interleaved with a scalar, an input returned as is, a view of an input,
    a constant, one array returned twice and a group too small to pack."""
    def f(x, y):
        a = np.tanh(x)
        return (x * 2, y + 1, x + 1, np.sum(x), y * 2, x * 3, x, y * 3, x.reshape(-1), x - 1,
                np.ones(3), a, a, y * 4, x[0] * 1)

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = rng.standard_normal(2)
    g = gc.trace(f)
    out = g(x, y)
    want = f(x, y)
    assert "view_c(ob," in g.source
    assert len(out) == len(want)
    for o, w in zip(out, want):
        assert np.asarray(o).dtype == np.asarray(w).dtype and np.shape(o) == np.shape(w)
        np.testing.assert_allclose(o, w, rtol=2e-6)
    arrays = [o for k, o in enumerate(out) if k not in (11, 12) and isinstance(o, np.ndarray) and o.ndim]
    assert_fresh(arrays)
    assert not any(np.shares_memory(o, x) or np.shares_memory(o, y) for o in arrays)
    assert not np.shares_memory(out[11], out[12])  # the same array returned twice: two arrays


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_of_every_kind_of_emitter_can_be_packed(monkeypatch, dtype):
    """With PACK_MIN = 1 every fresh output goes through the buffer: matmul (BLAS into a view),
    reductions, fused groups, gathers, a scalar spread into an array, casts, concatenation."""
    monkeypatch.setattr(memory, "PACK_MIN", 1)

    def f(a, b, idx):
        return (a @ b, np.sum(a, axis=0), np.max(a, axis=1), np.exp(a) * 2, a[idx],
                np.concatenate([a, a]), a.astype(np.float32), np.zeros(3) + np.sum(b), np.cumsum(a, axis=1),
                np.where(a > 0, a, -a), np.transpose(b))

    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 6)).astype(dtype)
    b = rng.standard_normal((6, 3)).astype(dtype)
    idx = np.array([3, 0, 0, 2])
    g = gc.trace(f)
    out = g(a, b, idx)
    assert "view_c(ob," in g.source
    want = f(a, b, idx)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for o, w in zip(out, want):
        assert o.dtype == w.dtype and o.shape == w.shape
        np.testing.assert_allclose(o, w, rtol=tol, atol=tol)
    assert_fresh(list(out))


def test_an_output_its_emitter_does_not_place_is_copied_into_the_buffer(monkeypatch):
    """The safety net: an emitter that binds a packed output without ``alloc`` (so never takes
    its place in ``ob``) gets a copy into that place before the return."""
    original = codegen.Emitter.alloc

    def alloc_elsewhere(self, v, fill=None):
        place = self.slots.pop(v, None)
        try:
            return original(self, v, fill)
        finally:
            if place is not None:
                self.slots[v] = place

    monkeypatch.setattr(codegen.Emitter, "alloc", alloc_elsewhere)
    h, ws = chain_inputs(5, seed=3)
    f = gc.value_and_grad(chain, argnums=1)
    value, grads = f(h, ws)
    assert re.search(r"\bo_\d+ = view_c\(ob, ", f.source)  # the copy's target
    ref_value, ref_grads = gc.value_and_grad(chain, argnums=1, device="numpy")(h, ws)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-13)
    assert_fresh(grads)


def test_threads_calling_at_once_each_get_their_own_outputs():
    h, ws = chain_inputs(5, seed=4)
    f = gc.value_and_grad(chain, argnums=1)
    _, want = f(h, ws)
    results, errors = [], []

    def worker():
        try:
            for _ in range(40):
                results.append(f(h, ws)[1])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for grads in results:
        for g, w in zip(grads, want):
            np.testing.assert_array_equal(g, w)
    firsts = [grads[0] for grads in results]
    assert len({id(a) for a in firsts}) == len(firsts)
    assert not any(np.shares_memory(firsts[0], a) for a in firsts[1:])


def test_a_saved_function_with_packed_outputs_loads_and_agrees(tmp_path):
    def f(x):
        return x + 1, x * 2, x - 3, np.sin(x), np.sum(x)

    x = np.linspace(-1, 1, 12).reshape(3, 4)
    traced = gc.trace(f)
    out = traced(x)
    assert "view_c(ob," in traced.source
    path = tmp_path / "f.gcx"
    gc.save(traced, str(path), x)
    loaded = gc.load(str(path))
    again = loaded(x)
    for a, b, w in zip(out, again, f(x)):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, w, rtol=1e-12, atol=1e-14)
    assert_fresh([a for a in again if np.ndim(a)])


def test_verify_pack_refuses_an_unsafe_pack():
    def f(x):
        return x + 1, x * 2, x - 3, x / 4

    traced = gc.trace(f, compile="eager")
    traced(np.ones(3))
    graph = traced.graph
    pack = memory.pack_outputs(graph, None)
    memory.verify_pack(graph, None, pack)  # the real one is safe
    a, b = list(pack.offsets)[:2]
    clash = memory.OutputPack({**pack.offsets, b: pack.offsets[a]}, pack.groups, pack.nbytes, pack.n_outputs)
    with pytest.raises(ValueError, match="share bytes"):
        memory.verify_pack(graph, None, clash)
    shifted = memory.OutputPack({**pack.offsets, a: pack.offsets[a] + 4}, pack.groups, pack.nbytes, pack.n_outputs)
    with pytest.raises(ValueError, match="misplaced"):
        memory.verify_pack(graph, None, shifted)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_updates_written_in_place_are_not_returned(opt_name):
    """An output written in place of its input (a State's update) is that input: the entry
    does not return it (each returned array costs Numba compile time), the call puts the
    input there, and training matches the NumPy interpreter step by step."""
    from conftest import small_training_step
    from graphc.interpret import interpret

    rng = np.random.default_rng(0)
    model, step = small_training_step(opt_name, "float64")
    x, t = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    arrays = [p.data for p in model.parameters()]
    step(x, t)
    compiled = step._last.compiled
    pack = compiled.pack
    assert pack is not None and pack.from_inputs
    returned = re.search(r"^    return \((.*)\)$", compiled.source, re.MULTILINE).group(1)
    assert len([r for r in returned.split(",") if r.strip()]) == len(pack.plain_positions)
    for _ in range(3):
        traced = step._last
        want = interpret(traced.graph, x, t, *[st.data.copy() for st in traced.state_in])
        loss = step(x, t)
        np.testing.assert_allclose(loss, want[0], rtol=1e-12)
        for st, w in zip(traced.state_out, want[traced.n_user:]):
            np.testing.assert_allclose(st.data, w, rtol=1e-12, atol=1e-14)
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))  # updated in place
