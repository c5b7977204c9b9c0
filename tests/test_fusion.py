"""Fusion: grouping rules (convexity, reductions), the ``fused`` op, and fused codegen."""
import numpy as np
import networkx as nx
import pytest

import graphc as gc
from graphc.ops.registry import infer_node
from graphc.backend import codegen
from graphc.interpret import interpret
from graphc.ir import parse
from graphc.ops.scalar import MATH
from graphc.ops.fused import subgraph
from graphc.passes import fusion


def chain(x, w, b):
    return np.sum(np.tanh(x * w + b) * gc.sigmoid(x) - 0.5 * x ** 2)


def chain_reference(x, w, b):
    x, w, b = (np.asarray(a, np.float64) for a in (x, w, b))
    t, s = np.tanh(x * w + b), 1 / (1 + np.exp(-x))
    value = np.sum(t * s - 0.5 * x ** 2)
    gx = t * s * (1 - s) - x + s * (1 - t * t) * w
    return value, gx, np.sum(s * (1 - t * t) * x), np.sum(s * (1 - t * t))


def fused_nodes(graph):
    return [n for n in graph.nodes if n.op == "fused"]


def kernel(f, k=0):
    """The Numba dispatcher of the k-th fused kernel of f's latest signature."""
    compiled = f._last.compiled
    return compiled.entry.py_func.__globals__[compiled._emitter.kernel_info[k]["name"]]


def assert_convex(graph):
    """Every fused node's body, put back in place, would be a convex group (trivially: the
    graph is a DAG with each fused node atomic) -- and the graph verifies."""
    graph.verify(infer_node)
    assert nx.is_directed_acyclic_graph(graph.to_networkx())


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Compile for real (LLVM IR can only be inspected on freshly compiled code), with every
    fused group in a kernel of its own (small groups are otherwise inlined into the entry)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    from graphc.backend import codegen, cpu
    monkeypatch.setattr(cpu, "_IN_PROCESS", {})
    monkeypatch.setattr(codegen, "INLINE_MAX", 0)


def test_forward_and_backward_fuse_into_one_vectorized_loop(fresh_cache):
    from graphc.backend.vecmath import is_vectorized
    f = gc.value_and_grad(chain, argnums=(0, 1, 2))
    x = np.linspace(-3, 3, 1001).astype(np.float32)
    w, b = np.float32(0.7), np.float32(-0.2)
    value, (gx, gw, gb) = f(x, w, b)
    want = chain_reference(x, w, b)
    assert np.isclose(value, want[0], rtol=1e-5)
    assert np.allclose(gx, want[1], rtol=1e-5, atol=1e-6)
    assert np.isclose(gw, want[2], rtol=1e-5) and np.isclose(gb, want[3], rtol=1e-5)
    assert len(fused_nodes(f.graph)) == 1 and all(n.op in ("fused", "constant") for n in f.graph.nodes)
    assert len(f._last.compiled._emitter.kernel_info) == 1  # one loop nest for forward and backward
    assert "tanh_f32" in f.source and "np.tanh" not in f.source
    assert is_vectorized(kernel(f))


def test_fused_graph_prints_parses_and_interprets():
    f = gc.value_and_grad(chain, argnums=(0, 1, 2), passes="O1")
    x = np.linspace(-3, 3, 17)
    f.lower(x, 0.5, 0.25)
    g1 = f.graph
    g2 = fusion.run(g1).verify(infer_node)
    assert len(fused_nodes(g2)) == 1
    assert parse(str(g2)) == g2
    (node,) = fused_nodes(g2)
    assert hash(tuple(sorted(node.attrs.items())))  # attrs are hashable
    assert subgraph(node).verify(infer_node)
    for a, b in zip(interpret(g1, x, 0.5, 0.25), interpret(g2, x, 0.5, 0.25)):
        assert np.allclose(a, b, rtol=1e-14)


def test_a_malformed_fused_node_fails_verification():
    g = fusion.run(parse("graph f(%0:f64[4]):\n  %1:f64[4] = exp(%0)\n  %2:f64[4] = neg(%1)\n"
                         "  return %2")).verify(infer_node)
    text = str(g)
    assert "%1:f64[4] = exp(%0)" in text  # fused bodies print as nested graphs
    text = text.replace("= exp(%0)", "= sum(%0, axes=(0,), keepdims=False)")  # declares f64[4], gives f64[]
    with pytest.raises(gc.VerifyError):
        parse(text).verify(infer_node)


