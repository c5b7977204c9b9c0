"""Memory planning: decide where every array the generated code writes lives.

A backend decision, so it lives here and not in ``passes/``: the CPU backend computes
the plan in its compile step (``plan(graph)``) and hands it to its code generator; it
is never attached to the graph. Without a plan (the O0 and O1 pipelines) every array
is a fresh ``np.empty`` on every call. Fresh memory costs page faults and cold caches
(on our virtual machines a 4 KiB page fault costs about 1.8 us: three fresh 800 KB
gradients took 1 ms of a 1.3 ms call); the plan gives each array a home instead:

* **workspace**: intermediates (arrays that are not returned) live in one byte
  buffer that the runtime allocates once per compiled signature and passes to
  every call. Values whose lifetimes do not overlap share bytes: the graph is
  walked in schedule order and each value takes the best-fitting free block,
  which is released after the value's last use (or the last use of any view of
  it: ``reshape`` and ``index`` lower to views).
* **output**: arrays returned to the user must be new to them. Large ones
  (at least ``OUT_MIN`` bytes) are handed in by the runtime, which recycles an
  array from an earlier call once the user has dropped every reference to it
  (see ``graphc.backend.memory``), so a training loop stops page-faulting
  fresh outputs. Small outputs are allocated inside the call, which is cheaper
  than passing one more argument.
* **output pack** (``pack_outputs``): four or more fresh outputs of one dtype and
  shape (the gradients of equal layers) are computed into one byte buffer the
  runtime allocates per call and splits into views afterwards, one per output,
  none sharing bytes: Numba's code for returning K arrays costs ~15 ms of compile
  per array, one buffer argument the same for any K. Outputs written in place of an
  input are not returned either: the runtime puts back the array it passed.

The code generator falls back to a fresh buffer for any value the plan does not name,
and the plan names no value of symbolic shape (``f32[B,64]``, a graph compiled once for
every batch size: graphc/runtime.py): those are fresh arrays on every call.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from graphc.backend.base import buffer_roots
from graphc.backend.control import shifted_stacks
from graphc.ir import Graph, TensorType, Value
from graphc.ops import registry
from graphc.backend.schedule import layout  # (the loop plan is CPU strategy)
from graphc.ops.control import CONTROL
from graphc.ops.fused import FUSED

# Outputs of at least this many bytes come from the runtime's recycling pool.
# 128 KiB is glibc's default mmap threshold: above it malloc may hand freed
# memory back to the kernel (unmapped, or trimmed off the heap's top), and the
# next call faults it in again. Below it, malloc's free lists serve repeat
# calls without faults, cheaper than a trip through the recycler (~1 us).
OUT_MIN = int(os.environ.get("GRAPHC_OUT_MIN", str(128 << 10)))
ALIGN = 64  # block offsets are multiples of this; the runtime aligns the workspace's start to it


@dataclass
class MemoryPlan:
    """Where each array lives: a workspace block, an out-buffer argument, or (unnamed) fresh."""

    workspace: dict = field(default_factory=dict)  # Value -> (byte offset, byte size)
    outputs: dict = field(default_factory=dict)  # Value -> index of its out-buffer argument
    out_types: list = field(default_factory=list)  # TensorType of each out-buffer argument
    workspace_bytes: int = 0
    inplace: dict = field(default_factory=dict)  # output Value -> the graph input whose buffer it reuses
    # (started, ended) stacks of one scan carry placed a step apart in one block (control.shifted_stacks)
    shifted: set = field(default_factory=set)

    def describe(self, names: dict) -> str:
        """Readable summary for GRAPHC_DUMP: one line per planned value."""
        lines = [f"# memory plan: workspace {self.workspace_bytes} bytes, "
                 f"{len(self.outputs)} recycled output(s)"]
        for v, (offset, size) in sorted(self.workspace.items(), key=lambda kv: kv[1]):
            lines.append(f"#   {names.get(v, '?')}:{v.type} workspace[{offset}:{offset + size}]")
        for v, k in self.outputs.items():
            lines.append(f"#   {names.get(v, '?')}:{v.type} out{k} (recycled)")
        for v, u in self.inplace.items():
            lines.append(f"#   {names.get(v, '?')}:{v.type} in place of input {names.get(u, '?')}")
        return "\n".join(lines)


# Fresh outputs of one dtype and shape, at least this many, are written into one byte buffer
# per call (``OutputPack``): Numba's code for returning a tuple of K arrays grows with K (~15 ms
# of compile per array: LLVM on the tuple's aggregate and each array's boxing), while one
# buffer argument costs the same for any K and splitting it costs ~0.1 us per array.
PACK_MIN = int(os.environ.get("GRAPHC_PACK_MIN", "4"))


@dataclass
class OutputPack:
    """Outputs the entry does not return, and where the runtime finds them after the call.

    * Fresh outputs written into one byte buffer ``ob`` that the runtime allocates per call:
      ``offsets``: Value -> byte offset in ``ob``; ``groups``: per run of outputs of one dtype
      and shape, ``(start, stop, dtype, (count, *shape), output positions)``: the runtime
      splits ``ob[start:stop]`` viewed as that array into the outputs at those positions.
    * ``from_inputs``: output position -> input position, for outputs written in place of an
      input (``MemoryPlan.inplace``): the output is the array the call was given.
    """

    offsets: dict
    groups: list
    nbytes: int
    n_outputs: int
    from_inputs: dict = field(default_factory=dict)
    plain_positions: list = field(init=False)  # positions of the outputs the entry still returns

    def __post_init__(self):
        elsewhere = {p for group in self.groups for p in group[4]} | set(self.from_inputs)
        self.plain_positions = [p for p in range(self.n_outputs) if p not in elsewhere]

    def assemble(self, returned, ob, args) -> tuple:
        """The outputs in order: the entry's ``returned`` ones, views of ``ob``, inputs."""
        outs = [None] * self.n_outputs
        for position, value in zip(self.plain_positions, returned):
            outs[position] = value
        for start, stop, dtype, shape, positions in self.groups:
            for position, value in zip(positions, ob[start:stop].view(dtype).reshape(shape)):
                outs[position] = value
        for position, k in self.from_inputs.items():
            outs[position] = args[k]
        return tuple(outs)


