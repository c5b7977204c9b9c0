"""CPU backend: a Graph becomes one generated Python module with a single ``@njit`` entry.

The entry takes the graph's inputs (then its non-scalar constants), runs every
node in order (elementwise groups as loop nests, reductions as loops, matmul
through BLAS) and returns the outputs, so a call costs one Numba dispatch. Runs of nodes the
graph repeats (its layers, forward and backward) are written once, as functions the entry calls
at each repetition (graphc/backend/outline.py): Numba compiles each of them once.
"""
from __future__ import annotations

import contextlib
import os
import re

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.core.compiler_lock import global_compiler_lock

from graphc.backend import blas, cache, control, outline, plan, schedule
from graphc.backend.base import Backend, Executable, buffer_roots, register
from graphc.backend.codegen import CTOR, NJIT_KERNEL_OPTIONS, SYMBOL_PREFIX, Emitter, emit_elementwise, readable_names
from graphc.backend.memory import Buffers
from graphc.errors import CompileError
from graphc import symbolic
from graphc.ir import Graph
from graphc.ops import registry
from graphc.ops.control import CONTROL
from graphc.ops.fused import FUSED
from graphc.ops.registry import ELEMENTWISE

BACKEND_VERSION = "cpu-6"
MATH_MODES = ("fast", "libm")
# helpers an emitter may name in ``em.imports`` besides vecmath's functions, by module: Numba
# intrinsics that compile inline (much cheaper than np.empty/np.zeros/.reshape/np.dot, which
# each compile a nested function per signature)
HELPERS = {"empty_c": "graphc.backend.intrinsics", "zeros_c": "graphc.backend.intrinsics",
           "reshape_c": "graphc.backend.intrinsics", "view_c": "graphc.backend.intrinsics",
           "offsets_c": "graphc.backend.intrinsics", "row_c": "graphc.backend.intrinsics",
           "seq_c": "graphc.backend.intrinsics",
           "gemm": "graphc.backend.blas", "gemm_acc": "graphc.backend.blas"}


def _interleave_setting() -> int:
    text = os.environ.get("GRAPHC_INTERLEAVE", "4")
    if not (text.isdigit() and int(text) <= 16):  # LLVM's option parser would exit the process
        raise ValueError(f"GRAPHC_INTERLEAVE={text!r}: expected an integer from 0 (LLVM's own "
                         f"choice) to 16")
    return int(text)


# LLVM's loop vectorizer interleaves a fused loop's vector body this many times (its cost model
# picks 2 for the long exp/tanh/sigmoid bodies, whose dependency chains then stall the core:
# 4 is 5-10% faster on one Zen 4 thread, measured in benchmarks/RESULTS.md); 0 leaves it to LLVM
INTERLEAVE = _interleave_setting()


@contextlib.contextmanager
def _llvm_options():
    """Compile with ``-force-vector-interleave=INTERLEAVE``, then put LLVM's default back.

    The option is process-wide; holding Numba's compiler lock keeps other threads' compilations
    out of this window.
    """
    if not INTERLEAVE:
        yield
        return
    with global_compiler_lock:
        llvm.set_option("graphc", f"-force-vector-interleave={INTERLEAVE}")
        try:
            yield
        finally:
            llvm.set_option("graphc", "-force-vector-interleave=0")


