"""The common benchmark runner: every peer in a process of its own, timed round-robin.

A *workload* is a script in ``benchmarks/`` that defines, at module level, with
nothing heavier than NumPy imported at the top (each backend is imported inside
``build``, in the worker process that runs it)::

    import harness

    NAME = "elementwise"                         # file name of the results
    TITLE = "sum(tanh(x*w + b) * sigmoid(x) - 0.5*x**2)"
    BACKENDS = ("numpy", "graphc", "torch", "torch.compile", "jax.jit", "numba")
    EXTRA_BACKENDS = ()                          # optional: run only when named in --backends
    PROBE_BANDWIDTH = False                      # optional: sample the triad beside graphc (PROBE)
    CASES = [{"n": 10**6, "dtype": "float32", "mode": "fwd"}, ...]   # JSON-able dicts

    def inputs(case):                # -> tuple of NumPy arrays / numbers (deterministic)
    def reference(case, *args):      # float64 NumPy: args arrive already cast to float64
    def build(backend, case, *args): # -> (fn, fn_args): one call is fn(*fn_args); may raise
                                     #    harness.Skip("why") when the backend does not apply
    def tolerance(case, backend):    # optional: allowed max|got - ref| / max|ref|
    def summarize(results):          # optional: extra markdown lines (targets met or not)

    if __name__ == "__main__":
        harness.main(__name__)

``build`` converts the inputs to the backend's own arrays once (``to_torch``,
``to_jax`` below), so the timed call is what a user of that library would write.
Outputs may be arrays, numbers, or tuples/lists/dicts of them, in any backend's
array type.

What ``harness.main`` does, per the issue's rules:

1. measures the machine's limits (copy and triad memory bandwidth, BLAS GFLOP/s)
   in a subprocess of its own;
2. starts one worker process per backend (``python harness.py --worker ...``), one
   at a time, so torch, JAX, Numba and graphc never share a process or fight over
   the cores while compiling; a backend that is not installed is skipped with a note;
3. per case, each worker builds the function, checks its first result against the
   float64 NumPy reference (a wrong result is reported and never timed), warms up
   and calibrates how many calls make one sample;
4. takes the samples round-robin: one sample of each backend in turn, ``--rounds``
   times, with a short pause between workers so a finished peer's spinning thread
   pool does not overlap the next one's sample;
5. with ``PROBE_BANDWIDTH``, also samples the triad right after graphc in every round, and
   then graphc and the triad alone (``PROBE``, ``SOLO_PAUSE_S``), so that a workload can
   judge graphc against the bandwidth of the same moments (``entry["probe"]``);
6. reports medians and speed-ups over NumPy from the same run, writes JSON and
   markdown to ``benchmarks/results/``, and prints the markdown.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import select
import subprocess
import sys
import time
import traceback

import numpy as np
os.environ.setdefault("GRAPHC_COMPILE", "eager")  # time compiled code, not the interpreter tier

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
BASELINE = "numpy"
DEFAULT_RTOL = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-9}


# A pseudo-backend that workloads with ``PROBE_BANDWIDTH = True`` get in the rounds of every case
# PROBED runs in: the triad of ``machine_limits``, sampled right after PROBED's sample. The host's
# memory bandwidth drifts by 2x within minutes on shared machines, so a floor taken once at the
# start says little about a sample taken ten minutes later; this one is measured alongside. Its
# results go to the case's ``entry["probe"]`` (``gbs``: one figure per round), not to a column.
PROBE = "triad (probe)"
PROBED = "graphc"
# After a case's round-robin and this pause, PROBED and the probe are sampled alone, alternated,
# for ``--solo-rounds`` rounds ("solo"). On the VMs here (free page reporting to the host), a peer
# that allocates fresh memory on every call (NumPy's temporaries, JAX's outputs) slowed the other
# processes' next samples by up to 1.5x; the solo samples measure graphc without that.
SOLO_PAUSE_S = 3.0


class Skip(Exception):
    """Raised by a workload's ``build`` when a backend does not apply to a case."""


