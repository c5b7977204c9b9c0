"""The ``fused`` op: a group of elementwise nodes (and trailing reductions) run as one loop nest.

Its body is the node's one region, a closed graph whose inputs are the fused
node's operands and whose outputs are the fused node's outputs::

    %5:f32[], %6:f32[1000] = fused(%0, %1) {   # train.py:12
      graph body(%0:f32[1000], %1:f32[1000]):
        %2:f32[1000] = mul(%0, %1)   # train.py:12
        %3:f32[] = sum(%2, axes=(0,), keepdims=False)   # train.py:12
        return %3, %2
    }

The shape rule checks the body against the operands and that it is one loop nest
(elementwise nodes over one domain, trailing reductions over the same axes, each
output computed in the body and returned once: what fusion builds and backends
lower); the body's own nodes are checked by ``Graph.verify``, which descends into
regions. The reference runs the body (the interpreter hands it over as a callable).
Fusion (passes/fusion.py) builds these nodes with ``fused_node``; backends lower them.
"""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.ir import Graph, Node
from graphc.ops import registry
from graphc.ops.registry import register

FUSED = "fused"


def fused_node(inputs, nodes, outputs, loc=None) -> Node:
    """A fused node computing ``outputs`` from ``inputs`` with ``nodes`` (which stay untouched)."""
    body = Graph(name="body")
    mapping = {v: body.add_input(v.type) for v in inputs}
    for node in nodes:
        if node.regions:
            raise ShapeError(f"a fused body cannot contain a node with regions ({node.op})")
        new = body.add_node(node.op, [mapping[v] for v in node.inputs], node.attrs,
                            [v.type for v in node.outputs], node.loc)
        mapping.update(zip(node.outputs, new.outputs))
    body.outputs = [mapping[v] for v in outputs]
    return Node(FUSED, list(inputs), {}, [v.type for v in outputs], loc, [body])


def subgraph(node) -> Graph:
    """The body of fused ``node``: a Graph whose inputs stand for the node's operands."""
    return node.regions[0]


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


def _infer(types, regions=()):
    if len(regions) != 1:
        raise ShapeError(f"a fused node has one region (its body), got {len(regions)}")
    (body,) = regions
    got = [v.type for v in body.inputs]
    if got != list(types):
        raise ShapeError(f"fused body takes {list(map(str, got))}, but the node's operands are "
                         f"{list(map(str, types))}")
    # each output is a value the body computes, returned once (what the loop nest stores; an
    # operand passed through or a value returned twice would be an output no loop writes)
    computed = {v for node in body.nodes for v in node.outputs}
    for k, v in enumerate(body.outputs):
        if v not in computed:
            raise ShapeError(f"fused body output {k} is not computed in the body (an operand returned as is)")
        if v in body.outputs[:k]:
            raise ShapeError(f"fused body returns one value twice (outputs {body.outputs.index(v)} and {k})")
    for node in body.nodes:
        if node.regions:
            raise ShapeError(f"a fused body cannot contain a node with regions ({node.op})")
        if registry.get(node.op).effect:
            raise ShapeError(f"a fused body cannot contain {node.op}, an op with an effect")
    _check_loop_nest(body)
    return [v.type for v in body.outputs]


def _check_loop_nest(body):
    """A body is one loop nest (what passes/fusion.py builds and backends lower): elementwise
    nodes over one domain and trailing reductions of that domain over the same axes."""
    domain, axes, reduced = None, None, set()
    for node in body.nodes:
        if node.op in REDUCTIONS:
            shape = node.inputs[0].type.shape
            if axes is not None and tuple(node.attrs.get("axes", ())) != axes:
                raise ShapeError(f"the reductions of a fused body reduce different axes ({axes} and "
                                 f"{tuple(node.attrs.get('axes', ()))})")
            axes = tuple(node.attrs.get("axes", ()))
        elif registry.get(node.op).kind == registry.ELEMENTWISE:
            shape = node.outputs[0].type.shape
        else:
            raise ShapeError(f"a fused body holds elementwise ops and reductions only, not {node.op}")
        if any(v in reduced for v in node.inputs):
            raise ShapeError(f"{node.op} in a fused body reads a reduction of the same body (a reduction "
                             f"is done only after the loop)")
        if domain is not None and shape != domain:
            raise ShapeError(f"a fused body runs over one domain: {node.op} runs over {shape}, not {domain}")
        domain = shape
        if node.op in REDUCTIONS:
            reduced.update(node.outputs)


def _reference(*args, regions):
    (body,) = regions
    out = body(*args)
    return tuple(out) if len(out) > 1 else out[0]


# lowered by each backend's schedule (graphc/backend/schedule.py on the CPU)
register(FUSED, FUSED, _infer, _reference, differentiable=False)