def generate(graph: Graph, math: str = "fast", memory_plan: plan.MemoryPlan | None = None):
    """Return ``(source, emitter)`` for ``graph``: deterministic, so it can be hashed.

    ``math="fast"`` lowers exp/log/tanh/sigmoid/sin/cos/pow in fused loops to the
    vectorizable functions of ``graphc.backend.vecmath``; ``"libm"`` keeps NumPy's.
    ``memory_plan`` places the arrays (graphc.backend.plan); without one each is fresh.
    """
    if math not in MATH_MODES:
        raise ValueError(f"unknown math mode {math!r}; choose one of {', '.join(MATH_MODES)}")
    if memory_plan is None:
        graph = named_symbols(graph)
    elif any(not str(s).startswith(SYMBOL_PREFIX) for s in symbolic.symbols(graph)):
        raise ValueError("generate: plan the memory of named_symbols(graph), not of the graph itself")
    em = Emitter(graph, plan=memory_plan)
    em.math = math
    inputs = readable_names(getattr(graph, "input_names", None), len(graph.inputs))
    for name, v in zip(inputs, graph.inputs):
        em.names[v] = name
    for sym, (k, axis) in symbol_sources(graph).items():  # one module for every size of each symbol
        em.line(f"{sym} = {inputs[k]}.shape[{axis}]")
    em.pack = plan.pack_outputs(graph, memory_plan)
    if em.pack is not None and os.environ.get("GRAPHC_VERIFY"):
        plan.verify_pack(graph, memory_plan, em.pack)
    if em.pack is not None and em.pack.groups:  # computed straight into the buffer `ob` (alloc binds them)
        em.imports.add("view_c")
        for v, offset in em.pack.offsets.items():
            em.slots[v] = f"view_c(ob, {offset}, {tuple(v.type.shape)!r}, {CTOR[v.type.dtype]})"
    em.generic = schedule.generic_groups(graph, memory_plan.inplace if memory_plan is not None else {})
    emit_nodes(em, graph)
    em.node = None
    returned = graph.outputs
    if em.pack is not None:
        _copy_unplaced(em, em.pack)
        returned = [graph.outputs[p] for p in em.pack.plain_positions]
    # constant arrays are read-only and shared by every call: return copies (views of them too)
    root = buffer_roots(graph)
    outs = ", ".join(f"{em.name(v)}.copy()" if v.type.shape and root[v].producer is not None
                     and root[v].producer.op == "constant" else em.name(v) for v in returned)
    em.line(f"return ({outs}{',' if len(returned) == 1 else ''})")
    params = inputs + [f"c{i}" for i in range(len(em.const_args))]
    if em.plan is not None:
        params += ["ws"] * bool(em.plan.workspace_bytes) + [f"rb{k}" for k in range(len(em.plan.out_types))]
    if em.pack is not None and em.pack.groups:
        params.append("ob")
    outline.outline(em, params)  # repeated runs of nodes: one function each, compiled once
    header = [
        f"# generated by graphc ({BACKEND_VERSION}) from graph {graph.name}; do not edit",
        f"# compiled with LLVM -force-vector-interleave={INTERLEAVE}",
        "import numpy as np",
        "from numba import njit, prange",
    ]
    modules = {}
    for name in em.imports:  # a helper's name, or "module:name" (an op's own helper)
        module, _, name = name.rpartition(":")
        modules.setdefault(module or HELPERS.get(name, "graphc.backend.vecmath"), set()).add(name)
    for module in sorted(modules):
        header.append(f"from {module} import {', '.join(sorted(modules[module]))}")
    header += ["", ""] + workspace_comment(em) + [
        f"@njit({NJIT_KERNEL_OPTIONS})",
        f"def entry({', '.join(params)}):",
    ]
    em.first_line = len(header) + 1  # 1-based line number of the body's first line
    kernels = []
    for text in em.kernels:  # after the entry, so the entry's line numbers stay put
        kernels += ["", "", text]
    return "\n".join(header + em.lines + kernels) + "\n", em


def _copy_unplaced(em: Emitter, pack: plan.OutputPack):
    """A packed output its emitter did not allocate (it bound the name another way) is copied
    into its place in ``ob``: the buffer holds every packed output whatever the emitter did."""
    for v in pack.offsets:
        if v in em.slots:
            place = em.tmp("o")
            em.line(f"{place} = {em.slots.pop(v)}")
            em.copy(place, em.name(v), tuple(v.type.shape))


def emit_nodes(em: Emitter, graph: Graph):
    """Write the nodes of ``graph`` (the entry's graph, or a loop's or branch's region, whose
    inputs ``em`` has named) at the current indentation."""
    names = graph.value_names()
    top = not em.hoist and em.node is None  # (a region's lines belong to its loop's node)
    for node in graph.nodes:
        if top or em.node is None:
            em.node = node
        # the IR line without the user's file:line: moving code must not change the cache key
        text = graph.format_node(node, names)
        lines = text.splitlines()[:1] if node.op in CONTROL else text.splitlines()  # fused nodes print as a block
        for text in lines:
            em.line("# " + text.split("   # ")[0].rstrip())
        op = registry.get(node.op)
        if op.kind == ELEMENTWISE:
            emit_elementwise(em, [node])
        elif node.op == FUSED:
            schedule.emit_fused(em, node)
        elif node.op in CONTROL:
            control.emit(em, node, emit_nodes)
        elif op.reduction is not None:
            schedule.emit_reduction(em, node)
        elif op.emit is None:
            raise CompileError(f"the CPU backend cannot lower op {node.op} (at {node.loc}): it has no emitter")
        else:
            op.emit(em, node)
        if top:
            em.node = None


