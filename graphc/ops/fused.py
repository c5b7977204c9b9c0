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


class _FusableReductions:
    """The reductions a group may end with (passes/fusion.py decides the groups): the ops that
    declare fusable reduction data (``registry.Reduction``), read from the registry when asked,
    so a reduction registered later is one too."""

    def __contains__(self, name) -> bool:
        op = registry.OPS.get(name)
        return op is not None and op.reduction is not None and op.reduction.fusable

    def __iter__(self):
        return iter(sorted(name for name in registry.OPS if name in self))


REDUCTIONS = _FusableReductions()
# (the loop plan of a fused node, ``layout``, is CPU strategy: graphc.backend.schedule.layout)


def _infer(types, body, outputs):
    g = _subgraph(tuple(types), body, outputs)
    return [v.type for v in g.outputs]


def _reference(*args, body, outputs):
    from graphc.interpret import interpret
    g = _subgraph(tuple(TensorType(tuple(a.shape), a.dtype.name) for a in args), body, outputs)
    out = interpret(g, *args)
    return tuple(out) if len(out) > 1 else out[0]


# lowered by each backend's schedule (graphc/backend/schedule.py on the CPU)
register(FUSED, FUSED, _infer, _reference, differentiable=False)
