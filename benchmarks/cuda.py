"""Issue 17: graphc's CUDA backend on an NVIDIA GPU, against the device's own limits and PyTorch.

Parts, all in one run (``--parts`` picks some):

* ``bandwidth``: the device's memory bandwidth, float32 at N = 1e7 and 1e8: a copy
  (``b[i] = a[i]``, 8 bytes per element) and a triad (``b[i] = a[i] + s * c[i]``, 12 bytes)
  as numba-cuda grid-stride kernels and as CuPy ``ElementwiseKernel``s; the best of the four
  GB/s figures at each N is that N's *bandwidth floor*. Also cuBLAS SGEMM at 4096^3 through
  CuPy (the matmul part's ceiling), and the device's properties.
* ``elementwise``: forward + backward of ``sum(tanh(x) * sigmoid(y))`` w.r.t. x and y, float32,
  N = 1e7 and 1e8: ``gc.value_and_grad(..., device="cuda")`` vs PyTorch CUDA eager
  (``torch.autograd.grad``) vs ``torch.compile`` of the forward (AOTAutograd fuses the
  backward). Time, effective GB/s (the bytes a fused pass must move: read x and y once, write
  both gradients once, 16 bytes per element) and the ratio to the bandwidth floor (target:
  graphc within 1.5x).
* ``matmul``: ``a @ b``, 4096^3 float32, graphc vs PyTorch, TFLOP/s (each library's default
  float32 precision: TF32 off in both unless the environment says otherwise; recorded).
* ``mlp``: the training step of a 784-256-128-10 ReLU MLP, cross-entropy, Adam (lr 1e-3) at
  batch 512 and 4096: graphc.nn/graphc.optim traced with ``gc.trace(step, device="cuda")`` vs
  PyTorch CUDA eager vs ``torch.compile`` (ms per step; target: graphc at batch 4096 at least
  as fast as PyTorch eager).
* compile time: graphc's cold first call of each function (an empty ``GRAPHC_CACHE_DIR``;
  trace, plan and numba-cuda's compile of each kernel on its first launch), reported beside
  ``torch.compile``'s first call.

How it measures (the conventions of benchmarks/README.md, for a GPU):

1. **One process per peer** (device limits, graphc, torch, torch.compile), started one at a
   time, so that no two CUDA contexts, allocators or compilers share a process.
2. **Device inputs**: the inputs and their float64 references are made on the host once per run
   (seeded; the first peer to need them leaves them in a temporary folder for the others) and
   moved to the device before anything is timed (``cupy.asarray`` for graphc, ``.to("cuda")``
   for PyTorch). What each library returns is left as it returns it: graphc hands 0-d results
   (the loss) back as NumPy scalars, which waits for the device on every call; PyTorch's stay
   0-d device tensors. The MLP's parameters and Adam's state stay on the device when
   ``model.to("cuda")`` is supported (else the results say so: they then travel every step).
3. **Correctness before timing**: every peer's first result is compared with a float64 NumPy
   reference (the elementwise gradients on a strided sample of 1e6 elements, the matmul on 64
   rows, the MLP over 3 Adam steps from the same initial parameters); a wrong result is
   reported and not timed.
4. **Synchronized timing**: warm-up calls for ``--warmup`` seconds, a batch of calls sized to
   take ``--sample-time`` seconds, then ``--repeats`` samples, each one ``synchronize; t0;
   calls; synchronize; t1`` with ``time.perf_counter`` (so host-side overheads that the device
   cannot hide count, as they would in a training loop); the median per call is reported.
5. **Results** to ``benchmarks/results/cuda.{json,md}``, with the device, driver and versions.

``--sim`` is the smoke test for a machine without a GPU: every graphc case at tiny sizes (a few
hundred elements, matmul 64^3, an MLP 64-64-32-10 at batch 8) under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), with the same correctness checks against NumPy (PyTorch is not
needed); the bandwidth kernels run too, for correctness only, and every graphc kernel at the GPU
run's sizes is compiled to PTX (``--no-ptx`` skips it). Nothing is timed. Results go to
``cuda_sim.{json,md}``; the exit status is 1 if a case failed. Without a GPU and without
``--sim`` the script says that no CUDA device was found and exits with status 2.

    python benchmarks/cuda.py                         # everything (a few minutes on an H100)
    python benchmarks/cuda.py --parts elementwise,mlp --peers graphc,torch
    python benchmarks/cuda.py --quick                 # fewer, shorter samples
    python benchmarks/cuda.py --sim                   # no GPU: the simulator and PTX, ~30 s

On a lent H100/H200 (the device tool: one command at most 10 minutes), from the repository root::

    set -o pipefail; PYTHONUNBUFFERED=1 python3 benchmarks/cuda.py --out $OUT 2>&1 | tee $OUT/log

To see what numba-cuda's synchronization on every CuPy array it is handed costs graphc (CAI v3
consumers synchronize the producer's stream by default), add a graphc-only run with it off::

    NUMBA_CUDA_ARRAY_INTERFACE_SYNC=0 python3 benchmarks/cuda.py --peers graphc --out $OUT/nosync

Each peer's process is stopped after ``--timeout`` seconds (default 420); torch.compile's cold
compiles take the longest, so where time is short run ``--peers graphc,torch`` first and
``--peers torch.compile --parts elementwise,mlp`` into another ``--out`` folder.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import types
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
    # run as a script: this file's folder comes first on the path, where "cuda" would be this
    # file rather than NVIDIA's cuda package (cuda.bindings, which numba-cuda and CuPy import)
    del sys.path[0]

import numpy as np

ROOT = os.path.dirname(HERE)
NAME = "cuda"
PARTS = ("bandwidth", "elementwise", "matmul", "mlp")
PEERS = ("graphc", "torch", "torch.compile")
SIZES = (10**7, 10**8)
MATMUL_N = 4096
WIDTHS = (784, 256, 128, 10)
BATCHES = (512, 4096)
SIM = {"sizes": (300, 1000), "matmul": 64, "widths": (64, 64, 32, 10), "batches": (8,)}
LR = 1e-3
CHECK_STEPS = 3  # Adam steps compared with the float64 reference before the MLP is timed
ELEMENTWISE_BYTES = 16  # per element: read x and y, write dx and dy, float32
# environment variables that change what is measured, recorded with the results
ENVIRONMENT = ("GRAPHC_COMPILE", "NUMBA_CUDA_ARRAY_INTERFACE_SYNC", "NUMBA_CUDA_DEFAULT_PTX_CC", "CUPY_TF32",
               "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_MAX_AUTOTUNE")
MAX_WARNINGS = 20  # distinct warnings of graphc's process kept in the results
RTOL = 1e-4  # max |error| / max |reference| allowed for float32 results
TARGET_ELEMENTWISE = 1.5  # graphc's time at most this many times the bandwidth floor
SAMPLE_ROWS = 64  # rows of the matmul checked against float64
SAMPLE_ELEMENTS = 10**6  # elements of each gradient checked against float64


# -- inputs and float64 references (NumPy, shared by every peer) ----------------------------------
def elementwise_inputs(n: int):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n, dtype=np.float32) + np.float32(0.5))  # (the sum does not cancel)
    y = rng.standard_normal(n, dtype=np.float32)
    return x, y


def elementwise_reference(x, y):
    """sum(tanh(x) * sigmoid(y)) in float64 (in chunks), and the gradients at a strided sample."""
    step = max(1, x.size // SAMPLE_ELEMENTS)
    total = 0.0
    for lo in range(0, x.size, 1 << 22):
        xs, ys = x[lo:lo + (1 << 22)].astype(np.float64), y[lo:lo + (1 << 22)].astype(np.float64)
        total += float(np.sum(np.tanh(xs) / (1 + np.exp(-ys))))
    xs, ys = x[::step].astype(np.float64), y[::step].astype(np.float64)
    t, s = np.tanh(xs), 1 / (1 + np.exp(-ys))
    return total, (1 - t * t) * s, t * s * (1 - s), step


def check_elementwise(loss, gx, gy, ref) -> dict:
    """``loss`` a number, ``gx``/``gy`` the gradients' strided samples as NumPy arrays."""
    total, rgx, rgy, _ = ref
    loss_err = abs(float(loss) - total) / abs(total)
    grad_err = max(float(np.max(np.abs(g - r))) / float(np.max(np.abs(r))) for g, r in ((gx, rgx), (gy, rgy)))
    ok = loss_err <= RTOL and grad_err <= RTOL
    return {"ok": ok, "loss_rel_err": loss_err, "grad_rel_err": grad_err,
            **({} if ok else {"why": f"loss rel. error {loss_err:.3g}, gradient rel. error {grad_err:.3g} "
                                     f"(allowed {RTOL:g})"})}


