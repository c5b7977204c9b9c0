"""The pass manager and the cleanup passes: constant folding, simplification, CSE, DCE.

Graphs are written by hand in the IR's text form; every rewrite is checked
against the interpreter on inputs full of NaN, ±inf and -0.0.
"""
import os

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import infer_node
from graphc.interpret import interpret
from graphc.ir import parse
from graphc.passes import constfold, cse, dce, fusion, hoist, manager, simplify
from conftest import raw_graph

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -3.0, np.inf, -np.inf, np.nan, 1e-30, 80.0, -80.0])


def ops(graph):
    return [n.op for n in graph.nodes]


def same(a, b, exact=True):
    """Equal results: NaN == NaN (any sign), -0.0 != 0.0; ``exact=False`` allows rounding."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not exact:
        return np.allclose(a, b, rtol=1e-12, atol=1e-15, equal_nan=True) and np.array_equal(
            np.isposinf(a), np.isposinf(b)) and np.array_equal(np.isneginf(a), np.isneginf(b))
    nan = np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    return np.array_equal(np.signbit(a) | nan, np.signbit(b) | nan) and np.array_equal(a, b, equal_nan=True)


def check(text, *args, pass_=simplify.run, exact=True):
    g = parse(text).verify(infer_node)
    h = pass_(g).verify(infer_node)
    h = dce.run(h).verify(infer_node)
    if not args:
        args = [np.resize(SPECIAL, v.type.shape).astype(v.type.dtype) if v.type.shape
                else np.asarray(1.5, v.type.dtype) for v in g.inputs]
    for want, got in zip(interpret(g, *args), interpret(h, *args)):
        assert same(want, got, exact), (text, want, got)
    return h


def g1(body, dtype="f64", n=12):
    return f"graph f(%0:{dtype}[{n}]):\n" + body


# -- the pipeline manager ----------------------------------------------------------------
def test_unknown_pipeline_lists_the_pipelines():
    with pytest.raises(ValueError, match="O0, O1, O2"):
        gc.trace(lambda x: x, passes="O3")


def test_pipelines_and_stats():
    assert manager.PIPELINES["O0"] == ()
    assert manager.PIPELINES["O1"] == (manager.CLEANUPS, ("dce", dce.run), ("hoist", hoist.run))
    assert [n for n, _ in manager.PIPELINES["O2"][1:]] == ["dce", "hoist", "fusion"]  # (memory: the cpu backend's)
    cleanups = [n for n, _ in manager.CLEANUPS.passes]
    assert {"constfold", "simplify", "cse"} == set(cleanups)
    g = parse(g1("  %1:f64[] = constant(value=array(1.0, f64))\n  %2:f64[12] = mul(%0, %1)\n"
                 "  %3:f64[12] = mul(%0, %1)\n  %4:f64[12] = add(%2, %3)\n  return %4"))
    out, stats = manager.run(g, "O1", verify=True)
    # one stat per pass run, round after round until a whole round changed nothing, then dce
    loop, last = stats[:-2], stats[-2]
    assert [s.name for s in loop] == (cleanups * 3)[:len(loop)] and last.name == "dce"
    assert stats[-1].name == "hoist" and not stats[-1].changed  # (no loops: nothing to hoist)
    assert [s.iteration for s in loop] == [k // len(cleanups) + 1 for k in range(len(loop))]
    assert not any(s.changed for s in loop[-len(cleanups):]) and loop[0].changed
    assert stats[0].nodes_before == 4 and stats[-1].nodes_after == len(out.nodes) == 1
    assert all(s.seconds >= 0 and s.note == "" for s in stats)


def test_the_cleanups_run_until_the_graph_stops_changing():
    """x.T.T @ y needs two rounds: simplify drops the transposes, the next round's CSE merges."""
    g = parse("graph f(%0:f64[3,3], %1:f64[3,3]):\n"
              "  %2:f64[3,3] = transpose(%0, perm=(1, 0))\n  %3:f64[3,3] = transpose(%2, perm=(1, 0))\n"
              "  %4:f64[3,3] = mul(%3, %1)\n  %5:f64[3,3] = mul(%0, %1)\n"
              "  %6:f64[3,3] = sub(%4, %5)\n  return %6")
    out, stats = manager.run(g, "O1", verify=True)
    assert ops(out) == ["mul", "sub"] and max(s.iteration for s in stats) >= 2
    again, _ = manager.run(out, "O1", verify=True)
    assert again == out  # a fixpoint: the cleanups leave their own result alone
    x, y = np.arange(9.0).reshape(3, 3), np.linspace(-1, 1, 9).reshape(3, 3)
    assert same(interpret(out, x, y)[0], interpret(g, x, y)[0])


