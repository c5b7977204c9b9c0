"""The on-disk cache: warm second processes, only graphc's own code run, bad directories survived.

The warm start is asserted on Numba's own counters (``cache_hits`` and ``cache_misses``
of the entry), never on wall time. The subprocess test compiles three small graphs per
child, so one child checks three corruption cases at once. Most other tests load tiny
hand-written modules through ``cache.load_module`` (a fraction of a graph's compile time).
"""
from __future__ import annotations

import importlib.util
import json
import marshal
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import graphc as gc
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
    folder = os.path.dirname(path)
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.startswith(stem + ".") and n.endswith(kind))


def plant_pyc(path, source):
    """Write the bytecode of ``source`` where Python's import system looks for ``path``'s,
    stamped with the .py file's mtime and size, so that an import would take it as valid."""
    st = os.stat(path)
    code = compile(source, path, "exec")
    pyc = importlib.util.cache_from_source(path)
    os.makedirs(os.path.dirname(pyc), exist_ok=True)
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little") + \
        (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    with open(pyc, "wb") as fh:
        fh.write(header + marshal.dumps(code))


def test_second_process_is_warm_and_corrupt_entries_are_recompiled(tmp_path):
    cache_dir = tmp_path / "cache"
    store = cache_dir / cache.STORE

    # 1. a cold process compiles everything, into the store (only the user may enter it)
    cold = run_child(cache_dir)
    check_results(cold)
    for name, stats in cold.items():
        assert stats["misses"] > 0 and stats["hits"] == 0, (name, stats)
        assert os.path.dirname(stats["path"]) == str(store)
        assert numba_files(stats["path"], ".nbi") and numba_files(stats["path"], ".nbc")
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(store / n).st_mode) == 0o600 for n in os.listdir(store))
    assert (store / cache.MARKER).read_text() == cache.MARKER_TEXT
    assert not [n for n in os.listdir(store) if n.startswith(".tmp")]  # atomic writes left no temp files
    assert not (store / "__pycache__").exists()  # the module is never imported from a file

    # 2. a second process with the same cache directory does not recompile
    warm = run_child(cache_dir)
    check_results(warm)
    for name, stats in warm.items():
        assert stats["hits"] > 0 and stats["misses"] == 0, (name, stats)
        assert stats["path"] == cold[name]["path"]

    # 3. tamper with one entry per graph: a .pyc planted beside the generated .py (stamped as
    #    valid for it: an import would run it) with its machine code gone (so it would be
    #    compiled), Numba's index, Numba's data
    f1 = cold["f1"]["path"]
    plant_pyc(f1, open(f1).read().replace("2.0", "7.0"))  # still valid Python: wrong values
    for path in numba_files(f1, ".nbi") + numba_files(f1, ".nbc"):
        os.unlink(path)
    for path in numba_files(cold["f2"]["path"], ".nbi"):
        with open(path, "wb") as fh:
            fh.write(os.urandom(64))
    for path in numba_files(cold["f3"]["path"], ".nbc"):
        with open(path, "wb") as fh:
            fh.write(b"\x80\x04garbage" + os.urandom(32))
    repaired = run_child(cache_dir)
    check_results(repaired)  # the .pyc was not run
    for name in ("f1", "f2", "f3"):
        assert repaired[name]["misses"] > 0, (name, repaired[name])  # recompiled, not fatal

    # 4. the saved .py edited: rewritten, not run; the machine code belongs to the generated text
    #    (its key), not to the file, so it still loads
    source = open(f1).read()
    with open(f1, "w") as fh:
        fh.write(source.replace("2.0", "7.0"))

    again = run_child(cache_dir)
    check_results(again)
    assert open(f1).read() == source
    for name, stats in again.items():  # ... and the repaired cache is warm again
        assert stats["hits"] > 0 and stats["misses"] == 0, (name, stats)


