"""Loops and branches: ``fori_loop``, ``scan``, ``while_loop`` and ``cond``, nodes that own their
bodies as regions, so a loop is compiled once, whatever its trip count (never unrolled).

The user's functions (``gc.fori_loop(0, 100, body, x0)``) are traced once each into a region:
a closed graph whose inputs are the loop's own (index, carry, slice of ``xs``) followed by
every value the body reads from outside it (a closure's tracer, a Parameter, a global array:
``RegionBuilder.captures``), which the node takes as trailing operands (``consts``)::

    %4:f32[2] = fori_loop(%0, %1, carries=1, start=0, stop=100) {   # descend.py:7
      graph body(%0:i64[], %1:f32[2], %2:f32[]):
        ...
        return %9
    }

The nodes, operands first:

* ``fori_loop(carry..., const...; start, stop, carries[, remat])``: body(i, carry..., const...) -> carry...
* ``scan(carry..., xs..., const...; length, carries, xs, reverse, start[, remat])``:
  body([i,] carry..., x..., const...) -> (carry..., y...); outputs the final carry, then each y
  stacked along a new leading axis of ``length``. ``start`` (an int, or None) gives the body the
  index ``start + t`` first (reverse mode turns a fori_loop into such a scan).
* ``while_loop(carry..., const...; carries)``: regions cond(carry..., const...) -> bool[] and
  body(carry..., const...) -> carry...
* ``cond(pred, operand..., const...)``: regions true and false branch, (operand..., const...) ->
  outputs, of equal types.

Carry types must match exactly (a Python number in the carry takes the body's dtype, as a
weakly typed value does in JAX). Reverse mode goes through ``fori_loop``, ``scan`` and ``cond``.
A loop saves, per step, its carry and the values of the body the backward pass needs (the
residuals; with ``remat``, from ``gc.checkpoint``, only the carry, and the backward loop
recomputes the rest); the backward loop runs in the other direction over the body's vjp.
``while_loop`` has no reverse mode (its trip count is not known until it ran), nor has a
``fori_loop`` whose trip count is traced (it is a while_loop).
The backends lower these nodes to real loops and branches (graphc/backend/control.py on the CPU).
"""
from __future__ import annotations

import functools

import numpy as np

from graphc import pytree
from graphc.context import current_builder, traced_for_every_size, tracing
from graphc.errors import ShapeError, TraceError
from graphc.ir import DTYPES, Graph, TensorType, Value
from graphc.ops import registry
from graphc.ops.registry import ELEMENTWISE, register
from graphc.trace import RegionBuilder, Tracer, _user_line_of, bind, is_weak, type_of, user_line, user_loc

FORI, SCAN, WHILE, COND = "fori_loop", "scan", "while_loop", "cond"
LOOPS = (FORI, SCAN, WHILE)
CONTROL = (FORI, SCAN, WHILE, COND)  # the ops the backends lower as control flow
INDEX = TensorType((), "int64")  # the loop index a fori_loop body gets (weak: a Python int eagerly)
BOOL = TensorType((), "bool")


# -- what a loop node is ------------------------------------------------------------
class Loop:
    """A fori_loop or scan node's layout, read from its attributes (one place for both)."""

    def __init__(self, op: str, attrs: dict, n_operands: int):
        if op == FORI:
            self.length = max(0, attrs["stop"] - attrs["start"])
            self.start, self.xs, self.reverse = attrs["start"], 0, False
        else:
            self.length, self.start = attrs["length"], attrs.get("start")
            self.xs, self.reverse = attrs["xs"], attrs.get("reverse", False)
        self.carries = attrs["carries"]
        self.consts = n_operands - self.carries - self.xs
        self.indexed = self.start is not None  # the body's first input is the step's index

    @classmethod
    def of(cls, node) -> "Loop":
        return cls(node.op, node.attrs, len(node.inputs))

    def index(self, t: int) -> int:
        """The index the body gets at position ``t`` of xs."""
        return self.start + t


def _check_types(what, got, want, names):
    for k, (g, w) in enumerate(zip(got, want)):
        if g != w:
            raise ShapeError(f"{what}: {names(k)} is {g}, but {w} was expected")


def _infer_loop(op, types, regions, attrs):
    """The shape rule of fori_loop and scan (their attributes read by ``Loop``)."""
    if len(regions) != 1:
        raise ShapeError(f"a {op} node has one region (its body), got {len(regions)}")
    (body,) = regions
    loop = Loop(op, attrs, len(types))
    if loop.consts < 0:
        raise ShapeError(f"{op} has {len(types)} operands, fewer than its {loop.carries} carries "
                         f"and {loop.xs} xs")
    carry, xs, consts = types[:loop.carries], types[loop.carries:loop.carries + loop.xs], \
        types[loop.carries + loop.xs:]
    for k, x in enumerate(xs):
        if not x.shape or x.shape[0] != loop.length:
            raise ShapeError(f"{op}: xs[{k}] is {x}, but the scan has length {loop.length}")
    want = [INDEX] * loop.indexed + list(carry) + [TensorType(x.shape[1:], x.dtype) for x in xs] + list(consts)
    got = [v.type for v in body.inputs]
    if len(got) != len(want):
        raise ShapeError(f"{op}: its body takes {len(got)} inputs, but the node gives it {len(want)}")
    _check_types(f"{op} body", got, want, lambda k: f"input {k}")
    outs = [v.type for v in body.outputs]
    if len(outs) < loop.carries or (op == FORI and len(outs) != loop.carries):
        raise ShapeError(f"{op}: its body returns {len(outs)} values for {loop.carries} carries")
    _check_types(f"{op} body", outs[:loop.carries], carry, lambda k: f"carry output {k}")
    return list(carry) + [TensorType((loop.length,) + tuple(y.shape), y.dtype) for y in outs[loop.carries:]]


# (the attributes as keyword parameters: export reads which ones each op takes from here)
def _infer_fori(types, regions=(), *, start, stop, carries, remat=False):
    return _infer_loop(FORI, types, regions, dict(start=start, stop=stop, carries=carries))


def _infer_scan(types, regions=(), *, length, carries, xs, reverse=False, start=None, remat=False):
    return _infer_loop(SCAN, types, regions, dict(length=length, carries=carries, xs=xs, reverse=reverse, start=start))


