"""The CPU loop strategy of fused groups and reductions: one schedule for both.

A fused node's body (``graphc.ops.fused.subgraph``) and a reduction node on its own are lowered
by ``emit_group``: one loop nest over the group's domain, elementwise intermediates in locals,
reductions folded as their op's ``Reduction`` data says (``combine``, ``accumulator``,
``initial``, ``finalize``). How the nest runs (``layout``, ``memory_order``), when a group gets a
kernel of its own (threads, reassociated sums) and how reductions vectorize (``Lanes``) is
decided here; arg-reductions (argmax/argmin, which track an index) by ``emit_arg_reduction``.
The settings tests and benchmarks tune (INLINE_MAX, PARALLEL_MIN, FLAT_BLOCK...) live in
graphc.backend.codegen.

Symbolic domains (``(B, 64)``: a graph compiled once for every batch size B >= 2, see
graphc/runtime.py; the backend names B's run-time value ``dim_B``): the loops take their bounds
from ``dim_B`` and flat views have the run-time size ``dim_B * 64``. Every size-dependent choice
is made the same way for every B, each right at every size: such a group runs serially and
inline in the entry (no prange, no kernel of its own: as a small group does, so it costs no
extra compile; a large batch loses the threads of the per-size kernels); a reduced run of
symbolic length folds into LANES lanes with run-time bounds (``Lanes.loop_between``), float32
lanes flushed into float64 ones as for a long run; memory-order float32 row sums flush every
ROW_FLUSH rows and once more at a run-time check. A symbolic dim is never 1 (B >= 2), so tests
``n == 1`` and ``n != 1`` hold as written. A choice not converted raises TypeError (a symbol
takes no arithmetic or ordering), which ends the generic attempt: never code wrong at some size.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from graphc.backend import codegen
from graphc.backend.codegen import CTOR, RESERVED_NAMES, Emitter, emit_scalar_node, literal
from graphc.ir import Graph, Node
from graphc.ops import registry
from graphc.ops.fused import FUSED, REDUCTIONS, subgraph

# Row reductions (the reduced axis is the contiguous one) fold into LANES independent partials,
# lane l taking the elements at l, l + LANES, ...: LLVM's loop vectorizer turns the loop over
# one chunk of LANES elements into SIMD code with no reassociation (each lane is a plain
# sequence, so no fastmath is needed), and the lanes are combined in a fixed order at the end
# (``Lanes.combine``), so results are deterministic. 64 lanes: a loop of 32 with a short body
# (a plain sum) is fully unrolled before the loop vectorizer runs and then left scalar (its
# lane stores may alias the loads); runs of 32..63 elements take 32 lanes (long bodies such as
# tanh still vectorize there); shorter ones stay sequential. float32 sums keep float32 lanes
# for LANE_FLUSH elements (16 per lane, as NumPy's pairwise leaves), then fold them into
# float64 lanes.
LANES = 64
# a line making a scratch array (Emitter.scratch: accumulators, lanes), always filled before use
_SCRATCH = re.compile(r"^\s*\w+ = empty_c\(")
ROW_FLUSH = 16  # memory-order float32 sums: rows added into float32 partials per float64 fold
LANE_MIN = 32
LANE_FLUSH = 16 * LANES
# A flat reduction of a fixed length takes lanes from this length: below it, one scalar
# accumulator. Lanes cost Numba and LLVM far more to compile than they save at such lengths
# (the scratch array, its reset and two combining loops: the MLP step's two flat sums of 64,
# its cross-entropy's, cost ~0.3 s of its ~2.7 s cold compile; a sequential sum of 255 float32
# values in float64 takes ~0.3 us, and is as accurate).
FLAT_LANE_MIN = 256
# A flat elementwise group whose body repeats at GENERIC_MIN or more places of the entry (an
# optimizer's update of each parameter) becomes one kernel of any length, which it reads from
# its operands: Numba compiles the loop once, where it compiled each inline copy (~35-50 ms
# each) and a call costs ~7 ms. Two copies do not repay the kernel's own compile. Measured on
# the 784-256-128-10 step's cold first call: its six parameters' updates as one kernel, SGD
# 2.60 -> 2.49 s and Adam 3.66 -> 3.31 s (medians); sharing its two ReLU layers' groups, nothing.
GENERIC_MIN = 3


def emit_group(em: Emitter, node: Node, sub: Graph, standalone: bool = False):
    """Emit the loops computing ``node`` from its body ``sub`` (a graph whose inputs and outputs
    stand for the node's): inline in the entry, or a kernel function and the entry's call to it.

    One loop nest over the group's domain; every intermediate is a local of the
    loop body; reductions accumulate in scalar locals or lanes (kept dims outer, reduced
    dims inner) or, when the innermost axis is kept, in arrays indexed by the kept
    position while the loops run in memory order (``memory_order``);
    values leaving the group are stored to arrays (or returned, for
    rank-0 reductions). Operands of the domain's shape are passed flattened when
    nothing needs a multi-dimensional index, so the loop is one contiguous run.
    A ``standalone`` reduction (a graph not fused) is always written inline.
    """
    members = sub.nodes
    reds = [n for n in members if n.op in REDUCTIONS]
    data = {r: registry.get(r.op).reduction for r in reds}
    lay = layout_of(sub)
    domain, axes, flat = lay.domain, lay.axes, lay.flat
    nd = len(domain)
    size = extent(domain)  # an int, or a run-time expression (``dim_B * 64``)
    symbolic = isinstance(size, str)
    kept = [d for d in range(nd) if d not in axes]
    # sums a kernel may reassociate (fastmath) without changing what its elementwise ops compute
    sum_like = all(data[r].combine in ("add", "mul") for r in reds) and reassociation_safe(sub, em.math)
    # flat sums a kernel may not reassociate still use threads: fixed blocks, each folding into
    # lanes, the blocks' partials combined in block order (deterministic, no fastmath)
    # (a symbolic domain runs serially and inline: see the module's docstring)
    large = not symbolic and size >= codegen.PARALLEL_MIN
    block_lanes = (flat and bool(reds) and not sum_like and not standalone and large
                   and all(data[r].combine in ("add", "mul") for r in reds))
    parallel = not standalone and large and (bool(kept) if not flat else (sum_like or not reds))
    parallel = parallel or block_lanes
    fastmath = bool(reds) and sum_like
    order = memory_order(domain, axes) if reds and not flat else None
    if order is not None:
        # threads take a lead (kept, outer) dim of size > 1, or else blocks of the first reduced
        # axis, each block with its own accumulators, combined in block order at the end
        lead, nest, inner = order
        pdim = next((d for d in lead if above_one(domain[d])), None)
        red0 = next(d for d in nest if d in axes and domain[d] != 1)
        # (lead dims all of size 1 leave nothing to split: the blocks run inside their loops)
        blocks = parallel and pdim is None and domain[red0] >= codegen.BLOCK_MIN_ROWS * codegen.PARALLEL_BLOCKS
        parallel = parallel and (pdim is not None or blocks)
        fastmath = False  # the accumulators are independent: nothing to reassociate

    # Small groups are written straight into the entry: every separate @njit function costs
    # Numba ~0.3-0.5 s to compile, which dominated cold start. Only groups big enough to want
    # threads (prange) or reassociated reductions (fastmath) become kernels of their own, and
    # repeated flat ones (generic_groups), whose kernel takes its length from its operands.
    inline = standalone or symbolic or (not parallel and size < codegen.INLINE_MAX)
    generic = node in em.generic  # (serial, fixed-size fused groups: generic_groups chose them)
    inline = inline and not generic
    if not inline and any(isinstance(n, str) for v in sub.inputs + sub.outputs for n in v.type.shape):
        raise ValueError(f"a kernel of a fixed domain {domain} with symbolic operands is not supported")

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
    # outputs written over one of the group's operands (a State's update, graphc/backend/plan.py
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
        fastmath = False  # the entry has no fastmath: inlined reductions fold into lanes (see LANES)
        for v in scalar_outs:
            k.names[v] = em.define(outer[v])
        k._tmp, k.depth = em._tmp, em.depth  # fresh local names, at the entry's indentation

    accs = {}
    for r in reds:
        acc = k.tmp("acc")
        accs[r] = acc

    # what each reduction accumulates in (max/min: their own dtype) and starts from
    acc_dtypes = {r: data[r].accumulator(r.inputs[0].type.dtype) for r in reds}
    acc_inits = {r: literal(initial_value_of(r), acc_dtypes[r]) for r in reds}
    # reductions that accumulate per block first (the flat, reassociated path below fills this
    # before body() runs): their block partial's dtype, which fold() casts to instead
    part_dtypes = {}
    value_dtypes = {}  # the dtype of each accumulator when finish() reads it, where not acc_dtypes'

    def init_accs():
        for r in reds:
            k.line(f"{accs[r]} = {acc_inits[r]}")

    # operands with one element are read once, before the loops
    hoisted = {}
    for v in sub.inputs:
        if not v.type.shape:
            hoisted[v] = k.name(v)
        elif one_element(v.type):
            hoisted[v] = k.tmp("s")
            ndim = 1 if flat and nd > 1 and v.type.shape == domain else v.type.ndim  # passed flattened
            k.line(f"{hoisted[v]} = {k.name(v)}[{', '.join('0' * ndim)}]")

    def body(idx, loop_shape):
        local = dict(hoisted)
        if flat:  # every operand first: an output written in place of one (a State's update,
            # graphc/backend/plan.py) must not be stored before that operand's element is read
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
            out = n.outputs[0]
            local[out] = emit_scalar_node(k, n, local, idx, loop_shape)
            if out in array_outs:
                k.store(out, idx, local[out])

    def finish(kidx):
        count = extent([domain[d] for d in axes])
        for r in reds:
            out = r.outputs[0]
            value, dtype = accs[r], value_dtypes.get(r, acc_dtypes[r])
            if data[r].finalize == "mean":
                divisor = f"np.float64({count})" if isinstance(count, str) else literal(count, "float64")
                value, dtype = f"{value} / {divisor}", "float64"
            if dtype != out.type.dtype:
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

    def fold(r, acc, v, dtype=None, v_dtype=None):
        """The statement folding ``v`` (of ``v_dtype``, default the reduced input's) into
        accumulator ``acc`` (of ``dtype``, default the reduction's accumulator dtype) of ``r``."""
        x_dtype = r.inputs[0].type.dtype
        dtype = dtype or acc_dtypes[r]
        value = v if (v_dtype or x_dtype) == dtype else f"{CTOR[dtype]}({v})"
        combine = registry.get(r.op).reduction.combine
        if combine == "add":
            return f"{acc} += {value}"
        if combine == "mul":
            return f"{acc} *= {value}"
        cmp = ">" if combine == "max" else "<"
        if x_dtype.startswith("float"):
            # NumPy's np.maximum(acc, v): NaN wins and stays, and a tie takes the later element,
            # which decides the sign of a zero result (max of [-0.0, 0.0] is 0.0, as NumPy's)
            return f"{acc} = {acc} if ({acc} {cmp} {v} or {acc} != {acc}) else {v}"
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
            k.line(f"{parts[r]} = {k.scratch((codegen.PARALLEL_BLOCKS,) + ishape, acc_dtypes[r])}")
        lidx = [k.tmp("i") for _ in lead]
        for d, i in zip(lead, lidx):
            k.line(f"for {i} in {rng if d == pdim else 'range'}({domain[d]}):")
            k.depth += 1
        if blocks:
            b = k.tmp("b")
            k.line(f"for {b} in prange({codegen.PARALLEL_BLOCKS}):")
            k.depth += 1
            for r in reds:
                k.line(f"{arrays[r]} = {parts[r]}[{b}]")
        elif parallel:  # one set of accumulators per iteration of the prange loop
            for r in reds:
                k.line(f"{arrays[r]} = {k.scratch(ishape, acc_dtypes[r])}")
        # float32 sums add each row into float32 partials (the loop then runs at full float32
        # SIMD width), folded into the float64 accumulators every ROW_FLUSH rows: where one
        # reduced axis runs over rows of the kept inner dims, serially
        long_axes = [d for d in nest if d in axes and domain[d] != 1]
        row_axis = long_axes[0] if len(long_axes) == 1 and not parallel else None
        if row_axis is not None and any(d in inner and domain[d] != 1 for d in nest[:nest.index(row_axis)]):
            row_axis = None
        narrow = [r for r in reds if row_axis is not None and data[r].combine == "add"
                  and r.inputs[0].type.dtype == "float32" and above_one(domain[row_axis])]
        rows = {r: k.tmp("rows") for r in narrow}
        for r in narrow:
            k.line(f"{rows[r]} = {k.scratch(ishape, 'float32')}")
        for r in reds:
            k.line(f"{arrays[r]}[...] = {acc_inits[r]}")
        for r in narrow:
            k.line(f"{rows[r]}[...] = np.float32(0.0)")
        nidx = [k.tmp("j" if d in axes else "i") for d in nest]
        for d, i in zip(nest, nidx):
            n = domain[d]
            bounds = f"{b} * {n} // {codegen.PARALLEL_BLOCKS}, ({b} + 1) * {n} // {codegen.PARALLEL_BLOCKS}" \
                if blocks and d == red0 else f"{n}"
            k.line(f"for {i} in range({bounds}):")
            k.depth += 1
        pos = dict(zip(lead, lidx)) | dict(zip(nest, nidx))
        at = f"[{', '.join(pos[d] for d in inner)}]"
        for r in reds:
            accs[r] = (rows[r] if r in narrow else arrays[r]) + at
            if r in narrow:
                part_dtypes[r] = "float32"
        body([pos[d] for d in range(nd)], domain)

        def flush_rows():
            with k.loops(ishape) as fidx:
                fat = f"[{', '.join(fidx)}]"
                for r in narrow:
                    k.line(fold(r, arrays[r] + fat, rows[r] + fat, acc_dtypes[r], "float32"))
            for r in narrow:
                k.line(f"{rows[r]}[...] = np.float32(0.0)")

        if narrow:
            after = len(nest) - nest.index(row_axis) - 1
            rows_n = domain[row_axis]
            k.depth -= after
            if isinstance(rows_n, str) or rows_n >= ROW_FLUSH:
                with k.block(f"if {pos[row_axis]} % {ROW_FLUSH} == {ROW_FLUSH - 1}:"):
                    flush_rows()
            k.depth -= len(nest) - after
            if isinstance(rows_n, str):  # the rows after the last full ROW_FLUSH (B >= 1)
                with k.block(f"if {rows_n} % {ROW_FLUSH} != 0:"):
                    flush_rows()
            elif rows_n % ROW_FLUSH:
                flush_rows()
        else:
            k.depth -= len(nest)
        k.depth -= blocks
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
                with k.block(f"for {c} in range(1, {codegen.PARALLEL_BLOCKS}):"):
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
            part_dtypes[r] = "float32" if data[r].combine == "add" and x_dtype == "float32" else acc_dtypes[r]
        c, i = k.tmp("c"), k.tmp("i")
        with k.block(f"for {c} in {rng}({-(-size // codegen.FLAT_BLOCK)}):"):
            for r in reds:
                accs[r] = k.tmp("part")
                k.line(f"{accs[r]} = {literal(initial_value_of(r), part_dtypes[r])}")
            start, stop = f"{c} * {codegen.FLAT_BLOCK}", f"min({c} * {codegen.FLAT_BLOCK} + {codegen.FLAT_BLOCK}, {size})"
            with k.block(f"for {i} in range(np.uint64({start}), np.uint64({stop})):"):
                body([i], (size,))
            for r in reds:
                k.line(fold(r, totals[r], accs[r]))
        accs.update(totals)
        finish([])
    elif block_lanes:
        nb = codegen.PARALLEL_BLOCKS
        per = -(-size // nb)  # block b covers [b * per, min((b + 1) * per, size))
        totals = dict(accs)
        parts = {r: k.tmp("part") for r in reds}
        for r in reds:
            k.line(f"{parts[r]} = {k.scratch((nb,), acc_dtypes[r])}")
        b = k.tmp("b")
        with k.block(f"for {b} in prange({nb}):"):
            lo, hi = k.tmp("lo"), k.tmp("hi")
            k.line(f"{lo} = {b} * {per}")
            k.line(f"{hi} = min({lo} + {per}, {size})")
            lanes = Lanes(k, reds, acc_dtypes, acc_inits, per, fold, part_dtypes, per)
            lanes.setup()
            lanes.init()
            lanes.loop_between(lo, hi, lambda j: body([j], (size,)), accs)
            lanes.combine(accs, value_dtypes)
            for r in reds:
                k.line(f"{parts[r]}[{b}] = {accs[r]}")
        accs.update(totals)
        init_accs()
        for r in reds:
            value_dtypes.pop(r, None)
            c = k.tmp("c")
            with k.block(f"for {c} in range({nb}):"):
                k.line(fold(r, accs[r], f"{parts[r]}[{c}]", acc_dtypes[r], acc_dtypes[r]))
        finish([])
    elif flat and reds and (symbolic or size >= FLAT_LANE_MIN):
        lanes = Lanes(k, reds, acc_dtypes, acc_inits, size, fold, part_dtypes, size)
        lanes.setup()
        lanes.init()
        lanes.loop(size, lambda j: body([j], (size,)), accs)
        lanes.combine(accs, value_dtypes)
        finish([])
    elif flat:
        init_accs()
        i = k.tmp("i")
        length = size
        if generic:  # the length of an operand (of the domain's shape, passed flat)
            length = f"len({next(k.names[v] for v in sub.inputs + array_outs if v.type.shape == domain)})"
        with k.block(f"for {i} in {rng}({length}):"):
            body([i], (length,))
        finish([])
    else:
        # the innermost reduced axis, when it is the contiguous one, folds into lanes
        live = [d for d in range(nd) if domain[d] != 1]
        lane_axis = next((d for d in reversed(axes) if domain[d] != 1), None)
        # (a kernel's reassociated sums keep their accumulators in registers: faster, except for
        # float32 sums, whose float64 accumulator halves the vector width; lanes keep float32)
        narrow_sums = any(data[r].combine == "add" and r.inputs[0].type.dtype == "float32" for r in reds)
        if lane_axis is None or lane_axis != live[-1] \
                or (not isinstance(domain[lane_axis], str) and domain[lane_axis] < LANE_MIN) \
                or (fastmath and not narrow_sums):
            lane_axis = None
        else:
            fastmath = False
        count = extent([domain[d] for d in axes])
        lanes = Lanes(k, reds, acc_dtypes, acc_inits, count, fold, part_dtypes, domain[lane_axis]) \
            if lane_axis is not None else None
        if lanes and not parallel:
            lanes.setup()
        # operands constant along the inner loops (broadcast over the reduced axes, or over the
        # last axis of a group without reductions) are read once per row, before those loops:
        # LLVM cannot hoist such a load past the stores into a workspace view it may alias
        inner_dims = list(axes) if axes else kept[-1:]
        row_kept = kept if axes else kept[:-1]
        row_invariant = [v for v in sub.inputs if v not in hoisted and v.type.shape
                         and all(d - (nd - v.type.ndim) < 0 or v.type.shape[d - (nd - v.type.ndim)] == 1
                                 for d in inner_dims)]
        kidx = []
        for j, d in enumerate(kept):
            if j == len(row_kept):
                pos0 = dict(zip(kept, kidx))
                for v in row_invariant:
                    hoisted[v] = k.tmp("s")
                    k.line(f"{hoisted[v]} = {k.load(v, [pos0.get(e, '0') for e in range(nd)], domain)}")
            kidx.append(k.open_loop(domain[d], "i", rng if j == 0 else "range"))
            if lanes and parallel and j == 0:  # each thread its own lanes
                lanes.setup()
        if len(kept) == len(row_kept):
            pos0 = dict(zip(kept, kidx))
            for v in row_invariant:
                hoisted[v] = k.tmp("s")
                k.line(f"{hoisted[v]} = {k.load(v, [pos0.get(e, '0') for e in range(nd)], domain)}")
        if lanes and parallel and not kept:
            lanes.setup()
        if lanes:
            lanes.init()
        else:
            init_accs()
        outer_axes = [d for d in axes if d != lane_axis]
        ridx = [k.open_loop(domain[d], "j") for d in outer_axes]
        pos = dict(zip(kept, kidx)) | dict(zip(outer_axes, ridx))
        if lanes:
            lanes.loop(domain[lane_axis], lambda j: body([pos.get(d, j) for d in range(nd)], domain), accs)
        else:
            body([pos[d] for d in range(nd)], domain)
        k.close_loops(len(outer_axes))
        if lanes:
            lanes.combine(accs, value_dtypes)
        finish(kidx)
        k.close_loops(len(kept))
    if inline:
        lines = k.lines
        if em.hoist:  # in a loop body: the group's scratch arrays are made once, before the loop
            for line in [ln for ln in lines if _SCRATCH.match(ln)]:
                em.hoisted_line(line.strip())
            lines = [ln for ln in lines if not _SCRATCH.match(ln)]
        em.lines += lines
        em.line_nodes += [em.node] * len(lines)
        em._tmp = k._tmp
        em.imports |= k.imports
        return
    if scalar_outs:
        names = ", ".join(k.name(v) for v in scalar_outs)
        k.line(f"return ({names}{',' if len(scalar_outs) == 1 else ''})")

    opts = [codegen.NJIT_KERNEL_OPTIONS]
    if parallel:
        opts.append("parallel=True")
    if fastmath:
        # reassoc only: 'contract' lets LLVM fuse the group's own a * b + c into an FMA, whose
        # single rounding changes values NumPy rounds twice (sum(x * x - 1) off by 1e-4 in float32)
        opts.append("fastmath={'reassoc'}")
    body_key = (tuple(opts), tuple(params), tuple(k.lines))
    kname = em.kernel_bodies.get(body_key)
    if kname is None:
        kname = kernel_name(em, sub, lay)
        em.kernel_bodies[body_key] = kname
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


class Lanes:
    """A reduction's accumulators as independent partials (see LANES above).

    ``setup`` allocates the lane arrays, ``init`` resets them for one output element, ``loop``
    runs a reduced extent of ``n`` elements in chunks of ``width`` lanes, and ``combine`` folds
    the lanes in a fixed order into element 0, which becomes each reduction's accumulator.
    """

    def __init__(self, k: "Emitter", reds, acc_dtypes, acc_inits, count, fold, part_dtypes, n):
        # ``count`` (elements per result) and ``n`` (the run's length) are ints, or run-time
        # expressions (a symbolic extent), which count as long: right at every length
        self.k, self.reds, self.fold = k, reds, fold
        self.acc_dtypes, self.acc_inits = acc_dtypes, acc_inits
        self.width = LANES if isinstance(n, str) or n >= LANES else LANES // 2
        self.dtype, self.wide, self.names, self.wide_names = {}, {}, {}, {}
        for r in reds:
            x_dtype = r.inputs[0].type.dtype
            narrow = registry.get(r.op).reduction.combine == "add" and x_dtype == "float32"
            self.dtype[r] = "float32" if narrow else acc_dtypes[r]
            # float32 lanes of a long sum are folded into float64 ones every LANE_FLUSH elements
            self.wide[r] = self.dtype[r] != acc_dtypes[r] and (isinstance(count, str) or count > LANE_FLUSH)
            part_dtypes[r] = self.dtype[r]  # what body() folds each element into

    def _init_value(self, r):
        return literal(initial_value_of(r), self.dtype[r])

    def setup(self):
        for r in self.reds:
            self.names[r] = self.k.tmp("lanes")
            self.k.line(f"{self.names[r]} = {self.k.scratch((self.width,), self.dtype[r])}")
            if self.wide[r]:
                self.wide_names[r] = self.k.tmp("wide")
                self.k.line(f"{self.wide_names[r]} = {self.k.scratch((self.width,), self.acc_dtypes[r])}")

    def init(self):
        for r in self.reds:
            if self.wide[r]:
                self.k.line(f"{self.wide_names[r]}[...] = {self.acc_inits[r]}")
                self.k.line(f"{self.names[r]}[...] = {self._init_value(r)}")
            else:
                self.k.line(f"{self.names[r]}[...] = {self._init_value(r)}")

    def loop(self, n, at, accs):
        """Full chunks of ``width`` elements, then the rest; ``at(j)`` emits the body at ``j``.
        (A run of symbolic length ``n``, a run-time expression: ``loop_between(0, n)``.)"""
        if isinstance(n, str):
            self.loop_between("0", n, at, accs)
            return
        k, width = self.k, self.width
        chunks, rest = divmod(n, width)
        wide = [r for r in self.reds if self.wide[r]]
        per_flush = LANE_FLUSH // width
        def chunk(c):
            lane = k.tmp("l")
            with k.block(f"for {lane} in range({width}):"):
                j = lane
                if c is not None:
                    j = k.tmp("j")
                    k.line(f"{j} = {c} * {width} + {lane}")
                for r in self.reds:
                    accs[r] = f"{self.names[r]}[{lane}]"
                at(j)

        if chunks == 1:
            chunk(None)
        else:
            c = k.tmp("c")
            with k.block(f"for {c} in range({chunks}):"):
                chunk(c)
                if wide and chunks > per_flush:
                    self._flush_every(c, wide)
        if rest:
            self._tail(chunks * width, n, chunks * width, at, accs)
        if wide:
            self._flush(wide)

    def loop_between(self, lo: str, hi: str, at, accs):
        """Like ``loop``, over the run ``lo <= j < hi`` whose bounds are known only at run time."""
        k, width = self.k, self.width
        wide = [r for r in self.reds if self.wide[r]]
        # unsigned indices: with signed ones Numba's negative-index wraparound turns every load
        # and store into a gather/scatter (the bounds are not known when compiling)
        ci, lane, j, start = k.tmp("c"), k.tmp("l"), k.tmp("j"), k.tmp("s")
        with k.block(f"for {ci} in range(({hi} - {lo}) // {width}):"):
            k.line(f"{start} = np.uint64({lo} + {ci} * {width})")
            with k.block(f"for {lane} in range(np.uint64({width})):"):
                k.line(f"{j} = {start} + {lane}")
                for r in self.reds:
                    accs[r] = f"{self.names[r]}[{lane}]"
                at(j)
            if wide:
                self._flush_every(ci, wide)
        rest = k.tmp("r")
        k.line(f"{rest} = np.uint64({lo} + ({hi} - {lo}) // {width} * {width})")
        self._tail(rest, f"np.uint64({hi})", rest, at, accs)
        if wide:
            self._flush(wide)

    def _tail(self, start, stop, first, at, accs):
        """The elements after the full chunks, ``start <= j < stop``: element j into lane j - first."""
        j = self.k.tmp("j")
        with self.k.block(f"for {j} in range({start}, {stop}):"):
            for r in self.reds:
                accs[r] = f"{self.names[r]}[{j} - {first}]"
            at(j)

    def _flush_every(self, counter: str, wide):
        """Fold the float32 lanes into the float64 ones after every LANE_FLUSH elements."""
        per_flush = LANE_FLUSH // self.width
        with self.k.block(f"if {counter} % {per_flush} == {per_flush - 1}:"):
            self._flush(wide)

    def _flush(self, wide):
        k = self.k
        for r in wide:
            lane = k.tmp("l")
            with k.block(f"for {lane} in range({self.width}):"):
                k.line(self.fold(r, f"{self.wide_names[r]}[{lane}]", f"{self.names[r]}[{lane}]",
                                 self.acc_dtypes[r], self.dtype[r]))
            k.line(f"{self.names[r]}[...] = {self._init_value(r)}")

    def combine(self, accs, value_dtypes):
        """Fold every reduction's lanes in a fixed order: lane l into lane l % 8 (ascending l),
        then lanes 1..7 into lane 0. (Two short loops: a halving tree of loops took as long at
        run time and 0.3-0.5 s more to compile per reduction.)"""
        k = self.k
        for r in self.reds:
            arr, dtype = (self.wide_names[r], self.acc_dtypes[r]) if self.wide[r] else (self.names[r], self.dtype[r])
            lane = k.tmp("l")
            with k.block(f"for {lane} in range(8, {self.width}):"):
                k.line(self.fold(r, f"{arr}[{lane} % 8]", f"{arr}[{lane}]", dtype, dtype))
            lane = k.tmp("l")
            with k.block(f"for {lane} in range(1, 8):"):
                k.line(self.fold(r, f"{arr}[0]", f"{arr}[{lane}]", dtype, dtype))
            accs[r], value_dtypes[r] = f"{arr}[0]", dtype


# float ops that round, by the families LLVM's reassociation (fastmath 'reassoc', without 'nsz')
# merges within: (x * a) * b, (x * a) / b, (x + a) - b; and ops that are exact, selects or
# comparisons (nothing to reassociate). vecmath calls keep strict flags whatever the caller's
_FAMILY = {"add": "add", "sub": "add", "mul": "mul", "div": "mul"}
_EXACT = frozenset({"abs", "sqrt", "maximum", "minimum", "fmax", "fmin", "where", "relu", "clip", "cast",
                    "broadcast_to", "stop_gradient", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "xor",
                    "not", "floor", "ceil", "rint", "sign", "iota"})


def reassociation_safe(sub: Graph, math: str) -> bool:
    """Whether a kernel computing ``sub`` may run with fastmath 'reassoc', so that its sums
    vectorize as reassociated partials. The flag covers every float instruction of the kernel:
    two rounding ops of one family in a row would be merged (``x * 1e30 * 1e-30`` -> ``x``,
    finite where NumPy overflows; ``x * 3 / 3`` -> ``x``), in the sums and in the elementwise
    values the group stores. (Only a product's or sum's feed into the reduction itself is
    reassociated: within a sum's own error.)"""
    family = {}  # node -> the family of the rounding op it is (or, for a negation, forwards)
    for n in sub.nodes:
        dtype = n.outputs[0].type.dtype
        if n.op in REDUCTIONS or not dtype.startswith("float"):
            continue
        fed = {family[v.producer] for v in n.inputs if v.producer in family}
        if n.op == "neg":  # exact, but -(a * b) * c folds the negation into one product
            if len(fed) == 1:
                family[n] = fed.pop()
            elif fed:
                return False
        elif n.op in _FAMILY:
            if _FAMILY[n.op] in fed:
                return False
            family[n] = _FAMILY[n.op]
        elif n.op not in _EXACT and (math != "fast" or codegen.vector_math(registry.get(n.op).math, dtype) is None
                                     or n.op == "pow"):  # (pow: x ** 0.5 takes np.sqrt, others inline)
            return False
    return True


def initial_value_of(r):
    """The start value of reduction node ``r``'s accumulator (its op's ``Reduction.initial``)."""
    return registry.get(r.op).reduction.initial(r.inputs[0].type.dtype)


def extent(dims):
    """The number of elements of ``dims``: an int, or where a dim is a symbol the run-time
    expression of it (``dim_B * 64``: the backend names each symbol's value)."""
    symbols = [str(n) for n in dims if isinstance(n, str)]
    known = int(np.prod([n for n in dims if not isinstance(n, str)], dtype=np.int64))
    if not symbols:
        return known
    return " * ".join(symbols + ([str(known)] if known != 1 else []))


def one_element(t) -> bool:
    """Whether a value of type ``t`` has exactly one element (a symbolic dim never: B >= 2
    wherever a graph is compiled for every size)."""
    return all(n == 1 for n in t.shape)


def above_one(n) -> bool:
    """``n > 1`` for a dim that may be a symbol (B >= 2 in a graph compiled for every size)."""
    return isinstance(n, str) or n > 1


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


# -- the loop plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How a group's loop nest runs (``emit_group`` lowers it)."""

    domain: tuple  # the loop domain: the elementwise nodes' shape (or the reduced input's)
    axes: tuple  # the axes its reductions reduce (empty without reductions)
    # one contiguous run over the domain, every operand read and every array output written
    # at the loop index itself: operands have the domain's shape or one element, and any
    # reduction is over every axis
    flat: bool


def layout_of(sub: Graph) -> Layout:
    """The loop plan of a group whose body is ``sub``."""
    reds = [n for n in sub.nodes if n.op in REDUCTIONS]
    ews = [n for n in sub.nodes if n.op not in REDUCTIONS]
    domain = tuple(ews[0].outputs[0].type.shape if ews else reds[0].inputs[0].type.shape)
    axes = tuple(reds[0].attrs["axes"]) if reds else ()
    flat = (len(domain) >= 1 and (not reds or axes == tuple(range(len(domain))))
            and all(n.op != "iota" for n in sub.nodes)
            and all(v.type.shape == domain or one_element(v.type) for v in sub.inputs))
    return Layout(domain, axes, flat)


def layout(node) -> Layout:
    """The loop plan of fused ``node`` (moved here from graphc.ops.fused: it is CPU strategy)."""
    return layout_of(subgraph(node))


# Memory-order loops keep one accumulator per kept position in a scratch array; when that
# array would not fit in L2 (and the reduced extent is too short to repay the extra scratch
# traffic), the classic order is cheaper: measured on (2, 2**22) float32, axis 0.
SCRATCH_MAX = 1 << 17


def memory_order(shape, axes):
    """The loop plan of a reduction of ``shape`` over ``axes`` whose innermost axis is kept.

    Returns None where the classic order (kept dims outer, reduced dims inner, a scalar
    accumulator) already reads memory contiguously: no reduced axis, all axes, or the last
    axis of size > 1 reduced (trailing-axis reductions and mixed ones such as axes (0, 2)
    of a 3-D array, whose inner loop runs along the contiguous reduced axis). Otherwise
    ``(lead, nest, inner)``: ``lead`` are the kept dims before the first reduced axis of
    size > 1, looped outermost; ``nest`` the other dims, looped in memory order inside
    them; ``inner`` the kept dims of ``nest``, which index the accumulator array, so the
    innermost loop runs along the contiguous kept axis and vectorizes.
    """
    live = [d for d, n in enumerate(shape) if n != 1]
    red = [a for a in axes if shape[a] != 1]
    if not red or live[-1] in axes:
        return None
    lead = [d for d in range(red[0]) if d not in axes]
    nest = [d for d in range(len(shape)) if d not in lead]
    inner = [d for d in nest if d not in axes]
    scratch, reduced = extent([shape[d] for d in inner]), extent([shape[a] for a in axes])
    # (a symbolic extent keeps memory order: right at every size, and the short reduced runs
    # that favour the classic order are the rare case)
    if not isinstance(scratch, str) and not isinstance(reduced, str) and scratch > SCRATCH_MAX and reduced < 8:
        return None
    return lead, nest, inner


# -- what the CPU backend calls -----------------------------------------------------------------
def emit_fused(em: Emitter, node: Node):
    """Lower fused ``node``: its body is ``graphc.ops.fused.subgraph(node)``."""
    emit_group(em, node, subgraph(node))


def emit_reduction(em: Emitter, node: Node):
    """Lower a reduction node that is not part of a fused group (graphs compiled with
    passes="O0", and argmax/argmin): a fusable one as a group of one, the same code."""
    data = registry.get(node.op).reduction
    if data.fusable:
        body = Graph(name=node.op)
        x = body.add_input(node.inputs[0].type)
        inner = body.add_node(node.op, [x], dict(node.attrs), [v.type for v in node.outputs])
        body.outputs = list(inner.outputs)
        emit_group(em, node, body, standalone=True)
    else:
        emit_arg_reduction(em, node, data)


def emit_arg_reduction(em: Emitter, node: Node, data):
    """argmax/argmin: the first extreme's flat index along the reduced axis (NaN wins first)."""
    (x,), out = node.inputs, node.outputs[0]
    axes, keepdims = node.attrs["axes"], node.attrs["keepdims"]
    shape, dtype = x.type.shape, x.type.dtype
    kept = [d for d in range(len(shape)) if d not in axes]
    start = literal(data.initial(dtype), dtype)
    cmp = ">" if data.combine == "argmax" else "<"
    em.alloc(out)

    def beats(v, acc):  # NaN wins and stays; ties keep the first
        if dtype == "bool" or dtype.startswith("int"):
            return f"{v} {cmp} {acc}"
        return f"{v} {cmp} {acc} or ({v} != {v} and {acc} == {acc})"

    def store(kpos, value):
        out_idx = ["0" if d in axes else kpos[d] for d in range(len(shape))] if keepdims \
            else [kpos[d] for d in kept]
        em.store(out, out_idx, value)

    order = memory_order(shape, axes)
    if order is None:
        with em.loops([shape[d] for d in kept]) as kidx:
            acc, best = em.tmp("acc"), em.tmp("best")
            em.line(f"{acc} = {start}")
            em.line(f"{best} = 0")
            with em.loops([shape[d] for d in axes]) as ridx:
                pos = dict(zip(kept, kidx)) | dict(zip(axes, ridx))
                v = em.tmp("x")
                em.line(f"{v} = {em.load(x, [pos[d] for d in range(len(shape))], shape)}")
                with em.block(f"if {beats(v, acc)}:"):
                    em.line(f"{acc} = {v}")
                    em.line(f"{best} = {_flat_index(ridx, [shape[a] for a in axes])}")
            store(dict(zip(kept, kidx)), best)
        return
    # memory order: arrays of accumulators and indices over the inner kept dims
    lead, nest, inner = order
    ishape = tuple(shape[d] for d in inner)
    acc, best = em.tmp("acc"), em.tmp("best")
    put = em.hoisted_line if em.hoist else em.line  # (in a loop body: made once, before the loop)
    put(f"{acc} = {em.scratch(ishape, dtype)}")
    put(f"{best} = {em.scratch(ishape, 'int64')}")
    with em.loops([shape[d] for d in lead]) as lidx:
        em.line(f"{acc}[...] = {start}")
        em.line(f"{best}[...] = 0")
        with em.loops([shape[d] for d in nest]) as nidx:
            pos = dict(zip(lead, lidx)) | dict(zip(nest, nidx))
            at = f"[{', '.join(pos[d] for d in inner)}]"
            v = em.tmp("x")
            em.line(f"{v} = {em.load(x, [pos[d] for d in range(len(shape))], shape)}")
            with em.block(f"if {beats(v, acc + at)}:"):
                em.line(f"{acc}{at} = {v}")
                em.line(f"{best}{at} = {_flat_index([pos[a] for a in axes], [shape[a] for a in axes])}")
        with em.loops(ishape) as iidx:
            store(dict(zip(lead, lidx)) | dict(zip(inner, iidx)), f"{best}[{', '.join(iidx)}]")


def _flat_index(idx, sizes) -> str:
    """Row-major flat index of loop indices ``idx`` over ``sizes``: ``j1 * 12 + j2 * 4 + j3``."""
    terms = []
    for d, i in enumerate(idx):
        stride = int(np.prod(sizes[d + 1:], dtype=np.int64))
        terms.append(i if stride == 1 else f"{i} * {stride}")
    return " + ".join(terms) if terms else "0"


def generic_groups(graph: Graph, plan_inplace: dict) -> set[Node]:
    """The fused nodes of ``graph`` (not of its loops' or branches' bodies) that emit_group
    writes as one kernel of any length: serial flat groups with no reduction whose body (ops,
    attributes, dtypes, which operands are whole arrays, which output is written over which
    operand) occurs at GENERIC_MIN places or more, with two sizes at least. (The key only
    chooses: each call's kernel is the one whose text its own group generates.)"""
    same: dict[tuple, list[Node]] = {}
    for node in graph.nodes:
        if node.op != FUSED:
            continue
        sub = subgraph(node)
        lay = layout_of(sub)
        size = extent(lay.domain)
        if not lay.flat or isinstance(size, str) or not 2 <= size < codegen.PARALLEL_MIN \
                or any(n.op in REDUCTIONS for n in sub.nodes):
            continue  # (a group large enough for threads keeps its kernel of one size)
        number = {}
        key = [tuple((v.type.dtype, v.type.ndim if one_element(v.type) else "whole") for v in sub.inputs)]
        for v in sub.inputs:
            number[v] = len(number)
        for n in sub.nodes:
            key.append((n.op, repr(sorted(n.attrs.items())), tuple(number[v] for v in n.inputs),
                        tuple(v.type.dtype for v in n.outputs)))
            for v in n.outputs:
                number[v] = len(number)
        key.append(tuple(number[v] for v in sub.outputs))
        key.append(tuple(node.inputs.index(plan_inplace[v]) if v in plan_inplace else -1 for v in node.outputs))
        same.setdefault(tuple(key), []).append(node)
    # (copies all of one size are left to graphc.backend.outline, which compiles a repeated run
    # once with its sizes as constants: a kernel per group would only add functions to compile)
    return {node for nodes in same.values() if len(nodes) >= GENERIC_MIN
            and len({node.outputs[0].type.shape for node in nodes}) >= 2 for node in nodes}


def kernel_name(em: Emitter, sub: Graph, lay: Layout) -> str:
    """A name saying what a group's kernel computes: its reductions and up to three of its other
    ops, and where it reduces (``sum_tanh_rows``, ``exp_sub_max_all``); unique in the module, and
    never of a temporary's form (``t_3``)."""
    ops = [n.op for n in sub.nodes if n.op in REDUCTIONS]
    ops += [op for op in dict.fromkeys(n.op for n in reversed(sub.nodes) if n.op not in REDUCTIONS)][:3]
    nd = len(lay.domain)
    if not lay.axes:
        where = []
    elif len(lay.axes) == nd:
        where = ["all"]
    elif lay.axes == tuple(range(nd - len(lay.axes), nd)):
        where = ["rows"]  # the trailing axes: one result per row
    elif lay.axes == tuple(range(len(lay.axes))):
        where = ["cols"]  # the leading axes: one result per column
    else:
        where = ["axes" + "".join(map(str, lay.axes))]
    base = "_".join(dict.fromkeys(ops)) + "".join("_" + w for w in where) or "kernel"
    if base in RESERVED_NAMES:  # (a group of one ``abs``: never shadow a builtin the code calls)
        base += "_loop"
    taken = {info["name"] for info in em.kernel_info} | set(em.names.values())  # (the entry's inputs too)
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    return name
