"""The NumPy reference interpreter: runs any Graph with each op's NumPy implementation.

It is the oracle every compiled path is tested against. A node's regions (nested
graphs) reach its op's reference as callables that interpret them.
"""
from __future__ import annotations

import contextlib
import threading
import warnings

import numpy as np

from graphc.errors import VerifyError
from graphc.ir import Graph
from graphc.ops import registry


def interpret(graph: Graph, *args) -> list:
    """Evaluate ``graph`` on ``args``; returns the list of output arrays."""
    if len(args) != len(graph.inputs):
        raise TypeError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(args)}")
    env = {v: np.asarray(a, dtype=v.type.dtype) for v, a in zip(graph.inputs, args)}
    with np.errstate(all="ignore"), _runtime_warnings_ignored():  # NaN and inf propagate silently,
        # as in compiled code ("mean of empty slice")
        for node in graph.nodes:
            regions = {"regions": [runner(r) for r in node.regions]} if node.regions else {}
            result = registry.get(node.op).reference(*[env[v] for v in node.inputs], **node.attrs, **regions)
            results = result if len(node.outputs) > 1 else (result,)
            for v, r in zip(node.outputs, results):
                r = np.asarray(r)
                if r.shape != v.type.shape:
                    raise VerifyError(f"{node.op}: reference gave shape {r.shape}, type says {v.type}")
                env[v] = r.astype(v.type.dtype, copy=False)
    return [env[v] for v in graph.outputs]


_QUIET_LOCK = threading.Lock()
_quiet = {"users": 0, "filter": None}


@contextlib.contextmanager
def _runtime_warnings_ignored():
    """Ignore RuntimeWarning while graphs run. Not ``warnings.catch_warnings``: two threads
    interleaving it (the interpreter tier runs the first calls of threaded code) restore each
    other's filters, which left RuntimeWarning ignored for the rest of the process. One shared
    filter instead, added by the first thread in and removed by the last one out."""
    with _QUIET_LOCK:
        if _quiet["users"] == 0:
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            _quiet["filter"] = warnings.filters[0]
        _quiet["users"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet["users"] -= 1
            if _quiet["users"] == 0:
                ours = _quiet["filter"]
                for i, entry in enumerate(warnings.filters):
                    if entry is ours:  # (by identity: the user's own equal filter stays)
                        del warnings.filters[i]
                        getattr(warnings, "_filters_mutated", lambda: None)()
                        break


def runner(region: Graph):
    """A region as the callable its op's reference receives: arrays in, list of arrays out
    (its ``graph`` attribute is the region, for a reference that needs its types)."""
    def run(*args):
        return interpret(region, *args)
    run.graph = region
    return run
