"""CUDA kernel source for one loop nest: an elementwise group with its trailing reductions.

The group is a fused body (graphc/ops/fused.py), or one elementwise or reduction node
wrapped as one. What it computes comes from the ops' scalar rules (the same text the CPU
backend pastes into its loops, with ``np`` bound to graphc/backend/cuda_math.py); how it
runs on a GPU is decided here:

* no reduction: a grid-stride loop over the flat output domain; each thread unravels its
  index and reads every operand in place, a broadcast axis at index 0 (no copies);
* reductions: each block folds one output element (or one of ``split`` parts of it) with a
  per-thread accumulator, then a tree in shared memory; with ``split > 1`` a second, small
  kernel combines the parts and finishes (a mean's division). No warp intrinsics, so the
  simulator runs the same code.

Operands are placed as the executable keeps them: ``"array"`` (a device array), ``"host"``
(a 0-d value kept on the host, passed as a scalar argument) or ``"dev0"`` (a 0-d value on the
device, kept as a 1-element array).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from graphc.backend.codegen import ScalarContext
from graphc.ir import Graph, Value
from graphc.ops import registry
from graphc.ops.elementwise import pow_expr
from graphc.ops.scalar import CTOR, literal

ARRAY, HOST, DEV0 = "array", "host", "dev0"


def on_device(v: Value) -> str:
    """The place of a value kept on the device: an array, or a 0-d one as a 1-element array."""
    return ARRAY if v.type.shape else DEV0


# scalar-rule functions (``np.sign(a)``) that graphc/backend/cuda_math.py has once per float type
# (``sign_f32``, ``sign_f64``: typed constants): kernels of float nodes call those
TYPED_NAMES = ("sign", "exp2", "rint", "floor", "ceil", "logaddexp", "logaddexp2")
_TYPED_CALL = re.compile(r"\bnp\.(" + "|".join(TYPED_NAMES) + r")\(")


@dataclass
class KernelSpec:
    """One generated kernel: its name and source, and how the executable launches it."""

    name: str
    lines: list
    work: int  # grid-stride items: domain elements (map) or blocks of work (reduce)
    per_block: int  # 1: a thread per item (elementwise); >1: a block of that many threads per item
    outputs: list = field(default_factory=list)  # body outputs this kernel writes, in param order
    partials: list = field(default_factory=list)  # (shape, dtype) of the temporaries it writes
    reads_partials: bool = False  # a finishing kernel: its inputs are the previous kernel's partials


def _unravel(lines, indent, flat: str, names, extents, prefix):
    """Lines splitting flat index ``flat`` into one index per extent (last varies fastest)."""
    pad = " " * indent
    rest = f"{prefix}_rest"
    live = [(n, e) for n, e in zip(names, extents) if e != 1]
    if not live:
        return
    if len(live) == 1:
        lines.append(f"{pad}{live[0][0]} = {flat}")
        return
    lines.append(f"{pad}{rest} = {flat}")
    for k, (name, extent) in enumerate(reversed(live)):
        if k == len(live) - 1:
            lines.append(f"{pad}{name} = {rest}")
        else:
            lines.append(f"{pad}{name} = {rest} % {extent}")
            lines.append(f"{pad}{rest} = {rest} // {extent}")


class _Body:
    """Writes the scalar code of a body's nodes for one domain element."""

    def __init__(self, body: Graph, params: dict, places: dict, imports: set):
        self.body = body
        self.params = params  # body input -> parameter name
        self.places = places  # body input -> ARRAY / HOST / DEV0
        self.imports = imports
        self.count = 0

    def load(self, v: Value, idx, domain) -> str:
        name = self.params[v]
        shape = v.type.shape
        if not shape:
            return f"{name}[0]" if self.places[v] == DEV0 else name
        offset = len(domain) - len(shape)
        sub = ["0" if n == 1 else idx[offset + a] for a, n in enumerate(shape)]
        return f"{name}[{', '.join(sub)}]"

    def emit(self, lines, indent, idx, domain, stop_at_reductions=True) -> dict:
        """Lines computing every elementwise node; returns value -> local name (operands too)."""
        pad = " " * indent
        local = {}
        for v in self.body.inputs:
            if any(v in n.inputs for n in self.body.nodes):
                local[v] = self._tmp("x")
                lines.append(f"{pad}{local[v]} = {self.load(v, idx, domain)}")
        for node in self.body.nodes:
            op = registry.get(node.op)
            if op.kind != registry.ELEMENTWISE:
                continue
            ctx = ScalarContext(node, idx, domain, self.imports)
            args = [local[v] for v in node.inputs]
            expr = scalar_expr(op, node, ctx, args)
            dtype = node.outputs[0].type.dtype
            if dtype in ("float32", "float64"):
                expr = _TYPED_CALL.sub(rf"np.\1_{dtype[0]}{dtype[-2:]}(", expr)
            name = self._tmp("t")
            lines.append(f"{pad}{name} = {CTOR[node.outputs[0].type.dtype]}({expr})")
            local[node.outputs[0]] = name
        return local

    def _tmp(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"


def scalar_expr(op, node, ctx, args) -> str:
    """The op's scalar rule, with float powers through CUDA's pow (``a ** b`` of float32 would
    compute in float64)."""
    if op.math == "pow" and node.outputs[0].type.dtype.startswith("float"):
        return pow_expr(ctx, *args, f"np.power({args[0]}, {args[1]})")
    return op.scalar(ctx, *args)


def _combine(combine: str, a: str, b: str) -> str:
    if combine == "add":
        return f"{a} + {b}"
    if combine == "mul":
        return f"{a} * {b}"
    if combine == "max":  # NaN wins and stays
        return f"{a} if ({a} > {b} or {a} != {a}) else {b}"
    if combine == "min":
        return f"{a} if ({a} < {b} or {a} != {a}) else {b}"
    raise ValueError(f"no combine rule {combine!r}")


def _beats(combine: str, v, i, w, j) -> str:
    """Does (value v, index i) win over (w, j) in an argmax/argmin (NaN first, then the first index)?"""
    cmp = ">" if combine == "argmax" else "<"
    # (an index below 0 is a thread that saw no element: it never wins, every candidate beats it)
    return (f"({i} >= 0 and ({j} < 0 or ({v} != {v} and ({w} == {w} or {i} < {j})) or "
            f"({w} == {w} and ({v} {cmp} {w} or ({v} == {w} and {i} < {j})))))")


def reduction_axes(body: Graph) -> tuple:
    for node in body.nodes:
        if registry.get(node.op).reduction is not None:
            return tuple(node.attrs["axes"])
    return ()


def domain_of(body: Graph) -> tuple:
    for node in body.nodes:
        if registry.get(node.op).reduction is not None:
            return node.inputs[0].type.shape
    return body.outputs[0].type.shape


def generate(name: str, body: Graph, places: dict, target, imports: set) -> list[KernelSpec]:
    """The kernels computing ``body`` on ``target`` (a device: threads per block, multiprocessor
    count): one, or two when a reduction is split into parts."""
    params = {v: f"a{k}" for k, v in enumerate(body.inputs)}
    outs = {v: f"out{k}" for k, v in enumerate(body.outputs)}
    axes = reduction_axes(body)
    domain = domain_of(body)
    if not any(registry.get(n.op).reduction is not None for n in body.nodes):
        return [_map_kernel(name, body, params, outs, places, domain, imports)]
    n_red = _product(domain[a] for a in axes)
    n_out = _product(domain) // max(n_red, 1)
    if domain and len(domain) - 1 not in axes and n_out >= 32:
        split = _column_split(n_out, n_red, target)
        return _column_kernels(name, body, params, outs, places, domain, axes, split, target.threads, imports)
    threads = _row_threads(body, target.threads)
    split = _row_split(n_out, n_red, target)
    return _reduce_kernels(name, body, params, outs, places, domain, axes, threads, split, imports)


SHARED_BYTES = 48 * 1024  # the shared memory a kernel may declare statically


def _row_threads(body: Graph, threads: int) -> int:
    """Threads per block of a row reduction: the device's, halved while the shared arrays of
    all the group's reductions (one element per thread each) would not fit."""
    per_thread = sum(np.dtype(acc).itemsize + (8 if r.combine.startswith("arg") else 0)
                     for _, r, acc, _ in _accumulators([n for n in body.nodes
                                                         if registry.get(n.op).reduction is not None]))
    while threads > 1 and threads * per_thread > SHARED_BYTES:
        threads //= 2
    return threads


def _store(out: Value, name: str, idx) -> str:
    if not out.type.shape:
        return f"{name}[0]"
    return f"{name}[{', '.join(idx)}]"


def _map_kernel(name, body, params, outs, places, domain, imports) -> KernelSpec:
    idx = [f"i{a}" if n != 1 else "0" for a, n in enumerate(domain)]
    size = 1
    for n in domain:
        size *= n
    lines = [f"def {name}({', '.join(list(outs.values()) + list(params.values()))}):",
             "    step = cuda.gridsize(1)",
             f"    for f in range(cuda.grid(1), {size}, step):"]
    _unravel(lines, 8, "f", idx, domain, "f")
    local = _Body(body, params, places, imports).emit(lines, 8, idx, domain)
    for v, out in outs.items():
        lines.append(f"        {_store(v, out, idx)} = {local[v]}")
    return KernelSpec(name, lines, size, 1, list(body.outputs))


def _product(values) -> int:
    out = 1
    for n in values:
        out *= n
    return out


def _row_split(n_out, n_red, target) -> int:
    """Blocks per output element of a row reduction: more than one where there are few outputs
    and long rows (a full sum), so that every multiprocessor works."""
    if target.simulator:
        return 2 if n_red >= 2 * target.threads else 1  # (so that tests exercise both paths)
    # enough blocks for every multiprocessor to keep several in flight (a full sum of 1e8
    # elements: 8 per SM), each still folding at least 8 elements per thread
    return int(max(1, min(target.sm_count * 8 // max(n_out, 1), n_red // (target.threads * 8))))


def _column_split(n_out, n_red, target) -> int:
    """Parts of each column a column reduction's threads share: enough threads for the device."""
    if target.simulator:
        return 2 if n_red >= 8 else 1
    want = -(-target.sm_count * 1024 // n_out)
    return int(max(1, min(want, n_red // 16, 64)))


def _column_kernels(name, body, params, outs, places, domain, axes, split, threads, imports):
    """A reduction that keeps the innermost axis (``x.sum(axis=0)``: a bias gradient): one thread
    per output element (and part of its column), so that neighbouring threads read neighbouring
    addresses, folding its column serially."""
    kept = [a for a in range(len(domain)) if a not in axes]
    n_out = _product(domain[a] for a in kept)
    n_red = _product(domain[a] for a in axes)
    chunk = -(-n_red // split) if n_red else 0
    reds = [n for n in body.nodes if registry.get(n.op).reduction is not None]
    if any(registry.get(n.op).reduction.combine.startswith("arg") for n in reds):
        split, chunk = 1, n_red
    idx = [f"i{a}" if domain[a] != 1 else "0" for a in range(len(domain))]
    parts = [f"part{k}" for k in range(len(reds))] * (split > 1)
    lines = [f"def {name}({', '.join(list(outs.values()) + list(params.values()) + parts)}):",
             f"    for item in range(cuda.grid(1), {n_out * split}, cuda.gridsize(1)):",
             f"        o = item % {n_out}", f"        part = item // {n_out}"]
    _unravel(lines, 8, "o", [idx[a] for a in kept], [domain[a] for a in kept], "o")
    info = _accumulators(reds)
    _fold_loop(lines, f"range(part * {chunk}, min({n_red}, part * {chunk} + {chunk}))", info,
               (body, params, places, outs, imports), idx, domain, axes)
    specs = [KernelSpec(name, lines, n_out * split, 1, list(body.outputs))]
    _store_results(lines, specs[0], info, outs, idx, (n_out, n_red, split), "        ", "acc{k}", "acci{k}")
    if split > 1:
        specs.append(_finish_kernel(f"{name}_finish", info, outs, idx, kept, domain, n_out, n_red, split, threads))
    return specs


def _store_results(lines, spec, info, outs, idx, sizes, pad, acc, acci):
    """Lines storing each reduction's folded value (``acc``/``acci``: its text, ``{k}`` its number):
    this block's or thread's part of it when the reduction is split, else the finished result."""
    n_out, n_red, split = sizes
    for k, (node, r, acc_dtype, _) in enumerate(info):
        out = node.outputs[0]
        if split > 1:
            lines.append(f"{pad}part{k}[o, part] = {acc.format(k=k)}")
            spec.partials.append(((n_out, split), acc_dtype))
        else:
            final = acci.format(k=k) if r.combine.startswith("arg") else _finish(r, acc.format(k=k), n_red,
                                                                                 out.type.dtype)
            lines.append(f"{pad}{_store(out, outs[out], _out_index(out, node, idx))} = {final}")


def _accumulators(reds) -> list:
    """(node, its Reduction, accumulator dtype, initial value literal) per reduction."""
    info = []
    for node in reds:
        r = registry.get(node.op).reduction
        in_dtype = node.inputs[0].type.dtype
        acc_dtype = r.accumulator(in_dtype)
        info.append((node, r, acc_dtype, literal(r.initial(in_dtype), acc_dtype)))
    return info


def _fold_loop(lines, over: str, info, group, idx, domain, axes):
    """Lines (at 8 spaces) starting each accumulator, then looping ``r`` ``over`` this item's
    reduced elements, folding each (``group``: the body, its parameters, places, outputs and
    the helpers it imports)."""
    body, params, places, outs, imports = group
    for k, (node, r, acc_dtype, init) in enumerate(info):
        lines.append(f"        acc{k} = {init}")
        if r.combine.startswith("arg"):
            lines.append(f"        acci{k} = np.int64(-1)")
    lines.append(f"        for r in {over}:")
    _unravel(lines, 12, "r", [idx[a] for a in axes], [domain[a] for a in axes], "r")
    _fold_element(lines, body, params, places, idx, domain, outs, info, imports)


def _fold_element(lines, body, params, places, idx, domain, outs, info, imports):
    """Inside the loop over reduced elements (at 12 spaces): compute the body at this element,
    store its elementwise outputs and fold each reduction's input into its accumulator."""
    local = _Body(body, params, places, imports).emit(lines, 12, idx, domain)
    for v, out in outs.items():
        if v.producer is None or registry.get(v.producer.op).reduction is None:
            lines.append(f"            {_store(v, out, idx)} = {local[v]}")
    for k, (node, r, acc_dtype, init) in enumerate(info):
        value = f"{CTOR[acc_dtype]}({local[node.inputs[0]]})"
        if r.combine.startswith("arg"):
            lines += [f"            v{k} = {value}",
                      f"            if {_beats(r.combine, f'v{k}', 'r', f'acc{k}', f'acci{k}')}:",
                      f"                acc{k} = v{k}",
                      f"                acci{k} = r"]
        else:
            lines.append(f"            acc{k} = {_combine(r.combine, f'acc{k}', value)}")


def _reduce_kernels(name, body, params, outs, places, domain, axes, threads, split, imports):
    """A row reduction: each block folds one output element (or one part of it), each thread
    a strided share of its row, then a tree in shared memory."""
    kept = [a for a in range(len(domain)) if a not in axes]
    n_out = _product(domain[a] for a in kept)
    n_red = _product(domain[a] for a in axes)
    reds = [n for n in body.nodes if registry.get(n.op).reduction is not None]
    if any(registry.get(n.op).reduction.combine.startswith("arg") for n in reds):
        split = 1  # (the parts would have to carry indices)
    idx = [f"i{a}" if domain[a] != 1 else "0" for a in range(len(domain))]
    parts = [f"part{k}" for k in range(len(reds))] * (split > 1)
    lines = [f"def {name}({', '.join(list(outs.values()) + list(params.values()) + parts)}):",
             "    tid = cuda.threadIdx.x"]
    info = _accumulators(reds)
    for k, (node, r, acc_dtype, init) in enumerate(info):
        lines.append(f"    sh{k} = cuda.shared.array({threads}, np.{_np_name(acc_dtype)})")
        if r.combine.startswith("arg"):
            lines.append(f"    shi{k} = cuda.shared.array({threads}, np.int64)")
    lines.append(f"    for blk in range(cuda.blockIdx.x, {n_out * split}, cuda.gridDim.x):")
    if split > 1:
        lines += [f"        o = blk // {split}", f"        part = blk - o * {split}"]
        first, stride = f"part * {threads} + tid", threads * split
    else:
        lines.append("        o = blk")
        first, stride = "tid", threads
    _unravel(lines, 8, "o", [idx[a] for a in kept], [domain[a] for a in kept], "o")
    _fold_loop(lines, f"range({first}, {n_red}, {stride})", info, (body, params, places, outs, imports),
               idx, domain, axes)
    lines += _tree(info, threads)
    specs = [KernelSpec(name, lines, n_out * split, threads, list(body.outputs))]
    _store_results(lines, specs[0], info, outs, idx, (n_out, n_red, split), "            ", "sh{k}[0]", "shi{k}[0]")
    lines.append("        cuda.syncthreads()")
    if split > 1:
        specs.append(_finish_kernel(f"{name}_finish", info, outs, idx, kept, domain, n_out, n_red, split, threads))
    return specs


def _finish(r, acc: str, count: int, dtype: str) -> str:
    if r.finalize == "mean":
        return f"{CTOR[dtype]}({acc} / {literal(count, 'float64')})"
    return f"{CTOR[dtype]}({acc})"


def _out_index(out: Value, node, idx) -> list:
    """The index of a reduction's output element: the kept indices (0 at kept-dims axes)."""
    axes = node.attrs["axes"]
    if node.attrs.get("keepdims"):
        return ["0" if a in axes else idx[a] for a in range(len(idx))]
    return [idx[a] for a in range(len(idx)) if a not in axes]


def _tree(info, threads) -> list:
    """Lines (in a block's loop, at 8 spaces) folding each thread's ``acc<k>`` into ``sh<k>[0]``
    through shared memory, ending with ``if tid == 0:`` for the caller's store."""
    lines = []
    for k, (node, r, _, _) in enumerate(info):
        lines.append(f"        sh{k}[tid] = acc{k}")
        if r.combine.startswith("arg"):
            lines.append(f"        shi{k}[tid] = acci{k}")
    lines += ["        cuda.syncthreads()", f"        w = {threads // 2}", "        while w > 0:",
              "            if tid < w:"]
    for k, (node, r, _, _) in enumerate(info):
        if r.combine.startswith("arg"):
            lines += [f"                if {_beats(r.combine, f'sh{k}[tid + w]', f'shi{k}[tid + w]', f'sh{k}[tid]', f'shi{k}[tid]')}:",
                      f"                    sh{k}[tid] = sh{k}[tid + w]",
                      f"                    shi{k}[tid] = shi{k}[tid + w]"]
        else:
            lines.append(f"                sh{k}[tid] = {_combine(r.combine, f'sh{k}[tid]', f'sh{k}[tid + w]')}")
    return lines + ["            cuda.syncthreads()", "            w //= 2", "        if tid == 0:"]


def _finish_kernel(name, info, outs, idx, kept, domain, n_out, n_red, split, threads) -> KernelSpec:
    """Combine each output's ``split`` parts (a block per output, a tree in shared memory) and
    finish (a mean's division)."""
    params = [outs[node.outputs[0]] for node, *_ in info] + [f"part{k}" for k in range(len(info))]
    lines = [f"def {name}({', '.join(params)}):", "    tid = cuda.threadIdx.x"]
    for k, (node, r, acc_dtype, init) in enumerate(info):
        lines.append(f"    sh{k} = cuda.shared.array({threads}, np.{_np_name(acc_dtype)})")
    lines.append(f"    for o in range(cuda.blockIdx.x, {n_out}, cuda.gridDim.x):")
    _unravel(lines, 8, "o", [idx[a] for a in kept], [domain[a] for a in kept], "o")
    for k, (node, r, acc_dtype, init) in enumerate(info):
        lines += [f"        acc{k} = {init}", f"        for s in range(tid, {split}, {threads}):",
                  f"            acc{k} = {_combine(r.combine, f'acc{k}', f'part{k}[o, s]')}"]
    lines += _tree(info, threads)
    for k, (node, r, _, _) in enumerate(info):
        out = node.outputs[0]
        lines.append(f"            {_store(out, outs[out], _out_index(out, node, idx))} = "
                     f"{_finish(r, f'sh{k}[0]', n_red, out.type.dtype)}")
    lines.append("        cuda.syncthreads()")
    spec = KernelSpec(name, lines, n_out, threads, [node.outputs[0] for node, *_ in info])
    spec.reads_partials = True
    return spec


def _np_name(dtype: str) -> str:
    return CTOR[dtype].split(".", 1)[1]


# -- gather / scatter_add: indexed reads and atomic adds, an index out of range flagged --------
def index_kernel(name: str, node, places: dict) -> KernelSpec:
    """The kernel of a gather (``out[p, b, q] = x[p, idx(b), q]``) or scatter_add (``out[p,
    idx(b), q] += g[p, b, q]``, atomically: indices may repeat). A negative index counts from
    the end; one out of range sets ``err[0]`` and is skipped (the executable raises after the
    call, as NumPy would)."""
    (src, *idx), out, axis = node.inputs, node.outputs[0], node.attrs["axis"]
    scatter = node.op == "scatter_add"
    target = out if scatter else src  # the array the indices index
    loop_shape = src.type.shape if scatter else out.type.shape
    n_pre, k = axis, len(idx)
    batch_ndim = len(loop_shape) - len(target.type.shape) + k
    loop = [f"l{a}" if n != 1 else "0" for a, n in enumerate(loop_shape)]
    pre, batch, post = loop[:n_pre], loop[n_pre:n_pre + batch_ndim], loop[n_pre + batch_ndim:]
    batch_shape = loop_shape[n_pre:n_pre + batch_ndim]
    size = 1
    for n in loop_shape:
        size *= n
    params = ["out", "err", "a0"] + [f"j{m}" for m in range(k)]
    lines = [f"def {name}({', '.join(params)}):",
             f"    for f in range(cuda.grid(1), {size}, cuda.gridsize(1)):"]
    _unravel(lines, 8, "f", loop, loop_shape, "f")
    picked = []
    for m, v in enumerate(idx):
        n = target.type.shape[axis + m]
        load = _indexed_load(f"j{m}", v, places[v], batch, batch_shape)
        lines += [f"        q{m} = {load}", f"        if q{m} < 0:", f"            q{m} += {n}"]
        picked.append(f"q{m}")
    bad = " or ".join(f"q{m} < 0 or q{m} >= {target.type.shape[axis + m]}" for m in range(k))
    lines += [f"        if {bad}:", "            err[0] = 1", "            continue"]
    at = ", ".join(pre + picked + post)
    here = ", ".join(loop) if loop else "0"  # (a 0-d output or update is a 1-element array)
    if scatter:
        value = "a0" if places[src] == HOST else f"a0[{here}]"
        where = at if len(out.type.shape) == 1 else f"({at})"  # (numba-cuda takes a 1-d index bare)
        lines.append(f"        cuda.atomic.add(out, {where}, {value})")
    else:
        lines.append(f"        out[{here}] = a0[{at}]")
    return KernelSpec(name, lines, size, 1, [out])


def _indexed_load(name, v, place, batch, batch_shape) -> str:
    shape = v.type.shape
    if not shape:
        return f"{name}[0]" if place == DEV0 else name
    offset = len(batch_shape) - len(shape)
    sub = ["0" if n == 1 else batch[offset + a] for a, n in enumerate(shape)]
    return f"{name}[{', '.join(sub)}]"
