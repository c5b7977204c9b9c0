"""The graph IR: typed values, nodes in SSA order, a printer and parser.

A graph prints as readable code, one node per line with the user's line::

    graph f(%0:f32[3,4], %1:f32[4,5]):
      %2:f32[3,5] = matmul(%0, %1)   # demo.py:12
      %3:f32[3] = sum(%2, axes=(1,), keepdims=False)   # demo.py:12
      return %3

``parse(str(g)) == g`` for every graph; two graphs are equal when they print
the same (value numbering is positional, so it is canonical).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np

from graphc.errors import VerifyError

# dtype name -> short name used in the text form
DTYPES = {"bool": "bool", "int32": "i32", "int64": "i64", "float32": "f32", "float64": "f64"}
SHORT_DTYPES = {short: name for name, short in DTYPES.items()}


@dataclass(frozen=True)
class TensorType:
    """Static type of a value: a shape of ints and a NumPy dtype name."""

    shape: tuple
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise TypeError(f"graphc does not support dtype {self.dtype!r}; supported: {', '.join(DTYPES)}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def __str__(self):
        return f"{DTYPES[self.dtype]}[{','.join(map(str, self.shape))}]"


class Const:
    """A constant array as a hashable attribute (hash and equality by content)."""

    __slots__ = ("array", "_key")

    def __init__(self, array):
        self.array = np.array(array)  # private copy: later edits of the user's array cannot leak in
        self.array.setflags(write=False)
        self._key = (self.array.dtype.str, self.array.shape, self.array.tobytes())

    def __eq__(self, other):
        return isinstance(other, Const) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        shape = f", {self.array.shape!r}" if self.array.size == 0 else ""  # [] alone loses (0, 3)
        return f"array({self.array.tolist()!r}, {DTYPES[self.array.dtype.name]}{shape})"


class Value:
    """An SSA edge: produced once (by a node or as a graph input), used many times."""

    __slots__ = ("type", "producer")

    def __init__(self, type: TensorType, producer: "Node | None" = None):
        self.type = type
        self.producer = producer

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self):
        return f"Value({self.type})"


class Node:
    """One operation: ``outputs = op(*inputs, **attrs)`` at the user's source line ``loc``."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "loc")

    def __init__(self, op: str, inputs, attrs: dict, out_types, loc: str | None = None):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.outputs = [Value(t, self) for t in out_types]
        self.loc = loc

    @property
    def output(self) -> Value:
        (out,) = self.outputs
        return out

    def attr_key(self) -> tuple:
        """Attributes as a hashable, order-independent key (for CSE and caching)."""
        return tuple(sorted(self.attrs.items()))

    def __repr__(self):
        return f"Node({self.op}, {[str(v.type) for v in self.inputs]} -> {[str(v.type) for v in self.outputs]})"


