"""Nested tuples, lists, dicts (and namedtuples) of leaves: flatten and rebuild.

A treedef is a hashable description of the structure, so it can be part of a
compiled function's signature.
"""
from __future__ import annotations

LEAF = "*"


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def flatten(tree):
    """Return ``(leaves, treedef)``; leaves in depth-first order."""
    leaves = []
    return leaves, _flatten_into(tree, leaves)


# Module-level recursion, not a nested closure: a closure that calls itself is a
# reference cycle, and it would keep the leaves (the user's arrays, our outputs)
# alive until the cyclic GC runs, which defeats output recycling.
def _flatten_into(x, leaves):
    if _is_namedtuple(x):
        return ("namedtuple", type(x), tuple(_flatten_into(e, leaves) for e in x))
    if type(x) is tuple:
        return ("tuple", tuple(_flatten_into(e, leaves) for e in x))
    if type(x) is list:
        return ("list", tuple(_flatten_into(e, leaves) for e in x))
    if type(x) is dict:
        keys = tuple(x)
        return ("dict", keys, tuple(_flatten_into(x[k], leaves) for k in keys))
    leaves.append(x)
    return LEAF


def unflatten(treedef, leaves):
    """Rebuild the structure ``treedef`` describes from ``leaves`` (depth-first order)."""
    return _build(treedef, iter(leaves))


def _build(d, it):
    if d == LEAF:
        return next(it)
    kind = d[0]
    if kind == "tuple":
        return tuple(_build(c, it) for c in d[1])
    if kind == "list":
        return [_build(c, it) for c in d[1]]
    if kind == "dict":
        return {k: _build(c, it) for k, c in zip(d[1], d[2])}
    return d[1](*(_build(c, it) for c in d[2]))  # namedtuple


def leaf_paths(tree, prefix: str):
    """Readable paths of the leaves, in flatten order: ``x``, ``params['w']``, ``xs[1]``."""
    paths = []
    _paths_into(tree, prefix, paths)
    return paths


def _paths_into(x, path, paths):
    if isinstance(x, (tuple, list)) and (type(x) in (tuple, list) or _is_namedtuple(x)):
        for i, e in enumerate(x):
            _paths_into(e, f"{path}[{i}]", paths)
    elif type(x) is dict:
        for k, e in x.items():
            _paths_into(e, f"{path}[{k!r}]", paths)
    else:
        paths.append(path)
