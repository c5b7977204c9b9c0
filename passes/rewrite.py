"""A small toolkit for passes that rewrite a graph node by node.

``Rewriter`` walks a clone of the graph in order; a rule looks at a node (whose
operands are already rewritten) and returns a replacement ``Value`` or None.
Replacement values may be built with ``rw.make(op, inputs, **attrs)``, which
appends a new node (types from the op's rule, ``loc`` from the node being
rewritten), so the result stays in topological order.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Const, Graph, Node, Value
from graphc.ops import registry


class Rewriter:
    def __init__(self, graph: Graph):
        self.graph = graph.clone()
        self.replace: dict[Value, Value] = {}
        self.nodes: list[Node] = []
        self.current: Node | None = None
        self.changed = 0
        self._uses: dict | None = None

    def uses(self, v: Value) -> int:
        """How many times live nodes and the graph's outputs read ``v``, in the graph as it came
        in (dead nodes do not count: they are dropped by DCE). Counted once, on first use."""
        if self._uses is None:
            self._uses = {}
            for node in live_nodes(self.graph.nodes, self.graph.outputs):
                for u in node.inputs:
                    self._uses[u] = self._uses.get(u, 0) + 1
            for u in self.graph.outputs:
                self._uses[u] = self._uses.get(u, 0) + 1
        return self._uses.get(v, 0)

    def resolve(self, v: Value) -> Value:
        while v in self.replace:
            v = self.replace[v]
        return v

    def make(self, op: str, inputs, **attrs) -> Value:
        types = registry.infer_types(op, [v.type for v in inputs], attrs)
        node = Node(op, inputs, attrs, types, self.current.loc if self.current else None)
        self.nodes.append(node)
        return node.outputs[0]

    def constant(self, array) -> Value:
        array = np.asarray(array)
        return self.make("constant", [], value=Const(array))

    def run(self, rule) -> Graph:
        for node in self.graph.nodes:
            node.inputs = [self.resolve(v) for v in node.inputs]
            self.current = node
            new = rule(self, node)
            if new is not None and new is not node.outputs[0]:
                if len(node.outputs) != 1 or new.type != node.outputs[0].type:
                    raise AssertionError(f"rewrite of {node.op} changed its type: {new.type} != "
                                         f"{node.outputs[0].type}")
                self.replace[node.outputs[0]] = new
                self.changed += 1
                continue
            self.nodes.append(node)
        self.current = None
        outputs = [self.resolve(v) for v in self.graph.outputs]
        return Graph(self.graph.inputs, self.nodes, outputs, self.graph.name).copy_meta(self.graph)


def live_nodes(nodes, outputs) -> list:
    """The nodes, in order, that ``outputs`` need, and every effect (gc.print) with what it reads."""
    live = set(outputs)
    kept = []
    for node in reversed(nodes):
        if registry.has_effect(node) or any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    return kept


def splat(v: Value):
    """The scalar (0-d NumPy array) ``v`` holds everywhere, if it is a uniform constant.

    Recognizes ``constant`` nodes whose elements are all equal (bitwise, so -0.0
    and 0.0 differ and NaN matches NaN) and ``broadcast_to`` of such a constant.
    """
    node = v.producer
    if node is None:
        return None
    if node.op == "broadcast_to":
        return splat(node.inputs[0])
    if node.op != "constant":
        return None
    a = node.attrs["value"].array
    if a.size == 0 or not is_uniform(a):
        return None
    return a.reshape(-1)[:1].reshape(())


def is_uniform(a) -> bool:
    """True when every element of ``a`` has the same bits (-0.0 differs from 0.0, NaN matches NaN).

    Works for any memory layout (a folded transpose is Fortran-ordered, a reversed slice has
    negative strides): the bytes are compared on a C-ordered copy where needed."""
    if a.size <= 1:
        return True
    flat = np.ascontiguousarray(a).reshape(-1)
    data = flat.view(np.uint8).reshape(a.size, -1)
    return bool((data == data[:1]).all())


def is_const(v: Value, value) -> bool:
    """True when ``v`` is a uniform constant equal to ``value`` (same sign of zero)."""
    s = splat(v)
    if s is None:
        return False
    x = s[()]
    if isinstance(value, float) and value == 0 and s.dtype.kind == "f":
        return x == 0 and np.signbit(x) == np.signbit(value)
    return bool(x == value)
