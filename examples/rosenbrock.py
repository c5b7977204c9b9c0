"""Gradient descent on a Rosenbrock function with graphc's compiled gradients.

    f(x1, x2) = (x2 - x1^2)^2 + (1 - x1)^2        minimum 0 at (1, 1)

Starting from (2, 2), 100 steps of ``x <- x - lr * grad f(x)`` with three
learning-rate schedules:

* lr = 0.1                          converges toward (1, 1)
* lr = 0.2                          too large: bounces across the valley, does not converge
* lr = 0.2 / (1 + 0.01 * iteration) time-based decay: starts like 0.2, then settles

One compiled step (value, gradient and update in one graph) serves all three:
the learning rate is a runtime argument, so changing it never retraces.
Then the whole descent in one call: ``gc.fori_loop`` keeps the 100 steps a loop
inside one compiled graph (compiled once, whatever the number of steps; a Python
loop inside a traced function would be unrolled into 100 copies of the step),
and the schedule's parameters are runtime arguments again. Its results must
equal the Python loop's.
Prints a table of final points and losses; with matplotlib installed it also
saves a contour plot of the three trajectories and a quiver plot of the
gradient field (``--out``, default rosenbrock.png).

    python examples/rosenbrock.py [--steps 100] [--out rosenbrock.png] [--no-plot]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc


def f(x):
    """The function to minimize, on an array x = [x1, x2]."""
    return (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


@gc.trace
def step(x, lr):
    """One gradient-descent step; returns the new point, and the loss and gradient at x."""
    loss, g = gc.value_and_grad(f)(x)
    return x - lr * g, loss, g


def learning_rate(lr0, decay, it):
    """Time-based decay, lr0 / (1 + decay * it): a constant rate when decay is 0."""
    return lr0 / (1 + decay * it)


SCHEDULES = {  # name: (lr0, decay)
    "lr = 0.1": (0.1, 0.0),
    "lr = 0.2": (0.2, 0.0),
    "lr = 0.2 / (1 + 0.01 it)": (0.2, 0.01),
}


def descend(schedule, steps, start=(2.0, 2.0)):
    """A Python loop of compiled steps; returns the path and the final loss."""
    x = np.array(start)
    path = [x]
    for it in range(steps):
        x, _, _ = step(x, learning_rate(*schedule, it))
        path.append(x)
    return np.array(path), float(f(x))


@gc.trace(static_argnums=3)
def descend_in_one_call(x, lr0, decay, steps):
    """The whole descent as one compiled call: ``steps`` is static (the loop's trip count),
    ``lr0`` and ``decay`` are runtime arguments. Returns the final point and its loss."""
    def body(it, x):
        return x - learning_rate(lr0, decay, it) * gc.gradient(f(x), x)
    x = gc.fori_loop(0, steps, body, x)
    return x, f(x)


def plot(paths, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed: skipping the plot (pip install matplotlib to get it)")
        return
    # the gradient field, from one compiled call over the whole grid: the gradient of
    # sum(f(X1, X2)) w.r.t. the grids is f's gradient at every grid point
    fgrid = lambda X1, X2: (X2 - X1 ** 2) ** 2 + (1 - X1) ** 2  # noqa: E731
    field = gc.grad(lambda X1, X2: np.sum(fgrid(X1, X2)), argnums=(0, 1))
    x1, x2 = np.meshgrid(np.linspace(-2.0, 2.5, 200), np.linspace(-1.0, 3.5, 200))
    qx1, qx2 = np.meshgrid(np.linspace(-2.0, 2.5, 19), np.linspace(-1.0, 3.5, 19))
    g1, g2 = field(qx1, qx2)
    norm = np.hypot(g1, g2) + 1e-12

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5))
    ax1.contour(x1, x2, fgrid(x1, x2), levels=np.logspace(-2, 2.5, 25), colors="0.65", linewidths=0.7)
    for (name, path), color in zip(paths.items(), ["tab:blue", "tab:red", "tab:green"]):
        ax1.plot(path[:, 0], path[:, 1], ".-", color=color, lw=1, ms=3, label=name)
    ax1.plot([1], [1], "k*", ms=12, label="minimum (1, 1)")
    ax1.set(xlim=(-2, 2.5), ylim=(-1, 3.5), xlabel="x1", ylabel="x2", title="gradient descent from (2, 2)")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.contour(x1, x2, fgrid(x1, x2), levels=np.logspace(-2, 2.5, 25), colors="0.75", linewidths=0.5)
    ax2.quiver(qx1, qx2, -g1 / norm, -g2 / norm, np.log10(norm), cmap="viridis", angles="xy")
    ax2.set(xlabel="x1", ylabel="x2", title="-grad f / |grad f| (color: log10 |grad f|)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"\nsaved the trajectories and the gradient field to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="rosenbrock.png")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    x0 = np.array([2.0, 2.0])
    _, loss, g = step(x0, 0.1)  # the first call traces, then compiles or hands that to a worker
    first = time.perf_counter() - start
    how = ("by the NumPy interpreter, while Numba compiles in the background" if step.interpreted_calls
           else "traced and compiled")
    print(f"f(2, 2) = {loss:g}, grad f(2, 2) = {g}  (first call: {first:.2f} s, {how})\n")

    paths, rows = {}, []
    start = time.perf_counter()
    for name, schedule in SCHEDULES.items():
        path, loss = descend(schedule, args.steps)
        paths[name] = path
        x1, x2 = path[-1]
        converged = np.isfinite(loss) and np.hypot(x1 - 1, x2 - 1) < 0.05
        rows.append((name, x1, x2, loss, "yes" if converged else "no"))
    elapsed = time.perf_counter() - start

    print(f"{'schedule':<26} {'x1':>10} {'x2':>10} {'loss':>12}  converged to (1, 1)")
    print("-" * 76)
    for name, x1, x2, loss, ok in rows:
        print(f"{name:<26} {x1:>10.5f} {x2:>10.5f} {loss:>12.4e}  {ok}")
    print(f"\n{len(SCHEDULES)} x {args.steps} steps in {elapsed * 1e3:.1f} ms "
          f"({elapsed / (len(SCHEDULES) * args.steps) * 1e6:.1f} us per step; "
          f"{step.interpreted_calls} of the {1 + len(SCHEDULES) * args.steps} calls ran in the NumPy interpreter "
          f"while Numba compiled)")

    one_call_rows = one_call(paths, args.steps)
    if not args.no_plot:
        plot(paths, args.out)
    return rows, one_call_rows


def one_call(paths, steps):
    """The three schedules again, each one call of ``descend_in_one_call`` (a gc.fori_loop),
    checked against the Python loop's final points."""
    print(f"\nthe whole descent in one call (gc.fori_loop over {steps} steps):")
    x0 = np.array([2.0, 2.0])
    start = time.perf_counter()
    descend_in_one_call(x0, *SCHEDULES["lr = 0.1"], steps)
    first = time.perf_counter() - start
    rows = []
    start = time.perf_counter()
    for name, schedule in SCHEDULES.items():
        x, loss = descend_in_one_call(x0, *schedule, steps)
        rows.append((name, x, float(loss)))
    elapsed = time.perf_counter() - start
    print(f"{'schedule':<26} {'x1':>10} {'x2':>10} {'loss':>12}  same as the Python loop")
    print("-" * 76)
    for name, x, loss in rows:
        # the same float64 operations in the same order: equal to rounding (same bits where no
        # operation was contracted or reassociated)
        same = np.allclose(x, paths[name][-1], rtol=1e-12, atol=1e-12, equal_nan=True)
        print(f"{name:<26} {x[0]:>10.5f} {x[1]:>10.5f} {loss:>12.4e}  {'yes' if same else 'NO'} "
              f"(max difference {np.max(np.abs(x - paths[name][-1])):.1e})")
    how = ("by the NumPy interpreter, while Numba compiles in the background"
           if descend_in_one_call.interpreted_calls else "traced and compiled")
    print(f"\nfirst call {first:.2f} s ({how}); then {len(SCHEDULES)} calls of {steps} steps each in "
          f"{elapsed * 1e3:.1f} ms ({elapsed / len(SCHEDULES) * 1e6:.0f} us per call; "
          f"{descend_in_one_call.interpreted_calls} of the {1 + len(SCHEDULES)} calls ran in the NumPy "
          f"interpreter)")
    return rows


if __name__ == "__main__":
    main()
