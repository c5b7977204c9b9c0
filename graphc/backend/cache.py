"""The on-disk cache of generated modules and their machine code.

Layout: ``<cache dir>/graphc-cache/`` (the *store*, mode 0700, tagged with a
``CACHEDIR.TAG`` file) holds, per compiled graph, ``g<key>.py`` (the generated
source, for the user to read) and Numba's machine code for each of its
functions (``g<key>.<function>-<line>.py3X.nbi`` index, ``...<digest>.nbc``
data). ``<key>`` hashes the source, the backend, Numba and NumPy versions and
the graphc modules the source imports.

Only code graphc wrote is run:

* the module is compiled from the source graphc generated in this process
  (whose hash is the key), never imported from the file or from a ``.pyc``;
* Numba's index for a function is accepted only when it names this key and
  function, and each machine-code file only when its SHA-256 is the one the
  index recorded: files of another entry, swapped or corrupt, are recompiled;
* files are read only when they are regular files of this user (never
  following links, never opening a FIFO), from a store that is a real
  directory of this user that nobody else can write.

A cache directory that cannot be trusted or written (another user's, group- or
world-writable, a file, a dangling link, read-only...) gives one warning and
graphc compiles in memory; an entry path taken by something that is not a
file does the same for that graph. ``clear()`` removes only files graphc wrote.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import pickle
import re
import stat
import sys
import types
import warnings
from dataclasses import dataclass, field

import numba
import numpy as np
from numba.core.caching import CompileResultCacheImpl, FunctionCache, IndexDataCacheFile, _CacheLocator
from numba.core.dispatcher import Dispatcher

from graphc.fileio import write_atomically

try:
    import fcntl
except ImportError:  # (Windows: no advisory locks; two processes may then compile one entry twice)
    fcntl = None

STORE = "graphc-cache"
MARKER = "CACHEDIR.TAG"  # the Cache Directory Tagging convention: backup tools skip the store
MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
               "# This directory is graphc's compile cache; `graphc clear-cache` removes the files\n"
               "# graphc wrote here (and nothing else).\n")
INDEX_FORMAT = "graphc-index-1"
_KEY = r"g[0-9a-f]{24}"
# the names graphc gives files in the store: sources, Numba's index and data, compile locks,
# the trace index (graphc/backend/background.py), temporary files
_STORE_FILE = re.compile(rf"{_KEY}\.py|{_KEY}\.[\w.-]+\.nb[ic]|{_KEY}\.lock|t[0-9a-f]{{24}}\.trace|\.tmp-[\w.-]+")
# what graphc versions before the store wrote straight into the cache directory
_LEGACY_SOURCE = re.compile(rf"{_KEY}\.py")
_LEGACY_PYCACHE = re.compile(rf"{_KEY}\.[\w.-]+\.(nbi|nbc|pyc)")


class CacheWarning(UserWarning):
    """The disk cache cannot be used (graphc compiles in memory instead)."""


def cache_dir() -> str:
    """The cache directory: ``$GRAPHC_CACHE_DIR``, else ``~/.cache/graphc`` (not created here)."""
    path = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")
    return os.path.abspath(path)  # a later chdir must not move it


def content_hash(source: str, backend_version: str) -> str:
    h = hashlib.sha256()
    for part in (backend_version, numba.__version__, np.__version__, source):
        h.update(part.encode())
        h.update(b"\0")
    # Numba's cache only sees the generated module: the graphc modules it imports (vecmath's
    # kernels are compiled into it) must be part of the key, or an upgrade of them would keep
    # running stale machine code
    for module in sorted(set(re.findall(r"^from (graphc[\w.]*) import", source, re.M))):
        h.update(_module_digest(module).encode())
    return h.hexdigest()[:24]


@functools.lru_cache(maxsize=None)
def _module_digest(module: str) -> str:
    spec = importlib.util.find_spec(module)
    try:
        with open(spec.origin, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError, AttributeError):
        return module


# ----------------------------------------------------------------------------------------
# Checked file-system access

_WARNED: set = set()
# the warning points at the first frame outside these (the user's call)
_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
                      for m in (sys.modules[__name__.split(".")[0]], numba))


def _warn(path: str, reason: str, scope: str = "compiling in memory (no disk cache)"):
    """Warn once per process about ``path`` and ``reason``, at the user's line."""
    if (path, reason) in _WARNED:
        return
    _WARNED.add((path, reason))
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"graphc's compile cache: {path} {reason}; {scope}", CacheWarning, stacklevel=level)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device"


