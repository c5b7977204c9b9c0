"""What the op families offer each other: their public functions, looked up when called.

A family (elementwise, shape, reduction, ...) writes its vjp rules and NumPy
compositions with the others' functions as ``prims.reshape(g, shape)`` or
``prims.sum(x, axis=0)``. Each family registers what it offers with
``registry.export`` when ``graphc.ops`` imports it, so no family imports a
sibling and the families can be loaded in any order. A missing name raises
AttributeError naming the registered ones.
"""
from __future__ import annotations

from graphc.ops import registry


def __getattr__(name: str):
    try:
        return registry.FUNCTIONS[name]
    except KeyError:
        raise AttributeError(f"no op family exports {name!r}; exported: "
                             f"{', '.join(sorted(registry.FUNCTIONS))}") from None