def matmul_inputs(n: int):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


def matmul_reference(a, b):
    """The rows ``matmul_rows(n)`` of ``a @ b`` in float64."""
    return a[matmul_rows(a.shape[0])].astype(np.float64) @ b.astype(np.float64)


def check_matmul(got_rows, ref_rows) -> dict:
    """``got_rows``: the product's rows ``matmul_rows(n)``, as a NumPy array."""
    rel = float(np.max(np.abs(got_rows - ref_rows))) / float(np.max(np.abs(ref_rows)))
    ok = rel <= RTOL
    return {"ok": ok, "rel_err": rel, **({} if ok else {"why": f"rel. error {rel:.3g} > {RTOL:g}"})}


def matmul_rows(n: int):
    return np.linspace(0, n - 1, min(SAMPLE_ROWS, n)).astype(np.int64)


def mlp_data(batch: int, widths):
    """(x, labels, [w1, b1, w2, b2, w3, b3]) float32, PyTorch's Linear layout (out, in)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, widths[0]), dtype=np.float32)
    t = rng.integers(0, widths[-1], size=batch).astype(np.int64)
    params = []
    for fan_in, fan_out in itertools.pairwise(widths):
        bound = 1 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32))
    return x, t, params


def mlp_reference(x, t, params, steps=CHECK_STEPS, lr=LR, betas=(0.9, 0.999), eps=1e-8):
    """``steps`` Adam steps of the MLP in float64 (PyTorch's Adam): the losses and final params."""
    x = x.astype(np.float64)
    ps = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    rows = np.arange(x.shape[0])
    losses = []
    for k in range(1, steps + 1):
        hs, h = [x], x
        for i in range(0, len(ps), 2):
            z = h @ ps[i].T + ps[i + 1]
            h = np.maximum(z, 0) if i + 2 < len(ps) else z
            hs.append(h)
        z = hs[-1]
        zmax = z.max(1, keepdims=True)
        e = np.exp(z - zmax)
        s = e.sum(1, keepdims=True)
        losses.append(float(np.mean(np.log(s[:, 0]) + zmax[:, 0] - z[rows, t])))
        g = e / s
        g[rows, t] -= 1
        g /= x.shape[0]
        grads = [None] * len(ps)
        for i in range(len(ps) - 2, -1, -2):
            grads[i], grads[i + 1] = g.T @ hs[i // 2], g.sum(0)
            if i:
                g = (g @ ps[i]) * (hs[i // 2] > 0)
        for j, (p, gr) in enumerate(zip(ps, grads)):
            m[j] = betas[0] * m[j] + (1 - betas[0]) * gr
            v[j] = betas[1] * v[j] + (1 - betas[1]) * gr * gr
            m_hat, v_hat = m[j] / (1 - betas[0] ** k), v[j] / (1 - betas[1] ** k)
            p -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return losses, ps


def check_mlp(losses, params, ref) -> dict:
    """The losses within RTOL; the parameters within RTOL of their scale, except a few elements
    whose gradient is so small that float32 and float64 disagree on its sign: Adam's first
    steps move every element by about lr whatever its gradient's size, so those may differ by
    up to 2 lr per step (at most 0.1% of the elements)."""
    ref_losses, ref_params = ref
    loss_err = max(abs(a - b) for a, b in zip(losses, ref_losses)) / max(abs(b) for b in ref_losses)
    worst, off, total = 0.0, 0, 0
    for p, r in zip(params, ref_params):
        err = np.abs(np.asarray(p, np.float64) - r)
        scale = float(np.max(np.abs(r)))
        worst = max(worst, float(err.max()))
        off += int(np.count_nonzero(err > RTOL * scale))
        total += err.size
    ok = loss_err <= RTOL and off <= 1e-3 * total and worst <= 2 * LR * CHECK_STEPS * 1.01
    why = (f"losses rel. error {loss_err:.3g} (allowed {RTOL:g}); parameters: {off} of {total} off by more "
           f"than {RTOL:g} of their scale (allowed 0.1%), worst {worst:.3g} (allowed {2 * LR * CHECK_STEPS:g})")
    return {"ok": ok, "loss_rel_err": loss_err, "param_max_err": worst, "params_off": off,
            **({} if ok else {"why": why})}


def case_data(cfg: dict, part: str, size: int):
    """A case's host inputs and float64 reference, made once per run: the first peer to need
    them saves them in the run's data folder (``cfg["data_dir"]``), the others load them (at
    N = 1e8 the inputs and reference take seconds to make, the same for every peer).

    elementwise: (x, y, reference); matmul: (a, b, reference rows); mlp: (x, labels, params,
    reference)."""
    path = os.path.join(cfg["data_dir"], f"{part}-{size}.pickle") if cfg.get("data_dir") else None
    if path and os.path.exists(path):
        with open(path, "rb") as fh:
            return pickle.load(fh)
    if part == "elementwise":
        x, y = elementwise_inputs(size)
        data = (x, y, elementwise_reference(x, y))
    elif part == "matmul":
        a, b = matmul_inputs(size)
        data = (a, b, matmul_reference(a, b))
    else:
        x, t, params = mlp_data(size, cfg["widths"])
        data = (x, t, params, mlp_reference(x, t, params))
    if path:
        with open(path + ".part", "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".part", path)
    return data


# -- timing -------------------------------------------------------------------------------------
def measure(call, sync, opts) -> dict:
    """Median seconds per ``call()`` over ``repeats`` synchronized samples, after warm-up."""
    warm_until = time.perf_counter() + opts["warmup"]
    calls = 0
    sync()
    start = time.perf_counter()
    while calls < 3 or time.perf_counter() < warm_until:
        call()
        calls += 1
    sync()
    per_call = max((time.perf_counter() - start) / calls, 1e-7)
    number = max(1, int(opts["sample_time"] / per_call))
    samples = []
    for _ in range(opts["repeats"]):
        sync()
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        sync()
        samples.append((time.perf_counter() - t0) / number)
    s = np.array(samples)
    return {"median_s": float(np.median(s)), "min_s": float(s.min()),
            "iqr_s": float(np.percentile(s, 75) - np.percentile(s, 25)), "number": number,
            "samples": samples}


def time_into(entry: dict, call, sync, cfg: dict, flops: float = 0.0):
    """``entry`` gets ``measure``'s figures (and TFLOP/s for ``flops`` per call); nothing under
    the simulator, whose timings mean nothing."""
    if cfg["sim"]:
        return
    entry.update(measure(call, sync, cfg))
    if flops:
        entry["tflops"] = flops / entry["median_s"] / 1e12


def first_call(call, sync):
    """(result, seconds) of the first call, synchronized."""
    sync()
    t = time.perf_counter()
    out = call()
    sync()
    return out, time.perf_counter() - t


def run_case(results: list, label: str, body, **keys):
    """Run one case's ``body() -> dict``; an exception becomes the case's error (the others go on).
    ``keys`` (the case's size) go into the entry either way."""
    print(f"  {label} ...", file=sys.stderr, flush=True)
    try:
        entry = body()
    except Exception as exc:  # noqa: BLE001 - reported in the results
        entry = {"status": "error", "note": f"{type(exc).__name__}: {str(exc).strip()[:400]}",
                 "trace": traceback.format_exc()[-2000:]}
    entry.setdefault("status", "ok")
    entry.update(keys, label=label)
    results.append(entry)


def _checked(entry: dict, check: dict) -> bool:
    entry["check"] = check
    if not check["ok"]:
        entry.update(status="wrong", note=check["why"])
    return check["ok"]


# -- the device child: bandwidth kernels, cuBLAS, properties ------------------------------------------
def device_child(cfg: dict) -> dict:
    import numba
    from numba import cuda
    out = {"versions": {"numba": numba.__version__, "numpy": np.__version__}, "results": {}}
    try:
        import numba_cuda
        out["versions"]["numba-cuda"] = getattr(numba_cuda, "__version__", "?")
    except ImportError:
        out["versions"]["numba-cuda"] = "not installed (numba's built-in target)"
    if not cfg["sim"]:
        if not _cuda_available(cuda):
            return {"no_device": "numba-cuda finds no CUDA device or driver"}
        try:
            import cupy
        except ImportError:
            return {"no_device": "CuPy is not installed (pip install cupy-cuda12x)"}
        out["device"] = device_properties(cuda, cupy)
        out["versions"]["cupy"] = cupy.__version__
        xp, sync = cupy, cupy.cuda.Device().synchronize
    else:
        cupy = None
        out["device"] = {"name": "Numba CUDA simulator"}
        xp, sync = np, (lambda: None)
    if "bandwidth" not in cfg["parts"] and "elementwise" not in cfg["parts"]:
        return out  # (the floor is for the elementwise part)
    copy_k, triad_k = numba_stream_kernels()
    rows = []
    threads = 32 if cfg["sim"] else 256
    blocks = 2 if cfg["sim"] else out["device"]["sm_count"] * 32
    for n in cfg["sizes"]:
        def case(n=n):
            a = xp.asarray(np.arange(n, dtype=np.float32))
            b = xp.zeros(n, np.float32)
            c = xp.asarray(np.ones(n, np.float32))
            entry = {"n": n, "kernels": {}}
            s = np.float32(3.0)
            # numba-cuda's own device arrays, made once: a CuPy array passed to a kernel is imported
            # through __cuda_array_interface__ on every launch (and its stream synchronized)
            na, nb, nc = (a, b, c) if cupy is None else (cuda.as_cuda_array(v) for v in (a, b, c))
            variants = [("numba-cuda copy", 8, lambda: copy_k[blocks, threads](nb, na)),
                        ("numba-cuda triad", 12, lambda: triad_k[blocks, threads](nb, na, nc, s))]
            if cupy is not None:
                ccopy = cupy.ElementwiseKernel("T x", "T y", "y = x", "graphc_bench_copy")
                ctriad = cupy.ElementwiseKernel("T x, T z, T s", "T y", "y = x + s * z", "graphc_bench_triad")
                variants += [("cupy copy", 8, lambda: ccopy(a, b)),
                             ("cupy triad", 12, lambda: ctriad(a, c, s, b))]
            for name, nbytes, call in variants:
                call()
                sync()
                want = np.arange(n, dtype=np.float32) + (3 if "triad" in name else 0)
                got = cupy.asnumpy(b) if cupy is not None else b
                if not np.array_equal(got, want):
                    entry["kernels"][name] = {"status": "wrong", "note": "the kernel's output differs"}
                    continue
                b.fill(0)
                if cfg["sim"]:
                    entry["kernels"][name] = {"status": "ok (simulator: not timed)"}
                    continue
                m = measure(call, sync, cfg)
                entry["kernels"][name] = {"status": "ok", "median_s": m["median_s"],
                                          "gbs": nbytes * n / m["median_s"] / 1e9,
                                          "gbs_best": nbytes * n / m["min_s"] / 1e9}
            timed = [k["gbs"] for k in entry["kernels"].values() if "gbs" in k]
            entry["floor_gbs"] = max(timed) if timed else None
            wrong = [k for k, r in entry["kernels"].items() if r["status"] == "wrong"]
            if wrong:
                entry.update(status="wrong", note=f"wrong output: {', '.join(wrong)}")
            return entry
        run_case(rows, f"bandwidth n={fmt_n(n)}", case, n=n)
    out["results"]["bandwidth"] = rows
    if cupy is not None and "matmul" in cfg["parts"]:
        gemm = []

        def case():
            n = cfg["matmul"]
            a, b, ref = case_data(cfg, "matmul", n)
            a, b = cupy.asarray(a), cupy.asarray(b)
            entry = {"n": n, "tf32": os.environ.get("CUPY_TF32", "0")}
            got = cupy.asnumpy(cupy.matmul(a, b)[cupy.asarray(matmul_rows(n))])
            if _checked(entry, check_matmul(got, ref)):
                time_into(entry, lambda: cupy.matmul(a, b), sync, cfg, flops=2 * n ** 3)
            return entry
        run_case(gemm, f"cuBLAS SGEMM n={cfg['matmul']}", case, n=cfg["matmul"])
        out["results"]["cublas"] = gemm
    return out


def _cuda_available(cuda) -> bool:
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no driver
        return False


STREAM_KERNELS = """
from numba import cuda


@cuda.jit
def copy(b, a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        b[i] = a[i]


@cuda.jit
def triad(b, a, c, s):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        b[i] = a[i] + s * c[i]
"""


def numba_stream_kernels():
    """The copy and triad kernels: grid-stride loops as graphc generates them, in a module of
    their own as graphc's are (the simulator swaps a kernel module's global ``cuda``)."""
    module = types.ModuleType("graphc_bench_stream")
    exec(compile(STREAM_KERNELS, "<benchmarks/cuda.py stream kernels>", "exec"), module.__dict__)  # noqa: S102
    return module.copy, module.triad


def device_properties(cuda, cupy) -> dict:
    gpu = cuda.get_current_device()
    name = gpu.name.decode() if isinstance(gpu.name, bytes) else str(gpu.name)
    props = {"name": name, "compute_capability": ".".join(map(str, gpu.compute_capability)),
             "sm_count": gpu.MULTIPROCESSOR_COUNT}
    try:
        _, total = cupy.cuda.runtime.memGetInfo()
        props["memory_gib"] = round(total / 2**30, 1)
        props["driver"] = cupy.cuda.runtime.driverGetVersion()
        props["runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        p = cupy.cuda.runtime.getDeviceProperties(0)
        clock, width = p.get("memoryClockRate"), p.get("memoryBusWidth")
        if clock and width:  # (DDR: two transfers per clock)
            props["peak_gbs_nominal"] = round(2 * clock * 1e3 * width / 8 / 1e9, 1)
        props["l2_mib"] = round(p.get("l2CacheSize", 0) / 2**20, 1)
    except Exception as exc:  # noqa: BLE001 - informational
        props["note"] = f"{type(exc).__name__}: {exc}"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=False)
        props["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:  # (informational)
        props["nvidia_smi"] = f"not run: {exc}"
    return props


# -- the graphc child ---------------------------------------------------------------------------------
def graphc_loss(x, y):
    """The elementwise part's function, as a graphc user writes it."""
    from graphc.nn import functional as F
    return np.sum(np.tanh(x) * F.sigmoid(y))


def graphc_matmul(a, b):
    return a @ b


def graphc_train_step(widths, params, to_device: bool, **trace_options):
    """(traced training step, model): graphc.nn's MLP with ``params``, cross-entropy, Adam;
    ``to_device``: the model is moved with ``model.to("cuda")`` first (parameters and Adam's
    state then live on the device)."""
    import graphc as gc
    from graphc import nn, optim
    layers = []
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers += [nn.Linear(fan_in, fan_out)] + ([nn.ReLU()] if k + 2 < len(widths) else [])
    model = nn.Sequential(*layers)
    for p, v in zip(model.parameters(), params):
        p.data[...] = v
    if to_device:
        model.to("cuda")
    opt = optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    return gc.trace(train_step, **trace_options), model


# (the graphc child------------------------------------------------------------------------------
def graphc_child(cfg: dict) -> dict:
    import numba

    import graphc as gc
    out = {"versions": {"graphc": getattr(gc, "__version__", "?"), "numba": numba.__version__,
                        "numpy": np.__version__}, "results": {}}
    if cfg["sim"]:
        xp, sync, to_host = np, (lambda: None), np.asarray
    else:
        import cupy
        out["versions"]["cupy"] = cupy.__version__
        xp, sync, to_host = cupy, cupy.cuda.Device().synchronize, cupy.asnumpy
        t = time.perf_counter()
        xp.zeros(1)
        sync()
        out["context_s"] = time.perf_counter() - t  # (kept out of the first case's first call)
    caught = warnings.catch_warnings(record=True)
    log = caught.__enter__()
    warnings.simplefilter("always")

    if "elementwise" in cfg["parts"]:
        rows = []
        for n in cfg["sizes"]:
            def case(n=n):
                x, y, ref = case_data(cfg, "elementwise", n)
                dx, dy = xp.asarray(x), xp.asarray(y)
                del x, y
                vg = gc.value_and_grad(graphc_loss, argnums=(0, 1), device="cuda")
                (value, (gx, gy)), first = first_call(lambda: vg(dx, dy), sync)
                step = ref[3]
                entry = {"n": n, "first_call_s": first, **plan_stats(vg)}
                if _checked(entry, check_elementwise(value, to_host(gx[::step]), to_host(gy[::step]), ref)):
                    del gx, gy
                    time_into(entry, lambda: vg(dx, dy), sync, cfg)
                return entry
            run_case(rows, f"elementwise n={fmt_n(n)}", case, n=n)
            free_device_memory(xp)
        out["results"]["elementwise"] = rows
    if "matmul" in cfg["parts"]:
        rows = []

        def case():
            n = cfg["matmul"]
            a, b, ref = case_data(cfg, "matmul", n)
            da, db = xp.asarray(a), xp.asarray(b)
            mm = gc.trace(graphc_matmul, device="cuda")
            got, first = first_call(lambda: mm(da, db), sync)
            entry = {"n": n, "first_call_s": first, **plan_stats(mm)}
            if _checked(entry, check_matmul(to_host(got[xp.asarray(matmul_rows(n))]), ref)):
                del got
                time_into(entry, lambda: mm(da, db), sync, cfg, flops=2 * n ** 3)
            return entry
        run_case(rows, f"matmul n={cfg['matmul']}", case, n=cfg["matmul"])
        out["results"]["matmul"] = rows
    if "mlp" in cfg["parts"]:
        rows = []
        for batch in cfg["batches"]:
            run_case(rows, f"mlp batch={batch}", lambda batch=batch: graphc_mlp(cfg, batch, xp, sync, to_host),
                     batch=batch)
            free_device_memory(xp)
        out["results"]["mlp"] = rows
    caught.__exit__(None, None, None)
    out["warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:400] for w in log})[:MAX_WARNINGS]
    return out


def graphc_mlp(cfg, batch, xp, sync, to_host) -> dict:
    x, t, params, ref = case_data(cfg, "mlp", batch)
    step, model = graphc_train_step(cfg["widths"], params, to_device=True, device="cuda")
    entry = {"batch": batch, "widths": list(cfg["widths"])}
    dx, dt = xp.asarray(x), xp.asarray(t)
    loss, first = first_call(lambda: step(dx, dt), sync)
    losses = [float(to_host(loss))]
    for _ in range(CHECK_STEPS - 1):
        losses.append(float(to_host(step(dx, dt))))
    entry.update(first_call_s=first, **plan_stats(step))
    got = [to_host(p.data) for p in model.parameters()]
    if _checked(entry, check_mlp(losses, got, ref)):
        time_into(entry, lambda: step(dx, dt), sync, cfg)
    return entry


def plan_stats(fn) -> dict:
    """The CUDA plan of ``fn``'s latest signature: kernels and steps (host fallbacks included)."""
    try:
        exe = fn._latest().compiled
        return {"kernels": len(exe.kernel_nodes), "plan_steps": len(exe.steps)}
    except Exception:  # noqa: BLE001 - informational (another graphc version)
        return {}


def free_device_memory(xp):
    import gc as pygc
    pygc.collect()
    if xp is not np:
        xp.get_default_memory_pool().free_all_blocks()


# -- the PyTorch children ---------------------------------------------------------------------------
def torch_child(cfg: dict, compiled: bool) -> dict:
    import torch
    import torch.nn.functional as TF
    out = {"versions": {"torch": torch.__version__, "torch_cuda": torch.version.cuda}, "results": {},
           "settings": {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                        "float32_matmul_precision": torch.get_float32_matmul_precision()}}
    if compiled:
        try:
            import triton
            out["versions"]["triton"] = triton.__version__
        except ImportError:
            pass
    dev = torch.device(cfg.get("torch_device", "cuda"))  # ("cpu": to check this code without a GPU)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    torch.zeros(1, device=dev)
    sync()
    out["context_s"] = time.perf_counter() - t  # (kept out of the first case's first call)

    def loss(x, y):
        return torch.sum(torch.tanh(x) * torch.sigmoid(y))

    if "elementwise" in cfg["parts"]:
        rows = []
        for n in cfg["sizes"]:
            def case(n=n):
                x, y, ref = case_data(cfg, "elementwise", n)
                dx, dy = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
                del x, y
                forward = torch.compile(loss, dynamic=False) if compiled else loss

                def value_and_grad(x, y):
                    x, y = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
                    value = forward(x, y)
                    gx, gy = torch.autograd.grad(value, (x, y))
                    return value.detach(), gx, gy
                (value, gx, gy), first = first_call(lambda: value_and_grad(dx, dy), sync)
                step = ref[3]
                entry = {"n": n, "first_call_s": first}
                if _checked(entry, check_elementwise(value.item(), gx[::step].cpu().numpy(),
                                                     gy[::step].cpu().numpy(), ref)):
                    del gx, gy
                    time_into(entry, lambda: value_and_grad(dx, dy), sync, cfg)
                return entry
            run_case(rows, f"elementwise n={fmt_n(n)}", case, n=n)
            torch.cuda.empty_cache()
        out["results"]["elementwise"] = rows
    if "matmul" in cfg["parts"] and not compiled:  # (one cuBLAS call: nothing for a compiler to fuse)
        rows = []

        def case():
            n = cfg["matmul"]
            a, b, ref = case_data(cfg, "matmul", n)
            da, db = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
            got, first = first_call(lambda: da @ db, sync)
            entry = {"n": n, "first_call_s": first}
            if _checked(entry, check_matmul(got[torch.from_numpy(matmul_rows(n)).to(dev)].cpu().numpy(), ref)):
                del got
                time_into(entry, lambda: da @ db, sync, cfg, flops=2 * n ** 3)
            return entry
        run_case(rows, f"matmul n={cfg['matmul']}", case, n=cfg["matmul"])
        out["results"]["matmul"] = rows
    if "mlp" in cfg["parts"]:
        rows = []
        for batch in cfg["batches"]:
            def case(batch=batch):
                widths = cfg["widths"]
                x, t, params, ref = case_data(cfg, "mlp", batch)
                layers = []
                for k, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
                    layers += [torch.nn.Linear(fan_in, fan_out)] + ([torch.nn.ReLU()] if k + 2 < len(widths) else [])
                model = torch.nn.Sequential(*layers).to(dev)
                with torch.no_grad():
                    for p, v in zip(model.parameters(), params):
                        p.copy_(torch.from_numpy(v))
                opt = torch.optim.Adam(model.parameters(), lr=LR)

                def train_step(x, t):
                    opt.zero_grad()
                    loss = TF.cross_entropy(model(x), t)
                    loss.backward()
                    opt.step()
                    return loss.detach()
                step = torch.compile(train_step, dynamic=False) if compiled else train_step
                dx, dt = torch.from_numpy(x).to(dev), torch.from_numpy(t).to(dev)
                loss, first = first_call(lambda: step(dx, dt), sync)
                losses = [loss.item()] + [step(dx, dt).item() for _ in range(CHECK_STEPS - 1)]
                entry = {"batch": batch, "widths": list(widths), "first_call_s": first,
                         "adam": f"foreach={opt.defaults.get('foreach')}, fused={opt.defaults.get('fused')}"}
                got = [p.detach().cpu().numpy() for p in model.parameters()]
                if _checked(entry, check_mlp(losses, got, ref)):
                    time_into(entry, lambda: step(dx, dt), sync, cfg)
                return entry
            run_case(rows, f"mlp batch={batch}", case, batch=batch)
            torch.cuda.empty_cache()
        out["results"]["mlp"] = rows
    return out


def ptx_child(cfg: dict) -> dict:
    """Without a GPU or the simulator: every kernel of the graphc functions at the full sizes
    (N, batches of the GPU run) compiled to PTX by numba-cuda and NVVM, catching what the
    simulator, which runs kernels as Python, cannot (a function or a cast CUDA cannot type).
    The graphs are traced for the CPU backend (device="cuda" needs a device to trace for);
    graphc.backend.cuda.ptx plans them as the CUDA backend does."""
    import graphc as gc
    from graphc.backend.cuda import ptx
    rows = []
    functions = []
    if "elementwise" in cfg["parts"]:
        functions += [(f"elementwise n={fmt_n(n)}", gc.value_and_grad(graphc_loss, argnums=(0, 1)),
                       (np.empty(n, np.float32), np.empty(n, np.float32))) for n in SIZES]
    if "matmul" in cfg["parts"]:
        a = np.empty((MATMUL_N, MATMUL_N), np.float32)
        functions.append((f"matmul n={MATMUL_N}", gc.trace(graphc_matmul), (a, a)))
    if "mlp" in cfg["parts"]:
        for batch in BATCHES:
            _, _, params = mlp_data(1, WIDTHS)
            step, _ = graphc_train_step(WIDTHS, params, to_device=False)
            x, t = np.empty((batch, WIDTHS[0]), np.float32), np.zeros(batch, np.int64)
            functions.append((f"mlp batch={batch}", step, (x, t)))
    for label, fn, args in functions:
        def case(fn=fn, args=args):
            fn.lower(*args)
            t = time.perf_counter()
            kernels = ptx(fn.graph)
            return {"kernels": len(kernels), "ptx_s": time.perf_counter() - t}
        run_case(rows, label, case)
    return {"results": {"ptx": rows}}


CHILDREN = {"device": device_child, "ptx": ptx_child, "graphc": graphc_child,
            "torch": lambda cfg: torch_child(cfg, compiled=False),
            "torch.compile": lambda cfg: torch_child(cfg, compiled=True)}


def child_main(peer: str, cfg: dict):
    # stdout carries the one JSON line: library chatter goes to stderr
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    t = time.perf_counter()
    try:
        result = CHILDREN[peer](cfg)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        result = {"error": f"{type(exc).__name__}: {str(exc).strip()[:400]}", "trace": traceback.format_exc()[-3000:]}
    result["wall_s"] = time.perf_counter() - t
    channel.write(json.dumps(result, default=str) + "\n")
    channel.flush()


# -- the parent ------------------------------------------------------------------------------------
def run_child(peer: str, cfg: dict, timeout: float, verbose: bool) -> dict:
    cache = tempfile.mkdtemp(prefix="graphc-cuda-bench-")
    simulator = cfg["sim"] and peer != "ptx"  # (PTX is compiled by NVVM, which the simulator replaces)
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache, NUMBA_ENABLE_CUDASIM="1" if simulator else "0")
    env.setdefault("GRAPHC_COMPILE", "eager")  # (the compiled plan from the first call on)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", peer, json.dumps(cfg)]
    print(f"{peer} ...", file=sys.stderr, flush=True)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if verbose else subprocess.PIPE,
                           text=True, env=env, timeout=timeout, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (p.stderr or "").strip().splitlines() or [f"exit {p.returncode}"]
        return {"error": tail[-1][:400]}
    return json.loads(lines[-1])


def fmt_n(n: int) -> str:
    return f"1e{len(str(n)) - 1}" if n >= 10**4 and str(n).rstrip("0") == "1" else str(n)


def fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def _rows(res: dict, peer: str, part: str) -> list:
    return res["peers"].get(peer, {}).get("results", {}).get(part, [])


def _find(rows: list, key: str, value):
    return next((r for r in rows if r.get(key) == value), None)


def _cell(r, fmt) -> str:
    if r is None:
        return "-"
    if r.get("status") != "ok":
        return r.get("status", "-")
    return fmt(r) if "median_s" in r else "ok (not timed)"


def annotate(res: dict):
    """The derived figures in the JSON too: each elementwise result's effective GB/s and time /
    bandwidth floor (the floor at its N from the same run)."""
    floors = {r.get("n"): r.get("floor_gbs") for r in _rows(res, "device", "bandwidth")}
    for pr in res["peers"].values():
        for r in pr.get("results", {}).get("elementwise", []):
            if "median_s" in r:
                r["gbs"] = ELEMENTWISE_BYTES * r["n"] / r["median_s"] / 1e9
                if floors.get(r["n"]):
                    r["floor_ratio"] = r["median_s"] / (ELEMENTWISE_BYTES * r["n"] / (floors[r["n"]] * 1e9))


def markdown(res: dict) -> str:
    cfg = res["config"]
    peers = [p for p in cfg["peers"] if p in res["peers"]]
    title = "CUDA backend (issue 17)" + (": simulator smoke run, correctness only" if cfg["sim"] else "")
    lines = [f"### {title}", ""]
    floors = {}
    bw = _rows(res, "device", "bandwidth")
    if bw:
        kernels = list(dict.fromkeys(k for r in bw for k in r.get("kernels", {})))
        lines += ["Device memory bandwidth (GB/s, median; bytes read + written):", "",
                  "| N | " + " | ".join(kernels) + " | floor |", "|---" * (len(kernels) + 2) + "|"]
        for r in bw:
            cells = []
            for k in kernels:
                kr = r.get("kernels", {}).get(k, {})
                cells.append(f"{kr['gbs']:.0f}" if "gbs" in kr else kr.get("status", "-"))
            floor = r.get("floor_gbs")
            floors[r.get("n")] = floor
            lines.append(f"| {fmt_n(r.get('n', 0))} | " + " | ".join(cells) + f" | {floor:.0f} |" if floor
                         else f"| {fmt_n(r.get('n', 0))} | " + " | ".join(cells) + f" | {r.get('status')} |")
        lines.append("")
    if "elementwise" in cfg["parts"]:
        lines += [("Elementwise forward + backward, `sum(tanh(x) * sigmoid(y))` w.r.t. x and y, float32: median "
                   f"time, effective GB/s ({ELEMENTWISE_BYTES} bytes per element), time / bandwidth floor:"), "",
                  "| N | " + " | ".join(peers) + " |", "|---" * (len(peers) + 1) + "|"]
        for n in cfg["sizes"]:
            def fmt(r):
                ratio = f", {r['floor_ratio']:.2f}x floor" if "floor_ratio" in r else ""
                return f"{fmt_time(r['median_s'])} ({r['gbs']:.0f} GB/s{ratio})"
            lines.append(f"| {fmt_n(n)} | " + " | ".join(_cell(_find(_rows(res, p, 'elementwise'), 'n', n), fmt)
                                                     for p in peers) + " |")
        lines.append("")
    if "matmul" in cfg["parts"]:
        mm_peers = [p for p in peers if p != "torch.compile"]
        fmt = lambda r: f"{fmt_time(r['median_s'])} ({r['tflops']:.1f} TFLOP/s)"
        cublas = _rows(res, "device", "cublas")
        head = mm_peers + (["cuBLAS via CuPy"] if cublas else [])
        lines += [f"Matrix product {cfg['matmul']}^3 float32:", "", "| " + " | ".join(head) + " |",
                  "|---" * len(head) + "|",
                  "| " + " | ".join([_cell(_find(_rows(res, p, "matmul"), "n", cfg["matmul"]), fmt) for p in mm_peers]
                                    + ([_cell(cublas[0], fmt)] if cublas else [])) + " |", ""]
    if "mlp" in cfg["parts"]:
        w = "-".join(map(str, cfg["widths"]))
        lines += [f"MLP training step ({w}, ReLU, cross-entropy, Adam), float32, median time per step:", "",
                  "| batch | " + " | ".join(peers) + " |", "|---" * (len(peers) + 1) + "|"]
        for b in cfg["batches"]:
            lines.append(f"| {b} | " + " | ".join(_cell(_find(_rows(res, p, 'mlp'), 'batch', b),
                                                       lambda r: fmt_time(r["median_s"])) for p in peers) + " |")
        lines.append("")
    lines += _first_calls(res, peers) + _ptx(res) + _targets(res) + _notes(res)
    lines += ["", _machine(res)]
    return "\n".join(lines) + "\n"


def _first_calls(res, peers) -> list:
    rows = []
    for part, key in (("elementwise", "n"), ("matmul", "n"), ("mlp", "batch")):
        labels = list(dict.fromkeys(r["label"] for p in peers for r in _rows(res, p, part)))
        for label in labels:
            cells = []
            for p in peers:
                r = next((r for r in _rows(res, p, part) if r["label"] == label), None)
                extra = f", {r['kernels']} kernels" if r and "kernels" in r else ""
                cells.append(f"{r['first_call_s']:.2f} s{extra}" if r and "first_call_s" in r else "-")
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    context = [f"{p} {res['peers'][p]['context_s']:.2f} s" for p in peers if "context_s" in res["peers"][p]]
    if context:
        rows.append("")
        rows.append("(not included: the CUDA context's start-up, made before the first case: " + ", ".join(context) + ")")
    return ([("First call, synchronized, in a fresh process per peer (graphc: trace + plan + numba-cuda's "
              "compile of each kernel, with an empty cache; torch.compile: its compile):"), "", "| case | " + " | ".join(peers) + " |",
             "|---" * (len(peers) + 1) + "|"] + rows + [""])


def _ptx(res) -> list:
    rows = _rows(res, "ptx", "ptx")
    if not rows:
        return []
    cells = [f"{r['label']}: {r['kernels']} kernels ({r['ptx_s']:.1f} s)" if r.get("status") == "ok"
             else f"{r['label']}: {r.get('status')}" for r in rows]
    return ["graphc's kernels at the GPU run's sizes compiled to PTX (numba-cuda + NVVM, no GPU; graphs traced "
            "for the CPU backend): " + "; ".join(cells), ""]


def _targets(res) -> list:
    cfg = res["config"]
    if cfg["sim"]:
        return []
    out = []
    for n in cfg["sizes"]:
        r = _find(_rows(res, "graphc", "elementwise"), "n", n)
        if r and "floor_ratio" in r:
            ratio = r["floor_ratio"]
            out.append(f"- elementwise N={fmt_n(n)}: graphc at {ratio:.2f}x the bandwidth floor (target <= "
                       f"{TARGET_ELEMENTWISE}x): {'met' if ratio <= TARGET_ELEMENTWISE else 'MISSED'}")
    big = max(cfg["batches"])
    g, t = (_find(_rows(res, p, "mlp"), "batch", big) for p in ("graphc", "torch"))
    if g and t and "median_s" in g and "median_s" in t:
        r = t["median_s"] / g["median_s"]
        out.append(f"- MLP step, batch {big}: PyTorch eager / graphc = {r:.2f}x (target >= 1): "
                   f"{'met' if r >= 1 else 'MISSED'}")
    return (["Targets (issue 17):", "", *out, ""]) if out else []


def _notes(res) -> list:
    notes = []
    for peer, pr in res["peers"].items():
        if "error" in pr:
            notes.append(f"- {peer}: not run: {pr['error']}")
        for rows in pr.get("results", {}).values():
            for r in rows:
                if r.get("status") not in ("ok", None):
                    notes.append(f"- {peer}, {r['label']}: {r['status']}: {r.get('note')}")
        for w in pr.get("warnings", []):
            notes.append(f"- {peer} warned: {w}")
    return (["Notes:", *dict.fromkeys(notes), ""]) if notes else []


def _machine(res) -> str:
    dev = res["peers"].get("device", {}).get("device", {})
    versions = {}
    for pr in res["peers"].values():
        versions.update(pr.get("versions", {}))
    settings = res["peers"].get("torch", {}).get("settings")
    lines = ["- device: " + ", ".join(f"{k} {v}" for k, v in dev.items()),
             f"- host: {res['host']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
             ("- settings: simulator, nothing timed" if res["config"]["sim"] else
              f"- settings: {res['config']['repeats']} samples of ~{res['config']['sample_time']} s after "
              f"{res['config']['warmup']} s of warm-up per case")
             + f"; environment {res['environment']}" + (f"; torch {settings}" if settings else ""),
             "- wall time of each peer's process: " + ", ".join(
                 f"{p} {pr.get('wall_s', 0):.0f} s" for p, pr in res["peers"].items())]
    return "\n".join(lines)


def host_info() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--sim", action="store_true",
                    help="Numba's CUDA simulator at tiny sizes, graphc only, correctness checks only")
    ap.add_argument("--no-ptx", action="store_true",
                    help="with --sim: skip compiling the full-size kernels to PTX")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts (default: %(default)s)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers (default: %(default)s)")
    ap.add_argument("--sizes", help="elementwise and bandwidth N, comma-separated (default: 1e7,1e8)")
    ap.add_argument("--batches", help="MLP batch sizes (default: 512,4096)")
    ap.add_argument("--repeats", type=int, default=11, help="timed samples per case (the median is reported)")
    ap.add_argument("--sample-time", type=float, default=0.05, help="seconds of one sample (calls are batched)")
    ap.add_argument("--warmup", type=float, default=0.3, help="seconds of warm-up calls per case")
    ap.add_argument("--timeout", type=float, default=420, help="seconds allowed per peer's process")
    ap.add_argument("--quick", action="store_true", help="5 samples of ~20 ms after 0.1 s of warm-up")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="directory of the JSON and markdown")
    ap.add_argument("--verbose", action="store_true", help="show the children's stderr")
    opts = ap.parse_args(argv)
    opts.parts = [p for p in opts.parts.split(",") if p]
    opts.peers = [p for p in opts.peers.split(",") if p]
    for given, known, what in ((opts.parts, PARTS, "part"), (opts.peers, PEERS, "peer")):
        unknown = [g for g in given if g not in known]
        if unknown:
            ap.error(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    if opts.quick:
        opts.repeats, opts.sample_time, opts.warmup = 5, 0.02, 0.1
    return opts


def config(opts) -> dict:
    sizes = [int(float(s)) for s in opts.sizes.split(",")] if opts.sizes else list(SIM["sizes"] if opts.sim else SIZES)
    batches = [int(b) for b in opts.batches.split(",")] if opts.batches else \
        list(SIM["batches"] if opts.sim else BATCHES)
    peers = ["graphc"] if opts.sim else opts.peers
    return {"sim": opts.sim, "parts": opts.parts, "peers": peers, "sizes": sizes, "batches": batches,
            "matmul": SIM["matmul"] if opts.sim else MATMUL_N, "widths": list(SIM["widths"] if opts.sim else WIDTHS),
            "repeats": opts.repeats, "sample_time": opts.sample_time, "warmup": opts.warmup}


def main(argv=None):
    opts = parse_args(argv)
    if opts.child:
        child_main(opts.child[0], json.loads(opts.child[1]))
        return 0
    cfg = config(opts)
    res = {"name": NAME + ("_sim" if cfg["sim"] else ""), "config": cfg, "host": host_info(),
           "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "peers": {}}
    cfg["data_dir"] = tempfile.mkdtemp(prefix="graphc-cuda-bench-data-")  # (case_data)
    try:
        # the device's limits first: also the check that there is a device at all
        res["peers"]["device"] = run_child("device", cfg, opts.timeout, opts.verbose)
        if "no_device" in res["peers"]["device"]:
            print(f"benchmarks/cuda.py: no CUDA device was found ({res['peers']['device']['no_device']}); "
                  f"this benchmark needs an NVIDIA GPU with its driver, numba-cuda and CuPy. "
                  f"Run it with --sim for the simulator smoke test.", file=sys.stderr)
            return 2
        for peer in cfg["peers"]:
            res["peers"][peer] = run_child(peer, cfg, opts.timeout, opts.verbose)
        if cfg["sim"] and not opts.no_ptx:
            res["peers"]["ptx"] = run_child("ptx", cfg, opts.timeout, opts.verbose)
    finally:
        shutil.rmtree(cfg.pop("data_dir"), ignore_errors=True)
    annotate(res)
    text = markdown(res)
    os.makedirs(opts.out, exist_ok=True)
    base = os.path.join(opts.out, res["name"])
    with open(base + ".json", "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    with open(base + ".md", "w") as fh:
        fh.write(text)
    print(text)
    print(f"(written to {base}.json and {base}.md)", file=sys.stderr)
    bad = [f"{peer}: {pr['error']}" for peer, pr in res["peers"].items() if "error" in pr]
    bad += [f"{peer}, {r['label']}: {r['status']}" for peer, pr in res["peers"].items()
            for rows in pr.get("results", {}).values() for r in rows if r.get("status") in ("wrong", "error")]
    if bad:
        print("failures:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