def _infer_while(types, regions=(), *, carries):
    if len(regions) != 2:
        raise ShapeError(f"a while_loop node has two regions (cond and body), got {len(regions)}")
    cond, body = regions
    for region in regions:
        _check_types(f"while_loop {region.name}", [v.type for v in region.inputs], types, lambda k: f"input {k}")
        if len(region.inputs) != len(types):
            raise ShapeError(f"while_loop {region.name} takes {len(region.inputs)} inputs for {len(types)} operands")
    if [v.type for v in cond.outputs] != [BOOL]:
        raise ShapeError(f"while_loop cond returns {[str(v.type) for v in cond.outputs]}, not one bool[]")
    carry = list(types[:carries])
    if [v.type for v in body.outputs] != carry:
        raise ShapeError(f"while_loop body returns {[str(v.type) for v in body.outputs]} for carries "
                         f"{[str(t) for t in carry]}")
    return carry


def _infer_cond(types, regions=()):
    if len(regions) != 2:
        raise ShapeError(f"a cond node has two regions (its branches), got {len(regions)}")
    if not types or types[0] != BOOL:
        raise ShapeError(f"cond's predicate is {types[0] if types else 'missing'}, not bool[]")
    outs = None
    for region in regions:
        got = [v.type for v in region.inputs]
        if got != list(types[1:]):
            raise ShapeError(f"cond {region.name} takes {list(map(str, got))}, but the node gives it "
                             f"{list(map(str, types[1:]))}")
        mine = [v.type for v in region.outputs]
        if outs is not None and mine != outs:
            raise ShapeError(f"cond branches return different types: {list(map(str, outs))} and "
                             f"{list(map(str, mine))}")
        outs = mine
    return outs


# -- NumPy references (the interpreter runs the regions) -------------------------------
def _fresh(values):
    """Copies: a loop that ran zero times returns its operands, which must not leave as outputs."""
    out = [np.array(v, copy=True) for v in values]
    return tuple(out) if len(out) != 1 else out[0]


def _loop_reference(op):
    def reference(*args, regions, **attrs):
        (body,) = regions
        loop = Loop(op, attrs, len(args))
        carry = list(args[:loop.carries])
        xs = args[loop.carries:loop.carries + loop.xs]
        consts = list(args[loop.carries + loop.xs:])
        ys = [np.empty((loop.length,) + tuple(v.type.shape), v.type.dtype)
              for v in body.graph.outputs[loop.carries:]]
        order = range(loop.length - 1, -1, -1) if loop.reverse else range(loop.length)
        for t in order:
            index = [np.int64(loop.index(t))] if loop.indexed else []
            out = body(*index, *carry, *[x[t] for x in xs], *consts)
            carry = out[:loop.carries]
            for y, value in zip(ys, out[loop.carries:]):
                y[t] = value
        return _fresh(carry + ys)
    return reference


def _while_reference(*args, regions, carries):
    cond, body = regions
    carry, consts = list(args[:carries]), list(args[carries:])
    while bool(cond(*carry, *consts)[0]):
        carry = body(*carry, *consts)
    return _fresh(carry)


def _cond_reference(pred, *args, regions):
    branch = regions[0] if bool(pred) else regions[1]
    return _fresh(branch(*args))


# -- reverse mode -----------------------------------------------------------------------
def _is_float(t) -> bool:
    return t.dtype.startswith("float")


def _zeros(t: TensorType):
    builder = current_builder()
    zero = Tracer(builder.constant(np.zeros((), t.dtype)), builder)
    return bind("broadcast_to", zero, shape=tuple(t.shape)) if t.shape else zero


