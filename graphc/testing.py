"""Testing helpers for code built on graphc: gradient checking against finite differences.

``check_grads(fn, args, order=2)`` is public API, in the spirit of
``jax.test_util.check_grads`` and ``torch.autograd.gradcheck``::

    import numpy as np, graphc as gc
    from graphc.testing import check_grads

    check_grads(lambda x, w: np.tanh(x @ w), (np.ones((3, 4)), np.ones((4, 2))), order=2)
"""
from __future__ import annotations

import inspect

import numpy as np

from graphc import pytree
from graphc.api import grad
from graphc.interpret import interpret
from graphc.runtime import TracedFunction, is_dynamic
from graphc.trace import Tracer, rebuild_outputs, trace_into_graph

__all__ = ["check_grads", "GradientCheckError"]


class GradientCheckError(AssertionError):
    """Reverse-mode derivatives disagree with finite differences (raised by ``check_grads``)."""


def _is_float_leaf(leaf) -> bool:
    if isinstance(leaf, bool):
        return False
    if isinstance(leaf, float):
        return True
    return isinstance(leaf, (np.ndarray, np.generic)) and np.asarray(leaf).dtype.kind == "f"


def _arg_names(fn, nargs):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(nargs):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY, params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        elif params and params[-1].kind == params[-1].VAR_POSITIONAL and i >= len(params) - 1:
            names.append(f"{params[-1].name}[{i - len(params) + 1}]")
        else:
            names.append(f"args[{i}]")
    return names


def _fmt(a, limit=600) -> str:
    text = np.array2string(np.asarray(a), precision=6, separator=", ", threshold=60)
    return text if len(text) <= limit else text[:limit] + " ..."


