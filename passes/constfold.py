"""Constant folding: a node whose operands are all constants becomes a constant.

The value comes from the op's NumPy reference (the interpreter's semantics), so
folding can never disagree with the interpreter. Folding never makes the graph
bigger: a result with more elements than its largest operand (a broadcast of a
scalar to a big shape, say) is left to the loops, where it costs nothing; and
a uniform result is kept as a scalar constant broadcast to its shape.
"""
from __future__ import annotations

import numpy as np

from graphc.ops import registry
from graphc.passes.rewrite import Rewriter, is_uniform

# results up to this many elements are always folded
SMALL = 4096
NEVER = {"constant", "iota"}


def _fold(rw: Rewriter, node):
    if (node.op in NEVER or not node.inputs or len(node.outputs) != 1 or registry.get(node.op).effect
            or node.regions):  # (a region node's reference needs its regions run: left to the interpreter)
        return None
    if registry.get(node.op).shape_only and not any(v.type.symbolic for v in node.inputs):
        stand_ins = [np.broadcast_to(np.zeros((), v.type.dtype), v.type.shape) for v in node.inputs]
        return rw.constant(np.asarray(registry.get(node.op).reference(*stand_ins, **node.attrs)))
    if any(v.producer is None or v.producer.op != "constant" for v in node.inputs):
        return None
    if node.op == "broadcast_to" and not node.inputs[0].type.shape:
        return None  # already the form a uniform result folds to (refolding it never settles)
    out = node.outputs[0]
    if out.type.symbolic:
        return None  # (broadcast_to(c, shape=(B, 64)): an array constant has one size)
    biggest = max(v.type.size for v in node.inputs)
    if out.type.size > max(SMALL, biggest):
        return None
    args = [v.producer.attrs["value"].array for v in node.inputs]
    with np.errstate(all="ignore"):
        result = registry.get(node.op).reference(*args, **node.attrs)
    result = np.asarray(result).astype(out.type.dtype, copy=False)
    if result.shape != out.type.shape:
        return None  # a reference that disagrees with the type rule: leave it alone
    if result.ndim and result.size > 1 and is_uniform(result):
        scalar = rw.constant(np.array(result.reshape(-1)[0], dtype=out.type.dtype))
        return rw.make("broadcast_to", [scalar], shape=out.type.shape)
    return rw.constant(result)


def run(graph):
    return Rewriter(graph).run(_fold)
