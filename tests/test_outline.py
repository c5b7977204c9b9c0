"""graphc.backend.outline: repeated runs of the entry become one function, compiled once.

Each test compiles few graphs (a chain of layers costs ~1-3 s of Numba): the results must be the
interpreter's and, bit for bit, those of the same graph compiled without outlining.
"""
import re

import numpy as np
import pytest
from conftest import assert_same, misaligned, training_step

import graphc as gc
from graphc import nn, optim
from graphc.backend import outline, schedule


def chain(h, ws):
    for w in ws:
        h = np.tanh(h @ w) + 0.5 * h
    return np.sum(h)


def _chain_inputs(n, dtype="float64"):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(8, 8)).astype(dtype),
            [(rng.normal(size=(8, 8)) * 0.3).astype(dtype) for _ in range(n)])


def _functions(f):
    """name -> (Numba dispatcher, calls) of the outlined functions of ``f``'s latest graph."""
    compiled = f._last.compiled
    module = compiled.entry.py_func.__globals__
    return {o["name"]: (module[o["name"]], o["calls"]) for o in compiled._emitter.outlined}


def _calls_in_source(source: str, name: str) -> int:
    """How many times the entry calls ``name``: a call in a loop of calls (outline._roll)
    counts once per step of its loop."""
    lines = source.splitlines()
    total = 0
    for k, line in enumerate(lines):
        if re.match(rf"\s+{name}\(", line):
            loop = re.match(r"\s+for k_\d+ in range\((\d+)\):$", lines[k - 1])
            total += int(loop.group(1)) if loop else 1
    return total


def test_repeated_layers_compile_once(monkeypatch):
    h, ws = _chain_inputs(7)
    f = gc.value_and_grad(chain, argnums=1)
    value, grads = f(h, ws)
    functions = _functions(f)
    # the forward layer and the backward layer repeat: one function each, called per layer
    assert len(functions) >= 2 and max(calls for _, calls in functions.values()) >= 4, functions
    for name, (dispatcher, calls) in functions.items():
        assert len(dispatcher.signatures) == 1, f"{name} compiled {len(dispatcher.signatures)} times"
        assert f"def {name}(" in f.source and _calls_in_source(f.source, name) == calls
    # the interpreter (the oracle) agrees
    want = gc.interpret(f.graph, h, *ws)
    assert_same(value, want[0], "value")
    for k, g in enumerate(grads):
        assert_same(g, want[k + 1], f"grad {k}")
    # and the same graph compiled inline computes the same bits
    monkeypatch.setattr(outline, "ENABLED", False)
    inline = gc.value_and_grad(chain, argnums=1)
    value2, grads2 = inline(h, ws)
    assert not inline._last.compiled._emitter.outlined
    assert value2 == value and all(np.array_equal(a, b) for a, b in zip(grads, grads2))


def _float32_step(model, opt_name, device):
    """``model``'s MSE training step in float32 with momentum SGD or Adam, traced for ``device``."""
    for p in model.parameters():
        p.data = p.data.astype("float32")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd" \
        else optim.Adam(model.parameters(), lr=0.01)
    return gc.trace(training_step(model, opt, nn.MSELoss()), device=device)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_outlined_state_updates_match_the_interpreter(opt_name):
    """Identical layers trained in float32 with momentum SGD or Adam: the parameter updates
    (written in place of the States) and Adam's per-parameter scalar steps (a sequence of runs
    repeated back to back, merged) run in outlined functions; two steps equal the interpreter's."""
    def build(device):
        nn.manual_seed(0)
        layers = []
        for _ in range(6):
            layers += [nn.Linear(8, 8), nn.Tanh()]
        model = nn.Sequential(*layers, nn.Linear(8, 3))
        return model, _float32_step(model, opt_name, device)

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 8)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    model, step = build("cpu")
    ref_model, ref_step = build("numpy")
    for _ in range(2):
        assert_same(step(x, y), ref_step(x, y), "loss")
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert_same(p.data, q.data, "parameter after two steps")
    functions = _functions(step)
    assert functions, "the repeated layers were not outlined"
    if opt_name == "adam":  # each parameter's bias corrections: one call per parameter
        assert any("pow" in name and calls >= 8 for name, (_, calls) in functions.items()), functions


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_updates_of_parameters_of_every_size_share_one_kernel(opt_name, monkeypatch):
    """Layers of different widths: the optimizer's update of each parameter (the same ops on
    arrays of six sizes, written in place) is one kernel of any length (schedule.generic_groups),
    compiled once and called per parameter. The parameters after two steps are the
    interpreter's and, bit for bit, those of the same step compiled with inline loops."""
    def build(device):
        nn.manual_seed(0)
        model = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
        return model, _float32_step(model, opt_name, device)

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 7)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")
    runs = {}
    for name, device in [("generic", "cpu"), ("interpreter", "numpy"), ("inline", "cpu")]:
        if name == "inline":
            monkeypatch.setattr(schedule, "GENERIC_MIN", 10 ** 9)
        model, step = build(device)
        losses = [step(x, y) for _ in range(2)]
        runs[name] = (losses, [p.data.copy() for p in model.parameters()], step)
    for name in ("interpreter", "inline"):
        for a, b in zip(runs["generic"][0] + runs["generic"][1], runs[name][0] + runs[name][1]):
            assert_same(a, b, f"compiled with one update kernel against {name}")
            if name == "inline":
                assert np.array_equal(a, b)
    em = runs["generic"][2]._last.compiled._emitter
    calls = [info["name"] for info in em.kernel_info if info["node"] in em.generic]
    assert len(calls) == 6 and len(set(calls)) == 1, calls
    assert "for i_1 in range(len(" in runs["generic"][2].source
    module = runs["generic"][2]._last.compiled.entry.py_func.__globals__
    assert len(module[calls[0]].signatures) == 1
    assert not runs["inline"][2]._last.compiled._emitter.generic