# ---------------------------------------------------------------------------------------
# Helpers for workloads


def requirement(backend: str) -> str | None:
    """The module a backend needs: 'torch.compile' -> 'torch', 'jax.jit' -> 'jax'."""
    if backend == PROBE:
        return "numba"
    head = backend.split()[0].split(".")[0].split("(")[0]
    return None if head == "numpy" else head


def to_torch(*args):
    """NumPy arrays -> CPU torch tensors (sharing memory); numbers pass through."""
    import torch

    out = tuple(torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
                for a in args)
    return out[0] if len(out) == 1 else out


def jax_x64(dtype) -> None:
    """JAX computes in float32 unless told otherwise: enable float64 when a case needs it."""
    import jax

    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)


def to_jax(*args):
    """NumPy arrays -> JAX device arrays (float64 kept when the case is float64)."""
    import jax
    import jax.numpy as jnp

    for a in args:
        if isinstance(a, np.ndarray) and a.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
    out = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
    return out[0] if len(out) == 1 else out


def to_numpy_leaves(out) -> list[np.ndarray]:
    """Flatten an output pytree of any backend's arrays into NumPy arrays."""
    if isinstance(out, dict):
        return [leaf for key in sorted(out) for leaf in to_numpy_leaves(out[key])]
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in to_numpy_leaves(item)]
    if hasattr(out, "detach"):  # torch
        return [out.detach().cpu().numpy()]
    return [np.asarray(out)]


def as_float64(args):
    return tuple(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                 else float(a) if isinstance(a, (float, np.floating)) else a for a in args)


def compare(got, want) -> dict:
    """max |got - ref| and that divided by max |ref| over every output leaf."""
    got, want = to_numpy_leaves(got), to_numpy_leaves(want)
    if len(got) != len(want):
        return {"ok_structure": False, "why": f"{len(got)} outputs, the reference has {len(want)}"}
    err, scale = 0.0, 0.0
    for k, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape and g.size != w.size:
            return {"ok_structure": False, "why": f"output {k} has shape {g.shape}, reference {w.shape}"}
        g = g.reshape(w.shape).astype(np.float64)
        w = w.astype(np.float64)
        if not np.array_equal(np.isnan(g), np.isnan(w)):
            return {"ok_structure": False, "why": f"output {k} has NaN where the reference does not"}
        finite = np.isfinite(w)
        if w.size and finite.any():
            err = max(err, float(np.max(np.abs(g[finite] - w[finite]))))
            scale = max(scale, float(np.max(np.abs(w[finite]))))
    return {"ok_structure": True, "max_abs_err": err, "rel_err": err / scale if scale else err}


def case_label(case: dict) -> str:
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in case.items())


def _fmt_value(v):
    if isinstance(v, int) and v >= 10**4 and str(v).rstrip("0") == "1":
        return f"1e{len(str(v)) - 1}"
    return str(v)


def fmt_ratio(ratio) -> str:
    """Three significant digits: 13.1x, 1.00x, 0.0102x."""
    if ratio >= 99.95:
        return f"{ratio:.0f}x"
    return f"{ratio:#.3g}x" if ratio >= 0.01 else f"{ratio:.2g}x"


def fmt_time(seconds) -> str:
    """Three significant digits: 137 ns, 1.02 µs, 20.7 µs, 467 ms, 1.29 s."""
    if seconds is None:
        return "-"
    for scale, unit in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
        if seconds < scale:
            value = seconds / scale * 1e3
            break
    else:
        value, unit = seconds, "s"
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {unit}"


# ---------------------------------------------------------------------------------------
# The worker: one backend, one process


def _load_workload(path: str):
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    name = "workload_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _backend_version(backend: str) -> str:
    req = requirement(backend)
    mod = sys.modules.get(req) if req else np
    version = getattr(mod, "__version__", "?")
    if req == "graphc":
        import numba
        version = f"{version} (numba {numba.__version__})"
    return f"{req or 'numpy'} {version}"


