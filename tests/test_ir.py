"""The IR: text printer/parser round trip, verify(), to_networkx(), to_dot().

Nothing here compiles: graphs come from tracing (``raw_graph``) or from text.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import infer_node
from graphc.errors import VerifyError
from graphc.ir import Const, Graph, Node, TensorType, Value, parse
from conftest import raw_graph

R = np.random.default_rng(7)
X = R.standard_normal((3, 4)).astype(np.float32)
W = R.standard_normal((4, 5)).astype(np.float32)
I = np.array([2, 0, 1])


def _many_ops(x, w, i):
    h = np.tanh(x @ w + 1.0) * (1 / (1 + np.exp(-x @ w)))
    s = np.sum(h, axis=1, keepdims=True) - np.max(h, axis=(0, 1))
    c = np.clip(x, -0.5, 0.5) + np.where(x > 0, x, 0.25) + np.array([np.nan, np.inf, -np.inf, 1e-30], np.float32)
    idx = x[1:, ::-2][None, ..., 0] + x[i].sum() + np.take(x, [3, -1], axis=1).mean()
    cat = np.concatenate([x, x.T.reshape(3, 4)], axis=0).astype(np.float64)
    logic = np.logical_and(x > 0, np.logical_not(x < 1)) | (x == 0)
    return (h, s, c, idx, cat, logic, gc.softmax(x), gc.log_softmax(x, axis=0), gc.logsumexp(w),
            gc.one_hot(i, 4), np.argmax(x, axis=1), np.expand_dims(x, 0).squeeze(), np.stack([x, x], -1),
            np.take_along_axis(x, np.argsort(X, axis=1)[:, :2], axis=1), gc.relu(x) ** 2.5,
            gc.sigmoid(x).prod(axis=0), np.sign(x).min(), np.sqrt(np.abs(x)) / 0.0, np.maximum(x, np.float32(np.nan)),
            np.broadcast_to(i, (2, 3)), i.astype(bool) ^ True, x.astype(np.int32))


@pytest.fixture(scope="module")
def graph():
    return raw_graph(_many_ops, X, W, I)


def test_round_trip_of_a_graph_with_many_ops(graph):
    text = str(graph)
    again = parse(text)
    assert again == graph
    assert str(again) == text
    again.verify(infer_node)
    # each node kept its source location (this file)
    assert all(n.loc and n.loc.startswith("test_ir.py:") for n in again.nodes)
    # attributes came back with their Python types
    ops = {n.op for n in again.nodes}
    assert {"matmul", "tanh", "sum", "max", "clip", "where", "slice", "gather", "concatenate", "cast", "and",
            "or", "not", "argmax", "reshape", "transpose", "iota", "broadcast_to", "constant", "xor"} <= ops


def test_round_trip_keeps_interpretation(graph):
    again = parse(str(graph))
    for a, b in zip(gc.interpret(graph, X, W, I), gc.interpret(again, X, W, I)):
        np.testing.assert_array_equal(a, b)


def test_round_trip_of_the_optimized_graph(graph):
    """After the default passes (fused nodes carry their subgraph as attributes)."""
    from graphc.passes import manager

    optimized, _ = manager.run(graph.clone(), "O2", verify=True)
    again = parse(str(optimized))
    assert again == optimized
    again.verify(infer_node)
    for a, b in zip(gc.interpret(optimized, X, W, I), gc.interpret(again, X, W, I)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [
    np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4028235e38], np.float32),
    np.array([[np.nan, 1e308], [-np.inf, 5e-324]]),
    np.array(np.nan),
    np.array(-np.inf, np.float32),
    np.array([True, False]),
    np.array([[-2**31, 2**31 - 1]], np.int32),
    np.array([-2**63, 2**63 - 1], np.int64),
    np.zeros((0, 3), np.float32),
    np.array(0.1),
])
def test_constants_round_trip_exactly(value):
    g = Graph(name="consts")
    node = g.add_node("constant", [], {"value": Const(value)}, [TensorType(value.shape, value.dtype.name)])
    g.outputs = [node.output]
    again = parse(str(g))
    assert again == g
    got = again.nodes[0].attrs["value"].array
    assert got.dtype == value.dtype and got.shape == value.shape
    np.testing.assert_array_equal(got, value)
    assert np.array_equal(np.signbit(got), np.signbit(value))
    (out,) = gc.interpret(again)
    np.testing.assert_array_equal(out, value)


def test_attributes_round_trip():
    text = """
