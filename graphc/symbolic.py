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

import numpy as np

from graphc.context import for_every_size, probing
from graphc.errors import NotGeneric, ShapeError
from graphc.ir import Const, Graph, Sym, TensorType, _format_value, is_symbol
from graphc.ops import registry

# the sizes the batch dimension takes while probing: unlike any layer width, and >= 2, so
# no shape rule treats them as broadcast dims
PROBES = (1009, 1013)


__all__ = ["CHECK_SIZES", "NotGeneric", "PROBES", "batch_template", "bind", "check_sizes", "generalize",
           "instantiate", "probing", "rename", "sizes_to_check", "symbols"]


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
    return _Generalizer(symbol, probes).graph(_uniform_broadcast(small), _uniform_broadcast(large))


def _uniform_broadcast(graph: Graph) -> Graph:
    """``graph`` with each constant array whose elements are all alike (``np.zeros_like(x)``,
    ``np.pad``'s fill) as its scalar broadcast to its shape: the same graph at every size, where
    the array itself would be another constant at each size. (The passes fold the one into the
    other; ``graph`` itself is returned where it has no such constant.)"""
    if not any(n.op == "constant" and _uniform(n.attrs["value"].array) for n in graph.nodes):
        return graph

    def as_broadcast(out, node, inputs):
        if node.op != "constant" or not _uniform(node.attrs["value"].array):
            return None
        array = node.attrs["value"].array
        scalar = out.add_node("constant", [], {"value": Const(array.reshape(-1)[:1].reshape(()))},
                              [TensorType((), node.outputs[0].type.dtype)], node.loc)
        return out.add_node("broadcast_to", [scalar.outputs[0]], {"shape": tuple(array.shape)},
                            [node.outputs[0].type], node.loc).outputs
    return _rebuild(graph, as_broadcast)


def _rebuild(graph: Graph, rewrite, input_type=lambda t: t) -> Graph:
    """A copy of ``graph`` node by node: ``rewrite(out, node, inputs)`` adds what stands for
    ``node`` to ``out`` and returns its output values, or None to copy the node as it is."""
    out = Graph(name=graph.name)
    values = {v: out.add_input(input_type(v.type), graph.input_names[k], graph.input_roles[k])
              for k, v in enumerate(graph.inputs)}
    for node in graph.nodes:
        inputs = [values[v] for v in node.inputs]
        outputs = rewrite(out, node, inputs)
        if outputs is None:
            outputs = out.add_node(node.op, inputs, node.attrs, [v.type for v in node.outputs], node.loc,
                                   node.regions).outputs
        values.update(zip(node.outputs, outputs))
    out.outputs = [values[v] for v in graph.outputs]
    return out.copy_meta(graph)


def _uniform(array) -> bool:
    """Whether ``array`` has more than one element, all with the same bits (-0.0 is not 0.0)."""
    if array.size <= 1:
        return False
    data = array.reshape(-1).view(np.uint8).reshape(array.size, -1)  # (Const arrays are C-ordered)
    return bool((data == data[:1]).all())


class _Mismatch(Exception):
    pass


