"""Background compilation: the first calls run in NumPy while Numba compiles in another process.

``gc.trace(fn, compile="background")`` (the default; ``GRAPHC_COMPILE`` sets it for a process)
runs a new signature's traced graph with the NumPy interpreter at once, and hands the graph to
a worker process (``graphc.backend.background.main``) that runs the passes, generates
the module and compiles it with Numba into the disk cache. Each later call polls the worker
(one ``waitpid``) and, once it has finished, switches to the compiled code, which loads from
the cache in milliseconds. A process, not a thread: Numba holds the GIL while it types and
lowers, so a thread would slow the user's loop as much as compiling in it.

Rules the workers keep:

* they never outlive the process that started them (the kernel kills a Linux worker when its
  parent dies, where the main thread started it; otherwise a watchdog thread exits when the
  parent is gone; the parent kills running workers when it exits normally); a process forked
  while a worker ran starts a worker of its own when it calls the function;
* one process compiles an entry at a time (``cache.compile_lock``); one worker per graph and
  signature in a process, and at most ``MAX_WORKERS`` young ones at once (the rest queue);
* the worker writes only through the disk cache's checked store; it reads its job from a pipe
  and the parent reads back just the optimized graph from another (nothing of a job is left in
  the store), and compiles it again as usual, so its machine code comes through the cache's
  checks;
* a worker that fails (or is killed) leaves the function in the interpreter, with one warning
  naming the error.

The *trace index* (``t<hash>.trace`` in the store) records that a traced graph compiled: a
later process tracing the same graph compiles at once (a cache hit) instead of interpreting.
Its key prints the whole graph, so a first call makes it only where ``s<hash>.seen`` (the
graph's ops and argument types, which the worker marks too) says a worker compiled such a
graph; otherwise the job makes its key when it launches, at the second call.
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
from graphc.ir import Const, Graph
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
    for which argument types, by which Python and Numba (Numba's cache files are theirs; 24
    hex digits, like the cache's keys)."""
    return _digest(_how(passes, options, types, generic) + [_text(graph)])


def _how(passes: str, options: dict, types, generic: bool) -> list[str]:
    """What a compile's keys hold besides the graph: the format, who compiles, how, for what."""
    return [FORMAT, BACKEND_VERSION, numba.__version__, sys.implementation.cache_tag or "",
            passes, repr(sorted(options.items())), repr(list(types)), repr(generic)]


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def ops_key(graph: Graph, passes: str, options: dict, types, generic: bool) -> str:
    """A cheap key that equal trace keys share: everything of ``trace_key`` but the graph's
    text, of which only its ops in order. A worker marks it in the store (``s<key>.seen``) as
    it marks the trace key; where no mark exists, nothing this graph could load from the cache
    was compiled, and the trace key (printing the whole graph, ~3 us a node: 1.7 ms of the
    40-layer chain's 17 ms first result) waits until the job launches, at the second call."""
    return _digest(_how(passes, options, types, generic)
                   + [graph.name or "", str(len(graph.inputs)), " ".join(n.op for n in _all_nodes(graph))])


def _text(graph: Graph) -> str:
    """The graph's text with each large constant written as a digest of its bytes: printing
    the values of a million-element constant took a second of the user's first call. (Without
    one the graph prints as it is: the copy costs as much as the printing, ~2 ms at 500 nodes.)"""
    if not any(_large(value) for node in _all_nodes(graph) for value in node.attrs.values()):
        return str(graph)
    copy = graph.clone()
    for node in _all_nodes(copy):
        for name, value in node.attrs.items():
            if _large(value):
                dtype, shape, data = value._key
                node.attrs[name] = f"<constant {dtype} {shape} sha256:{hashlib.sha256(data).hexdigest()}>"
    return str(copy)


def _large(value) -> bool:
    return isinstance(value, Const) and value.array.size > 64


def _all_nodes(graph: Graph):
    nodes = list(graph.nodes)
    while nodes:
        node = nodes.pop()
        yield node
        for region in node.regions:
            nodes.extend(region.nodes)


def seen_before(store: str, ops: str) -> bool:
    """Did a worker compile a graph of this ``ops_key`` into the cache?"""
    return bool(cache.read_in_store(store, f"s{ops}.seen"))


def compiled_before(store: str | None, key: str) -> bool:
    """Did a worker (of any process) compile this traced graph into the cache?"""
    if store is None:
        return False
    source_key = cache.read_in_store(store, f"t{key}.trace")
    return bool(source_key) and os.path.exists(os.path.join(store, f"g{source_key.decode()}.py"))