graph attrs(%0:f32[4,5,6], %1:i64[2]):
  %2:f32[4,6] = sum(%0, axes=(1,), keepdims=False)   # model.py:3
  %3:f32[2,1,3] = slice(%0, slices=((0, 4, 2), (4, 5, 1), (5, -1, -2)))   # model.py:4
  %4:f32[6,5,4] = transpose(%0, perm=(2, 1, 0))
  %5:f32[4,2,6] = gather(%0, %1, axis=1)
  %6:f32[4,30] = reshape(%0, shape=(4, 30))   # a file with spaces.py:10
  %7:i64[2,3] = iota(axis=1, dtype='int64', shape=(2, 3))
  %8:f64[4,5,6] = cast(%0, dtype='float64')
  %9:f32[] = constant(value=array(nan, f32))
  %10:f32[4,5,6] = clip(%0, %9, %9)
  return %2, %3, %4, %5, %6, %7, %8, %10
"""
    g = parse(text)
    g.verify(infer_node)
    assert str(parse(str(g))) == str(g)
    nodes = {n.op: n for n in g.nodes}
    assert nodes["slice"].attrs["slices"] == ((0, 4, 2), (4, 5, 1), (5, -1, -2))
    assert nodes["sum"].attrs == {"axes": (1,), "keepdims": False}
    assert nodes["iota"].attrs["dtype"] == "int64"
    assert nodes["reshape"].loc == "a file with spaces.py:10"
    assert nodes["transpose"].loc is None
    x, i = R.standard_normal((4, 5, 6)).astype(np.float32), np.array([1, -1])
    outs = gc.interpret(g, x, i)
    np.testing.assert_array_equal(outs[1], x[0:4:2, 4:5, 5::-2])
    assert np.isnan(outs[-1]).all()


def test_graph_equality_is_structural():
    f = lambda x: np.exp(x) + 1.0  # noqa: E731
    a = raw_graph(f, X)
    b = raw_graph(f, X)
    assert a == b
    assert a != raw_graph(lambda x: np.exp(x) + 2.0, X)
    assert a != raw_graph(f, X.astype(np.float64))
    c = a.clone()
    assert c == a and c.nodes[0] is not a.nodes[0]


def test_printer_format():
    g = raw_graph(lambda x, w: np.sum(x @ w, axis=1), X, W)
    lines = str(g).splitlines()
    assert lines[0] == "graph raw(%0:f32[3,4], %1:f32[4,5]):"
    assert re.fullmatch(r"  %2:f32\[3,5\] = matmul\(%0, %1\)   # test_ir\.py:\d+", lines[1])
    assert lines[2].startswith("  %3:f32[3] = sum(%2, axes=(1,), keepdims=False)   # test_ir.py:")
    assert lines[-1] == "  return %3"


def test_parse_rejects_bad_text():
    with pytest.raises(ValueError):
        parse("not a graph")
    with pytest.raises(ValueError, match="not defined"):
        parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%7)\n  return %1")
    with pytest.raises(ValueError, match="return"):
        parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%0)")
    with pytest.raises(ValueError, match="dtype"):
        parse("graph g(%0:f16[2]):\n  return %0")


# -- verify() ----------------------------------------------------------------------------
def test_verify_accepts_traced_graphs(graph):
    assert graph.verify(infer_node) is graph


def test_verify_catches_use_before_def():
    g = parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%0)\n  %2:f32[2] = tanh(%1)\n  return %2")
    g.nodes.reverse()  # tanh now reads exp's output before it is made
    with pytest.raises(VerifyError, match="before it is defined"):
        g.verify(infer_node)


def test_verify_catches_operand_from_elsewhere():
    g = parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%0)\n  return %1")
    g.nodes[0].inputs = [Value(TensorType((2,), "float32"))]  # never defined in this graph
    with pytest.raises(VerifyError):
        g.verify(infer_node)


def test_verify_catches_wrong_output_type():
    g = parse("graph g(%0:f32[2,3]):\n  %1:f32[2,3] = exp(%0)\n  return %1")
    g.nodes[0].outputs[0].type = TensorType((2, 3), "float64")
    with pytest.raises(VerifyError, match="output types"):
        g.verify(infer_node)
    g = parse("graph g(%0:f32[2,3]):\n  %1:f32[3,2] = exp(%0)\n  return %1")
    with pytest.raises(VerifyError, match="output types"):
        g.verify(infer_node)


def test_verify_catches_bad_operand_types():
    g = parse("graph g(%0:f32[2,3], %1:f64[2,3]):\n  %2:f32[2,3] = add(%0, %1)\n  return %2")
    with pytest.raises(VerifyError, match="add"):
        g.verify(infer_node)
    g = parse("graph g(%0:f32[2,3], %1:f32[4,5]):\n  %2:f32[2,5] = matmul(%0, %1)\n  return %2")
    with pytest.raises(VerifyError, match="matmul"):
        g.verify(infer_node)
    g = parse("graph g(%0:i32[2]):\n  %1:i32[2] = exp(%0)\n  return %1")
    with pytest.raises(VerifyError):
        g.verify(infer_node)


def test_verify_catches_unknown_op_and_double_definition():
    g = parse("graph g(%0:f32[2]):\n  %1:f32[2] = frobnicate(%0)\n  return %1")
    with pytest.raises(VerifyError, match="frobnicate"):
        g.verify(infer_node)
    g = parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%0)\n  return %1")
    g.nodes.append(g.nodes[0])  # the same node (and value) twice
    with pytest.raises(VerifyError, match="defined twice"):
        g.verify(infer_node)


def test_verify_catches_undefined_output_and_duplicate_input():
    g = parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%0)\n  return %1")
    g.outputs = [Value(TensorType((2,), "float32"))]
    with pytest.raises(VerifyError, match="never defined"):
        g.verify(infer_node)
    g = parse("graph g(%0:f32[2]):\n  return %0")
    g.inputs.append(g.inputs[0])
    with pytest.raises(VerifyError, match="twice"):
        g.verify(infer_node)


def test_verify_catches_broken_producer_link():
    g = parse("graph g(%0:f32[2]):\n  %1:f32[2] = exp(%0)\n  %2:f32[2] = tanh(%1)\n  return %2")
    g.nodes[1].outputs = g.nodes[0].outputs + []  # tanh claims exp's output value
    with pytest.raises(VerifyError):
        g.verify(infer_node)


def test_tensor_type():
    t = TensorType((2, 0, 3), "float32")
    assert (t.ndim, t.size, str(t)) == (3, 0, "f32[2,0,3]")
    assert str(TensorType((), "bool")) == "bool[]"
    with pytest.raises(TypeError, match="float16"):
        TensorType((2,), "float16")
    assert Const(np.array([1.0])) == Const(np.array([1.0]))
    assert Const(np.array([1.0])) != Const(np.array([1.0], np.float32))
    assert hash(Const(np.array([np.nan]))) == hash(Const(np.array([np.nan])))
    src = np.array([1.0, 2.0])
    c = Const(src)
    src[0] = 5.0  # later edits of the user's array do not leak into the graph
    assert c.array[0] == 1.0


# -- to_networkx / to_dot --------------------------------------------------------------
def test_to_networkx_counts(graph):
    nxg = graph.to_networkx()
    n_in, n_nodes, n_out = len(graph.inputs), len(graph.nodes), len(graph.outputs)
    assert nxg.number_of_nodes() == n_in + n_nodes + n_out
    # one edge per distinct (producer, consumer) pair: operands plus outputs
    pairs = set()
    src = {v: ("input", i) for i, v in enumerate(graph.inputs)}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            pairs.add((src[v], i))
        for v in node.outputs:
            src[v] = i
    pairs |= {(src[v], ("output", k)) for k, v in enumerate(graph.outputs)}
    assert nxg.number_of_edges() == len(pairs)
    import networkx as nx
    assert nx.is_directed_acyclic_graph(nxg)
    assert nxg.nodes[0]["op"] == graph.nodes[0].op


def test_to_networkx_small():
    g = raw_graph(lambda x: (np.exp(x) * x, x), X)
    nxg = g.to_networkx()
    # input, exp, mul, two outputs; edges in->exp, in->mul, exp->mul, mul->out0, in->out1
    assert nxg.number_of_nodes() == 5
    assert nxg.number_of_edges() == 5
    assert [d["op"] for _, d in sorted(nxg.nodes(data=True), key=lambda t: str(t[0]))].count("output") == 2


def test_to_dot(graph):
    dot = graph.to_dot()
    assert dot.startswith('digraph "raw" {') and dot.rstrip().endswith("}")
    assert dot.count("->") == graph.to_networkx().number_of_edges()
    assert "matmul(%0, %1)" in dot
    # every line is a statement; quotes inside labels are escaped
    for line in dot.splitlines()[1:-1]:
        assert line.rstrip().endswith(";"), line
        assert line.count('"') % 2 == 0 or '\\"' in line, line
    assert dot.count("{") == dot.count("}")
    import shutil
    import subprocess
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=dot.encode(), check=True, capture_output=True)


def test_to_dot_escapes_quotes():
    g = parse("graph q(%0:i64[2]):\n  %1:i64[2,3] = iota(axis=1, dtype='int64', shape=(2, 3))   # we\"ird.py:1\n"
              "  return %1")
    dot = g.to_dot()
    assert "dtype='int64'" in dot and 'we\\"ird.py' in dot


def test_node_repr_and_users():
    g = raw_graph(lambda x: np.exp(x) + np.exp(x) * x, X)
    users = g.users()
    assert len(users[g.inputs[0]]) == 3  # two exps and the mul
    assert "exp" in repr(g.nodes[0])
    assert isinstance(g.nodes[0], Node)


def test_fused_nodes_print_as_readable_blocks_that_parse_back():
    import numpy as np
    import graphc as gc
    from graphc.ir import parse

    f = gc.trace(lambda x, y: np.sum(np.tanh(x * y) + x))
    f(np.ones(5), np.ones(5))
    text = str(f.graph)
    assert "= fused(%0, %1) {" in text
    assert "\n    graph body(%0:f64[5], %1:f64[5]):\n      %2:f64[5] = mul(%0, %1)" in text
    assert "\n      return %5\n  }" in text
    assert "body=" not in text
    again = parse(text)
    assert again == f.graph and again.verify(infer_node)
    assert again.nodes[0].regions[0] == f.graph.nodes[0].regions[0]
    assert again.nodes[0].regions[0] is not f.graph.nodes[0].regions[0]


def test_regions_are_cloned_verified_and_interpreted():
    """A node's region is a closed graph: clone copies it, verify descends into it (a wrong
    type inside is an error naming the region), the interpreter runs it."""
    text = """graph f(%0:f64[3], %1:f64[3]):
  %2:f64[], %3:f64[3] = fused(%0, %1) {   # a.py:1
    graph body(%0:f64[3], %1:f64[3]):
      %2:f64[3] = mul(%0, %1)   # a.py:1
      %3:f64[] = sum(%2, axes=(0,), keepdims=False)
      return %3, %2
  }
  return %2, %3"""
    g = parse(text)
    assert str(g) == text
    c = g.clone()
    assert c == g and c.nodes[0].regions[0] is not g.nodes[0].regions[0]
    assert c.nodes[0].regions[0].nodes[0] is not g.nodes[0].regions[0].nodes[0]
    total, prod = gc.interpret(g, np.array([1.0, 2, 3]), np.array([4.0, 5, 6]))
    assert total == 32.0 and prod.tolist() == [4.0, 10.0, 18.0]
    with pytest.raises(VerifyError, match="in its region body.*mul"):
        parse(text.replace("%2:f64[3] = mul", "%2:f32[3] = mul")).verify(infer_node)
    with pytest.raises(VerifyError, match="fused body takes"):
        parse(text.replace("graph body(%0:f64[3], %1:f64[3])", "graph body(%0:f64[3], %1:f64[1])")
              .replace("%2:f64[3] = mul", "%2:f64[3] = mul")).verify(infer_node)
    with pytest.raises(ValueError, match="line 7: expected .graph name"):
        parse(text.replace("\n  }", ""))


def test_declared_metadata_prints_parses_and_clones():
    """Input names and roles and donations are fields of the graph: printed, parsed, cloned,
    part of equality, checked by verify."""
    text = """graph step(%0:f32[2] x, %1:f32[2] state fc.weight, %2:f32[] captured "cfg['lr']"):
  %3:f32[2] = sub(%1, %0)
  return %3, %3
  donate outputs[1] -> inputs[1]"""
    g = parse(text)
    assert g.input_names == ["x", "fc.weight", "cfg['lr']"]
    assert g.input_roles == ["arg", "state", "captured"]
    assert g.donations == {1: 1}
    assert str(g) == text and g.clone() == g and g.verify(infer_node)
    assert parse(text.replace("donate outputs[1] -> inputs[1]", "")) != g
    g.donations = {1: 2}
    with pytest.raises(VerifyError, match="does not fit input 2"):
        g.verify(infer_node)
    g.donations = {5: 0}
    with pytest.raises(VerifyError, match="out of range"):
        g.verify(infer_node)


def test_a_traced_graph_names_its_inputs_and_states():
    model = gc.nn.Linear(2, 1)

    @gc.trace
    def step(x):
        return model(x).sum()

    step(np.ones((3, 2), np.float32))
    g = step.graph
    assert g.input_names[0] == "x" and g.input_roles[0] == "arg"
    assert set(g.input_roles[1:]) == {"state"} and len(g.input_names) == 3
    assert parse(str(g)) == g


# any text a user can put into a name or a string attribute, including the text form's own syntax
AWKWARD = ["state", "arg", "captured", "state.x", "captured.w", "arg.b", "args[0]", "", " ", "a b", "a'b", 'a"b',
           "a'\"b", "a\\b", "a\nb", "é", "x²", "\u2028", ")", ",", "a):", "%1:f32[3]", "a %1:f32[3] b", "a   # b",
           "x {", "}", "graph", "return", "donate outputs[0] -> inputs[0]"]


@pytest.mark.parametrize("role", ["arg", "state", "captured"])
def test_any_input_name_survives_the_text_form(role):
    """A name is printed bare only when it cannot be misread (``state.x`` is not the role
    ``state`` with the name ``.x``; an empty name is not no name)."""
    for name in AWKWARD:
        g = Graph(name="f")
        a = g.add_input(TensorType((3,), "float32"), name, role)
        b = g.add_input(TensorType((), "float64"), "y")
        g.outputs = [g.add_node("add", [a, a], {}, [a.type]).output, b]
        again = parse(str(g))
        assert (again.input_names, again.input_roles) == ([name, "y"], [role, "arg"]), (name, str(g))
        assert again == g and again.verify(infer_node)


def test_string_attributes_and_graph_names_survive_the_text_form():
    """gc.print's format is the user's text: '%1', '   # ', braces and quotes in it are not syntax.
    A graph's name need not be a word (a function renamed to 'my-fn')."""
    for text in AWKWARD:
        fmt = text.replace("{", "{{").replace("}", "}}") + " {}"

        def f(x, fmt=fmt):
            gc.print(fmt, x)
            return x + 1
        g = raw_graph(f, np.ones(2))
        g.name = text or "f"
        again = parse(str(g))
        assert again.name == g.name and again.nodes[0].attrs["fmt"] == fmt, (fmt, str(g))
        assert again == g and [n.loc for n in again.nodes] == [n.loc for n in g.nodes]