def test_dead_uses_do_not_block_a_single_use_rewrite():
    """simplify counts live uses only, so DCE (run once, after the loop) enables nothing new."""
    g = parse("graph f(%0:f64[2,3], %1:f64[3,4]):\n  %2:f64[2,4] = matmul(%0, %1)\n"
              "  %3:f64[2,4] = exp(%2)\n  %4:f64[4,2] = transpose(%2, perm=(1, 0))\n  return %4")
    out, _ = manager.run(g, "O1", verify=True)
    assert ops(out) == ["matmul"] and out.nodes[0].attrs == {"transpose_a": True, "transpose_b": True}
    assert manager.run(out, "O1", verify=True)[0] == out
    x, y = np.arange(6.0).reshape(2, 3), np.linspace(-1, 1, 12).reshape(3, 4)
    assert same(interpret(out, x, y)[0], interpret(g, x, y)[0])


def test_a_fixpoint_that_never_settles_stops_at_its_bound(monkeypatch):
    def flip(graph):  # neg(x) -> abs(x) -> neg(x) ...: like two rules that undo each other
        text = str(graph)
        if "neg(" in text:
            return parse(text.replace("%1:f64[12] = neg(%0)", "%1:f64[12] = abs(%0)"))
        return parse(text.replace("%1:f64[12] = abs(%0)", "%1:f64[12] = neg(%0)"))

    loop = manager.Fixpoint("flipping", (("flip", flip),), max_rounds=5)
    monkeypatch.setitem(manager.PIPELINES, "Oflip", (loop,))
    g = parse(g1("  %1:f64[12] = neg(%0)\n  return %1"))
    with pytest.raises(RuntimeError, match="still changed graph 'f' after 5 rounds"):
        manager.run(g, "Oflip")  # the tests' setting: a bug to fix
    monkeypatch.setenv("GRAPHC_PASS_ERRORS", "warn")
    out, stats = manager.run(g, "Oflip", verify=True)  # users: the (correct) graph it has
    assert len(stats) == 5 and "after 5 rounds" in stats[-1].note and out.verify(infer_node)


def test_dump_writes_every_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    g = parse(g1("  %1:f64[12] = neg(%0)\n  %2:f64[12] = neg(%1)\n  return %2"))
    _, stats = manager.run(g, "O2")
    files = sorted(os.listdir(tmp_path))
    assert files[0] == "f.00.traced.txt" and files[-1].endswith(".fusion.txt")  # (the plan: the backend's)
    assert files[1:] == [f"f.{k:02d}.{s.name}.txt" for k, s in enumerate(stats, start=1)]
    assert parse(open(tmp_path / files[-1]).read()).verify(infer_node)


def _broken(graph):
    raise RuntimeError("cannot handle this")


def test_a_pass_that_raises_fails_under_tests_and_warns_users(monkeypatch):
    monkeypatch.setitem(manager.PIPELINES, "Obroken", (("broken", _broken), ("dce", dce.run)))
    g = parse(g1("  %1:f64[12] = neg(%0)\n  return %1"))
    assert os.environ["GRAPHC_PASS_ERRORS"] == "raise"  # tests/conftest.py
    with pytest.raises(RuntimeError, match="cannot handle this") as info:
        manager.run(g, "Obroken")
    assert "pass 'broken' on graph 'f'" in "".join(info.value.__notes__)
    monkeypatch.setenv("GRAPHC_PASS_ERRORS", "warn")  # what users get
    with pytest.warns(gc.PassWarning, match="pass 'broken' failed on graph 'f'.*cannot handle this"):
        out, stats = manager.run(g, "Obroken")
    assert out == g and "cannot handle this" in stats[0].note
    monkeypatch.setenv("GRAPHC_PASS_ERRORS", "sometimes")
    with pytest.raises(ValueError, match="GRAPHC_PASS_ERRORS='sometimes'; choose one of warn, raise"):
        manager.run(g, "Obroken")


