"""Reverse-mode differentiation as a graph transform.

``gradient(y, *xs)`` walks the graph being traced backwards from ``y`` and, for
every node on a path from some x to y, calls its op's vjp rule. The rules are
written with ordinary graphc functions, so the backward pass is made of plain
nodes in the same graph: it compiles and fuses with the forward pass, and it can
be differentiated again (higher-order gradients). A node that owns regions
(nested graphs) and has no rule of its own is differentiated generically: its
regions' nodes are replayed inline and differentiated like any other nodes.
"""
from __future__ import annotations

import inspect

import numpy as np

from graphc import pytree
from graphc.errors import TraceError
from graphc.ops import registry
from graphc.ops.creation import zeros_like
from graphc.ops.shape import broadcast_to, sum_to
from graphc.context import tracing
from graphc.trace import RegionBuilder, Tracer, bind, current_builder, is_weak, user_line


def _is_float(t) -> bool:
    return t.dtype.startswith("float")


def gradient(y, *xs):
    """Gradients of the scalar ``y`` with respect to each of ``xs`` (traced values).

    Returns one array per x (just the array for a single x); an x that ``y`` does
    not depend on gets zeros. Only works inside a traced function.
    """
    if not isinstance(y, Tracer):
        raise TraceError(f"gc.gradient needs a traced value to differentiate, got {type(y).__name__} "
                         f"(at {user_line()}); call it inside a function compiled with gc.trace")
    if y.shape != ():
        raise TraceError(f"gc.gradient needs a scalar to differentiate, but y has shape {y.shape} "
                         f"(at {user_line()}); reduce it first, e.g. with np.sum(y)")
    if not xs:
        raise TraceError("gc.gradient(y) needs at least one value to differentiate with respect to")
    for k, x in enumerate(xs):
        if not isinstance(x, Tracer) or x.builder is not y.builder:
            raise TraceError(f"gc.gradient: argument {k + 1} is not a traced value of this trace "
                             f"(at {user_line()}); differentiate with respect to inputs of the traced "
                             f"function or values computed from them")
        if not _is_float(x.value.type):
            raise TraceError(f"gc.gradient: cannot differentiate with respect to argument {k + 1} of "
                             f"dtype {x.dtype} (at {user_line()}); only floating-point values have gradients")
    if not _is_float(y.value.type):
        raise TraceError(f"gc.gradient: y has dtype {y.dtype}, which is not differentiable (at {user_line()})")
    grads = backward(y, [x.value for x in xs])
    out = [g if g is not None else zeros_like(x) for g, x in zip(grads, xs)]
    return out[0] if len(out) == 1 else tuple(out)


def backward(y: Tracer, wrt, seed=None) -> list:
    """Cotangents of values ``wrt`` (None where y does not depend on them)."""
    builder = y.builder
    reaches = _reaching(builder.graph.nodes, wrt)
    if y.value not in reaches:
        return [None] * len(wrt)
    if seed is None:  # a traced constant, so broadcasting it makes nodes, not big constant arrays
        seed = Tracer(builder.constant(np.ones((), y.dtype)), builder)
    return _walk(builder, {y.value: seed}, wrt, reaches, 0)


def _reaching(nodes, wrt) -> set:
    """The values on a path from some ``wrt`` value (only those nodes need a rule)."""
    reaches = set(wrt)
    for node in nodes:
        if any(v in reaches for v in node.inputs) and (registry.get(node.op).differentiable or node.regions):
            reaches.update(node.outputs)
    return reaches