def _loop_vjp(gs, *operands, node, vjp_region, needed):
    """Cotangents of a fori_loop or scan's operands: a scan in the other direction whose body is
    the backward half of the vjp of the loop's body.

    The vjp of the body (``vjp_region``) replays the body and then runs its backward pass. Its
    nodes that depend on the primal values alone are the forward half: unless the loop asks
    to recompute them (``remat``), they move into the forward loop, which is turned into a
    scan that also returns, stacked per step, the carry it started from and every such value
    the backward half reads (the residuals, as JAX's scan saves them). The backward loop then
    reads those per step. With ``remat`` only the carries are saved and the backward loop
    recomputes the rest, memory for time.
    """
    loop = Loop.of(node)
    (body,) = node.regions
    first = 1 if loop.indexed else 0
    n_in = len(body.inputs)
    gs = list(gs) + [None] * (len(node.outputs) - len(gs))
    carry_in = body.inputs[first:first + loop.carries]
    x_at, const_at = first + loop.carries, first + loop.carries + loop.xs
    # (carries all pass their cotangents on from step to step; xs and consts only where asked)
    diff_carry = [k for k in range(loop.carries) if _is_float(carry_in[k].type)]
    ys_ct = [k for k in range(len(body.outputs) - loop.carries)
             if gs[loop.carries + k] is not None and _is_float(body.outputs[loop.carries + k].type)]
    diff_x = [k for k in range(loop.xs) if _is_float(body.inputs[x_at + k].type) and needed[loop.carries + k]]
    diff_const = [k for k in range(loop.consts) if _is_float(body.inputs[const_at + k].type)
                  and needed[loop.carries + loop.xs + k]]
    wrt = [first + k for k in diff_carry] + [x_at + k for k in diff_x] + [const_at + k for k in diff_const]
    seeded = list(diff_carry) + [loop.carries + k for k in ys_ct]
    grad_body = vjp_region(body, seeded, wrt, "vjp_body")
    forward, residuals, again = _split(grad_body, n_in, node.attrs.get("remat", False), const_at)
    history, saved = _save_per_step(node, forward, residuals, grad_body)
    # the backward body: carries (carry cts, const ct sums), xs (saved carries, xs, y cts,
    # residuals), consts
    back = Graph(name="backward_body")
    env = {}
    if loop.indexed:
        env[grad_body.inputs[0]] = back.add_input(INDEX)
    c_ct = [back.add_input(carry_in[k].type) for k in diff_carry]
    k_sum = [back.add_input(body.inputs[const_at + k].type) for k in diff_const]
    for v in grad_body.inputs[first:first + loop.carries]:
        env[v] = back.add_input(v.type)
    for v in grad_body.inputs[x_at:const_at]:
        env[v] = back.add_input(v.type)
    y_ct = [back.add_input(body.outputs[loop.carries + k].type) for k in ys_ct]
    for r in residuals:
        env[r] = back.add_input(r.type)
    for v in grad_body.inputs[const_at:n_in]:
        env[v] = back.add_input(v.type)
    env.update(zip(grad_body.inputs[n_in:], c_ct + y_ct))
    for n in grad_body.nodes:
        if n not in forward or n in again:
            made = back.add_node(n.op, [env[v] for v in n.inputs], n.attrs, [v.type for v in n.outputs], n.loc,
                                 [r.clone() for r in n.regions])
            env.update(zip(n.outputs, made.outputs))
    outs = [env[v] for v in grad_body.outputs]
    n_c, n_x = len(diff_carry), len(diff_x)
    builder = current_builder()
    xs_ops = [Tracer(v, builder) for v in history] + list(operands[loop.carries:loop.carries + loop.xs]) + \
        [gs[loop.carries + k] for k in ys_ct] + [Tracer(v, builder) for v in saved]
    at = first + n_c + len(k_sum)
    stacked = dict(zip(back.inputs[at:at + len(xs_ops)], xs_ops))  # an xs input -> its stacked array
    k_cts = outs[n_c + n_x:]
    batched = _batched_products(back, k_cts, set(back.inputs[at + len(xs_ops):]), loop.length)
    kept = [j for j in range(len(diff_const)) if j not in batched]
    gone = {k_sum[j] for j in batched}
    back.inputs = [v for v in back.inputs if v not in gone]
    back.input_names, back.input_roles = [None] * len(back.inputs), ["arg"] * len(back.inputs)
    per_step = list(dict.fromkeys(v for a, b in batched.values() for v in (a, b) if v not in stacked))
    others = outs[:n_c + n_x] + per_step + [k_cts[j] for j in batched]
    new_k = [_accumulate(back, k_sum[j], k_cts[j], others + k_cts[:j] + k_cts[j + 1:], node.loc) for j in kept]
    back.outputs = outs[:n_c] + new_k + outs[n_c:n_c + n_x] + per_step
    init_c = [gs[k] if gs[k] is not None else _zeros(carry_in[k].type) for k in diff_carry]
    init_k = [_zeros(body.inputs[const_at + diff_const[j]].type) for j in kept]
    attrs = dict(length=loop.length, carries=len(init_c) + len(init_k), xs=len(xs_ops),
                 reverse=not loop.reverse, start=loop.start)
    results = _node(SCAN, init_c + init_k + xs_ops + list(operands[const_at - first:]), [back], **attrs)
    cts = [None] * len(operands)
    for j, k in enumerate(diff_carry):
        cts[k] = results[j]
    for i, j in enumerate(kept):
        cts[loop.carries + loop.xs + diff_const[j]] = results[n_c + i]
    at = n_c + len(kept)
    for j, k in enumerate(diff_x):
        cts[loop.carries + k] = results[at + j]
    stacked.update(zip(per_step, results[at + n_x:]))
    for j, (a, b) in batched.items():  # sum_t a_t^T b_t = [a_1; ...; a_L]^T [b_1; ...; b_L]
        rows = loop.length * a.type.shape[0]
        whole_a = bind("reshape", stacked[a], shape=(rows, a.type.shape[1]))
        whole_b = bind("reshape", stacked[b], shape=(rows, b.type.shape[1]))
        cts[loop.carries + loop.xs + diff_const[j]] = bind("matmul", whole_a, whole_b, transpose_a=True)
    return cts


# a weight's gradient over a loop's steps is added into its sum per step (_accumulate) where
# the per-step product has at least BATCHED_ROWS rows and one row per SUM_BYTES_PER_ROW bytes
# of the sum, else it is one long product after the loop: see _batched_products
BATCHED_ROWS = 8
SUM_BYTES_PER_ROW = 8192


def _pays_per_step(rows: int, total) -> bool:
    """Whether a product of ``rows`` rows per step added into a sum of type ``total`` is
    cheaper than one long product after the loop. Each step's BLAS call reads and writes the
    whole sum, so it pays where the product does enough work per element of the sum (measured
    in the RNN's gradient, µs per call, per step / long: hidden 128 (a 64 KB sum) batch 8
    921-932 / 968-970; hidden 256 (256 KB) batch 8 1540 / 1409, batch 32 7055 / 7306-7367;
    hidden 512 (1 MB) batch 16 21560 / 17896, batch 32 31408 / 30362)."""
    return rows >= BATCHED_ROWS and rows * SUM_BYTES_PER_ROW >= total.size * np.dtype(total.dtype).itemsize


def _accumulate(back, total, term, others, loc):
    """``total + term`` in ``back``: a const's cotangent summed over the steps. Where ``term`` is
    a 2-D float product read by nothing else (a weight's gradient in a layer, ``x^T @ g``), one
    ``matmul_acc`` adds the product into the sum (BLAS's beta = 1), which the loop lowering
    updates in place (graphc/backend/control.py): no product written and read back per step."""
    n = term.producer
    if (n is not None and n.op == "matmul" and term.type == total.type and term.type.ndim == 2
            and term.type.dtype in ("float32", "float64") and term not in others
            and not any(term in m.inputs for m in back.nodes)):
        flags = {k: True for k in ("transpose_a", "transpose_b") if n.attrs.get(k)}
        return back.add_node("matmul_acc", [total, *n.inputs], flags, [total.type], loc).output
    return back.add_node("add", [total, term], {}, [total.type], loc).output


def _batched_products(back, k_cts, invariant, length) -> dict:
    """The consts' per-step cotangents that are ``a_t^T @ b_t`` (a weight's gradient in a layer:
    ``x^T @ g``) over too few rows to be added into their sum per step (``_pays_per_step``: a
    small batch, or a large weight): position -> (a, b). Their sum over the steps is one
    matrix product of the stacked ``a`` and ``b`` after the loop (a long product BLAS runs
    near its peak) instead of a thin product per step. Only where both vary per step (not
    ``invariant``) and the product is read by nothing else. Elsewhere the per-step products
    added into the sum (``_accumulate``) are faster: the long product's stacked operands are
    written and read back through memory (RNN, hidden 128, T=100, µs per step, per step /
    long: batch 1 4.7 / 2.1, 4: 5.3 / 4.6, 8: 8.4 / 9.3, 32: 28 / 33, T=400 32 / 37). (A
    vector's gradient, ``x^T @ g`` reshaped, stays per step.)"""
    # (with a symbolic length or batch, length x rows is no one dim: per-step products then, in
    # every trace compared for every size, so that they all agree)
    if isinstance(length, str) or length == 0 or traced_for_every_size():
        return {}
    read = {v for n in back.nodes for v in n.inputs}  # (the body's outputs are not set yet)
    found = {}
    for j, v in enumerate(k_cts):
        n = v.producer
        if (n is None or n.op != "matmul" or n.attrs.get("transpose_a") is not True or n.attrs.get("transpose_b")
                or v in read or v in k_cts[:j] or v in k_cts[j + 1:]):
            continue
        a, b = n.inputs
        if a.type.ndim == 2 and b.type.ndim == 2 and a not in invariant and b not in invariant \
                and not (a.type.symbolic or b.type.symbolic) and not _pays_per_step(a.type.shape[0], v.type):
            found[j] = (a, b)
    return found