def _placed(memory_plan: MemoryPlan | None) -> set:
    """The values the memory plan gives a home (workspace, recycled or in-place buffer)."""
    if memory_plan is None:
        return set()
    return set(memory_plan.workspace) | set(memory_plan.outputs) | set(memory_plan.inplace)


def pack_outputs(graph: Graph, memory_plan: MemoryPlan | None) -> OutputPack | None:
    """The outputs the entry need not return (``OutputPack``), or None where it returns all.

    Packed into the per-call buffer: an output computed into a fresh array of its own (not a
    view, an input, a constant, a loop's result, the workspace, a recycled or in-place buffer),
    of static nonzero size, returned once; grouped by dtype and shape, groups of ``PACK_MIN`` or
    more. Not returned either: outputs written in place of an input (the input itself).
    """
    root = buffer_roots(graph)
    count = {}
    for v in graph.outputs:
        count[v] = count.get(v, 0) + 1
    planned = _placed(memory_plan)
    groups: dict = {}
    for position, v in enumerate(graph.outputs):
        shape = v.type.shape
        node = v.producer
        if (node is None or node.op in CONTROL or node.op == "constant" or root[v] is not v
                or count[v] != 1 or v in planned or not shape
                or not all(isinstance(n, int) for n in shape) or v.type.size == 0):
            continue
        groups.setdefault((v.type.dtype, tuple(shape)), []).append((position, v))
    layout_groups, offsets, end = [], {}, 0
    for (dtype, shape), members in groups.items():
        if len(members) < PACK_MIN:
            continue
        start = -(-end // ALIGN) * ALIGN
        size = nbytes(members[0][1].type)
        for k, (_, v) in enumerate(members):
            offsets[v] = start + k * size
        end = start + len(members) * size
        layout_groups.append((start, end, np.dtype(dtype), (len(members),) + shape,
                              [position for position, _ in members]))
    inputs = {u: k for k, u in enumerate(graph.inputs)}
    from_inputs = {graph.outputs.index(v): inputs[u] for v, u in memory_plan.inplace.items()} \
        if memory_plan is not None else {}
    if not layout_groups and not from_inputs:
        return None
    return OutputPack(offsets, layout_groups, end, len(graph.outputs), from_inputs)


def nbytes(t: TensorType) -> int:
    return t.size * np.dtype(t.dtype).itemsize


def last_reads(graph: Graph, root: dict) -> dict:
    """Buffer root -> the position of the last node that reads it (or a view of it)."""
    last = {}
    for i, node in enumerate(graph.nodes):
        for x in node.inputs:
            last[root[x]] = i
    return last


def in_place(graph: Graph, root: dict) -> dict:
    """Donated outputs (``graph.donations``: output position -> input position, a State's
    update and its current value) that can be written into the input's own buffer.

    Safe when the output's producer is a fused group that runs flat, so each element of the
    input is read in the iteration that writes the same element of the output, and before
    it (see schedule.emit_group); that group reads the input directly and is its last reader (nodes
    run one after another in schedule order, so earlier readers, e.g. the forward matmul,
    saw the old value, and no later one, nor a view, reads it); neither the input nor the
    output is returned otherwise, not even as a view (the caller would hold the State's
    live array); and no node from the group on can raise at run time, so a call that fails
    has written no State.
    """
    donations = getattr(graph, "donations", None)
    if not donations:
        return {}
    at = {node: i for i, node in enumerate(graph.nodes)}
    producer = {v: node for node in graph.nodes for v in node.outputs}
    last_read = last_reads(graph, root)
    returned = {}
    for w in graph.outputs:
        returned[root[w]] = returned.get(root[w], 0) + 1
    last_raising = next((i for i in range(len(graph.nodes) - 1, -1, -1)
                         if registry.can_raise(graph.nodes[i])), -1)
    result, layouts = {}, {}
    for j, k in sorted(donations.items()):
        v, u = graph.outputs[j], graph.inputs[k]
        node = producer.get(v)
        if (node is None or node.op != FUSED or u not in node.inputs or root[v] is not v
                or v.type != u.type or not v.type.shape):
            continue
        if returned.get(v) != 1 or u in returned or last_read.get(u) != at[node] or last_raising >= at[node]:
            continue
        if node not in layouts:  # (one fused group often updates many States)
            layouts[node] = layout(node)
        if layouts[node].flat and layouts[node].domain == tuple(v.type.shape):
            result[v] = u
    return result


def plan(graph: Graph) -> MemoryPlan:
    """Place every array ``graph``'s generated code writes: workspace blocks reused once
    their value (and its views) is dead, recycled out-buffers for large outputs, and
    donated outputs written in place of their input (``in_place``). Reads ``graph`` only."""
    root = buffer_roots(graph)
    returned = {root[v] for v in graph.outputs}
    last_use = last_reads(graph, root)
    result = MemoryPlan(inplace=in_place(graph, root))
    free: list[list[int]] = []  # blocks [offset, size] not in use
    blocks: dict[Value, list[int]] = {}
    end = 0  # bytes of workspace so far

    def take(need: int) -> list[int]:
        nonlocal end
        fits = [b for b in free if b[1] >= need]
        if fits:
            block = min(fits, key=lambda b: b[1])
            free.remove(block)
            return block
        end += need
        return [end - need, need]

    for i, node in enumerate(graph.nodes):
        for _, a, b in shifted_stacks(node):
            # one carry stacked as each step began (a) and as it ended (b): one block of length
            # + 1 steps, b a step after a (before it in a reverse scan); see backend/control.py
            va, vb = node.outputs[a], node.outputs[b]
            if va.type.symbolic or va.type.shape[0] == 0 or va in returned or vb in returned \
                    or root[va] is not va or root[vb] is not vb:
                continue
            step = nbytes(va.type) // va.type.shape[0]
            if step == 0 or step % ALIGN:  # (nothing to place; each stack's start stays aligned)
                continue
            block = take(-(-(nbytes(va.type) + step) // ALIGN) * ALIGN)
            first, second = (va, vb) if not node.attrs.get("reverse") else (vb, va)
            blocks[first] = blocks[second] = block
            result.workspace[first] = (block[0], nbytes(va.type))
            result.workspace[second] = (block[0] + step, nbytes(va.type))
            result.shifted.add((va, vb))
        for v in node.outputs:
            if v in blocks:
                continue
            # only a buffer of its own is placed (not a view, a constant or a scalar local)
            # (a value of symbolic shape, in a graph compiled for every batch size, is fresh on
            # every call: its size is known only then)
            if not v.type.shape or root[v] is not v or node.op == "constant" or v.type.symbolic \
                    or nbytes(v.type) == 0:
                continue
            if v in returned:
                if nbytes(v.type) >= OUT_MIN and v not in result.inplace:
                    result.outputs[v] = len(result.out_types)
                    result.out_types.append(v.type)
                continue
            block = take(-(-nbytes(v.type) // ALIGN) * ALIGN)
            blocks[v] = block
            result.workspace[v] = (block[0], nbytes(v.type))
        # release after this node's own outputs are placed: an output never shares an input's bytes
        for v in node.outputs + node.inputs:
            if root[v] in blocks and last_use.get(root[v], i) <= i:
                block = blocks.pop(root[v])
                if not any(b is block for b in blocks.values()):  # (a shifted pair: both dead)
                    free.append(block)
    result.workspace_bytes = end
    return result


def verify_pack(graph: Graph, plan: MemoryPlan | None, pack: OutputPack):
    """Raise ``ValueError`` if the output pack is unsafe: a packed value that is not a fresh
    output of its own, or one the memory plan places too, or two packed values sharing bytes."""
    root = buffer_roots(graph)
    names = graph.value_names()
    planned = _placed(plan)
    spans = []
    for v, offset in pack.offsets.items():
        if v not in graph.outputs or graph.outputs.count(v) != 1 or root[v] is not v or v in planned:
            raise ValueError(f"output pack: {names.get(v, '?')}:{v.type} is not a fresh output of its own")
        if offset % np.dtype(v.type.dtype).itemsize or offset + nbytes(v.type) > pack.nbytes:
            raise ValueError(f"output pack: {names.get(v, '?')} at byte {offset} is misplaced")
        spans.append((offset, offset + nbytes(v.type), names.get(v, "?")))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"output pack: {a} and {b} share bytes")


def verify_plan(graph: Graph, plan: MemoryPlan):
    """Raise ``ValueError`` if the plan is unsafe: a returned array in the workspace, two
    values alive at the same node sharing workspace bytes (a view keeps its buffer alive),
    or an output written in place of an input where ``in_place`` does not allow it."""
    root = buffer_roots(graph)
    born = {v: i for i, node in enumerate(graph.nodes) for v in node.outputs}
    dies = dict(born)
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            dies[root[v]] = max(dies.get(root[v], i), i)
    returned = {root[v] for v in graph.outputs}
    names = graph.value_names()
    placed = sorted(plan.workspace.items(), key=lambda kv: kv[1])
    for v, (offset, size) in placed:
        if v in returned:
            raise ValueError(f"memory plan: returned value {names[v]} is in the workspace")
        if offset % ALIGN or offset + size > plan.workspace_bytes or size != nbytes(v.type):
            raise ValueError(f"memory plan: bad block [{offset}:{offset + size}] for {names[v]}")
    allowed = in_place(graph, root) if plan.inplace else {}
    for v, u in plan.inplace.items():
        if allowed.get(v) is not u:
            raise ValueError(f"memory plan: {names[v]} cannot be written in place of {names[u]}")
    for a, b in plan.shifted:  # the one overlap allowed: one stack a step from the other
        step = nbytes(a.type) // max(1, a.type.shape[0])
        if a.type != b.type or abs(plan.workspace[b][0] - plan.workspace[a][0]) != step:
            raise ValueError(f"memory plan: {names[a]} and {names[b]} are not a step apart")
    for k, (u, (ou, su)) in enumerate(placed):
        for v, (ov, sv) in placed[k + 1:]:
            if ov >= ou + su:
                break  # sorted by offset: no later block overlaps u
            if born[u] <= dies[v] and born[v] <= dies[u] and (u, v) not in plan.shifted \
                    and (v, u) not in plan.shifted:
                raise ValueError(f"memory plan: {names[u]} and {names[v]} are alive together "
                                 f"but share workspace bytes")