def _walk(builder, seeds: dict, wrt, reaches, first: int) -> list:
    """Cotangents of ``wrt`` given the cotangents ``seeds`` (value -> traced cotangent),
    walking back over ``graph.nodes[first:]`` only (a replayed region stops at its operands)."""
    graph = builder.graph
    nodes = graph.nodes[first:]  # (a copy: the backward nodes are appended while we walk)
    cts = dict(seeds)

    def tracer(v):
        return Tracer(v, builder)

    wanted = set(wrt)
    found = {}
    produced = [nodes.index(v.producer) for v in seeds if v.producer is not None and v.producer in nodes]
    start = max(produced, default=-1)
    for node in reversed(nodes[:start + 1]):
        if node.regions and registry.get(node.op).vjp is not None:  # a loop or branch: its own rule
            gs = [cts.pop(v, None) for v in node.outputs]
            found.update((v, g) for v, g in zip(node.outputs, gs) if v in wanted and g is not None)
            if any(g is not None for g in gs) and any(v in reaches for v in node.inputs):
                first_new = len(graph.nodes)
                needed = [v in reaches and _is_float(v.type) for v in node.inputs]
                in_cts = registry.get(node.op).vjp(gs, *[tracer(v) for v in node.inputs], node=node,
                                                   vjp_region=vjp_region, needed=needed)
                for new in graph.nodes[first_new:]:
                    new.loc = node.loc
                for v, ct in zip(node.inputs, in_cts):
                    if ct is not None and v in reaches and _is_float(v.type):
                        cts[v] = ct if v not in cts else cts[v] + ct
            continue
        if node.regions and registry.get(node.op).vjp is None:
            gs = [cts.pop(v, None) for v in node.outputs]
            found.update((v, g) for v, g in zip(node.outputs, gs) if v in wanted and g is not None)
            if any(g is not None for g in gs) and any(v in reaches for v in node.inputs):
                first_new = len(graph.nodes)
                in_cts = _region_vjp(node, gs, reaches)
                for new in graph.nodes[first_new:]:
                    new.loc = node.loc
                for v, ct in zip(node.inputs, in_cts):
                    if ct is not None:
                        cts[v] = ct if v not in cts else cts[v] + ct
            continue
        out = node.outputs[0]
        g = cts.pop(out, None)
        if out in wanted and g is not None:
            found[out] = g  # an intermediate value asked for: its own cotangent
        if g is None or not any(v in reaches for v in node.inputs):
            continue
        op = registry.get(node.op)
        first_new = len(graph.nodes)
        ins = [tracer(v) for v in node.inputs]
        needed = [v in reaches and _is_float(v.type) for v in node.inputs]
        if op.vjp is None:
            raise TraceError(f"graphc cannot differentiate op {node.op!r} (at {node.loc})")
        if callable(op.vjp):  # variadic ops: one rule for all operands
            in_cts = op.vjp(g, *ins, out=tracer(out), **node.attrs)
        else:
            in_cts = [rule(g, *ins, out=tracer(out), **node.attrs) if rule is not None and need else None
                      for rule, need in zip(op.vjp, needed)]
        for v, ct, need in zip(node.inputs, in_cts, needed):
            if ct is None or not need:
                continue
            ct = _fit(ct, v.type.shape)
            cts[v] = ct if v not in cts else cts[v] + ct
        for new in graph.nodes[first_new:]:  # backward nodes point at the line of their forward op
            new.loc = node.loc
    found.update((v, cts[v]) for v in wanted if v in cts)
    return [found.get(v) for v in wrt]


def _region_vjp(node, gs, reaches) -> list:
    """Cotangents of ``node``'s operands, for a node that runs its one region on its operands
    (as ``fused`` does): the region is replayed inline and differentiated.

    The replay is walked back only as far as the operands, which count as independent
    values here (the walk that called us carries their cotangents on from there), and an
    operand passed twice gets its cotangent once."""
    if len(node.regions) != 1 or [v.type for v in node.regions[0].inputs] != [v.type for v in node.inputs]:
        raise TraceError(f"graphc cannot differentiate op {node.op!r}: it has no vjp rule and its regions "
                         f"do not simply run on its operands (at {node.loc})")
    builder = current_builder()
    graph = builder.graph
    first = len(graph.nodes)
    outs = _inline(node.regions[0], [Tracer(v, builder) for v in node.inputs])
    wrt = list(dict.fromkeys(v for v in node.inputs if v in reaches and _is_float(v.type)))
    seeds = {}
    for out, g in zip(outs, gs):
        if g is not None and isinstance(out, Tracer) and _is_float(out.value.type):
            seeds[out.value] = g if out.value not in seeds else seeds[out.value] + g
    in_cts = _walk(builder, seeds, wrt, _reaching(graph.nodes[first:], wrt), first) if seeds else []
    total = dict(zip(wrt, in_cts))
    return [total.pop(v, None) for v in node.inputs]  # (pop: a repeated operand's ct counts once)