def test_a_cleanup_that_raises_on_every_graph_is_caught_end_to_end(monkeypatch):
    """The bug the tests' setting exists for: a broken simplify must not pass silently."""
    def broken_rule(rw, node):
        raise RuntimeError("broken rule")

    monkeypatch.setattr(simplify, "_rule", broken_rule)  # every call of simplify.run raises

    def f(x):
        return np.tanh(x) * 1.0

    with pytest.raises(RuntimeError, match="broken rule"):
        gc.trace(f, passes="O1")(np.ones(3))
    monkeypatch.setenv("GRAPHC_PASS_ERRORS", "warn")
    with pytest.warns(gc.PassWarning, match="pass 'simplify'") as caught:
        traced = gc.trace(f, passes="O1")
        np.testing.assert_array_equal(traced(np.ones(3)), np.tanh(np.ones(3)))
    assert len([w for w in caught if issubclass(w.category, gc.PassWarning)]) == 1  # skipped after
    assert [s.note != "" for s in traced.stats] == [s.name == "simplify" for s in traced.stats]


def test_a_pass_that_breaks_the_graph_is_not_compiled(monkeypatch):
    def liar(graph):  # returns an ill-typed graph
        return parse(str(graph).replace("%1:f64[12] = neg", "%1:f32[12] = neg"))

    monkeypatch.setitem(manager.PIPELINES, "Oliar", (("liar", liar),))
    g = parse(g1("  %1:f64[12] = neg(%0)\n  return %1"))
    with pytest.raises(gc.VerifyError):
        manager.run(g, "Oliar", verify=False)
    monkeypatch.setenv("GRAPHC_PASS_ERRORS", "warn")
    with pytest.warns(gc.PassWarning, match="pipeline Oliar"):
        out, stats = manager.run(g, "Oliar", verify=False)
    assert out == g and "fell back" in stats[-1].note
    with pytest.warns(gc.PassWarning, match="pass 'liar'"):
        out, stats = manager.run(g, "Oliar", verify=True)  # checked after each pass: same outcome
    assert out == g and "VerifyError" in stats[0].note


def test_a_1000_node_chain_fuses_into_one_group():
    """(Its trace + passes time, 0.5 s target, is measured by benchmarks/trace_passes.py.)"""
    from graphc.runtime import is_dynamic
    from graphc.trace import trace_into_graph

    def big(x, w):
        y = x
        for k in range(200):
            y = np.tanh(y * w + 0.5) - 0.01 * y
        return np.sum(y)

    x, w = np.ones((16, 8), np.float32), np.ones(8, np.float32)
    builder, _ = trace_into_graph(big, (x, w), {}, is_dynamic)
    graph, stats = manager.run(builder.graph, "O2")
    assert len(builder.graph.nodes) >= 1000
    assert len(graph.nodes) <= 5
    assert not any(s.note for s in stats)  # no pass gave up on it


# -- every pass is a pure function Graph -> Graph -----------------------------------------
def _training_step():
    from graphc import nn, optim
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt, loss_fn = optim.Adam(model.parameters(), lr=0.05), nn.CrossEntropyLoss()

    def step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    return step, (np.ones((5, 4), np.float32), np.array([0, 2, 1, 1, 0]))


def _reductions_and_broadcasting(x, b):
    centered = x - np.mean(x, axis=1, keepdims=True)
    z = np.exp(centered) / np.sum(np.exp(centered), axis=1, keepdims=True)
    return np.max(z + b, axis=0), np.sum(x * 2.0 * 1.0) + 0.0, (x.T @ x).T, np.min(b[None, :] * x)


