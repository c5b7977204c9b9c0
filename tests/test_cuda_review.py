"""A hostile review of the CUDA backend (issue 17): where ``device="cuda"`` could differ from
eager NumPy, or fail with a Numba error instead of graphc's own.

Everything runs in Numba's CUDA simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1) on
tiny shapes (with NUMBA_ENABLE_CUDASIM=0 on a GPU the same tests run there, results brought
to the host with ``to_host=True``). What the simulator cannot show runs in one subprocess without it
(``gpu_side``): the kernels compiled to PTX (cuda_math's GPU math runs against NumPy in
tests/test_cuda_math.py). The review found ten bugs, each a test here that failed until it was
fixed (an argmax of rows holding only the start value gave -1; scatter_add into a vector did
not compile for a GPU; an out-of-range index was raised only after later ops ran on garbage;
too much shared memory for a group of many reductions; float32 kernels computing in float64;
0-d buffers made 1-d by model.to; the simulator's pow, threads and read-only inputs); the
others are attacks that held, kept as regression tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import assert_same

import graphc as gc
from graphc import nn, optim
from graphc.errors import DeviceError
from graphc.state import State

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    from graphc.backend.cuda_device import device as _device
    _SIMULATOR = _device().simulator
except (DeviceError, ImportError):  # (no numba-cuda: nothing to review)
    _SIMULATOR = None
pytestmark = [pytest.mark.skipif(_SIMULATOR is None, reason="numba-cuda is not installed"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]
needs_simulator = pytest.mark.skipif(not _SIMULATOR, reason="reviews the simulator's behaviour")


def cuda(fn, **options):
    """``fn`` traced for the CUDA device (NumPy results on a real GPU, so that they compare)."""
    if not _SIMULATOR:
        options.setdefault("to_host", True)
    return gc.trace(fn, device="cuda", **options)


def host(a):
    """A NumPy view of ``a`` (a host copy of a GPU array)."""
    return a if a is None or isinstance(a, (np.ndarray, np.generic)) else _device().to_host(a)


def same_signs(got, want, what=""):
    """assert_same, and -0.0 where NumPy has -0.0."""
    assert_same(got, want, what)
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(got) | np.isnan(want), np.signbit(want) | np.isnan(want),
                                      err_msg=f"{what}: signs of zeros")


# -- bugs: silent differences from NumPy ---------------------------------------------------
def test_argmax_argmin_of_rows_that_only_hold_the_start_value():
    def fn(x, mask, i):
        return np.argmax(x, axis=1), np.argmin(-x, axis=1), np.argmax(mask), np.argmin(~mask), np.argmax(i)
    x = np.full((2, 5), -np.inf, np.float32)  # (np.argmax(x > t) where nothing exceeds t is the common case)
    mask = np.zeros(6, bool)
    i = np.full(3, np.iinfo(np.int32).min, np.int32)
    for got, want in zip(cuda(fn)(x, mask, i), fn(x, mask, i)):
        assert_same(got, want)


def test_module_to_cuda_keeps_0d_buffers_0d():
    bn = nn.BatchNorm1d(3)
    bn.to("cuda")
    assert bn.num_batches_tracked.data.shape == ()
    assert bn.state_dict()["num_batches_tracked"].shape == ()


@needs_simulator
def test_power_with_an_array_exponent_of_one_half():
    a = np.array([-0.0, -np.inf, 4.0], np.float32)
    b = np.array([0.5, 0.5, 0.5], np.float32)
    same_signs(cuda(lambda a, b: a ** b)(a, b), a ** b)


@needs_simulator
def test_two_threads_call_one_compiled_function():
    f = cuda(lambda x: np.tanh(x) * 2 + np.sum(x, axis=1, keepdims=True))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 40)) for _ in range(6)]
    f(inputs[0])
    start = threading.Barrier(len(inputs))
    failures = []

    def work(x):
        start.wait()
        try:
            for _ in range(3):
                np.testing.assert_allclose(f(x), np.tanh(x) * 2 + np.sum(x, axis=1, keepdims=True))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            failures.append(exc)
    threads = [threading.Thread(target=work, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]


# -- what only a GPU shows: PTX and libdevice semantics, in a process without the simulator ---
_GPU_SIDE = r'''
import json, math, os, sys, types, warnings
sys.path.insert(0, os.environ["GRAPHC_ROOT"])
warnings.simplefilter("ignore")
import numpy as np
import graphc as gc
from graphc.backend import cuda_math as cm
from graphc.backend.cuda import ptx

out = {"math": {}, "ptx": {}, "f64": {}}

# (cuda_math's typed device functions run against NumPy in tests/test_cuda_math.py)

def graph(fn, *args):
    f = gc.trace(fn, device="numpy")
    f(*args)
    return f.graph

def compile_ptx(name, fn, *args):
    try:
        out["ptx"][name] = sorted(ptx(graph(fn, *args)))
    except Exception as exc:
        out["ptx"][name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

m = np.ones((4, 5), np.float32)
v = np.ones(5, np.float32)
for dt in ("int32", "int64"):
    i = np.array([0, -1, 3], dt)
    compile_ptx(f"gather rows {dt}", lambda x, i: (x[i], x[:, i], x[i, i]), m, i)
    compile_ptx(f"scatter_add rows {dt}", lambda x, i: gc.grad(lambda x: np.sum(x[i] ** 2))(x), m, i)
    compile_ptx(f"scatter_add vector {dt}", lambda x, i: gc.grad(lambda x: np.sum(x[i] ** 2))(x), v, i)
compile_ptx("argmax rows and columns", lambda x: (np.argmax(x, axis=1), np.argmin(x, axis=0)), np.ones((40, 70), np.float32))
compile_ptx("float32 math", lambda x: np.exp(x) + np.log1p(x) + np.tanh(x) + np.hypot(x, x) + x ** x, v)

# float32 kernels should not compute in float64 (issue 17: float32 math stays float32)
import re
for name, fn in [("sign", np.sign), ("rint", np.rint), ("exp2", np.exp2), ("logaddexp", lambda x: np.logaddexp(x, x)),
                 ("floor_divide", lambda x: x // (x + 1)), ("exp", np.exp), ("tanh", np.tanh)]:
    try:
        text = "\n".join(ptx(graph(fn, v)).values())
        out["f64"][name] = sorted(set(re.findall(r"\b(?:add|sub|mul|div|fma|rcp|cvt\.f64)\S*\.f64\b", text)))
    except Exception as exc:
        out["f64"][name] = f"{type(exc).__name__}: {exc}"
# static shared memory per kernel (48 KB is the most a kernel may declare statically)
out["shared"] = {}
text = ptx(graph(lambda x: tuple(np.sum(x ** k, axis=1) for k in range(1, 31)), np.ones((4, 300))))
for name, source in text.items():
    out["shared"][name] = sum(int(n) for n in re.findall(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]", source))
print("RESULT" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def gpu_side():
    """The device side, without the simulator: cuda_math with libdevice's semantics and the
    PTX of a few graphs (skipped where numba-cuda's NVVM is missing)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "GRAPHC_ROOT": ROOT}
    done = subprocess.run([sys.executable, "-c", _GPU_SIDE], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    if not lines:
        pytest.skip(f"the PTX side did not run: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(lines[-1][len("RESULT"):])
    if any("NVVM" in str(v) or "libnvvm" in str(v) for v in result["ptx"].values()):
        pytest.skip("numba-cuda has no NVVM here")
    return result


def test_scatter_add_into_a_vector_compiles_to_ptx(gpu_side):
    for dt in ("int32", "int64"):
        assert isinstance(gpu_side["ptx"][f"scatter_add vector {dt}"], list), gpu_side["ptx"][f"scatter_add vector {dt}"]


def test_indexing_kernels_compile_to_ptx(gpu_side):
    for name in ["gather rows int32", "gather rows int64", "scatter_add rows int32", "scatter_add rows int64",
                 "argmax rows and columns", "float32 math"]:
        assert isinstance(gpu_side["ptx"][name], list), f"{name}: {gpu_side['ptx'][name]}"


def test_float32_kernels_compute_in_float32(gpu_side):
    assert gpu_side["f64"]["exp"] == [] and gpu_side["f64"]["tanh"] == []  # (the check itself works)
    assert {k: v for k, v in gpu_side["f64"].items() if v} == {}


@needs_simulator
def test_read_only_inputs():
    x = np.arange(6.0).reshape(2, 3)
    x.setflags(write=False)
    idx = np.array([1, 0])
    idx.setflags(write=False)
    out = cuda(lambda x, i: (np.exp(x) * 2, x[i]))(x, idx)
    assert_same(out[0], np.exp(x) * 2)
    assert_same(out[1], x[idx])


# -- attacks that held (regression tests) --------------------------------------------------
def test_float_special_values_and_signed_zeros():
    """One kernel: -0.0, inf, NaN through floor division, remainder, max/min, weak scalars (float32 stays)."""
    vals = [0.0, -0.0, 1.5, -2.5, 7.0, -7.0, np.inf, -np.inf, np.nan]
    a, b = (np.array(v, np.float32) for v in zip(*[(p, q) for p in vals for q in vals]))

    def fn(a, b):
        return (a // b, a % b, np.maximum(a, b), np.minimum(a, b), a * 2.0 + 1, -a, np.abs(a),
                np.where(a > b, a, b), a / b, np.sqrt(a), np.exp(a), np.log(a))
    for k, (got, want) in enumerate(zip(cuda(fn)(a, b), fn(a, b))):
        same_signs(got, want, f"output {k}")


def test_integer_wraparound_and_division_by_zero():
    info = np.iinfo(np.int32)
    vals = [0, 1, -1, 7, -7, 3, info.max, info.min]
    a, b = (np.array(v, np.int32) for v in zip(*[(p, q) for p in vals for q in vals]))

    def fn(a, b):
        return a * b, a + b, a // b, a % b, -a, np.abs(a), a + 1, a * 3, a / b, a + np.int64(1), np.sum(a)
    for k, (got, want) in enumerate(zip(cuda(fn)(a, b), fn(a, b))):
        assert_same(got, want, f"output {k}")


def test_reductions_take_their_split_paths_with_nan_and_ties():
    """Rows >= 64 and columns >= 8 split in the simulator; NaN wins max/min/argmax, ties go to
    the first index, keepdims keeps the axis."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, 100)).astype(np.float32)
    rows[1, 70] = np.nan
    rows[2, 10] = rows[2, 90] = 9.0  # a tie across the two halves of a split row
    cols = rng.standard_normal((20, 40))
    cols[15, 3] = np.nan
    cols[2, 5] = cols[17, 5] = 9.0

    def fn(r, c):
        return (np.sum(r * 2, axis=1), np.max(r, axis=1), np.min(r, axis=1, keepdims=True), np.mean(r, axis=1),
                np.argmax(r, axis=1), np.argmin(-r, axis=1), np.sum(c, axis=0), np.max(c, axis=0, keepdims=True),
                np.argmax(c, axis=0), np.mean(np.exp(c), axis=0), np.prod(c * 0.1 + 1, axis=0), np.sum(r))
    for k, (got, want) in enumerate(zip(cuda(fn)(rows, cols), fn(rows, cols))):
        assert_same(got, want, f"output {k}")


def test_empty_and_size_one_shapes():
    def fn(e, c, one):
        return (np.sum(e, axis=0), np.mean(e, axis=1), np.prod(c, axis=1), e * 2, one + c[:, :1].sum(),
                np.max(one, axis=1), np.argmax(one, axis=1), np.sum(one, axis=(0, 1), keepdims=True))
    e, c, one = np.zeros((0, 3), np.float32), np.ones((4, 0)), np.arange(3.0).reshape(3, 1)
    for k, (got, want) in enumerate(zip(cuda(fn)(e, c, one), fn(e, c, one))):
        assert_same(got, want, f"output {k}")


def test_results_are_fresh_arrays():
    """A returned input, view, constant, value returned twice, zero-trip loop or cond operand:
    mutating the result changes neither the input nor the next call's result."""
    table = np.arange(6.0)

    def fn(x, p):
        y = x * 2
        return (x, x.T, x[1:], table, y, y, gc.fori_loop(0, 0, lambda i, c: c * 2, x),
                gc.cond(p > 0, lambda a: a, lambda a: a * 2, x))
    f = cuda(fn)
    x = np.arange(12.0).reshape(3, 4)
    keep = x.copy()
    first = f(x, 1.0)
    for out in first:
        out[...] = -1
    np.testing.assert_array_equal(x, keep)
    for got, want in zip(f(x, 1.0), fn(keep, 1.0)):
        assert_same(got, want)


def test_result_types_match_eager():
    def fn(x, s, n):
        return np.sum(x), x[0, 1], s * 2, n + 1, np.argmax(x), np.mean(np.arange(4)), gc.fori_loop(0, 2, lambda i, c: c * 2, s)
    x = np.ones((2, 3), np.float32)
    want = fn(x, 1.5, 3)
    for variant in (cuda(fn), cuda(fn, to_host=True)):
        got = variant(x, 1.5, 3)
        assert [type(g) for g in got] == [type(w) for w in want]
        for g, w in zip(got, want):
            assert_same(g, w)


def test_indexing_negative_and_out_of_range_leaves_state_unchanged():
    count = State(np.zeros(2))

    def fn(x, i, j):
        count.write(count.read() + 1)
        return x[i], x[:, j], x[j[0]], gc.grad(lambda x: np.sum(x[i] * np.arange(1.0, 5.0)[:, None]))(x)
    f = cuda(fn)
    x = np.arange(15.0).reshape(5, 3)
    i, j = np.array([0, -1, 2, 2]), np.array([-3, 2])
    for got, want in zip(f(x, i, j), gc.trace(fn, device="cpu")(x, i, j)):
        assert_same(got, want)
    before = count.data.copy()
    with pytest.raises(IndexError, match=r"gather \(at test_cuda_review.py:\d+\)"):
        f(x, np.array([0, 5, 1, 1]), j)
    with pytest.raises(IndexError, match="gather"):
        f(x, i, np.array([0, -4]))
    np.testing.assert_array_equal(count.data, before)


def test_loops_match_the_cpu_backend():
    rng = np.random.default_rng(0)
    h0, xs, w = rng.standard_normal(3), rng.standard_normal((4, 3)), rng.standard_normal(3)

    def fn(h0, xs, w, s):
        def cell(h, x):
            h = np.tanh(h * w + x)
            return h, h[0] * s
        h, ys = gc.scan(cell, h0, xs, reverse=True)
        total = gc.fori_loop(1, 4, lambda i, c: c * 0.5 + i, s)  # a 0-d carry meets the host index
        n = gc.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] + np.max(xs)), (0, 0.0))
        flip = gc.cond(np.sum(h) > 0, lambda a: a * 2, lambda a: -a, h)
        empty_h, empty_ys = gc.scan(cell, h0, xs[:0])
        grads = gc.grad(lambda h0, w: np.sum(gc.scan(cell, h0, xs)[1]) + np.sum(gc.scan(cell, h0, xs)[0] ** 2),
                        argnums=(0, 1))(h0, w)
        return h, ys, total, n, flip, empty_h, empty_ys, grads
    got = cuda(fn)(h0, xs, w, 1.5)
    want = gc.trace(fn, device="cpu")(h0, xs, w, 1.5)
    for g, v in zip(gc.pytree.flatten(got)[0], gc.pytree.flatten(want)[0]):
        assert_same(g, v)


