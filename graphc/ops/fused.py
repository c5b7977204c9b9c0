"""The ``fused`` op: a group of elementwise nodes (and trailing reductions) run as one loop nest.

Its attributes hold the subgraph, so a fused node is hashable, prints in the
IR's text form and parses back::

    %9:f32[], %10:f32[1000] = fused(%0, %1, %2, body=(
        ('mul', (0, 1), (), (((1000,), 'float32'),)),      # value 3 = mul(value 0, value 1)
        ...), outputs=(8, 6))

``body`` is a tuple of ``(op, operand numbers, sorted attr items, output types)``
where values are numbered as in a graph: the fused node's operands first, then
each body node's outputs in order; ``outputs`` names the values the fused node
returns. The shape rule rebuilds the subgraph and checks every body node's
declared types against its op's rule; the reference interprets the subgraph.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from graphc.errors import ShapeError
from graphc.ir import Graph, TensorType
from graphc.ops import registry
from graphc.ops.registry import register

FUSED = "fused"


def make_attrs(inputs, nodes, outputs) -> dict:
    """Attributes of a fused node computing ``outputs`` from ``inputs`` with ``nodes``."""
    number = {v: k for k, v in enumerate(inputs)}
    body = []
    for node in nodes:
        body.append((node.op, tuple(number[v] for v in node.inputs), node.attr_key(),
                     tuple((tuple(v.type.shape), v.type.dtype) for v in node.outputs)))
        for v in node.outputs:
            number[v] = len(number)
    return {"body": tuple(body), "outputs": tuple(number[v] for v in outputs)}


@functools.lru_cache(maxsize=512)
def _subgraph(in_types: tuple, body: tuple, outputs: tuple) -> Graph:
    g = Graph(name="fused")
    values = [g.add_input(t) for t in in_types]
    for k, entry in enumerate(body):
        try:
            op, refs, attrs, out_types = entry
            ins = [values[r] for r in refs]
            attrs = dict(attrs)
            declared = [TensorType(tuple(s), d) for s, d in out_types]
        except (TypeError, ValueError, IndexError) as exc:
            raise ShapeError(f"fused body entry {k} is malformed: {entry!r}") from exc
        if op == FUSED:
            raise ShapeError("a fused body cannot contain another fused node")
        expected = registry.infer_types(op, [v.type for v in ins], attrs)
        if expected != declared:
            raise ShapeError(f"fused body entry {k} ({op}) declares {list(map(str, declared))}, "
                             f"but the op's rule gives {list(map(str, expected))}")
        node = g.add_node(op, ins, attrs, declared)
        values.extend(node.outputs)
    try:
        g.outputs = [values[r] for r in outputs]
    except (TypeError, IndexError):
        raise ShapeError(f"fused outputs {outputs!r} name values that do not exist") from None
    return g


def subgraph(node) -> Graph:
    """The body of fused ``node`` as a Graph whose inputs are the node's operands."""
    return _subgraph(tuple(v.type for v in node.inputs), node.attrs["body"], node.attrs["outputs"])


# the reductions a group may end with (passes/fusion.py decides the groups)
REDUCTIONS = frozenset({"sum", "mean", "prod", "max", "min"})


@dataclass(frozen=True)
class Layout:
    """How a fused group's loop nest runs (graphc.backend.codegen.emit_fused lowers it)."""

    domain: tuple  # the loop domain: the elementwise nodes' shape (or the reduced input's)
    axes: tuple  # the axes its reductions reduce (empty without reductions)
    # one contiguous run over the domain, every operand read and every array output written
    # at the loop index itself: operands have the domain's shape or one element, and any
    # reduction is over every axis
    flat: bool


def layout(node) -> Layout:
    sub = subgraph(node)
    reds = [n for n in sub.nodes if n.op in REDUCTIONS]
    ews = [n for n in sub.nodes if n.op not in REDUCTIONS]
    domain = tuple(ews[0].outputs[0].type.shape if ews else reds[0].inputs[0].type.shape)
    axes = tuple(reds[0].attrs["axes"]) if reds else ()
    flat = (len(domain) >= 1 and (not reds or axes == tuple(range(len(domain))))
            and all(n.op != "iota" for n in sub.nodes)
            and all(v.type.shape == domain or v.type.size == 1 for v in sub.inputs))
    return Layout(domain, axes, flat)


def _infer(types, body, outputs):
    g = _subgraph(tuple(types), body, outputs)
    return [v.type for v in g.outputs]


def _reference(*args, body, outputs):
    from graphc.interpret import interpret
    g = _subgraph(tuple(TensorType(tuple(a.shape), a.dtype.name) for a in args), body, outputs)
    out = interpret(g, *args)
    return tuple(out) if len(out) > 1 else out[0]


def _emit(em, node):
    from graphc.backend.codegen import emit_fused
    emit_fused(em, node)


register(FUSED, FUSED, _infer, _reference, emit=_emit, differentiable=False)
