"""CPU lowering of loops and branches (graphc/ops/control.py): a ``for``, ``while`` or ``if`` in
the generated entry, with the region's nodes written inside it by the backend's usual emitters.

A loop's carry lives in variables bound to buffers made before the loop; the buffers of the
body's own values are allocated once, in the loop's preamble (``Emitter.hoist``), not per step.
At the end of a step each carry takes its new value without a copy where the body computed
it into a buffer of its own: the carry's variable and the value's are swapped, so the next
step writes that value into the buffer the old carry held (nothing else refers to it by
then); a small carry (``COPY_MAX``) is copied instead. A new carry that is not such a buffer (an input passed through, a view, a constant,
one value returned for two carries) is copied first. A ``scan`` writes each step's ys into
its stacked outputs; the final carries are copied into the node's outputs where the memory
plan placed them::

    c_1 = empty_c((2,), np.float64)          # the carry, a buffer of its own
    for i_2 in range(2):                     # (copies and fills are loops: Numba compiles
        c_1[i_2] = x0[i_2]                   #  a[...] = b as a function of its own)
    v9 = empty_c((2,), np.float64)           # a body value's buffer (hoisted)
    for t_3 in range(100):
        i_4 = 0 + t_3
        ...                                  # the body, writing v9
        c_1, v9 = v9, c_1                    # the new carry, swapped in (when large)
"""
from __future__ import annotations

from graphc.backend.base import buffer_roots
from graphc.ops.control import COND, FORI, SCAN, WHILE, Loop
from graphc.ops.scalar import CTOR

# a small carry takes its new value by a copy into its own buffer: cheaper than swapping
# two arrays' variables (reference counts, and LLVM keeps the loop's pointers in registers)
COPY_MAX = 1024


def emit(em, node, emit_region):
    """Write ``node`` (an op of graphc.ops.control); ``emit_region(em, graph)`` writes a region's
    nodes at the current indentation (the backend's own dispatch), its inputs already named."""
    if node.op in (FORI, SCAN):
        _emit_scan(em, node, emit_region)
    elif node.op == WHILE:
        _emit_while(em, node, emit_region)
    elif node.op == COND:
        _emit_cond(em, node, emit_region)
    else:
        raise ValueError(f"graphc.backend.control does not lower {node.op}")


def _init_carries(em, values, rebound=()) -> list[str]:
    """Variables holding a copy of each initial carry (a loop never writes its operands). Those
    at positions in ``rebound`` may end the loop bound to a view of a stacked output
    (``_next_carries``): bound to their own buffer again here, so that a loop run again (in
    an outer loop's next step) copies its initial carry there and not into that view."""
    names = []
    for k, v in enumerate(values):
        if v.type.shape:
            c = em.tmp("c")
            if k in rebound:
                own = em.tmp("c")
                em.buffer(own, v.type.shape, v.type.dtype)
                em.line(f"{c} = {own}")
            else:
                em.buffer(c, v.type.shape, v.type.dtype)
            em.copy(c, em.name(v), v.type.shape)
        else:
            c = em.tmp("c")
            em.line(f"{c} = {CTOR[v.type.dtype]}({em.name(v)})")
        names.append(c)
    return names


def _next_carries(em, region, carries: list[str], outs, rebound=()):
    """Rebind each carry variable to its new value (``outs``, the region's values), all at once.
    Those at positions in ``rebound`` are bound to their new value, a view of this step of a
    stacked output that nothing writes again, without a copy (``_stacked_directly``)."""
    root = buffer_roots(region)
    targets, values, seen = [], [], set()
    swaps, copies = [], []
    for k, (c, v) in enumerate(zip(carries, outs)):
        name = em.name(v)
        if name == c:  # (updated in place: _updated_in_place)
            continue
        if k in rebound:
            targets.append(c)
            values.append(name)
        elif not v.type.shape:
            targets.append(c)
            values.append(f"{CTOR[v.type.dtype]}({name})")
        elif root[v] is v and v.producer is not None and v.producer.op != "constant" and v not in seen:
            small = not v.type.symbolic and v.type.size <= COPY_MAX
            (copies if small else swaps).append((c, name, v.type))
        else:  # (read before any carry is rebound: a copy of what the body returned)
            t = em.tmp("t")
            em.line(f"{t} = {name}.copy()")
            targets.append(c)
            values.append(t)
        seen.add(v)
    for c, name, t in copies:  # (a body's own buffer: no carry's buffer is any of them)
        em.copy(c, name, t.shape)
    targets += [c for c, _, _ in swaps] + [name for _, name, _ in swaps]
    values += [name for _, name, _ in swaps] + [c for c, _, _ in swaps]
    if targets:
        em.line(f"{', '.join(targets)} = {', '.join(values)}")


