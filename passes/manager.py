"""Named pass pipelines.

``O0`` runs nothing, ``O1`` the cleanups, ``O2`` (the default) everything.
``GRAPHC_DUMP=dir`` writes the graph after each pass; ``verify=True`` (the
tests' setting, or ``GRAPHC_VERIFY=1``) checks the IR after every pass.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from graphc.ir import Graph
from passes import cse, dce

PIPELINES = {
    "O0": (),
    "O1": (("cse", cse.run), ("dce", dce.run)),
    "O2": (("cse", cse.run), ("dce", dce.run)),
}


@dataclass
class PassStat:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float


def check_pipeline(name: str) -> str:
    if name not in PIPELINES:
        raise ValueError(f"unknown pass pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    return name


def run(graph: Graph, pipeline: str = "O2", verify: bool | None = None):
    """Run the named pipeline; returns ``(graph, [PassStat...])``."""
    passes = PIPELINES[check_pipeline(pipeline)]
    verify = bool(os.environ.get("GRAPHC_VERIFY")) if verify is None else verify
    dump = os.environ.get("GRAPHC_DUMP")
    stats = []
    if dump:
        _dump(dump, graph, 0, "traced")
    for k, (name, fn) in enumerate(passes, start=1):
        before, start = len(graph.nodes), time.perf_counter()
        graph = fn(graph)
        stats.append(PassStat(name, before, len(graph.nodes), time.perf_counter() - start))
        if verify:
            graph.verify()
        if dump:
            _dump(dump, graph, k, name)
    return graph, stats


def _dump(directory, graph, k, name):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{graph.name}.{k:02d}.{name}.txt"), "w") as f:
        f.write(str(graph) + "\n")