class _Generalizer:
    def __init__(self, symbol, probes, where=None):
        self.symbol, self.probes = Sym(symbol), tuple(probes)
        # how messages name the two graphs compared
        self.where = where or tuple(f"at batch {p}" for p in self.probes)

    def dim(self, a, b):
        if a == b:
            return a
        if (a, b) == self.probes:
            return self.symbol
        raise _Mismatch(f"a size {a} {self.where[0]} is {b} {self.where[1]}")

    def type(self, s: TensorType, t: TensorType) -> TensorType:
        if s.dtype != t.dtype or s.ndim != t.ndim:
            raise _Mismatch(f"its type {s} {self.where[0]} is {t} {self.where[1]}")
        try:
            return TensorType(tuple(self.dim(a, b) for a, b in zip(s.shape, t.shape)), s.dtype)
        except _Mismatch:
            raise _Mismatch(f"its type {s} {self.where[0]} is {t} {self.where[1]}") from None

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
            raise _Mismatch(f"{_format_value(a)} {self.where[0]} vs {_format_value(b)} {self.where[1]}")
        return a

    def graph(self, s: Graph, t: Graph) -> Graph:
        where = f"graph {s.name}"
        if len(s.inputs) != len(t.inputs) or len(s.outputs) != len(t.outputs):
            raise NotGeneric(f"{where} has {len(s.inputs)} inputs and {len(s.outputs)} outputs "
                             f"{self.where[0]} but {len(t.inputs)} and {len(t.outputs)} {self.where[1]}")
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
        # node by node, so that code which branches on the size is named by its first differing op
        for n, m in zip(s.nodes, t.nodes):
            try:
                node = self.node(out, n, m, values, s_index, t_index)
            except _Mismatch as exc:
                raise NotGeneric(f"{n.op} at {n.loc or 'an unknown line'} depends on the batch size: "
                                 f"{exc}") from None
            for v, w, u in zip(n.outputs, m.outputs, node.outputs):
                values[v] = u
                s_index[v], t_index[w] = len(s_index), len(t_index)
        if len(s.nodes) != len(t.nodes):
            extra = (s.nodes if len(s.nodes) > len(t.nodes) else t.nodes)[min(len(s.nodes), len(t.nodes))]
            raise NotGeneric(f"{where} has {len(s.nodes)} operations {self.where[0]} but {len(t.nodes)} "
                             f"{self.where[1]} (the first one apart: {extra.op} at "
                             f"{extra.loc or 'an unknown line'}): the Python code branches or loops on "
                             f"the batch size")
        for v, w in zip(s.outputs, t.outputs):
            if s_index.get(v) != t_index.get(w):
                raise NotGeneric(f"{where}: its outputs differ {self.where[0]} and {self.where[1]}")
        out.outputs = [values[v] for v in s.outputs]
        return out.copy_meta(s)

    def node(self, out, n, m, values, s_index, t_index):
        if n.op != m.op or len(n.inputs) != len(m.inputs) or len(n.outputs) != len(m.outputs) \
                or set(n.attrs) != set(m.attrs) or len(n.regions) != len(m.regions):
            raise _Mismatch(f"the operation itself changes ({n.op} vs {m.op}): the Python code "
                            f"branches or loops on the batch size")
        if [s_index.get(v) for v in n.inputs] != [t_index.get(w) for w in m.inputs]:
            raise _Mismatch("its operands change: the Python code branches or loops on the batch size")
        attrs = {k: self.attr(n.attrs[k], m.attrs[k]) for k in n.attrs}
        types = [self.type(v.type, w.type) for v, w in zip(n.outputs, m.outputs)]
        regions = [self.graph(r, q) for r, q in zip(n.regions, m.regions)]
        return out.add_node(n.op, [values[v] for v in n.inputs], attrs, types, n.loc, regions)


# sizes at which gc.save and gc.onnx.export also trace the function as itself: a Python decision
# on the size that both probes take alike (``if len(x) > 100``, ``min(len(x), 64)``, ``len(x) % 2``,
# ``if len(x) < 5000``) shows there as another graph than the template's; so do the other sizes
# of the inputs (``if x.shape[0] == x.shape[1]``), at most MAX_INPUT_SIZES of them
CHECK_SIZES = (2, 3, 1 << 20)
MAX_INPUT_SIZES = 8


def sizes_to_check(template: Graph) -> tuple:
    """CHECK_SIZES and the fixed sizes (>= 2) of ``template``'s inputs, smallest first."""
    fixed = sorted({d for v in template.inputs for d in v.type.shape
                    if isinstance(d, int) and d >= 2 and d not in CHECK_SIZES and d not in PROBES})
    return CHECK_SIZES + tuple(fixed[:MAX_INPUT_SIZES])


def check_sizes(template: Graph, trace_at, symbol: str, sizes=None) -> Graph:
    """Raise NotGeneric unless ``trace_at(n)`` (the function traced with the symbol's dimension
    set to ``n``) is ``template`` instantiated at ``n``, for each size in ``sizes`` (default
    ``sizes_to_check(template)``). A size from 2 up to the probes that the template refuses
    (``x[:5]`` at 3: a ShapeError when called there) stands for the smallest larger one it
    holds at (5), so that ``x[:5] * (2 if len(x) > 100 else 1)`` is still compared below 100."""
    checked = set()
    for n in sizes_to_check(template) if sizes is None else sizes:
        n = _smallest_holding(template, symbol, n) if 2 <= n < PROBES[0] else n if _holds(template, symbol, n) \
            else None
        if n is None or n in checked:
            continue
        checked.add(n)
        expected = instantiate(template, {symbol: n})
        try:
            with for_every_size():
                actual = _uniform_broadcast(trace_at(n))
        except Exception as exc:  # noqa: BLE001  (the eager code raises there; the template would not)
            raise NotGeneric(f"traced at batch size {n} it raises {type(exc).__name__}: {exc}; the graph "
                             f"traced at batch sizes {PROBES[0]} and {PROBES[1]} would run there") from None
        where = ("in the graph for every batch size", f"when traced at batch size {n}")
        try:  # (x[:5] of a batch of 5 traces as x itself: identities at n are not differences)
            _Generalizer(symbol, (None, None), where).graph(_without_identities(expected),
                                                            _without_identities(actual))
        except NotGeneric as exc:
            raise NotGeneric(f"the code decides something by the batch size that batch sizes "
                             f"{PROBES[0]} and {PROBES[1]} decide alike, but batch size {n} does "
                             f"not: {exc}") from None
    return template


