"""Helpers for writing generated Numba source: names, loop nests, broadcast loads.

Every value of rank >= 1 is a C-contiguous NumPy array in the generated code;
a rank-0 value is a plain scalar local. Shapes are static (a graph is traced for
one signature), so loop bounds and broadcast indices are literals.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from graphc.ir import Graph, Node, Value
from graphc.ops import registry

CTOR = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32",
        "int64": "np.int64", "bool": "np.bool_"}


def literal(value, dtype: str) -> str:
    """A typed scalar literal for generated source: ``np.float32(0.5)``, ``np.float64(-np.inf)``."""
    if dtype == "bool":
        return "True" if bool(value) else "False"
    if dtype.startswith("int"):
        return f"{CTOR[dtype]}({int(value)})"
    v = float(value)
    if math.isnan(v):
        text = "np.nan"
    elif math.isinf(v):
        text = "np.inf" if v > 0 else "-np.inf"
    else:
        text = repr(v)
    return f"{CTOR[dtype]}({text})"


def index_text(idx) -> str:
    return ", ".join(idx) if idx else "()"


class ScalarContext:
    """What an elementwise op's ``scalar`` rule may ask about its place in the loop."""

    def __init__(self, node: Node, loop_idx, loop_shape):
        self.node = node
        self.attrs = node.attrs
        self.dtype = node.outputs[0].type.dtype
        self.in_dtypes = [v.type.dtype for v in node.inputs]
        self._loop_idx = loop_idx
        self._loop_shape = loop_shape

    def lit(self, value, dtype=None) -> str:
        return literal(value, dtype or self.dtype)

    def index(self, axis: int) -> str:
        """The loop index along ``axis`` of this node's output (0 where it is broadcast)."""
        shape = self.node.outputs[0].type.shape
        offset = len(self._loop_shape) - len(shape)
        if shape[axis] == 1:
            return "0"
        return self._loop_idx[offset + axis]


class Emitter:
    """Accumulates the body of the generated entry function."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.lines: list[str] = []
        self.line_nodes: list[Node | None] = []  # which node each line belongs to
        self.names: dict[Value, str] = {}
        self.const_args: list[np.ndarray] = []  # non-scalar constants passed to the entry
        self.depth = 1
        self.node: Node | None = None
        self._tmp = 0

    # -- names and lines -----------------------------------------------------------
    def name(self, v: Value) -> str:
        return self.names[v]

    def define(self, v: Value, prefix="v") -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[v] = name
        return name

    def tmp(self, prefix="t") -> str:
        self._tmp += 1
        return f"{prefix}{self._tmp}"

    def line(self, text: str):
        self.lines.append("    " * self.depth + text)
        self.line_nodes.append(self.node)

    @contextmanager
    def block(self, header: str):
        self.line(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @contextmanager
    def loops(self, shape):
        """A loop nest over ``shape``; yields the index variable names, outermost first."""
        idx = [self.tmp("i") for _ in shape]
        for i, n in zip(idx, shape):
            self.line(f"for {i} in range({n}):")
            self.depth += 1
        try:
            yield idx
        finally:
            self.depth -= len(shape)

    # -- buffers ---------------------------------------------------------------------
    def alloc(self, v: Value) -> str:
        """Define ``v``; rank >= 1 gets a fresh C-contiguous buffer, rank 0 a scalar local."""
        name = self.define(v)
        if v.type.shape:
            self.line(f"{name} = np.empty({tuple(v.type.shape)!r}, {CTOR[v.type.dtype]})")
        return name

    def load(self, v: Value, loop_idx, loop_shape) -> str:
        """Element of ``v`` at the loop position, broadcasting (right-aligned, size-1 dims -> 0)."""
        shape = v.type.shape
        if not shape:
            return self.name(v)
        offset = len(loop_shape) - len(shape)
        idx = ["0" if n == 1 and loop_shape[offset + d] != 1 else loop_idx[offset + d]
               for d, n in enumerate(shape)]
        return f"{self.name(v)}[{index_text(idx)}]"

    def store(self, v: Value, idx, expr: str):
        if v.type.shape:
            self.line(f"{self.name(v)}[{index_text(idx)}] = {expr}")
        else:
            self.line(f"{self.name(v)} = {expr}")


def emit_elementwise(em: Emitter, nodes):
    """One loop nest computing a chain of elementwise nodes; intermediates stay in locals.

    ``nodes`` are in topological order and all share the last node's output shape
    (broadcast inputs are read by index arithmetic). Values used outside the group
    are the caller's business: here only the last node's output is stored.
    """
    out = nodes[-1].outputs[0]
    shape = out.type.shape
    em.alloc(out)
    inside = {n.outputs[0] for n in nodes}
    with em.loops(shape) as idx:
        local = {}
        for v in dict.fromkeys(v for n in nodes for v in n.inputs if v not in inside):
            local[v] = em.tmp("x")
            em.line(f"{local[v]} = {em.load(v, idx, shape)}")
        for node in nodes:
            ctx = ScalarContext(node, idx, shape)
            expr = registry.get(node.op).scalar(ctx, *[local[v] for v in node.inputs])
            v = node.outputs[0]
            local[v] = em.tmp("t")
            em.line(f"{local[v]} = {CTOR[v.type.dtype]}({expr})")
        em.store(out, idx, local[out])