def _prints(x, s):
    total = np.sum(x)
    gc.print("sum {} scale {}", total, s)
    gc.print("sum {} scale {}", total, s)  # not merged
    gc.print("unused {}", s * 0 + 1.0)  # not removed
    return x * s


def _state_update():
    from graphc.state import State
    w, lr = State(np.linspace(-1, 1, 6).reshape(2, 3)), State(np.array(0.1))

    def step(x):
        wv = w.read()
        loss = np.sum(np.tanh(x @ wv) ** 2)
        w.write(wv - lr.read() * gc.gradient(loss, wv))
        return loss

    return step, (np.ones((4, 2)),)


def _graphs():
    train, train_args = _training_step()
    update, update_args = _state_update()
    x = np.linspace(-2, 2, 12).reshape(4, 3)
    return {"training step": raw_graph(train, *train_args),
            "reductions": raw_graph(_reductions_and_broadcasting, x, np.ones(3)),
            "prints": raw_graph(_prints, np.ones(3, np.float32), 0.5),
            "state": raw_graph(update, *update_args)}


def _snapshot(graph):
    """Everything a pass could edit in place: the text, each node's fields, each value's."""
    values = list(graph.inputs) + [v for n in graph.nodes for v in n.outputs]
    return (str(graph), list(graph.inputs), list(graph.nodes), list(graph.outputs),
            [(n.op, list(n.inputs), dict(n.attrs), list(n.outputs), n.loc) for n in graph.nodes],
            [(v.type, v.producer) for v in values])


def _objects(graph):
    values = list(graph.inputs) + list(graph.outputs)
    for n in graph.nodes:
        values += n.inputs + n.outputs
    return {id(o) for o in values + list(graph.nodes)}


# memory planning (still in the O2 pipeline) moves to the backend: not a graph pass
_PURE = [(n, fn) for n, fn in manager.CLEANUPS.passes] + [("dce", dce.run), ("fusion", fusion.run)]


def test_every_pass_is_pure():
    """No pass edits its input or shares a node or value with it: on the traced graph, the
    cleaned-up graph and the fused graph (each pass on each, not just the pipeline's order)."""
    for label, traced in _graphs().items():
        before = _snapshot(traced)
        optimized, _ = manager.run(traced, "O2", verify=True)
        assert _snapshot(traced) == before, f"the O2 pipeline edited the {label} graph"
        assert optimized.donations == traced.donations  # the manager keeps the graph's metadata
        assert bool(traced.donations) == (label in ("training step", "state")), label
        cleaned, _ = manager.run(traced, "O1", verify=True)
        assert manager.run(cleaned, "O1", verify=True)[0] == cleaned, f"O1 is no fixpoint on {label}"
        fused = fusion.run(cleaned).verify(infer_node)
        assert any(n.op == "fused" for n in fused.nodes), label
        for stage, graph in (("traced", traced), ("cleaned", cleaned), ("fused", fused)):
            for name, run in _PURE:
                before = _snapshot(graph)
                out = run(graph)
                assert _snapshot(graph) == before, f"{name} edited the {stage} {label} graph"
                shared = _objects(out) & _objects(graph)
                assert not shared, f"{name} shares {len(shared)} nodes/values with the {stage} {label} graph"
                out.verify(infer_node)


# -- constant folding --------------------------------------------------------------------
def test_constant_folding():
    h = check("graph f(%0:f64[3]):\n"
              "  %1:f64[3] = constant(value=array([1.0, 2.0, 4.0], f64))\n"
              "  %2:f64[3] = exp(%1)\n  %3:f64[3] = add(%0, %2)\n  return %3", pass_=constfold.run)
    assert ops(h) == ["constant", "add"]


def test_folding_keeps_a_uniform_result_scalar_and_never_grows_the_graph():
    h = check(g1("  %1:f64[] = constant(value=array(2.0, f64))\n"
                 "  %2:f64[12] = broadcast_to(%1, shape=(12,))\n"
                 "  %3:f64[12] = add(%0, %2)\n  return %3"), pass_=constfold.run)
    assert ops(h) == ["constant", "broadcast_to", "add"]  # the broadcast stays a broadcast
    text = ("graph f(%0:f64[2]):\n  %1:f64[2] = constant(value=array([3.0, 3.0], f64))\n"
            "  %2:f64[2] = neg(%1)\n  %3:f64[2] = add(%0, %2)\n  return %3")
    h = check(text, pass_=constfold.run)
    assert ops(h) == ["constant", "broadcast_to", "add"] and h.nodes[0].outputs[0].type.shape == ()