def test_swapped_machine_code_is_recompiled_not_run(tmp_path, monkeypatch):
    """Two entries' Numba files exchanged (data, then index): right answers, recompiled."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu, "_IN_PROCESS", {})

    def fa(x):
        return x * 2.0 + 1.0

    def fb(x):
        return x * 3.0 - 1.0

    x = np.linspace(-1, 1, 7)
    want = {fa: fa(x), fb: fb(x)}
    paths = {}
    for fn in (fa, fb):
        traced = gc.trace(fn)
        np.testing.assert_array_equal(traced(x), want[fn])
        paths[fn] = traced._last.compiled.path
    for kind in (".nbc", ".nbi"):
        (a,), (b,) = numba_files(paths[fa], kind), numba_files(paths[fb], kind)
        data_a, data_b = open(a, "rb").read(), open(b, "rb").read()
        with open(a, "wb") as fh:
            fh.write(data_b)
        with open(b, "wb") as fh:
            fh.write(data_a)
        cpu._IN_PROCESS.clear()  # load from disk as a new process would
        for fn in (fa, fb):
            traced = gc.trace(fn)
            np.testing.assert_array_equal(traced(x), want[fn], err_msg=kind)
            compiled = traced._last.compiled
            assert compiled.cache_misses == 1 and compiled.cache_hits == 0, kind


def test_truncated_index_in_this_process(tmp_path, monkeypatch):
    """A truncated Numba index in the cache directory is recompiled in-process too."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))

    def fn(x):
        return np.cos(x) - 0.25  # a graph no other test compiles

    x = np.arange(5, dtype=np.float64)
    first = gc.trace(fn)
    first(x)
    path = first._last.compiled.path
    assert os.path.dirname(path) == str(tmp_path / cache.STORE)
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
    module, path, on_disk = cache.load_module(a, "x = 1\n")
    assert on_disk and module.x == 1 and path == str(tmp_path / cache.STORE / f"g{a}.py")
    stamp = os.stat(path).st_mtime_ns
    assert cache.load_module(a, "x = 1\n")[1] == path
    assert os.stat(path).st_mtime_ns == stamp  # unchanged content is not rewritten


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() == os.path.join(str(tmp_path), ".cache", "graphc")
    assert cache.open_store() == os.path.join(cache.cache_dir(), cache.STORE)
    assert stat.S_IMODE(os.stat(cache.open_store()).st_mode) == 0o700


def test_same_graph_twice_in_a_process_compiles_once():
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


# ----------------------------------------------------------------------------------------
# Cache directories graphc must not use, or cannot: one warning, then in-memory compiles.

_TINY = 0


def tiny_module():
    """Load a fresh one-function module (its own key) through the cache: (module, path, on_disk)."""
    global _TINY
    _TINY += 1
    source = f"from numba import njit\n\n\n@njit\ndef entry(x):\n    return x * 2.0 + {_TINY}\n"
    return cache.load_module(cache.content_hash(source, "test"), source), _TINY


def load_and_run(expect_disk: bool):
    """Load a tiny module, call it, check the answer; returns (path, entry)."""
    (module, path, on_disk), offset = tiny_module()
    assert on_disk == expect_disk, path
    assert module.entry(1.5) == 3.0 + offset
    return path, module.entry


def _dangling_link(root):
    os.symlink(root.parent / "nowhere", root)


def _fifo(root):
    os.mkfifo(root)


def _group_writable(root):
    root.mkdir()
    root.chmod(0o770)


def _world_writable_sticky(root):  # like /tmp
    root.mkdir()
    root.chmod(0o1777)


def _another_users(root):
    root.mkdir(mode=0o700)
    os.chown(root, os.geteuid() + 1, -1)


def _read_only(root):
    root.mkdir()
    root.chmod(0o500)


