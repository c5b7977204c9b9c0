"""Tracing: operators, methods, NumPy protocols, pytrees, weak scalars, static args,
retracing, composition, the eager form and source locations.

Most checks look at graphs (cheap); a few compile, reusing shapes where they can.
"""
from __future__ import annotations

import collections
import os

import numpy as np
import pytest

import graphc as gc
from graphc.trace import Tracer
from conftest import assert_same, check, check_interp, raw_graph

R = np.random.default_rng(3)
X = R.standard_normal((3, 4)).astype(np.float32)
Y = R.standard_normal((4,)).astype(np.float32)
W = R.standard_normal((4, 2)).astype(np.float32)
THIS_FILE = os.path.basename(__file__)


def ops_of(fn, *args):
    return [n.op for n in raw_graph(fn, *args).nodes]


# -- operators -----------------------------------------------------------------------
def test_python_operators_and_reflected_ones():
    def f(x, y):
        return (x + y, y + x, 1.0 + x, x - 2.0, 2.0 - x, x * y, 3.0 * x, x / y, 1.0 / x, x ** 2.0,
                2.0 ** x, -x, +x, abs(x), x @ W, y @ W, x > y, 1.0 < x, x == 0.5, x != y, x <= 0.0, 0.0 >= x,
                (x > 0) & (y > 0), (x > 0) | (y > 0), ~(x > 0), (x > 0) ^ (y > 0), True & (x > 0))

    check_interp(f, np.abs(X) + 0.5, np.abs(Y) + 0.5)  # the ops themselves are compiled in test_ops


def test_reflected_operators_with_numpy_arrays_on_the_left():
    """ndarray (op) Tracer goes to the tracer (ufunc protocol / __array_priority__)."""
    const = np.linspace(1, 2, 4).astype(np.float32)

    def f(x):
        return const + x, const - x, const * x, const / x, const ** x, const > x, np.ones((2, 3), np.float32) @ x

    g = raw_graph(f, X)
    assert [n.op for n in g.nodes if n.op != "constant"][:6] == ["add", "sub", "mul", "div", "pow", "gt"]
    check(f, X)