def test_the_header_is_read_whole():
    """Text the parser cannot place in the header is an error, never silently dropped."""
    for params in ["%0:f32[3] x y", "%0:f32[3] stat x", "%0:f32[3]; %1:f32[]", "%0:f32[3] 'x"]:
        with pytest.raises(ValueError, match="cannot read the inputs of graph f"):
            parse(f"graph f({params}):\n  return %0")
    g = parse("graph f( %0:f32[3] , %1:f32[] state 'a,b' ):\n  return %1")
    assert g.input_names == [None, "a,b"] and g.input_roles == ["arg", "state"]


def test_verify_rejects_malformed_metadata():
    g = parse("graph f(%0:f32[2] state w, %1:f32[2] state v):\n  %2:f32[2] = neg(%0)\n  return %2, %2")
    for change, message in [(lambda g: g.input_roles.__setitem__(0, "param"), "input 0 has role 'param'"),
                            (lambda g: g.input_names.__setitem__(1, 3), "input 1's name is a int"),
                            (lambda g: g.donations.update({0: 0, 1: 0}), "outputs 0 and 1 are both donated input 0"),
                            (lambda g: g.donations.update({"0": 1}), "is not output position -> input position"),
                            (lambda g: g.input_names.pop(), "2 inputs, but 1 names")]:
        bad = g.clone()
        change(bad)
        with pytest.raises(VerifyError, match=re.escape(message)):
            bad.verify(infer_node)


