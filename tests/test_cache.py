"""The on-disk cache: a second process starts warm; corrupt entries are recompiled.

The warm start is asserted on Numba's own counters (``cache_hits`` and
``cache_misses`` of the entry), never on wall time. Each child process compiles
three small graphs, so one child checks three corruption cases at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from graphc.backend import cache, cpu

CHILD = textwrap.dedent("""
    import json, numpy as np, graphc as gc

    def f1(x):
        return np.tanh(x) * 2.0 + 1.0

    def f2(x):
        return np.sum(np.exp(x), axis=0)

    def f3(x, w):
        return x @ w - 3.0

    x = np.linspace(0, 1, 12).reshape(3, 4).astype(np.float32)
    out = {}
    for name, fn, args in (("f1", f1, (x,)), ("f2", f2, (x,)), ("f3", f3, (x, x.T.copy()))):
        traced = gc.trace(fn)
        result = traced(*args)
        compiled = traced._last.compiled
        out[name] = {"hits": compiled.cache_hits, "misses": compiled.cache_misses, "path": compiled.path,
                     "result": np.asarray(result).tolist(), "dtype": str(np.asarray(result).dtype)}
    print("RESULT " + json.dumps(out))
""")


def run_child(cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _expected():
    x = np.linspace(0, 1, 12).reshape(3, 4).astype(np.float32)
    return {"f1": np.tanh(x) * 2.0 + 1.0, "f2": np.sum(np.exp(x), axis=0), "f3": x @ x.T - 3.0}


def check_results(out):
    for name, want in _expected().items():
        got = np.array(out[name]["result"], dtype=out[name]["dtype"])
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def numba_files(path, kind):
    """Numba's cache files (``.nbi`` index or ``.nbc`` data) for the module at ``path``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    pycache = os.path.join(os.path.dirname(path), "__pycache__")
    return sorted(os.path.join(pycache, n) for n in os.listdir(pycache)
                  if n.startswith(stem + ".") and n.endswith(kind))


def test_second_process_is_warm_and_corrupt_entries_are_recompiled(tmp_path):
    cache_dir = tmp_path / "cache"

    # 1. a cold process compiles everything
    cold = run_child(cache_dir)
    check_results(cold)
    for name, stats in cold.items():
        assert stats["misses"] > 0 and stats["hits"] == 0, (name, stats)
        assert os.path.dirname(stats["path"]) == str(cache_dir)
        assert numba_files(stats["path"], ".nbi") and numba_files(stats["path"], ".nbc")
    assert not [n for n in os.listdir(cache_dir) if n.startswith(".tmp")]  # atomic writes left no temp files

    # 2. a second process with the same cache directory does not recompile
    warm = run_child(cache_dir)
    check_results(warm)
    for name, stats in warm.items():
        assert stats["hits"] > 0 and stats["misses"] == 0, (name, stats)
        assert stats["path"] == cold[name]["path"]

    # 3. corrupt one entry per graph: the generated .py, Numba's index, Numba's data
    with open(cold["f1"]["path"], "w") as fh:
        fh.write("this is not ( python\n")
    for path in numba_files(cold["f2"]["path"], ".nbi"):
        with open(path, "wb") as fh:
            fh.write(os.urandom(64))
    for path in numba_files(cold["f3"]["path"], ".nbc"):
        with open(path, "wb") as fh:
            fh.write(b"\x80\x04garbage" + os.urandom(32))
    repaired = run_child(cache_dir)
    check_results(repaired)
    for name, stats in repaired.items():
        assert stats["misses"] > 0, (name, stats)  # recompiled, not fatal

    # 4. ... and the repaired cache is warm again
    again = run_child(cache_dir)
    check_results(again)
    for name, stats in again.items():
        assert stats["hits"] > 0 and stats["misses"] == 0, (name, stats)


def test_truncated_index_in_this_process(tmp_path, monkeypatch):
    """A truncated Numba index in the cache directory is recompiled in-process too."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    import graphc as gc

    def fn(x):
        return np.cos(x) - 0.25  # a graph no other test compiles

    x = np.arange(5, dtype=np.float64)
    first = gc.trace(fn)
    first(x)
    path = first._last.compiled.path
    assert os.path.dirname(path) == str(tmp_path)
    for index in numba_files(path, ".nbi"):
        with open(index, "r+b") as fh:
            fh.truncate(10)
    # a fresh load of the module (as a new process would do) reads the broken index
    cpu._IN_PROCESS.clear()
    second = gc.trace(fn)
    np.testing.assert_allclose(second(x), np.cos(x) - 0.25)
    assert second._last.compiled.cache_misses > 0


def test_cache_files_are_keyed_by_content_and_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    a = cache.content_hash("source", "cpu-1")
    assert a == cache.content_hash("source", "cpu-1")
    assert a != cache.content_hash("source", "cpu-2")
    assert a != cache.content_hash("other source", "cpu-1")
    path = cache.write_module(a, "x = 1\n")
    assert path == os.path.join(str(tmp_path), f"g{a}.py")
    stamp = os.stat(path).st_mtime_ns
    assert cache.write_module(a, "x = 1\n") == path
    assert os.stat(path).st_mtime_ns == stamp  # unchanged content is not rewritten (Numba keys on mtime)
    assert cache.import_module(path).x == 1


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == os.path.join(str(tmp_path), ".cache", "graphc")
    assert os.path.isdir(cache.cache_dir())


def test_same_graph_twice_in_a_process_compiles_once():
    import graphc as gc

    def fn(x):
        return np.sin(x) * 3.0 - 0.125

    x = np.arange(4, dtype=np.float64)
    a, b = gc.trace(fn), gc.trace(fn)
    a(x)
    b(x)
    assert a._last.compiled.path == b._last.compiled.path
    assert a._last.compiled.entry is b._last.compiled.entry


@pytest.mark.parametrize("kind", [".nbi", ".nbc"])
def test_corrupt_numba_files_do_not_break_compiled_calls(tmp_path, monkeypatch, kind):
    """Corruption found while loading (not compiling): the call still returns the right answer."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    import graphc as gc

    def fn(x):
        return np.abs(x) + 0.5  # another graph of its own

    x = np.linspace(-1, 1, 6)
    traced = gc.trace(fn)
    traced(x)
    path = traced._last.compiled.path
    for f in numba_files(path, kind):
        with open(f, "wb") as fh:
            fh.write(b"")
    cpu._IN_PROCESS.clear()
    np.testing.assert_allclose(gc.trace(fn)(x), np.abs(x) + 0.5)


def test_hash_covers_the_graphc_modules_the_source_imports(monkeypatch):
    """Numba only watches the generated file: a change in vecmath must change the module's name."""
    source = "from graphc.backend.vecmath import exp_f32\nx = 1\n"
    before = cache.content_hash(source, "cpu-x")
    monkeypatch.setattr(cache, "_module_digest", lambda module: "a different vecmath")
    assert cache.content_hash(source, "cpu-x") != before
    assert cache.content_hash("x = 1\n", "cpu-x") == cache.content_hash("x = 1\n", "cpu-x")