def test_symbolic_batch_outlined():
    """A graph compiled for every batch size (dynamic=): the size ``dim_B`` is passed to the
    outlined layer like any other value; two batch sizes, one compile, NumPy's results."""
    def net(x, ws):
        h = x
        for w in ws:
            h = np.tanh(h @ w) + 0.5 * h
        return np.sum(h * h, axis=1)

    _, ws = _chain_inputs(8)
    f = gc.trace(net, dynamic={"x": 0})
    rng = np.random.default_rng(3)
    for batch in (5, 9):
        x = rng.normal(size=(batch, 8))
        assert_same(f(x, ws), net(x, ws), f"batch {batch}")
    assert f.signatures == 1
    assert _functions(f) and "dim_B" in f.source.split("_step(")[1]


@pytest.mark.parametrize("odd", ["none", "read-only", "misaligned", "the same array twice"])
def test_a_loop_of_calls_takes_every_kind_of_input(odd):
    """The calls of the repeated layers run as one loop over the layers' inputs (outline._roll):
    the same results whatever the inputs' Numba types, which the loop must index as one type."""
    h, ws = _chain_inputs(9)
    if odd == "read-only":
        ws[4].flags.writeable = False
    elif odd == "misaligned":
        ws[5] = misaligned(ws[5])
    elif odd == "the same array twice":
        ws[6] = ws[2]
    f = gc.value_and_grad(chain, argnums=1)
    value, grads = f(h, ws)
    assert re.search(r"for k_\d+ in range\(\d+\):\n\s+\w+_step\w*\(", f.source), f.source
    want = gc.interpret(f.graph, h, *ws)
    assert_same(value, want[0], "value")
    for k, g in enumerate(grads):
        assert_same(g, want[k + 1], f"grad {k}")
    for name, (dispatcher, _) in _functions(f).items():  # one type for every call: one compile
        assert len(dispatcher.signatures) == 1 or odd != "none", name  # (others share its module)
    # then an ordinary call of the same function
    h2, ws2 = _chain_inputs(9)
    value2, grads2 = f(h2, ws2)
    want2 = gc.interpret(f.graph, h2, *ws2)
    assert_same(value2, want2[0], "value, second call")


def test_no_repeats_no_functions():
    """A graph without repeated runs (a 6-5-3 MLP's step) compiles as before: all in the entry."""
    from conftest import small_training_step
    _, step = small_training_step("sgd")
    rng = np.random.default_rng(2)
    step.lower(rng.normal(size=(4, 6)).astype("float32"), rng.normal(size=(4, 3)).astype("float32"))
    assert step._last.compiled._emitter.outlined == []
    assert "offsets_c" not in step.source


@pytest.mark.parametrize("line, names", [
    ("    v3 = view_c(ws, 0, (8, 8), np.float64)", ["v3"]),
    ("    v4, v5, = kernel(p0)", ["v4", "v5"]),
    ("        acc_1 += x_2", ["acc_1"]),
    ("    for i_3 in range(64):", ["i_3"]),
    ("        f_3[i_6] = t_11", []),
    ("        if x_1 == t_2:", []),
])
def test_bound_names(line, names):
    assert outline._defined(line) == names
