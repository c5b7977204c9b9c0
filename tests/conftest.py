"""Shared test setup and the three-way checker (compiled == interpreter == NumPy).

* Every test session gets its own GRAPHC_CACHE_DIR (a temporary directory) unless
  one is set already, so tests never read or pollute ``~/.cache/graphc``.
* ``GRAPHC_VERIFY=1``: the pass manager verifies the IR after every pass.
* ``GRAPHC_PASS_ERRORS=raise``: a pass that raises fails the test (users get a
  PassWarning and the graph from before the pass); subprocesses inherit it.
* ``GRAPHC_COMPILE=eager``: a first call compiles, as the tests of compiled code expect
  (tests/test_background.py tests the default, ``background``, explicitly).
* Hypothesis runs with no deadline (the first example of a test may compile).
* ``NUMBA_ENABLE_CUDASIM=1`` unless set: the CUDA backend's tests run in Numba's simulator
  (set it to 0 on a machine with a GPU to run them on the device). Set here, before anything
  imports Numba, which reads it once.

Compiling a graph costs ~0.3-1 s of Numba time and shapes are baked into the
generated code, so the helpers here compile *one* graph for a whole group of
cases (``check_cases``) and vary only values afterwards.
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "graphc", deadline=None, max_examples=15, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("graphc"), max_examples=300, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "graphc"))  # HYPOTHESIS_PROFILE=thorough: bug hunting

_TMP_CACHE = None


def pytest_configure(config):
    global _TMP_CACHE
    if not os.environ.get("GRAPHC_CACHE_DIR"):
        _TMP_CACHE = tempfile.mkdtemp(prefix="graphc-test-cache-")
        os.environ["GRAPHC_CACHE_DIR"] = _TMP_CACHE
    os.environ.setdefault("GRAPHC_VERIFY", "1")
    os.environ.setdefault("GRAPHC_PASS_ERRORS", "raise")
    os.environ.setdefault("GRAPHC_COMPILE", "eager")


def pytest_unconfigure(config):
    if _TMP_CACHE:
        shutil.rmtree(_TMP_CACHE, ignore_errors=True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- comparing arrays -----------------------------------------------------------------
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def assert_same(got, want, what="", tol=None):
    """Same dtype, same shape, same values (NaN where NumPy has NaN, same infinities)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, NumPy gives {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, NumPy gives {want.shape}"
    if want.dtype.kind == "f":
        kw = dict(TOL[want.dtype.name])
        kw.update(tol or {})
        np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, **kw)
        # infinities and NaN exactly where NumPy has them
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
        np.testing.assert_array_equal(np.where(np.isinf(want), want, 0), np.where(np.isinf(got), got, 0),
                                      err_msg=f"{what}: inf positions")
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def flat_outputs(out):
    """Leaves of an output pytree, in order."""
    from graphc import pytree
    return pytree.flatten(out)[0]


# -- one compiled graph for a group of cases ---------------------------------------
@dataclass
class Case:
    """``fn(*args)`` traced vs ``ref(*args)`` (``ref`` defaults to ``fn`` on NumPy inputs).

    ``ops``: registry ops the traced graph must contain (before passes), which is
    how test_ops proves every registered op is exercised.
    """

    name: str
    fn: Callable
    args: tuple
    ref: Callable | None = None
    ops: tuple = ()
    tol: dict | None = None
    jit: bool = True  # False: checked by the interpreter against NumPy only (no compile)


def raw_graph(fn, *args):
    """The graph as traced (no passes), without compiling it."""
    from graphc.runtime import is_dynamic
    from graphc.trace import trace_into_graph
    builder, _ = trace_into_graph(fn, args, {}, is_dynamic, "raw")
    return builder.graph


def interpret_raw(fn, *args):
    """Trace ``fn`` (no passes) and run the graph with the interpreter: the arguments' arrays and
    numbers, then the current value of every State and captured array the trace read."""
    from graphc.runtime import is_dynamic
    from graphc.trace import trace_into_graph
    builder, _ = trace_into_graph(fn, args, {}, is_dynamic, "raw")
    from graphc import interpret
    return interpret(builder.graph, *dynamic_leaves(args), *[st.data for st in builder.state_inputs])