def _inline(region, operands, effects=True) -> list:
    """The region's nodes recorded again into the current trace, on ``operands`` (a node with
    regions of its own keeps them: they are closed graphs). ``effects=False`` leaves out the
    effects (gc.print) of the region's own nodes: a replay for reverse mode must not print again."""
    env = dict(zip(region.inputs, operands))
    for n in region.nodes:
        if not effects and registry.get(n.op).effect:  # (its result is a token: True)
            builder = current_builder()
            env.update((v, Tracer(builder.constant(np.ones(v.type.shape, v.type.dtype)), builder)) for v in n.outputs)
            continue
        outs = bind(n.op, *[env[v] for v in n.inputs], regions=[r.clone() for r in n.regions], **n.attrs)
        env.update(zip(n.outputs, outs if isinstance(outs, tuple) else (outs,)))
    return [env[v] for v in region.outputs]


def vjp_region(region, seeded, wrt, name):
    """The reverse-mode rule of a region as a region: a closed graph taking the region's inputs,
    then one cotangent per output position in ``seeded``, and returning the cotangent of each
    input position in ``wrt`` (zeros where the outputs do not depend on it). Its nodes replay
    the region (recomputing its intermediates) and then its backward pass: loops and branches
    pass it to their ops' vjp rules, so their backward bodies are plain graphs, differentiable again."""
    builder = RegionBuilder(current_builder(), name, f"the vjp of {region.name}")
    with tracing(builder):
        primals = [Tracer(builder.graph.add_input(v.type), builder) for v in region.inputs]
        cts = [Tracer(builder.graph.add_input(region.outputs[k].type), builder) for k in seeded]
        outs = _inline(region, primals, effects=False)
        seeds = {}
        for k, ct in zip(seeded, cts):
            out = outs[k]
            if not isinstance(out, Tracer):
                continue
            seeds[out.value] = ct if out.value not in seeds else seeds[out.value] + ct
        wrt_values = [primals[k].value for k in wrt]
        unique = list(dict.fromkeys(wrt_values))
        found = _walk(builder, seeds, unique, _reaching(builder.graph.nodes, unique), 0) if seeds else []
        total = dict(zip(unique, found))
        results = []
        for k, v in zip(wrt, wrt_values):
            ct = total.pop(v, None)  # (an input passed twice: its cotangent counts once)
            results.append(ct if ct is not None else zeros_like(primals[k]))
        builder.graph.outputs = [builder.value_of(r if isinstance(r, Tracer) else
                                                  _constant(builder, np.asarray(r, dtype=primals[k].dtype)))
                                 for r, k in zip(results, wrt)]
    builder.finished = True
    if builder.captures:
        raise AssertionError(f"the vjp of {region.name} read values from outside it")
    return builder.graph


def _constant(builder, array: np.ndarray) -> Tracer:
    """``array`` as a value of the trace: a uniform one (a zero cotangent) as a broadcast scalar,
    whose shape attribute a symbolic dimension's probes generalize (a (B, 5) array of zeros at the
    probe sizes would differ in its content). Uniform means the same bytes: -0.0 is not 0.0."""
    array = np.ascontiguousarray(array)
    if array.ndim and array.size:
        raw = array.view(np.uint8).reshape(array.size, array.itemsize)
        if (raw == raw[0]).all():
            return broadcast_to(Tracer(builder.constant(array.reshape(-1)[0].copy()), builder), array.shape)
    return Tracer(builder.constant(array), builder)


