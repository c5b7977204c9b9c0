"""Differential testing: random programs, every pipeline and every pass against the interpreter.

A hypothesis strategy draws small NumPy programs (elementwise math, broadcasting,
reductions, matmul, reshapes, transposes) over inputs ``x[3,4]``, ``y[4]``, ``s[]``.
Each program is traced with its gradient (``value_and_grad``), so the graphs
hold forward and backward nodes together. Checks:

* each pass alone, and each pipeline, preserves what the interpreter computes
  (cheap: no compilation; a few hundred examples in CI);
* compiled O0 == O1 == O2 == the interpreter, values and gradients (each
  distinct graph costs a Numba compile, so CI runs a handful; ``-m slow`` many).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.ops.registry import infer_node
from graphc.interpret import interpret
from graphc.runtime import is_dynamic
from graphc.trace import trace_into_graph
from graphc.backend import plan
from graphc.passes import constfold, cse, dce, fusion, manager, simplify

SHAPES = [(3, 4), (4,), ()]
UNARY = ["exp", "tanh", "sin", "cos", "neg", "abs", "sigmoid", "logabs", "square", "relu", "sqrtabs"]
BINARY = ["add", "sub", "mul", "div", "maximum", "where", "pow"]
REDUCE = ["sum", "mean", "max", "min", "prod"]

CI_EXAMPLES = int(os.environ.get("GRAPHC_DIFF_EXAMPLES", 150))
CI_COMPILED = int(os.environ.get("GRAPHC_DIFF_COMPILED", 4))


def _broadcastable(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


@st.composite
def programs(draw):
    shapes = list(SHAPES)
    steps = []
    for _ in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce", "matmul",
                                     "reshape", "transpose", "broadcast"]))
        i = draw(st.integers(0, len(shapes) - 1))
        si = shapes[i]
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(UNARY)), i))
            shapes.append(si)
        elif kind == "binary":
            js = [j for j, sj in enumerate(shapes) if _broadcastable(si, sj)]
            j = draw(st.sampled_from(js))
            steps.append(("binary", draw(st.sampled_from(BINARY)), i, j))
            shapes.append(tuple(np.broadcast_shapes(si, shapes[j])))
        elif kind == "reduce" and si:
            axis = draw(st.sampled_from([None] + list(range(len(si)))))
            keep = draw(st.booleans())
            steps.append(("reduce", draw(st.sampled_from(REDUCE)), i, axis, keep))
            shapes.append(np.sum(np.zeros(si), axis=axis, keepdims=keep).shape)
        elif kind == "matmul" and len(si) >= 1:
            js = [j for j, sj in enumerate(shapes) if sj and sj[0] == si[-1] and len(sj) <= 2
                  and not (len(si) == 1 and len(sj) == 1)]
            if not js:
                continue
            j = draw(st.sampled_from(js))
            steps.append(("matmul", "matmul", i, j))
            shapes.append(np.matmul(np.zeros(si), np.zeros(shapes[j])).shape)
        elif kind == "reshape" and si:
            size = int(np.prod(si))
            options = [(size,)] + ([(size // 2, 2)] if size % 2 == 0 else []) + [(1, size)]
            new = draw(st.sampled_from(options))
            steps.append(("reshape", "reshape", i, new))
            shapes.append(new)
        elif kind == "transpose" and len(si) == 2:
            steps.append(("transpose", "transpose", i))
            shapes.append(si[::-1])
        elif kind == "broadcast" and len(si) <= 1:
            target = (3,) + si if si else (3, 4)
            steps.append(("broadcast", "broadcast_to", i, target))
            shapes.append(target)
    dtype = draw(st.sampled_from(["float64", "float64", "float32"]))
    return steps, dtype


def run_program(steps, x, y, s):
    """Run a drawn program on arrays or tracers alike; returns (scalar loss, last value)."""
    vals = [x, y, s]
    for step in steps:
        kind, op, i = step[:3]
        v = vals[i]
        if kind == "unary":
            out = {"exp": lambda a: np.exp(a * 0.5), "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
                   "neg": np.negative, "abs": np.abs, "sigmoid": gc.sigmoid,
                   "logabs": lambda a: np.log(np.abs(a) + 0.5), "square": lambda a: a * a,
                   "relu": lambda a: np.maximum(a, 0.0), "sqrtabs": lambda a: np.sqrt(np.abs(a) + 0.1),
                   }[op](v)
        elif kind == "binary":
            w = vals[step[3]]
            out = {"add": np.add, "sub": np.subtract, "mul": np.multiply,
                   "div": lambda a, b: a / (np.abs(b) + 0.5), "maximum": np.maximum,
                   "where": lambda a, b: np.where(a > b, a, b * 0.5),
                   "pow": lambda a, b: (np.abs(a) + 0.5) ** np.tanh(b)}[op](v, w)
        elif kind == "reduce":
            fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min,
                  "prod": lambda a, axis, keepdims: np.prod(np.tanh(a) * 0.5 + 1.0, axis=axis, keepdims=keepdims)}[op]
            out = fn(v, axis=step[3], keepdims=step[4])
        elif kind == "matmul":
            out = v @ vals[step[3]]
        elif kind == "reshape":
            out = np.reshape(v, step[3])
        elif kind == "transpose":
            out = v.T
        else:
            out = np.broadcast_to(v, step[3])
        vals.append(out)
    loss = np.sum(vals[-1]) + 0.25 * np.sum(vals[0] * vals[0])
    if len(vals) > 4:
        loss = loss + 0.5 * np.mean(vals[-2])
    return loss, vals[-1]


def inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype),
            np.asarray(rng.standard_normal(), dtype)[()])


def traced_graph(steps, dtype):
    def fn(x, y, s):
        (loss, last), grads = gc.value_and_grad(lambda a, b, c: run_program(steps, a, b, c),
                                                argnums=(0, 1, 2), has_aux=True).fn(x, y, s)
        return loss, last, grads

    args = inputs(dtype)
    builder, _ = trace_into_graph(fn, args, {}, is_dynamic)
    return builder.graph, args


def tolerance(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)


def assert_close(got, want, dtype, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(want), want, 0)), initial=0)))
    tol = tolerance(dtype)
    ok = np.isclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale, equal_nan=True)
    assert ok.all(), f"{what}: {got} != {want}"


PASSES = [("constfold", constfold.run), ("simplify", simplify.run), ("cse", cse.run),
          ("dce", dce.run), ("fusion", fusion.run)]


def check_passes(steps, dtype):
    graph, args = traced_graph(steps, dtype)
    graph.verify(infer_node)
    want = interpret(graph, *args)
    for name, run in PASSES:  # each pass alone
        got = interpret(run(graph).verify(infer_node), *args)
        for k, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, dtype, f"{name}, output {k}")
    for pipeline in ("O1", "O2"):
        g, stats = manager.run(graph, pipeline, verify=True)
        assert not any(s.note for s in stats), [s.note for s in stats]
        if pipeline == "O2":
            plan.verify_plan(g, plan.plan(g))
        for k, (a, b) in enumerate(zip(interpret(g, *args), want)):
            assert_close(a, b, dtype, f"{pipeline}, output {k}")


def check_compiled(steps, dtype):
    graph, args = traced_graph(steps, dtype)
    want = interpret(graph, *args)

    def fn(x, y, s):
        return gc.value_and_grad(lambda a, b, c: run_program(steps, a, b, c), argnums=(0, 1, 2),
                                 has_aux=True).fn(x, y, s)

    for pipeline in ("O0", "O1", "O2"):
        (loss, last), grads = gc.trace(fn, passes=pipeline)(*args)
        for k, (a, b) in enumerate(zip([loss, last, *grads], want)):
            assert_close(a, b, dtype, f"compiled {pipeline}, output {k}")


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=CI_EXAMPLES, **_SETTINGS)
@given(programs())
def test_every_pass_preserves_semantics(program):
    check_passes(*program)


@settings(max_examples=CI_COMPILED, **_SETTINGS)
@given(programs())
def test_compiled_pipelines_agree_with_the_interpreter(program):
    check_compiled(*program)


def test_a_fixed_program_compiles_under_every_pipeline():
    steps = [("binary", "mul", 0, 1), ("unary", "tanh", 3), ("reduce", "sum", 4, 0, False),
             ("binary", "add", 5, 1), ("matmul", "matmul", 0, 1), ("unary", "sigmoid", 7),
             ("binary", "pow", 8, 2), ("reduce", "max", 4, 1, True)]
    check_passes(steps, "float64")
    check_compiled(steps, "float32")


@pytest.mark.slow
@settings(max_examples=3000, **_SETTINGS)
@given(programs())
def test_every_pass_preserves_semantics_many(program):
    check_passes(*program)


@pytest.mark.slow
@settings(max_examples=150, **_SETTINGS)
@given(programs())
def test_compiled_pipelines_agree_many(program):
    check_compiled(*program)
