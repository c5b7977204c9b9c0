"""Helpers for writing generated Numba source: names, loop nests, broadcast loads.

Every value of rank >= 1 is a C-contiguous NumPy array in the generated code;
a rank-0 value is a plain scalar local. Shapes are static (a graph is traced for
one signature), so loop bounds and broadcast indices are literals, except a
symbolic dimension (``f32[B,64]``, a graph compiled for every batch size): it prints
as the entry's local ``dim_B`` (SYMBOL_PREFIX; graphc/backend/cpu.py named_symbols),
read from an argument's shape, and a symbolic dim is never 1.
"""
from __future__ import annotations

import builtins
import keyword
import os
import re
from contextlib import contextmanager

import numpy as np

from graphc.backend import vecmath
from graphc.ir import Graph, Node, Value
from graphc.ops import registry
from graphc.ops.elementwise import pow_expr
from graphc.ops.scalar import CTOR, literal  # noqa: F401  (CTOR: re-exported for the backend)

# @njit options of every function graphc generates (no cache=True: graphc.backend.cache gives
# each its checked disk cache). (no_rewrites=True, measured: Numba's rewrite passes cost ~0.3 s
# of the MLP training step's compile, and their absence costs its lowering as much)
NJIT_KERNEL_OPTIONS = "error_model='numpy', nogil=True"

# names generated code may use for something else: builtins, modules, the entry's parameters
RESERVED_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | {
    "np", "njit", "prange", "entry", "ws", "ob", "empty_c", "zeros_c", "reshape_c", "view_c", "gemm", "gemm_acc",
    "offsets_c", "row_c", "seq_c"}  # (cpu.HELPERS)
# a symbolic dimension's run-time value is named SYMBOL_PREFIX + its name (``dim_B``), a form no
# input or generated name takes
SYMBOL_PREFIX = "dim_"
# the forms of generated names: values (v3), temporaries (t_5, acc_1), entry parameters
# (a0, c1, rb2), kernel parameters (p0, o1)
_GENERATED = re.compile(r"(?:[vacpo]|rb)\d+|[a-z]+_\d+")


def readable_names(names, count: int) -> list[str]:
    """Names for the entry's ``count`` inputs from ``names`` (the user's parameter and State names,
    or None): Python identifiers, unique, never a generated or reserved name; ``a{i}`` where a
    name is missing."""
    out, taken = [], set()
    for i in range(count):
        raw = names[i] if names is not None and i < len(names) and names[i] else f"a{i}"
        base = re.sub(r"[^0-9A-Za-z_]", "_", str(raw)).strip("_") or f"a{i}"  # ASCII: x² and ﬁ are no identifiers
        if base[0].isdigit() or base in RESERVED_NAMES or _GENERATED.fullmatch(base) and base != f"a{i}" \
                or base.startswith(SYMBOL_PREFIX):
            base = "arg_" + base
        name, k = base, 1
        while name in taken or (name in RESERVED_NAMES) or (_GENERATED.fullmatch(name) and name != f"a{i}") \
                or hasattr(vecmath, name):
            k += 1
            name = f"{base}{k}x" if _GENERATED.fullmatch(f"{base}{k}") else f"{base}{k}"
        taken.add(name)
        out.append(name)
    return out


def index_text(idx) -> str:
    return ", ".join(idx) if idx else "()"


class ScalarContext:
    """What an elementwise op's ``scalar`` rule may ask about its place in the loop."""

    def __init__(self, node: Node, loop_idx, loop_shape, imports=None):
        self.node = node
        self._imports = imports if imports is not None else set()
        self.attrs = node.attrs
        self.dtype = node.outputs[0].type.dtype
        self.in_dtypes = [v.type.dtype for v in node.inputs]
        self._loop_idx = loop_idx
        self._loop_shape = loop_shape

    def lit(self, value, dtype=None) -> str:
        return literal(value, dtype or self.dtype)

    def helper(self, name: str) -> str:
        """``name`` of a scalar helper of graphc.backend.vecmath, imported into the generated module."""
        self._imports.add(name)
        return name

    def index(self, axis: int) -> str:
        """The loop index along ``axis`` of this node's output (0 where it is broadcast)."""
        shape = self.node.outputs[0].type.shape
        offset = len(self._loop_shape) - len(shape)
        if shape[axis] == 1:
            return "0"
        return self._loop_idx[offset + axis]