def test_every_pass_keeps_regions_and_declared_metadata():
    """Called on its own (not only through the manager), each pass returns a graph with the
    input names, roles and donations of its input; CSE never merges nodes whose regions differ,
    and constant folding leaves a region node to the interpreter."""
    from graphc.interpret import interpret
    from graphc.passes import constfold, cse, dce, fusion, simplify

    g = parse("""graph f(%0:f64[3] x, %1:f64[3] state w):
  %2:f64[] = constant(value=array(2.0, f64))
  %3:f64[3] = fused(%0) {
    graph body(%0:f64[3]):
      %1:f64[3] = exp(%0)
      return %1
  }
  %4:f64[3] = fused(%0) {
    graph body(%0:f64[3]):
      %1:f64[3] = neg(%0)
      return %1
  }
  %5:f64[3] = constant(value=array([1.0, 2.0, 3.0], f64))
  %6:f64[3] = fused(%5, %2) {
    graph body(%0:f64[3], %1:f64[]):
      %2:f64[3] = mul(%0, %1)
      return %2
  }
  %7:f64[3] = add(%3, %4)
  %8:f64[3] = add(%7, %6)
  %9:f64[3] = sub(%1, %8)
  return %8, %9
  donate outputs[1] -> inputs[1]""")
    x, w = np.array([0.5, -1.0, 2.0]), np.ones(3)
    want = interpret(g, x, w)
    for name, run in [("cse", cse.run), ("dce", dce.run), ("constfold", constfold.run),
                      ("simplify", simplify.run), ("fusion", fusion.run)]:
        h = run(g)
        h.verify(infer_node)
        assert (h.input_names, h.input_roles, h.donations) == (["x", "w"], ["arg", "state"], {1: 1}), name
        for a, b in zip(interpret(h, x, w), want):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_fused_body_computes_each_output_once():
    """What the loop nest of a fused group stores: a body returning an operand as is, or one value
    twice, is rejected by verify (the cpu backend returned uninitialized memory or raised KeyError)."""
    text = """graph f(%0:f64[3], %1:f64[3]):
  %2:f64[3], %3:f64[3] = fused(%0, %1) {
    graph body(%0:f64[3], %1:f64[3]):
      %2:f64[3] = mul(%0, %1)
      return %2, RESULT
  }
  return %2, %3"""
    with pytest.raises(VerifyError, match="fused body output 1 is not computed in the body"):
        parse(text.replace("RESULT", "%1")).verify(infer_node)
    with pytest.raises(VerifyError, match=r"fused body returns one value twice \(outputs 0 and 1\)"):
        parse(text.replace("RESULT", "%2")).verify(infer_node)
    parse(text.replace("return %2, RESULT", "%3:f64[3] = neg(%1)\n      return %2, %3")).verify(infer_node)


