"""Review 11: compile="background"'s lazily made trace key (ops_key, ``s<ops>.seen``, a job that
follows its "twin") and flat reductions of fewer than FLAT_LANE_MIN elements.

The review found three bugs, all fixed: a job following its twin did not compile in its own
process where the twin's worker could not start, and warned once more when the twin's worker
failed; and (older) a dynamic= function's second process interpreted its first call instead of
loading the template's code."""
from __future__ import annotations

import glob
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.backend import background

from conftest import assert_same
from test_background import WAIT, user_env

PYTHON = sys.executable


def _fresh(scale: float, op):
    """A function of a graph of its own (a constant of the trace) and of ops of its own (no
    .seen mark of an earlier test's worker: its job makes its trace key at launch)."""
    def fn(x):
        return op(x) * scale + 1.0
    return fn


X = np.linspace(0, 1, 7)


def _failures(seen):
    return [w for w in seen if w.category is background.CompileWarning]


# -- change A: the twin a lazily-keyed job follows --------------------------------------------
def test_a_follower_of_a_twin_whose_worker_cannot_start_compiles_too(monkeypatch):
    fn = _fresh(11.0, np.exp)
    a, b = gc.trace(fn, compile="background"), gc.trace(fn, compile="background")
    a(X), b(X)
    monkeypatch.setattr(background, "MAX_WORKERS", 0)  # (the queue is full: a worker compiles elsewhere)
    a(X), b(X)
    assert b._last.pending.job._twin is a._last.pending.job
    monkeypatch.setattr(background, "MAX_WORKERS", 1)

    def no_fork(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(background.subprocess, "Popen", no_fork)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            np.testing.assert_allclose(a(X), fn(X), rtol=1e-13)
            np.testing.assert_allclose(b(X), fn(X), rtol=1e-13)
    assert a.wait_compiled(5)  # (the twin's function compiled in its own process)
    assert b.wait_compiled(5), [str(w.message) for w in _failures(seen)]  # actual: False, and a warning


def test_one_killed_worker_warns_once():
    fn = _fresh(12.0, np.sin)
    a, b = gc.trace(fn, compile="background"), gc.trace(fn, compile="background")
    a(X), b(X)
    a(X), b(X)
    twin = a._last.pending.job
    assert b._last.pending.job._twin is twin and twin.pid is not None  # one worker
    os.kill(twin.pid, signal.SIGKILL)
    twin.wait(WAIT)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):
            np.testing.assert_allclose(a(X), fn(X), rtol=1e-13)
            np.testing.assert_allclose(b(X), fn(X), rtol=1e-13)
    assert len(_failures(seen)) == 1, [str(w.message)[:60] for w in _failures(seen)]


def test_the_same_function_traced_twice_and_called_from_threads_starts_one_worker():
    """Two TracedFunctions of one graph, their first and second calls from four threads at once:
    one worker; both switch to its code; every result right."""
    fn = _fresh(13.0, np.cos)
    a, b = gc.trace(fn, compile="background"), gc.trace(fn, compile="background")
    barrier, errors, outs = threading.Barrier(4), [], []

    def calls(f):
        try:
            barrier.wait()
            outs.append(f(X))
            barrier.wait()
            outs.append(f(X))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
    threads = [threading.Thread(target=calls, args=(f,)) for f in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors and len(outs) == 8
    for out in outs:
        np.testing.assert_allclose(out, fn(X), rtol=1e-13)
    jobs = {id(c.pending.job): c.pending.job for f in (a, b) for c in f._variants() if c.pending}
    workers = {j.pid for j in jobs.values() if j.pid is not None}
    assert len(workers) == 1, (workers, [(j.key, j._twin) for j in jobs.values()])
    assert a.wait_compiled(WAIT) and b.wait_compiled(WAIT)
    np.testing.assert_allclose(a(X), fn(X), rtol=1e-13)
    np.testing.assert_allclose(b(X), fn(X), rtol=1e-13)


def test_a_follower_outlives_its_twins_function_and_a_fork():
    """The function owning the twin dropped while its worker runs; a child forked after the
    follower's launch starts its own worker and gets the right result."""
    fn = _fresh(14.0, np.log1p)
    a, b = gc.trace(fn, compile="background"), gc.trace(fn, compile="background")
    a(X), b(X)
    a(X), b(X)
    assert b._last.pending.job._twin is not None
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_calls, args=(b, queue))
    child.start()
    del a
    compiled, out = queue.get(timeout=WAIT)
    child.join(WAIT)
    assert child.exitcode == 0 and compiled
    np.testing.assert_allclose(out, fn(X), rtol=1e-13)
    assert b.wait_compiled(WAIT)
    np.testing.assert_allclose(b(X), fn(X), rtol=1e-13)