class Emitter:
    """Accumulates the body of the generated entry function."""

    kernel_options = NJIT_KERNEL_OPTIONS  # @njit options of the kernels it writes

    def __init__(self, graph: Graph, plan=None):
        self.graph = graph
        self.lines: list[str] = []
        self.line_nodes: list[Node | None] = []  # which node each line belongs to
        self.names: dict[Value, str] = {}
        self.const_args: list[np.ndarray] = []  # non-scalar constants passed to the entry
        self.depth = 1
        self.node: Node | None = None
        self._tmp = 0
        self.math = "fast"  # "fast": vectorizable graphc.backend.vecmath; "libm": np.exp & co.
        self.kernels: list[str] = []  # source of the fused kernels the entry calls
        self.imports: set[str] = set()  # vecmath functions and cpu.HELPERS the code uses
        self.kernel_info: list[dict] = []  # per kernel: name, node, parallel, fastmath, flat
        # kernel text (options, parameters, body) -> its name: identical groups share one kernel
        self.kernel_bodies: dict = {}
        self.outlined: list[dict] = []  # per function of graphc.backend.outline: name, node, calls
        # fused nodes of the entry whose body repeats often enough to be one kernel of any size
        # (graphc.backend.schedule.generic_groups)
        self.generic: set[Node] = set()
        self.plan = plan  # the backend's plan.MemoryPlan, or None: every array fresh
        self._closing: list[int] = []  # per loop opened by open_loop: 1, or 0 where none was written
        # per loop of graphc.backend.control being written (innermost last): [line index, depth] of
        # its preamble, where the buffers of its body's values are allocated once, not per step
        self.hoist: list[list[int]] = []
        # a value written into the buffer of another, dead by then (a loop's sum updated in
        # place: graphc/backend/control.py): alloc names that buffer
        self.reuse: dict[Value, Value] = {}
        # a value computed straight into a view (a scan's ys, into its step of the stacked
        # output: graphc/backend/control.py): alloc binds it to that expression, once
        self.slots: dict[Value, str] = {}

    # -- names and lines -----------------------------------------------------------
    def name(self, v: Value) -> str:
        return self.names[v]

    def define(self, v: Value, prefix="v") -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[v] = name
        return name

    def tmp(self, prefix="t") -> str:
        """A fresh local name. The underscore keeps temporaries apart from ``define``'s value
        names (``tmp("v")`` once returned a graph value's own name, ``v2``, and overwrote it)."""
        self._tmp += 1
        return f"{prefix}_{self._tmp}"

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
        """A loop nest over ``shape``; yields the index of each dim, outermost first: a loop
        variable, or ``0`` for a dim of size 1 (which gets no loop)."""
        idx = ["0" if n == 1 else self.tmp("i") for n in shape]
        opened = 0
        for i, n in zip(idx, shape):
            if n != 1:
                self.line(f"for {i} in range({n}):")
                self.depth += 1
                opened += 1
        try:
            yield idx
        finally:
            self.depth -= opened

    def open_loop(self, n: int, prefix: str = "i", rng: str = "range") -> str:
        """Open one loop over ``n`` (``rng``: range or prange) and return its index; a size-1
        dim gets no loop and index ``0`` (close with ``close_loops``)."""
        if n == 1 and rng == "range":
            self._closing.append(0)
            return "0"
        i = self.tmp(prefix)
        self.line(f"for {i} in {rng}({n}):")
        self.depth += 1
        self._closing.append(1)
        return i

    def close_loops(self, count: int):
        """Close the last ``count`` loops opened by ``open_loop``."""
        for _ in range(count):
            self.depth -= self._closing.pop()

    # -- buffers ---------------------------------------------------------------------
    def alloc(self, v: Value, fill: str | None = None) -> str:
        """Define ``v``: a C-contiguous buffer for rank >= 1 (filled with ``fill`` if given), else a local.

        Where the buffer lives is the graph's memory plan (graphc/backend/plan.py): a block of the
        workspace argument ``ws``, a recycled out-buffer argument ``rbK`` (an array the runtime
        returned on an earlier call and the user has since dropped), or, for values the plan
        does not name, a fresh array.
        """
        if v in self.reuse:
            self.names[v] = self.name(self.reuse[v])
            return self.names[v]
        if v in self.slots:
            name = self.define(v)
            self.line(f"{name} = {self.slots.pop(v)}")
            if fill is not None:
                self.fill(name, tuple(v.type.shape), fill)
            return name
        name = self.define(v)
        if not v.type.shape:
            return name
        shape, ctor = tuple(v.type.shape), CTOR[v.type.dtype]
        plan = self.plan
        if plan is not None and v in plan.workspace:
            offset, size = plan.workspace[v]
            self.imports.add("view_c")  # graphc.backend.intrinsics: compiled inline, no checks
            self.line(f"{name} = view_c(ws, {offset}, {shape!r}, {ctor})")
        elif plan is not None and v in plan.outputs:
            self.line(f"{name} = rb{plan.outputs[v]}")
        elif plan is not None and v in plan.inplace:  # a State's update, into the State's array
            self.line(f"{name} = {self.name(plan.inplace[v])}")
        elif self.hoist:  # a value of a loop body: its buffer is allocated before the loop
            self.buffer(name, shape, v.type.dtype)
            if fill is not None:
                self.fill(name, shape, fill)
            return name
        elif fill == "0":  # zeros_c / empty_c: np.zeros / np.empty compiled inline (graphc.backend.intrinsics)
            self.imports.add("zeros_c")
            self.line(f"{name} = zeros_c({shape!r}, {ctor})")
            return name
        else:
            self.imports.add("empty_c")
            self.line(f"{name} = empty_c({shape!r}, {ctor})")
        if fill is not None:  # a[...] = x is lowered inline; a.fill(x) would compile an overload
            self.line(f"{name}[...] = {fill}")
        return name

    def fill(self, name: str, shape, value: str):
        """Set every element of the C-contiguous array ``name`` to ``value``: a flat loop
        (Numba compiles ``a[...] = x`` as a function of its own per signature, ~0.1 s each)."""
        size = " * ".join(map(str, shape)) or "1"
        flat = name
        if len(shape) > 1:
            self.imports.add("reshape_c")
            flat = self.tmp("f")
            self.line(f"{flat} = reshape_c({name}, ({size},))")
        q = self.tmp("q")
        with self.block(f"for {q} in range({size}):"):
            self.line(f"{flat}[{q}] = {value}")

    def copy(self, dst: str, src: str, shape, lead: str = ""):
        """``dst[lead, ...] = src`` element by element (either may be a strided view), as loops
        (see ``fill``); ``lead``: indices of ``dst``'s leading axes (a scan's step)."""
        with self.loops(tuple(shape)) as idx:
            at = ", ".join(([lead] if lead else []) + list(idx))
            self.line(f"{dst}[{at or '()'}] = {src}[{index_text(idx)}]")

    def buffer(self, name: str, shape, dtype: str):
        """Bind ``name`` to a new C-contiguous array, before the innermost loop being written if
        any (made once, reused by every step)."""
        self.imports.add("empty_c")
        text = f"{name} = empty_c({tuple(shape)!r}, {CTOR[dtype]})"
        if self.hoist:
            self.hoisted_line(text)
        else:
            self.line(text)

    def hoisted_line(self, text: str):
        """Write ``text`` in the preamble of the innermost loop being written (run once before it)."""
        at = self.hoist[-1]
        self.lines.insert(at[0], "    " * at[1] + text)
        self.line_nodes.insert(at[0], self.node)
        at[0] += 1

    def scratch(self, shape, dtype: str) -> str:
        """Expression for a fresh per-call scratch array (accumulator rows; not in the memory plan)."""
        self.imports.add("empty_c")  # np.empty compiled inline (graphc.backend.intrinsics)
        return f"empty_c({tuple(shape)!r}, {CTOR[dtype]})"

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