def _timer_loop(backend: str):
    """A timing loop per backend: JAX dispatches asynchronously, so wait for each result."""
    if requirement(backend) == "jax":
        import jax

        def loop(fn, args, number):
            start = time.perf_counter()
            for _ in range(number):
                jax.block_until_ready(fn(*args))
            return time.perf_counter() - start
    else:
        def loop(fn, args, number):
            start = time.perf_counter()
            for _ in range(number):
                fn(*args)
            return time.perf_counter() - start
    return loop


def _pick_dtype(case, args) -> str:
    if "dtype" in case:
        return np.dtype(case["dtype"]).name
    floats = [a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    return min(floats, key=lambda d: d.itemsize).name if floats else "float64"


class Worker:
    """The worker side of the protocol (JSON lines on stdin/stdout)."""

    def __init__(self, script: str, backend: str, options: dict):
        self.backend = backend
        self.options = options
        self.workload = _load_workload(script)
        self.loop = _timer_loop(backend)
        self.fn = self.args = None
        self.number = 1
        self.probe = None

    def setup(self, case: dict) -> dict:
        self.fn = self.args = None
        if self.backend == PROBE:
            if self.probe is None:
                self.probe = TriadProbe()
            self.fn, self.args, self.number = self.probe, (), 1
            return {"status": "ready", "number": 1, "bytes": self.probe.bytes}
        w = self.workload
        args = tuple(w.inputs(case))
        with np.errstate(all="ignore"):
            ref = w.reference(case, *as_float64(args))
        start = time.perf_counter()
        try:
            fn, fn_args = w.build(self.backend, case, *args)
            out = fn(*fn_args)
            if requirement(self.backend) == "jax":
                import jax
                jax.block_until_ready(out)
        except Skip as exc:
            return {"status": "skipped", "note": str(exc)}
        first = time.perf_counter() - start
        check = compare(out, ref)
        rtol = (w.tolerance(case, self.backend) if hasattr(w, "tolerance")
                else DEFAULT_RTOL.get(_pick_dtype(case, args), 1e-6))
        result = {"first_call_s": first, "rtol": rtol, **check}
        if not check["ok_structure"] or check["rel_err"] > rtol:
            result.update(status="wrong", note=check.get("why") or
                          f"max |error| / max |ref| = {check['rel_err']:.3g} > {rtol:.3g}")
            return result
        # warm up, then choose the number of calls per sample
        warm_until = time.perf_counter() + self.options["warmup"]
        calls, spent = 0, 0.0
        while calls < 3 or time.perf_counter() < warm_until:
            spent += self.loop(fn, fn_args, 1)
            calls += 1
        per_call = max(spent / calls, 1e-9)
        self.number = max(1, int(self.options["sample_time"] / per_call))
        self.fn, self.args = fn, fn_args
        result.update(status="ready", number=self.number)
        return result

    def sample(self) -> dict:
        return {"t": self.loop(self.fn, self.args, self.number) / self.number}

    def release(self) -> dict:
        self.fn = self.args = None
        import gc
        gc.collect()
        return {"status": "released"}


def worker_main(script: str, backend: str, options: dict):
    # stdout is the protocol channel: send everything else (library chatter) to stderr
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj):
        channel.write(json.dumps(obj) + "\n")
        channel.flush()

    req = requirement(backend)
    if req is not None and importlib.util.find_spec(req) is None:
        reply({"status": "unavailable", "note": f"{req} is not installed"})
        return
    try:
        worker = Worker(script, backend, options)
        if req is not None:
            importlib.import_module(req)
        reply({"status": "started", "version": _backend_version(backend)})
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        reply({"status": "error", "note": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        return
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        if cmd == "quit":
            return
        try:
            if cmd == "setup":
                reply(worker.setup(msg["case"]))
            elif cmd == "sample":
                reply(worker.sample())
            elif cmd == "release":
                reply(worker.release())
            else:
                reply({"status": "error", "note": f"unknown command {cmd}"})
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply({"status": "error", "note": f"{type(exc).__name__}: {str(exc)[:500]}",
                   "trace": traceback.format_exc()[-3000:]})


# ---------------------------------------------------------------------------------------
# The parent: starts workers, drives the rounds, writes the results


class WorkerProcess:
    """The parent side of one worker."""

    def __init__(self, script, backend, options, env):
        self.backend = backend
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", os.path.abspath(script),
               backend, json.dumps(options)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=None if options.get("verbose") else subprocess.DEVNULL,
                                     text=True, bufsize=1, env=env)

    def request(self, msg: dict | None, timeout: float) -> dict:
        try:
            if msg is not None:
                self.proc.stdin.write(json.dumps(msg) + "\n")
                self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                self.kill()
                return {"status": "error", "note": f"no answer within {timeout:.0f} s (killed)"}
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            return {"status": "error", "note": f"worker died ({exc})"}
        if not line:
            code = self.proc.wait()
            return {"status": "error", "note": f"worker exited with status {code}"}
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def quit(self):
        if self.alive():
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.kill()

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "?"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def _stream_loops():
    """STREAM's copy and triad as Numba ``prange`` loops over all cores, as graphc's kernels run."""
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def copy(dst, src):
        for i in prange(src.shape[0]):
            dst[i] = src[i]

    @njit(parallel=True, cache=False)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    return copy, triad


class TriadProbe:
    """One call runs the triad over float64 arrays of ``size_mib`` MiB; ``bytes`` it moves
    (STREAM counting: two reads and a write). ``copy`` is STREAM's copy loop, for
    ``machine_limits``."""

    def __init__(self, size_mib: int = 256):
        self.copy, self.triad = _stream_loops()
        n = size_mib * 2**20 // 8
        self.a, self.b, self.c = np.zeros(n), np.ones(n), np.full(n, 2.0)
        self.bytes = 3 * 8 * n
        self()  # compile and touch every page

    def __call__(self):
        self.triad(self.a, self.b, self.c, 3.0)


def machine_limits(size_mib: int = 256, repeats: int = 7) -> dict:
    """Copy and triad bandwidth (STREAM byte counting) and BLAS GFLOP/s, measured now.

    Runs in a process of its own (``harness.py --machine``); the loops use Numba
    with ``prange`` over all cores, as graphc's kernels do; the copy is also
    measured single-threaded with NumPy.
    """
    import numba

    probe = TriadProbe(size_mib)  # (its arrays, and the copy loop beside its triad)
    a, b, n = probe.a, probe.b, probe.a.size
    probe.copy(a, b)  # compile

    def best_median(fn, *args):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - start)
        return float(np.median(times)), float(np.min(times))

    copy_med, copy_min = best_median(probe.copy, a, b)
    np_med, np_min = best_median(np.copyto, a, b)
    triad_med, triad_min = best_median(probe)
    out = {
        "array_mib": size_mib,
        "threads": numba.get_num_threads(),
        "copy_gbs": 2 * 8 * n / copy_med / 1e9,
        "copy_gbs_best": 2 * 8 * n / copy_min / 1e9,
        "copy_numpy_1thread_gbs": 2 * 8 * n / np_med / 1e9,
        "triad_gbs": probe.bytes / triad_med / 1e9,
        "triad_gbs_best": probe.bytes / triad_min / 1e9,
    }
    del a, b, probe
    for dtype in ("float64", "float32"):
        m = 1024
        x = np.random.default_rng(0).standard_normal((m, m)).astype(dtype)
        x @ x
        med, best = best_median(np.dot, x, x)
        out[f"blas_{dtype}_gflops"] = 2 * m**3 / med / 1e9
        out[f"blas_{dtype}_gflops_best"] = 2 * m**3 / best / 1e9
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        out["blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        out["blas"] = "?"
    return out


def _run_machine_limits(timeout: float = 300) -> dict:
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--machine"],
                              capture_output=True, text=True, timeout=timeout)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception as exc:  # noqa: BLE001 - the benchmark goes on without it
        return {"error": f"{type(exc).__name__}: {exc}"}


