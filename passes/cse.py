"""Common-subexpression elimination: one node per (op, operands, attrs); effects are never merged."""
from __future__ import annotations

from graphc.ir import Graph
from graphc.ops import registry


def run(graph: Graph) -> Graph:
    graph = graph.clone()
    seen = {}
    replace = {}
    nodes = []
    for node in graph.nodes:
        node.inputs = [replace.get(v, v) for v in node.inputs]
        if registry.has_effect(node):  # (two gc.print calls print twice; a loop that prints too)
            nodes.append(node)
            continue
        # (two nodes with the same operands but different regions, fused bodies, differ)
        key = (node.op, tuple(node.inputs), node.attr_key(), tuple(map(str, node.regions)))
        twin = seen.get(key)
        if twin is not None and len(twin.outputs) == len(node.outputs):
            replace.update(zip(node.outputs, twin.outputs))
            continue
        seen[key] = node
        nodes.append(node)
    outputs = [replace.get(v, v) for v in graph.outputs]
    return Graph(graph.inputs, nodes, outputs, graph.name).copy_meta(graph)