# -- the parent's side --------------------------------------------------------------------------
# The worker's program. Ctrl-C signals a terminal's whole foreground process group, and the
# user's program may catch it and go on: the worker runs in a session of its own and ignores
# SIGINT from its first line (it ends with its parent anyway)
_WORKER = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
           "from graphc.backend.background import main; main()")


class Job:
    """One background compile: a worker process, the job written to its stdin and the outcome
    read from its stdout (pipes, not files: nothing is left in the store by a killed process,
    and clearing the cache cannot take a running job's files). At most ``MAX_WORKERS`` run at
    once per process; the others wait their turn (``pid`` None) while the interpreter runs."""

    def __init__(self, key: str | None, store: str, payload: dict, make_key=None):
        self.key = key  # (None until launch where ``make_key`` makes it: see ops_key)
        self._make_key = make_key
        self._twin = None  # a job of this process with the same key, launched first: its outcome is ours
        self.store = store
        # the job (a dict, pickled when the worker starts; kept: a forked child starts a worker
        # of its own from it)
        self.payload = payload
        self.error: str | None = None
        self.result = None  # (optimized graph, pass stats, compiled afresh?) once done
        self.warnings: list = []  # graphc's warnings in the worker (a PassWarning): (category, text)
        self.owner = os.getpid()  # (a forked child sees this Job too: it starts its own worker)
        self.pid: int | None = None
        self._process = None  # (None: not started, or waiting for its turn)
        self._launched = False
        self.start_failed = False  # (no worker could start: the caller compiles in its own process)
        self._lock = threading.Lock()

    def launch(self):
        """Queue the job for a worker (once). Not when the Job is made: the call that made it
        returns the interpreter's result without pickling, writing or spawning anything."""
        with _JOBS_LOCK:
            if self._launched or os.getpid() != self.owner:
                return
            self._launched = True
            if self._keyed():
                _QUEUE.append(self)
                _pump()

    def _keyed(self) -> bool:
        """Give a job made without its trace key the key (under _JOBS_LOCK): False where a
        live job of the same key runs already, which this one then follows."""
        if self.key is not None:
            return True
        self._give_key()
        twin = _JOBS.get(self.key)
        if twin is not None and twin.error is None and twin.owner == self.owner:
            self._twin = twin
            return False
        _JOBS[self.key] = self
        return True

    def _give_key(self):
        self.key = self.payload["key"] = self._make_key()

    def _follow(self) -> bool:
        """Done where this job follows a twin that is done (its outcome copied; its warnings
        stay the twin's, relayed once: ``origin``)."""
        twin = self._twin
        if twin is None or not twin.done:
            return False
        self.result, self.error, self.start_failed = twin.result, twin.error, twin.start_failed
        return True

    @property
    def origin(self) -> "Job":
        """The job whose worker ran: the twin a job follows, or the job itself (its warnings,
        and the one warning of its failure, are given once for every job following it)."""
        return self._twin or self

    def _spawn(self):
        # the worker imports this very graphc, wherever it was imported from
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, GRAPHC_CACHE_DIR=os.path.dirname(self.store), PYTHONPATH=path)
        # The kernel kills the worker when the *thread* that started it ends (PR_SET_PDEATHSIG
        # follows threads): ask for it only from the main thread, which lives as long as the
        # process; from another thread the worker's watchdog notices the process's end instead.
        with_thread = threading.current_thread() is threading.main_thread()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(os.getpid()), "pdeathsig" if with_thread else "watchdog"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True,
            bufsize=0,  # (unbuffered: a forked child's copy of the pipe has nothing to flush into it)
            start_new_session=os.name == "posix")  # (Ctrl-C in a terminal is the user's, not the worker's)
        self.pid = self._process.pid
        self.started = time.monotonic()
        _RUNNING.add(self)
        # feed and drain the pipes in threads: the worker reads its job only once it has imported
        # Numba, and a worker writing more than a pipe holds must never block
        self._stdout: list = []
        self._stderr: list = []
        if not isinstance(self.payload, bytes):
            self.payload = pickle.dumps(self.payload, protocol=pickle.HIGHEST_PROTOCOL)
        job = len(self.payload).to_bytes(8, "little") + self.payload  # (sized: a forked child holding
        # the pipe open must not keep the worker waiting for its end)
        self._threads = [threading.Thread(target=_feed, args=(self._process.stdin, job), daemon=True),
                         threading.Thread(target=_drain, args=(self._process.stdout, self._stdout), daemon=True),
                         threading.Thread(target=_drain, args=(self._process.stderr, self._stderr), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _adopt(self) -> bool:
        """In a process forked while this job ran or waited: queue it for a worker of this
        process's own (the parent's cannot be waited for here; the new one waits for the
        parent's through the compile lock, then loads its code from the cache). False where
        this process owns the job already."""
        if os.getpid() == self.owner:
            return False
        with _JOBS_LOCK:
            if os.getpid() != self.owner:
                if self._process is not None:
                    _INHERITED.append(self._process)  # (the parent's: never waited for here)
                _RUNNING.discard(self)
                self.owner, self.pid, self._process, self._lock = os.getpid(), None, None, threading.Lock()
                self._launched, self._twin = True, None
                if self.key is None:
                    self._give_key()
                if self.result is None and self.error is None:
                    _QUEUE.append(self)
                    _pump()
        return True

    @property
    def done(self) -> bool:
        """Has the worker finished (either way)? Cheap: one ``waitpid`` until it has."""
        if self.result is not None or self.error is not None:
            return True
        self._adopt()
        self.launch()
        if self._twin is not None:
            return self._follow()
        process = self._process
        if process is None:  # (its turn may have come)
            _pump()
            return self.error is not None
        if process.poll() is None:
            return False
        self._collect()
        _pump()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        self.launch()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._twin is not None:
                if not self._twin.wait(left):
                    return False
                continue
            if self._process is None:  # (waiting for its turn: the running ones finish first)
                time.sleep(0.05 if left is None else min(0.05, left))
                continue
            try:
                self._process.wait(left)
            except subprocess.TimeoutExpired:
                return False
        return True

    def kill(self):
        if os.getpid() != self.owner:
            return
        if self._process is None:
            with _JOBS_LOCK:
                if self in _QUEUE:
                    _QUEUE.remove(self)
                if self.result is None and self.error is None:
                    self.error = "the compile was cancelled before it started"
            self._collect()
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._collect()

    def _collect(self):
        if self._process is not None:
            self._read_outcome()
        with _JOBS_LOCK:  # (a finished graph is found through the trace index from now on)
            if _JOBS.get(self.key) is self:
                del _JOBS[self.key]

    def _read_outcome(self):
        with self._lock:
            if self.result is not None or self.error is not None:
                return
            _RUNNING.discard(self)
            self.payload = b""  # (a graph's constants may be large: not kept once done)
            wait = 5.0 if self._process.returncode == 0 else 0.5  # (killed: its tail at most)
            for thread in self._threads[1:]:  # (the worker has exited: its pipes end at once)
                thread.join(wait)
            outcome = None
            try:
                outcome = pickle.loads(b"".join(self._stdout))
            except Exception:  # (a torn or empty outcome: the worker's exit says why)
                outcome = None
            if isinstance(outcome, tuple) and len(outcome) == 3 and outcome[0] in ("ok", "error"):
                self.warnings = outcome[2]
                if outcome[0] == "ok" and self._process.returncode == 0:
                    self.result = outcome[1]
                    return
                if outcome[0] == "error":
                    self.error = outcome[1]
                    return
            code = self._process.returncode
            tail = b"".join(self._stderr).decode(errors="replace").strip().splitlines()[-1:]
            self.error = (f"the compile worker (pid {self.pid}) "
                          + (f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
                          + (f": {tail[0]}" if tail else ""))


def _pump():
    """Collect this process's finished workers and start waiting jobs while fewer than
    ``MAX_WORKERS`` started in the last ``TURN`` seconds run (a job that cannot start gets that
    as its error)."""
    with _JOBS_LOCK:
        me = os.getpid()
        for job in list(_RUNNING):  # (one waitpid each: also reaps a dropped function's worker)
            if job.owner == me and job._process.poll() is not None:
                job._collect()
        while _QUEUE:
            now = time.monotonic()
            if sum(job.owner == me and now - job.started < TURN for job in _RUNNING) >= MAX_WORKERS:
                break
            job = _QUEUE.pop(0)
            try:
                job._spawn()
            except (OSError, ValueError, subprocess.SubprocessError, pickle.PicklingError, TypeError,
                    AttributeError) as exc:  # (no Python to run, no fork; a graph that does not pickle)
                job.start_failed = True
                job.error = f"cannot start a compile worker ({type(exc).__name__}: {exc})"
                job._collect()


def _feed(pipe, data: bytes):
    try:
        with pipe:
            view = memoryview(data)
            while view:
                view = view[pipe.write(view):]
    except (OSError, ValueError):  # (the worker died before reading it: its exit says why)
        pass


def _drain(pipe, into: list):
    try:
        with pipe:
            into.append(pipe.read())
    except (OSError, ValueError):
        pass


# MAX_WORKERS compile at once per process (each a Python with Numba: a core and ~0.2 GB); a
# function called with many shapes queues the rest, which the interpreter runs meanwhile. A
# worker running longer than TURN seconds (a long compile, one waiting on another process's
# lock) no longer counts: it never holds the others up for good
MAX_WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))
TURN = 20.0
_RUNNING: set = set()  # jobs whose worker was started and not yet collected
_QUEUE: list = []  # jobs waiting for their turn
_INHERITED: list = []  # a forked child's copies of its parent's workers
_JOBS: dict = {}  # trace key -> Job: one worker per graph and signature in this process
_JOBS_LOCK = threading.RLock()


def _new_locks():
    global _JOBS_LOCK
    _JOBS_LOCK = threading.RLock()  # (a fork while another thread held it: the child's is free)
    _QUEUE.clear()  # (the parent's: a child queues what it calls itself, Job._adopt)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks)


@atexit.register
def _kill_running():
    """Workers never outlive the process that started them."""
    _QUEUE.clear()  # (nothing more starts)
    for job in list(_RUNNING):
        try:
            job.kill()
        except Exception:
            pass


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


def start(graph: Graph, passes: str, options: dict, arguments, generic: bool = False):
    """Start (or join) the background compile of ``graph`` for these arguments.

    Returns ``("cached", None)`` where a worker compiled this graph before (compile it now: it
    loads from the cache), ``("job", Job)``, or ``("eager", reason)`` where nothing can be
    handed over (no usable disk cache)."""
    store = cache.open_store()
    if store is None:
        return "eager", "no usable disk cache"
    types = [describe(a) for a in arguments]
    ops = ops_key(graph, passes, options, types, generic)
    payload = {"format": FORMAT, "graph": graph, "passes": passes, "options": options,
               "types": types, "generic": generic, "key": None, "ops": ops}
    if not seen_before(store, ops):  # (nothing to load: the trace key is made at launch)
        return "job", Job(None, store, payload, lambda: trace_key(graph, passes, options, types, generic))
    key = payload["key"] = trace_key(graph, passes, options, types, generic)
    if compiled_before(store, key):
        return "cached", None
    with _JOBS_LOCK:
        _pump()  # (reaps finished workers nothing polls any more: their function was dropped)
        job = _JOBS.get(key)
        if job is not None and job.error is None:
            return "job", job
        job = Job(key, store, payload)
        _JOBS[key] = job
        return "job", job


def relay_warnings(job: Job):
    """Warn here, once, with what graphc warned in the worker."""
    job = job.origin
    relayed, job.warnings = job.warnings, []
    for category, text in relayed:
        warnings.warn(text, category, stacklevel=5)


def warn_failed(name: str, error: str):
    warnings.warn(f"{name}: the background compile failed, so it keeps running in the NumPy interpreter "
                  f"(correct, slower). The error: {error}. Trace with compile=\"eager\" to see it where it "
                  f"happens", CompileWarning, stacklevel=4)


# -- the worker's side --------------------------------------------------------------------------
def _die_with_parent(parent: int, pdeathsig: bool):
    """Exit when the parent process is gone: at once on Linux where the parent started the
    worker from its main thread (the kernel sends SIGKILL), else within a quarter of a second
    (a watchdog thread; ctypes calls release the GIL, and Numba's typing is Python code, so the
    thread runs while Numba compiles)."""
    if pdeathsig and sys.platform.startswith("linux"):
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
        cache.write_in_store(store, f"s{job['ops']}.seen", b"1")
    return graph, stats, executable.cache_misses > 0


def _read_exactly(pipe, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = pipe.read(left)
        if not chunk:
            raise SystemExit("graphc compile worker: the job ended early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main(argv=None):
    """The worker: ``python -c "...main()" PARENT_PID pdeathsig|watchdog``; reads the pickled
    job from stdin, writes the pickled outcome to stdout."""
    parent, how = (argv or sys.argv[1:])[:2]
    _die_with_parent(int(parent), how == "pdeathsig")
    # (not niced: on a busy machine a niced worker took 3x longer, while the interpreter, the
    # slower tier, kept running the user's loop)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # (anything printed goes to stderr: stdout carries the outcome alone)
    stdin = sys.stdin.buffer.raw
    size = int.from_bytes(_read_exactly(stdin, 8), "little")
    job = pickle.loads(_read_exactly(stdin, size))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            outcome = ("ok", compile_job(job))
        except Exception as exc:  # (the parent warns with this and keeps interpreting)
            outcome = ("error", f"{type(exc).__name__}: {exc}")
    # graphc's own warnings (a pass that failed and was skipped) reach the user, as they would
    # compiling eagerly; Numba's stay here
    relayed = [(w.category, str(w.message)) for w in seen if w.category.__module__.startswith("graphc")]
    outcome = (*outcome, relayed)
    with out:
        out.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
