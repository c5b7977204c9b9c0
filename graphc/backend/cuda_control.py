"""Loops and branches on the CUDA device: the host runs the loop, the body's kernels run on the GPU.

A ``fori_loop``/``scan``/``while_loop``/``cond`` node's regions become plans of their own
(``CUDAGraph`` of the region); its step calls them once per iteration or branch, the values
staying on the device between iterations. Only what decides control flow comes to the
host: a while loop's condition and a cond's predicate (one small copy each time; the
CPU backend has none of these). 0-d carries live on the device (1-element arrays) so that
a body's scalar arithmetic on them stays in kernels; a fori_loop's or scan's step index is
a host integer, passed to kernels as an argument.
"""
from __future__ import annotations

import numpy as np

from graphc.backend import cuda_kernels as ck
from graphc.ops.control import COND, FORI, SCAN, WHILE, Loop


def plan(graph_plan, node):
    """Add ``node``'s step to ``graph_plan`` (a CUDAGraph being planned)."""
    make = {FORI: _loop, SCAN: _loop, WHILE: _while, COND: _cond}[node.op]
    for v in node.outputs:
        graph_plan.place[v] = ck.on_device(v)
    graph_plan.steps.append((node, make(graph_plan, node)))


def _sub(parent, region, places):
    sub = type(parent)(region, dev=parent.dev, places=places, prefix=f"{parent.prefix}r{len(parent.subplans)}_")
    parent.subplans.append(sub)
    return sub


def _loop(parent, node):
    loop = Loop.of(node)
    (region,) = node.regions
    operands = node.inputs
    carries = operands[:loop.carries]
    xs = operands[loop.carries:loop.carries + loop.xs]
    consts = operands[loop.carries + loop.xs:]
    places = ([ck.HOST] * loop.indexed + [ck.on_device(v) for v in carries]
              + [ck.on_device(r) for r in region.inputs[loop.indexed + loop.carries:][:loop.xs]]
              + [parent.place[v] for v in consts])
    body = _sub(parent, region, places)
    n_ys = len(region.outputs) - loop.carries
    dev = parent.dev
    ys_types = [v.type for v in node.outputs[loop.carries:]]
    if node.op == FORI:
        order = lambda: range(loop.start, loop.start + loop.length)  # noqa: E731
    else:
        order = lambda: range(loop.length - 1, -1, -1) if loop.reverse else range(loop.length)  # noqa: E731

    def step(env):
        carry = [to_place(parent, env[v], parent.place[v], ck.on_device(v)) for v in carries]
        xs_now = [env[v] for v in xs]
        const_now = [env[v] for v in consts]
        ys = [dev.empty((loop.length,) + t.shape[1:], t.dtype) for t in ys_types]
        for t in order():
            index = [np.int64(t if node.op == FORI else loop.index(t))] if loop.indexed else []
            sliced = [x[t] if x.ndim > 1 else x[t:t + 1] for x in xs_now]
            out = body.run([*index, *carry, *sliced, *const_now])
            carry = [to_place(body, value, body.place[r], ck.on_device(r))
                     for value, r in zip(out[:loop.carries], region.outputs)]
            k = t - loop.start if node.op == FORI else t
            for y, value in zip(ys, out[loop.carries:]):
                if not dev.is_device_array(value):  # (a host scalar or constant)
                    value = dev.to_device(np.asarray(value, dtype=y.dtype))
                y[k:k + 1] = value.reshape((1,) + y.shape[1:])
        results = fresh(carry, [env[v] for v in carries]) + ys[:n_ys]
        env.update(zip(node.outputs, results))
    return step


def _while(parent, node):
    carries = node.attrs["carries"]
    cond_region, body_region = node.regions
    operands = node.inputs
    places = [ck.on_device(v) for v in operands[:carries]] + [parent.place[v] for v in operands[carries:]]
    cond = _sub(parent, cond_region, places)
    body = _sub(parent, body_region, places)

    def step(env):
        carry = [to_place(parent, env[v], parent.place[v], ck.on_device(v)) for v in operands[:carries]]
        consts = [env[v] for v in operands[carries:]]
        while truth(cond, cond.run([*carry, *consts])[0], cond_region.outputs[0]):
            out = body.run([*carry, *consts])
            carry = [to_place(body, value, body.place[r], ck.on_device(r))
                     for value, r in zip(out, body_region.outputs)]
        env.update(zip(node.outputs, fresh(carry, [env[v] for v in operands[:carries]])))
    return step


def _cond(parent, node):
    pred, *operands = node.inputs
    places = [parent.place[v] for v in operands]
    branches = [(_sub(parent, region, places), region) for region in node.regions]

    def step(env):
        plan_, region = branches[0] if truth(parent, env[pred], pred) else branches[1]
        out = plan_.run([env[v] for v in operands])
        values = [to_place(plan_, value, plan_.place[r], ck.on_device(r)) for value, r in zip(out, region.outputs)]
        env.update(zip(node.outputs, fresh(values, [env[v] for v in operands])))
    return step


def truth(plan_, value, v) -> bool:
    """A 0-d boolean as a host bool (a copy from the device where it lives there)."""
    place = plan_.place[v]
    if place == ck.DEV0:
        return bool(plan_.dev.to_host(value)[0])
    return bool(value)


def to_place(plan_, value, have: str, want: str):
    """A 0-d value moved between the host (a NumPy scalar) and the device (a 1-element array)."""
    if have == want:
        return value
    if want == ck.DEV0:
        return plan_.dev.to_device(np.asarray(value).reshape(1))
    return plan_.dev.to_host(value)[0]


def fresh(values, operands) -> list:
    """Copies of results that are operands (a loop that ran zero times, a branch returning its
    argument): results leave the node as new arrays, as the NumPy reference's."""
    given = {id(a) for a in operands}
    return [v.copy() if id(v) in given else v for v in values]
