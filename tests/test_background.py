"""compile="background": the NumPy interpreter answers first, a worker process compiles, calls
switch to the compiled code (graphc/backend/background.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import graphc as gc
from graphc.backend import background
from graphc.backend.interpreter import Interpreted

from conftest import small_training_step

WAIT = 300  # seconds a worker may take on a loaded 2-core machine
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_env(tmp_path) -> dict:
    """The environment of a user's script in ``tmp_path``: this checkout's graphc (a script's
    folder comes first on its path, not the checkout), a cache of its own."""
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=path)


def layers(h, w1, w2):
    return np.sum(np.tanh(np.tanh(h @ w1) @ w2) * 0.5, axis=1)


def _inputs(dtype=np.float64):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in ((6, 5), (5, 4), (4, 3))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_interpreter_first_then_compiled_code():
    f = gc.trace(layers, compile="background")
    args = _inputs()
    first = f(*args)
    np.testing.assert_array_equal(first, layers(*args))  # the interpreter: NumPy's own values
    assert f.interpreted_calls == 1
    assert isinstance(f._last.compiled, Interpreted) and f._last.pending is not None
    assert f.wait_compiled(WAIT)
    later = f(*args)
    assert f.interpreted_calls == 1  # the switch happened: no more interpreted calls
    assert later.dtype == first.dtype and later.shape == first.shape
    np.testing.assert_allclose(later, first, rtol=1e-13)
    assert "def entry" in f.source  # the compiled signature's source
    assert f.stats  # the worker's pass statistics came back
    # a second function tracing the same graph finds the worker's compile: no interpreter
    g = gc.trace(layers, compile="background")
    np.testing.assert_allclose(g(*args), first, rtol=1e-13)
    assert g.interpreted_calls == 0 and not isinstance(g._last.compiled, Interpreted)


def test_a_first_call_makes_the_trace_key_only_where_a_worker_compiled_such_a_graph(tmp_path, monkeypatch):
    """The trace key prints the whole graph (~3 us a node of a first result): a first call makes
    it only where a worker compiled a graph of the same ops for the same types (whose code it
    may load); otherwise the job makes it as it launches, at the second call. Two functions
    tracing one graph still share one worker."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    made = []
    real = background.trace_key
    monkeypatch.setattr(background, "trace_key", lambda *a: made.append(1) or real(*a))
    args = _inputs()
    f, g = gc.trace(layers, compile="background"), gc.trace(layers, compile="background")
    first = f(*args)
    g(*args)
    assert made == []
    f(*args)
    g(*args)  # (launches: g's job follows f's, which runs)
    assert len(made) == 2
    f_job, g_job = f._last.pending.job, g._last.pending.job
    assert g_job._twin is f_job and g_job.pid is None
    assert f.wait_compiled(WAIT) and g.wait_compiled(WAIT)
    for fn in (f, g):
        np.testing.assert_allclose(fn(*args), first, rtol=1e-13)
        assert fn.interpreted_calls == 2
    h = gc.trace(layers, compile="background")  # a worker compiled it: the key, and its code
    np.testing.assert_allclose(h(*args), first, rtol=1e-13)
    assert len(made) == 3 and h.interpreted_calls == 0


def test_interpreted_results_are_fresh_arrays():
    f = gc.trace(lambda x: x.reshape(-1), compile="never")
    x = np.arange(6.0).reshape(2, 3)
    y = f(x)
    assert not np.shares_memory(x, y)
    y[0] = 99.0
    assert x[0, 0] == 0.0


def test_never_mode_only_interprets():
    f = gc.trace(layers, compile="never")
    args = _inputs(np.float32)
    for _ in range(3):
        out = f(*args)
    np.testing.assert_array_equal(out, layers(*args))
    assert out.dtype == np.float32
    assert f.interpreted_calls == 3
    assert not f.wait_compiled(1) and f.source is None


