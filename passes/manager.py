"""Named pass pipelines.

``O0`` runs nothing, ``O1`` the cleanups (constant folding, algebraic
simplification, CSE, DCE), ``O2`` (the default) the cleanups, then fusion. (Memory
planning is the CPU backend's: graphc/backend/plan.py.)
A pass that raises leaves the graph unchanged (the reason is logged at debug
level on the ``graphc.passes`` logger and kept in ``PassStat.note``;
``GRAPHC_PASS_ERRORS=raise`` re-raises instead, for debugging).
``GRAPHC_DUMP=dir`` writes the graph after each pass; ``verify=True`` (the
tests' setting, or ``GRAPHC_VERIFY=1``) checks the IR after every pass.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import logging

from graphc.ir import Graph
from graphc.ops import registry
from graphc.passes import constfold, cse, dce, fusion, simplify

log = logging.getLogger("graphc.passes")

# CSE runs first too: a rewrite that depends on a value having one use (transpose of a
# matmul) must see duplicates of that value merged already
_CLEANUPS = (("cse", cse.run), ("constfold", constfold.run), ("simplify", simplify.run),
             ("constfold", constfold.run), ("simplify", simplify.run), ("cse", cse.run), ("dce", dce.run))

PIPELINES = {
    "O0": (),
    "O1": _CLEANUPS,
    "O2": _CLEANUPS + (("fusion", fusion.run),),
}


@dataclass
class PassStat:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    note: str = ""  # why the pass left the graph unchanged, if it failed


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
    original = graph
    for k, (name, fn) in enumerate(passes, start=1):
        before, start = len(graph.nodes), time.perf_counter()
        note = ""
        try:
            new = fn(graph)
            new.copy_meta(original)  # passes keep input and output positions: the facts still hold
            if verify:
                new.verify(registry.infer_node)
            graph = new
        except Exception as exc:  # a pass that cannot handle a graph leaves it unchanged
            if os.environ.get("GRAPHC_PASS_ERRORS") == "raise":
                raise
            note = f"{type(exc).__name__}: {exc}"
            log.debug("pass %s left graph %s unchanged: %s", name, graph.name, note)
        stats.append(PassStat(name, before, len(graph.nodes), time.perf_counter() - start, note))
        if dump:
            _dump(dump, graph, k, name)
    if passes and not verify and graph is not original:
        try:  # one cheap check of the result; a broken graph is never compiled
            graph.verify(registry.infer_node)
        except Exception as exc:
            if os.environ.get("GRAPHC_PASS_ERRORS") == "raise":
                raise
            log.debug("pipeline %s broke graph %s (%s); compiling it unoptimized", pipeline, graph.name, exc)
            stats.append(PassStat("verify", len(graph.nodes), len(original.nodes), 0.0,
                                  f"{type(exc).__name__}: {exc}; fell back to the traced graph"))
            graph = original
    return graph, stats


def _dump(directory, graph, k, name):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{graph.name}.{k:02d}.{name}.txt"), "w") as f:
        f.write(str(graph) + "\n")