def test_constants_round_trip_bit_for_bit():
    """Every special value keeps its bits through the text form, the sign of a NaN included."""
    for dtype in ("float32", "float64"):
        a = np.array([[-np.nan, np.nan, -0.0], [np.inf, -np.inf, np.finfo(dtype).smallest_subnormal]], dtype)
        g = Graph(name="f")
        g.outputs = [g.add_node("constant", [], {"value": Const(a)}, [TensorType((2, 3), dtype)]).output]
        again = parse(str(g)).nodes[0].attrs["value"].array
        assert again.tobytes() == a.tobytes() and again.dtype == a.dtype, str(g)


@pytest.mark.parametrize("body,message", [
    ("%1:f64[3,2] = transpose(%0, perm=(1, 0))\n      %2:f64[3,2] = exp(%1)\n      return %2",
     "elementwise ops and reductions only, not transpose"),
    (("%1:f64[2] = sum(%0, axes=(1,), keepdims=False)\n      %2:f64[3] = sum(%0, axes=(0,), keepdims=False)"
      "\n      return %1, %2"), r"reduce different axes \(\(1,\) and \(0,\)\)"),
    ("%1:f64[2] = sum(%0, axes=(1,), keepdims=False)\n      %2:f64[2] = exp(%1)\n      return %2",
     "exp in a fused body reads a reduction of the same body"),
    (("%1:f64[2,3] = exp(%0)\n      %2:f64[] = sum(%1, axes=(0, 1), keepdims=False)\n      %3:f64[] = neg(%2)"
      "\n      return %3"), "neg in a fused body reads a reduction"),
])
def test_a_fused_body_is_one_loop_nest(body, message):
    """verify rejects the fused bodies no loop nest computes (the cpu backend raised TypeError or
    KeyError on them, or returned uninitialized memory for reductions over different axes)."""
    outs = re.findall(r"return (.*)", body)[0].split(", ")
    types = [re.search(re.escape(o) + r":(\S+) =", body).group(1) for o in outs]
    text = (f"graph f(%0:f64[2,3]):\n  {', '.join(f'%{k + 1}:{t}' for k, t in enumerate(types))} = fused(%0) {{\n"
            f"    graph body(%0:f64[2,3]):\n      {body}\n  }}\n  return %1")
    with pytest.raises(VerifyError, match=message):
        parse(text).verify(infer_node)


