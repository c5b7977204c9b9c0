"""compile="background" attacked as a user would: threads, fork, the cache cleared under a
running worker, inspection while a compile waits (regressions of a review of the first version)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.backend import background, cache

from test_background import WAIT


def _fresh(scale: float):
    """A function of its own graph (a constant of the trace), so that no earlier test's worker
    compiled it into the session's cache."""
    def fn(a, b):
        return np.tanh(a @ b) * scale - a * 0.5
    return fn


PYTHON = sys.executable
ARGS = (np.linspace(-1, 1, 9).reshape(3, 3), np.eye(3) * 0.5)


def test_a_worker_started_from_a_thread_outlives_the_thread():
    """The kernel's parent-death signal follows the thread that started a process: a worker
    started from a short-lived thread was killed when that thread ended."""
    fn = _fresh(1.25)
    f = gc.trace(fn, compile="background")
    started = []

    def first_call():
        f(*ARGS)
        started.append(f._last.pending.job)
        started[0].wait(1.5)  # (the thread ends while the worker is still compiling)
    thread = threading.Thread(target=first_call)
    thread.start()
    thread.join()
    assert started[0]._process.args[-1] == "watchdog"  # (no PR_SET_PDEATHSIG from this thread)
    assert f.wait_compiled(WAIT), started[0].error
    np.testing.assert_allclose(f(*ARGS), fn(*ARGS), rtol=1e-13)
    assert f.interpreted_calls == 1


def _child_calls(f, queue):
    out = f(*ARGS)
    queue.put((f.wait_compiled(WAIT), f.interpreted_calls, out))


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
def test_a_forked_child_starts_a_worker_of_its_own():
    """A process forked while a worker compiled waited for it forever (it is not its child):
    it ran the interpreter for good. Now it starts its own, which loads the parent's code."""
    fn = _fresh(1.5)
    f = gc.trace(fn, compile="background")
    f(*ARGS)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_calls, args=(f, queue))
    child.start()
    compiled, interpreted, out = queue.get(timeout=WAIT)
    child.join(WAIT)
    assert child.exitcode == 0 and compiled
    assert interpreted == 2  # the parent's first call (copied) and the child's
    np.testing.assert_array_equal(out, fn(*ARGS))
    assert f.wait_compiled(WAIT) and f.interpreted_calls == 1


def test_the_store_holds_no_job_and_clearing_it_spares_a_running_worker():
    """The job and its outcome went through files in the store: clear() took a running job's
    and the worker failed; a killed user process left them there for good."""
    fn = _fresh(1.75)
    f = gc.trace(fn, compile="background")
    f(*ARGS)
    store = cache.open_store()
    assert not [name for name in os.listdir(store) if name.startswith(".tmp-")]
    cache.clear()
    assert f.wait_compiled(WAIT), f._variants()[0].pending
    np.testing.assert_allclose(f(*ARGS), fn(*ARGS), rtol=1e-13)


def test_a_workers_error_is_its_own():
    """Every worker printed runpy's RuntimeWarning (started with -m), which became the 'error'
    of a worker that died without one."""
    f = gc.trace(_fresh(2.25), compile="background")
    f(*ARGS)
    job = f._last.pending.job
    assert f.wait_compiled(WAIT)
    assert b"Warning" not in b"".join(job._stderr), job._stderr


def test_save_a_function_the_interpreter_runs(tmp_path):
    """gc.save compared the interpreter's graph, before the passes, with the optimized one and
    refused every function run with compile="never" (or whose background compile failed)."""
    fn = _fresh(2.5)
    f = gc.trace(fn, compile="never")
    f(*ARGS)
    gc.save(f, tmp_path / "f.gcx")
    np.testing.assert_allclose(gc.load(tmp_path / "f.gcx")(*ARGS), fn(*ARGS), rtol=1e-13)


