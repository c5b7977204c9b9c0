"""Loop-invariant code motion: nodes of a loop body that read only values the loop does not
change (its consts: values from outside the loop) move out of the loop, before it, and their
results enter the body as further consts. They then run once per loop instead of once per step
(``W.T``, ``lr * decay``, a reduction of a captured array).

A node moves only when that can change nothing but the time: it has no effect (gc.print),
owns no regions, cannot raise at run time (a loop that runs zero times must not raise), and
makes no array larger than its operands (a broadcast of a scalar costs nothing inside the
fused loop, but would become a whole array outside). Constants are not moved (they cost
nothing); a node that reads one gets its own copy of it outside. The body keeps its inputs
and outputs in place and gains inputs at the end, the node gains operands at the end; then
the consts no body reads any more (a cond: the operands) are dropped (``_prune``).

A matrix product in a loop body that reads a const transposed (``g @ W.T``, every backward
step of a recurrent network) reads a transposed copy of it made once before the loop instead
(``_untranspose``): BLAS multiplies by a transposed right operand 1.2-2x slower than by a
row-major one at the sizes of a step (OpenBLAS, 32x128 @ (128x128).T float32: 16 us against
7 us), and the loop pays that every step for a copy made once.
"""
from __future__ import annotations

from graphc.ir import Graph, Node, TensorType
from graphc.ops import registry
from graphc.ops.control import COND, CONTROL, LOOPS, WHILE, Loop



def run(graph: Graph) -> Graph:
    if not any(node.op in CONTROL for node in graph.nodes):
        return graph
    graph = graph.clone()
    nodes = []
    for node in graph.nodes:
        if node.op in LOOPS:
            nodes += _hoist(node)
        if node.op in CONTROL:
            _prune(node)
        nodes.append(node)
    return Graph(graph.inputs, nodes, graph.outputs, graph.name).copy_meta(graph)


def _prune(node):
    """Drop the consts (a cond: the operands) that no region of ``node`` reads any more."""
    first = 0 if node.op == COND else _first_const(node)
    offset = 1 if node.op == COND else len(node.inputs) - (len(node.regions[0].inputs) - first)
    read = [set(v for n in r.nodes for v in n.inputs) | set(r.outputs) for r in node.regions]
    drop = [k for k in range(first, len(node.regions[0].inputs))
            if not any(r.inputs[k] in used for r, used in zip(node.regions, read))]
    if not drop:
        return
    for r in node.regions:
        r.inputs = [v for k, v in enumerate(r.inputs) if k not in drop]
        r.input_names = [None] * len(r.inputs)
        r.input_roles = ["arg"] * len(r.inputs)
    gone = {offset + k - first for k in drop}
    node.inputs = [v for k, v in enumerate(node.inputs) if k not in gone]


def _first_const(node) -> int:
    """The position of the body's first const input."""
    if node.op == WHILE:
        return node.attrs["carries"]
    loop = Loop.of(node)
    return (1 if loop.indexed else 0) + loop.carries + loop.xs


def _hoist(node) -> list[Node]:
    """Move the invariant nodes of ``node``'s body out; returns them (to go before ``node``)."""
    body = node.regions[-1]  # (a while_loop's cond stays: it is short and runs its own values)
    first = _first_const(node)
    outer = {v: u for v, u in zip(body.inputs[first:], node.inputs[len(node.inputs) - (len(body.inputs) - first):])}
    constants = {n.outputs[0]: n for n in body.nodes if n.op == "constant"}
    moved, kept = [], []
    for n in body.nodes:
        if _movable(n, outer, constants):
            for v in n.inputs:
                if v in constants and v not in outer:
                    copy = Node("constant", [], constants[v].attrs, [v.type], constants[v].loc)
                    moved.append(copy)
                    outer[v] = copy.outputs[0]
            copy = Node(n.op, [outer[v] for v in n.inputs], n.attrs, [v.type for v in n.outputs], n.loc)
            moved.append(copy)
            outer.update(zip(n.outputs, copy.outputs))
        else:
            kept.append(n)
    if not any(n.op != "constant" for n in moved):
        return _untranspose(node, body, outer)
    # the moved values the body still reads become its new last inputs
    read = {v for n in kept for v in n.inputs} | set(body.outputs)
    hoisted = [v for n in body.nodes if n not in kept and n.op != "constant" for v in n.outputs if v in read]
    for region in node.regions:
        for v in hoisted:
            new = region.add_input(v.type)
            if region is body:
                _replace(region, v, new)
                outer[new] = outer[v]
    body.nodes = kept
    node.inputs = node.inputs + [outer[v] for v in hoisted]
    return moved + _untranspose(node, body, outer)


def _untranspose(node, body, outer) -> list[Node]:
    """Products in ``body`` whose right operand is a const read transposed (``transpose_b``) read
    a transposed copy made before the loop; returns the transposes (to go before ``node``).
    (A transposed left operand costs BLAS nothing measurable, so ``transpose_a`` stays.)"""
    length = None if node.op == WHILE else Loop.of(node).length
    made, copies = {}, []
    for n in body.nodes:
        b = n.inputs[1] if n.op == "matmul" and n.attrs.get("transpose_b") else None
        if b is None or b not in outer or b.type.ndim < 2 or not _repays(n, length):
            continue
        if b not in made:
            nd = b.type.ndim
            perm = tuple(range(nd - 2)) + (nd - 1, nd - 2)
            t = TensorType(tuple(b.type.shape[p] for p in perm), b.type.dtype)
            copies.append(Node("transpose", [outer[b]], {"perm": perm}, [t], n.loc))
            inside = [region.add_input(t) for region in node.regions]  # (a while's cond: unread)
            made[b] = (copies[-1].outputs[0], inside[node.regions.index(body)])
        n.inputs = [n.inputs[0], made[b][1]]
        n.attrs = {k: v for k, v in n.attrs.items() if k != "transpose_b"}
    node.inputs = node.inputs + [m[0] for m in made.values()]
    return copies


def _repays(product, length) -> bool:
    """Whether the transposed copy (K x N elements, made once) costs less than the slower
    products save: BLAS's penalty per step is ~1.2-2x for a few rows but ~5% from 256 rows (OpenBLAS,
    float32 and float64), and it grows with the rows while the copy does not: a loop of at least
    64 rows in all (two steps of 32 rows; 64 steps of a vector) pays. Unknown counts pay."""
    rows = 1
    for d in product.outputs[0].type.shape[:-1]:
        if isinstance(d, str):
            return True
        rows *= d
    return length is None or isinstance(length, str) or length * rows >= 64


def _replace(graph: Graph, old, new):
    for n in graph.nodes:
        n.inputs = [new if v is old else v for v in n.inputs]
    graph.outputs = [new if v is old else v for v in graph.outputs]


def _movable(n, outer, constants) -> bool:
    if n.op == "constant" or n.regions or not n.inputs:
        return False
    if registry.has_effect(n) or registry.can_raise(n):
        return False
    if not all(v in outer or v in constants for v in n.inputs) or not any(v in outer for v in n.inputs):
        return False
    biggest = max(_size(v.type) for v in n.inputs)
    return all(_size(v.type) <= biggest for v in n.outputs)


def _size(t) -> float:
    return float("inf") if t.symbolic else t.size