_VANISHED = "was removed while graphc was setting it up"
_RETRIES = 3  # for a directory removed meanwhile (another process's clear-cache)


def _dir_problem(path: str, follow_link: bool) -> str | None:
    """Why ``path`` cannot hold the cache, or None; a missing directory is created (mode 0700)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            os.makedirs(path, mode=0o700)
        except FileExistsError:
            pass  # another process made it: checked below
        except FileNotFoundError:
            return _VANISHED  # its parent, just checked, was removed
        except OSError as exc:
            return f"cannot be created ({exc.strerror or exc})"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return _VANISHED
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        if not follow_link:
            return "is a symbolic link, not a directory graphc made"
        try:
            st = os.stat(path)
        except OSError:
            return "is a dangling symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"is {_kind(st.st_mode)}, not a directory"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid}): its files could run code as you"
    if st.st_mode & 0o022:
        return (f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): they could plant code "
                f"that graphc would run; use a directory only you can write (chmod 700)")
    if not os.access(path, os.W_OK | os.X_OK):
        return "is not writable"
    return None


def open_store(root: str | None = None) -> str | None:
    """The checked store directory under ``root`` (default ``cache_dir()``), created if missing.

    None, after a one-time warning, when the cache directory or the store cannot be trusted
    or written.
    """
    root = root or cache_dir()
    problem = _store_problem(root)
    for _ in range(_RETRIES):
        if not problem or problem[1] != _VANISHED:
            break
        problem = _store_problem(root)  # another process cleared the cache meanwhile: again
    if problem:
        _warn(*problem)
        return None
    return os.path.join(root, STORE)


def _store_problem(root: str) -> tuple[str, str] | None:
    """(directory, reason) if the store under ``root`` cannot be used, else None."""
    problem = _dir_problem(root, follow_link=True)  # a link to another disk is fine, if checked
    if problem:
        return root, problem
    store = os.path.join(root, STORE)
    problem = _dir_problem(store, follow_link=False)
    if problem:
        return store, problem
    try:
        if stat.S_IMODE(os.stat(store).st_mode) != 0o700:
            os.chmod(store, 0o700)  # nobody else may read captured values or list entries
        if _read_file(os.path.join(store, MARKER)) != MARKER_TEXT.encode():
            write_atomically(os.path.join(store, MARKER), MARKER_TEXT.encode(), private=True, prefix=".tmp-")
    except FileNotFoundError:
        return store, _VANISHED
    except OSError as exc:
        return store, f"cannot be written ({exc.strerror or exc})"
    return None


def _read_file(path: str) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of this user that only they can write, else None.

    Never follows a link and never blocks on a FIFO (opened non-blocking, then checked).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        try:
            return f.read()
        except OSError:
            return None


def _write_in_store(root: str, path: str, data: bytes):
    """``_write_atomic``, again if the store was removed meanwhile (another process's
    clear-cache) and could be made again."""
    for _ in range(_RETRIES):
        try:
            write_atomically(path, data, private=True, prefix=".tmp-")
            return
        except FileNotFoundError:
            if open_store(root) is None:
                raise
    write_atomically(path, data, private=True, prefix=".tmp-")


def _save_source(root: str, store: str, key: str, source: str) -> str | None:
    """Keep ``source`` at ``<store>/g<key>.py``; its path, or None if that path is taken."""
    path = os.path.join(store, f"g{key}.py")
    data = source.encode("utf-8")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        _warn(path, f"cannot be read ({exc.strerror or exc})", "compiling this graph in memory")
        return None
    if st is not None and not stat.S_ISREG(st.st_mode):
        _warn(path, f"is {_kind(st.st_mode)}, not a file graphc wrote", "compiling this graph in memory")
        return None
    if st is not None and st.st_size == len(data) and _read_file(path) == data:
        return path  # unchanged: not rewritten
    try:
        _write_in_store(root, path, data)  # missing, changed or not ours: the file only documents the entry
    except OSError as exc:
        _warn(path, f"cannot be written ({exc.strerror or exc})", "compiling this graph in memory")
        return None
    return path


@contextlib.contextmanager
def compile_lock(key: str | None):
    """Hold the store's lock for entry ``key`` (``g<key>.lock``; an advisory ``flock``, released
    when the holder exits, even killed): processes compiling the same entry take turns, and the
    later one finds the machine code the first saved. A no-op without a key or a usable store."""
    store = open_store() if key and fcntl is not None else None
    if store is None:
        yield
        return
    try:
        fd = os.open(os.path.join(store, f"g{key}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:  # (taken by something else: compile unlocked, as without a store)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (releases the lock)


def read_in_store(store: str, name: str) -> bytes | None:
    """A file graphc wrote in the store (``_read_file``'s checks), or None."""
    return _read_file(os.path.join(store, name))


def write_in_store(store: str, name: str, data: bytes):
    """Write a file into the store atomically (mode 0600)."""
    _write_in_store(os.path.dirname(store), os.path.join(store, name), data)


# ----------------------------------------------------------------------------------------
# Loading a generated module and tying Numba's cache files to it


def load_module(key: str, source: str):
    """Run the generated ``source`` (hashed to ``key``) as module ``graphc_generated.g<key>``.

    Returns ``(module, filename, on_disk)``. The module is compiled from ``source`` itself
    (no bytecode cache). With a usable store, the source is saved there and every Numba
    function of the module keeps its machine code there (checked on load); otherwise
    ``filename`` is a ``<graphc ...>`` placeholder and Numba compiles in memory.
    Raises SyntaxError if the source is not valid Python.
    """
    root = cache_dir()
    store = open_store(root)
    path = _save_source(root, store, key, source) if store else None
    filename = path or f"<graphc g{key}>"
    name = f"graphc_generated.g{key}"
    code = compile(source, filename, "exec", dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(code, module.__dict__)
    sys.modules.setdefault(name, module)  # Numba finds a cached function's globals by module name
    if path:
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.py_func.__module__ == name:
                value._cache = EntryCache(value.py_func, root, store, key)
    return module, filename, path is not None


class _EntryLocator(_CacheLocator):
    """Where one function of a generated module keeps its machine code: graphc's store.

    The source stamp is the entry's key (a hash of the source this process compiled), not
    the file's mtime or contents: the machine code belongs to that text, whatever the file
    on disk holds.
    """

    def __init__(self, py_func, root: str, store: str, key: str):
        self._py_file = py_func.__code__.co_filename  # Numba's warnings name it
        self._lineno = py_func.__code__.co_firstlineno
        self._root, self._store, self._key = root, store, key

    def ensure_cache_path(self):
        # the store may have been deleted (graphc clear-cache, another process) since the
        # module was loaded: make and check it again before writing
        if open_store(self._root) != self._store:
            raise OSError(f"the cache directory {self._root} cannot be used")

    def get_cache_path(self):
        return self._store

    def get_source_stamp(self):
        return self._key

    def get_disambiguator(self):
        return str(self._lineno)


class _EntryImpl(CompileResultCacheImpl):
    def __init__(self, py_func, locator):  # Numba's __init__ searches its locators: ours is given
        self._lineno = py_func.__code__.co_firstlineno
        self._locator = locator
        module = os.path.splitext(os.path.basename(py_func.__code__.co_filename))[0]
        self._filename_base = self.get_filename_base(f"{module}.{py_func.__qualname__}",
                                                     getattr(sys, "abiflags", ""))


class EntryCache(FunctionCache):
    """Numba's per-function disk cache, with files checked on load and errors never fatal."""

    def __init__(self, py_func, root: str, store: str, key: str):
        self._name = repr(py_func)
        self._py_func = py_func
        self._impl = _EntryImpl(py_func, _EntryLocator(py_func, root, store, key))
        self._cache_path = store
        self._cache_file = _CheckedFiles(root, store, self._impl.filename_base, key)
        self.enable()

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception:  # unreadable or incompatible files: compile afresh (and overwrite them)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:  # the result is computed already: a cache that cannot keep it is no error
            _warn(self._cache_path, f"cannot be written ({exc})", "compiled code is kept in memory only")


class _CheckedFiles(IndexDataCacheFile):
    """Numba's index and data files, read only if they belong to this entry and are intact.

    The index records the entry's key, the function's file name base and, for each
    signature, the data file's name and SHA-256; data files are named by their digest, so
    concurrent writers never overwrite each other's files.
    """

    def __init__(self, root, cache_path, filename_base, source_stamp):
        super().__init__(cache_path, filename_base, source_stamp)
        self._root = root
        self._filename_base = filename_base

    def load(self, key):
        entry = self._load_index().get(key)
        if not (isinstance(entry, tuple) and len(entry) == 2):
            return None
        name, digest = entry
        if not self._is_data_name(name):
            return None
        payload = _read_file(self._data_path(name))
        if payload is None or hashlib.sha256(payload).hexdigest() != digest:
            return None  # missing, replaced or corrupt: recompiled
        return pickle.loads(payload)

    def save(self, key, data):
        payload = self._dump(data)
        digest = hashlib.sha256(payload).hexdigest()
        name = f"{self._filename_base}.{digest[:32]}.nbc"
        # data first: an index names no missing file (unless the store is cleared in between)
        _write_in_store(self._root, self._data_path(name), payload)
        overloads = self._load_index()
        old = overloads.get(key)
        overloads[key] = (name, digest)
        self._save_index(overloads)
        if isinstance(old, tuple) and old[0] != name and self._is_data_name(old[0]) \
                and all(v[0] != old[0] for v in overloads.values()):
            try:
                os.unlink(self._data_path(old[0]))
            except OSError:
                pass

    def _is_data_name(self, name) -> bool:
        return (isinstance(name, str) and name.startswith(self._filename_base + ".") and name.endswith(".nbc")
                and os.sep not in name and "/" not in name)

    def _load_index(self):
        raw = _read_file(self._index_path)
        if raw is None:
            return {}
        try:
            fmt, version, stamp, base, overloads = pickle.loads(raw)
        except Exception:  # truncated, corrupt or another format: start afresh
            return {}
        if (fmt, version, stamp, base) != (INDEX_FORMAT, self._version, self._source_stamp, self._filename_base) \
                or not isinstance(overloads, dict):
            return {}  # another entry's, function's or Numba version's index
        return overloads

    def _save_index(self, overloads):
        _write_in_store(self._root, self._index_path, self._dump(
            (INDEX_FORMAT, self._version, self._source_stamp, self._filename_base, overloads)))


# ----------------------------------------------------------------------------------------
# Clearing


@dataclass
class Cleared:
    """What ``clear()`` did: files removed, graphs they held, things left in place."""

    removed: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    graphs: int = 0
    bytes: int = 0


def clear(root: str | None = None) -> Cleared:
    """Remove the files graphc wrote under ``root`` (default ``cache_dir()``), nothing else.

    That is the store's files named as graphc names them, its tag and the store itself once
    empty, and the ``g<key>.py`` modules (with their ``__pycache__`` files) that graphc
    versions before the store wrote into the cache directory itself. Anything else found in
    the store is listed in ``kept``. Links are never followed.
    """
    root = root or cache_dir()
    report = Cleared()
    store = os.path.join(root, STORE)
    if _own_dir(store):
        leftovers = []
        for entry in _scan(store):
            if entry.name != MARKER and _STORE_FILE.fullmatch(entry.name) and _own_file(entry):
                _remove(entry.path, report)
            elif entry.name != MARKER:
                leftovers.append(entry.path)
        report.kept += sorted(leftovers)
        marker = os.path.join(store, MARKER)
        if not leftovers and _read_file(marker) == MARKER_TEXT.encode():
            _remove(marker, report)
            try:
                os.rmdir(store)
            except OSError:
                pass
    if _own_dir(root):
        for entry in _scan(root):  # graphc's files from before the store
            if _LEGACY_SOURCE.fullmatch(entry.name) and _own_file(entry) \
                    and (_read_file(entry.path) or b"").startswith(b"# generated by graphc"):
                _remove(entry.path, report)
        pycache = os.path.join(root, "__pycache__")
        if _own_dir(pycache):
            for entry in _scan(pycache):
                if _LEGACY_PYCACHE.fullmatch(entry.name) and _own_file(entry):
                    _remove(entry.path, report)
            try:
                os.rmdir(pycache)  # only if graphc's files were all it held
            except OSError:
                pass
    return report


def _own_dir(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def _own_file(entry) -> bool:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def _scan(path: str) -> list:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []


def _remove(path: str, report: Cleared):
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except OSError:
        return
    report.removed.append(path)
    report.bytes += size
    report.graphs += path.endswith(".py")