def test_training_step_switches_and_keeps_the_state():
    """A training step's parameters, updated by the interpreter and then by compiled code, end
    where an eagerly compiled step's end (to float32 rounding)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    t = rng.standard_normal((16, 3)).astype(np.float32)
    runs = {}
    for mode in ("eager", "background"):
        model, step = small_training_step("adam", compile=mode)
        losses = [float(step(x, t)) for _ in range(2)]
        if mode == "background":
            assert step.interpreted_calls == 2
            assert step.wait_compiled(WAIT)
        losses += [float(step(x, t)) for _ in range(3)]
        runs[mode] = losses, [p.data.copy() for p in model.parameters()]
    assert step.interpreted_calls == 2
    np.testing.assert_allclose(runs["background"][0], runs["eager"][0], rtol=1e-5)
    for a, b in zip(runs["background"][1], runs["eager"][1]):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_failing_worker_leaves_the_interpreter_running(monkeypatch):
    monkeypatch.setattr(background.sys, "executable", "/bin/false")  # a worker that exits at once
    f = gc.trace(lambda a: np.exp(a) * 3.0 + 1.0, compile="background")
    a = np.linspace(0, 1, 7)
    with pytest.warns(background.CompileWarning, match="background compile failed.*exited with status 1") as seen:
        for _ in range(4):
            np.testing.assert_array_equal(f(a), np.exp(a) * 3.0 + 1.0)
            time.sleep(0.2)
    assert len([w for w in seen if w.category is background.CompileWarning]) == 1  # one warning only
    assert f.interpreted_calls == 4 and not f.wait_compiled(1)


def test_a_killed_worker_is_survived():
    f = gc.trace(lambda a, b: np.tanh(a @ b) - a @ b * 0.25, compile="background")
    a, b = np.ones((3, 3)), np.eye(3)
    f(a, b)
    job = f._last.pending.job
    assert job.pid is None  # (the first call does not wait for a process to start)
    job.launch()
    os.kill(job.pid, signal.SIGKILL)
    job.wait(60)
    with pytest.warns(background.CompileWarning, match="killed by signal 9"):
        out = f(a, b)
    np.testing.assert_array_equal(out, np.tanh(a @ b) - a @ b * 0.25)


_SCRIPT = textwrap.dedent("""
    import os, signal, sys, numpy as np, graphc as gc
    def chain(h, ws):
        for w in ws:
            h = np.tanh(h @ w) + 0.5 * h
        return np.sum(h)
    ws = [np.eye(8) * 0.1 * (k + 1) for k in range(int(sys.argv[2]))]
    f = gc.value_and_grad(chain, argnums=1, compile="background")
    f(np.ones((8, 8)), ws)
    job = f._last.pending.job
    job.launch()
    print(job.pid, flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif sys.argv[1] == "exit":
        sys.exit(0)
    else:
        assert f.wait_compiled(600)
        print(job.result[2], flush=True)  # did this process's worker compile (or load)?
""")


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_no_worker_outlives_its_process(tmp_path, how):
    """The user's process killed (or exiting) mid-compile takes its worker with it."""
    script = tmp_path / "user.py"
    script.write_text(_SCRIPT)
    env = user_env(tmp_path)
    run = subprocess.run([sys.executable, str(script), how, "30"], capture_output=True, text=True, env=env,
                         timeout=WAIT)
    pid = int(run.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"worker {pid} outlived its process ({how})"


def test_concurrent_processes_compile_an_entry_once(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(_SCRIPT)
    env = user_env(tmp_path)
    procs = [subprocess.Popen([sys.executable, str(script), "wait", "3"], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=WAIT)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o[1] for o in outs) == ["False", "True"], outs  # one compiled, one loaded its code


def test_dynamic_sizes_share_one_background_compile():
    f = gc.trace(lambda x, w: np.maximum(x @ w, 0.0).sum(axis=1), dynamic={"x": 0}, compile="background")
    w = np.linspace(-1, 1, 12).reshape(4, 3)
    xs = [np.linspace(-2, 2, n * 4).reshape(n, 4) for n in (5, 9)]
    for x in xs:
        np.testing.assert_array_equal(f(x, w), np.maximum(x @ w, 0.0).sum(axis=1))
    assert f.interpreted_calls == 2
    assert f.wait_compiled(WAIT)
    for x in xs + [np.ones((13, 4))]:  # a new size: the template's code, no compile
        np.testing.assert_allclose(f(x, w), np.maximum(x @ w, 0.0).sum(axis=1), rtol=1e-13)
    assert f.interpreted_calls == 2
    assert len({id(c.upgraded or c) for c in f._variants()}) == 1  # one compiled graph for all sizes


def test_bad_modes_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="compile='later'"):
        gc.trace(layers, compile="later")
    monkeypatch.setenv("GRAPHC_COMPILE", "sometimes")
    f = gc.trace(layers)
    with pytest.raises(ValueError, match="GRAPHC_COMPILE='sometimes'"):
        f(*_inputs())


@pytest.mark.parametrize("value", [
    np.zeros((3, 4), np.float32), np.zeros((3, 4)).T, np.zeros((4, 6))[:, ::2], np.zeros(()), np.zeros((0, 3)),
    np.zeros((1, 5), np.int32), np.zeros(5, bool), np.frombuffer(b"\0" * 16), np.zeros(3, np.complex128),
    1.5, 3, np.float32(2.0), np.int64(7), True])
def test_arguments_are_described_as_numba_types_them(value):
    import numba
    assert background.numba_type(background.describe(value)) == numba.typeof(value)