def named_symbols(graph: Graph) -> Graph:
    """``graph`` with each symbolic dimension ``B`` renamed ``dim_B`` (codegen.SYMBOL_PREFIX), the
    generated code's name for its run-time value, which no input or generated name takes: the
    emitters print a shape ``(B, 64)`` as that code, ``(dim_B, 64)``. (A graph with symbols
    compiles to one module for every size of them.)"""
    names = {s: SYMBOL_PREFIX + s for s in symbolic.symbols(graph) if not s.startswith(SYMBOL_PREFIX)}
    for node in graph.nodes:
        for v in node.outputs:
            for d in v.type.shape:
                if isinstance(d, str) and d not in names and not d.startswith(SYMBOL_PREFIX):
                    raise ValueError(f"symbol {d} of {node.op} is not a dimension of any input")
    return symbolic.rename(graph, names) if names else graph


def symbol_sources(graph: Graph) -> dict:
    """Each symbol -> (input position, axis) of the first input dimension that holds it."""
    sources = {}
    for k, v in enumerate(graph.inputs):
        for axis, d in enumerate(v.type.shape):
            if isinstance(d, str):
                sources.setdefault(str(d), (k, axis))
    return sources


def workspace_comment(em: Emitter) -> list[str]:
    """Comment lines describing where the entry's arrays live (the memory plan, ``em.plan``)."""
    plan = em.plan
    if plan is None or not (plan.workspace or plan.outputs or plan.inplace):
        return []
    lines = []
    if plan.workspace:
        lines.append(f"# workspace ws: {plan.workspace_bytes} bytes, reused across calls")
        for v, (offset, size) in sorted(plan.workspace.items(), key=lambda kv: kv[1]):
            if v in em.names:
                lines.append(f"#   ws[{offset}:{offset + size}]  {em.names[v]}: {v.type}")
    for v, k in sorted(plan.outputs.items(), key=lambda kv: kv[1]):
        if v in em.names:
            lines.append(f"# rb{k}: {em.names[v]}: {v.type}, returned (a buffer recycled from an earlier call)")
    for v, u in plan.inplace.items():
        if v in em.names and u in em.names:
            lines.append(f"# {em.names[v]}: {v.type}, written in place of input {em.names[u]}")
    return lines