# ops whose scalar expression, given float operands of one dtype, has that dtype in Numba (so
# their result needs no cast): float arithmetic, comparisons-and-selects of the operands, abs,
# sqrt (and every vecmath call); ``where``'s value operands (its condition is a bool)
_FLOAT_CLOSED = frozenset({"add", "sub", "mul", "div", "neg", "abs", "sqrt", "relu",
                           "maximum", "minimum", "fmax", "fmin", "where"})


def typed(node: Node, expr: str, vector: bool) -> str:
    """``expr`` (node's scalar expression) as a value of the node's dtype: cast only where
    Numba's type of the expression could differ (``vector``: it is a vecmath call)."""
    dtype = node.outputs[0].type.dtype
    values = node.inputs[1:] if node.op == "where" else node.inputs
    if dtype.startswith("float") and all(v.type.dtype == dtype for v in values) \
            and (vector or node.op in _FLOAT_CLOSED):
        return expr
    return f"{CTOR[dtype]}({expr})"


def emit_scalar_node(em: Emitter, node: Node, local: dict, idx, shape, prefix: str = "t") -> str:
    """One line computing elementwise ``node`` from ``local`` operand names; returns its name."""
    ctx = ScalarContext(node, idx, shape, em.imports)
    args = [local[v] for v in node.inputs]
    expr, vector = _scalar_expr(em, node, ctx, args, with_kind=True)
    if expr in args and node.inputs[args.index(expr)].type.dtype == node.outputs[0].type.dtype:
        return expr  # the operand itself (a broadcast, a cast to its own dtype): no new local
    name = em.tmp(prefix)
    em.line(f"{name} = {typed(node, expr, vector)}")
    return name


