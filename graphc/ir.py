"""The graph IR: typed values, nodes in SSA order, a printer and parser.

A graph prints as readable code, one node per line with the user's line::

    graph f(%0:f32[3,4], %1:f32[4,5]):
      %2:f32[3,5] = matmul(%0, %1)   # demo.py:12
      %3:f32[3] = sum(%2, axes=(1,), keepdims=False)   # demo.py:12
      return %3

A node may own nested graphs, its *regions* (a fused group's body today, loop
and branch bodies next). A region is a closed Graph: it reads only its own inputs,
which the op binds (for ``fused``, the node's operands). Regions print as indented
blocks and parse back::

      %5:f32[8] = fused(%1, %2) {   # demo.py:14
        graph body(%0:f32[8], %1:f32[8]):
          %2:f32[8] = mul(%0, %1)
          return %2
      }

Everything a later stage needs about a graph is a declared field, printed and
parsed: each input's name and role (``arg``, ``state`` or ``captured``) in the
header, and *donations* (an output that may be written into an input's buffer:
a State's update) after the ``return`` line. The IR knows no ops: ``verify``
takes the type rule from its caller.

``parse(str(g)) == g`` for every graph; two graphs are equal when they print
the same (value numbering is positional, so it is canonical).
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

import numpy as np

from graphc.errors import VerifyError

# dtype name -> short name used in the text form
DTYPES = {"bool": "bool", "int32": "i32", "int64": "i64", "float32": "f32", "float64": "f64"}
SHORT_DTYPES = {short: name for name, short in DTYPES.items()}
SYMBOL = re.compile(r"[A-Za-z_]\w{0,63}")  # a symbolic dimension's name ...
_NOT_SYMBOLS = frozenset(SHORT_DTYPES) | {"nan", "inf", "array", "True", "False", "None"}  # ... not these


def is_symbol(name) -> bool:
    """Whether ``name`` can name a symbolic dimension."""
    return isinstance(name, str) and bool(SYMBOL.fullmatch(name)) and name not in _NOT_SYMBOLS


class Sym(str):
    """A symbolic dimension's name (``B``) where an int would be: in a type's shape, or in an
    attribute that holds a size (a reshape's target). Prints bare, so attributes read back."""

    __slots__ = ()

    def __repr__(self):
        return str.__str__(self)

    def _no_arithmetic(self, *_):
        raise TypeError(f"symbolic dimension {str.__str__(self)} used in arithmetic: graphc has no "
                        f"symbolic shape arithmetic (a str would repeat or concatenate silently)")

    __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _no_arithmetic


@dataclass(frozen=True)
class TensorType:
    """Static type of a value: a shape and a NumPy dtype name.

    A dim is an int, or a ``str`` naming a *symbolic* dimension (``f32[B,64]``): the graph
    holds for every value of ``B`` (graphc/symbolic.py makes such graphs and instantiates
    them; the runtime also tries the passes and a backend with ``symbolic_dims`` on the
    symbolic graph itself, which either handle a symbol exactly or raise).
    """

    shape: tuple
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise TypeError(f"graphc does not support dtype {self.dtype!r}; supported: {', '.join(DTYPES)}")
        if any(isinstance(d, str) for d in self.shape):
            for d in self.shape:
                if isinstance(d, str) and not is_symbol(d):
                    raise TypeError(f"a symbolic dimension is a name like 'B', got {d!r}")
            object.__setattr__(self, "shape", tuple(Sym(d) if isinstance(d, str) else d for d in self.shape))

    @property
    def symbolic(self) -> bool:
        """Whether a dim is a symbol."""
        return any(isinstance(d, str) for d in self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        if self.symbolic:
            raise TypeError(f"{self} has a symbolic dimension: its size is known only at a call")
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
        self.array = np.array(array, order="C")  # private copy (later edits of the user's array cannot
        # leak in), C-ordered: passes read constants' bytes (a transposed array kept its F order)
        self.array.setflags(write=False)
        self._key = (self.array.dtype.str, self.array.shape, self.array.tobytes())

    def __eq__(self, other):
        return isinstance(other, Const) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        shape = f", {self.array.shape!r}" if self.array.size == 0 else ""  # [] alone loses (0, 3)
        return f"array({_format_value(self.array.tolist())}, {DTYPES[self.array.dtype.name]}{shape})"


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
    """One operation: ``outputs = op(*inputs, **attrs)`` at the user's source line ``loc``.

    ``regions`` are the nested graphs the op runs (a fused body, a loop body): closed
    graphs whose inputs the op binds.
    """

    __slots__ = ("op", "inputs", "attrs", "outputs", "loc", "regions")

    def __init__(self, op: str, inputs, attrs: dict, out_types, loc: str | None = None, regions=()):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.outputs = [Value(t, self) for t in out_types]
        self.loc = loc
        self.regions = list(regions)

    @property
    def output(self) -> Value:
        (out,) = self.outputs
        return out

    def attr_key(self) -> tuple:
        """Attributes as a hashable, order-independent key (for CSE and caching)."""
        return tuple(sorted(self.attrs.items()))

    def __repr__(self):
        return f"Node({self.op}, {[str(v.type) for v in self.inputs]} -> {[str(v.type) for v in self.outputs]})"


ROLES = ("arg", "state", "captured")  # an argument; a State (Parameter, buffer); a captured array


class Graph:
    """Inputs, nodes in topological order, outputs, and the declared facts about them.

    * ``input_names``: per input, the user's name for it (``x``, ``fc1.weight``) or None;
    * ``input_roles``: per input, one of ``ROLES`` (what the runtime passes there);
    * ``donations``: output position -> input position, an output the caller lets the
      compiled code write into that input's own buffer (a State's update, as jax.jit's
      ``donate_argnums``).

    All three print and parse with the graph and survive ``clone``; passes keep the
    positions of inputs and outputs, so they hold for every graph a pass returns.
    """

    def __init__(self, inputs=(), nodes=(), outputs=(), name: str = "graph"):
        self.inputs = list(inputs)
        self.nodes = list(nodes)
        self.outputs = list(outputs)
        self.name = name
        self.input_names: list = [None] * len(self.inputs)
        self.input_roles: list = ["arg"] * len(self.inputs)
        self.donations: dict = {}

    def add_input(self, type: TensorType, name: str | None = None, role: str = "arg") -> Value:
        if role not in ROLES:
            raise ValueError(f"unknown input role {role!r}; expected one of {', '.join(ROLES)}")
        value = Value(type)
        self.inputs.append(value)
        self.input_names.append(name)
        self.input_roles.append(role)
        return value

    def add_node(self, op, inputs, attrs, out_types, loc=None, regions=()) -> Node:
        node = Node(op, inputs, attrs, out_types, loc, regions)
        self.nodes.append(node)
        return node

    def copy_meta(self, other: "Graph") -> "Graph":
        """Take ``other``'s declared facts (same input and output positions); returns self."""
        self.input_names = list(other.input_names)
        self.input_roles = list(other.input_roles)
        self.donations = dict(other.donations)
        return self

    def clone(self) -> "Graph":
        """A copy with fresh nodes, values and regions (a pass edits the copy, never its input)."""
        mapping = {}
        g = Graph(name=self.name)
        for v in self.inputs:
            mapping[v] = g.add_input(v.type)
        for n in self.nodes:
            new = g.add_node(n.op, [mapping[v] for v in n.inputs], n.attrs, [v.type for v in n.outputs], n.loc,
                             [r.clone() for r in n.regions])
            mapping.update(zip(n.outputs, new.outputs))
        g.outputs = [mapping[v] for v in self.outputs]
        return g.copy_meta(self)

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
        """One node's text: ``%4:f32[64,256] = matmul(%1, %2)   # loc``, its regions as indented blocks."""
        outs = ", ".join(f"{names[v]}:{v.type}" for v in node.outputs)
        args = [names.get(v, "%?") for v in node.inputs]
        args += [f"{k}={_format_attr(a)}" for k, a in sorted(node.attrs.items())]
        text = f"{outs} = {node.op}({', '.join(args)})"
        if node.regions:
            text += " {"
        if node.loc:
            text += f"   # {node.loc}"
        for region in node.regions:
            text += "".join("\n    " + line for line in str(region).splitlines())
        if node.regions:
            text += "\n  }"
        return text

    def format_input(self, k: int, names: dict) -> str:
        v = self.inputs[k]
        text = f"{names[v]}:{v.type}"
        if self.input_roles[k] != "arg":
            text += f" {self.input_roles[k]}"
        name = self.input_names[k]
        if name is not None:  # bare when it reads as a name (x, fc1.weight), else quoted
            text += f" {name}" if _BARE_NAME.fullmatch(name) and name not in ROLES else f" {name!r}"
        return text

    def __str__(self):
        names = self.value_names()
        params = ", ".join(self.format_input(k, names) for k in range(len(self.inputs)))
        name = self.name if re.fullmatch(r"\w+", self.name) else repr(self.name)  # ('my-fn': quoted)
        lines = [f"graph {name}({params}):"]
        lines += ["  " + self.format_node(node, names) for node in self.nodes]
        lines.append("  return " + ", ".join(names.get(v, "%?") for v in self.outputs))
        lines += [f"  donate outputs[{j}] -> inputs[{k}]" for j, k in sorted(self.donations.items())]
        return "\n".join(lines)

    __repr__ = __str__

    def __eq__(self, other):
        return isinstance(other, Graph) and str(self) == str(other)

    __hash__ = object.__hash__

    # -- checks and views ----------------------------------------------------------
    def verify(self, infer) -> "Graph":
        """Check SSA form, topological order, regions and every node's types; raise VerifyError.

        ``infer(node) -> [TensorType, ...]`` is the type rule (the IR knows no ops:
        ``graphc.ops.registry.verify`` passes the registry's).
        """
        defined = set()
        for v in self.inputs:
            if v in defined:
                raise VerifyError(f"graph input {v} appears twice")
            defined.add(v)
        if not (len(self.input_names) == len(self.input_roles) == len(self.inputs)):
            raise VerifyError(f"graph {self.name}: {len(self.inputs)} inputs, but {len(self.input_names)} "
                              f"names and {len(self.input_roles)} roles")
        for k, (name, role) in enumerate(zip(self.input_names, self.input_roles)):
            if role not in ROLES:
                raise VerifyError(f"graph {self.name}: input {k} has role {role!r}; expected one of {', '.join(ROLES)}")
            if name is not None and not isinstance(name, str):
                raise VerifyError(f"graph {self.name}: input {k}'s name is a {type(name).__name__}, not a string")
        donated = {}
        for j, k in self.donations.items():
            if not (isinstance(j, int) and isinstance(k, int)):
                raise VerifyError(f"graph {self.name}: donation {j!r} -> {k!r} is not output position -> "
                                  f"input position")
            if k in donated:  # two outputs written into one buffer: the second overwrites the first
                raise VerifyError(f"graph {self.name}: outputs {donated[k]} and {j} are both donated input {k}")
            donated[k] = j
            if not (0 <= j < len(self.outputs) and 0 <= k < len(self.inputs)):
                raise VerifyError(f"graph {self.name}: donation outputs[{j}] -> inputs[{k}] is out of range")
            if self.outputs[j].type != self.inputs[k].type:
                raise VerifyError(f"graph {self.name}: donated output {j} ({self.outputs[j].type}) "
                                  f"does not fit input {k} ({self.inputs[k].type})")
        names = self.value_names()
        for node in self.nodes:
            where = self.format_node(node, names).split("\n")[0]
            for v in node.inputs:
                if v not in defined:
                    raise VerifyError(f"{where}: operand used before it is defined (or never defined)")
            for region in node.regions:
                if not isinstance(region, Graph):
                    raise VerifyError(f"{where}: a region is a Graph, not a {type(region).__name__}")
                try:
                    region.verify(infer)
                except VerifyError as exc:
                    raise VerifyError(f"{where}: in its region {region.name}: {exc}") from None
            try:
                expected = infer(node)
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


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_attr(a) -> str:
    return _format_value(a)


def _format_value(a) -> str:
    """repr, except that a NaN with its sign bit set is ``-nan`` (repr writes ``nan`` for both,
    and the sign is visible to np.signbit and np.copysign)."""
    if isinstance(a, float):
        return "-nan" if math.isnan(a) and math.copysign(1.0, a) < 0 else repr(a)  # exact round-trip digits
    if isinstance(a, (list, tuple)):
        items = ", ".join(map(_format_value, a))
        if isinstance(a, list):
            return f"[{items}]"
        return f"({items},)" if len(a) == 1 else f"({items})"
    return repr(a)


# -- parser -------------------------------------------------------------------------
_HEADER = re.compile(r"^graph\s+(\w+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\((.*)\):\s*$")
_BARE_NAME = re.compile(r"[A-Za-z_][\w.]*")
# one input of the header: ``%k:T [role] [name]``; a role word is whole (``state.x`` is a name)
_INPUT = re.compile(r"\s*%(\d+):(\w+)\[([\w,\s]*)\](?:\s+(arg|state|captured)(?![\w.]))?"
                    r"(?:\s+([A-Za-z_][\w.]*|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"))?\s*(?:,|$)")
_DONATE = re.compile(r"^donate\s+outputs\[(\d+)\]\s*->\s*inputs\[(\d+)\]\s*$")


def _parse_type(dtype_short: str, dims: str) -> TensorType:
    if dtype_short not in SHORT_DTYPES:
        raise ValueError(f"unknown dtype {dtype_short!r}")
    shape = tuple(int(d) if d.strip().isdigit() else d.strip() for d in dims.split(",") if d.strip())
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
    if isinstance(node, ast.Name) and is_symbol(node.id):
        return Sym(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "array":
        data, dtype, *shape = (_literal(a) for a in node.args)
        array = np.array(data, dtype=SHORT_DTYPES[dtype])
        return Const(array.reshape(shape[0]) if shape else array)
    raise ValueError(f"cannot read attribute {ast.unparse(node)!r}")


# a string literal as repr writes it: what the scanners below step over whole
_STRING = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""


def _operand_name(m) -> str:
    return m.group(1) or f"_v{m.group(2)}"


def _split_comment(line: str):
    """``code   # loc`` -> (code, loc): the first ``   # `` outside a string attribute."""
    for m in re.finditer(_STRING + r"|   # ", line):
        if m.group() == "   # ":
            return line[:m.start()], line[m.end():]
    return line, ""


def _read_assignment(line: str, sigil: str, lineno: int):
    """``<sigil>k:T, ... = op(<sigil>i, ..., key=value) [{]   # loc``, read apart."""
    code, loc = _split_comment(line)
    code = code.strip()
    opens_block = code.endswith("{")
    if opens_block:
        code = code[:-1].rstrip()
    lhs, _, rhs = code.partition(" = ")
    mark = re.escape(sigil)
    outs = re.findall(mark + r"(\d+):(\w+)\[([\w,\s]*)\]", lhs)
    # the op name is read apart: 'and', 'or', 'not' are Python keywords; operands become
    # names _v<k> (string attributes, gc.print's format, may hold '%1' themselves)
    m_call = re.fullmatch(r"\s*([A-Za-z_]\w*)\((.*)\)\s*", rhs)
    try:
        call = m_call and ast.parse("_op(" + re.sub(f"({_STRING})|{mark}(\\d+)", _operand_name, m_call.group(2))
                                    + ")", mode="eval").body
    except SyntaxError:
        call = None
    if not isinstance(call, ast.Call) or not outs or not all(isinstance(a, ast.Name) for a in call.args):
        raise ValueError(f"line {lineno}: cannot read {line!r}")
    attrs = {}
    for kw in call.keywords:
        v = _literal(kw.value)
        attrs[kw.arg] = tuple(v) if isinstance(v, list) else v
    types = [_parse_type(d, dims) for _, d, dims in outs]
    refs = [a.id[2:] for a in call.args]
    return [n for n, _, _ in outs], types, m_call.group(1), refs, attrs, loc.strip() or None, opens_block


def parse(text: str) -> Graph:
    """Read the text form back into a Graph (inverse of ``str(graph)``); lines that are only
    a ``# comment`` are skipped."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError("empty graph text")
    graph, k = _parse_graph(lines, 0)
    if k != len(lines):
        raise ValueError(f"line {k + 1}: unexpected text after the graph: {lines[k].strip()!r}")
    return graph


def _parse_graph(lines, k):
    """The graph whose header is ``lines[k]``; returns it and the index of the line after it."""
    m = _HEADER.match(lines[k].strip())
    if not m:
        raise ValueError(f"line {k + 1}: expected 'graph name(...):', got {lines[k]!r}")
    values = {}
    name = m.group(1)
    graph = Graph(name=ast.literal_eval(name) if name[0] in "'\"" else name)
    params, at = m.group(2), 0
    while at < len(params.rstrip()):  # every input whole, separated by commas: nothing skipped
        m_in = _INPUT.match(params, at)
        if not m_in:
            raise ValueError(f"line {k + 1}: cannot read the inputs of graph {graph.name} "
                             f"from {params[at:]!r}")
        num, dtype, dims, role, name = m_in.groups()
        name = ast.literal_eval(name) if name and name[0] in "'\"" else name  # ('' is a name, quoted)
        values[num] = graph.add_input(_parse_type(dtype, dims), name, role or "arg")
        at = m_in.end()
    k += 1
    while k < len(lines):
        line, lineno = lines[k].strip(), k + 1
        k += 1
        if line.startswith("return"):
            refs = re.findall(r"%(\d+)", line)
            try:
                graph.outputs = [values[r] for r in refs]
            except KeyError as exc:
                raise ValueError(f"line {lineno}: output %{exc.args[0]} is not defined") from None
            while k < len(lines) and _DONATE.match(lines[k].strip()):
                j, i = _DONATE.match(lines[k].strip()).groups()
                graph.donations[int(j)] = int(i)
                k += 1
            return graph, k
        nums, types, op, refs, attrs, loc, opens_block = _read_assignment(line, "%", lineno)
        regions = []
        while opens_block:  # nested graphs up to the closing brace
            if k >= len(lines):
                raise ValueError(f"line {lineno}: the region block of {op} is never closed with '}}'")
            if lines[k].strip() == "}":
                k += 1
                break
            region, k = _parse_graph(lines, k)
            regions.append(region)
        try:
            inputs = [values[r] for r in refs]
        except KeyError as exc:
            raise ValueError(f"line {lineno}: operand %{exc.args[0]} is not defined") from None
        node = graph.add_node(op, inputs, attrs, types, loc, regions)
        for num, v in zip(nums, node.outputs):
            values[num] = v
    raise ValueError(f"graph {graph.name} has no 'return' line")
