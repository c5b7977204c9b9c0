"""Memory planning (passes/memory.py) and its runtime side (graphc/backend/memory.py).

The plan must never let two live values share bytes, never put a returned array
in the workspace, and the runtime must never hand the user an array that some
earlier result of theirs still uses.
"""
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.ir import parse
from graphc.passes import manager, memory


def planned(text):
    graph, _ = manager.run(parse(text).verify(), "O2", verify=True)
    memory.verify_plan(graph, graph.memory_plan)
    return graph, graph.memory_plan


MATMUL_CHAIN = """graph f(%0:f64[64,64], %1:f64[64,64]):
  %2:f64[64,64] = matmul(%0, %1)
  %3:f64[64,64] = matmul(%2, %1)
  %4:f64[64,64] = matmul(%3, %1)
  %5:f64[64,64] = matmul(%4, %1)
  %6:f64[] = sum(%5, axes=(0, 1), keepdims=False)
  return %6
"""


def test_dead_buffers_are_reused():
    graph, plan = planned(MATMUL_CHAIN)
    block = 64 * 64 * 8
    assert len(plan.workspace) == 4 and not plan.outputs
    assert plan.workspace_bytes == 2 * block  # %2 and %4 share bytes, so do %3 and %5
    offsets = [plan.workspace[n.outputs[0]][0] for n in graph.nodes if n.op == "matmul"]
    assert offsets[0] == offsets[2] and offsets[1] == offsets[3] and offsets[0] != offsets[1]


def test_a_view_keeps_its_buffer_alive():
    graph, plan = planned("""graph f(%0:f64[64,64], %1:f64[64,64]):
  %2:f64[64,64] = matmul(%0, %1)
  %3:f64[4096] = reshape(%2, shape=(4096,))
  %4:f64[64,64] = matmul(%0, %0)
  %5:f64[64,64] = matmul(%4, %1)
  %6:f64[4096] = reshape(%5, shape=(4096,))
  %7:f64[4096] = add(%3, %6)
  %8:f64[] = sum(%7, axes=(0,), keepdims=False)
  return %8
""")
    by_op = {n.outputs[0]: plan.workspace.get(n.outputs[0]) for n in graph.nodes if n.op == "matmul"}
    first, second, third = by_op.values()
    # %2 is dead as a value after %3 = reshape(%2), but %3 is read at the end: %4 must not take its bytes
    assert first[0] not in (second[0], third[0])


def test_returned_arrays_are_never_workspace():
    graph, plan = planned("""graph f(%0:f64[512,512], %1:f64[512,512]):
  %2:f64[512,512] = matmul(%0, %1)
  %3:f64[262144] = reshape(%2, shape=(262144,))
  %4:f64[512,512] = matmul(%2, %1)
  %5:f64[8] = slice(%3, slices=((0, 8, 1),))
  return %3, %4, %5
""")
    matmuls = [n.outputs[0] for n in graph.nodes if n.op == "matmul"]
    assert not set(matmuls) & set(plan.workspace)
    assert set(plan.outputs) == set(matmuls)  # 2 MiB each: recycled out-buffers
    small = [v for v in plan.workspace] + [v for v in plan.outputs]
    assert graph.outputs[2] not in small  # 64 bytes, returned: a fresh array in the call


def test_verify_plan_catches_overlap():
    graph, plan = planned(MATMUL_CHAIN)
    values = list(plan.workspace)
    plan.workspace[values[1]] = plan.workspace[values[0]]  # %3 on top of %2, both alive at node 1
    with pytest.raises(ValueError, match="alive together"):
        memory.verify_plan(graph, plan)


def test_only_o2_plans():
    graph, _ = manager.run(parse(MATMUL_CHAIN), "O1")
    assert getattr(graph, "memory_plan", None) is None


def test_dump_shows_the_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    manager.run(parse(MATMUL_CHAIN), "O2")
    (dumped,) = tmp_path.glob("f.*.memory.txt")  # (its number depends on the cleanups' rounds)
    text = dumped.read_text()
    assert "# memory plan: workspace 65536 bytes" in text and "workspace[0:32768]" in text


# -- the compiled code and the runtime -------------------------------------------------------
def mlp(x, w1, w2):
    h = np.tanh(x @ w1)
    return h @ w2, np.sum(h * h, axis=0)


def mlp_reference(x, w1, w2):
    h = np.tanh(x @ w1)
    return h @ w2, np.sum(h * h, axis=0)