def _fit(ct, shape):
    """Bring a cotangent to its operand's shape: sum out broadcast dims (or broadcast a scalar)."""
    ct_shape = np.shape(ct) if not isinstance(ct, Tracer) else ct.shape
    if ct_shape == tuple(shape):
        return ct
    if len(ct_shape) < len(shape) or any(a < b for a, b in zip(ct_shape[::-1], shape[::-1])):
        return broadcast_to(ct, shape)
    return sum_to(ct, shape)


def _argnums(argnums):
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _as_tracer(arg, builder):
    """A number or array argument as a constant node of the trace, so it can be differentiated."""
    def leaf(x):
        if isinstance(x, Tracer) or not isinstance(x, (float, int, np.ndarray, np.floating, np.integer)):
            return x
        if isinstance(x, bool):
            return x
        return Tracer(builder.constant(np.asarray(x)), builder, weak=is_weak(x))
    leaves, tree = pytree.flatten(arg)
    return pytree.unflatten(tree, [leaf(x) for x in leaves])


def _differentiate(fn, argnums, has_aux, name):
    """The traced body of grad/value_and_grad: returns (value, aux, grads)."""
    nums = _argnums(argnums)
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []

    def body(*args, **kwargs):
        for i in nums:
            if i >= len(args):
                raise TypeError(f"{name}: argnums={argnums} asks for positional argument {i}, but only "
                                f"{len(args)} were given")
        builder = current_builder()
        if builder is not None:  # inside a trace, a constant argument is differentiated too
            args = tuple(_as_tracer(a, builder) if i in nums else a for i, a in enumerate(args))
        out = fn(*args, **kwargs)
        value, aux = (out[0], out[1]) if has_aux else (out, None)
        if (not isinstance(value, Tracer) and builder is not None and np.ndim(value) == 0
                and np.asarray(value).dtype.kind == "f"):  # a constant function: zero gradients
            value = Tracer(builder.constant(np.asarray(value)), builder)
        trees, flat = [], []
        for i in nums:
            label = repr(params[i]) if i < len(params) else f"at position {i}"
            leaves, tree = pytree.flatten(args[i])
            for leaf in leaves:
                if not isinstance(leaf, Tracer):
                    raise TraceError(f"{name}: argument {label} is not an array or number that graphc "
                                     f"traces ({type(leaf).__name__}), so it cannot be differentiated")
                if leaf.dtype.kind != "f":
                    raise TraceError(f"{name}: argument {label} has dtype {leaf.dtype}; only "
                                     f"floating-point arguments can be differentiated (pass e.g. "
                                     f"x.astype(np.float64), or leave it out of argnums)")
            if isinstance(value, Tracer) and value.shape != () and value.size == 1:
                value = value.reshape(())  # a (1,) or (1, 1) result, as PyTorch's backward allows
            if not isinstance(value, Tracer) or value.shape != ():
                got = f"shape {value.shape}" if hasattr(value, "shape") else f"a {type(value).__name__}"
                raise TraceError(f"{name}: the function must return a scalar to differentiate, "
                                 f"but it returned {got} (at {user_line()})")
            trees.append((tree, len(leaves)))
            flat += leaves
        # one backward pass for all arguments (not one per argnum: the rules run once)
        gs = backward(value, [leaf.value for leaf in flat])
        gs = [g if g is not None else zeros_like(x) for g, x in zip(gs, flat)]
        grads, k = [], 0
        for tree, n in trees:
            grads.append(pytree.unflatten(tree, gs[k:k + n]))
            k += n
        return value, aux, (grads[0] if isinstance(argnums, int) else tuple(grads))

    return body