def shifted_stacks(node) -> list:
    """A scan's pairs of stacked outputs that hold one carry twice, a step apart: output ``i``
    the carry each step began with, output ``j`` the carry each step left (a gradient's forward
    loop saves both: the step's start for the weight's gradient, the new ``h`` for tanh's).
    The memory plan (graphc/backend/plan.py) may place the two in one workspace block of
    length + 1 steps, ``j`` one step after ``i`` (before it in a reverse scan), and the loop
    then writes only ``j`` each step, plus the first step's start: half the memory traffic.
    Triples (carry k, i, j), ``i`` and ``j`` indices of ``node.outputs``."""
    if node.op != SCAN:
        return []
    loop = Loop.of(node)
    body = node.regions[0]
    first = 1 if loop.indexed else 0
    ys = body.outputs[loop.carries:]
    found, used = [], set()
    for k in range(loop.carries):
        old, new = body.inputs[first + k], body.outputs[k]
        if old is new or not old.type.shape:
            continue
        i = next((a for a, v in enumerate(ys) if v is old and a not in used), None)
        j = next((b for b, v in enumerate(ys) if v is new and b not in used), None)
        if i is not None and j is not None:
            used |= {i, j}
            found.append((k, loop.carries + i, loop.carries + j))
    return found


def _updated_in_place(body, first: int, n_carries: int) -> dict:
    """The body's new carries that a ``matmul_acc`` computes into the old carry's buffer (a
    weight's gradient summed over a scan's steps: ``sum += x_t^T @ g_t``): new value -> old.
    Only where the old carry is read by that node alone, as the sum and nowhere else (not as
    an operand of the product, not through a view, not returned), so nothing reads it after
    the update; and the new value is that carry's only and is read by nothing in the body."""
    readers = {}
    for n in body.nodes:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    found = {}
    for old, new in zip(body.inputs[first:first + n_carries], body.outputs[:n_carries]):
        n = new.producer
        if (n is not None and n.op == "matmul_acc" and n.inputs[0] is old and readers.get(old) == [n]
                and n.inputs.count(old) == 1 and old not in body.outputs and new not in readers
                and body.outputs.count(new) == 1):
            found[new] = old
    return found


def _outputs(em, values, carries, views=()):
    """The node's outputs ``values`` from the final carry variables (those at positions in
    ``views`` may be a step of a stacked output: copied)."""
    for k, (v, c) in enumerate(zip(values, carries)):
        placed = em.plan is not None and (v in em.plan.workspace or v in em.plan.outputs or v in em.plan.inplace)
        if v.type.shape and (placed or em.hoist or k in views):  # (in a loop, the carry's buffer is reused)
            em.copy(em.alloc(v), c, v.type.shape)
        elif v.type.shape:
            em.names[v] = c  # a buffer of its own, nothing else holds it: the output as it is
        else:
            em.line(f"{em.define(v)} = {c}")