def _split(grad_body, n_primal: int, remat: bool, const_at: int):
    """The nodes of ``grad_body`` (a body's vjp: its first ``n_primal`` inputs primal, the rest
    cotangents, inputs ``const_at`` to ``n_primal`` the loop's consts) that the forward loop
    computes instead (those of primal values alone, not mere constants; none under ``remat``),
    the values of them the rest reads (the residuals), and the forward nodes of the consts
    alone (a reshaped weight): those are not saved per step but computed again by the backward
    body, whose loop-invariant code motion (passes/hoist.py) then runs them once (so only nodes
    it can move: not those that may raise, such as a matmul or an inverse)."""
    if remat:
        return set(), [], set()
    primal = set(grad_body.inputs[:n_primal])
    invariant = set(grad_body.inputs[const_at:n_primal])
    forward, again = set(), set()
    for n in grad_body.nodes:
        if n.inputs and all(v in primal or _is_constant(v) for v in n.inputs) \
                and any(v in primal for v in n.inputs) and not n.regions:
            forward.add(n)
            primal.update(n.outputs)
            if all(v in invariant or _is_constant(v) for v in n.inputs) and not registry.can_raise(n):
                again.add(n)  # (what may raise stays in the loop, so it is saved, not recomputed)
                invariant.update(n.outputs)
    residuals = []
    for n in grad_body.nodes:
        if n not in forward:
            residuals += [v for v in n.inputs if v.producer in forward and v not in residuals]
    residuals += [v for v in grad_body.outputs if v.producer in forward and v not in residuals]
    saved = [v for v in residuals if v not in invariant]
    again |= _recomputed(saved, forward, set(grad_body.inputs[:n_primal]) | invariant)
    return forward, saved, again


def _recomputed(saved: list, forward: set, available: set) -> set:
    """The forward nodes the backward body computes again instead of reading saved values: the
    arithmetic (elementwise ops with no math function) that makes a residual from values the
    backward body has anyway (tanh's ``1 - h * h`` from the saved ``h``). Each one spares the
    loop an array written per step and read back, memory traffic that costs more than the
    arithmetic once the stacked residuals outgrow the caches. ``saved`` loses them in place."""
    def cheap(n) -> bool:
        op = registry.get(n.op)
        return op.kind == ELEMENTWISE and op.math is None and not registry.can_raise(n)

    def chain(v, have, nodes, depth=0) -> bool:
        """Whether ``v`` can be computed from ``have`` by cheap forward nodes (added to ``nodes``)."""
        if v in have or _is_constant(v):
            return True
        n = v.producer
        if n not in forward or not cheap(n) or depth > 4:
            return False
        if all(chain(u, have, nodes, depth + 1) for u in n.inputs):
            nodes.add(n)
            return True
        return False

    again = set()
    for r in list(saved):
        nodes = set()
        have = available | set(saved) - {r} | {v for n in again for v in n.outputs}
        if chain(r, have, nodes):
            saved.remove(r)
            again |= nodes
    return again


def _is_constant(v) -> bool:
    return v.producer is not None and v.producer.op == "constant"


def _save_per_step(node, forward, residuals, grad_body):
    """Turn loop ``node`` (in place, while tracing) into a scan that also returns, stacked per
    step, its carry at the start of the step and the ``residuals`` (computed by the ``forward``
    nodes of ``grad_body``, copied into its body): the forward pass runs once. Returns the
    values of the saved carries and of the saved residuals."""
    loop = Loop.of(node)
    body = node.regions[0].clone()
    first = 1 if loop.indexed else 0
    env = dict(zip(grad_body.inputs, body.inputs))
    read = {v for n in forward for v in n.inputs}
    for n in grad_body.nodes:
        if n in forward or (n.op == "constant" and n.outputs[0] in read):  # (and the constants they read)
            made = body.add_node(n.op, [env[v] for v in n.inputs], n.attrs, [v.type for v in n.outputs], n.loc)
            env.update(zip(n.outputs, made.outputs))
    carries = body.inputs[first:first + loop.carries]
    body.outputs = body.outputs + carries + [env[r] for r in residuals]
    attrs = dict(length=loop.length, carries=loop.carries, xs=loop.xs, reverse=loop.reverse, start=loop.start)
    if node.attrs.get("remat"):
        attrs["remat"] = True
    new = [Value(TensorType((loop.length,) + tuple(v.type.shape), v.type.dtype), node)
           for v in carries + residuals]
    node.op, node.attrs, node.regions = SCAN, attrs, [body]
    node.outputs = node.outputs + new
    return new[:loop.carries], new[loop.carries:]


def _while_vjp(gs, *operands, node, vjp_region, needed):
    raise TraceError(f"reverse-mode differentiation of gc.while_loop is not supported (at {node.loc}): "
                     f"its trip count is known only when it has run (a gc.fori_loop whose bounds are traced "
                     f"is a while_loop too). Use gc.fori_loop with static bounds or gc.scan, whose reverse "
                     f"mode is supported")


def _cond_vjp(gs, pred, *operands, node, vjp_region, needed):
    """Cotangents of a cond's operands: a cond on the same predicate over the branches' vjps."""
    true, false = node.regions
    seeded = [k for k, (g, v) in enumerate(zip(gs, true.outputs)) if g is not None and _is_float(v.type)]
    wrt = [k for k, v in enumerate(true.inputs) if _is_float(v.type) and needed[1 + k]]
    if not seeded or not wrt:
        return [None] * (len(operands) + 1)
    branches = [vjp_region(r, seeded, wrt, f"vjp_{r.name}") for r in (true, false)]
    outs = _node(COND, [pred, *operands, *[gs[k] for k in seeded]], branches)
    cts = [None] * (len(operands) + 1)
    for j, k in enumerate(wrt):
        cts[1 + k] = outs[j]
    return cts


