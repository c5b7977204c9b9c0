"""Symbolic dimensions: one graph for every batch size.

A *template* is a graph whose types may name a symbol (``f32[B,64]``) and whose
attributes may hold it (``reshape(%0, shape=(B, 64))``). graphc makes one by
tracing the user's function at two probe sizes and *generalizing*: the two
graphs must be the same node for node, and where they differ, they differ by
exactly the probe sizes, which become the symbol. Anything else that changed
with the batch size (a constant ``1 / len(x)``, a shape ``2 * B``) is named as
the reason the function is not generic, with the op and the user's line.

``instantiate`` turns a template back into an ordinary graph for one size and
re-runs every op's shape rule on it: a shape rule that would have decided
differently at that size (a slice ``x[:10]`` probed only below 10) is caught
there, never run. The runtime compiles the template itself where the passes and the
backend can (one compile for every size: graphc/runtime.py, graphc/backend/cpu.py), and
otherwise an instantiated graph per size; either way only at sizes where it instantiates.

Semantics: a template is the function as traced for a general batch. Code whose
NumPy behaviour changes at size 1 (``np.squeeze`` of the batch axis) keeps the
general behaviour; ``graphc.trace`` therefore traces sizes 0 and 1 concretely,
and a loaded file documents it (docs/format.md).
"""
from __future__ import annotations

from graphc.context import probing
from graphc.errors import NotGeneric, ShapeError
from graphc.ir import Const, Graph, Sym, TensorType, _format_value, is_symbol
from graphc.ops import registry

# the sizes the batch dimension takes while probing: unlike any layer width, and >= 2, so
# no shape rule treats them as broadcast dims
PROBES = (1009, 1013)


__all__ = ["NotGeneric", "PROBES", "bind", "check_template", "generalize", "instantiate", "probing", "rename",
           "symbols"]


def symbols(graph: Graph) -> list[str]:
    """The symbols of ``graph``'s input types, in order of first appearance."""
    seen = {}
    for v in graph.inputs:
        for d in v.type.shape:
            if isinstance(d, str):
                seen.setdefault(str(d), None)
    return list(seen)


# -- generalizing two traces ------------------------------------------------------------
def generalize(small: Graph, large: Graph, symbol: str, probes=PROBES) -> Graph:
    """The template of two traces of one function at batch sizes ``probes``: where they differ
    by exactly the probe sizes, ``symbol``. Raises NotGeneric naming the first difference."""
    if not is_symbol(symbol):
        raise ValueError(f"a symbolic dimension is a name like 'B', got {symbol!r}")
    return _Generalizer(symbol, probes).graph(small, large)


class _Mismatch(Exception):
    pass


