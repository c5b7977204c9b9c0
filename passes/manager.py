"""Named pass pipelines.

``O0`` runs nothing, ``O1`` the cleanups (CSE, constant folding, algebraic
simplification to a fixpoint, then DCE, then loop-invariant code motion), ``O2`` (the
default) the cleanups, then fusion. The pipeline also runs inside the bodies of loops and
branches (``_optimize_regions``). (Memory planning is the CPU backend's: graphc/backend/plan.py.)

Every pass is a pure function ``Graph -> Graph``: it returns a new graph and
never edits or shares the nodes of its input. The manager keeps the graph's
declared facts (input names and roles, donations) across passes
(``_keep_metadata``).

A pass that raises (or, under ``verify``, returns a graph that fails
``Graph.verify``) is a bug. ``GRAPHC_PASS_ERRORS`` says what happens then:

* ``warn`` (the default): a ``PassWarning`` names the pass and the graph, the graph
  from before that pass is used, and the pass is skipped for the rest of the run;
* ``raise`` (the tests' setting): the exception propagates, with a note naming the
  pass and the graph.

``GRAPHC_DUMP=dir`` writes the graph after each pass; ``verify=True`` (the
tests' setting, or ``GRAPHC_VERIFY=1``) checks the IR after every pass.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
import warnings
from dataclasses import dataclass

from graphc.errors import PassWarning
from graphc.ir import Graph
from graphc.ops import registry
from graphc.ops.control import CONTROL
from graphc.passes import constfold, cse, dce, fusion, hoist, simplify

log = logging.getLogger("graphc.passes")


@dataclass(frozen=True)
class Fixpoint:
    """Run ``passes`` in turn, round after round, until none of them changes the graph.

    The loop stops as soon as every pass has run once on the current graph without
    changing it. After ``max_rounds`` rounds it stops anyway: the graph it has is
    correct (every pass preserves what a graph computes), only perhaps not fully
    cleaned up; under ``GRAPHC_PASS_ERRORS=raise`` not converging is an error
    (two rules that undo each other).
    """

    name: str
    passes: tuple  # (name, fn) pairs
    max_rounds: int = 8


# CSE runs first: a rewrite that depends on a value having one use (transpose of a
# matmul) must see duplicates of that value merged already. DCE runs once, after the
# loop: removing dead nodes enables no other cleanup (they match a node and its operands,
# and simplify counts only live uses), so the loop need not go round again for it.
CLEANUPS = Fixpoint("cleanups", (("cse", cse.run), ("constfold", constfold.run), ("simplify", simplify.run)))
_DCE = ("dce", dce.run)

_HOIST = ("hoist", hoist.run)  # (before fusion: a fused group is moved out whole or not at all)
PIPELINES = {
    "O0": (),
    "O1": (CLEANUPS, _DCE, _HOIST),
    "O2": (CLEANUPS, _DCE, _HOIST, ("fusion", fusion.run)),
}

PASS_ERRORS = ("warn", "raise")


@dataclass
class PassStat:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    note: str = ""  # why the pass left the graph unchanged, if it failed (or its loop did not settle)
    iteration: int = 1  # the round of its fixpoint loop (1 for a pass outside a loop)
    changed: bool = True  # the pass returned a graph different from its input


def check_pipeline(name: str) -> str:
    if name not in PIPELINES:
        raise ValueError(f"unknown pass pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    return name


def pass_errors() -> str:
    """What a failing pass does: ``GRAPHC_PASS_ERRORS``, ``warn`` unless set."""
    mode = os.environ.get("GRAPHC_PASS_ERRORS") or "warn"
    if mode not in PASS_ERRORS:
        raise ValueError(f"GRAPHC_PASS_ERRORS={mode!r}; choose one of {', '.join(PASS_ERRORS)}")
    return mode


def _keep_metadata(source: Graph, result: Graph) -> Graph:
    """Carry the graph's declared facts (input names and roles, donations) onto a pass's result:
    passes keep the positions of inputs and outputs, so the facts hold for every graph they
    return (copied: graphs share no mutable state)."""
    return result.copy_meta(source)


class _Run:
    """One run of a pipeline over one graph: the stats, the dumps, the failed passes."""

    def __init__(self, graph: Graph, pipeline: str, verify: bool, errors: str | None = None):
        self.original = graph
        self.pipeline = pipeline
        self.verify = verify
        if errors is not None and errors not in PASS_ERRORS:
            raise ValueError(f"errors={errors!r}; choose one of {', '.join(PASS_ERRORS)}")
        self.mode = errors or pass_errors()
        self.dump = os.environ.get("GRAPHC_DUMP")
        self.stats: list[PassStat] = []
        self.skipped: set[str] = set()  # passes that failed: not run again
        self.count = 0
        if self.dump:
            _dump(self.dump, graph, 0, "traced")

    def step(self, graph: Graph, name: str, fn, iteration: int = 1):
        """Run one pass; returns ``(graph, changed)``."""
        if name in self.skipped:
            return graph, False
        before, start = len(graph.nodes), time.perf_counter()
        note, changed = "", False
        try:
            new = _keep_metadata(self.original, fn(graph))
            if self.verify:
                new.verify(registry.infer_node)
            changed = not _same_graph(graph, new)
            graph = new
        except Exception as exc:
            note = self.report_failure(exc, f"pass {name!r}", graph)
            self.skipped.add(name)
        self.stats.append(PassStat(name, before, len(graph.nodes), time.perf_counter() - start, note,
                                   iteration, changed))
        self.count += 1
        if self.dump:
            _dump(self.dump, graph, self.count, name)
        return graph, changed

    def fixpoint(self, graph: Graph, loop: Fixpoint) -> Graph:
        unchanged = 0  # passes run in a row that left the graph as it was
        for iteration in range(1, loop.max_rounds + 1):
            for name, fn in loop.passes:
                graph, changed = self.step(graph, name, fn, iteration)
                unchanged = 0 if changed else unchanged + 1
                if unchanged == len(loop.passes):
                    return graph
        message = (f"the {loop.name} of pipeline {self.pipeline} still changed graph {graph.name!r} "
                   f"after {loop.max_rounds} rounds; going on with the graph it has")
        if self.mode == "raise":
            raise RuntimeError(message)
        log.debug(message)
        self.stats[-1].note = message
        return graph

    def run_steps(self, graph: Graph) -> Graph:
        """The pipeline's passes over ``graph``, then over its loops' and branches' bodies."""
        steps = PIPELINES[self.pipeline]
        for step in steps:
            if isinstance(step, Fixpoint):
                graph = self.fixpoint(graph, step)
            else:
                graph, _ = self.step(graph, *step)
        return _optimize_regions(graph, self) if steps else graph

    def report_failure(self, exc: Exception, what: str, graph: Graph) -> str:
        """Re-raise ``exc`` (GRAPHC_PASS_ERRORS=raise) or warn; returns the note for PassStat."""
        note = f"{type(exc).__name__}: {exc}"
        if self.mode == "raise":
            exc.add_note(f"(raised by graphc's {what} on graph {graph.name!r}; "
                         f"GRAPHC_PASS_ERRORS=raise)")
            raise
        warnings.warn(f"graphc's {what} failed on graph {graph.name!r} ({note}); using the graph from "
                      f"before it. Please report this as a graphc bug.", PassWarning, stacklevel=2)
        return note