def test_a_constant_holds_a_c_ordered_copy():
    """Passes read a constant's bytes (rewrite.splat): a transposed array made a ValueError there
    ('the last axis must be contiguous'), which the pass manager hid by skipping the pass."""
    from graphc.passes.rewrite import splat

    user = np.arange(6.0).reshape(2, 3).T
    c = Const(user)
    assert c.array.flags.c_contiguous and not c.array.flags.writeable and np.array_equal(c.array, user)
    user[0, 0] = 99.0
    assert c.array[0, 0] == 0.0 and c == Const(np.arange(6.0).reshape(2, 3).T)
    g = Graph(name="f")
    g.outputs = [g.add_node("constant", [], {"value": Const(np.full((3, 2), 2.0).T)}, [TensorType((2, 3), "float64")]).output]
    assert splat(g.outputs[0]) == 2.0


def test_verify_rejects_a_region_that_is_not_a_graph():
    g = parse("graph f(%0:f64[3]):\n  %1:f64[3] = fused(%0) {\n    graph body(%0:f64[3]):\n"
              "      %1:f64[3] = exp(%0)\n      return %1\n  }\n  return %1")
    g.nodes[0].regions = [("the old tuple encoding",)]
    with pytest.raises(VerifyError, match="a region is a Graph, not a tuple"):
        g.verify(infer_node)
