"""Background compilation: the first calls run in NumPy while Numba compiles in another process.

``gc.trace(fn, compile="background")`` (the default; ``GRAPHC_COMPILE`` sets it for a process)
runs a new signature's traced graph with the NumPy interpreter at once, and hands the graph to
a worker process (``python -m graphc.backend.background JOB``) that runs the passes, generates
the module and compiles it with Numba into the disk cache. Each later call polls the worker
(one ``waitpid``) and, once it has finished, switches to the compiled code, which loads from
the cache in milliseconds. A process, not a thread: Numba holds the GIL while it types and
lowers, so a thread would slow the user's loop as much as compiling in it.

Rules the workers keep:

* they never outlive the process that started them (the kernel kills a Linux worker when its
  parent dies; elsewhere a watchdog thread exits when the parent is gone; the parent kills
  running workers when it exits normally);
* one process compiles an entry at a time (``cache.compile_lock``); one worker per graph and
  signature in a process;
* the worker writes only through the disk cache's checked store; the parent reads back just
  the optimized graph (a pickle the worker wrote into the parent's private store) and compiles
  it again as usual, so its machine code comes through the cache's checks;
* a worker that fails (or is killed) leaves the function in the interpreter, with one warning
  naming the error.

The *trace index* (``t<hash>.trace`` in the store) records that a traced graph compiled: a
later process tracing the same graph compiles at once (a cache hit) instead of interpreting.
Without a usable disk cache there is nothing to hand over: ``background`` compiles eagerly.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings

import numba
import numpy as np
from numba.np import numpy_support

from graphc.backend import cache
from graphc.backend.base import get as get_backend
from graphc.backend.cpu import BACKEND_VERSION
from graphc.errors import GraphcError
from graphc.ir import Graph
from graphc.passes import manager

MODES = ("background", "eager", "never")
ENV = "GRAPHC_COMPILE"
FORMAT = "graphc-background-1"


class CompileWarning(UserWarning):
    """A background compile failed: the function keeps running in the NumPy interpreter."""


def check_mode(mode: str | None) -> str:
    """``mode``, or the process default (``$GRAPHC_COMPILE``, else ``"background"``), checked."""
    where = "compile="
    if mode is None:
        mode, where = os.environ.get(ENV) or "background", f"{ENV}="
    if mode not in MODES:
        raise ValueError(f"{where}{mode!r}: expected one of {', '.join(map(repr, MODES))}")
    return mode


def trace_key(graph: Graph, passes: str, options: dict, types, generic: bool) -> str:
    """What identifies a background compile: the traced graph's text, how it is compiled and
    for which argument types (24 hex digits, like the cache's keys)."""
    text = "\n".join([FORMAT, BACKEND_VERSION, numba.__version__, passes, repr(sorted(options.items())),
                      repr(list(types)), repr(generic), str(graph)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def compiled_before(store: str | None, key: str) -> bool:
    """Did a worker (of any process) compile this traced graph into the cache?"""
    if store is None:
        return False
    source_key = cache.read_in_store(store, f"t{key}.trace")
    return bool(source_key) and os.path.exists(os.path.join(store, f"g{source_key.decode()}.py"))


# -- the parent's side --------------------------------------------------------------------------
class Job:
    """One background compile: a worker process and the files it reads and writes in the store.

    The worker starts at the first poll (``launch``), not when the Job is made: the call that
    made it returns the interpreter's result without waiting for a process to start."""

    def __init__(self, key: str, store: str, payload: dict):
        self.key = key
        self.store = store
        self.error: str | None = None
        self.result = None  # (optimized graph, pass stats, compiled afresh?) once done
        self.pid: int | None = None
        self.owner = os.getpid()  # (a forked child sees this Job too: it neither waits for nor kills it)
        self._payload = payload
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        tag = f"{key}-{os.getpid()}"
        self._job_file, self._out_file, self._err_file = (f".tmp-{what}-{tag}" for what in ("job", "out", "err"))

    def launch(self):
        """Start the worker (once)."""
        with self._lock:
            if self._process is not None or self.error is not None or os.getpid() != self.owner:
                return
            # the worker imports this very graphc, wherever it was imported from
            here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
            env = dict(os.environ, GRAPHC_CACHE_DIR=os.path.dirname(self.store), PYTHONPATH=path)
            try:
                data = pickle.dumps(self._payload, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # (an attribute that does not pickle)
                self.error = f"the graph cannot be handed to a worker ({type(exc).__name__}: {exc})"
                return
            try:
                cache.write_in_store(self.store, self._job_file, data)
                err = os.open(os.path.join(self.store, self._err_file),
                              os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                try:  # (its messages go to a file: a pipe nobody reads could block it)
                    self._process = subprocess.Popen(
                        [sys.executable, "-m", "graphc.backend.background", os.path.join(self.store, self._job_file),
                         os.path.join(self.store, self._out_file), str(os.getpid())],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env, close_fds=True)
                finally:
                    os.close(err)
            except OSError as exc:
                self.error = f"the compile worker could not be started ({exc})"
                self._remove_files()
                return
            self._payload = None
            self.pid = self._process.pid
            _RUNNING.add(self)

    @property
    def done(self) -> bool:
        """Has the worker finished (either way)? Cheap: one ``waitpid`` until it has."""
        if self.result is not None or self.error is not None:
            return True
        if os.getpid() != self.owner:
            return False
        if self._process is None:
            self.launch()
            return self.error is not None
        if self._process.poll() is None:
            return False
        self._collect()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        if os.getpid() != self.owner:
            return False
        self.launch()
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        return self.done

    def kill(self):
        if os.getpid() != self.owner or self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._collect()

    def _collect(self):
        self._read_outcome()
        with _JOBS_LOCK:  # (a finished graph is found through the trace index from now on)
            if _JOBS.get(self.key) is self:
                del _JOBS[self.key]

    def _remove_files(self):
        for name in (self._job_file, self._out_file, self._err_file):
            try:
                os.unlink(os.path.join(self.store, name))
            except OSError:
                pass

    def _read_outcome(self):
        with self._lock:
            if self.result is not None or self.error is not None:
                return
            _RUNNING.discard(self)
            data = cache.read_in_store(self.store, self._out_file)
            messages = cache.read_in_store(self.store, self._err_file) or b""
            self._remove_files()
            outcome = None
            if data is not None:
                try:
                    outcome = pickle.loads(data)
                except Exception:  # (a torn or foreign file: the worker's exit says why)
                    outcome = None
            if isinstance(outcome, tuple) and outcome[:1] == ("ok",) and self._process.returncode == 0:
                self.result = outcome[1:]
                return
            if isinstance(outcome, tuple) and outcome[:1] == ("error",):
                self.error = outcome[1]
                return
            code = self._process.returncode
            tail = messages.decode(errors="replace").strip().splitlines()[-1:]
            self.error = (f"the compile worker (pid {self.pid}) "
                          + (f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
                          + (f": {tail[0]}" if tail else ""))


def describe(value):
    """What a worker needs of an argument to compile for it (``numba_type`` there): an array's
    dtype, rank, layout and flags, or a scalar itself. (Not ``numba.typeof`` here: its first
    call imports numpy.ma, 15 ms added to a first result.)"""
    if isinstance(value, np.ndarray):
        flags = value.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return ("array", value.dtype.str, value.ndim, layout, not flags.writeable, bool(flags.aligned))
    return ("value", value)


def numba_type(description):
    """The Numba type ``numba.typeof`` gives the argument ``describe`` described."""
    if description[0] == "array":
        _, dtype, ndim, layout, readonly, aligned = description
        return numba.types.Array(numpy_support.from_dtype(np.dtype(dtype)), ndim, layout, readonly=readonly,
                                 aligned=aligned)
    return numba.typeof(description[1])


_RUNNING: set = set()
_JOBS: dict = {}  # trace key -> Job: one worker per graph and signature in this process
_JOBS_LOCK = threading.RLock()


@atexit.register
def _kill_running():
    """Workers never outlive the process that started them."""
    for job in list(_RUNNING):
        try:
            job.kill()
        except Exception:
            pass


def start(graph: Graph, passes: str, options: dict, arguments, generic: bool = False):
    """Start (or join) the background compile of ``graph`` for these arguments.

    Returns ``("cached", None)`` where a worker compiled this graph before (compile it now: it
    loads from the cache), ``("job", Job)``, or ``("eager", reason)`` where nothing can be
    handed over (no usable disk cache)."""
    store = cache.open_store()
    if store is None:
        return "eager", "no usable disk cache"
    types = [describe(a) for a in arguments]
    key = trace_key(graph, passes, options, types, generic)
    if compiled_before(store, key):
        return "cached", None
    with _JOBS_LOCK:
        job = _JOBS.get(key)
        if job is not None and job.error is None:
            return "job", job
        job = Job(key, store, {"format": FORMAT, "graph": graph, "passes": passes, "options": options,
                               "types": types, "generic": generic, "key": key})
        _JOBS[key] = job
        return "job", job


def warn_failed(name: str, error: str):
    warnings.warn(f"{name}: the background compile failed, so it keeps running in the NumPy interpreter "
                  f"(correct, slower). The error: {error}. Trace with compile=\"eager\" to see it where it "
                  f"happens", CompileWarning, stacklevel=4)


# -- the worker's side --------------------------------------------------------------------------
def _die_with_parent(parent: int):
    """Exit when the parent process is gone: at once on Linux (the kernel sends SIGKILL), else
    within a quarter of a second (a watchdog thread; ctypes calls release the GIL, and Numba's
    typing is Python code, so the thread runs while Numba compiles)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        except (OSError, AttributeError):
            pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.25)
    if os.getppid() != parent:  # (the parent died before prctl took effect)
        os._exit(3)
    threading.Thread(target=watch, daemon=True).start()


def compile_job(job: dict):
    """Passes, code generation and the Numba compile of one job, into the disk cache.
    Returns ``(optimized graph, pass stats, compiled afresh?)`` (False: loaded from the cache)."""
    graph, stats = manager.run(job["graph"], job["passes"], errors="raise" if job["generic"] else None)
    backend = get_backend("cpu")
    executable = backend.compile(graph, {**job["options"], "passes": job["passes"]})
    executable.prepare_types([numba_type(d) for d in job["types"]])  # (under cache.compile_lock: one process per entry)
    store = cache.open_store()
    if store is not None and executable.key and executable.on_disk:
        cache.write_in_store(store, f"t{job['key']}.trace", executable.key.encode())
    return graph, stats, executable.cache_misses > 0


def main(argv=None):
    job_path, out_path, parent = (argv or sys.argv[1:])[:3]
    _die_with_parent(int(parent))
    # (not niced: on a busy machine a niced worker took 3x longer, while the interpreter, the
    # slower tier, kept running the user's loop)
    store = os.path.dirname(out_path)
    data = cache.read_in_store(store, os.path.basename(job_path))
    if data is None:
        raise SystemExit(f"graphc compile worker: cannot read the job {job_path}")
    job = pickle.loads(data)
    try:
        outcome = ("ok", *compile_job(job))
    except (GraphcError, numba.core.errors.NumbaError, ValueError, TypeError) as exc:
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    cache.write_in_store(store, os.path.basename(out_path), pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