def test_folded_constants_in_any_memory_layout():
    """A folded transpose is a Fortran-ordered array: the uniformity checks must still read it."""
    for values, folded in (("[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]", ["constant", "add"]),
                           ("[[-0.0, -0.0, -0.0], [-0.0, -0.0, -0.0]]", [])):  # x + -0.0 is x
        text = ("graph f(%0:f64[3,2]):\n"
                f"  %1:f64[2,3] = constant(value=array({values}, f64))\n"
                "  %2:f64[3,2] = transpose(%1, perm=(1, 0))\n  %3:f64[3,2] = add(%0, %2)\n  return %3")
        out, _ = manager.run(parse(text), "O1", verify=True)
        assert ops(out) == folded
        x = np.resize(SPECIAL, (3, 2))
        assert same(interpret(out, x)[0], interpret(parse(text), x)[0])


# -- simplification rules ------------------------------------------------------------------
C = "  %1:f64[] = constant(value=array({v}, f64))\n"


@pytest.mark.parametrize("body, expect", [
    ("  %2:f64[12] = mul(%0, %1)\n  return %2", []),              # x * 1
    ("  %2:f64[12] = mul(%1, %0)\n  return %2", []),              # 1 * x
    ("  %2:f64[12] = div(%0, %1)\n  return %2", []),              # x / 1
])
def test_multiplicative_identity(body, expect):
    h = check(g1(C.format(v=1.0) + body))
    assert ops(h) == expect


def test_additive_identity_keeps_the_sign_of_zero():
    assert ops(check(g1(C.format(v=-0.0) + "  %2:f64[12] = add(%0, %1)\n  return %2"))) == []
    assert ops(check(g1(C.format(v=0.0) + "  %2:f64[12] = sub(%0, %1)\n  return %2"))) == []
    # -0.0 + 0.0 is +0.0: x + 0.0 must stay
    assert "add" in ops(check(g1(C.format(v=0.0) + "  %2:f64[12] = add(%0, %1)\n  return %2")))


def test_times_zero_and_x_minus_x_only_for_integers():
    assert "mul" in ops(check(g1(C.format(v=0.0) + "  %2:f64[12] = mul(%0, %1)\n  return %2")))
    assert "sub" in ops(check(g1("  %1:f64[12] = sub(%0, %0)\n  return %1")))
    ints = np.array([3, -7, 0, 2**40], np.int64)
    h = check("graph f(%0:i64[4]):\n  %1:i64[] = constant(value=array(0, i64))\n"
              "  %2:i64[4] = mul(%0, %1)\n  %3:i64[4] = sub(%0, %0)\n  %4:i64[4] = add(%2, %3)\n"
              "  return %4", ints)
    assert "mul" not in ops(h) and "sub" not in ops(h)


def test_negation_rules():
    assert ops(check(g1("  %1:f64[12] = neg(%0)\n  %2:f64[12] = neg(%1)\n  return %2"))) == []
    assert ops(check(g1(C.format(v=-1.0) + "  %2:f64[12] = mul(%0, %1)\n  return %2"))) == ["neg"]