class _Generalizer:
    def __init__(self, symbol, probes):
        self.symbol, self.probes = Sym(symbol), tuple(probes)

    def dim(self, a, b):
        if a == b:
            return a
        if (a, b) == self.probes:
            return self.symbol
        raise _Mismatch(f"a size {a} at batch {self.probes[0]} is {b} at batch {self.probes[1]}")

    def type(self, s: TensorType, t: TensorType) -> TensorType:
        if s.dtype != t.dtype or s.ndim != t.ndim:
            raise _Mismatch(f"its type {s} at batch {self.probes[0]} is {t} at batch {self.probes[1]}")
        try:
            return TensorType(tuple(self.dim(a, b) for a, b in zip(s.shape, t.shape)), s.dtype)
        except _Mismatch:
            raise _Mismatch(f"its type {s} at batch {self.probes[0]} is {t} at batch {self.probes[1]}") from None

    def attr(self, a, b):
        if type(a) is not type(b):
            raise _Mismatch(f"{_format_value(a)} vs {_format_value(b)}")
        if isinstance(a, (tuple, list)):
            if len(a) != len(b):
                raise _Mismatch(f"{_format_value(a)} vs {_format_value(b)}")
            return type(a)(self.attr(x, y) for x, y in zip(a, b))
        if isinstance(a, int) and not isinstance(a, bool):
            return self.dim(a, b)
        if isinstance(a, Const):
            if a == b:
                return a
            shapes = f"{a.array.shape} and {b.array.shape}"
            raise _Mismatch(f"a constant array of shape {shapes} whose content depends on the batch size"
                            if a.array.shape != b.array.shape else
                            f"a constant whose value depends on the batch size ({_short(a)} vs {_short(b)})")
        if _format_value(a) != _format_value(b):  # floats by their exact digits (NaN's sign too)
            raise _Mismatch(f"{_format_value(a)} at batch {self.probes[0]} vs {_format_value(b)} "
                            f"at batch {self.probes[1]}")
        return a

    def graph(self, s: Graph, t: Graph) -> Graph:
        where = f"graph {s.name}"
        if len(s.inputs) != len(t.inputs) or len(s.nodes) != len(t.nodes) or len(s.outputs) != len(t.outputs):
            raise NotGeneric(f"{where} has {len(s.nodes)} operations at batch size {self.probes[0]} but "
                             f"{len(t.nodes)} at {self.probes[1]}: the Python code branches or loops on "
                             f"the batch size")
        out = Graph(name=s.name)
        values = {}
        for k, (a, b) in enumerate(zip(s.inputs, t.inputs)):
            try:
                typ = self.type(a.type, b.type)
            except _Mismatch as exc:
                raise NotGeneric(f"{where}: input {s.input_names[k] or k}: {exc}") from None
            values[a] = out.add_input(typ, s.input_names[k], s.input_roles[k])
        t_index = {v: i for i, v in enumerate(t.inputs)}
        s_index = {v: i for i, v in enumerate(s.inputs)}
        for n, m in zip(s.nodes, t.nodes):
            try:
                node = self.node(out, n, m, values, s_index, t_index)
            except _Mismatch as exc:
                raise NotGeneric(f"{n.op} at {n.loc or 'an unknown line'} depends on the batch size: "
                                 f"{exc}") from None
            for v, w, u in zip(n.outputs, m.outputs, node.outputs):
                values[v] = u
                s_index[v], t_index[w] = len(s_index), len(t_index)
        for v, w in zip(s.outputs, t.outputs):
            if s_index.get(v) != t_index.get(w):
                raise NotGeneric(f"{where}: its outputs differ at batch sizes {self.probes}")
        out.outputs = [values[v] for v in s.outputs]
        return out.copy_meta(s)

    def node(self, out, n, m, values, s_index, t_index):
        if n.op != m.op or len(n.inputs) != len(m.inputs) or len(n.outputs) != len(m.outputs) \
                or set(n.attrs) != set(m.attrs) or len(n.regions) != len(m.regions):
            raise _Mismatch(f"the operation itself changes ({n.op} vs {m.op})")
        if [s_index.get(v) for v in n.inputs] != [t_index.get(w) for w in m.inputs]:
            raise _Mismatch("its operands change")
        attrs = {k: self.attr(n.attrs[k], m.attrs[k]) for k in n.attrs}
        types = [self.type(v.type, w.type) for v, w in zip(n.outputs, m.outputs)]
        regions = [self.graph(r, q) for r, q in zip(n.regions, m.regions)]
        return out.add_node(n.op, [values[v] for v in n.inputs], attrs, types, n.loc, regions)


def _short(c: Const) -> str:
    a = c.array
    return _format_value(a.item()) if a.size == 1 else f"array of shape {a.shape}"


# -- instantiating -------------------------------------------------------------------------
def instantiate(template: Graph, bindings: dict) -> Graph:
    """``template`` with each symbol replaced by its size in ``bindings``; every node's shape rule
    runs again at those sizes and must agree (else ShapeError naming the op and its line)."""
    return _instantiate(template, {Sym(k): int(v) for k, v in bindings.items()})


def rename(graph: Graph, names: dict) -> Graph:
    """``graph`` with each symbol ``s`` in ``names`` renamed ``names[s]`` (the CPU backend names
    a symbol's run-time value ``dim_B`` in its generated code); shape rules re-checked."""
    return _instantiate(graph, {Sym(k): Sym(v) for k, v in names.items()})