register(FORI, "control", _infer_fori, _loop_reference(FORI), vjp=_loop_vjp)
register(SCAN, "control", _infer_scan, _loop_reference(SCAN), vjp=_loop_vjp)
# (not differentiable: its rule only raises the error that says so)
register(WHILE, "control", _infer_while, _while_reference, vjp=_while_vjp, differentiable=False)
register(COND, "control", _infer_cond, _cond_reference, vjp=_cond_vjp)


# -- tracing the user's functions into regions ------------------------------------------
class _Leaves:
    """A pytree of operands (a loop's carry, a scan's xs, a cond's operands) flattened: the array
    and number leaves with their types, weak flags and paths; a None leaf stays None (static)."""

    def __init__(self, tree, prefix: str, what: str):
        every, self.tree = pytree.flatten(tree)
        self.none = [leaf is None for leaf in every]
        paths = pytree.leaf_paths(tree, prefix)
        self.leaves = [leaf for leaf in every if leaf is not None]
        self.paths = [p for p, leaf in zip(paths, every) if leaf is not None]
        self.types, self.weak = [], []
        for leaf, path in zip(self.leaves, self.paths):
            if not isinstance(leaf, (Tracer, np.ndarray, np.generic, bool, int, float)):
                raise TraceError(f"{what}: {path} is a {type(leaf).__name__}, not an array or a number "
                                 f"(at {user_line()})")
            t = type_of(leaf)
            if t.dtype not in DTYPES:
                raise TraceError(f"{what}: {path} has dtype {t.dtype}, which graphc does not support")
            self.types.append(t)
            self.weak.append(is_weak(leaf))

    def rebuild(self, values):
        """The pytree with ``values`` for its array leaves (None where it had None)."""
        it = iter(values)
        return pytree.unflatten(self.tree, [None if none else next(it) for none in self.none])

    def strip(self, leaves, what):
        """A body's output leaves for this structure without its None leaves (which must be None)."""
        paths = iter(self.paths)
        out = []
        for leaf, none in zip(leaves, self.none):
            if none and leaf is not None:
                raise TraceError(f"{what} returns a value where its input has None (at {user_line()})")
            if not none:
                path = next(paths)
                if leaf is None:
                    raise TraceError(f"{what} returns None for {path}, which is an array going in "
                                     f"(at {user_line()})")
                out.append(leaf)
        return out


def _as_value(builder, leaf, t: TensorType):
    """An operand of a node of ``builder``: a tracer's value (lifted into ``builder``), or a constant."""
    if isinstance(leaf, Tracer):
        return Tracer(builder.value_of(leaf), builder, leaf.weak)
    return Tracer(builder.constant(np.asarray(leaf, dtype=t.dtype)), builder)


def _trace_region(fn, name: str, what: str, inputs, weak, make_args):
    """Trace ``fn(*make_args(tracers))`` into a region of the current trace; returns
    ``(region builder, output leaves, output tree)``. ``inputs``: the region's own input types."""
    parent = current_builder()
    child = RegionBuilder(parent, name, what)
    with tracing(child):
        tracers = [Tracer(child.graph.add_input(t), child, w) for t, w in zip(inputs, weak)]
        try:
            out = fn(*make_args(tracers))
        except ShapeError as exc:
            if "\n  at " in str(exc):
                raise
            # (the line in the body that raised, from the traceback: the stack is the loop's call now)
            raise ShapeError(f"{exc}\n  in {what}, at {_user_line_of(exc.__traceback__)}") from None
    leaves, tree = pytree.flatten(out)
    return child, leaves, tree


def _finish(child, leaves, types, what, paths):
    """Set the region's outputs: ``leaves`` as values of ``types`` (a Python number or a weakly
    typed value takes the dtype asked for; anything else must match exactly)."""
    outs = []
    with tracing(child):
        for leaf, t, path in zip(leaves, types, paths):
            if isinstance(leaf, Tracer):
                got = leaf.value.type if leaf.builder is child else child.value_of(leaf).type
                if got != t and leaf.weak and got.shape == t.shape:
                    leaf = bind("cast", leaf, dtype=t.dtype)
                    got = t
                if got != t:
                    raise TraceError(f"{what} returns {got} for {path}, which is {t} going in: a loop's carry "
                                     f"(and both branches of a cond) must keep one shape and dtype "
                                     f"(at {user_line()})")
                outs.append(child.value_of(leaf))
            elif isinstance(leaf, (bool, int, float, np.ndarray, np.generic)):
                array = np.asarray(leaf)
                if array.shape != t.shape or (not is_weak(leaf) and array.dtype.name != t.dtype):
                    raise TraceError(f"{what} returns {type_of(leaf)} for {path}, which is {t} going in: a "
                                     f"loop's carry (and both branches of a cond) must keep one shape and "
                                     f"dtype (at {user_line()})")
                outs.append(child.constant(array.astype(t.dtype)))
            else:
                raise TraceError(f"{what} returns a {type(leaf).__name__} for {path}; it must return "
                                 f"arrays or numbers (at {user_line()})")
    child.graph.outputs = outs
    child.finished = True
    return child


def _leaf_type(leaf) -> TensorType:
    return leaf.value.type if isinstance(leaf, Tracer) else type_of(leaf)


def _conform(what, leaves, got, want) -> list:
    """``leaves`` (flattened as tree ``got``) in the order of tree ``want``: the same structure,
    where a dict may list its keys in another order (it is the same dict, as it is eagerly)."""
    if got == want:
        return leaves
    out = []
    if not _in_order(pytree.unflatten(got, leaves), want, out):
        raise TraceError(f"{what} returns a structure different from its input's: "
                         f"{_describe(got)} instead of {_describe(want)} (at {user_line()})")
    return out


def _in_order(x, want, out) -> bool:
    """Append the leaves of ``x`` to ``out`` in the order of tree ``want``; False if ``x`` has
    another structure (other than the order of a dict's keys)."""
    if want == pytree.LEAF:
        out.append(x)
        return pytree.flatten(x)[1] == pytree.LEAF
    kind, children = want[0], want[-1]
    if kind == "dict":
        return type(x) is dict and set(x) == set(want[1]) and len(x) == len(want[1]) \
            and all(_in_order(x[k], c, out) for k, c in zip(want[1], children))
    cls = want[1] if kind == "namedtuple" else {"tuple": tuple, "list": list}[kind]
    return type(x) is cls and len(x) == len(children) and all(_in_order(e, c, out) for e, c in zip(x, children))