def emit_elementwise(em: Emitter, nodes):
    """One loop nest computing a chain of elementwise nodes; intermediates stay in locals.

    ``nodes`` are in topological order and all share the last node's output shape
    (broadcast inputs are read by index arithmetic). Values used outside the group
    are the caller's business: here only the last node's output is stored.
    """
    out = nodes[-1].outputs[0]
    shape = out.type.shape
    inside = {n.outputs[0] for n in nodes}
    if not shape and len(nodes) == 1:  # a scalar op: one line
        node = nodes[0]
        ctx = ScalarContext(node, [], (), em.imports)
        expr, vector = _scalar_expr(em, node, ctx, [em.name(v) for v in node.inputs], with_kind=True)
        em.line(f"{em.define(out)} = {typed(node, expr, vector)}")
        return
    em.alloc(out)
    with em.loops(shape) as idx:
        local = {}
        for v in dict.fromkeys(v for n in nodes for v in n.inputs if v not in inside):
            local[v] = em.tmp("x")
            em.line(f"{local[v]} = {em.load(v, idx, shape)}")
        for node in nodes:
            local[node.outputs[0]] = emit_scalar_node(em, node, local, idx, shape)
        em.store(out, idx, local[out])


# -- loop strategy settings (graphc/backend/schedule.py reads them here, where tests and
# benchmarks set them) ------------------------------------------------------------------
# A fused kernel runs its outer loop with prange when its domain has at least this many
# elements. benchmarks/parallel_threshold.py (2-core Zen 4, 2 threads; results/parallel_threshold.md)
# measured where prange starts to beat the serial kernel: 2**11..2**14 elements for
# tanh(x*w+b)*x, 2**16 for sum(x*w), 2**17 for sum(g*(h>0), axis=0); from 2**18 on every one
# gains 1.3-2x. Compile cost keeps the threshold above the crossover: the first parallel kernel
# of a process costs ~0.3 s more CPU to compile, a training step's fused backward kernels
# ~0.3-0.45 s each (784-256-128-10 MLP at batch 512: 5.6 s cold with none parallel, 6.5 s with
# its three groups of 2**17..2**18 elements parallel); at 2**18 it stays serial, its cold compile
# unchanged. On a machine whose cores are busy with other processes a parallel call can stall
# for a scheduler slice (ms); GRAPHC_PARALLEL_MIN overrides the threshold.
PARALLEL_MIN = int(os.environ.get("GRAPHC_PARALLEL_MIN", 1 << 18))
# a parallel memory-order reduction with no kept dim to split over threads splits its first
# reduced axis into this many blocks (a constant, so results do not depend on the thread count)
PARALLEL_BLOCKS = 8
BLOCK_MIN_ROWS = 8  # ... and only when each block gets at least this many rows
# a flat kernel with sums runs over blocks of this many elements (see schedule.emit_group); any size from
# 128 to 4096 ran equally fast, and 256 keeps float32 partials as short as NumPy's pairwise leaves
# (a float32 partial can overflow where a float64 running sum would not, as NumPy's can)
FLAT_BLOCK = 256

# The CPU mapping of the scalar vocabulary (graphc.ops.scalar.MATH, named by ops in ``Op.math``):
# graphc.backend.vecmath's branch-free functions, which vectorize in loops (math="fast")
_SHORT = {"float32": "f32", "float64": "f64"}


def vector_math(name: str | None, dtype: str) -> str | None:
    """The graphc.backend.vecmath function computing vocabulary function ``name`` at ``dtype``."""
    if name is None or dtype not in _SHORT or dtype not in vecmath.FUNCTIONS.get(name, {}):
        return None
    return f"{name}_{_SHORT[dtype]}"


def scalar_only_ops() -> dict:
    """Float elementwise ops whose loops do not vectorize, and why (their own declarations:
    ``Op.scalar_reason``); tests/test_fusion.py checks that every other one's loop does."""
    return {name: op.scalar_reason for name, op in registry.OPS.items() if op.scalar_reason}


def _scalar_expr(em, node, ctx, args, with_kind=False):
    """The scalar expression of elementwise ``node``: its vocabulary math, vectorized where the
    backend has it and ``em.math == "fast"``, else the op's own ``scalar`` rule. ``with_kind``:
    return ``(expr, is a vecmath call)``."""
    op = registry.get(node.op)
    fn = vector_math(op.math, node.outputs[0].type.dtype) if em.math == "fast" else None
    if fn is None:
        expr = op.scalar(ctx, *args)
    else:
        em.imports.add(fn)
        expr = f"{fn}({', '.join(args)})"
        if op.math == "pow":  # NumPy's sqrt fast path for x ** 0.5 (graphc.ops.elementwise)
            expr = pow_expr(ctx, *args, expr)
    return (expr, fn is not None) if with_kind else expr


# groups below this many elements (and not parallel) are inlined into the entry
INLINE_MAX = int(os.environ.get("GRAPHC_INLINE_MAX", 1 << 16))