def _emit_scan(em, node, emit_region):
    loop = Loop.of(node)
    (body,) = node.regions
    ops = node.inputs
    first = 1 if loop.indexed else 0
    placed = em.plan.shifted if em.plan is not None else ()
    shifted = {i - loop.carries: k for k, i, j in shifted_stacks(node) if (node.outputs[i], node.outputs[j]) in placed}
    direct = _stacked_directly(body, loop.carries, set(shifted))
    # (a large carry computed straight into a stack is bound to it; a small one copied, as ever)
    rebound = {k for k, v in enumerate(body.outputs[:loop.carries])
               if v in direct.values() and (v.type.symbolic or v.type.size > COPY_MAX)}
    carries = _init_carries(em, ops[:loop.carries], rebound)
    xs = [em.name(v) for v in ops[loop.carries:loop.carries + loop.xs]]
    consts = ops[loop.carries + loop.xs:]
    ys = [em.alloc(v) for v in node.outputs[loop.carries:]]
    for y, k in shifted.items():  # (the first step's start: later ones are the steps' ends)
        em.copy(ys[y], carries[k], node.outputs[loop.carries + y].type.shape[1:],
                lead=str(loop.length - 1 if loop.reverse else 0))
    step = em.tmp("t")
    span = f"range({loop.length} - 1, -1, -1)" if loop.reverse else f"range({loop.length})"
    em.hoist.append([len(em.lines), em.depth])
    with em.block(f"for {step} in {span}:"):
        if loop.indexed:
            em.names[body.inputs[0]] = index = em.tmp("i")
            em.line(f"{index} = {loop.start} + {step}")
        for v, c in zip(body.inputs[first:], carries):
            em.names[v] = c
        for v, x in zip(body.inputs[first + loop.carries:], xs):
            em.names[v] = em.tmp("x")
            em.line(f"{em.names[v]} = {x}[{step}]")
        for v, u in zip(body.inputs[first + loop.carries + loop.xs:], consts):
            em.names[v] = em.name(u)
        em.reuse.update(_updated_in_place(body, first, loop.carries))
        for at, v in direct.items():
            em.slots[v] = f"{ys[at]}[{step}]"
        emit_region(em, body)
        for at, (y, v) in enumerate(zip(ys, body.outputs[loop.carries:])):
            if at in shifted or (at in direct and v not in em.slots):
                continue  # (the start of a step is the last one's end; a value computed in its step)
            em.slots.pop(v, None)  # (its emitter did not allocate it: copied, as any other)
            if v.type.shape:
                em.copy(y, em.name(v), v.type.shape, lead=step)
            else:
                em.line(f"{y}[{step}] = {em.name(v)}")
        _next_carries(em, body, carries, body.outputs[:loop.carries], rebound)
    em.hoist.pop()
    _outputs(em, node.outputs[:loop.carries], carries, rebound)


def _stacked_directly(body, n_carries: int, skip: set) -> dict:
    """The ys a scan's body computes straight into their step of the stacked output, instead of
    into a buffer of their own copied there after the body: position -> value. A value with a
    buffer of its own made by a node of the body (not an input, a view or a constant), once
    (a value stacked twice is copied into its second stack). Each step writes a different
    step of the stack, and a carry bound to one is read in the next step only; the final
    carry is copied out (``_outputs``)."""
    root = buffer_roots(body)
    made = set(body.nodes)
    found, seen = {}, set()
    for at, v in enumerate(body.outputs[n_carries:]):
        if v in seen:
            continue
        seen.add(v)
        n = v.producer
        if at not in skip and v.type.shape and root[v] is v and n in made and n.op != "constant":
            found[at] = v
    return found


def _emit_while(em, node, emit_region):
    cond, body = node.regions
    n = node.attrs["carries"]
    carries = _init_carries(em, node.inputs[:n])
    consts = node.inputs[n:]
    em.hoist.append([len(em.lines), em.depth])
    with em.block("while True:"):
        for region in (cond, body):
            for v, c in zip(region.inputs, carries):
                em.names[v] = c
            for v, u in zip(region.inputs[n:], consts):
                em.names[v] = em.name(u)
        emit_region(em, cond)
        with em.block(f"if not {em.name(cond.outputs[0])}:"):
            em.line("break")
        emit_region(em, body)
        _next_carries(em, body, carries, body.outputs)
    em.hoist.pop()
    _outputs(em, node.outputs, carries)


def _emit_cond(em, node, emit_region):
    pred, operands = node.inputs[0], node.inputs[1:]
    outs = []
    for v in node.outputs:
        outs.append(em.alloc(v) if v.type.shape else em.define(v))
    for k, region in enumerate(node.regions):
        with em.block(f"if {em.name(pred)}:" if k == 0 else "else:"):
            for v, u in zip(region.inputs, operands):
                em.names[v] = em.name(u)
            emit_region(em, region)
            for out, v in zip(outs, region.outputs):
                if v.type.shape:
                    em.copy(out, em.name(v), v.type.shape)
                else:
                    em.line(f"{out} = {CTOR[v.type.dtype]}({em.name(v)})")