def _parse_args(argv, workload):
    p = argparse.ArgumentParser(description=f"benchmark: {getattr(workload, 'TITLE', '')}")
    extra = tuple(getattr(workload, "EXTRA_BACKENDS", ()))
    p.add_argument("--backends", help="comma-separated backends (default: all of "
                   + ", ".join(workload.BACKENDS) + ")"
                   + (f"; also available: {', '.join(extra)}" if extra else ""))
    p.add_argument("--cases", help="only cases whose label contains this text (e.g. 'n=1e6')")
    p.add_argument("--rounds", type=int, default=15, help="round-robin samples per backend (default 15)")
    p.add_argument("--sample-time", type=float, default=0.02,
                   help="target seconds of one sample (calls are batched to reach it)")
    p.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per backend and case")
    p.add_argument("--settle", type=float, default=0.01,
                   help="pause between two workers' samples, in seconds")
    p.add_argument("--setup-timeout", type=float, default=600, help="seconds allowed for build + first call")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 rounds, short samples")
    p.add_argument("--no-machine", action="store_true", help="skip measuring bandwidth and BLAS")
    if getattr(workload, "PROBE_BANDWIDTH", False):
        p.add_argument("--no-probe", action="store_true",
                       help="do not sample the triad in the rounds (the floor is then the start-of-run triad)")
        p.add_argument("--solo-rounds", type=int, default=None,
                       help=f"rounds of {PROBED} and the probe alone after each case's round-robin "
                            "(default: --rounds; 0: none)")
    p.add_argument("--out", default=RESULTS_DIR, help="directory for the JSON and markdown results")
    p.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    args = p.parse_args(argv)
    args.no_probe = getattr(args, "no_probe", True)
    if args.quick:
        args.rounds, args.sample_time, args.warmup, args.settle = 3, 0.005, 0.05, 0.0
    if getattr(args, "solo_rounds", None) is None:
        args.solo_rounds = args.rounds
    if args.solo_rounds < 0:
        p.error("--solo-rounds must be >= 0")
    args.solo_pause = 0.1 if args.quick else SOLO_PAUSE_S
    return args


