"""Outlining repeated runs of the generated entry: each distinct run becomes one function.

Numba's compile time grows with the number of statements of the function it compiles: typing,
lowering to LLVM IR (Python code, ~5-10 ms for a statement such as ``view_c(...)`` or
``gemm(...)``) and LLVM's passes. A graph that repeats its structure (the N layers of a
network, forward and backward) used to cost that once per repetition, in the one entry function.
Here the entry's lines are cut into *runs* (the nodes up to and including the next loop group:
``matmul`` then the fused ``tanh(...) + 0.5 * h`` of a layer), each run is written in a canonical
form (its names renumbered in order of appearance, the entry's values it reads passed as
parameters, the workspace blocks it reads or writes passed as their offsets, through
``intrinsics.offsets_c``), and a canonical form that occurs often enough becomes a function of
the module, compiled once and called from every place: the entry then holds one call per
repetition.

Two runs share a function only when their canonical text is identical, so each call computes
exactly what the inline code did (the arguments' Numba types may differ: the function is then
compiled once per signature, as any ``@njit`` function). Runs that occur once, or whose repetition
would not repay a function's fixed compile cost, stay inline, so a graph without repeats compiles
as before.
"""
from __future__ import annotations

import itertools
import os
import re

from graphc.backend.codegen import RESERVED_NAMES, Emitter
from graphc.ir import Node
from graphc.ops import registry
from graphc.ops.control import CONTROL
from graphc.ops.fused import FUSED, subgraph
from graphc.ops.registry import ELEMENTWISE

# A run is outlined when its repetitions save more statements than the function costs:
# (count - 1) * statements > FUNCTION_COST + CALL_COST * count, in units of one statement of
# the entry (measured on the N-layer chain: a statement ~8 ms, a function's own compile ~0.2 s,
# a call with its tuple of results ~2 statements). GRAPHC_OUTLINE=0 turns outlining off.
FUNCTION_COST = 25
CALL_COST = 2
PERIOD_MAX = 16  # the longest sequence of runs whose back-to-back repeats are merged
ROLL_MIN = 4  # consecutive calls of one function made one loop from this many (_roll)
ENABLED = os.environ.get("GRAPHC_OUTLINE", "1") != "0"

_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")
_TARGETS = re.compile(r"^\s*((?:[A-Za-z_]\w*\s*,\s*)*[A-Za-z_]\w*\s*,?)\s*(?:[-+*/%&|^]|//|\*\*)?=(?!=)")
_LOOP_TARGET = re.compile(r"^\s*for\s+([A-Za-z_]\w*)\s+in\b")
# the entry's byte buffers whose blocks pass as offsets: the workspace, and the per-call buffer
# of outputs written in place (plan.OutputPack); a function takes them under the same names
BUFFERS = ("ws", "ob")
_OFFSET = re.compile(r"\bview_c\((ws|ob), (\d+),")
_VIEW = re.compile(r"^    (\w+) = view_c\((ws|ob), (\d+), (.*)\)$")  # a view of a block the entry makes


def _defined(line: str) -> list[str]:
    """The names a generated line binds (assignment targets, a loop variable)."""
    m = _LOOP_TARGET.match(line) or _TARGETS.match(line)
    if m is None:
        return []
    return [t.strip() for t in m.group(1).split(",") if t.strip()]