@pytest.mark.parametrize("name", ["sgd_momentum", "adam_accumulating"])
def test_training_steps_match_the_cpu_backend(name):
    """Three compiled steps on the simulated device equal the CPU's: parameters, gradients
    (accumulated without zero_grad for Adam), optimizer state and the returned losses."""
    def setup(device):
        rng = np.random.default_rng(0)
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
        for p in model.parameters():
            p.data[...] = rng.standard_normal(p.data.shape).astype(p.data.dtype) * 0.5
        if device == "cuda":
            model.to("cuda")
        opt = (optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True) if name == "sgd_momentum"
               else optim.Adam(model.parameters(), lr=0.01))

        @gc.trace(device=device, **({"to_host": True} if device == "cuda" and not _SIMULATOR else {}))
        def step(x, y):
            if name == "sgd_momentum":
                opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return model, step
    (cpu_model, cpu_step), (gpu_model, gpu_step) = setup("cpu"), setup("cuda")
    rng = np.random.default_rng(1)
    for _ in range(3):
        x, y = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)
        loss = gpu_step(x, y)
        assert type(loss) is np.float32
        assert_same(loss, cpu_step(x, y))
    for (key, want), got in zip(cpu_model.state_dict().items(), gpu_model.state_dict().values()):
        assert_same(got, want, key)
    for p, q in zip(gpu_model.parameters(), cpu_model.parameters()):
        assert_same(host(p.grad), q.grad)
    gpu_model.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in gpu_model.parameters())


