"""Dead-code elimination: drop nodes whose outputs nothing needs (effects, such as gc.print, stay)."""
from __future__ import annotations

from graphc.ir import Graph
from graphc.ops import registry


def run(graph: Graph) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if registry.get(node.op).effect or any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    return Graph(graph.inputs, reversed(kept), graph.outputs, graph.name).copy_meta(graph)