BAD_ROOTS = [
    pytest.param(lambda root: root.write_text("not a directory"), "is a file, not a directory", id="file"),
    pytest.param(_dangling_link, "is a dangling symbolic link", id="dangling-link"),
    pytest.param(_fifo, "is a FIFO, not a directory", id="fifo"),
    pytest.param(_group_writable, "is writable by other users .mode 770.", id="group-writable"),
    pytest.param(_world_writable_sticky, "is writable by other users .mode 1777.", id="world-writable"),
    pytest.param(_another_users, "belongs to another user", id="another-user",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown a directory")),
    pytest.param(_read_only, "is not writable", id="read-only",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")),
]


@pytest.mark.parametrize("make, reason", BAD_ROOTS)
def test_unusable_cache_dir_warns_once_and_compiles_in_memory(tmp_path, monkeypatch, make, reason):
    root = tmp_path / "cache"
    make(root)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    before = sorted(os.listdir(tmp_path))
    with pytest.warns(cache.CacheWarning, match=f"{root}.* {reason}.*compiling in memory"):
        path, _ = load_and_run(expect_disk=False)
    assert path.startswith("<graphc g")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_and_run(expect_disk=False)  # once per process
    assert sorted(os.listdir(tmp_path)) == before  # nothing was created beside it
    if root.is_dir() and not root.is_symlink():
        assert not (root / cache.STORE).exists()  # nothing written into it either
        root.chmod(0o700)  # let pytest clean up


def test_unwritable_cache_dir_as_seen_by_access(tmp_path, monkeypatch):
    """A directory the process may not write (a read-only file system stops root too), whoever
    runs the test: the check goes by os.access, simulated here."""
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == str(root)
                        else real_access(path, mode, **kw))
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    with pytest.warns(cache.CacheWarning, match=f"{root} is not writable; compiling in memory"):
        load_and_run(expect_disk=False)
    assert os.listdir(root) == []


def test_unusable_store_inside_a_good_dir(tmp_path, monkeypatch):
    """The store itself replaced by a link or a world-writable directory is refused too."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, tmp_path / cache.STORE)
    with pytest.warns(cache.CacheWarning, match="is a symbolic link"):
        load_and_run(expect_disk=False)
    assert os.listdir(elsewhere) == []
    os.unlink(tmp_path / cache.STORE)
    (tmp_path / cache.STORE).mkdir()
    (tmp_path / cache.STORE).chmod(0o777)
    with pytest.warns(cache.CacheWarning, match="writable by other users"):
        load_and_run(expect_disk=False)
    (tmp_path / cache.STORE).chmod(0o755)  # the user's own, readable by others: tightened, then used
    load_and_run(expect_disk=True)
    assert stat.S_IMODE(os.stat(tmp_path / cache.STORE).st_mode) == 0o700


def test_traced_function_in_an_unusable_cache_dir(tmp_path, monkeypatch):
    """End to end: a world-writable GRAPHC_CACHE_DIR gives a warning and right answers."""
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    monkeypatch.setattr(cpu, "_IN_PROCESS", {})

    def fn(x):
        return np.exp(x) - 2.5

    x = np.linspace(0, 1, 5)
    with pytest.warns(cache.CacheWarning, match="writable by other users"):
        traced = gc.trace(fn)
        np.testing.assert_allclose(traced(x), np.exp(x) - 2.5)
    compiled = traced._last.compiled
    assert not compiled.on_disk and compiled.path.startswith("<graphc") and "entry" in traced.source
    assert os.listdir(root) == []


def reload(path):
    """Load the module saved at ``path`` again, as a new process would (new Numba dispatchers)."""
    with open(path) as fh:
        return cache.load_module(os.path.basename(path)[1:-3], fh.read())[0]


def remove_numba_files(path):
    for name in numba_files(path, ".nbi") + numba_files(path, ".nbc"):
        os.unlink(name)


@pytest.mark.parametrize("planted", ["directory", "FIFO", "symbolic link"])
def test_something_planted_at_an_entry_path(tmp_path, monkeypatch, planted):
    """A non-file at the entry's .py path: that graph compiles in memory (no hang on a FIFO)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    offset = {"directory": 1001, "FIFO": 1002, "symbolic link": 1003}[planted]
    source = f"from numba import njit\n\n\n@njit\ndef entry(x):\n    return x - {offset}\n"
    key = cache.content_hash(source, "test")
    store = cache.open_store()
    target = os.path.join(store, f"g{key}.py")
    elsewhere = os.path.join(store, "elsewhere.py")
    {"directory": os.mkdir, "FIFO": os.mkfifo, "symbolic link": lambda p: os.symlink(elsewhere, p)}[planted](target)
    with pytest.warns(cache.CacheWarning, match=f"g{key}.py is a {planted}, not a file graphc wrote"):
        module, path, on_disk = cache.load_module(key, source)
    assert not on_disk and module.entry(2000.0) == 2000.0 - offset
    assert not os.path.exists(elsewhere)


def test_fifo_or_directory_at_numba_file_paths(tmp_path, monkeypatch):
    """Numba's index path taken by a FIFO (never opened for reading: no hang; replaced when the
    index is saved) or by a directory (cannot be replaced: one warning): right answers."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    path, entry = load_and_run(expect_disk=True)
    (index,) = numba_files(path, ".nbi")
    remove_numba_files(path)
    os.mkfifo(index)
    module = reload(path)
    assert module.entry(0.5) == entry(0.5)
    assert os.path.isfile(index)
    again = reload(path).entry
    assert again(0.5) == entry(0.5) and sum(again.stats.cache_hits.values()) == 1

    path, entry = load_and_run(expect_disk=True)
    (index,) = numba_files(path, ".nbi")
    remove_numba_files(path)
    os.mkdir(index)
    module = reload(path)
    with pytest.warns(cache.CacheWarning, match="cannot be written .*Is a directory"):
        assert module.entry(0.5) == entry(0.5)


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda f: os.chmod(f, 0o666), id="world-writable"),
    pytest.param(lambda f: os.chown(f, os.geteuid() + 1, -1), id="another-user",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown a file")),
])
def test_machine_code_others_could_have_written_is_not_loaded(tmp_path, monkeypatch, tamper):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    path, entry = load_and_run(expect_disk=True)
    (data,) = numba_files(path, ".nbc")
    tamper(data)
    again = reload(path).entry
    assert again(0.5) == entry(0.5) and sum(again.stats.cache_misses.values()) == 1
    healed = reload(path).entry  # saved afresh, in a file of the user's (mode 0600) that replaced it
    assert healed(0.5) == entry(0.5) and sum(healed.stats.cache_hits.values()) == 1
    (data,) = numba_files(path, ".nbc")
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600 and os.stat(data).st_uid == os.geteuid()


def test_cache_deleted_between_load_and_compile(tmp_path, monkeypatch):
    """The whole cache directory removed after the module was loaded (another process's
    clear-cache): the compile recreates it and saves there, never `no locator available`."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    monkeypatch.setattr(cpu, "_IN_PROCESS", {})

    def fn(x):
        return np.sqrt(x) + 0.75

    x = np.linspace(0, 4, 9)
    traced = gc.trace(fn).lower(x)  # traced and loaded, not compiled yet
    shutil.rmtree(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(traced(x), np.sqrt(x) + 0.75)
    path = traced._last.compiled.path
    assert numba_files(path, ".nbi") and numba_files(path, ".nbc")  # saved in the recreated store
    assert stat.S_IMODE(os.stat(root / cache.STORE).st_mode) == 0o700

    shutil.rmtree(root)  # and removed before a fresh load
    cpu._IN_PROCESS.clear()
    np.testing.assert_allclose(gc.trace(fn)(x), np.sqrt(x) + 0.75)


def test_concurrent_processes_while_the_cache_is_deleted(tmp_path):
    """Two processes compile the same graphs while a third removes the cache repeatedly."""
    root = tmp_path / "cache"
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(root))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    while any(p.poll() is None for p in procs):
        shutil.rmtree(root, ignore_errors=True)
        time.sleep(0.02)
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        assert "no locator" not in err and "Traceback" not in err
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
        check_results(json.loads(line[len("RESULT "):]))


# ----------------------------------------------------------------------------------------
# Clearing


def test_clear_removes_only_what_graphc_wrote(tmp_path, monkeypatch):
    root = tmp_path
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    user_files = {
        "notes.txt": "mine",
        "__pycache__/mod.cpython-311.pyc": "my bytecode",
        "g0123456789abcdef01234567.py": "print('my own module with a graphc-like name')\n",
        "data/g0123456789abcdef01234567.py": "# generated by graphc (not really: my folder)\n",
        f"{cache.STORE}/my-notes.txt": "I put this here",
    }
    for name, text in user_files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    old = "g" + "a" * 24  # an entry of graphc before the store: in the cache directory itself
    legacy = {f"{old}.py": "# generated by graphc (cpu-4) from graph f; do not edit\n",
              f"__pycache__/{old}.entry-12.py311.nbi": "index",
              f"__pycache__/{old}.entry-12.py311.1.nbc": "data",
              f"__pycache__/{old}.cpython-311.pyc": "bytecode"}
    for name, text in legacy.items():
        (root / name).write_text(text)
    paths = [load_and_run(expect_disk=True)[0] for _ in range(2)]
    written = sorted(os.listdir(root / cache.STORE))

    report = cache.clear()

    for name, text in user_files.items():
        assert (root / name).read_text() == text, name
    assert not any((root / name).exists() for name in legacy)
    assert not any(os.path.exists(p) for p in paths)
    assert sorted(os.listdir(root / cache.STORE)) == [cache.MARKER, "my-notes.txt"]  # the tag stays with it
    assert report.kept == [str(root / cache.STORE / "my-notes.txt")]
    assert report.graphs == 3  # two entries and the legacy module
    assert sorted(report.removed) == sorted([str(root / cache.STORE / n) for n in written
                                             if n not in (cache.MARKER, "my-notes.txt")]
                                            + [str(root / n) for n in legacy])
    assert report.bytes > 0

    (root / cache.STORE / "my-notes.txt").unlink()
    load_and_run(expect_disk=True)
    assert cache.clear().kept == [] and not (root / cache.STORE).exists()  # emptied: removed
    assert cache.clear().removed == []  # nothing left to do


BLAS_CHILD = """
import sys
import numpy as np
import graphc as gc
f = gc.trace(lambda a, b: np.tanh(a @ b))
a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2), np.float32)
assert np.allclose(f(a, b), np.tanh(a @ b))
print("scipy.linalg" in sys.modules, "scipy.linalg.cython_blas" in sys.modules)
import scipy.linalg.cython_blas
import scipy.linalg
print(scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"],
      np.allclose(scipy.linalg.solve(np.eye(2) * 2, np.ones(2)), 0.5))
"""


def test_compiling_does_not_import_scipy_linalg_and_leaves_it_importable(tmp_path):
    """graphc.backend.blas loads SciPy's cython_blas alone while Numba loads its registries (the
    package scipy.linalg costs ~0.15 s of every first compile or warm start), and takes it out of
    sys.modules again: a later import of scipy.linalg works as usual."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_COMPILE="eager")
    proc = subprocess.run([sys.executable, "-c", BLAS_CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True", "True"], proc.stdout