def _describe(tree) -> str:
    if tree == pytree.LEAF:
        return "an array"
    kind = tree[0]
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {_describe(t)}" for k, t in zip(tree[1], tree[2])) + "}"
    inner = ", ".join(_describe(t) for t in tree[-1])
    return {"tuple": f"({inner})", "list": f"[{inner}]"}.get(kind, f"{kind}({inner})")


def _carry_body(fn, name, what, carry: _Leaves, extra_inputs, extra_weak, make_args, pair=False, runs=True):
    """Trace a loop body whose outputs are its carry (``pair``: a scan's ``(carry, y)``); a Python
    number in the carry that comes back with another dtype takes that dtype, or comes back as an
    array's value (not weak: ``0.0 + x[i]``) when the loop ``runs`` at least once (the body is
    traced once more). Returns the region builder, the carry's types and weak flags, its output
    leaves, and the y leaves with their tree (a scan's; else ``([], None)``)."""
    types, weak = list(carry.types), list(carry.weak)

    for attempt in range(3):
        inputs = extra_inputs[0] + types + extra_inputs[1]
        flags = extra_weak[0] + weak + extra_weak[1]
        child, leaves, tree = _trace_region(fn, name, what, inputs, flags, make_args)
        carry_leaves, rest = _split_out(what, leaves, tree, carry.tree, pair)
        carry_leaves = carry.strip(carry_leaves, what)
        retry = False
        for k, leaf in enumerate(carry_leaves):
            got = _leaf_type(leaf)
            if weak[k] and got.shape == types[k].shape and got != types[k]:
                # a Python number in the carry takes the type of an array the body makes of it
                # ((x, np.inf) with x float32: float32), or of a wider number (0 -> 0.5: a float);
                # a narrower number coming back is cast to the carry instead (_finish)
                new = got.dtype if not is_weak(leaf) else np.promote_types(types[k].dtype, got.dtype).name
                if new != types[k].dtype:
                    types[k], weak[k], retry = TensorType(types[k].shape, new), is_weak(leaf), True
            elif weak[k] and runs and got == types[k] and not is_weak(leaf):
                # eagerly the loop's result is then a NumPy value, which promotes as its dtype
                # (a float32 array times it is float64), not as a Python number
                weak[k], retry = False, True
        if not retry or attempt == 2:
            return child, types, weak, carry_leaves, rest
        child.finished = True  # (abandoned: traced again with the carry's new dtypes)
    raise AssertionError("unreachable")


def _split_out(what, leaves, tree, carry_tree, pair):
    """The body's outputs: the carry's leaves (checked against its structure) and the rest."""
    if pair:  # a scan body: (carry, y)
        if not (tree != pytree.LEAF and tree[0] in ("tuple", "list") and len(tree[1]) == 2):
            raise TraceError(f"{what} must return a pair (carry, y), got {_describe(tree)} (at {user_line()})")
        c_tree, y_tree = tree[1]
        n_c = _n_leaves(c_tree)
        return _conform(what + " (its carry)", leaves[:n_c], c_tree, carry_tree), (leaves[n_c:], y_tree)
    return _conform(what, leaves, tree, carry_tree), ([], None)


def _n_leaves(tree) -> int:
    return 1 if tree == pytree.LEAF else sum(_n_leaves(t) for t in tree[-1])


def _node(op, operands, regions, **attrs) -> list:
    out = bind(op, *operands, regions=regions, **attrs)
    return list(out) if isinstance(out, tuple) else [out]


def _close(children, explicit: int):
    """Give regions traced apart one input list: their own ``explicit`` inputs, then every value
    any of them read from outside (each region gets unused inputs for the others' reads).
    Returns the regions and the outer values in input order."""
    outer = []
    for child in children:
        for v in child.captures:
            if v not in outer:
                outer.append(v)
    regions = []
    for child in children:
        g = child.graph
        own = g.inputs[:explicit]
        # (a value only the other regions read is an input this one leaves unused)
        lifted = [child.captures[v] if v in child.captures else Value(v.type) for v in outer]
        g.inputs = own + lifted
        g.input_names = [None] * len(g.inputs)
        g.input_roles = ["arg"] * len(g.inputs)
        regions.append(g)
    return regions, outer


def _outer_tracers(builder, values):
    return [Tracer(v, builder) for v in values]


# -- the public functions -----------------------------------------------------------------
def checkpoint(fn):
    """``fn`` marked for rematerialization (JAX's ``jax.checkpoint``): as the body of a
    ``fori_loop`` or ``scan``, reverse mode saves only the carry per step and recomputes the
    body's other values in the backward loop, instead of saving them (less memory, more time).
    Called directly, ``fn`` runs as it is."""
    @functools.wraps(fn)
    def marked(*args, **kwargs):
        return fn(*args, **kwargs)
    marked.__graphc_remat__ = True
    return marked


remat = checkpoint


def _remat(fn, asked) -> dict:
    return {"remat": True} if asked or getattr(fn, "__graphc_remat__", False) else {}


def fori_loop(lower, upper, body_fun, init_val, *, remat=False):
    """``for i in range(lower, upper): val = body_fun(i, val)``; returns the final ``val``.

    Inside a traced function the loop is one node whose body is traced once, whatever the trip
    count (a Python loop would be unrolled). ``val`` is any pytree of arrays and numbers, whose
    shapes and dtypes the body must keep. With static bounds (Python ints) the loop is
    differentiable in reverse mode (``remat=True``: recompute the body's values in the backward
    pass instead of saving them per step); traced bounds make it a ``while_loop``, which is not.
    Outside a trace it runs the Python loop.
    """
    builder = current_builder()
    bounds_traced = isinstance(lower, Tracer) or isinstance(upper, Tracer)
    if builder is None and not bounds_traced:
        val = init_val
        for i in range(_static_int(lower, "lower"), _static_int(upper, "upper")):
            val = body_fun(i, val)
        return val
    if bounds_traced:
        return _fori_as_while(lower, upper, body_fun, init_val)
    start, stop = _static_int(lower, "lower", traced=True), _static_int(upper, "upper", traced=True)
    if stop - start > _INT64_MAX:
        raise TraceError(f"gc.fori_loop: range({start}, {stop}) has more steps than an int64 counts "
                         f"(at {user_line()})")
    what = "the body of gc.fori_loop"
    carry = _Leaves(init_val, "init_val", "gc.fori_loop")
    loc = user_loc()

    def make_args(tracers):
        return tracers[0], carry.rebuild(tracers[1:])

    child, types, weak, leaves, _ = _carry_body(body_fun, "body", what, carry, ([INDEX], []), ([True], []), make_args,
                                                runs=stop > start)
    _finish(child, leaves, types, what, carry.paths)
    (region,), outer = _close([child], 1 + len(types))
    operands = [_as_value(builder, leaf, t) for leaf, t in zip(carry.leaves, types)] + _outer_tracers(builder, outer)
    outs = _node(FORI, operands, [region], start=start, stop=stop, carries=len(types), **_remat(body_fun, remat))
    _locate(builder, loc)
    return carry.rebuild(_weak_outputs(outs, weak))


