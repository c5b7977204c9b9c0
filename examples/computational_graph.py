"""A computational graph and its backward pass, next to the chain rule by hand.

    f(x, y, z) = tanh(ln(1 + z * 2x / sin(y)))

graphc traces ``f`` into a graph of primitive ops. ``gc.value_and_grad`` adds
the backward nodes to the same graph (autodiff is a graph transform), so one
compiled call returns the value and all three partial derivatives. This script
prints:

1. the forward graph, one node per line (``%k`` are values, ``# file:line`` is
   where each node came from);
2. the same graph with its backward nodes (below the marker line), each the vjp
   rule of one forward op;
3. the optimized graph that actually runs (after constant folding, CSE, fusion);
4. the gradients from graphc next to the chain rule worked out by hand.

    python examples/computational_graph.py [x y z]
"""
from __future__ import annotations

import sys

import numpy as np

import graphc as gc


def f(x, y, z):
    u = z * 2 * x / np.sin(y)   # one line per step, so each node's "# file:line" tells them apart
    v = 1 + u
    w = np.log(v)
    return np.tanh(w)


def by_hand(x, y, z):
    """The chain rule, one intermediate at a time."""
    s = np.sin(y)
    u = z * 2 * x / s          # u = 2xz / sin y
    v = 1 + u                  # v = 1 + u
    w = np.log(v)              # w = ln v
    t = np.tanh(w)             # f = tanh w
    df_dw = 1 - t ** 2         # d tanh(w)/dw = 1 - tanh^2 w
    dw_dv = 1 / v              # d ln(v)/dv = 1/v
    df_du = df_dw * dw_dv      # dv/du = 1
    steps = [("u = 2xz / sin(y)", u), ("v = 1 + u", v), ("w = ln(v)", w), ("f = tanh(w)", t),
             ("df/dw = 1 - tanh(w)^2", df_dw), ("dw/dv = 1 / v", dw_dv), ("df/du = df/dw * dw/dv", df_du)]
    grads = {
        "df/dx": (df_du * 2 * z / s, "df/du * 2z / sin(y)"),
        "df/dy": (df_du * -2 * x * z * np.cos(y) / s ** 2, "df/du * -2xz cos(y) / sin(y)^2"),
        "df/dz": (df_du * 2 * x / s, "df/du * 2x / sin(y)"),
    }
    return t, steps, grads


def with_marker(graph, n_forward):
    """The graph's text with a line between the forward nodes and the backward ones."""
    lines = str(graph).splitlines()
    # line 0 is the header; node k is line k + 1
    marker = "  # ---- backward: the vjp rules of the nodes above, in reverse order ----"
    return "\n".join(lines[:n_forward + 1] + [marker] + lines[n_forward + 1:])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    x, y, z = (float(a) for a in argv) if argv else (0.5, 1.0, 1.5)
    print(f"f(x, y, z) = tanh(ln(1 + z * 2x / sin(y)))   at x = {x}, y = {y}, z = {z}\n")

    # 1. the forward graph as traced ("O0": no passes, so every primitive shows)
    forward = gc.trace(f, passes="O0").lower(x, y, z)
    print("1. forward graph")
    print(forward.graph, "\n")

    # 2. the same trace with reverse-mode differentiation: backward nodes appended
    traced_grad = gc.value_and_grad(f, argnums=(0, 1, 2), passes="O0").lower(x, y, z)
    n_forward = len(forward.graph.nodes)
    n_backward = len(traced_grad.graph.nodes) - n_forward
    print(f"2. forward + backward graph ({n_forward} forward nodes, {n_backward} backward nodes)")
    print(with_marker(traced_grad.graph, n_forward), "\n")

    # 3. what runs: the default pipeline folds, deduplicates and fuses it
    value_and_grad = gc.value_and_grad(f, argnums=(0, 1, 2))
    value, (dx, dy, dz) = value_and_grad(x, y, z)
    print(f"3. optimized graph that is compiled and run ({len(value_and_grad.graph.nodes)} nodes)")
    print(value_and_grad.graph, "\n")

    # 4. graphc against the chain rule by hand
    t, steps, grads = by_hand(x, y, z)
    print("4. the chain rule by hand")
    for name, val in steps:
        print(f"   {name:<24} = {val: .12f}")
    print()
    print(f"   {'':8}{'graphc':>18}{'chain rule':>18}{'|difference|':>14}   formula")
    print(f"   {'f':8}{value:>18.12f}{t:>18.12f}{abs(value - t):>14.2e}")
    ok = abs(value - t) <= 1e-12 * max(1.0, abs(t))
    for (name, (want, formula)), got in zip(grads.items(), (dx, dy, dz)):
        print(f"   {name:8}{got:>18.12f}{want:>18.12f}{abs(got - want):>14.2e}   {formula}")
        ok &= abs(got - want) <= 1e-12 * max(1.0, abs(want))
    print("\n   graphc matches the chain rule" if ok else "\n   MISMATCH between graphc and the chain rule")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