def check_grads(fn, args, order=2, *, argnums=None, rtol=1e-5, atol=1e-7, eps=1e-5, seed=0,
                compiled=False, directions=1):
    """Check ``fn``'s reverse-mode derivatives against central finite differences.

    Parameters
    ----------
    fn : callable
        A function graphc can trace. It may return an array, a scalar, or a
        pytree of them; a non-scalar result is reduced to the scalar
        ``sum(out * w)`` with a fixed random cotangent ``w`` (one per floating
        output leaf; integer and boolean outputs are ignored).
    args : tuple
        The point to check at (a single array is taken as ``(array,)``). Each
        argument may be a pytree (tuple/list/dict) of arrays or numbers.
        Floating-point leaves are converted to float64 and are the variables;
        integer and boolean leaves (indices, masks) and non-array arguments stay
        fixed and are not differentiated.
    order : 1 or 2
        1 checks the gradient. 2 also checks gradients of gradients: the
        Hessian-vector products ``gc.grad(lambda *a: <gc.grad(fn)(*a), u>)`` for a
        random ``u``, against finite differences of the (already checked) first
        order gradient.
    argnums : int, tuple of ints or None
        The positions of the arguments to differentiate (all by default).
    rtol, atol, eps : float
        Central differences ``(f(x + eps v) - f(x - eps v)) / (2 eps)`` along a
        random normal direction ``v`` are compared with ``<grad, v>``; they pass
        when ``|fd - ad| <= atol + rtol * sum(|grad * v|) + (rounding error of the
        difference quotient)``.
    seed : int
        Seed of the random directions and cotangents (the failure message names it).
    compiled : bool
        False (the default) evaluates the traced graph, forward and backward nodes
        exactly as ``gc.grad`` builds them, with graphc's NumPy reference
        interpreter: nothing is compiled, so it is cheap to run on many shapes.
        True compiles that same graph with the pass pipeline and the Numba backend
        (one compile per call) and uses it for every evaluation, and also checks
        its outputs at ``args`` against the interpreter.
    directions : int
        How many random directions to try per argument leaf.

    Each floating-point leaf is checked separately (the others held fixed), so a
    failure names the argument. It raises ``GradientCheckError`` (an
    ``AssertionError``) with the argument, the expected (finite differences) and
    obtained (reverse mode) directional derivatives, the direction, and for small
    arrays the gradient elementwise next to its finite-difference estimate.
    Returns None when all checks pass.
    """
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order!r}")
    if not isinstance(args, (tuple, list)):
        args = (args,)
    args = tuple(args)
    names = _arg_names(fn, len(args))
    fn_name = getattr(fn, "__name__", type(fn).__name__)
    if argnums is None:
        nums = tuple(range(len(args)))
    else:
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        for i in nums:
            if not 0 <= i < len(args):
                raise ValueError(f"check_grads: argnums {argnums} is out of range for {len(args)} arguments")

    # the variables: floating leaves of the chosen arguments, in float64
    leaves, treedef = pytree.flatten(args)
    labels, owner = [], []
    for i, a in enumerate(args):
        for path in pytree.leaf_paths(a, names[i]):
            labels.append(path)
            owner.append(i)
    var_idx = [k for k, leaf in enumerate(leaves) if owner[k] in nums and _is_float_leaf(leaf)]
    if not var_idx:
        raise ValueError(f"check_grads: {fn_name} has no floating-point argument to differentiate "
                         f"(argnums={argnums}); integer and boolean arguments have no gradient")
    fixed = [np.asarray(leaf, np.float64) if _is_float_leaf(leaf) else leaf for leaf in leaves]
    x0 = [np.array(fixed[k], dtype=np.float64) for k in var_idx]
    n = len(var_idx)
    rng = np.random.default_rng(seed)
    us = [rng.standard_normal(x.shape) for x in x0]  # the Hessian-vector product directions
    cotangents = {}

    def scalarized(*xs):
        full = list(fixed)
        for k, x in zip(var_idx, xs):
            full[k] = x
        out = fn(*pytree.unflatten(treedef, full))
        out_leaves, _ = pytree.flatten(out)
        floats = [o for o in out_leaves if isinstance(o, Tracer) and o.dtype.kind == "f"]
        if not floats:
            raise ValueError(f"check_grads: {fn_name} returned no floating-point value that depends on "
                             f"its arguments")
        total = None
        for j, o in enumerate(floats):
            if not o.shape and len(floats) == 1:
                term = o  # a scalar function is checked as is
            else:
                if (j, o.shape) not in cotangents:
                    cotangents[(j, o.shape)] = np.random.default_rng([seed, 7, j]).standard_normal(o.shape)
                term = (o * cotangents[(j, o.shape)]).sum()
            total = term if total is None else total + term
        return total

    wrt = tuple(range(n))

    def first(*xs):
        return grad(scalarized, argnums=wrt)(*xs)

    def hvp(*xs):
        gs = first(*xs)
        return sum((g * u).sum() for g, u in zip(gs, us))

    def everything(*xs):
        outs = [scalarized(*xs), *first(*xs)]
        if order == 2:
            outs += [hvp(*xs), *grad(hvp, argnums=wrt)(*xs)]
        return outs

    builder, out_spec = trace_into_graph(everything, tuple(x0), {}, is_dynamic, f"check_grads_{fn_name}")
    graph = builder.graph
    bound = [st._data for st in builder.state_inputs]  # captured arrays and States the trace read

    def run_interpreted(xs):
        return [np.asarray(o, np.float64) for o in rebuild_outputs(out_spec, interpret(graph, *xs, *bound))]

    if compiled:
        traced = TracedFunction(everything, name=f"check_grads_{fn_name}".replace("<lambda>", "lambda"),
                               compile="eager")  # (the compiled code itself, not the interpreter tier)

        def run(xs):
            return [np.asarray(o, np.float64) for o in traced(*xs)]

        got, want = run(x0), run_interpreted(x0)
        for k, (a, b) in enumerate(zip(got, want)):
            scale = float(np.max(np.abs(b), initial=1.0, where=np.isfinite(b)))
            if not np.allclose(a, b, rtol=1e-8, atol=1e-10 * scale, equal_nan=True):
                what = "the value" if k == 0 else f"output {k} (gradients follow the value)"
                raise GradientCheckError(
                    f"check_grads({fn_name}): the compiled graph and the NumPy interpreter disagree on "
                    f"{what}:\n  compiled:    {_fmt(a)}\n  interpreter: {_fmt(b)}")
    else:
        run = run_interpreted

    base = run(x0)
    if not np.isfinite(base[0]):
        raise ValueError(f"check_grads: {fn_name} is not finite at the given point (value {base[0]}); "
                         f"finite differences need a point where the function is finite")
    levels = [("gradient", 0, 1)]
    if order == 2:
        levels.append(("Hessian-vector product (gradient of <grad, u>)", 1 + n, 2 + n))

    for m, k in enumerate(var_idx):
        label = labels[k]
        for d in range(directions):
            v = np.random.default_rng([seed, 11, m, d]).standard_normal(x0[m].shape)

            def at(t, m=m, v=v):
                xs = list(x0)
                xs[m] = x0[m] + t * v
                return run(xs)

            plus, minus = at(eps), at(-eps)
            for what, value_pos, grad_pos in levels:
                g = base[grad_pos + m]
                fd = (plus[value_pos] - minus[value_pos]) / (2 * eps)
                fd, ad = float(fd), float(np.sum(g * v))
                scale = float(np.sum(np.abs(g * v)))
                rounding = 8 * np.finfo(np.float64).eps * (abs(plus[value_pos]) + abs(minus[value_pos])) / eps
                tol = atol + rtol * scale + rounding
                if np.isfinite(fd) and np.isfinite(ad) and abs(fd - ad) <= tol:
                    continue
                raise GradientCheckError(_message(
                    fn_name, what, order, label, x0[m], v, fd, ad, tol, g, seed, eps, rtol, atol,
                    lambda t, m=m: run(x0[:m] + [t] + x0[m + 1:]), value_pos,
                    us[m] if value_pos else None, bool(cotangents)))