def _fori_as_while(lower, upper, body_fun, init_val):
    """A fori_loop with a traced bound: a while_loop over (i, upper, val)."""
    def cond(state):
        return state[0] < state[1]

    def body(state):
        i, n, val = state
        return i + 1, n, body_fun(i, val)

    builder = current_builder()
    i0 = _int64(builder, lower)
    n = _int64(builder, upper)
    return while_loop(cond, body, (i0, n, init_val))[2]


def _int64(builder, x):
    if isinstance(x, Tracer):
        if x.shape != () or x.dtype.kind not in "iu":
            raise TraceError(f"gc.fori_loop: a bound is {x.value.type}, not an integer scalar (at {user_line()})")
        out = bind("cast", x, dtype="int64") if x.dtype.name != "int64" else x
        return Tracer(out.value, out.builder, weak=True)
    return Tracer(builder.constant(np.asarray(_static_int(x, "bound", traced=True), np.int64)), builder, weak=True)


_INT64_MAX = 2 ** 63 - 1


def _static_int(x, name, traced=False):
    """``x`` as a Python int; ``traced``: a traced loop's index is an int64, so it must fit one."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        if not (isinstance(x, np.ndarray) and x.shape == () and x.dtype.kind in "iu"):
            raise TraceError(f"gc.fori_loop: {name} bound is a {type(x).__name__}, not an integer (at {user_line()})")
    value = int(x)
    if traced and not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise TraceError(f"gc.fori_loop: {name} bound {value} does not fit the loop index's int64 "
                         f"(at {user_line()})")
    return value


def _weak_outputs(outs, weak):
    return [Tracer(o.value, o.builder, w) for o, w in zip(outs, weak)]


def _locate(builder, loc):
    """The node just made points at the user's call (not at a line inside the body)."""
    builder.graph.nodes[-1].loc = loc


def scan(f, init, xs=None, length=None, reverse=False, *, remat=False):
    """``f(carry, x) -> (carry, y)`` over the leading axis of ``xs``; returns ``(carry, ys)`` with
    the ys stacked along a new leading axis (JAX's ``lax.scan``). ``xs`` is a pytree of arrays of
    one leading length (or None with ``length``); ``reverse=True`` runs from the end. Inside a
    traced function the loop is one node whose body is traced once; reverse mode goes through it
    (``remat=True``, or ``f`` made with ``gc.checkpoint``: recompute the body's values in the
    backward pass instead of saving them per step).
    """
    xs_leaves = _Leaves(xs, "xs", "gc.scan") if xs is not None else None
    lengths = {t.shape[0] for t in xs_leaves.types if t.shape} if xs_leaves else set()
    if xs_leaves and any(not t.shape for t in xs_leaves.types):
        raise TraceError(f"gc.scan: every leaf of xs needs a leading axis to scan over (at {user_line()})")
    if length is not None:
        lengths.add(_static_int(length, "length"))
    if len(lengths) != 1:
        raise TraceError(f"gc.scan: xs leaves and length disagree on the length: {sorted(lengths) or 'none given'} "
                         f"(at {user_line()})")
    (n,) = lengths
    builder = current_builder()
    if builder is None:
        return _eager_scan(f, init, xs, n, reverse)
    what = "the body of gc.scan"
    carry = _Leaves(init, "init", "gc.scan")
    x_types = [TensorType(t.shape[1:], t.dtype) for t in xs_leaves.types] if xs_leaves else []
    x_weak = [False] * len(x_types)
    loc = user_loc()

    def make_args(tracers):
        c = carry.rebuild(tracers[:len(carry.types)])
        x = xs_leaves.rebuild(tracers[len(carry.types):]) if xs_leaves else None
        return c, x

    child, types, weak, leaves, (y_all, y_tree) = _carry_body(
        f, "body", what, carry, ([], x_types), ([], x_weak), make_args, pair=True, runs=n != 0)
    y_leaves = [y for y in y_all if y is not None]  # (a None in y stays None: nothing stacked)
    y_types = [_leaf_type(y) for y in y_leaves]
    y_paths = [p for p, y in zip(pytree.leaf_paths(pytree.unflatten(y_tree, y_all), "y"), y_all) if y is not None]
    _finish(child, leaves + y_leaves, types + y_types, what, carry.paths + y_paths)
    (region,), outer = _close([child], len(types) + len(x_types))
    operands = [_as_value(builder, leaf, t) for leaf, t in zip(carry.leaves, types)]
    operands += [_as_value(builder, leaf, t) for leaf, t in zip(xs_leaves.leaves, xs_leaves.types)] if xs_leaves else []
    operands += _outer_tracers(builder, outer)
    outs = _node(SCAN, operands, [region], length=n, carries=len(types), xs=len(x_types),
                 reverse=bool(reverse), start=None, **_remat(f, remat))
    _locate(builder, loc)
    c_out = carry.rebuild(_weak_outputs(outs[:len(types)], weak))
    stacked = iter(outs[len(types):])
    return c_out, pytree.unflatten(y_tree, [None if y is None else next(stacked) for y in y_all])