class Graph:
    """Inputs, nodes in topological order, outputs."""

    def __init__(self, inputs=(), nodes=(), outputs=(), name: str = "graph"):
        self.inputs = list(inputs)
        self.nodes = list(nodes)
        self.outputs = list(outputs)
        self.name = name

    def add_input(self, type: TensorType) -> Value:
        value = Value(type)
        self.inputs.append(value)
        return value

    def add_node(self, op, inputs, attrs, out_types, loc=None) -> Node:
        node = Node(op, inputs, attrs, out_types, loc)
        self.nodes.append(node)
        return node

    def clone(self) -> "Graph":
        """A copy with fresh nodes and values, for passes that edit in place."""
        mapping = {}
        g = Graph(name=self.name)
        for v in self.inputs:
            mapping[v] = g.add_input(v.type)
        for n in self.nodes:
            new = g.add_node(n.op, [mapping[v] for v in n.inputs], n.attrs, [v.type for v in n.outputs], n.loc)
            mapping.update(zip(n.outputs, new.outputs))
        g.outputs = [mapping[v] for v in self.outputs]
        return g

    def users(self) -> dict:
        """Map each value to the nodes that read it (graph outputs are not listed)."""
        users = {}
        for node in self.nodes:
            for v in node.inputs:
                users.setdefault(v, []).append(node)
        return users

    # -- text form -----------------------------------------------------------------
    def value_names(self) -> dict:
        names = {}
        for v in self.inputs:
            names[v] = f"%{len(names)}"
        for node in self.nodes:
            for v in node.outputs:
                names[v] = f"%{len(names)}"
        return names

    def format_node(self, node: Node, names: dict) -> str:
        outs = ", ".join(f"{names[v]}:{v.type}" for v in node.outputs)
        args = [names.get(v, "%?") for v in node.inputs]
        attrs = dict(node.attrs)
        body = attrs.pop("body", None) if node.op == "fused" else None
        fused_outputs = attrs.pop("outputs", None) if body is not None else None
        args += [f"{k}={_format_attr(a)}" for k, a in sorted(attrs.items())]
        text = f"{outs} = {node.op}({', '.join(args)})"
        if body is not None:
            text += " {"
        if node.loc:
            text += f"   # {node.loc}"
        if body is not None:  # a fused group prints its body as a block, values named $k
            text += "".join("\n      " + line for line in _format_body(body, fused_outputs, len(node.inputs)))
            text += "\n  }"
        return text

    def __str__(self):
        names = self.value_names()
        params = ", ".join(f"{names[v]}:{v.type}" for v in self.inputs)
        lines = [f"graph {self.name}({params}):"]
        lines += ["  " + self.format_node(node, names) for node in self.nodes]
        lines.append("  return " + ", ".join(names.get(v, "%?") for v in self.outputs))
        return "\n".join(lines)

    __repr__ = __str__

    def __eq__(self, other):
        return isinstance(other, Graph) and str(self) == str(other)

    __hash__ = object.__hash__

    # -- checks and views ----------------------------------------------------------
    def verify(self) -> "Graph":
        """Check SSA form, topological order and every node's types; raise VerifyError."""
        from graphc.ops import registry

        defined = set()
        for v in self.inputs:
            if v in defined:
                raise VerifyError(f"graph input {v} appears twice")
            defined.add(v)
        names = self.value_names()
        for node in self.nodes:
            where = self.format_node(node, names)
            for v in node.inputs:
                if v not in defined:
                    raise VerifyError(f"{where}: operand used before it is defined (or never defined)")
            try:
                expected = registry.infer_types(node.op, [v.type for v in node.inputs], node.attrs)
            except Exception as exc:  # the op's own shape error, re-raised as an IR violation
                raise VerifyError(f"{where}: {exc}") from exc
            got = [v.type for v in node.outputs]
            if expected != got:
                raise VerifyError(f"{where}: output types {list(map(str, got))}, "
                                  f"but the op's rule gives {list(map(str, expected))}")
            for v in node.outputs:
                if v in defined:
                    raise VerifyError(f"{where}: value defined twice")
                if v.producer is not node:
                    raise VerifyError(f"{where}: output's producer link is wrong")
                defined.add(v)
        for v in self.outputs:
            if v not in defined:
                raise VerifyError(f"graph output {v} is never defined")
        return self

    def to_networkx(self):
        """A networkx DiGraph: one vertex per node (by index) and per input ('input', i)."""
        import networkx as nx

        g = nx.DiGraph()
        names = self.value_names()
        source = {}
        for i, v in enumerate(self.inputs):
            g.add_node(("input", i), op="input", label=f"{names[v]}:{v.type}")
            source[v] = ("input", i)
        for i, node in enumerate(self.nodes):
            g.add_node(i, op=node.op, label=self.format_node(node, names), loc=node.loc)
            for v in node.inputs:
                g.add_edge(source[v], i, type=str(v.type))
            for v in node.outputs:
                source[v] = i
        for k, v in enumerate(self.outputs):
            g.add_node(("output", k), op="output", label=f"return {names[v]}")
            g.add_edge(source[v], ("output", k), type=str(v.type))
        return g

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph (render with ``dot -Tsvg``)."""
        g = self.to_networkx()
        ids = {n: f"n{k}" for k, n in enumerate(g.nodes)}
        lines = [f"digraph {_dot_quote(self.name)} {{", "  node [shape=box, fontname=monospace];"]
        for n, data in g.nodes(data=True):
            shape = "ellipse" if data["op"] in ("input", "output") else "box"
            lines.append(f"  {ids[n]} [label={_dot_quote(data['label'])}, shape={shape}];")
        for a, b, data in g.edges(data=True):
            lines.append(f"  {ids[a]} -> {ids[b]} [label={_dot_quote(data['type'])}];")
        lines.append("}")
        return "\n".join(lines)


def _format_body(body, outputs, n_operands) -> list:
    """A fused node's body, one line per node: ``$3:f32[8] = add($0, $1)`` ... ``yield $3``."""
    lines, count = [], n_operands
    for op, refs, attr_items, out_types in body:
        lhs = ", ".join(f"${count + i}:{TensorType(tuple(shape), dtype)}" for i, (shape, dtype) in enumerate(out_types))
        args = [f"${r}" for r in refs] + [f"{k}={_format_attr(a)}" for k, a in attr_items]
        lines.append(f"{lhs} = {op}({', '.join(args)})")
        count += len(out_types)
    lines.append("yield " + ", ".join(f"${r}" for r in outputs))
    return lines


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_attr(a) -> str:
    if isinstance(a, float):
        return repr(a)  # 'nan', 'inf' and exact round-trip digits
    return repr(a)