def _combined(cases):
    counts = [len(c.args) for c in cases]

    def combined(*flat):
        outs, k = [], 0
        for c, n in zip(cases, counts):
            outs.append(c.fn(*flat[k:k + n]))
            k += n
        return tuple(outs)

    combined.__name__ = "group"
    return combined


def _reference(case, args):
    fn = case.ref or case.fn
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice"
        return fn(*[np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args])


def dynamic_leaves(args):
    from graphc.runtime import is_dynamic
    return [leaf for leaf in flat_outputs(list(args)) if is_dynamic(leaf)]


def check_group(cases, args_per_case=None, traced=None):
    """Compile all cases as one graph (or reuse ``traced``) and compare three ways.

    Returns the TracedFunction so callers can rerun it on new values.
    """
    import graphc as gc

    args_per_case = args_per_case or [c.args for c in cases]
    flat = [a for args in args_per_case for a in args]
    if traced is None:
        traced = gc.trace(_combined(cases))
    got = traced(*flat)
    interp = gc.interpret(traced.graph, *dynamic_leaves(flat))
    interp_iter = iter(interp)
    for case, args, out in zip(cases, args_per_case, got):
        want = flat_outputs(_reference(case, args))
        got_leaves = flat_outputs(out)
        assert len(got_leaves) == len(want), case.name
        for k, (g, w) in enumerate(zip(got_leaves, want)):
            assert_same(g, w, f"{case.name}[{k}] compiled vs NumPy", case.tol)
            assert_same(next(interp_iter), w, f"{case.name}[{k}] interpreter vs NumPy", case.tol)
    return traced


def check_interpreted(cases, args_per_case=None):
    """Interpreter (on the graph as traced, and after the default passes) vs NumPy; no compile."""
    import graphc as gc
    from graphc.passes import manager

    args_per_case = args_per_case or [c.args for c in cases]
    for case, args in zip(cases, args_per_case):
        raw = raw_graph(case.fn, *args)
        optimized, _ = manager.run(raw.clone(), "O2", verify=True)
        want = flat_outputs(_reference(case, args))
        for label, graph in (("traced", raw), ("optimized", optimized)):
            got = gc.interpret(graph, *dynamic_leaves(args))
            assert len(got) == len(want), f"{case.name}: {len(got)} outputs, NumPy gives {len(want)}"
            for k, (g, w) in enumerate(zip(got, want)):
                assert_same(g, w, f"{case.name}[{k}] interpreter ({label} graph) vs NumPy", case.tol)


def check_cases(cases):
    """check_group, and when the group fails, each case alone (to name the culprits)."""
    try:
        return check_group(cases)
    except Exception as group_exc:
        failures = []
        for c in cases:
            try:
                check_group([c])
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{c.name}: {type(exc).__name__}: {str(exc)[:600]}")
        if not failures:
            raise
        raise AssertionError(f"{len(failures)} of {len(cases)} cases fail:\n" + "\n".join(failures)) from group_exc


def check(fn, *args, ref=None, tol=None):
    """Three-way check of a single function; returns the TracedFunction."""
    return check_group([Case(getattr(fn, "__name__", "fn"), fn, args, ref=ref, tol=tol)])


def check_interp(fn, *args, ref=None, tol=None):
    """Interpreter-only check of a single function (no compile)."""
    check_interpreted([Case(getattr(fn, "__name__", "fn"), fn, args, ref=ref, tol=tol)])


def training_step(model, opt, loss_fn):
    """The textbook step as a plain function ``step(x, y)`` (zero_grad, loss, backward, step;
    returns the loss), for tests to trace."""
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def small_training_step(opt_name: str, dtype: str = "float32", **trace_options):
    """``(model, step)``: a 6-5-3 tanh MLP with MSE loss and SGD (momentum) or Adam, its whole
    training step traced with ``trace_options`` (``step(x, t)`` returns the loss)."""
    import graphc as gc
    from graphc import nn, optim

    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    opt = {"sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
           "adam": lambda ps: optim.Adam(ps, lr=0.01)}[opt_name](model.parameters())
    return model, gc.trace(training_step(model, opt, nn.MSELoss()), **trace_options)


def misaligned(a):
    """A C-contiguous copy of ``a`` whose data starts one byte past an element boundary."""
    raw = np.empty(a.nbytes + 1, np.uint8)[1:]
    out = np.frombuffer(raw, a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out