def _message(fn_name, what, order, label, x, v, fd, ad, tol, g, seed, eps, rtol, atol, run_at,
             value_pos, u, scalarized):
    lines = [
        f"check_grads({fn_name}, order={order}): the reverse-mode {what} with respect to {label} "
        f"(shape {x.shape}) disagrees with central finite differences.",
        f"  along a random direction v (seed={seed}), d/dt f({label} + t v) at t=0:",
        f"    expected (finite differences, eps={eps:g}): {fd!r}",
        f"    got (reverse mode, <gradient, v>):        {ad!r}",
        f"    |difference| = {abs(fd - ad):.3g} > tolerance {tol:.3g} (rtol={rtol:g}, atol={atol:g})",
    ]
    if not (np.isfinite(fd) and np.isfinite(ad)):
        lines.append("    (a non-finite value: the gradient has NaN/inf where finite differences "
                     "do not, or the function is not smooth here)")
    if scalarized:
        lines.append("  the non-scalar output was reduced to sum(out * w) with a fixed random cotangent w")
    if u is not None:
        lines.append("  u = " + _fmt(u).replace("\n", "\n    "))
    if x.size <= 64:  # elementwise finite differences: which entries are wrong
        fd_full = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            e = np.zeros(x.shape)
            e[idx] = eps
            fd_full[idx] = (run_at(x + e)[value_pos] - run_at(x - e)[value_pos]) / (2 * eps)
        err = np.abs(fd_full - g)
        err = np.where(np.isnan(err), np.inf, err)
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), x.shape)) if x.shape else ()
        lines += [f"  expected {what} (finite differences, elementwise):",
                  "    " + _fmt(fd_full).replace("\n", "\n    "),
                  f"  got {what} (reverse mode):",
                  "    " + _fmt(g).replace("\n", "\n    "),
                  f"  worst entry {label}{list(worst)}: expected {float(fd_full[worst])!r}, got {float(g[worst])!r}"]
    else:
        lines.append(f"  got {what}: {_fmt(g)}")
    lines += [f"  at {label} = " + _fmt(x).replace("\n", "\n    "),
              "  direction v = " + _fmt(v).replace("\n", "\n    ")]
    return "\n".join(lines)