class CompiledGraph(Executable):
    """A compiled graph: call it with the input arrays, get the tuple of outputs."""

    def __init__(self, graph: Graph, source: str, em: Emitter, path: str, entry, on_disk: bool = True,
                 key: str | None = None):
        memory_plan = em.plan
        self.pack = getattr(em, "pack", None)  # plan.OutputPack: outputs the entry does not return
        super().__init__(self.pack.from_inputs if self.pack is not None else None)
        self.graph = graph
        self.plan = memory_plan  # graphc.backend.plan.MemoryPlan, or None (O0, O1: every array fresh)
        self.source = source
        self.path = path  # the saved source, or a <graphc ...> placeholder when compiled in memory
        self.on_disk = on_disk
        self.key = key  # the content hash naming the module in the disk cache
        self.entry = entry
        self.const_args = tuple(em.const_args)
        # the memory plan's workspace and recycled outputs, passed after the constants
        self.buffers = Buffers(memory_plan.workspace_bytes, memory_plan.out_types) \
            if memory_plan is not None and (memory_plan.workspace_bytes or memory_plan.out_types) else None
        self._emitter = em
        self.ready = False  # True once Numba has compiled (or loaded) the entry

    @property
    def direct(self) -> bool:
        """Can the runtime call ``entry`` with just the inputs (no constants, no buffers)?"""
        return self.ready and not self.const_args and self.buffers is None and self.pack is None

    @property
    def fast_entry(self):
        """The Numba entry itself once compiled, where it takes just the inputs."""
        return self.entry if self.direct else None

    def __call__(self, *args):
        if self.pack is not None:
            return self._call_packed(args)
        buffers = self.buffers
        if buffers is None:
            return self._run(*args, *self.const_args)
        if buffers.recyclers:
            extra = buffers.acquire()
            try:
                return self._run(*args, *self.const_args, *extra)
            finally:
                buffers.release(extra)
        # the common case, a workspace only: kept lean, it is on every call's path
        workspace = buffers.take_workspace()
        try:
            if self.ready:
                return self.entry(*args, *self.const_args, workspace)
            return self._run(*args, *self.const_args, workspace)
        finally:
            buffers.free.append(workspace)

    def _call_packed(self, args):
        """A call whose entry does not return every output (``plan.OutputPack``): run it, then
        put the others among the ones it returned: views of ``ob``, a fresh byte buffer the
        entry wrote them into (one per output), and inputs it updated in place."""
        pack = self.pack
        # (malloc's 16-byte alignment: aligning it to 64 as the workspace is, through
        # ob.ctypes.data, would cost ~1.5 us per call, more than it could save here)
        ob = np.empty(pack.nbytes, np.uint8) if pack.groups else None
        last = () if ob is None else (ob,)
        buffers = self.buffers
        run = self.entry if self.ready else self._run
        if buffers is None:
            return pack.assemble(run(*args, *self.const_args, *last), ob, args)
        extra = buffers.acquire()
        try:
            returned = run(*args, *self.const_args, *extra, *last)
        finally:
            buffers.release(extra)
        return pack.assemble(returned, ob, args)

    def _run(self, *args):
        if self.ready:
            return self.entry(*args)
        try:
            out = self._compile_and_run(args)  # cache files that fail their checks are recompiled
        except numba.core.errors.NumbaError as exc:
            raise self._compile_error(exc) from None
        self.ready = True
        return out

    def prepare(self, *args):
        """Compile (or load from the disk cache) the entry for these inputs, running nothing."""
        if not self.ready:
            self.prepare_types([self.entry.typeof_pyval(a) for a in args])

    def prepare_types(self, types):
        """``prepare`` from the Numba types of the inputs alone (a background compile: the
        worker process has no arrays)."""
        if self.ready:
            return
        buffers = self.buffers
        extra = buffers.acquire() if buffers is not None else []
        try:
            ob = [np.empty(0, np.uint8)] if self.pack is not None and self.pack.groups else []
            rest = tuple(map(self.entry.typeof_pyval, (*self.const_args, *extra, *ob)))
            self._compile_signature((*types, *rest))
        except numba.core.errors.NumbaError as exc:
            raise self._compile_error(exc) from None
        finally:
            if extra:
                buffers.release(extra)
        self.ready = True

    def _compile_and_run(self, args):
        self._compile_signature(tuple(map(self.entry.typeof_pyval, args)))
        return self.entry(*args)

    def _compile_signature(self, signature):
        """Numba compiles the entry, or loads its machine code from the disk cache; one process
        at a time per entry (cache.compile_lock), so a second one waiting loads what the first
        wrote instead of compiling it again."""
        with cache.compile_lock(self.key if self.on_disk else None), _llvm_options():
            self.entry.compile(signature)

    @property
    def cache_hits(self) -> int:
        return sum(self.entry.stats.cache_hits.values())

    @property
    def cache_misses(self) -> int:
        return sum(self.entry.stats.cache_misses.values())

    def _compile_error(self, exc) -> CompileError:
        """Name the graph node whose generated line Numba rejected."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Numba colours its messages
        base = os.path.basename(self.path)
        lines = [int(m.group(2)) for m in re.finditer(r'File "([^"]+)", line (\d+)', text)
                 if os.path.basename(m.group(1)) == base]  # Numba prints paths relative to the cwd
        lines += [int(m.group(2)) for m in re.finditer(r"at (\S+) \((\d+)\)", text)
                  if os.path.basename(m.group(1)) == base]
        kernels = {info["name"]: info["node"] for info in getattr(self._emitter, "kernel_info", [])
                   + getattr(self._emitter, "outlined", [])}
        source = self.source.splitlines()
        if not lines:  # no location (a NameError...): the first line using a name the message quotes
            for name in re.findall(r"'(\w+)'", text):
                lines += [k + 1 for k, ln in enumerate(source)
                          if re.search(rf"\b{name}\b", ln) and not ln.lstrip().startswith("#")][:1]
        node = None
        for line in lines:
            k = line - self._emitter.first_line
            if 0 <= k < len(self._emitter.line_nodes):
                node = self._emitter.line_nodes[k] or node
                continue
            for above in reversed(source[:line]):  # inside a kernel: the fused node it computes
                m = re.match(r"def (\w+)\(", above)
                if m:
                    node = kernels.get(m.group(1)) or node
                    break
        where = "the generated entry"
        if node is not None:
            where = f"node {self.graph.format_node(node, self.graph.value_names())}"
        detail = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        reason = next((ln for ln in detail if not ln.startswith("Failed in")), type(exc).__name__)
        saved = (f"the generated source is saved at {self.path}" if self.on_disk
                 else "the generated source is in f.source (not saved: no usable disk cache)")
        return CompileError(f"Numba failed to compile {where}: {reason}\n  {saved}")


# content hash -> (module path, Numba dispatcher, saved on disk?): a graph compiled again in this process
# (another function, a retrace) shares the machine code. Only that: the workspaces and
# recycled outputs belong to each CompiledGraph and go with the traced function that owns it
_IN_PROCESS: dict[str, tuple] = {}


def compile_graph(graph: Graph, math: str = "fast", memory_plan: plan.MemoryPlan | None = None) -> CompiledGraph:
    """Generate and load the module for ``graph`` (compiled, or loaded from the disk cache, on first call)."""
    source, em = generate(graph, math, memory_plan)
    key = cache.content_hash(source, BACKEND_VERSION)
    if key in _IN_PROCESS:
        path, entry, on_disk = _IN_PROCESS[key]
        return CompiledGraph(graph, source, em, path, entry, on_disk, key)
    blas.prepare()  # (Numba's registries, without scipy.linalg's import: see graphc/backend/blas.py)
    try:
        module, path, on_disk = cache.load_module(key, source)
    except SyntaxError as exc:  # a bug in an emitter, never the user's fault: say where
        saved = (f"source saved at {exc.filename}" if not exc.filename.startswith("<")
                 else "no usable disk cache, so the source was not saved")
        raise CompileError(f"graphc generated invalid Python ({exc.msg}, line {exc.lineno}); {saved}") from None
    _IN_PROCESS[key] = (path, module.entry, on_disk)
    return CompiledGraph(graph, source, em, path, module.entry, on_disk, key)


class CPUBackend(Backend):
    """``device="cpu"``: Numba on the host, one generated module per graph (see above).

    Option ``math``: ``"fast"`` (the default: vectorizable exp/log/tanh... in fused loops,
    a few ulp from NumPy) or ``"libm"`` (NumPy's scalar calls). A graph with symbolic dimensions
    compiles to one module for every size of them (>= 2), or raises. After the full ("O2")
    pipeline it plans memory (graphc/backend/plan.py): verified under ``GRAPHC_VERIFY``,
    written next to the passes' dumps under ``GRAPHC_DUMP``.
    """

    device = "cpu"
    options = {"math": MATH_MODES}
    symbolic_dims = True  # one module for every size (named_symbols, graphc/backend/schedule.py)
    background = True  # compile="background" hands graphs to a worker (graphc/backend/background.py)

    def compile(self, graph: Graph, options: dict) -> CompiledGraph:
        options = self.check_options(options)
        graph = named_symbols(graph)
        memory_plan = None
        if options["passes"] == "O2":
            memory_plan = plan.plan(graph)
            if os.environ.get("GRAPHC_VERIFY"):
                plan.verify_plan(graph, memory_plan)
            if os.environ.get("GRAPHC_DUMP"):
                _dump_plan(os.environ["GRAPHC_DUMP"], graph, memory_plan)
        return compile_graph(graph, options["math"], memory_plan)


def _dump_plan(directory: str, graph: Graph, memory_plan: plan.MemoryPlan):
    """``<graph>.memory.txt``: the graph as compiled, then where each of its arrays lives."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{graph.name}.memory.txt"), "w") as f:
        f.write(str(graph) + "\n" + memory_plan.describe(graph.value_names()) + "\n")


BACKEND = register(CPUBackend())
