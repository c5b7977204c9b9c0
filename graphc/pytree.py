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

    def rec(x):
        if _is_namedtuple(x):
            return ("namedtuple", type(x), tuple(rec(e) for e in x))
        if type(x) is tuple:
            return ("tuple", tuple(rec(e) for e in x))
        if type(x) is list:
            return ("list", tuple(rec(e) for e in x))
        if type(x) is dict:
            keys = tuple(x)
            return ("dict", keys, tuple(rec(x[k]) for k in keys))
        leaves.append(x)
        return LEAF

    return leaves, rec(tree)


def unflatten(treedef, leaves):
    it = iter(leaves)

    def rec(d):
        if d == LEAF:
            return next(it)
        kind = d[0]
        if kind == "tuple":
            return tuple(rec(c) for c in d[1])
        if kind == "list":
            return [rec(c) for c in d[1]]
        if kind == "dict":
            return {k: rec(c) for k, c in zip(d[1], d[2])}
        return d[1](*(rec(c) for c in d[2]))  # namedtuple

    return rec(treedef)


def leaf_paths(tree, prefix: str):
    """Readable paths of the leaves, in flatten order: ``x``, ``params['w']``, ``xs[1]``."""
    paths = []

    def rec(x, path):
        if isinstance(x, (tuple, list)) and (type(x) in (tuple, list) or _is_namedtuple(x)):
            for i, e in enumerate(x):
                rec(e, f"{path}[{i}]")
        elif type(x) is dict:
            for k, e in x.items():
                rec(e, f"{path}[{k!r}]")
        else:
            paths.append(path)

    rec(tree, prefix)
    return paths
