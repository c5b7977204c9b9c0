"""Review 6: loops of calls of outlined functions (graphc.backend.outline._roll, intrinsics
row_c / seq_c). Attacks that held are plain tests; bugs are strict xfails."""
import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import misaligned, training_step

import graphc as gc
from graphc import nn, optim


def chain(h, ws):
    for w in ws:
        h = np.tanh(h @ w) + 0.5 * h
    return np.sum(h)


def _inputs(n, m=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, m)), [rng.normal(size=(m, m)) * 0.3 for _ in range(n)]


def _loops(source):
    return [int(n) for n in re.findall(r"for k_\d+ in range\((\d+)\):", source)]


def _same(got, want):
    (v, gr), (v2, gr2) = got, want
    np.testing.assert_allclose(v, v2, rtol=1e-11)
    assert len(gr) == len(gr2)
    for a, b in zip(gr, gr2):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


_REF = gc.value_and_grad(chain, argnums=1, device="numpy")


def test_one_graph_every_odd_weight(tmp_path):
    """One compiled chain, called with plain, read-only, misaligned, memmapped (r and w+),
    transposed, strided, big-endian weights, the same array many times and h as a weight."""
    f = gc.value_and_grad(chain, argnums=1)
    h, ws = _inputs(9)
    _same(f(h, ws), _REF(h, ws))
    assert _loops(f.source) and max(_loops(f.source)) >= 4
    cases = []
    h, ws = _inputs(9, seed=1)
    ws[3] = ws[3].copy()
    ws[3].flags.writeable = False
    ws[5] = misaligned(ws[5])
    mm = np.memmap(tmp_path / "w", dtype=ws[6].dtype, mode="w+", shape=ws[6].shape)
    mm[...] = ws[6]
    mm.flush()
    ws[6] = mm
    ws[7] = np.memmap(tmp_path / "w", dtype=mm.dtype, mode="r", shape=mm.shape)
    ws[2] = ws[2].T
    ws[1] = (np.random.default_rng(3).normal(size=(16, 16)) * 0.3)[::2, ::2]
    ws[4] = ws[4].astype(">f8")
    cases.append((h, ws))
    h, ws = _inputs(9, seed=2)
    cases.append((h, [ws[0]] * 9))
    h, ws = _inputs(9, seed=3)
    ws[4] = h
    ws[6] = h
    cases.append((h, ws))
    for h, ws in cases:
        _same(f(h, ws), _REF(h, ws))


@pytest.mark.parametrize("n", [6, 7])
def test_roll_min_edge(n):
    """Loops of calls only from ROLL_MIN (4) calls: 6 layers make forward runs of 3 calls
    (left as calls), 7 layers a forward loop of 4."""
    h, ws = _inputs(n)
    f = gc.value_and_grad(chain, argnums=1)
    _same(f(h, ws), _REF(h, ws))
    assert all(k >= 4 for k in _loops(f.source))
    assert (n == 7) <= bool(_loops(f.source))


def test_threads_and_no_reference_leak():
    f = gc.value_and_grad(chain, argnums=1)
    sets = [_inputs(9, seed=s) for s in range(4)]
    sets[1][1][3].flags.writeable = False
    wants = [_REF(*s) for s in sets]
    for s in sets:
        f(*s)
    errors = []

    def run(i):
        try:
            for _ in range(30):
                _same(f(*sets[i]), wants[i])
        except Exception as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    h, ws = sets[1]
    before = [sys.getrefcount(w) for w in ws]
    for _ in range(100):
        f(h, ws)
    # (one reference the runtime keeps of the latest call's arguments; no reference per call)
    assert all(sys.getrefcount(w) - b <= 1 for w, b in zip(ws, before)), [sys.getrefcount(w) - b for w, b in zip(ws, before)]


def test_disk_cache_second_process(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, graphc as gc
        def chain(h, ws):
            for w in ws:
                h = np.tanh(h @ w) + 0.5 * h
            return np.sum(h)
        rng = np.random.default_rng(0)
        h = rng.normal(size=(8, 8)); ws = [rng.normal(size=(8, 8)) * 0.3 for _ in range(9)]
        ws[2].flags.writeable = False
        f = gc.value_and_grad(chain, argnums=1)
        v, g = f(h, ws)
        v2, g2 = gc.value_and_grad(chain, argnums=1, device="numpy")(h, ws)
        assert np.allclose(v, v2) and all(np.allclose(a, b) for a, b in zip(g, g2))
        assert "for k_" in f.source
        print("hits", f._last.compiled.cache_hits)
    """)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_COMPILE="eager",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
            for _ in range(2)]
    for out in outs:
        assert out.returncode == 0, out.stderr[-2000:]
    assert "hits 0" in outs[0].stdout and "hits 1" in outs[1].stdout, [o.stdout for o in outs]


def test_save_load_rolled(tmp_path):
    h, ws = _inputs(9)
    path = str(tmp_path / "chain.gcx")
    gc.save(gc.trace(chain, h, ws), path)
    loaded = gc.load(path)
    ws[2] = misaligned(ws[2])
    np.testing.assert_allclose(loaded(h, ws), chain(h, ws), rtol=1e-12)
    assert _loops(loaded.source)


def test_sgd_states_in_rolled_layers():
    """Parameters (States) in the rolled forward loop: misaligned, shared with another layer;
    a read-only one is refused before anything changes."""
    def build(device, odd):
        nn.manual_seed(0)
        layers = []
        for _ in range(8):
            layers += [nn.Linear(8, 8, bias=False), nn.Tanh()]
        model = nn.Sequential(*layers)
        ps = list(model.parameters())
        for p in ps:
            p.data = p.data.astype("float64")
        if odd == "odd":
            ps[3].data = misaligned(ps[3].data)
            ps[4].data = ps[2].data
        elif odd == "readonly":
            ps[5].data.flags.writeable = False
        return model, gc.trace(training_step(model, optim.SGD(model.parameters(), lr=0.1), nn.MSELoss()),
                               device=device)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    model, step = build("cpu", "odd")
    ref_model, ref_step = build("numpy", "odd")
    for _ in range(3):
        np.testing.assert_allclose(step(x, y), ref_step(x, y), rtol=1e-11)
    assert _loops(step.source)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-11)
    model, step = build("cpu", "readonly")
    with pytest.raises(ValueError, match="read-only"):
        step(x, y)


def _two_widths(h, ws, p, vs):
    for w in ws:
        h = np.tanh(h @ w) + 0.5 * h
    h = h @ p
    for v in vs:
        h = np.tanh(h @ v) + 0.5 * h
    return h


def test_two_stacks_of_different_widths():
    """Two repeated stacks with the same ops but other shapes: two outlined functions, which
    once got the same name (the later def shadowed the earlier: a gemm ValueError)."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=(8, 8))
    ws = [rng.normal(size=(8, 8)) * 0.3 for _ in range(6)]
    p = rng.normal(size=(8, 16)) * 0.3
    vs = [rng.normal(size=(16, 16)) * 0.3 for _ in range(6)]
    f = gc.trace(_two_widths)
    np.testing.assert_allclose(f(h, ws, p, vs), _two_widths(h, ws, p, vs), rtol=1e-12)
