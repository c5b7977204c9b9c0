"""``device="numpy"``: run a graph with the NumPy interpreter, without compiling anything.

Every node runs its op's NumPy reference (graphc/interpret.py), so a traced function
gives its first result at once and behaves as the oracle the compiled backends are
tested against: useful for debugging a trace, a pass or a backend. The runtime does the
rest as for any device (copies of outputs that alias inputs, State write-back, guards).
"""
from __future__ import annotations

import numpy as np

from graphc.backend.base import Backend, Executable, register
from graphc.interpret import interpret
from graphc.ir import Graph


class Interpreted(Executable):
    """A graph run node by node with NumPy on each call."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph

    def __call__(self, *args) -> tuple:
        outputs = interpret(self.graph, *args)
        # A reference may hand back a view or its own operand (np.reshape, astype(copy=False)),
        # so an output can share memory with an input, an intermediate or another output in
        # ways the graph's view ops do not show: keep only arrays that own fresh, writable
        # memory nothing else returned, and copy the rest.
        taken = {id(a) for a in args}
        fresh = []
        for out in outputs:
            if not (type(out) is np.ndarray and out.base is None and out.flags.writeable) or id(out) in taken:
                out = np.array(out)
            taken.add(id(out))
            fresh.append(out)
        return tuple(fresh)


class NumpyBackend(Backend):
    """``device="numpy"``: the NumPy interpreter as a backend. It has no options."""

    device = "numpy"
    options: dict = {}

    def compile(self, graph: Graph, options: dict) -> Interpreted:
        self.check_options(options)
        return Interpreted(graph)


BACKEND = register(NumpyBackend())