# -- parser -------------------------------------------------------------------------
_HEADER = re.compile(r"^graph\s+(\w+)\((.*)\):\s*$")
_TYPED = re.compile(r"%(\d+):(\w+)\[([\d,\s]*)\]")


def _parse_type(dtype_short: str, dims: str) -> TensorType:
    if dtype_short not in SHORT_DTYPES:
        raise ValueError(f"unknown dtype {dtype_short!r}")
    shape = tuple(int(d) for d in dims.split(",") if d.strip())
    return TensorType(shape, SHORT_DTYPES[dtype_short])


def _literal(node):
    """Evaluate an attribute expression: literals, tuples, nan/inf, array(list, f32)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return float(node.id)
    if isinstance(node, ast.Name) and node.id in SHORT_DTYPES:
        return node.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "array":
        data, dtype, *shape = (_literal(a) for a in node.args)
        array = np.array(data, dtype=SHORT_DTYPES[dtype])
        return Const(array.reshape(shape[0]) if shape else array)
    raise ValueError(f"cannot read attribute {ast.unparse(node)!r}")


def _read_assignment(line: str, sigil: str, lineno: int):
    """``<sigil>k:T, ... = op(<sigil>i, ..., key=value) [{]   # loc``, read apart."""
    code, _, loc = line.partition("   # ")
    code = code.strip()
    opens_block = code.endswith("{")
    if opens_block:
        code = code[:-1].rstrip()
    lhs, _, rhs = code.partition(" = ")
    mark = re.escape(sigil)
    outs = re.findall(mark + r"(\d+):(\w+)\[([\d,\s]*)\]", lhs)
    # the op name is read apart: 'and', 'or', 'not' are Python keywords
    m_call = re.fullmatch(r"\s*([A-Za-z_]\w*)\((.*)\)\s*", rhs)
    call = m_call and ast.parse("_op(" + re.sub(mark + r"(\d+)", r"_v\1", m_call.group(2)) + ")",
                                mode="eval").body
    if not isinstance(call, ast.Call) or not outs or not all(isinstance(a, ast.Name) for a in call.args):
        raise ValueError(f"line {lineno}: cannot read {line!r}")
    attrs = {}
    for kw in call.keywords:
        v = _literal(kw.value)
        attrs[kw.arg] = tuple(v) if isinstance(v, list) else v
    types = [_parse_type(d, dims) for _, d, dims in outs]
    refs = [a.id[2:] for a in call.args]
    return [n for n, _, _ in outs], types, m_call.group(1), refs, attrs, loc.strip() or None, opens_block


def _read_body(lines, k):
    """The block of a fused node from ``lines[k]`` on: returns its attrs and the next line index."""
    body = []
    while k < len(lines):
        line, lineno = lines[k].strip(), k + 1
        k += 1
        if line.startswith("yield"):
            outputs = tuple(int(r) for r in re.findall(r"\$(\d+)", line))
            if k >= len(lines) or lines[k].strip() != "}":
                raise ValueError(f"line {k + 1}: expected '}}' closing the fused block")
            return {"body": tuple(body), "outputs": outputs}, k + 1
        _, types, op, refs, attrs, _, _ = _read_assignment(line, "$", lineno)
        body.append((op, tuple(int(r) for r in refs), tuple(sorted(attrs.items())),
                     tuple((t.shape, t.dtype) for t in types)))
    raise ValueError("fused block has no 'yield' line")


def parse(text: str) -> Graph:
    """Read the text form back into a Graph (inverse of ``str(graph)``)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    m = _HEADER.match(lines[0].strip())
    if not m:
        raise ValueError(f"expected 'graph name(...):', got {lines[0]!r}")
    values = {}
    graph = Graph(name=m.group(1))
    for num, dtype, dims in _TYPED.findall(m.group(2)):
        values[num] = graph.add_input(_parse_type(dtype, dims))
    k = 1
    while k < len(lines):
        line, lineno = lines[k].strip(), k + 1
        k += 1
        if line.startswith("return"):
            refs = re.findall(r"%(\d+)", line)
            graph.outputs = [values[r] for r in refs]
            return graph
        nums, types, op, refs, attrs, loc, opens_block = _read_assignment(line, "%", lineno)
        if opens_block:
            block, k = _read_body(lines, k)
            attrs.update(block)
        try:
            inputs = [values[r] for r in refs]
        except KeyError as exc:
            raise ValueError(f"line {lineno}: operand %{exc.args[0]} is not defined") from None
        node = graph.add_node(op, inputs, attrs, types, loc)
        for num, v in zip(nums, node.outputs):
            values[num] = v
    raise ValueError("graph text has no 'return' line")