def test_power_rules():
    assert ops(check(g1(C.format(v=1.0) + "  %2:f64[12] = pow(%0, %1)\n  return %2"))) == []
    assert ops(check(g1(C.format(v=2.0) + "  %2:f64[12] = pow(%0, %1)\n  return %2"))) == ["mul"]


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_an_outer_product_is_a_broadcast_multiply_with_blas_signed_zeros(dtype, ta, tb):
    """matmul over one term (a column times a row) becomes a * b + 0.0: exactly NumPy's matmul,
    whose sum starts at +0.0 (a -0.0 product is +0.0 there), on special values."""
    a = "[1,12]" if ta else "[12,1]"
    b = "[5,1]" if tb else "[1,5]"
    flags = "".join(f", {k}=True" for k, on in (("transpose_a", ta), ("transpose_b", tb)) if on)
    text = (f"graph f(%0:{dtype}{a}, %1:{dtype}{b}):\n"
            f"  %2:{dtype}[12,5] = matmul(%0, %1{flags})\n  return %2")
    x = SPECIAL.reshape((1, 12) if ta else (12, 1)).astype("float64" if dtype == "f64" else "float32")
    y = np.array([-0.0, 2.0, np.inf, -1e-300, 0.0]).reshape((5, 1) if tb else (1, 5)).astype(x.dtype)
    h = check(text, x, y)
    assert "matmul" not in ops(h) and "mul" in ops(h)
    # integers (no signed zeros) and real products keep their matmul
    assert ops(check("graph f(%0:i64[3,1], %1:i64[1,2]):\n  %2:i64[3,2] = matmul(%0, %1)\n  return %2",
                     np.array([[1], [-2], [3]]), np.array([[4, 5]]))) == ["matmul"]
    assert "matmul" in ops(check("graph f(%0:f64[3,2], %1:f64[2,2]):\n  %2:f64[3,2] = matmul(%0, %1)\n"
                                 "  return %2", exact=False))


def test_exp_of_log_is_guarded():
    # exact up to rounding: exp(log x) rounds twice, x not at all
    h = check(g1("  %1:f64[12] = log(%0)\n  %2:f64[12] = exp(%1)\n  return %2"), exact=False)
    assert "log" not in ops(h) and "exp" not in ops(h) and "where" in ops(h)
    h = check(g1("  %1:f64[12] = abs(%0)\n  %2:f64[12] = log(%1)\n  %3:f64[12] = exp(%2)\n  return %3"),
              exact=False)
    assert ops(h) == ["abs"]


def test_log_of_exp_only_where_exp_stays_normal():
    h = check(g1("  %1:f64[12] = tanh(%0)\n  %2:f64[12] = exp(%1)\n  %3:f64[12] = log(%2)\n  return %3"),
              exact=False)
    assert ops(h) == ["tanh", "constant", "add"]  # tanh(x) + 0.0: log(exp(-0.0)) is +0.0
    h = check(g1("  %1:f64[12] = exp(%0)\n  %2:f64[12] = log(%1)\n  return %2"))
    assert ops(h) == ["exp", "log"]  # log(exp(800)) is inf, not 800


def test_shape_op_chains():
    h = check("graph f(%0:f64[2,3,2]):\n  %1:f64[3,2,2] = transpose(%0, perm=(1, 0, 2))\n"
              "  %2:f64[2,3,2] = transpose(%1, perm=(1, 0, 2))\n  return %2", np.arange(12.0).reshape(2, 3, 2))
    assert ops(h) == []
    h = check("graph f(%0:f64[2,3,2]):\n  %1:f64[3,2,2] = transpose(%0, perm=(1, 0, 2))\n"
              "  %2:f64[2,2,3] = transpose(%1, perm=(1, 2, 0))\n  return %2", np.arange(12.0).reshape(2, 3, 2))
    assert ops(h) == ["transpose"]
    h = check("graph f(%0:f64[12]):\n  %1:f64[3,4] = reshape(%0, shape=(3, 4))\n"
              "  %2:f64[2,6] = reshape(%1, shape=(2, 6))\n  return %2")
    assert ops(h) == ["reshape"]
    h = check("graph f(%0:f64[12]):\n  %1:f64[3,4] = reshape(%0, shape=(3, 4))\n"
              "  %2:f64[12] = reshape(%1, shape=(12,))\n  return %2")
    assert ops(h) == []


def test_elementwise_of_broadcast_scalars_is_computed_once():
    h = check("graph f(%0:f64[]):\n  %1:f64[5] = broadcast_to(%0, shape=(5,))\n"
              "  %2:f64[5] = exp(%1)\n  %3:f64[5] = mul(%2, %1)\n  return %3", np.asarray(0.5))
    assert ops(h)[-1] == "broadcast_to" and all(n.outputs[0].type.shape == () for n in h.nodes[:-1])