def run(graph: Graph, pipeline: str = "O2", verify: bool | None = None, errors: str | None = None):
    """Run the named pipeline; returns ``(graph, [PassStat...])``, one stat per pass run.

    ``errors`` overrides ``GRAPHC_PASS_ERRORS`` for this run: ``"raise"`` where a caller has a
    fallback of its own (the runtime's shape-generic attempt: graphc/runtime.py), so a failing
    pass ends that attempt instead of warning the user."""
    steps = PIPELINES[check_pipeline(pipeline)]
    verify = bool(os.environ.get("GRAPHC_VERIFY")) if verify is None else verify
    state = _Run(graph, pipeline, verify, errors)
    original = graph
    with _collector_paused():
        graph = state.run_steps(graph)
        if steps and not verify and graph is not original:
            try:  # one cheap check of the result; a broken graph is never compiled
                graph.verify(registry.infer_node)
            except Exception as exc:
                note = state.report_failure(exc, f"pipeline {pipeline}", graph)
                state.stats.append(PassStat("verify", len(graph.nodes), len(original.nodes), 0.0,
                                            f"{note}; fell back to the traced graph", changed=False))
                graph = original
    return graph, state.stats


def _optimize_regions(graph: Graph, state: "_Run") -> Graph:
    """Run the pipeline over the bodies of loops and branches too (fused bodies are the
    fusion pass's own), innermost first; a region keeps its inputs and outputs."""
    if not any(node.op in CONTROL for node in graph.nodes):
        return graph
    graph = graph.clone()
    for node in graph.nodes:
        if node.op in CONTROL:
            node.regions = [_optimized_region(region, state) for region in node.regions]
    return graph


def _optimized_region(region: Graph, state: "_Run") -> Graph:
    inner = _Run(region, state.pipeline, state.verify, state.mode)
    inner.dump = None
    region = inner.run_steps(region)
    state.stats += [PassStat(f"{stat.name} ({region.name})", stat.nodes_before, stat.nodes_after, stat.seconds,
                             stat.note, stat.iteration, stat.changed) for stat in inner.stats]
    return region


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while the passes run.

    Each pass copies the graph (tens of thousands of small objects for a large graph);
    the collector would otherwise rescan every live object many times over, which costs
    more than the passes themselves. The discarded graphs are collected afterwards as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _same_graph(a: Graph, b: Graph) -> bool:
    """``str(a) == str(b)``, decided without printing: the same nodes in the same order, reading
    operands at the same positions. (Attributes compare with ==, so a pass that only turned an
    attribute 0.0 into -0.0 would count as no change: a loop would stop early, with a correct graph.)"""
    if (a.name, len(a.nodes), len(a.outputs)) != (b.name, len(b.nodes), len(b.outputs)) or \
            [v.type for v in a.inputs] != [v.type for v in b.inputs]:
        return False
    twin = dict(zip(a.inputs, b.inputs))  # value of a -> the value of b at its position
    for x, y in zip(a.nodes, b.nodes):
        if x.op != y.op or x.loc != y.loc or len(x.inputs) != len(y.inputs) or \
                len(x.outputs) != len(y.outputs) or x.attrs != y.attrs or \
                [str(r) for r in x.regions] != [str(r) for r in y.regions]:
            return False
        if any(twin.get(u) is not w for u, w in zip(x.inputs, y.inputs)):
            return False
        for u, w in zip(x.outputs, y.outputs):
            if u.type != w.type:
                return False
            twin[u] = w
    return all(twin.get(u) is w for u, w in zip(a.outputs, b.outputs))


def _dump(directory, graph, k, name):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{graph.name}.{k:02d}.{name}.txt"), "w") as f:
        f.write(str(graph) + "\n")