def _code(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


class _Run:
    """A candidate run: lines ``start:stop`` of the entry, computing ``nodes``."""

    def __init__(self, start: int, stop: int, nodes: list[Node]):
        self.start, self.stop, self.nodes = start, stop, nodes
        self.key = None  # the canonical function text, or None where the run cannot be outlined
        self.args: list[str] = []  # the entry's names passed to the function, in parameter order
        self.offsets: list[str] = []  # then the workspace offsets of the blocks it reads and writes
        self.outputs: list[str] = []  # the entry's names the function's results bind
        self.views: list[str] = []  # workspace blocks it binds that the entry may need after it


def outline(em: Emitter, params: list[str]):
    """Replace repeated runs of ``em.lines`` (the entry's body, after its ``return``) by calls
    to functions appended to ``em.kernels``; ``params`` are the entry's parameter names.

    Arrays in the workspace pass as their offsets (an integer argument is much cheaper for
    Numba to type and lower than an array's): the function makes its views of them, writes its
    results there and returns only the other arrays and scalars it binds; the entry makes a view
    of such a block again only where code left inline reads it.
    """
    if not ENABLED:
        return
    runs = _runs(em)
    if len(runs) < 2:
        return
    # where each name is bound and last used in the entry; the workspace views it makes
    bound_at: dict[str, int] = {p: -1 for p in params}
    last_use: dict[str, int] = {}
    views: dict[str, tuple] = {}
    for k, line in enumerate(em.lines):
        if not _code(line):
            continue
        for name in _NAME.findall(line):
            last_use[name] = k
        for name in _defined(line):
            bound_at.setdefault(name, k)
        m = _VIEW.match(line)
        if m:
            views[m.group(1)] = m.group(2, 3, 4)
    for run in runs:
        _canonical(em, run, bound_at, last_use, views)
    runs = _merge_periods(runs, lambda run: _canonical(em, run, bound_at, last_use, views))
    counts: dict[str, list[_Run]] = {}
    for run in runs:
        if run.key is not None:
            counts.setdefault(run.key, []).append(run)
    chosen = {}
    for key, same in counts.items():
        statements = sum(1 for line in key.splitlines() if _code(line)) - 2  # (def and return lines)
        if len(same) >= 2 and (len(same) - 1) * statements > FUNCTION_COST + CALL_COST * len(same):
            chosen[key] = _function_name(em, same[0].nodes, set(chosen.values()))
    if not chosen:
        return
    # lines that stay in the entry: a workspace block an outlined run binds is viewed again
    # after the call where one of them reads it
    inline_uses: dict[str, int] = {}
    k = 0
    for run in runs + [_Run(len(em.lines), len(em.lines), [])]:
        for j in range(k, run.start):
            if _code(em.lines[j]):
                for name in _NAME.findall(em.lines[j]):
                    inline_uses[name] = j
        if run.key not in chosen:
            for j in range(run.start, run.stop):
                if _code(em.lines[j]):
                    for name in _NAME.findall(em.lines[j]):
                        inline_uses[name] = j
        k = run.stop
    lines, line_nodes = [], []
    calls = []  # (index in lines, function, run) of each call that binds nothing
    k = 0
    for run in runs:
        lines += em.lines[k:run.start]
        line_nodes += em.line_nodes[k:run.start]
        k = run.start
        if run.key not in chosen:
            continue
        name = chosen[run.key]
        for line, node in zip(em.lines[run.start:run.stop], em.line_nodes[run.start:run.stop]):
            if not _code(line):  # the IR comments stay in the entry: they say what the call computes
                lines.append(line)
                line_nodes.append(node)
        args = list(run.args)
        if run.offsets:  # (not as literals: Numba would compile the function once per value)
            em.imports.add("offsets_c")
            args.append(f"offsets_c(({', '.join(run.offsets)},))")
        call = f"{name}({', '.join(args)})"
        if run.outputs:
            call = f"{', '.join(run.outputs)}, = {call}"
        else:  # (a call binding nothing may join a loop of calls: _roll)
            calls.append((len(lines), name, run))
        lines.append("    " + call)
        line_nodes.append(run.nodes[-1])
        for view in run.views:
            if inline_uses.get(view, -1) >= run.stop:
                lines.append(f"    {view} = view_c({', '.join(views[view])})")
                line_nodes.append(run.nodes[-1])
        k = run.stop
    lines += em.lines[k:]
    line_nodes += em.line_nodes[k:]
    em.lines, em.line_nodes = _roll(em, lines, line_nodes, calls)
    for key, name in chosen.items():
        em.kernels.append(f"# the same run of nodes at {len(counts[key])} places of the entry, compiled once "
                          f"(graphc.backend.outline)\n@njit({em.kernel_options})\n"
                          + key.replace("def _(", f"def {name}(", 1))
        em.outlined.append({"name": name, "node": counts[key][0].nodes[-1], "calls": len(counts[key])})


def _roll(em: Emitter, lines: list[str], line_nodes: list, calls: list) -> tuple[list, list]:
    """Consecutive calls of one function (only comments and views between them) that differ in
    their offsets and in which input array they pass become one loop over the repetitions:

        seq_3 = seq_c((args_1__1, args_1__2, ...))       # the inputs, one array type
        for k_1 in range(37):
            matmul_add_mul_step(ws, seq_3[k_1], ob, v42, row_c(rows_2, k_1, 8))

    with ``rows_2`` a module constant holding each call's offsets. Numba types and lowers a
    call ~7 ms; the loop does it once (the N-layer chain: 76 calls, ~0.4 s). Arguments that vary
    must be inputs of the entry of one type; ``seq_c`` gives them one Numba type (a read-only or
    unaligned input would otherwise make the tuple one that cannot be indexed at run time).
    """
    inputs = {em.names[v]: v.type for v in em.graph.inputs if v in em.names}
    sequences, current = [], []
    for call in calls:
        if current and _continues(current, call, lines, inputs):
            current.append(call)
        else:
            current = [call]
            sequences.append(current)
    rolled = {}  # index in lines of a sequence's last call -> the loop's lines
    dropped = set()
    for sequence in sequences:
        if len(sequence) < ROLL_MIN:
            continue
        first = sequence[0][2]
        loop, table = em.tmp("k"), em.tmp("rows")  # (names of the generated forms: no input's)
        text = []
        args = []
        for position, name in enumerate(first.args):
            if all(run.args[position] == name for _, _, run in sequence):
                args.append(name)
                continue
            em.imports.add("seq_c")
            seq = em.tmp("seq")
            text.append(f"{seq} = seq_c(({', '.join(run.args[position] for _, _, run in sequence)},))")
            args.append(f"{seq}[{loop}]")
        if first.offsets:
            em.imports.add("row_c")
            width = len(first.offsets)
            em.kernels.append(f"# the offsets of the calls of one loop of the entry (graphc.backend.outline)\n"
                              f"{table} = np.array([{', '.join(o for _, _, run in sequence for o in run.offsets)}],"
                              f" dtype=np.intp)")
            args.append(f"row_c({table}, {loop}, {width})")
        text.append(f"for {loop} in range({len(sequence)}):")
        text.append(f"    {sequence[0][1]}({', '.join(args)})")
        rolled[sequence[-1][0]] = [(line, sequence[-1][2].nodes[-1]) for line in text]
        dropped |= {at for at, _, _ in sequence}
    if not rolled:
        return lines, line_nodes
    out_lines, out_nodes = [], []
    for k, (line, node) in enumerate(zip(lines, line_nodes)):
        if k in dropped:
            for text, at in rolled.get(k, ()):
                out_lines.append("    " + text)
                out_nodes.append(at)
            continue
        out_lines.append(line)
        out_nodes.append(node)
    return out_lines, out_nodes


def _continues(sequence: list, call, lines: list[str], inputs: dict) -> bool:
    """Can ``call`` join ``sequence``: the same function right after its last call (comments
    and views between), each argument the same, or an input of the entry of the first call's
    type?"""
    at, name, run = call
    last_at, last_name, first = sequence[-1][0], sequence[-1][1], sequence[0][2]
    if name != last_name or len(run.args) != len(first.args) or len(run.offsets) != len(first.offsets):
        return False
    # (between them: comments, and the views of blocks the calls wrote that code after them
    # reads, which stay where they are: a view is only an address, read after the loop)
    if any(_code(line) and not _VIEW.match(line) for line in lines[last_at + 1:at]):
        return False
    for mine, theirs in zip(run.args, first.args):
        if mine != theirs and not (mine in inputs and theirs in inputs and inputs[mine] == inputs[theirs]
                                   and inputs[mine].shape):
            return False
    return True


def _runs(em: Emitter) -> list[_Run]:
    """The entry's lines cut into runs: consecutive nodes up to and including a loop group."""
    runs, start, nodes = [], None, []
    k, n = 0, len(em.lines)
    while k < n:
        node = em.line_nodes[k]
        stop = k
        while stop < n and em.line_nodes[stop] is node:
            stop += 1
        if node is not None and node.op not in CONTROL:  # (a loop's block is never part of a run)
            if start is None:
                start = k
            nodes.append(node)
            if _is_group(node):
                runs.append(_Run(start, stop, nodes))
                start, nodes = None, []
        elif start is not None:  # (lines of no node end a run: the return, the symbols' sizes; a loop)
            runs.append(_Run(start, k, nodes))
            start, nodes = None, []
        k = stop
    if start is not None:
        runs.append(_Run(start, n, nodes))
    return runs


def _merge_periods(runs: list[_Run], canonical) -> list[_Run]:
    """``runs`` where a sequence of PERIOD_MAX runs or fewer repeats back to back (the scalar
    nodes of each parameter's Adam step, a layer cut into several runs), each repetition merged
    into one run: one call per repetition instead of one per run. ``canonical`` sets a run's key."""
    out, i = [], 0
    keys = [run.key for run in runs]
    while i < len(runs):
        merged = False
        for period in range(2, PERIOD_MAX + 1):
            first = keys[i:i + period]
            if len(first) < period or None in first or not _adjacent(runs[i:i + period]):
                break
            if any(period % d == 0 and first == first[:d] * (period // d) for d in range(1, period)):
                continue  # a repeat of a shorter sequence (identical runs: each its own call)
            count = 1
            while keys[i + count * period:i + (count + 1) * period] == first \
                    and _adjacent(runs[i + count * period - 1:i + (count + 1) * period]):
                count += 1
            if count < 2:
                continue
            group = []
            for c in range(count):
                part = runs[i + c * period:i + (c + 1) * period]
                run = _Run(part[0].start, part[-1].stop, [n for r in part for n in r.nodes])
                canonical(run)
                group.append(run)
            if all(run.key is not None and run.key == group[0].key for run in group):
                out += group
                i += count * period
                merged = True
                break
        if not merged:
            out.append(runs[i])
            i += 1
    return out


def _adjacent(runs: list[_Run]) -> bool:
    return all(a.stop == b.start for a, b in itertools.pairwise(runs))


def _is_group(node: Node) -> bool:
    op = registry.get(node.op)
    return node.op == FUSED or op.kind == ELEMENTWISE or op.reduction is not None


def _canonical(em: Emitter, run: _Run, bound_at: dict, last_use: dict, views: dict):
    """Set ``run.key`` (the function text, named ``_``), ``run.args``, ``run.offsets``,
    ``run.outputs`` and ``run.views``; the key stays None where the run cannot be a function of
    its own. ``views``: the entry's views of its buffers' blocks, name -> (buffer, offset, shape
    and dtype text)."""
    body = [line for line in em.lines[run.start:run.stop] if _code(line)]
    if not body or any('"' in line or "'" in line or line.lstrip().startswith("return") for line in body):
        return
    bound = {}  # names the run binds -> whether at its top level
    for line in body:
        for name in _defined(line):
            top = not line.startswith("     ")
            bound[name] = bound.get(name, False) or top
    if any(bound_at.get(name, run.start) < run.start for name in bound):
        return  # the run rebinds a name bound before it: not a function of its inputs
    later = [name for name in bound if last_use.get(name, -1) >= run.stop]
    if not all(bound[name] for name in later):
        return
    free, offsets, renamed, counters, viewed, used = [], [], {}, {}, [], set()

    def local(prefix):
        if prefix in ("p", "offsets") + BUFFERS:
            prefix = "l" + prefix
        counters[prefix] = counters.get(prefix, 0) + 1
        return f"{prefix}{counters[prefix]}"

    def rename(m):
        name = m.group(1)
        if name in renamed:
            return renamed[name]
        if name in bound:
            renamed[name] = local(re.match(r"(.*?)\d*$", name).group(1) or name)
        elif bound_at.get(name, run.start) < run.start:  # the entry's: a parameter
            if name in views:  # a buffer's block: its offset, viewed again in the function
                buffer, at, rest = views[name]
                offsets.append(at)
                used.add(buffer)
                renamed[name] = local("v")
                viewed.append(f"    {renamed[name]} = view_c({buffer}, offsets[{len(offsets) - 1}], {rest})")
            else:
                renamed[name] = name if name in BUFFERS else f"p{sum(f not in BUFFERS for f in free)}"
                free.append(name)
        else:
            return name  # a global of the module (np, a helper, a kernel)
        return renamed[name]

    def offset(m):
        offsets.append(m.group(2))
        return f"view_c({m.group(1)}, \0{len(offsets) - 1}\0,"  # (a placeholder no name takes)

    text = [re.sub("\0(\\d+)\0", r"offsets[\1]", _NAME.sub(rename, _OFFSET.sub(offset, line))) for line in body]
    for buffer in reversed(BUFFERS):  # (blocks viewed only in ``viewed``: the buffer is a parameter too)
        if buffer in used and buffer not in free:
            free.insert(0, buffer)
            renamed[buffer] = buffer
    outputs = [name for name in later if name not in views]
    params = [renamed[name] for name in free] + ["offsets"] * bool(offsets)
    results = ", ".join(renamed[name] for name in outputs)
    run.key = "\n".join([f"def _({', '.join(params)}):"] + viewed + text
                        + ([f"    return ({results},)"] if outputs else []))
    run.args, run.offsets = free, offsets
    run.outputs = outputs
    run.views = [name for name in later if name in views]


def _function_name(em: Emitter, nodes: list[Node], chosen: set) -> str:
    """A name saying what an outlined run computes: its ops in order (a fused node's body ops),
    ``_step`` after them; unique in the module."""
    ops = []
    for node in nodes:
        if node.op == FUSED:
            ops += [n.op for n in subgraph(node).nodes if n.op not in ("broadcast_to", "constant")]
        elif node.op != "constant":
            ops.append(node.op)
    base = "_".join(list(dict.fromkeys(ops))[:4] + ["step"])
    taken = set(RESERVED_NAMES) | set(em.imports) | set(em.names.values()) | chosen \
        | {info["name"] for info in em.kernel_info} | {info["name"] for info in em.outlined}
    taken |= {m.group(1) for text in em.kernels for m in re.finditer(r"^def (\w+)\(", text, re.MULTILINE)}
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    return name