def test_groups_stay_convex():
    # a -> matmul -> b and a -> b: {a, b} would leave the group and come back
    text = ("graph f(%0:f64[4,4]):\n  %1:f64[4,4] = exp(%0)\n  %2:f64[4,4] = matmul(%1, %1)\n"
            "  %3:f64[4,4] = add(%1, %2)\n  %4:f64[4,4] = neg(%1)\n  %5:f64[4,4] = mul(%3, %4)\n"
            "  return %5")
    g = parse(text)
    groups = fusion.find_groups(g)
    dag = g.to_networkx()
    for members in groups:
        inside = set(members)
        outside = set(n for n in dag if n not in inside)
        for m in members:  # no path from a member through an outsider back into the group
            for o in outside & nx.descendants(dag, m):
                assert not (nx.descendants(dag, o) & inside)
    h = fusion.run(g).verify(infer_node)
    assert_convex(h)
    x = np.random.default_rng(0).standard_normal((4, 4))
    assert np.allclose(interpret(g, x)[0], interpret(h, x)[0])
    assert len(fused_nodes(h)) == 2


def test_a_reduction_is_never_read_inside_its_own_loop():
    def softmax_loss(x):
        e = np.exp(x - np.max(x, axis=1, keepdims=True))
        return e / np.sum(e, axis=1, keepdims=True)

    f = gc.trace(softmax_loss)
    x = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
    want = np.exp(x - x.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert np.allclose(f(x), want, rtol=1e-5)
    for node in fused_nodes(f.graph):
        body = subgraph(node)
        reduced = {n.outputs[0] for n in body.nodes if n.op in fusion.REDUCTIONS}
        assert not any(v in reduced for n in body.nodes for v in n.inputs)


def test_float32_sums_stay_accurate_at_any_length():
    # blocks of float32 partials, folded into a float64 accumulator (a plain float32 running sum
    # is ~1e-2 off at this length)
    f = gc.trace(lambda x: (np.sum(x * 1.5), np.mean(x)))
    x = np.full(3_000_000, 0.1, np.float32)
    s, m = f(x)
    exact = np.float64(np.float32(0.1)) * 3_000_000
    assert abs(s - 1.5 * exact) / (1.5 * exact) < 1e-6  # a float32 running sum is ~1e-2 off
    assert abs(m - np.float32(0.1)) < 1e-7


def test_partial_reductions_and_broadcasting():
    def f(x, v):
        y = np.exp(x) * v  # v broadcasts along rows
        return np.sum(y, axis=1), np.max(y, axis=0, keepdims=True), y

    x = np.random.default_rng(2).standard_normal((6, 5))
    v = np.linspace(-1, 1, 5)
    x[2, 3] = np.nan
    got = gc.trace(f)(x, v)
    y = np.exp(x) * v
    for a, b in zip(got, (np.sum(y, axis=1), np.max(y, axis=0, keepdims=True), y)):
        assert np.allclose(a, b, equal_nan=True)


def test_prange_above_the_threshold(monkeypatch):
    monkeypatch.setattr(codegen, "PARALLEL_MIN", 64)
    f = gc.trace(lambda x: (np.sum(np.sin(x)), np.cos(x) * 2))
    x = np.linspace(0, 10, 1000)
    s, c = f(x)
    assert "prange" in f.source and "parallel=True" in f.source
    assert np.isclose(s, np.sin(x).sum()) and np.allclose(c, 2 * np.cos(x))


def test_math_modes():
    def f(x):
        return np.exp(x) + np.log(x) + np.tanh(x) + np.sin(x) * np.cos(x) + x ** 1.5 + gc.sigmoid(x)

    x = np.linspace(0.01, 30, 999)
    want = np.exp(x) + np.log(x) + np.tanh(x) + np.sin(x) * np.cos(x) + x ** 1.5 + 1 / (1 + np.exp(-x))
    fast, libm = gc.trace(f), gc.trace(f, math="libm")
    assert np.allclose(fast(x), want, rtol=1e-14) and np.allclose(libm(x), want, rtol=1e-14)
    assert "vecmath" in fast.source and "vecmath" not in libm.source
    with pytest.raises(ValueError, match="fast, libm"):
        gc.trace(f, math="svml")


def test_o2_matches_o0_on_a_mixed_graph():
    def f(x, w):
        h = np.tanh(x @ w)
        z = h.T.reshape(-1) * 2.0 + 1.0
        return np.sum(z ** 2), np.mean(h, axis=0)

    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((8, 4)), rng.standard_normal((4, 3))
    a, b = gc.trace(f, passes="O0")(x, w), gc.trace(f)(x, w)
    for u, v in zip(a, b):
        assert np.allclose(u, v, rtol=1e-12)


def test_small_groups_are_inlined_into_the_entry():
    """One Numba function per graph when no group is big enough to want threads."""
    f = gc.value_and_grad(chain, argnums=(0, 1, 2))
    x = np.linspace(-3, 3, 101).astype(np.float32)
    value, _ = f(x, np.float32(0.7), np.float32(-0.2))
    assert np.isclose(value, chain_reference(x, np.float32(0.7), np.float32(-0.2))[0], rtol=1e-5)
    assert f.source.count("@njit") == 1


def _max_float_lanes(dispatcher):
    import re
    llvm = dispatcher.inspect_llvm(dispatcher.signatures[0])
    return max((int(m) for m in re.findall(r"<(\d+) x float>", llvm)), default=1)


def _reference_float32_lanes():
    """The vector width LLVM picks on this host for a float32 loop with nothing wider in it."""
    from numba import njit
    from graphc.backend.vecmath import tanh_f32

    @njit(error_model="numpy", fastmath={"reassoc", "contract"})
    def loop(x, o):
        for i in range(np.uint64(0), np.uint64(x.shape[0])):
            o[i] = tanh_f32(x[i]) * np.float32(2.0)

    x = np.ones(64, np.float32)
    loop(x, np.empty_like(x))
    return _max_float_lanes(loop)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 100_003])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_flat_sums_run_in_blocks(fresh_cache, n, dtype):
    """A flat kernel with sums loops over FLAT_BLOCK-element blocks, with a partial per block;
    the block count need not divide the size, and every reduction kind still agrees."""
    f = gc.trace(lambda x: (np.sum(x * x), np.mean(x), np.prod(x * 0 + 1.00001), x * 2))
    x = (np.random.default_rng(n).uniform(0, 1, n) * (100 if dtype == "int32" else 1)).astype(dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (np.sum(x.astype(np.float64) ** 2), np.mean(x.astype(np.float64)),
                np.prod(np.float64(x * 0 + 1.00001)), x * 2)
        got = f(x)
    if n > 1:  # (empty and one-element graphs are not fused)
        assert "np.uint64" in f.source and f"range({-(-n // codegen.FLAT_BLOCK)})" in f.source
    tol = 1e-6 if dtype == "float32" else 1e-10  # (a reassociated product of 1e5 terms: ~1e-11)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, equal_nan=True)


def test_float32_sum_partials_keep_the_loop_at_full_simd_width(fresh_cache):
    """A float64 accumulator in the loop halves LLVM's float32 vector width (8 lanes instead
    of 16 with AVX-512); float32 block partials keep the width of a plain float32 loop."""
    from graphc.backend.vecmath import is_vectorized
    f = gc.value_and_grad(chain, argnums=(0, 1, 2))
    x = np.linspace(-3, 3, 1001).astype(np.float32)
    f(x, x, x)
    lanes = _reference_float32_lanes()  # 16 with AVX-512 here (Zen 4); 8 with AVX2
    assert lanes >= 8 and is_vectorized(kernel(f), min_lanes=lanes)
    assert _max_float_lanes(kernel(f)) >= lanes


def test_float32_block_sums_are_as_accurate_as_numpy():
    rng = np.random.default_rng(5)
    x = (1 + 1e-3 * rng.standard_normal(2_000_003)).astype(np.float32)
    exact = np.sum(x.astype(np.float64))
    got = gc.trace(lambda x: np.sum(x))(x)
    assert abs(got - exact) <= max(2 * abs(np.sum(x) - exact), 4 * np.finfo(np.float32).eps * exact)


_INTERLEAVE_SCRIPT = """
import numpy as np
from numba import njit
import graphc as gc
from graphc.backend.vecmath import tanh_f64

def vector_divisions(dispatcher):  # one per interleaved copy of the vector body
    return dispatcher.inspect_asm(dispatcher.signatures[0]).count("vdivpd")

def user_loop():
    @njit(error_model="numpy")
    def loop(x, o):
        for i in range(x.shape[0]):
            o[i] = tanh_f64(x[i])
    x = np.ones(64)
    loop(x, np.empty_like(x))
    return vector_divisions(loop)

before = user_loop()
f = gc.trace(lambda x: np.tanh(x) * 2.0)
f(np.ones(1000))
compiled = f._last.compiled
kernel = compiled.entry.py_func.__globals__[compiled._emitter.kernel_info[0]["name"]]
print(before, user_loop(), vector_divisions(kernel))
"""


def test_interleave_is_applied_to_graphc_kernels_only(tmp_path):
    """graphc compiles its kernels with LLVM's process-wide -force-vector-interleave and puts
    the default back afterwards: the user's own Numba loops compile as they would without
    graphc.  (A fresh process, so that the first user loop sees LLVM's untouched default.)"""
    import os
    import subprocess
    import sys
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_INLINE_MAX="0", GRAPHC_INTERLEAVE="8")
    out = subprocess.run([sys.executable, "-c", _INTERLEAVE_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    before, after, graphc_kernel = map(int, out.stdout.split())
    assert 1 <= before < 8 and after == before
    assert graphc_kernel >= 8


@pytest.mark.parametrize("value", ["-1", "four", "17", ""])
def test_a_bad_interleave_setting_is_a_clear_error(monkeypatch, value):
    from graphc.backend import cpu
    monkeypatch.setenv("GRAPHC_INTERLEAVE", value)
    with pytest.raises(ValueError, match="GRAPHC_INTERLEAVE"):
        cpu._interleave_setting()


# -- every float elementwise op vectorizes in a fused loop, or says why not ---------------------
# elementwise ops that are not float math (no float operands to vectorize over, or not math at all)
NOT_FLOAT_MATH = {
    "and": "booleans only", "or": "booleans only", "xor": "booleans only", "not": "booleans only",
    "bitxor": "integers only", "lshr": "integers only", "iota": "no operands (the loop index)",
    "cast": "a conversion, checked with the ops around it", "broadcast_to": "a shape op (an index)",
    "where": "checked below as where(x > y, x, y)",
}


def _float_elementwise_ops():
    """(name, arity) of every registered elementwise op, less NOT_FLOAT_MATH."""
    import inspect
    from graphc.ops import registry
    found = []
    for name, op in registry.OPS.items():
        if op.kind != registry.ELEMENTWISE or name in NOT_FLOAT_MATH or op.scalar is None:
            continue
        found.append((name, len(inspect.signature(op.scalar).parameters) - 1))  # (less the context)
    return found


def _all_ops_loop(names):
    from graphc.trace import bind

    def f(x, y, z):
        acc = np.where(x > y, x, y)
        for name, arity in names:
            out = bind(name, *(x, y, z)[:arity])
            acc = acc + (np.where(out, x, y) if out.dtype == bool else out)
        return acc

    return gc.trace(f)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_float_elementwise_op_vectorizes_or_is_listed_as_scalar(fresh_cache, dtype):
    """One fused loop calling every float elementwise op that does not declare itself scalar
    (``Op.scalar_reason``) must be SIMD code as wide as a plain loop of the dtype (float32: the
    width tanh_f32 * 2 gets). The ops' own declarations drive it: an op with vectorizable math
    names it in the scalar vocabulary (``Op.math``), nothing in the backend names ops."""
    from graphc.backend.vecmath import is_vectorized
    from graphc.ops import registry
    ops = _float_elementwise_ops()
    scalar_only = codegen.scalar_only_ops()
    unknown = set(scalar_only) - {name for name, _ in ops}
    assert not unknown, f"ops declared scalar that are not float elementwise ops: {sorted(unknown)}"
    assert all(reason.strip() for reason in scalar_only.values())
    assert all(op.math in MATH for op in registry.OPS.values() if op.math)
    vector = [(name, k) for name, k in ops if name not in scalar_only]
    x = np.linspace(0.1, 0.9, 1001).astype(dtype)
    f = _all_ops_loop(vector)
    f(x, x[::-1].copy(), x + 1)
    assert [n.op for n in f.graph.nodes if n.op not in ("constant",)] == ["fused"]
    lanes = _reference_float32_lanes() // (2 if dtype == "float64" else 1)
    if not is_vectorized(kernel(f), min_lanes=lanes):
        scalar = []
        for name, k in vector:  # name the culprits (one compile each, only when the loop fails)
            g = _all_ops_loop([(name, k)])
            g(x, x, x)
            if not is_vectorized(kernel(g), min_lanes=lanes):
                scalar.append(name)
        pytest.fail(f"{dtype}: these float elementwise ops do not vectorize in a fused loop: {scalar}; "
                    f"give them math= in the scalar vocabulary, or declare scalar_reason= on the op")


# -- issue 13: reductions as data, lanes, readable source ---------------------------------------
def test_a_reduction_declared_as_data_fuses_and_lowers():
    """A new reduction op is one registration with ``registry.Reduction`` data: fusion takes it
    into groups (ops.fused.REDUCTIONS is read from the registry) and the schedule lowers it."""
    from graphc.ops import registry
    from graphc.ops.fused import REDUCTIONS
    from graphc.ops.reduction import _infer, _reduction, _ref
    from graphc.trace import bind
    assert set(REDUCTIONS) == {"sum", "mean", "prod", "max", "min"}
    registry.register("sum_for_test", registry.REDUCTION, _infer(lambda d: d),
                      _ref(lambda x, **k: np.sum(x, **k).astype(x.dtype)), reduction=_reduction("add"))
    try:
        assert "sum_for_test" in REDUCTIONS
        f = gc.trace(lambda x: bind("sum_for_test", np.tanh(x) * 2, axes=(1,), keepdims=False))
        x = np.linspace(-2, 2, 6 * 70).reshape(6, 70)
        np.testing.assert_allclose(f(x), np.sum(np.tanh(x) * 2, axis=1), rtol=1e-13)
        (node,) = fused_nodes(f.graph)
        assert [n.op for n in subgraph(node).nodes] == ["tanh", "mul", "sum_for_test"]
    finally:
        del registry.OPS["sum_for_test"]


def test_var_fuses_and_log1p_expm1_use_vector_math_by_their_declaration():
    from graphc.ops import registry
    assert registry.get("log1p").math == "log1p" and registry.get("expm1").math == "expm1"
    f = gc.trace(lambda x: (np.var(x, axis=1), np.log1p(x) + np.expm1(x)))
    x = np.random.default_rng(3).uniform(0, 1, (5, 300)).astype(np.float32)
    v, e = f(x)
    np.testing.assert_allclose(v, np.var(x, axis=1), rtol=1e-5)
    np.testing.assert_allclose(e, np.log1p(x) + np.expm1(x), rtol=1e-6)
    assert "log1p_f32" in f.source and "expm1_f32" in f.source
    assert {n.op for n in f.graph.nodes} <= {"fused", "constant"}
    sums = [n.op for node in fused_nodes(f.graph) for n in subgraph(node).nodes if n.op in ("sum", "mean")]
    assert sorted(sums) == ["mean", "sum"]


def test_inlined_row_reductions_vectorize_in_lanes(fresh_cache, monkeypatch):
    """Groups inlined into the entry (no fastmath) fold rows into independent lanes: the loop is
    SIMD code, NaN still wins, float32 partials are folded into float64 every LANE_FLUSH elements."""
    from graphc.backend import schedule
    from graphc.backend.vecmath import is_vectorized
    monkeypatch.setattr(codegen, "INLINE_MAX", 1 << 16)  # (fresh_cache set it to 0)
    f = gc.trace(lambda x: (np.sum(np.tanh(x), axis=1), np.max(x, axis=1), np.mean(x * 2, axis=1)))
    x = np.random.default_rng(1).standard_normal((7, 1000)).astype(np.float32)
    x[2, 999] = np.nan  # in the tail after the last full chunk of lanes
    x[3, 5] = np.nan
    got = f(x)
    assert f.source.count("@njit") == 1 and "lanes" in f.source
    assert is_vectorized(f._last.compiled.entry)
    want = (np.sum(np.tanh(x), axis=1), np.max(x, axis=1), np.mean(x * 2, axis=1))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=2e-6, equal_nan=True)
    long = np.full((1, 60_000), 0.1, np.float32)  # 60000 float32 adds: ~1e-3 off in one lane
    g = gc.trace(lambda x: np.sum(x, axis=1))
    assert abs(g(long)[0] - 60_000 * np.float64(np.float32(0.1))) / 6000 < 1e-6
    assert "wide" in g.source and schedule.LANE_FLUSH <= 4096


def test_generated_source_reads_as_written_by_hand(monkeypatch):
    from graphc.backend.codegen import readable_names
    monkeypatch.setattr(codegen, "INLINE_MAX", 0)
    f = gc.trace(lambda x, b: (np.sum(np.tanh(x + b), axis=2, keepdims=True), np.exp(x) * 2))
    x = np.ones((1, 64, 40), np.float32)
    f(x, np.float32(0.5))
    src = f.source
    import re
    assert re.search(r"def sum_(\w+_)?tanh(_\w+)?_rows\(", src), src  # kernels named after what they compute
    assert "range(1)" not in src  # size-1 dims get no loop
    assert "np.float32(np.float32(" not in src and "np.float32(tanh_f32(" not in src
    assert "# workspace" in src or "ws" not in src.split("def entry(")[1].split(")")[0]
    names = readable_names(["x", "x", "fc1.weight", "range", "v3", None], 6)
    assert names == ["x", "x2", "fc1_weight", "arg_range", "arg_v3", "a5"]
    # ASCII only: 'x²' and 'ﬁ' are no Python identifiers ('ﬁ' would even read as 'fi')
    names = readable_names(["x²", "ﬁ", "fi", "é"], 4)
    assert all(n.isidentifier() and n.isascii() for n in names) and len(set(names)) == 4, names