@pytest.fixture
def recycle_everything(monkeypatch):
    """Plan every returned array as a recycled out-buffer, so small tests exercise recycling."""
    monkeypatch.setattr(memory, "OUT_MIN", 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_held_by_the_user_are_never_overwritten(recycle_everything, dtype):
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((8, 16)).astype(dtype), rng.standard_normal((16, 3)).astype(dtype)
    f = gc.trace(mlp)
    xs = [rng.standard_normal((5, 8)).astype(dtype) for _ in range(6)]
    kept = [f(x, w1, w2) for x in xs]  # every result stays referenced
    view = f(xs[0], w1, w2)[0][1:]  # only a view of one is kept
    for x in xs[1:]:
        f(x, w1, w2)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for x, got in zip(xs, kept):
        for a, b in zip(got, mlp_reference(x, w1, w2)):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(view, mlp_reference(xs[0], w1, w2)[0][1:], rtol=tol, atol=tol)
    assert f._latest().compiled.buffers is not None


def test_dropped_results_are_recycled(recycle_everything):
    rng = np.random.default_rng(1)
    x, w1, w2 = rng.standard_normal((5, 8)), rng.standard_normal((8, 16)), rng.standard_normal((16, 3))
    f = gc.trace(mlp)
    first, _ = f(x, w1, w2)
    address = first.ctypes.data
    del first
    again, _ = f(x, w1, w2)
    assert again.ctypes.data == address  # the dropped array came back, not a fresh one
    np.testing.assert_allclose(again, mlp_reference(x, w1, w2)[0], rtol=1e-12)
    held = f(x, w1, w2)[0]  # `again` is still held: a different buffer
    assert held.ctypes.data != again.ctypes.data


def test_results_are_freed_without_the_cyclic_gc(recycle_everything):
    """Nothing in the call path may hold a result in a reference cycle: recycling
    sees only reference counts, so a cycle would silently turn every call back
    into a fresh allocation (it once did, through pytree's recursive closures)."""
    import gc as pygc

    def loss(x, w):
        return np.sum(np.tanh(x * w) ** 2)

    f = gc.value_and_grad(loss, argnums=(0, 1))
    x = np.random.default_rng(2).standard_normal(100)
    address = f(x, 0.5)[1][0].ctypes.data
    pygc.disable()
    try:
        addresses = {f(x, 0.5)[1][0].ctypes.data for _ in range(4)}
    finally:
        pygc.enable()
    assert addresses == {address}


def test_concurrent_calls_get_their_own_workspace(recycle_everything):
    rng = np.random.default_rng(2)
    w1, w2 = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    f = gc.trace(lambda x: np.tanh(np.tanh(x @ w1) @ w2) @ w1)
    xs = [rng.standard_normal((64, 64)) for _ in range(4)]
    f(xs[0])
    errors = []

    def work(x):
        want = np.tanh(np.tanh(x @ w1) @ w2) @ w1
        for _ in range(200):
            got = f(x)
            if not np.allclose(got, want, rtol=1e-12, atol=1e-12):
                errors.append(float(np.abs(got - want).max()))
                return

    threads = [threading.Thread(target=work, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_workspace_persists_between_calls():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    f = gc.trace(lambda x, y: np.sum((x @ y) @ y))
    np.testing.assert_allclose(f(a, b), np.sum((a @ b) @ b), rtol=1e-12)
    buffers = f._latest().compiled.buffers
    (workspace,) = buffers.acquire()
    buffers.release([workspace])
    np.testing.assert_allclose(f(a, b), np.sum((a @ b) @ b), rtol=1e-12)
    assert buffers.acquire()[0] is workspace  # the same bytes served both calls


def test_view_c_is_a_typed_window_on_the_workspace_bytes():
    from numba import njit

    from graphc.backend.intrinsics import view_c

    @njit
    def fill(ws):
        a = view_c(ws, 64, (2, 3), np.float32)
        b = view_c(ws, 128, (4,), np.int64)
        for i in range(2):
            for j in range(3):
                a[i, j] = i * 3 + j + 0.5
        b[:] = -7
        return a, b

    ws = np.zeros(256, np.uint8)
    a, b = fill(ws)
    assert a.flags.c_contiguous and a.shape == (2, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(ws[64:88].view(np.float32).reshape(2, 3), np.arange(6).reshape(2, 3) + 0.5)
    np.testing.assert_array_equal(ws[128:160].view(np.int64), [-7] * 4)
    assert not ws[:64].any() and not ws[88:128].any() and not ws[160:].any()  # nothing outside the blocks