def batch_template(trace_at, groups, symbol: str = "B"):
    """``(template, batched, size_one)`` for a saved or exported function: ``trace_at(batched, n)``
    is its graph with the leading dimension of the arguments in ``batched`` set to ``n``;
    ``groups`` are the candidate sets of batched arguments (those of the first argument's
    leading size first). The first group that is generic is taken: all of it, else its first
    argument with each other one that stays generic (a (4, 5) weight beside a batch of 4 is no
    batch). The template is made from the two probe traces and checked at other sizes
    (``check_sizes``); ``size_one`` is None, or the NotGeneric saying how the code treats a batch
    of 1 apart (np.squeeze): the template then stands for batches of 2 and more only. Raises the
    first group's NotGeneric when none is generic."""
    def template_of(batched):
        try:
            with probing(PROBES):
                small, large = trace_at(batched, PROBES[0]), trace_at(batched, PROBES[1])
        except NotGeneric:
            raise
        except Exception as exc:  # noqa: BLE001  (the code fails at the probe sizes)
            raise NotGeneric(f"traced at batch sizes {PROBES[0]} and {PROBES[1]} it raises "
                             f"{type(exc).__name__}: {exc}") from None
        template = generalize(small, large, symbol)
        check_sizes(template, lambda n: trace_at(batched, n), symbol)
        try:
            check_sizes(template, lambda n: trace_at(batched, n), symbol, sizes=(1,))
            return template, None
        except NotGeneric as size_one:
            return template, size_one

    failure = None
    for group in groups:
        group = list(group)
        try:
            template, size_one = template_of(group)
            return template, group, size_one
        except NotGeneric as exc:
            failure = failure or exc
        if len(group) < 2:
            continue
        try:
            found, chosen = template_of(group[:1]), group[:1]
        except NotGeneric:
            continue
        for other in group[1:]:
            try:
                found, chosen = template_of(chosen + [other]), chosen + [other]
            except NotGeneric:
                pass
        return found[0], chosen, found[1]
    raise failure or NotGeneric("no argument has a batch dimension")


# ops that the tracer leaves out where they would change nothing (a slice of all of an axis, a
# reshape or broadcast to the same shape), which a template instantiated at that size keeps
_IDENTITY_OPS = ("slice", "reshape", "broadcast_to")


def _without_identities(graph: Graph) -> Graph:
    """``graph`` without the nodes of _IDENTITY_OPS that return their operand unchanged."""
    def skip_identity(out, node, inputs):
        if node.op in _IDENTITY_OPS and len(node.inputs) == 1 and len(node.outputs) == 1 \
                and node.outputs[0].type == node.inputs[0].type \
                and all(tuple(s) == (0, d, 1) for s, d in zip(node.attrs.get("slices", ()), node.inputs[0].type.shape)):
            return inputs
        return None
    return _rebuild(graph, skip_identity)


def _holds(template: Graph, symbol: str, n: int) -> bool:
    try:
        instantiate(template, {symbol: n})
        return True
    except ShapeError:
        return False


def _smallest_holding(template: Graph, symbol: str, n: int):
    """The smallest size >= ``n`` (below the probes) at which ``template`` instantiates, or None:
    doubling, then bisecting (the sizes a template holds at are those from some size on)."""
    low, high = n - 1, n  # (low fails or is below n; high is tried)
    while not _holds(template, symbol, high):
        low, high = high, 2 * high
        if high >= PROBES[0]:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _holds(template, symbol, mid) else (mid, high)
    return high


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
    def substituted(out, node, inputs):
        attrs = {k: _substitute(a, bindings) for k, a in node.attrs.items()}
        types = [_concrete(v.type, bindings) for v in node.outputs]
        regions = [_instantiate(r, bindings) for r in node.regions]
        new = out.add_node(node.op, inputs, attrs, types, node.loc, regions)
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
        return new.outputs
    return _rebuild(template, substituted, lambda t: _concrete(t, bindings))


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