def _substitute(a, bindings):
    if isinstance(a, Sym):
        if a not in bindings:
            raise ShapeError(f"no size given for the symbolic dimension {a}")
        return bindings[a]
    if isinstance(a, (tuple, list)):
        return type(a)(_substitute(x, bindings) for x in a)
    return a


def _concrete(t: TensorType, bindings) -> TensorType:
    return TensorType(_substitute(t.shape, bindings), t.dtype) if t.symbolic else t


def _instantiate(template: Graph, bindings) -> Graph:
    out = Graph(name=template.name)
    values = {}
    for k, v in enumerate(template.inputs):
        values[v] = out.add_input(_concrete(v.type, bindings), template.input_names[k], template.input_roles[k])
    for node in template.nodes:
        attrs = {k: _substitute(a, bindings) for k, a in node.attrs.items()}
        types = [_concrete(v.type, bindings) for v in node.outputs]
        regions = [_instantiate(r, bindings) for r in node.regions]
        new = out.add_node(node.op, [values[v] for v in node.inputs], attrs, types, node.loc, regions)
        try:
            expected = registry.infer_node(new)
        except ShapeError as exc:
            raise ShapeError(f"{node.op} at {node.loc or 'an unknown line'} does not hold at "
                             f"{_bindings_text(bindings)}: {exc}") from None
        if list(expected) != types:
            raise ShapeError(f"{node.op} at {node.loc or 'an unknown line'} gives "
                             f"{', '.join(map(str, expected))} at {_bindings_text(bindings)}, not the "
                             f"{', '.join(map(str, types))} the symbolic graph says: the traced code "
                             f"decided something by the batch size")
        for v, w in zip(node.outputs, new.outputs):
            values[v] = w
    out.outputs = [values[v] for v in template.outputs]
    return out.copy_meta(template)


def _bindings_text(bindings) -> str:
    return ", ".join(f"{k}={v}" for k, v in bindings.items())


# -- binding at a call ---------------------------------------------------------------------
def bind(template: Graph, shapes, names=None, minimum: int = 1) -> dict:
    """The symbols' sizes from the shapes of the arrays passed for ``template``'s inputs; raises
    ShapeError naming the input and the dimension where a shape does not fit."""
    bindings = {}
    for k, (v, shape) in enumerate(zip(template.inputs, shapes)):
        label = (names[k] if names is not None else None) or template.input_names[k] or f"input {k}"
        shape = tuple(shape)
        if len(shape) != v.type.ndim:
            raise ShapeError(f"{label}: expected {v.type.ndim} dimensions ({v.type}), got shape {shape}")
        for axis, (want, got) in enumerate(zip(v.type.shape, shape)):
            if isinstance(want, str):
                if want in bindings and bindings[want] != got:
                    raise ShapeError(f"{label}: dimension {axis} is {want}, which is {bindings[want]} in "
                                     f"an earlier argument, but {got} here")
                if got < minimum:
                    raise ShapeError(f"{label}: dimension {axis} is {want}, which must be at least "
                                     f"{minimum}; got {got}")
                bindings[want] = got
            elif want != got:
                raise ShapeError(f"{label}: dimension {axis} must be {want} ({v.type}), got shape {shape}")
    return bindings


def check_template(template: Graph) -> Graph:
    """Raise ShapeError unless every symbol of the graph's nodes appears in an input type (the
    call binds symbols from its arguments) and the graph instantiates at a third size."""
    known = set(symbols(template))
    for node in template.nodes:
        for v in node.outputs:
            for d in v.type.shape:
                if isinstance(d, str) and d not in known:
                    raise ShapeError(f"{node.op} at {node.loc}: symbol {d} is not a dimension of any input")
    probe = {s: PROBES[1] + 4 * (i + 1) for i, s in enumerate(known)}  # neither probe
    instantiate(template, probe)
    return template