def test_uniform_constants_become_broadcasts():
    h = check("graph f(%0:f32[4]):\n  %1:f32[4] = constant(value=array([-1.0, -1.0, -1.0, -1.0], f32))\n"
              "  %2:f32[4] = mul(%0, %1)\n  return %2", SPECIAL[:4].astype(np.float32))
    assert ops(h) == ["neg"]


def test_reductions_of_broadcast_scalars():
    for op in ("sum", "mean", "max", "min"):
        h = check(f"graph f(%0:f64[]):\n  %1:f64[3,4] = broadcast_to(%0, shape=(3, 4))\n"
                  f"  %2:f64[] = {op}(%1, axes=(0, 1), keepdims=False)\n  return %2", np.asarray(1.25))
        assert op not in ops(h)


def test_reshape_of_a_keepdims_reduction():
    h = check("graph f(%0:f64[12]):\n  %1:f64[1] = sum(%0, axes=(0,), keepdims=True)\n"
              "  %2:f64[] = reshape(%1, shape=())\n  return %2")
    assert ops(h) == ["sum"] and h.nodes[0].attrs["keepdims"] is False


def test_cse_and_dce():
    g = parse(g1("  %1:f64[12] = exp(%0)\n  %2:f64[12] = exp(%0)\n  %3:f64[12] = log(%0)\n"
                 "  %4:f64[12] = add(%1, %2)\n  return %4"))
    h = dce.run(cse.run(g)).verify(infer_node)
    assert ops(h) == ["exp", "add"]


def test_gradient_graphs_come_out_clean():
    """The seed and broadcast constants autodiff leaves behind are folded away."""
    def loss(x, w):
        return np.sum(np.tanh(x * w) - 0.5 * x ** 2)

    f = gc.value_and_grad(loss, argnums=(0, 1), passes="O1")
    x, w = np.linspace(-2, 2, 50), np.float64(0.7)
    value, (gx, gw) = f(x, w)
    assert np.isclose(value, np.sum(np.tanh(x * w) - 0.5 * x ** 2))
    t = np.tanh(x * w)
    assert np.allclose(gx, (1 - t * t) * w - x) and np.isclose(gw, np.sum((1 - t * t) * x))
    assert all(n.outputs[0].type.size <= 1 for n in f.graph.nodes if n.op == "constant")
    assert "pow" not in ops(f.graph)


