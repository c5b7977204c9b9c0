"""Dead-code elimination: drop nodes whose outputs nothing needs."""
from __future__ import annotations

from graphc.ir import Graph


def run(graph: Graph) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    return Graph(graph.inputs, reversed(kept), graph.outputs, graph.name)