def _child_calls(f, queue):
    f(X)
    ok = f.wait_compiled(WAIT)
    queue.put((ok, f(X)))


# -- change A across processes: warm starts, .seen files, graphs of the same ops -------------
_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, graphc as gc
    k = float(sys.argv[1])
    def fn(x):
        return np.tanh(x) * k + 1.0
    dynamic = {"x": {0: "B"}} if "dynamic" in sys.argv else None
    f = gc.trace(fn, compile="background", dynamic=dynamic)
    x = np.linspace(-1, 1, 9)
    first = f(x)
    assert np.allclose(first, fn(x), rtol=1e-13, atol=0), (first, fn(x))
    print(f.interpreted_calls, flush=True)
    if "wait" in sys.argv:
        f(x)
        assert f.wait_compiled(300)
        assert np.allclose(f(x), fn(x), rtol=1e-13, atol=0), (f(x), fn(x))
""")


def _run(tmp_path, *argv) -> int:
    out = subprocess.run([PYTHON, "-c", _SCRIPT, *argv], env=user_env(tmp_path), capture_output=True,
                         text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[0])


def test_warm_starts_and_graphs_that_differ_only_in_a_constant(tmp_path):
    """A second process loads the first's code at its first call; a graph of the same ops and
    types (its .seen mark exists) but another constant never loads it; a cache without .seen
    marks (an older graphc's) interprets once, correctly."""
    assert _run(tmp_path, "2.0", "wait") == 1
    assert _run(tmp_path, "2.0") == 0  # warm: compiled code at the first call
    assert _run(tmp_path, "3.0", "wait") == 1  # same ops key, another trace key (and right results)
    assert _run(tmp_path, "3.0") == 0
    for path in glob.glob(str(tmp_path / "cache" / "*" / "s*.seen")):
        os.remove(path)
    assert _run(tmp_path, "2.0") == 1  # (an older cache: one interpreted call, a right result)


def test_a_dynamic_function_starts_warm_in_a_second_process(tmp_path):
    assert _run(tmp_path, "2.5", "dynamic", "wait") == 1
    assert _run(tmp_path, "2.5", "dynamic") == 0  # actual: 1


# -- change B: flat reductions shorter than FLAT_LANE_MIN (one scalar accumulator) -----------
def _reductions(x):
    with np.errstate(all="ignore"):
        return (np.sum(x), np.mean(x), np.prod(x), np.max(x), np.min(x), np.sum(x * 2 + 1),
                np.sum(x, dtype=np.float64), np.sum(x, dtype=np.int64) if x.dtype.kind != "f" else
                np.sum(x, dtype=np.float32))


@pytest.mark.parametrize("n", [31, 63, 255, 256])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_short_flat_reductions_match_numpy(n, dtype):
    """NaN wins max/min/sum wherever it is, the sign of a zero max/min, int64 wrap-around."""
    f = gc.trace(_reductions, compile="eager")
    rng = np.random.default_rng(n)
    if dtype == "int64":
        cases = [rng.integers(-5, 6, n), np.full(n, np.iinfo(np.int64).max), np.full(n, 3)]
    else:
        a = rng.standard_normal(n).astype(dtype)
        cases = [a, np.full(n, 0.99, dtype)]
        for where in (0, n // 2, n - 1):
            b = a.copy()
            b[where] = np.nan
            cases.append(b)
        zeros = np.full(n, -0.0, dtype)
        zeros[-1] = 0.0
        cases.append(zeros)
    for x in cases:
        x = np.asarray(x, dtype)
        got, want = f(x), _reductions(x)
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{dtype}[{n}] output {k} of {x[:3]}...")
            if np.asarray(w).dtype.kind == "f" and w == 0 and n < 256:
                assert np.signbit(g) == np.signbit(w), (k, g, w)