def test_a_pass_module_imports_on_its_own():
    """`import graphc.passes.fusion` before graphc must not hit the graphc -> passes.manager cycle."""
    import subprocess
    import sys
    for module in ("graphc.passes.fusion", "graphc.passes.manager", "graphc.passes.simplify"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_a_users_passes_module_cannot_shadow_graphcs(tmp_path):
    """graphc imports its passes as graphc.passes: a user's own passes.py is never imported."""
    import subprocess
    import sys
    (tmp_path / "passes.py").write_text("raise RuntimeError('the user module was imported')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # graphc, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), root]))}
    done = subprocess.run([sys.executable, "-c", "import graphc, numpy as np; print(graphc.trace(np.tanh)(np.ones(2)))"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr


# -- loop-invariant code motion (passes/hoist.py) -------------------------------------------
def _loop_graph(body_line):
    """A fori_loop whose body reads the carry %1 and the consts %2 (an array) and %3 (a scalar)."""
    return parse("graph f(%0:f64[3,4], %1:f64[4,4], %2:f64[]):\n"
                 "  %3:f64[3,4] = fori_loop(%0, %1, %2, carries=1, start=0, stop=5) {\n"
                 "    graph body(%0:i64[], %1:f64[3,4], %2:f64[4,4], %3:f64[]):\n"
                 f"{body_line}"
                 "  }\n  return %3")


def test_hoist_moves_invariant_nodes_out_of_the_loop_and_keeps_the_result():
    g = _loop_graph("      %4:f64[4,4] = transpose(%2, perm=(1, 0))\n"
                    "      %5:f64[] = mul(%3, %3)\n"
                    "      %6:f64[3,4] = matmul(%1, %4)\n"
                    "      %7:f64[3,4] = mul(%6, %5)\n"
                    "      return %7\n")
    out = hoist.run(g)
    out.verify(infer_node)
    assert ops(out) == ["transpose", "mul", "fori_loop"]
    body = out.nodes[-1].regions[0]
    assert ops(body) == ["matmul", "mul"]  # (and the now unread consts %2, %3 are dropped)
    assert len(out.nodes[-1].inputs) == 3 and len(body.inputs) == 4
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) * 0.3, np.float64(0.9))
    for a, b in zip(interpret(out, *args), interpret(g, *args)):
        same(a, b)


def test_hoist_makes_a_transposed_const_once_before_the_loop():
    """g @ w.T in a body (a backward step) reads a transposed copy of w made before the loop: BLAS
    multiplies by a transposed right operand slower, every step. (Only where the loop's rows in
    all, steps times rows of the product, repay the copy: 30 steps of 3 rows, not 5.)"""
    short = _loop_graph("      %4:f64[3,4] = matmul(%1, %2, transpose_b=True)\n"
                        "      %5:f64[3,4] = tanh(%4)\n"
                        "      return %5\n")
    assert ops(hoist.run(short)) == ["fori_loop"]
    g = parse(str(short).replace("stop=5", "stop=30")).verify(infer_node)
    out = hoist.run(g)
    out.verify(infer_node)
    assert ops(out) == ["transpose", "fori_loop"]
    (matmul,) = [n for n in out.nodes[-1].regions[0].nodes if n.op == "matmul"]
    assert "transpose_b" not in matmul.attrs
    rng = np.random.default_rng(1)
    args = (rng.standard_normal((3, 4)), rng.standard_normal((4, 4)) * 0.3, np.float64(0.9))
    for a, b in zip(interpret(out, *args), interpret(g, *args)):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    # the transposed const of a product that has a transposed left operand too, or of a while_loop
    w = parse("graph f(%0:f64[4,4], %1:f64[4,4]):\n"
              "  %2:f64[4,4] = while_loop(%0, %1, carries=1) {\n"
              "    graph cond(%0:f64[4,4], %1:f64[4,4]):\n"
              "      %2:f64[] = sum(%0, axes=(0, 1), keepdims=False)\n"
              "      %3:f64[] = constant(value=array(100.0, f64))\n"
              "      %4:bool[] = lt(%2, %3)\n"
              "      return %4\n"
              "    graph body(%0:f64[4,4], %1:f64[4,4]):\n"
              "      %2:f64[4,4] = matmul(%0, %1, transpose_a=True, transpose_b=True)\n"
              "      %3:f64[4,4] = add(%2, %0)\n"
              "      return %3\n"
              "  }\n  return %2").verify(infer_node)
    out = hoist.run(w).verify(infer_node)
    assert ops(out) == ["transpose", "while_loop"]
    (matmul,) = [n for n in out.nodes[-1].regions[1].nodes if n.op == "matmul"]
    assert matmul.attrs == {"transpose_a": True}
    args = (np.full((4, 4), 0.5) + np.eye(4), rng.standard_normal((4, 4)) * 0.1 + np.eye(4))
    np.testing.assert_allclose(interpret(out, *args)[0], interpret(w, *args)[0], rtol=1e-13)


def test_hoist_leaves_what_could_raise_print_or_grow():
    g = _loop_graph("      %4:f64[3,4] = broadcast_to(%3, shape=(3, 4))\n"   # would become a whole array
                    "      %5:f64[3,4] = add(%1, %4)\n"
                    "      %6:i64[] = cast(%3, dtype='int64')\n"
                    "      %7:f64[4] = gather(%2, %6, axis=0)\n"             # an index: may raise
                    "      %8:f64[3,4] = add(%5, %7)\n"
                    "      return %8\n")
    out = hoist.run(g)
    out.verify(infer_node)
    assert "broadcast_to" in ops(out.nodes[-1].regions[0]) and "gather" in ops(out.nodes[-1].regions[0])
    assert ops(out) == ["cast", "fori_loop"]
