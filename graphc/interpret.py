"""The NumPy reference interpreter: runs any Graph with each op's NumPy implementation.

It is the oracle every compiled path is tested against. A node's regions (nested
graphs) reach its op's reference as callables that interpret them.
"""
from __future__ import annotations

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
    with np.errstate(all="ignore"), warnings.catch_warnings():  # NaN and inf propagate silently,
        warnings.simplefilter("ignore", RuntimeWarning)           # as in compiled code ("mean of empty slice")
        for node in graph.nodes:
            regions = {"regions": [_runner(r) for r in node.regions]} if node.regions else {}
            result = registry.get(node.op).reference(*[env[v] for v in node.inputs], **node.attrs, **regions)
            results = result if len(node.outputs) > 1 else (result,)
            for v, r in zip(node.outputs, results):
                r = np.asarray(r)
                if r.shape != v.type.shape:
                    raise VerifyError(f"{node.op}: reference gave shape {r.shape}, type says {v.type}")
                env[v] = r.astype(v.type.dtype, copy=False)
    return [env[v] for v in graph.outputs]


def _runner(region: Graph):
    """A region as the callable its op's reference receives: arrays in, list of arrays out."""
    return lambda *args: interpret(region, *args)