def test_device_errors_name_the_argument_or_option():
    class FakeGPUArray:  # (what CuPy and PyTorch CUDA tensors look like to graphc)
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype

        @property
        def __cuda_array_interface__(self):
            return {"shape": self.shape, "typestr": self.a.dtype.str, "data": (self.a.ctypes.data, False),
                    "version": 3}
    x = np.ones(3)
    with pytest.raises(DeviceError, match="argument 'x' is a GPU array .* device 'cpu'"):
        gc.trace(lambda x: x + 1, device="cpu")(FakeGPUArray(x))
    with pytest.raises(TypeError, match="argument 'x' is a GPU array of dtype float16"):
        cuda(lambda x: x + 1)(FakeGPUArray(x.astype(np.float16)))
    with pytest.raises(ValueError, match="device 'cuda' has no option 'math'"):
        cuda(lambda x: x, math="fast")
    with pytest.raises(ValueError, match="unknown to_host mode 'yes'"):
        cuda(lambda x: x, to_host="yes")
    if _SIMULATOR:
        with pytest.raises(DeviceError, match="simulator"):
            cuda(lambda x: x + 1)(FakeGPUArray(x))


def test_kernels_fit_static_shared_memory(gpu_side):
    assert gpu_side["shared"] and max(gpu_side["shared"].values()) <= 48 * 1024, gpu_side["shared"]


def test_out_of_range_index_is_the_error_raised():
    def fn(x, i, e):
        return (x[i] + 2) ** e
    x, i, e = np.arange(6).reshape(3, 2), np.array([0, 7]), np.array([-1, 1])
    with pytest.raises(IndexError):
        gc.trace(fn, device="cpu")(x, i, e)
    with pytest.raises(IndexError, match="gather"):
        cuda(fn)(x, i, e)