def run(workload, argv=None) -> dict:
    """Run every case of ``workload`` on every backend; returns the results dict."""
    args = _parse_args(argv, workload)
    script = workload.__file__
    name = getattr(workload, "NAME", os.path.splitext(os.path.basename(script))[0])
    backends = list(workload.BACKENDS)
    if args.backends:
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in wanted if b not in backends + list(getattr(workload, "EXTRA_BACKENDS", ()))]
        if unknown:
            raise SystemExit(f"unknown backend(s) {unknown}; this workload has {backends}")
        backends = wanted
    cases = [c for c in workload.CASES if not args.cases or args.cases in case_label(c)]
    options = {"warmup": args.warmup, "sample_time": args.sample_time, "verbose": args.verbose}
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")

    results = {"name": name, "title": getattr(workload, "TITLE", name), "machine": machine_info(),
               "settings": {"rounds": args.rounds, "sample_time_s": args.sample_time,
                            "warmup_s": args.warmup, "settle_s": args.settle},
               "versions": {}, "notes": {}, "cases": []}
    if not args.no_machine:
        print("measuring memory bandwidth and BLAS ...", file=sys.stderr)
        results["machine"]["limits"] = _run_machine_limits()

    if getattr(workload, "PROBE_BANDWIDTH", False) and not args.no_probe and PROBED in backends:
        backends.append(PROBE)
        results["settings"].update(probe=PROBE, solo_rounds=args.solo_rounds, solo_pause_s=args.solo_pause)
    workers: dict[str, WorkerProcess] = {}
    for backend in backends:  # one at a time: imports and compiles never overlap
        print(f"starting {backend} ...", file=sys.stderr)
        w = WorkerProcess(script, backend, options, env)
        hello = w.request(None, timeout=300)
        if hello.get("status") == "started":
            workers[backend] = w
            results["versions"][backend] = hello["version"]
        else:
            results["notes"][backend] = hello.get("note", "failed to start")
            w.kill()
    try:
        for case in cases:
            label = case_label(case)
            entry = {"case": case, "label": label, "backends": {}}
            live = []
            for backend in backends:
                if backend not in workers:
                    entry["backends"][backend] = {"status": "unavailable",
                                                  "note": results["notes"].get(backend, "")}
                    continue
                if backend == PROBE and PROBED not in live:  # (PROBE comes last) nothing to probe for
                    entry["backends"][backend] = {"status": "skipped", "note": f"{PROBED} is not timed"}
                    continue
                print(f"[{label}] {backend}: build + check ...", file=sys.stderr)
                res = workers[backend].request({"cmd": "setup", "case": case}, args.setup_timeout)
                entry["backends"][backend] = res
                if res.get("status") == "ready":
                    res["samples"] = []
                    live.append(backend)
                elif res.get("status") in ("wrong", "error"):
                    print(f"  {backend}: {res['status']}: {res.get('note')}", file=sys.stderr)
                if not workers[backend].alive():
                    del workers[backend]
            if PROBE in live and PROBED in live:  # sampled right after PROBED, in every round
                live.remove(PROBE)
                live.insert(live.index(PROBED) + 1, PROBE)
            print(f"[{label}] sampling {', '.join(live)} x {args.rounds} rounds ...", file=sys.stderr)
            for _ in range(args.rounds):
                for backend in list(live):
                    time.sleep(args.settle)
                    res = workers[backend].request({"cmd": "sample"}, args.setup_timeout)
                    if "t" in res:
                        entry["backends"][backend]["samples"].append(res["t"])
                    else:
                        entry["backends"][backend].update(status="error", note=res.get("note"))
                        live.remove(backend)
            if PROBE in live and PROBED in live and args.solo_rounds:
                _solo_rounds(entry, workers, args)
            for backend in live:
                res = entry["backends"][backend]
                s = np.array(res["samples"])
                res.update(status="ok", median_s=float(np.median(s)), min_s=float(s.min()),
                           iqr_s=float(np.percentile(s, 75) - np.percentile(s, 25)))
                workers[backend].request({"cmd": "release"}, 60)
            probe = entry["backends"].pop(PROBE, None)
            if probe is not None:  # kept whatever its status, so that a failure shows in the notes
                for key in ("samples", "solo_samples"):
                    if probe.get(key):
                        probe[key.replace("samples", "gbs")] = [probe["bytes"] / t / 1e9 for t in probe[key]]
                entry["probe"] = probe
            base = entry["backends"].get(BASELINE, {}).get("median_s")
            for res in entry["backends"].values():
                if base and res.get("median_s"):
                    res["speedup_vs_numpy"] = base / res["median_s"]
            results["cases"].append(entry)
    finally:
        for w in workers.values():
            w.quit()
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _solo_rounds(entry, workers, args):
    """PROBED and the probe alone, alternated, after a pause: ``solo_samples`` of both, one per
    round each (a failed sample ends the phase with ``solo_error``; pair by round up to the shorter)."""
    time.sleep(args.solo_pause)
    pair = (PROBED, PROBE)
    for backend in pair:
        entry["backends"][backend]["solo_samples"] = []
    for _ in range(args.solo_rounds):
        for backend in pair:
            time.sleep(args.settle)
            res = workers[backend].request({"cmd": "sample"}, args.setup_timeout)
            if "t" not in res:
                entry["backends"][backend]["solo_error"] = res.get("note")
                return
            entry["backends"][backend]["solo_samples"].append(res["t"])