def test_floordiv_and_mod_trace_and_bitwise_and_of_floats_is_a_clear_error():
    g = raw_graph(lambda x: (x // 2, 2 % x, divmod(x, 3)), X)
    assert [n.op for n in g.nodes if n.op != "constant"] == ["floordiv", "mod", "floordiv", "mod"]
    with pytest.raises(gc.TraceError, match="&"):
        raw_graph(lambda x: x & x, X)


# -- attributes and methods -----------------------------------------------------------
def test_static_attributes():
    seen = {}

    def f(x):
        seen.update(shape=x.shape, ndim=x.ndim, dtype=x.dtype, size=x.size, len=len(x), T=x.T.shape)
        return x

    raw_graph(f, np.zeros((2, 3, 4), np.int32))
    assert seen == dict(shape=(2, 3, 4), ndim=3, dtype=np.dtype("int32"), size=24, len=2, T=(4, 3, 2))


def test_methods():
    def f(x):
        return (x.sum(), x.sum(axis=0), x.sum(1, keepdims=True), x.mean(-1), x.max(0), x.min(), x.prod(axis=1),
                x.argmax(), x.argmin(axis=1), x.reshape(4, 3), x.reshape((2, -1)), x.T, x.transpose(),
                x.astype(np.float64), x.clip(-0.5, 0.5), x.ravel(), x.flatten(), x[None].squeeze(0), x.copy(),
                x.swapaxes(0, 1), x.dot(W), x.take([0, 2], axis=0), x.mT)

    check_interp(f, X, ref=lambda x: (x.sum(), x.sum(axis=0), x.sum(1, keepdims=True), x.mean(-1), x.max(0), x.min(),
                                x.prod(axis=1), x.argmax(), x.argmin(axis=1), x.reshape(4, 3), x.reshape((2, -1)),
                                x.T, x.transpose(), x.astype(np.float64), x.clip(-0.5, 0.5), x.ravel(),
                                x.flatten(), x[None].squeeze(0), x.copy(), x.swapaxes(0, 1), x.dot(W),
                                x.take([0, 2], axis=0), x.mT),
          tol=dict(atol=1e-5))


def test_numpy_calls_go_through_the_protocols():
    """np.* ufuncs use __array_ufunc__, other functions __array_function__."""
    def f(x):
        return (np.add(x, 1), np.exp(x), np.tanh(x), np.maximum(x, 0), np.sum(x, axis=1), np.mean(x),
                np.where(x > 0, x, 0), np.reshape(x, (12,)), np.transpose(x), np.concatenate([x, x]),
                np.matmul(x, W), np.dot(x, W), np.clip(x, 0, 1), np.argmax(x), np.expand_dims(x, 0),
                np.squeeze(x[None]), np.stack([x, x]), np.take(x, [1], axis=1), np.zeros_like(x),
                np.broadcast_to(Y, (3, 4)) + x, np.amax(x), np.square(x), np.true_divide(x, 2), np.abs(x))

    ops = set(ops_of(f, X))
    assert {"add", "exp", "tanh", "maximum", "sum", "mean", "where", "reshape", "transpose", "concatenate",
            "matmul", "clip", "argmax", "gather", "max", "mul", "div", "abs"} <= ops
    check_interp(f, X, tol=dict(atol=1e-5))


def test_ufunc_methods_and_out_are_rejected():
    with pytest.raises(gc.TraceError, match="np.add.reduce"):
        raw_graph(lambda x: np.add.reduce(x), X)
    with pytest.raises(gc.TraceError, match="np.add"):
        raw_graph(lambda x: np.add(x, 1, out=np.empty_like(X)), X)
    with pytest.raises(gc.TraceError, match="np.copysign"):  # (a ufunc graphc does not have)
        raw_graph(lambda x: np.copysign(x, x), X)


# -- pytrees -----------------------------------------------------------------------------
Pair = collections.namedtuple("Pair", "a b")


def test_pytree_inputs_and_outputs():
    def f(params, xs, cfg):
        h = xs[0] @ params["w"] + params["b"]
        return {"out": h, "parts": [h.sum(), (xs[1] * 2.0, cfg["scale"] * h)], "pair": Pair(h.max(), None),
                "name": cfg["name"]}

    params = {"w": W, "b": np.ones(2, np.float32)}
    xs = [X, (Y,)[0]]
    cfg = {"scale": 0.5, "name": "hello"}
    traced = gc.trace(f)
    out = traced(params, xs, cfg)
    want = f(params, xs, cfg)
    assert set(out) == {"out", "parts", "pair", "name"}
    assert isinstance(out["parts"], list) and isinstance(out["parts"][1], tuple)
    assert isinstance(out["pair"], Pair) and out["pair"].b is None
    assert out["name"] == "hello"
    assert_same(out["out"], want["out"], "out", tol=dict(atol=1e-5))
    assert_same(out["parts"][0], want["parts"][0], "sum", tol=dict(atol=1e-5))
    assert_same(out["parts"][1][0], want["parts"][1][0], "xs[1]*2")
    assert_same(out["parts"][1][1], want["parts"][1][1], "scale*h", tol=dict(atol=1e-5))
    assert_same(out["pair"].a, want["pair"].a, "max", tol=dict(atol=1e-5))
    # the scalar in cfg is a traced (weak) input: a new value does not retrace
    out2 = traced(params, xs, {"scale": 2.0, "name": "hello"})
    assert traced.signatures == 1
    assert_same(out2["parts"][1][1], 2.0 * want["out"], "scale=2", tol=dict(atol=1e-5))
    # a different structure or static leaf does retrace
    traced(params, xs, {"scale": 2.0, "name": "other"})
    assert traced.signatures == 2


def test_pytree_of_tuples_in_and_out():
    traced = gc.trace(lambda t: (t[1], (t[0] + 1, [t[0] * t[1]])))
    a, b = np.float64(2.5), np.arange(3.0)
    out = traced((a, b))
    assert isinstance(out, tuple) and isinstance(out[1][1], list)
    assert_same(out[0], b, "t[1]")
    assert_same(out[1][0], np.float64(3.5), "t[0]+1")
    assert_same(out[1][1][0], a * b, "t0*t1")


# -- Python scalars: traced, weakly typed -----------------------------------------------
def test_python_scalars_are_weak_traced_inputs():
    traced = gc.trace(lambda x, s, n: x * s + n)
    out = traced(X, 2.5, 3)
    assert out.dtype == np.float32
    assert_same(out, X * 2.5 + 3, "x*s+n")
    assert [str(v.type) for v in traced.graph.inputs] == ["f32[3,4]", "f64[]", "i64[]"]
    out = traced(X, -1.0, 7)
    assert traced.signatures == 1  # new values, same signature
    assert_same(out, X * -1.0 + 7, "new scalar values")
    traced(X, 2, 3)  # int where a float was: a new signature
    assert traced.signatures == 2


def test_numpy_scalars_are_strong():
    g = raw_graph(lambda x, s: x * s, X, np.float64(2.0))
    assert g.outputs[0].type.dtype == "float64"
    g = raw_graph(lambda x, s: x * s, X, 2.0)
    assert g.outputs[0].type.dtype == "float32"
    g = raw_graph(lambda i, s: i * s, np.arange(3, dtype=np.int32), 2.0)
    assert g.outputs[0].type.dtype == "float64"  # int32 array * Python float -> float64 (NumPy 2)
    g = raw_graph(lambda s, t: s * t, 2.0, 3)  # weak * weak stays weak: float64
    assert g.outputs[0].type.dtype == "float64"
    g = raw_graph(lambda x, s, t: x * (s * t), X, 2.0, 3)  # a weak result does not upcast either
    assert g.outputs[0].type.dtype == "float32"


def test_python_bool_is_static():
    traced = gc.trace(lambda x, flag: x * 2 if flag else -x)
    assert_same(traced(X, True), X * 2, "flag")
    assert_same(traced(X, False), -X, "not flag")
    assert traced.signatures == 2
    assert len(traced.graph.inputs) == 1


# -- static arguments ---------------------------------------------------------------------
def test_static_args_are_part_of_the_signature():
    calls = []

    @gc.trace
    def f(x, mode, extra=None):
        calls.append(mode)
        if mode == "double":
            return x * 2.0
        return x + (0.0 if extra is None else 1.0)

    assert_same(f(X, "double"), X * 2, "double")
    assert_same(f(X, "double"), X * 2, "double again")
    assert calls == ["double"]
    assert_same(f(X, "plus"), X, "plus")
    assert_same(f(X, "plus", extra=None), X, "plus None")
    assert_same(f(X, "plus", extra="yes"), X + 1, "plus extra")
    assert f.signatures == 4
    assert calls == ["double", "plus", "plus", "plus"]


def test_static_argnums():
    calls = []

    @gc.trace(static_argnums=(1,))
    def f(x, n):
        calls.append(n)
        for _ in range(n):  # n is a Python int here, so the loop unrolls
            x = x * 2.0
        return x

    assert_same(f(Y, 3), Y * 8, "n=3")
    assert_same(f(Y, 3), Y * 8, "n=3 again")
    assert_same(f(Y, 1), Y * 2, "n=1")
    assert calls == [3, 1]
    assert f.signatures == 2
    assert len(f.graph.inputs) == 1

    g = gc.trace(lambda x, axis: np.sum(x, axis=axis), static_argnums=1)
    assert_same(g(X, 0), X.sum(0), "axis=0")
    assert_same(g(X, 1), X.sum(1), "axis=1")
    assert g.signatures == 2


def test_static_array_argument_via_static_argnums_must_be_hashable():
    f = gc.trace(lambda x, v: x, static_argnums=(1,))
    with pytest.raises(TypeError, match="hashable"):
        f(X, [1, 2])


def test_static_callable_argument():
    f = gc.trace(lambda x, act: act(x))
    assert_same(f(X, np.tanh), np.tanh(X), "tanh")
    assert_same(f(X, gc.relu), np.maximum(X, 0), "relu")
    assert f.signatures == 2


# -- retracing ---------------------------------------------------------------------------
def test_retrace_on_new_shapes_and_dtypes():
    f = gc.trace(lambda x: np.exp(x).sum(axis=0))
    f(X)
    f(X + 1)
    assert f.signatures == 1
    f(np.ones((2, 4), np.float32))
    assert f.signatures == 2
    out = f(X.astype(np.float64))
    assert f.signatures == 3 and out.dtype == np.float64
    f(X)  # back to the first signature: cached
    assert f.signatures == 3
    assert str(f.graph).startswith("graph lambda_(%0:f32[3,4] x)")


def test_noncontiguous_inputs_are_accepted():
    f = gc.trace(lambda x: x * 2.0)
    big = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert_same(f(big[:, ::2][:3]), big[:, ::2][:3] * 2, "strided")
    assert_same(f(np.asfortranarray(big[:3, :3])), big[:3, :3] * 2, "fortran")
    assert f.signatures == 1


# -- composition ------------------------------------------------------------------------
def test_traced_function_inside_another_is_inlined():
    @gc.trace
    def inner(x):
        return np.tanh(x) * 2.0

    @gc.trace
    def outer(x, w):
        return inner(x @ w) + inner(x).sum()

    out = outer(X, W)
    want = np.tanh(X @ W) * 2.0 + (np.tanh(X) * 2.0).sum()
    assert_same(out, want, "outer", tol=dict(atol=1e-5))
    ops = [n.op for n in raw_graph(outer, X, W).nodes]
    assert ops.count("tanh") == 2 and "matmul" in ops  # inlined, not a call
    assert inner.signatures == 0  # inner never compiled on its own
    assert_same(inner(X), np.tanh(X) * 2, "inner alone")
    assert inner.signatures == 1


def test_nested_static_argnums_inline():
    inner = gc.trace(lambda x, k: x * k, static_argnums=(1,))
    g = raw_graph(lambda x: inner(x, 3) + inner(x, 4), X)
    assert [n.op for n in g.nodes].count("mul") == 2


# -- eager form ---------------------------------------------------------------------------
def test_eager_trace_with_example_args():
    def plain(x, w, b):
        return np.sum(np.tanh(x @ w + b) * (1 / (1 + np.exp(-x @ w))), axis=1)

    b = np.ones(2, np.float32)
    f = gc.trace(plain, X, W, b)
    assert f.signatures == 1
    assert "matmul" in str(f.graph) and "@njit" in f.source
    out = f(X, W, b)
    assert f.signatures == 1
    assert_same(out, plain(X, W, b), "eager", tol=dict(atol=1e-5))
    assert out.dtype == np.float32


def test_lower_and_kwargs():
    f = gc.trace(lambda x, *, scale: x * scale)
    f.lower(X, scale=3.0)
    assert f.signatures == 1
    assert_same(f(X, scale=2.0), X * 2, "kw")
    assert f.signatures == 1


def test_graph_before_first_call_is_a_clear_error():
    f = gc.trace(lambda x: x)
    with pytest.raises(RuntimeError, match="not been traced"):
        f.graph
    assert "0 compiled graph" in repr(f)


def test_function_metadata_is_kept():
    def my_function(x):
        """Doc."""
        return x

    f = gc.trace(my_function)
    assert f.__name__ == "my_function" and f.__doc__ == "Doc."
    assert isinstance(f, gc.TracedFunction)


# -- source locations ---------------------------------------------------------------------
def test_graph_shows_the_users_file_and_line():
    def f(x):
        y = np.tanh(x)          # line A
        return y @ W             # line B

    line_a = f.__code__.co_firstlineno + 1
    for passes in ("O0", "O2"):
        traced = gc.trace(f, passes=passes)
        traced(X)
        text = str(traced.graph)
        if passes == "O0":
            assert f"tanh(%0)   # {THIS_FILE}:{line_a}" in text
        assert f"# {THIS_FILE}:{line_a + 1}" in text
        for node in traced.graph.nodes:  # passes keep locations; never a graphc or numpy file
            assert node.loc.startswith(THIS_FILE + ":"), node


def test_locations_inside_helpers_point_at_the_user():
    """Ops made inside gc.softmax etc. are attributed to the user's call site."""
    def f(x):
        return gc.softmax(x) + gc.logsumexp(x, axis=1, keepdims=True)

    line = f.__code__.co_firstlineno + 1
    g = raw_graph(f, X)
    assert {n.loc for n in g.nodes} == {f"{THIS_FILE}:{line}"}


# -- tracer misuse ------------------------------------------------------------------------
def test_tracer_repr_and_escape():
    leaked = []

    def f(x):
        leaked.append(x)
        return x + 1

    raw_graph(f, X)
    assert repr(leaked[0]) == "Tracer<f32[3,4]>"
    assert isinstance(leaked[0], Tracer)
    with pytest.raises(gc.TraceError, match="escaped"):
        leaked[0] + 1


def test_iterating_a_traced_array_unrolls():
    g = raw_graph(lambda x: sum(row for row in x), X)
    assert [n.op for n in g.nodes].count("add") == 3  # 0 + x[0] + x[1] + x[2]
    (out,) = gc.interpret(g, X)
    assert_same(out, X[0] + X[1] + X[2], "sum of rows")


def test_python_loops_unroll():
    def f(x):
        for _ in range(3):
            x = np.tanh(x)
        return x

    assert [n.op for n in raw_graph(f, X).nodes] == ["tanh"] * 3