@pytest.mark.filterwarnings("ignore::graphc.backend.background.CompileWarning")  # (the hung one, killed)
def test_waiting_for_one_compile_does_not_stop_another_switching(tmp_path, monkeypatch):
    """f.source waited for its worker while holding the lock every switch takes: no other
    function could switch until that worker ended."""
    sleeper = tmp_path / "hang.sh"
    sleeper.write_text("#!/bin/sh\nexec sleep 600\n")
    sleeper.chmod(0o700)
    monkeypatch.setattr(background, "MAX_WORKERS", 2)  # (both start at once)
    monkeypatch.setattr(background.sys, "executable", str(sleeper))  # a worker that hangs
    hung = gc.trace(_fresh(2.75), compile="background")
    hung(*ARGS)
    hung._last.pending.job.launch()  # (its worker: the sleeper)
    assert hung._last.pending.job.pid is not None
    monkeypatch.setattr(background.sys, "executable", PYTHON)
    job = hung._last.pending.job
    waiting = threading.Thread(target=lambda: hung.source, daemon=True)
    waiting.start()
    try:
        fn = _fresh(3.25)
        g = gc.trace(fn, compile="background")
        g(*ARGS)
        assert g._last.pending.job.wait(WAIT)
        switched = threading.Thread(target=g, args=ARGS, daemon=True)
        switched.start()
        switched.join(60)
        assert not switched.is_alive(), "the switch waited for another function's worker"
        assert g.interpreted_calls == 1 and g._last.upgraded is not None
    finally:
        job.kill()
        waiting.join(60)


def test_the_trace_index_is_per_python(monkeypatch):
    """Numba's cache files are per Python version: a trace compiled by another Python is not
    'compiled before' for this one (it compiled in the user's process, however long)."""
    graph = gc.trace(_fresh(3.5), compile="never")
    graph(*ARGS)
    traced = graph._last.graph
    key = background.trace_key(traced, "O2", {}, ["f8"], False)
    monkeypatch.setattr(sys.implementation, "cache_tag", "cpython-399")
    assert background.trace_key(traced, "O2", {}, ["f8"], False) != key


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_a_dropped_functions_worker_is_reaped():
    """A worker whose function was dropped before it finished stayed a zombie (and held its
    entry in the running set) until the process exited."""
    f = gc.trace(_fresh(3.75), compile="background")
    f(*ARGS)
    f._last.pending.job.launch()  # (the worker starts at the second call, or here)
    pid = f._last.pending.job.pid
    del f
    deadline = time.monotonic() + WAIT
    while _state(pid) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) == "Z"  # finished, and nothing polled it
    g = gc.trace(_fresh(4.25), compile="background")
    g(*ARGS)
    g._last.pending.job.launch()  # starting a new background compile reaps finished ones
    assert _state(pid) is None
    assert not [job for job in background._RUNNING if job.pid == pid]
    g._last.pending.job.kill()


@pytest.mark.parametrize("executable", ["/nonexistent/python", ""])
def test_no_worker_can_start_so_it_compiles_now(monkeypatch, executable):
    """A worker that cannot be started at all (no Python executable: an embedded interpreter,
    a deleted virtual environment) raised FileNotFoundError from the user's first call."""
    monkeypatch.setattr(background.sys, "executable", executable)
    fn = _fresh(4.5)
    f = gc.trace(fn, compile="background")
    np.testing.assert_array_equal(f(*ARGS), fn(*ARGS))  # (the first call: the interpreter)
    np.testing.assert_allclose(f(*ARGS), fn(*ARGS), rtol=1e-13)  # no worker starts: compiled here
    assert f.interpreted_calls == 1 and f.wait_compiled(1)