def _eager_scan(f, init, xs, n, reverse):
    leaves, tree = pytree.flatten(xs) if xs is not None else ([], None)
    carry, ys = init, [None] * n
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        x = pytree.unflatten(tree, [np.asarray(leaf)[t] for leaf in leaves]) if xs is not None else None
        carry, ys[t] = f(carry, x)
    if n == 0:
        raise TraceError("gc.scan over zero steps outside a traced function cannot know the shapes of "
                         "its ys (it never calls f); call it inside a function compiled with gc.trace")
    y_leaves = [pytree.flatten(y)[0] for y in ys]
    y_tree = pytree.flatten(ys[0])[1]
    stacked = [None if y_leaves[0][k] is None else np.stack([np.asarray(y[k]) for y in y_leaves],
                                                            dtype=_stacked_dtype([y[k] for y in y_leaves]))
               for k in range(len(y_leaves[0]))]
    return carry, pytree.unflatten(y_tree, stacked)


def _stacked_dtype(ys):
    """The dtype of the stacked ``ys``, Python numbers weak (NumPy 2): a y that is the carry as it
    went in, ``0``, and then ``np.int32`` values stack as int32, as the traced scan does."""
    strong = {np.asarray(y).dtype for y in ys if not is_weak(y)}
    weak = {type(y): y for y in ys if is_weak(y)}
    return np.result_type(*strong, *weak.values())


def while_loop(cond_fun, body_fun, init_val):
    """``while cond_fun(val): val = body_fun(val)``; returns the final ``val``. ``cond_fun``
    returns a boolean scalar. Inside a traced function both are traced once into one node.
    Not differentiable in reverse mode (as in JAX): use fori_loop or scan for that."""
    builder = current_builder()
    if builder is None:
        val = init_val
        while _eager_pred(cond_fun(val), "gc.while_loop cond_fun"):
            val = body_fun(val)
        return val
    carry = _Leaves(init_val, "init_val", "gc.while_loop")
    what = "the body of gc.while_loop"
    loc = user_loc()

    def make_args(tracers):
        return (carry.rebuild(tracers),)

    body, types, weak, leaves, _ = _carry_body(body_fun, "body", what, carry, ([], []), ([], []), make_args)
    _finish(body, leaves, types, what, carry.paths)
    cond, c_leaves, c_tree = _trace_region(cond_fun, "cond", "the cond_fun of gc.while_loop", types, weak, make_args)
    _finish(cond, [_predicate(c_leaves, c_tree, "gc.while_loop's cond_fun")], [BOOL],
            "the cond_fun of gc.while_loop", ["its result"])
    regions, outer = _close([cond, body], len(types))
    operands = [_as_value(builder, leaf, t) for leaf, t in zip(carry.leaves, types)] + _outer_tracers(builder, outer)
    outs = _node(WHILE, operands, regions, carries=len(types))
    _locate(builder, loc)
    return carry.rebuild(_weak_outputs(outs, weak))


def _predicate(leaves, tree, what):
    if tree != pytree.LEAF:
        raise TraceError(f"{what} must return a boolean scalar, got {_describe(tree)} (at {user_line()})")
    (p,) = leaves
    t = type_of(p) if not isinstance(p, Tracer) else p.value.type
    if t != BOOL:
        raise TraceError(f"{what} must return a boolean scalar, got {t} (at {user_line()}); compare it "
                         f"(x > 0) or reduce it (np.all(x)) first")
    return p


def _eager_pred(p, what):
    a = np.asarray(p)
    if a.shape != () or a.dtype != np.bool_:
        raise TraceError(f"{what} must return a boolean scalar, got {a.dtype.name}{list(a.shape)}")
    return bool(a)


def cond(pred, true_fun, false_fun, *operands):
    """``true_fun(*operands) if pred else false_fun(*operands)``. ``pred`` is a boolean scalar.
    Inside a traced function both branches are traced once into one node (they must return
    the same structure, shapes and dtypes) and only the chosen one runs."""
    if not isinstance(pred, Tracer):
        return (true_fun if _eager_pred(pred, "gc.cond's predicate") else false_fun)(*operands)
    if pred.value.type != BOOL:
        raise TraceError(f"gc.cond's predicate must be a boolean scalar, got {pred.value.type} (at {user_line()}); "
                         f"compare it (x > 0) or reduce it (np.all(x)) first")
    builder = current_builder() or pred.builder
    args = _Leaves(operands, "operands", "gc.cond")
    loc = user_loc()

    def make_args(tracers):
        return args.rebuild(tracers)

    traced = [_trace_region(fn, name, f"the {name} of gc.cond", args.types, args.weak, make_args)
              for fn, name in ((true_fun, "true_branch"), (false_fun, "false_branch"))]
    (t_child, t_leaves, t_tree), (f_child, f_leaves, f_tree) = traced
    out = []
    if t_tree != f_tree and not _in_order(pytree.unflatten(f_tree, f_leaves), t_tree, out):
        raise TraceError(f"gc.cond: the branches return different structures, {_describe(t_tree)} and "
                         f"{_describe(f_tree)} (at {user_line()})")
    f_leaves = out if t_tree != f_tree else f_leaves  # (a dict's keys in the true branch's order)
    if any(a is None or b is None for a, b in zip(t_leaves, f_leaves)):
        raise TraceError(f"gc.cond: a branch returns None where the other returns a value, or both do "
                         f"(at {user_line()}); return arrays or numbers")
    types, weak = [], []
    for a, b in zip(t_leaves, f_leaves):
        ta, tb = _leaf_type(a), _leaf_type(b)
        wa, wb = is_weak(a), is_weak(b)
        if wa and wb and ta != tb and ta.shape == tb.shape:  # two Python numbers (1 and 2.5): a float
            types.append(TensorType(ta.shape, np.promote_types(ta.dtype, tb.dtype).name))
        else:  # (a weakly typed one takes the other's type)
            types.append(ta if (ta == tb or wb or not wa) else tb)
        weak.append(wa and wb)
    paths = pytree.leaf_paths(pytree.unflatten(t_tree, t_leaves), "output")
    _finish(t_child, t_leaves, types, "the true branch of gc.cond", paths)
    _finish(f_child, f_leaves, types, "the false branch of gc.cond", paths)
    regions, outer = _close([t_child, f_child], len(args.types))
    p = Tracer(builder.value_of(pred), builder)
    ops = [_as_value(builder, leaf, t) for leaf, t in zip(args.leaves, args.types)] + _outer_tracers(builder, outer)
    outs = _node(COND, [p] + ops, regions)
    _locate(builder, loc)
    return pytree.unflatten(t_tree, _weak_outputs(outs, weak))
