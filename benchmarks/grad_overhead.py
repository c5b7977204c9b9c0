"""Gradient overhead: Rosenbrock value-and-gradient per call, and 100 steps of gradient descent.

Through the harness (each backend in a process of its own, samples round-robin,
float64, checked against a float64 NumPy reference before timing):

* ``task=value_and_grad``: ``value_and_grad(rosenbrock)(x)`` at x = [-1, 2], with
  rosenbrock(x) = 100 (x1 - x0^2)^2 + (1 - x0)^2 (the autodiff issue's example):
  graphc ``gc.value_and_grad``, PyTorch eager autograd, ``jax.jit(jax.value_and_grad)``,
  a hand-written ``numba.njit`` returning the hand-derived value and gradient, and
  the same hand-derived formulas in NumPy (the baseline).
* ``task=descent``: 100 steps of x <- x - 0.1 grad f(x) from (2, 2) on
  f(x) = (x1 - x0^2)^2 + (1 - x0)^2 (examples/rosenbrock.py's function). Each
  backend runs a Python loop of 100 calls of its compiled step (value and gradient
  and update in one call), as a user would write it; ``jax.jit (fori_loop)`` and
  ``numba (loop in njit)`` compile the whole loop. ``graphc (loop traced)`` traces
  the whole unrolled loop into one graph; it is not run unless named with
  ``--backends`` because compiling that 1800-node graph takes minutes today.

Targets (issue 3): per call at least 20x faster than PyTorch eager, at least 3x
faster than jax.jit, within 3x of the hand-written Numba function.

    python benchmarks/grad_overhead.py [--quick] [--backends graphc,numba,...]
"""
from __future__ import annotations

import sys

import numpy as np

import harness

NAME = "grad_overhead"
TITLE = "Gradient overhead: Rosenbrock value-and-gradient (float64)"
BACKENDS = ("numpy", "graphc", "numba", "jax.jit", "torch",
            "numba (loop in njit)", "jax.jit (fori_loop)")
EXTRA_BACKENDS = ("graphc (loop traced)",)
CASES = [{"task": "value_and_grad"}, {"task": "descent", "steps": 100, "lr": 0.1}]