def test_threads_in_the_interpreter_leave_the_warning_filters_alone():
    """The interpreter ignored RuntimeWarning with warnings.catch_warnings, which threads
    interleave: the filter stayed, and the user's own NumPy code never warned again."""
    f = gc.trace(lambda x: np.mean(x, axis=0) + 1.0, compile="never")
    empty = np.ones((0, 3))
    before = list(warnings.filters)

    def calls():
        for _ in range(1500):
            np.testing.assert_array_equal(f(empty), np.full(3, np.nan))
    threads = [threading.Thread(target=calls) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before
    with warnings.catch_warnings(record=True) as seen:  # (the filters as they are)
        np.mean(empty, axis=0)
    assert any("Mean of empty slice" in str(w.message) for w in seen)


def test_workers_take_turns(monkeypatch):
    """Every new signature started a worker at once: a function called with many shapes ran
    as many Pythons with Numba side by side (a core and ~0.2 GB each)."""
    monkeypatch.setattr(background, "MAX_WORKERS", 1)
    fns = [_fresh(4.75), _fresh(5.25)]
    fs = [gc.trace(fn, compile="background") for fn in fns]
    for f in fs:
        f(*ARGS)
        f._last.pending.job.launch()
    first, second = (f._last.pending.job for f in fs)
    assert first.pid is not None and second.pid is None  # (waiting for its turn)
    for f, fn in zip(fs, fns):
        assert f.wait_compiled(WAIT)
        np.testing.assert_allclose(f(*ARGS), fn(*ARGS), rtol=1e-13)
        assert f.interpreted_calls == 1
    assert second.pid is not None and second.result is not None


@pytest.mark.filterwarnings("ignore::graphc.backend.background.CompileWarning")  # (the hung one, killed)
def test_a_hung_worker_does_not_hold_up_the_others(tmp_path, monkeypatch):
    """Workers take turns, but one running longer than TURN seconds no longer counts."""
    sleeper = tmp_path / "hang.sh"
    sleeper.write_text("#!/bin/sh\nexec sleep 600\n")
    sleeper.chmod(0o700)
    monkeypatch.setattr(background, "MAX_WORKERS", 1)
    monkeypatch.setattr(background, "TURN", 0.5)
    monkeypatch.setattr(background.sys, "executable", str(sleeper))
    hung = gc.trace(_fresh(5.75), compile="background")
    hung(*ARGS)
    hung._last.pending.job.launch()  # (its worker: the sleeper)
    assert hung._last.pending.job.pid is not None
    monkeypatch.setattr(background.sys, "executable", PYTHON)
    try:
        fn = _fresh(6.25)
        f = gc.trace(fn, compile="background")
        f(*ARGS)
        assert f.wait_compiled(WAIT)
        np.testing.assert_allclose(f(*ARGS), fn(*ARGS), rtol=1e-13)
    finally:
        hung._last.pending.job.kill()


def test_a_workers_pass_warning_reaches_the_user(tmp_path, monkeypatch):
    """A pass that failed in the worker warned there, on a stderr nobody reads; compiling
    eagerly shows the user that PassWarning."""
    (tmp_path / "sitecustomize.py").write_text(
        "from graphc.passes import manager\n"
        "def broken(graph):\n"
        "    raise RuntimeError('broken on purpose')\n"
        "manager.PIPELINES['O2'] = manager.PIPELINES['O2'] + (('broken', broken),)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # (the worker's only)
    monkeypatch.delenv("GRAPHC_PASS_ERRORS", raising=False)  # (the default: warn and go on)
    fn = _fresh(6.75)
    f = gc.trace(fn, compile="background")
    f(*ARGS)
    f._last.pending.job.wait(WAIT)
    with pytest.warns(gc.PassWarning, match="broken on purpose"):
        out = f(*ARGS)
    np.testing.assert_allclose(out, fn(*ARGS), rtol=1e-13)
    assert f.interpreted_calls == 1


def test_ctrl_c_in_the_terminal_spares_the_worker():
    """Ctrl-C signals the whole foreground process group: the worker died of it (and the
    function interpreted for good) even where the user's program caught KeyboardInterrupt."""
    fn = _fresh(7.25)
    f = gc.trace(fn, compile="background")
    f(*ARGS)
    job = f._last.pending.job
    job.launch()
    time.sleep(0.5)  # (the worker has set up its handlers: Python starts in well under that)
    os.kill(job.pid, signal.SIGINT)
    assert f.wait_compiled(WAIT), job.error
    np.testing.assert_allclose(f(*ARGS), fn(*ARGS), rtol=1e-13)


def test_the_trace_key_digests_large_constants():
    """The key printed every constant's values: a million-element constant (an array read
    through a plain object's attribute) cost a second of the first call. Its digest tells
    constants apart as exactly (one element, the sign of a zero)."""
    def graph_of(table):
        holder = type("Holder", (), {})()
        holder.table = table
        f = gc.trace(lambda x: x * holder.table + 1.0, compile="never")
        f(np.ones(table.shape))
        return f._last.graph
    table = np.linspace(-1.0, 1.0, 100_001)  # (its middle element is 0.0)
    other, signed = table.copy(), table.copy()
    other[7] += np.spacing(other[7])
    signed[50_000] = -0.0
    graphs = [graph_of(t) for t in (table, table.copy(), other, signed)]
    keys = [background.trace_key(g, "O2", {}, ["f8"], False) for g in graphs]
    assert keys[0] == keys[1] and len(set(keys)) == 3
    assert len(background._text(graphs[0])) < 2000
