"""Dead-code elimination: drop nodes whose outputs nothing needs (effects, such as gc.print, stay)."""
from __future__ import annotations

from graphc.ir import Graph
from graphc.passes.rewrite import live_nodes


def run(graph: Graph) -> Graph:
    kept = live_nodes(graph.nodes, graph.outputs)
    # a fresh copy of what stays (a pass never shares nodes or values with its input)
    return Graph(graph.inputs, kept, graph.outputs, graph.name).copy_meta(graph).clone()
