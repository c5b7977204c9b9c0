"""Elementwise fusion: chains of elementwise ops, broadcasts and trailing reductions -> ``fused``.

A group is a set of nodes over one *domain* (the shape its loops run over):
elementwise nodes whose output has that shape and reductions whose input has
it. Nodes join the group of an operand's producer, forward and backward nodes
alike (autodiff made them ordinary nodes of the same graph). Rules:

* a node never joins a group whose reduction it reads (the reduction is done
  only after the loop);
* the reductions of a group reduce the same axes (one loop order serves all);
* a group stays *convex*: no path leaves it and comes back (checked with
  ancestor/descendant bitsets; afterwards the graph of groups is checked for
  cycles with networkx and offending groups are split up again).

Values used outside their group, and graph outputs, become the fused node's
outputs. Rank-0 elementwise work (scalar arithmetic) is left alone.
"""
from __future__ import annotations

import networkx as nx

from graphc.ir import Graph
from graphc.ops import registry
from graphc.ops.fused import REDUCTIONS, fused_node
from graphc.ops.registry import ELEMENTWISE


def _domain(node):
    """The loop shape of a fusible node, or None."""
    if len(node.outputs) != 1:
        return None
    if node.op in REDUCTIONS:
        shape = node.inputs[0].type.shape
    elif registry.get(node.op).kind == ELEMENTWISE:
        shape = node.outputs[0].type.shape
    else:
        return None
    if not shape or any(n == 0 for n in shape):
        return None
    return tuple(shape)


class _Group:
    __slots__ = ("members", "mask", "anc", "desc", "domain", "axes", "reductions")

    def __init__(self, i, domain, anc, desc, axes):
        self.members = [i]
        self.mask = 1 << i
        self.anc, self.desc = anc, desc
        self.domain = domain
        self.axes = axes
        self.reductions = self.mask if axes is not None else 0


def _convex(mask, anc, desc) -> bool:
    out = ~mask
    return not (anc & out) & (desc & out)


def _reads_own_reduction(groups, pred_mask, extra_reductions=0) -> bool:
    """Would a member of the union of ``groups`` read a reduction of that union?"""
    reductions = extra_reductions
    for g in groups:
        reductions |= g.reductions
    return any(pred_mask[m] & reductions for g in groups for m in g.members)


def _try_join(groups, i, anc, desc, axes, pred_mask):
    """Can node i join the union of ``groups``? Returns the merged facts or None."""
    if _reads_own_reduction(groups, pred_mask, (1 << i) if axes is not None else 0) or \
            pred_mask[i] & sum(g.reductions for g in groups):
        return None
    mask, a, d = 1 << i, anc, desc
    red_axes = axes
    for g in groups:
        if g.axes is not None:
            if red_axes is not None and red_axes != g.axes:
                return None
            red_axes = g.axes
        mask |= g.mask
        a |= g.anc
        d |= g.desc
    if not _convex(mask, a, d):
        return None
    return mask, a, d, red_axes