def markdown(results: dict, workload=None) -> str:
    backends = []
    for entry in results["cases"]:
        for b in entry["backends"]:
            if b not in backends:
                backends.append(b)
    def table(cell):
        """One row per case, one column per backend; ``cell(result)`` formats a result."""
        rows = ["| case | " + " | ".join(backends) + " |", "|---" * (len(backends) + 1) + "|"]
        for entry in results["cases"]:
            cells = [cell(entry["backends"].get(b, {})) for b in backends]
            rows.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
        return rows

    def timing(res):
        if res.get("status") != "ok":
            return res.get("status", "-")
        ratio = res.get("speedup_vs_numpy")
        return fmt_time(res["median_s"]) + (f" ({fmt_ratio(ratio)})" if ratio else "")

    def first_call(res):
        if "first_call_s" not in res:
            return res.get("status", "-")
        return f"{fmt_time(res['first_call_s'])}, {res.get('rel_err', float('nan')):.1e}"

    lines = [f"### {results['title']}", ""]
    lines.append("Median time per call (speed-up over NumPy from the same run; >1 is faster):")
    lines.append("")
    lines += table(timing)
    lines += ["", "First call (build + trace/compile + run) and max |error| / max |ref| vs float64 NumPy:", ""]
    lines += table(first_call)
    notes = []
    for entry in results["cases"]:
        probe = {PROBE: entry["probe"]} if "probe" in entry else {}
        for b, res in (entry["backends"] | probe).items():
            if res.get("status") in ("wrong", "error", "skipped"):
                notes.append(f"- {entry['label']}, {b}: {res['status']}: {res.get('note')}")
            if res.get("solo_error"):
                notes.append(f"- {entry['label']}, {b}: solo rounds stopped: {res['solo_error']}")
    for b, note in results["notes"].items():
        notes.append(f"- {b}: not run: {note}")
    if notes:
        lines += ["", "Notes:", *notes]
    if workload is not None and hasattr(workload, "summarize"):
        lines += ["", *workload.summarize(results)]
    return "\n".join(lines) + "\n"