def rosenbrock(x):
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def f2(x):
    return (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


# hand-derived, for the NumPy baseline and the reference
def rosenbrock_vg_numpy(x):
    a = x[1] - x[0] ** 2
    return 100 * a ** 2 + (1 - x[0]) ** 2, np.array([-400 * a * x[0] - 2 * (1 - x[0]), 200 * a])


def f2_step_numpy(x, lr):
    a = x[1] - x[0] ** 2
    value = a ** 2 + (1 - x[0]) ** 2
    grad = np.array([-4 * a * x[0] - 2 * (1 - x[0]), 2 * a])
    return x - lr * grad, value


def python_loop(step, steps):
    """100 steps as a user writes them: a Python loop around a compiled step."""
    def descend(x, lr):
        value = None
        for _ in range(steps):
            x, value = step(x, lr)
        return x, value
    return descend


def inputs(case):
    if case["task"] == "value_and_grad":
        return (np.array([-1.0, 2.0]),)
    return (np.array([2.0, 2.0]), case["lr"])


def reference(case, *args):
    if case["task"] == "value_and_grad":
        return rosenbrock_vg_numpy(*args)
    return python_loop(f2_step_numpy, case["steps"])(*args)


def build(backend, case, *args):
    task = case["task"]
    whole_loop = backend in ("numba (loop in njit)", "jax.jit (fori_loop)", "graphc (loop traced)")
    if task == "value_and_grad" and whole_loop:
        raise harness.Skip("a whole-loop variant; only for task=descent")
    steps = case.get("steps")

    if backend == "numpy":
        return (rosenbrock_vg_numpy, args) if task == "value_and_grad" else \
            (python_loop(f2_step_numpy, steps), args)

    if backend.startswith("graphc"):
        import graphc as gc
        if task == "value_and_grad":
            return gc.value_and_grad(rosenbrock), args
        vg = gc.value_and_grad(f2)

        def step(x, lr):
            value, grad = vg(x)
            return x - lr * grad, value
        if backend == "graphc":
            return python_loop(gc.trace(step), steps), args
        return gc.trace(python_loop(step, steps)), args  # unrolled into one graph

    if backend.startswith("numba"):
        from numba import njit

        @njit(cache=False)
        def rosenbrock_vg(x):
            a = x[1] - x[0] ** 2
            grad = np.empty(2)
            grad[0] = -400 * a * x[0] - 2 * (1 - x[0])
            grad[1] = 200 * a
            return 100 * a ** 2 + (1 - x[0]) ** 2, grad

        @njit(cache=False)
        def f2_step(x, lr):
            a = x[1] - x[0] ** 2
            out = np.empty(2)
            out[0] = x[0] - lr * (-4 * a * x[0] - 2 * (1 - x[0]))
            out[1] = x[1] - lr * (2 * a)
            return out, a ** 2 + (1 - x[0]) ** 2

        if task == "value_and_grad":
            return rosenbrock_vg, args
        if backend == "numba":
            return python_loop(f2_step, steps), args

        @njit(cache=False)
        def descend(x, lr):
            value = 0.0
            for _ in range(steps):
                x, value = f2_step(x, lr)
            return x, value
        return descend, args

    if backend.startswith("jax"):
        import jax
        harness.jax_x64("float64")
        x = harness.to_jax(args[0])
        if task == "value_and_grad":
            return jax.jit(jax.value_and_grad(rosenbrock)), (x,)
        vg = jax.value_and_grad(f2)

        def step(x, lr):
            value, grad = vg(x)
            return x - lr * grad, value
        if backend == "jax.jit":
            return python_loop(jax.jit(step), steps), (x, args[1])

        def descend(x, lr):
            def body(_, carry):
                return step(carry[0], lr)
            return jax.lax.fori_loop(0, steps, body, (x, x[0] * 0))
        return jax.jit(descend), (x, args[1])

    if backend == "torch":
        import torch
        x = harness.to_torch(args[0])

        def value_and_grad(fn):
            def vg(x):
                x = x.detach().requires_grad_(True)
                value = fn(x)
                (grad,) = torch.autograd.grad(value, x)
                return value.detach(), grad
            return vg
        if task == "value_and_grad":
            return value_and_grad(rosenbrock), (x,)
        vg = value_and_grad(f2)

        def step(x, lr):
            value, grad = vg(x)
            return x - lr * grad, value
        return python_loop(step, steps), (x, args[1])

    raise harness.Skip(f"no {backend} version")


def _median(results, task, backend):
    for entry in results["cases"]:
        if entry["case"]["task"] == task:
            return entry["backends"].get(backend, {}).get("median_s")
    return None


def summarize(results):
    lines = ["Targets (issue 3), task=value_and_grad per call:", ""]
    t = {b: _median(results, "value_and_grad", b) for b in ("graphc", "torch", "jax.jit", "numba")}
    g = t["graphc"]
    if g and t["torch"]:
        r = t["torch"] / g
        lines.append(f"- PyTorch eager / graphc = {r:.1f}x (target >= 20x): {'met' if r >= 20 else 'MISSED'}")
    if g and t["jax.jit"]:
        r = t["jax.jit"] / g
        lines.append(f"- jax.jit / graphc = {r:.1f}x (target >= 3x): {'met' if r >= 3 else 'MISSED'}")
    if g and t["numba"]:
        r = g / t["numba"]
        lines.append(f"- graphc / hand-written numba = {r:.2f} (target <= 3): {'met' if r <= 3 else 'MISSED'}")
    d = {b: _median(results, "descent", b) for b in ("graphc", "torch", "jax.jit", "numba")}
    if d["graphc"]:
        lines += ["", "task=descent (100 steps, Python loop around each system's compiled step): " +
                  ", ".join(f"{b} / graphc = {d[b] / d['graphc']:.2f}" for b in ("torch", "jax.jit", "numba")
                            if d[b])]
    return lines


if __name__ == "__main__":
    harness.main(__name__, sys.argv[1:])
