"""Helpers for writing generated Numba source: names, loop nests, broadcast loads.

Every value of rank >= 1 is a C-contiguous NumPy array in the generated code;
a rank-0 value is a plain scalar local. Shapes are static (a graph is traced for
one signature), so loop bounds and broadcast indices are literals.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager

import numpy as np

from graphc.ir import Graph, Node, Value
from graphc.ops import registry

from graphc.ops.scalar import CTOR, literal  # noqa: E402,F401  (re-exported for the backend)


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

    kernel_options = "error_model='numpy', nogil=True"  # @njit options of the kernels it writes

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
        self.plan = plan  # the backend's plan.MemoryPlan, or None: every array fresh

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
    def alloc(self, v: Value, fill: str | None = None) -> str:
        """Define ``v``: a C-contiguous buffer for rank >= 1 (filled with ``fill`` if given), else a local.

        Where the buffer lives is the graph's memory plan (passes/memory.py): a block of the
        workspace argument ``ws``, a recycled out-buffer argument ``rbK`` (an array the runtime
        returned on an earlier call and the user has since dropped), or, for values the plan
        does not name, a fresh array.
        """
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
            ctx = ScalarContext(node, idx, shape, em.imports)
            expr = registry.get(node.op).scalar(ctx, *[local[v] for v in node.inputs])
            v = node.outputs[0]
            local[v] = em.tmp("t")
            em.line(f"{local[v]} = {CTOR[v.type.dtype]}({expr})")
        em.store(out, idx, local[out])


# -- fused groups ----------------------------------------------------------------------
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
# a flat kernel with sums runs over blocks of this many elements (see emit_fused); any size from
# 128 to 4096 ran equally fast, and 256 keeps float32 partials as short as NumPy's pairwise leaves
# (a float32 partial can overflow where a float64 running sum would not, as NumPy's can)
FLAT_BLOCK = 256

# ops with a vectorizable implementation in graphc.backend.vecmath (math="fast")
FAST_MATH = {"exp", "log", "tanh", "sigmoid", "sin", "cos", "pow", "expm1", "log1p", "exp2", "log2", "log10",
             "sinh", "cosh", "tan", "arcsinh", "arccosh", "arctanh", "arctan", "arctan2", "arcsin", "arccos", "hypot"}
# float elementwise ops whose loops do not vectorize, and why (tests/test_fusion.py checks that
# every other float elementwise op's loop does)
SCALAR_MATH = {
    **dict.fromkeys(("logaddexp", "logaddexp2"),
                    "NumPy's formula m + log1p(exp(-|x - y|)) cancels where m is near -log(2): vecmath's exp "
                    "and log1p errors would grow there, so the libm calls NumPy makes are kept"),
    **dict.fromkeys(("floordiv", "mod"), "NumPy's floor division needs fmod, which has no SIMD form "
                                         "(LLVM's frem is a libm call per lane)"),
}
_SHORT = {"float32": "f32", "float64": "f64"}


def _scalar_expr(em, node, ctx, args):
    dtype = node.outputs[0].type.dtype
    if em.math == "fast" and node.op in FAST_MATH and dtype in _SHORT:
        fn = f"{node.op}_{_SHORT[dtype]}"
        em.imports.add(fn)
        call = f"{fn}({', '.join(args)})"
        if node.op == "pow":  # NumPy's sqrt fast path for x ** 0.5 (graphc.ops.elementwise)
            from graphc.ops.elementwise import pow_expr
            return pow_expr(ctx, *args, call)
        return call
    return registry.get(node.op).scalar(ctx, *args)


def emit_fused(em: Emitter, node: Node):
    """Emit a kernel function for fused ``node`` and the entry's call to it.

    One loop nest over the group's domain; every intermediate is a local of the
    loop body; reductions accumulate in scalar locals (kept dims outer, reduced
    dims inner) or, when the innermost axis is kept, in arrays indexed by the kept
    position while the loops run in memory order (``reduction.memory_order``);
    values leaving the group are stored to arrays (or returned, for
    rank-0 reductions). Operands of the domain's shape are passed flattened when
    nothing needs a multi-dimensional index, so the loop is one contiguous run.
    """
    from graphc.ops.fused import REDUCTIONS, layout, subgraph
    from graphc.ops.reduction import accumulator_dtype, initial_value, memory_order

    sub = subgraph(node)
    members = sub.nodes
    reds = [n for n in members if n.op in REDUCTIONS]
    lay = layout(node)
    domain, axes, flat = lay.domain, lay.axes, lay.flat
    nd = len(domain)
    size = int(np.prod(domain, dtype=np.int64))
    kept = [d for d in range(nd) if d not in axes]
    sum_like = all(r.op in ("sum", "mean", "prod") for r in reds)
    parallel = size >= PARALLEL_MIN and (bool(kept) if not flat else (sum_like or not reds))
    fastmath = bool(reds) and sum_like
    order = memory_order(domain, axes) if reds and not flat else None
    if order is not None:
        # threads take a lead (kept, outer) dim of size > 1, or else blocks of the first reduced
        # axis, each block with its own accumulators, combined in block order at the end
        lead, nest, inner = order
        pdim = next((d for d in lead if domain[d] > 1), None)
        red0 = next(d for d in nest if d in axes and domain[d] != 1)
        # (lead dims all of size 1 leave nothing to split: the blocks run inside their loops)
        blocks = parallel and pdim is None and domain[red0] >= BLOCK_MIN_ROWS * PARALLEL_BLOCKS
        parallel = parallel and (pdim is not None or blocks)
        fastmath = False  # the accumulators are independent: nothing to reassociate

    # Small groups are written straight into the entry: every separate @njit function costs
    # Numba ~0.3-0.5 s to compile, which dominated cold start. Only groups big enough to want
    # threads (prange) or reassociated reductions (fastmath) become kernels of their own.
    inline = not parallel and size < INLINE_MAX

    def passed_flat(v):
        """Whether array output ``v`` is passed flattened. (A reduction's output is stored
        with its own index: keepdims over a size-1 domain has the domain's shape, but is
        still written as o[0, 0].)"""
        return flat and nd > 1 and v.type.shape == domain and v.producer.op not in REDUCTIONS

    k = Emitter(sub)
    k.math = em.math
    params = []
    array_outs = [v for v in sub.outputs if v.type.shape]
    scalar_outs = [v for v in sub.outputs if not v.type.shape]
    outer = dict(zip(sub.outputs, node.outputs))
    for i, v in enumerate(sub.inputs):
        if inline:
            k.names[v] = _flat_alias(em, em.name(node.inputs[i]), flat and nd > 1 and v.type.shape == domain, size)
        else:
            k.names[v] = f"p{i}"
            params.append(f"p{i}")
    # outputs written over one of the group's operands (a State's update, passes/memory.py
    # in_place): stored through the operand's own name, so LLVM sees one pointer, a load and a
    # store at the same index, and vectorizes (two names for one array fail its alias check)
    plan_inplace = em.plan.inplace if em.plan is not None else {}
    over = {v: sub.inputs[node.inputs.index(plan_inplace[outer[v]])]
            for v in array_outs if outer[v] in plan_inplace}
    for i, v in enumerate(array_outs):
        if v in over:
            if inline:
                em.alloc(outer[v])  # (defines the entry's name for it: the operand's array)
            k.names[v] = k.names[over[v]]
        elif inline:
            k.names[v] = _flat_alias(em, em.alloc(outer[v]), passed_flat(v), size)
        else:
            k.names[v] = f"o{i}"
            params.append(f"o{i}")
    if inline:
        fastmath = False  # the entry has no fastmath: inlined sums stay sequential (and exact as before)
        for v in scalar_outs:
            k.names[v] = em.define(outer[v])
        k._tmp, k.depth = em._tmp, em.depth  # fresh local names, at the entry's indentation

    accs = {}
    for r in reds:
        acc = k.tmp("acc")
        accs[r] = acc

    # what each reduction accumulates in (max/min: their own dtype) and starts from
    acc_dtypes = {r: accumulator_dtype(r.op, r.inputs[0].type.dtype) for r in reds}
    acc_inits = {r: literal(initial_value(r.op, r.inputs[0].type.dtype), acc_dtypes[r]) for r in reds}
    # reductions that accumulate per block first (the flat, reassociated path below fills this
    # before body() runs): their block partial's dtype, which fold() casts to instead
    part_dtypes = {}

    def init_accs():
        for r in reds:
            k.line(f"{accs[r]} = {acc_inits[r]}")

    # operands with one element are read once, before the loops
    hoisted = {}
    for v in sub.inputs:
        if not v.type.shape:
            hoisted[v] = k.name(v)
        elif v.type.size == 1:
            hoisted[v] = k.tmp("s")
            ndim = 1 if flat and nd > 1 and v.type.shape == domain else v.type.ndim  # passed flattened
            k.line(f"{hoisted[v]} = {k.name(v)}[{', '.join('0' * ndim)}]")

    def body(idx, loop_shape):
        local = dict(hoisted)
        if flat:  # every operand first: an output written in place of one (a State's update,
            # passes/memory.py) must not be stored before that operand's element is read
            for v in sub.inputs:
                if v not in local:
                    local[v] = k.tmp("x")
                    k.line(f"{local[v]} = {k.name(v)}[{idx[0]}]")
        for n in members:
            for v in n.inputs:
                if v not in local:  # (not flat: each operand read where first used, broadcast)
                    local[v] = k.tmp("x")
                    k.line(f"{local[v]} = {k.load(v, idx, loop_shape)}")
            if n in accs:
                k.line(fold(n, accs[n], local[n.inputs[0]], part_dtypes.get(n)))
                continue
            ctx = ScalarContext(n, idx, loop_shape, k.imports)
            out = n.outputs[0]
            local[out] = k.tmp("t")
            k.line(f"{local[out]} = {CTOR[out.type.dtype]}({_scalar_expr(k, n, ctx, [local[v] for v in n.inputs])})")
            if out in array_outs:
                k.store(out, idx, local[out])

    def finish(kidx):
        count = int(np.prod([domain[d] for d in axes], dtype=np.int64))
        for r in reds:
            out = r.outputs[0]
            value = accs[r]
            if r.op == "mean":
                value = f"{value} / {literal(count, 'float64')}"
            value = f"{CTOR[out.type.dtype]}({value})"
            if out in scalar_outs:
                k.line(f"{k.names.setdefault(out, k.tmp('r'))} = {value}")
            elif out in array_outs:
                pos = dict(zip(kept, kidx))
                if r.attrs["keepdims"]:
                    oidx = ["0" if d in axes else pos[d] for d in range(nd)]
                else:
                    oidx = [pos[d] for d in kept]
                k.store(out, oidx, value)

    def fold(r, acc, v, dtype=None):
        """The statement folding ``v`` into accumulator ``acc`` (of ``dtype``) of reduction ``r``."""
        x_dtype = r.inputs[0].type.dtype
        if r.op in ("sum", "mean"):
            return f"{acc} += {CTOR[dtype or acc_dtypes[r]]}({v})"
        if r.op == "prod":
            return f"{acc} *= {CTOR[dtype or acc_dtypes[r]]}({v})"
        cmp = ">" if r.op == "max" else "<"
        if x_dtype.startswith("float"):  # NaN wins and stays, as in NumPy
            return f"{acc} = {v} if ({v} {cmp} {acc} or {v} != {v}) else {acc}"
        return f"{acc} = {v} if {v} {cmp} {acc} else {acc}"

    rng = "prange" if parallel else "range"
    if order is not None:
        # memory order: lead dims outermost, then the rest of the domain as laid out; each
        # reduction accumulates into an array over the inner kept dims
        ishape = tuple(domain[d] for d in inner)
        arrays = {r: accs[r] for r in reds}
        parts = {r: k.tmp("part") for r in reds} if blocks else {}
        if not parallel:
            for r in reds:
                k.line(f"{arrays[r]} = {k.scratch(ishape, acc_dtypes[r])}")
        for r in parts:
            k.line(f"{parts[r]} = {k.scratch((PARALLEL_BLOCKS,) + ishape, acc_dtypes[r])}")
        lidx = [k.tmp("i") for _ in lead]
        for d, i in zip(lead, lidx):
            k.line(f"for {i} in {rng if d == pdim else 'range'}({domain[d]}):")
            k.depth += 1
        if blocks:
            b = k.tmp("b")
            k.line(f"for {b} in prange({PARALLEL_BLOCKS}):")
            k.depth += 1
            for r in reds:
                k.line(f"{arrays[r]} = {parts[r]}[{b}]")
        elif parallel:  # one set of accumulators per iteration of the prange loop
            for r in reds:
                k.line(f"{arrays[r]} = {k.scratch(ishape, acc_dtypes[r])}")
        for r in reds:
            k.line(f"{arrays[r]}[...] = {acc_inits[r]}")
        nidx = [k.tmp("j" if d in axes else "i") for d in nest]
        for d, i in zip(nest, nidx):
            n = domain[d]
            bounds = f"{b} * {n} // {PARALLEL_BLOCKS}, ({b} + 1) * {n} // {PARALLEL_BLOCKS}" \
                if blocks and d == red0 else f"{n}"
            k.line(f"for {i} in range({bounds}):")
            k.depth += 1
        pos = dict(zip(lead, lidx)) | dict(zip(nest, nidx))
        at = f"[{', '.join(pos[d] for d in inner)}]"
        for r in reds:
            accs[r] = arrays[r] + at
        body([pos[d] for d in range(nd)], domain)
        k.depth -= len(nest) + blocks
        iidx = [k.tmp("i") for _ in inner]
        for d, i in zip(inner, iidx):
            k.line(f"for {i} in range({domain[d]}):")
            k.depth += 1
        at = ", ".join(iidx)
        for r in reds:
            if blocks:  # combine the blocks' partial results, in block order
                accs[r] = k.tmp("a")
                k.line(f"{accs[r]} = {parts[r]}[0, {at}]")
                c = k.tmp("c")
                with k.block(f"for {c} in range(1, {PARALLEL_BLOCKS}):"):
                    k.line(fold(r, accs[r], f"{parts[r]}[{c}, {at}]"))
            else:
                accs[r] = f"{arrays[r]}[{at}]"
        finish(lidx + iidx)
        k.depth -= len(inner) + len(lead)
    elif flat and fastmath:
        # Blocks of FLAT_BLOCK elements, each summed into a partial that is folded into the
        # accumulator after the block. A float32 sum's partial is float32, so the inner loop
        # holds no float64 and vectorizes 16 lanes wide (a float64 accumulator caps LLVM at 8
        # float32 lanes: 4.3 -> 3.0 cycles/element for the elementwise benchmark's gradient);
        # a block is short, so the float32 partials stay as accurate as NumPy's pairwise sum.
        # The inner index is unsigned: with a signed one Numba's negative-index wraparound
        # turns every load and store into a gather/scatter.
        init_accs()
        totals = dict(accs)
        for r in reds:
            x_dtype = r.inputs[0].type.dtype
            part_dtypes[r] = "float32" if r.op != "prod" and x_dtype == "float32" else acc_dtypes[r]
        c, i = k.tmp("c"), k.tmp("i")
        with k.block(f"for {c} in {rng}({-(-size // FLAT_BLOCK)}):"):
            for r in reds:
                accs[r] = k.tmp("part")
                k.line(f"{accs[r]} = {literal(initial_value(r.op, r.inputs[0].type.dtype), part_dtypes[r])}")
            start, stop = f"{c} * {FLAT_BLOCK}", f"min({c} * {FLAT_BLOCK} + {FLAT_BLOCK}, {size})"
            with k.block(f"for {i} in range(np.uint64({start}), np.uint64({stop})):"):
                body([i], (size,))
            for r in reds:
                k.line(fold(r, totals[r], accs[r]))
        accs.update(totals)
        finish([])
    elif flat:
        init_accs()
        i = k.tmp("i")
        with k.block(f"for {i} in {rng}({size}):"):
            body([i], (size,))
        finish([])
    else:
        kidx = [k.tmp("i") for _ in kept]
        for j, (d, i) in enumerate(zip(kept, kidx)):
            k.line(f"for {i} in {rng if j == 0 else 'range'}({domain[d]}):")
            k.depth += 1
        init_accs()
        ridx = [k.tmp("j") for _ in axes]
        for d, i in zip(axes, ridx):
            k.line(f"for {i} in range({domain[d]}):")
            k.depth += 1
        pos = dict(zip(kept, kidx)) | dict(zip(axes, ridx))
        body([pos[d] for d in range(nd)], domain)
        k.depth -= len(axes)
        finish(kidx)
        k.depth -= len(kept)
    if inline:
        em.lines += k.lines
        em.line_nodes += [em.node] * len(k.lines)
        em._tmp = k._tmp
        em.imports |= k.imports
        return
    if scalar_outs:
        names = ", ".join(k.name(v) for v in scalar_outs)
        k.line(f"return ({names}{',' if len(scalar_outs) == 1 else ''})")

    kname = f"kernel_{len(em.kernels)}"  # never a tmp() name (k3 is a reduction counter)
    opts = [NJIT_KERNEL_OPTIONS]
    if parallel:
        opts.append("parallel=True")
    if fastmath:
        opts.append("fastmath={'reassoc', 'contract'}")
    em.kernels.append("\n".join([f"@njit({', '.join(opts)})", f"def {kname}({', '.join(params)}):"] + k.lines))
    em.imports |= k.imports
    em.kernel_info.append({"name": kname, "node": node, "parallel": parallel, "fastmath": fastmath,
                           "flat": flat, "domain": domain})

    # the entry's side: allocate what leaves the group, call the kernel
    args = []
    for v in node.inputs:
        name = em.name(v)
        args.append(_flat_view(em, name, size) if flat and nd > 1 and v.type.shape == domain else name)
    for v in array_outs:
        name = em.alloc(outer[v])
        if v in over:
            continue  # written through its operand's argument
        args.append(_flat_view(em, name, size) if passed_flat(v) else name)
    call = f"{kname}({', '.join(args)})"
    if scalar_outs:
        names = [em.define(outer[v]) for v in scalar_outs]
        em.line(f"{', '.join(names)}, = {call}")
    else:
        em.line(call)


NJIT_KERNEL_OPTIONS = "error_model='numpy', nogil=True"  # disk cache: graphc.backend.cache
# groups below this many elements (and not parallel) are inlined into the entry
INLINE_MAX = int(os.environ.get("GRAPHC_INLINE_MAX", 1 << 16))


def _flat_alias(em: Emitter, name: str, flatten: bool, size: int) -> str:
    """``name``, or a flat view of it (a new local of the entry) when the group runs flat."""
    if not flatten:
        return name
    alias = em.tmp("f")
    em.line(f"{alias} = {_flat_view(em, name, size)}")
    return alias


def _flat_view(em: Emitter, name: str, size: int) -> str:
    """A flat view of C-contiguous array ``name`` (reshape_c: no run-time checks, compiled inline)."""
    em.imports.add("reshape_c")
    return f"reshape_c({name}, ({size},))"
