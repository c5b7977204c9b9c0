"""The backend interface (graphc/backend/base.py) and the ``numpy`` device.

``device="numpy"`` runs the optimized graph with the NumPy interpreter instead of compiling it;
everything else (fresh outputs, State write-back, guards, retracing) is the runtime's, so it
must obey the first rule exactly as the cpu device does. These tests compile few graphs: most
run on the numpy device, which compiles nothing.
"""
import numpy as np
import pytest

import graphc as gc
from graphc import backend
from graphc.backend import base, cpu
from graphc.state import State

from conftest import assert_same, small_training_step


# -- choosing a device ---------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["gpu", "tpu", "CPU", None])
def test_an_unknown_device_is_a_clear_error_listing_the_devices(device):
    with pytest.raises(ValueError, match=r"device .* is not available: graphc's devices are 'cpu', 'cuda', 'numpy'"):
        gc.trace(lambda x: x, device=device)


def test_options_are_checked_by_the_device_when_traced():
    with pytest.raises(ValueError, match="device 'numpy' has no option 'math'"):
        gc.trace(lambda x: x, device="numpy", math="libm")
    with pytest.raises(ValueError, match="device 'cpu': unknown math mode 'svml'; choose one of fast, libm"):
        gc.trace(lambda x: x, math="svml")
    assert backend.get("cpu").check_options({}) == {"math": "fast", "passes": "O2"}


def test_the_runtime_hands_the_backend_the_graph_and_its_options(monkeypatch):
    """A backend registered from outside is selectable by name; it gets the user's options and
    the pipeline, and the runtime copies an output that is an input (``buffer_roots``)."""
    seen = []

    class Echo(base.Executable):
        def __call__(self, *args):
            return args  # the graph `lambda x: x` returns its input: hand back the caller's array

    class EchoBackend(base.Backend):
        device = "echo"
        options = {"math": ("exact", "loose")}

        def compile(self, graph, options):
            seen.append(self.check_options(options))
            return Echo()

    monkeypatch.setitem(base._BACKENDS, "echo", EchoBackend())
    x = np.arange(3.0)
    f = gc.trace(lambda x: x, device="echo", passes="O1", math="loose")
    y = f(x)
    assert seen == [{"math": "loose", "passes": "O1"}]
    assert np.array_equal(y, x) and not np.shares_memory(y, x) and f.source is None
    with pytest.raises(ValueError, match="device 'echo': unknown math mode 'fast'"):
        gc.trace(lambda x: x, device="echo", math="fast")


# -- the numpy device: the first rule --------------------------------------------------------------
def mixed(x, w, n):
    """Elementwise chains, a matmul, reductions, broadcasting and an integer input."""
    h = np.tanh(x @ w + 1.0)
    return np.sum(h * h, axis=1), np.max(x, axis=0) / 2, n * 3 + 1, np.exp(x) - x


CASES = {
    "float64": (np.linspace(-2, 2, 12).reshape(4, 3), np.ones((3, 2))),
    "float32": (np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3), np.ones((3, 2), np.float32)),
    "special": (np.array([[np.inf, -np.inf, np.nan], [-0.0, 0.0, 1e308]]), np.ones((3, 1))),
    "size-one": (np.ones((1, 1)), np.full((1, 5), 0.5)),
    "empty": (np.ones((2, 0)), np.ones((0, 2))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_numpy_device_returns_what_eager_numpy_returns(case, monkeypatch):
    def no_compiling(*args, **kwargs):
        raise AssertionError("the numpy device compiled something")

    monkeypatch.setattr(cpu, "compile_graph", no_compiling)
    x, w = CASES[case]
    n = np.arange(4, dtype=np.int32)
    f = gc.trace(mixed, device="numpy")
    for _ in range(2):
        got = f(x, w, n)
        with np.errstate(all="ignore"):
            want = mixed(x, w, n)
        for k, (a, b) in enumerate(zip(got, want)):
            assert_same(a, b, f"{case}, output {k}")
    assert f.source is None and f.graph.nodes


def test_the_numpy_device_agrees_with_the_cpu_device():
    x, w = CASES["special"]
    n = np.arange(4, dtype=np.int32)
    for a, b in zip(gc.trace(mixed, device="numpy")(x, w, n), gc.trace(mixed)(x, w, n)):
        assert_same(a, b)


@pytest.mark.parametrize("fn", [lambda x: x, lambda x: x.reshape(2, 2), lambda x: x * 1.0, lambda x: x.T,
                                lambda x: np.broadcast_to(x, (2, 4)), lambda x: x[1:],
                                lambda x: np.ones(4), lambda x: (lambda y: (y, y))(x + 1)],
                         ids=["identity", "reshape", "times-one", "transpose", "broadcast", "slice",
                              "constant", "twice"])
def test_the_numpy_device_returns_fresh_writable_arrays(fn):
    a = np.arange(4.0)
    f = gc.trace(fn, device="numpy")
    first = f(a)
    outs = first if isinstance(first, tuple) else (first,)
    for out in outs:
        assert not np.shares_memory(out, a) and out.flags.writeable
        out[...] = 99  # changes nothing the next call or the caller sees
    if len(outs) == 2:
        assert not np.shares_memory(*outs)
    assert np.array_equal(a, np.arange(4.0))
    again = f(a)
    for got, want in zip(again if isinstance(again, tuple) else (again,),
                         fn(a) if isinstance(first, tuple) else (fn(a),)):
        assert np.array_equal(got, want)


def test_the_numpy_device_reads_captured_values_at_call_time():
    scale = {"k": 2.0}
    table = np.ones(3)
    f = gc.trace(lambda x: x * table * scale["k"], device="numpy")
    x = np.arange(3.0)
    assert np.array_equal(f(x), x * 2.0)
    table[:] = 3.0  # read by reference
    scale["k"] = 5.0  # a guarded Python value: retraced
    assert np.array_equal(f(x), x * 15.0)


def test_the_numpy_device_writes_state_back_all_or_nothing():
    p = State(np.ones(3))

    @gc.trace(device="numpy", check_finite=True)
    def f(x):
        p.write(p.read() + x)
        return p.read() * 2

    data = p.data
    assert np.array_equal(f(np.arange(3.0)), [2.0, 4.0, 6.0])  # a read after the write sees it
    assert p.data is data and np.array_equal(data, [1.0, 2.0, 3.0])  # written into its own array
    with pytest.raises(gc.errors.NonFiniteError):
        f(np.array([np.inf, 0.0, 0.0]))
    assert np.array_equal(p.data, [1.0, 2.0, 3.0])


def _training(device, opt_name, steps=3):
    model, step = small_training_step(opt_name, device=device)

    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    arrays = [p.data for p in model.parameters()]
    losses = [step(x, t) for _ in range(steps)]
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))  # updated in their own arrays
    return losses, [p.data.copy() for p in model.parameters()], [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_a_training_step_on_the_numpy_device_matches_the_cpu_device(opt_name):
    losses, params, grads = _training("numpy", opt_name)
    assert losses[-1] < losses[0] and all(type(v) is np.float32 for v in losses)  # float32 stays float32
    want_losses, want_params, want_grads = _training("cpu", opt_name)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    for got, want in zip(params + grads, want_params + want_grads):
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