def machine_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; "
             f"Python {m['python']}",
             f"- versions: " + "; ".join(f"{b}: {v}" for b, v in results["versions"].items()),
             f"- load average (1, 5, 15 min) at start {m['loadavg_start']}, at end {m.get('loadavg_end')}",
             f"- settings: {results['settings']}"]
    lim = m.get("limits")
    if lim and "error" not in lim:
        lines.append(f"- machine limits ({lim['threads']} threads, {lim['array_mib']} MiB arrays): "
                     f"copy {lim['copy_gbs']:.1f} GB/s, triad {lim['triad_gbs']:.1f} GB/s "
                     f"(best {lim['triad_gbs_best']:.1f}), NumPy 1-thread copy "
                     f"{lim['copy_numpy_1thread_gbs']:.1f} GB/s; BLAS ({lim['blas']}) "
                     f"{lim['blas_float64_gflops']:.0f} GFLOP/s float64, "
                     f"{lim['blas_float32_gflops']:.0f} GFLOP/s float32 (1024x1024 matmul)")
    elif lim:
        lines.append(f"- machine limits: not measured ({lim['error']})")
    return "\n".join(lines) + "\n"


def main(module_name: str | object = "__main__", argv=None) -> dict:
    workload = sys.modules[module_name] if isinstance(module_name, str) else module_name
    results = run(workload, argv)
    out_dir = _parse_args(argv, workload).out
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, results["name"])
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1)
    text = markdown(results, workload) + "\n" + machine_markdown(results)
    with open(base + ".md", "w") as f:
        f.write(text)
    print(text)
    print(f"(written to {base}.json and {base}.md)", file=sys.stderr)
    return results


if __name__ == "__main__":
    # run through the importable module, so that workloads' `harness.Skip` is our Skip
    sys.path.insert(0, HERE)
    import harness as _self

    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        _self.worker_main(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "--machine":
        print(json.dumps(_self.machine_limits()))
    else:
        raise SystemExit("harness.py is driven by the workload scripts, e.g. "
                         "python benchmarks/overhead.py; see its docstring")