def find_groups(graph: Graph) -> list[list[int]]:
    """Node indices of each fusion group, in topological order within each group."""
    nodes = graph.nodes
    index = {id(n): k for k, n in enumerate(nodes)}
    preds = []
    for n in nodes:
        preds.append({index[id(v.producer)] for v in n.inputs if v.producer is not None})
    pred_mask = [sum(1 << p for p in ps) for ps in preds]
    anc = [0] * len(nodes)
    for k, ps in enumerate(preds):
        a = 0
        for p in ps:
            a |= anc[p] | (1 << p)
        anc[k] = a
    succs = [[] for _ in nodes]
    for k, ps in enumerate(preds):
        for p in ps:
            succs[p].append(k)
    desc = [0] * len(nodes)
    for k in range(len(nodes) - 1, -1, -1):
        d = 0
        for s in succs[k]:
            d |= desc[s] | (1 << s)
        desc[k] = d

    group_of: dict[int, _Group] = {}
    for i, node in enumerate(nodes):
        domain = _domain(node)
        if domain is None:
            continue
        axes = node.attrs["axes"] if node.op in REDUCTIONS else None
        cands, banned = [], set()
        for p in sorted(preds[i]):
            g = group_of.get(p)
            if g is None or g.domain != domain:
                continue
            if g.reductions >> p & 1:
                banned.add(id(g))  # reads a reduction of g: must run after g's loop
            elif g not in cands:
                cands.append(g)
        cands = [g for g in cands if id(g) not in banned]
        choice = None
        if cands:
            merged = _try_join(cands, i, anc[i] | (1 << i), desc[i] | (1 << i), axes, pred_mask)
            if merged is not None:
                choice = (cands, merged)
            else:
                for g in sorted(cands, key=lambda g: -len(g.members)):
                    merged = _try_join([g], i, anc[i] | (1 << i), desc[i] | (1 << i), axes, pred_mask)
                    if merged is not None:
                        choice = ([g], merged)
                        break
        if choice is None:
            group_of[i] = _Group(i, domain, anc[i] | (1 << i), desc[i] | (1 << i), axes)
            continue
        joined, (mask, a, d, red_axes) = choice
        head = joined[0]
        for g in joined[1:]:
            head.members += g.members
            head.reductions |= g.reductions
            for m in g.members:
                group_of[m] = head
        head.members.append(i)
        head.members.sort()
        head.mask, head.anc, head.desc, head.axes = mask, a, d, red_axes
        if axes is not None:
            head.reductions |= 1 << i
        group_of[i] = head
    # horizontal: same-domain groups that read a common value run in one loop (read it once)
    readers: dict = {}
    for i, node in enumerate(nodes):
        g = group_of.get(i)
        if g is None:
            continue
        for v in node.inputs:
            p = v.producer
            if p is None or group_of.get(index[id(p)]) is not g:
                lst = readers.setdefault(v, [])
                if g not in lst:
                    lst.append(g)
    for lst in readers.values():
        live = [g for g in lst if group_of.get(g.members[0]) is g]
        for domain in dict.fromkeys(g.domain for g in live):
            same = [g for g in live if g.domain == domain]
            head = same[0]
            for g in same[1:]:
                if group_of.get(g.members[0]) is not g or g is head:
                    continue
                if head.axes is not None and g.axes is not None and head.axes != g.axes:
                    continue
                if _reads_own_reduction([head, g], pred_mask):
                    continue
                mask, a, d = head.mask | g.mask, head.anc | g.anc, head.desc | g.desc
                if not _convex(mask, a, d):
                    continue
                head.members = sorted(head.members + g.members)
                head.mask, head.anc, head.desc = mask, a, d
                head.axes = head.axes if head.axes is not None else g.axes
                head.reductions |= g.reductions
                for m in g.members:
                    group_of[m] = head
    groups = {id(g): g for g in group_of.values()}
    return [sorted(g.members) for g in groups.values()]


def _order(graph, groups):
    """A topological order of plain nodes and groups; groups that make a cycle are split."""
    while True:
        owner = {}
        for gid, members in enumerate(groups):
            for m in members:
                owner[m] = ("g", gid)
        index = {id(n): k for k, n in enumerate(graph.nodes)}
        q = nx.DiGraph()
        first = {}
        last_effect = None  # effects (gc.print) keep their program order: an edge between each two
        for k, node in enumerate(graph.nodes):
            me = owner.get(k, ("n", k))
            q.add_node(me)
            first.setdefault(me, k)
            if registry.has_effect(node):
                if last_effect is not None:
                    q.add_edge(last_effect, me)
                last_effect = me
            for v in node.inputs:
                if v.producer is not None:
                    src = owner.get(index[id(v.producer)], ("n", index[id(v.producer)]))
                    if src != me:
                        q.add_edge(src, me)
        try:
            return list(nx.lexicographical_topological_sort(q, key=lambda s: first[s])), groups
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(q)
            # split the smallest group of 2+ nodes on the cycle (a singleton split again loops forever)
            bad = min((s for edge in cycle for s in edge[:2] if s[0] == "g" and len(groups[s[1]]) > 1),
                      key=lambda s: len(groups[s[1]]))
            members = groups[bad[1]]
            groups = [g for k, g in enumerate(groups) if k != bad[1]] + [[m] for m in members]


def run(graph: Graph) -> Graph:
    graph = graph.clone()
    groups = find_groups(graph)
    order, groups = _order(graph, groups)
    nodes = graph.nodes
    users = {}
    for k, node in enumerate(nodes):
        for v in node.inputs:
            users.setdefault(v, set()).add(k)
    graph_outputs = set(graph.outputs)
    replace = {}
    new_nodes = []
    for kind, k in order:
        if kind == "n":
            node = nodes[k]
            node.inputs = [replace.get(v, v) for v in node.inputs]
            new_nodes.append(node)
            continue
        members = groups[k]
        member_set = set(members)
        inside = {v for m in members for v in nodes[m].outputs}
        inputs = []
        for m in members:
            for v in nodes[m].inputs:
                if v not in inside and v not in inputs:
                    inputs.append(v)
        outputs = [v for m in members for v in nodes[m].outputs
                   if v in graph_outputs or any(u not in member_set for u in users.get(v, ()))]
        if not outputs:
            continue  # nothing reads the group: dead code, dropped
        fused = fused_node(inputs, [nodes[m] for m in members], outputs, nodes[members[-1]].loc)
        fused.inputs = [replace.get(v, v) for v in inputs]
        replace.update(zip(outputs, fused.outputs))
        new_nodes.append(fused)
    return Graph(graph.inputs, new_nodes, [replace.get(v, v) for v in graph.outputs], graph.name).copy_meta(graph)
