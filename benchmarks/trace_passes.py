"""How long tracing and the pass pipeline take on large graphs (issue 4: under 0.5 s for 1000 nodes).

Times, in this process, the two front-end steps a first call pays before Numba
compiles anything: tracing the Python function into a graph, and each pipeline
(O1, O2) over that graph, per pass (``PassStat``). No code is generated or
compiled. Graphs:

* ``chain``: 200 repetitions of ``y = tanh(y*w + 0.5) - 0.01*y`` on (16, 8), then a sum:
  ~1000 elementwise nodes that fusion folds into one group;
* ``grad``: ``value_and_grad`` of ``chain``: forward plus backward, ~2800 nodes;
* ``mlp``: forward and backward of a 40-layer tanh MLP (matmuls, broadcasts, reductions,
  transposes) written by hand: the graph passes cannot fold into one group.

Each figure is the median of ``--repeats`` runs after one warm-up run.

    python benchmarks/trace_passes.py            # prints markdown; writes results/trace_passes.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
os.environ.setdefault("GRAPHC_COMPILE", "eager")  # time compiled code, not the interpreter tier


def chain(x, w):
    y = x
    for _ in range(200):
        y = np.tanh(y * w + 0.5) - 0.01 * y
    return np.sum(y)


def mlp(x, *ws):
    hs = [x]
    for w in ws:  # forward
        hs.append(np.tanh(hs[-1] @ w))
    loss = np.sum(hs[-1] ** 2)
    g = 2 * hs[-1]
    grads = []
    for w, h_in, h_out in zip(ws[::-1], hs[-2::-1], hs[:0:-1]):  # backward, by hand
        g = g * (1 - h_out * h_out)
        grads.append(h_in.T @ g)
        g = g @ w.T
    return loss, grads


def workloads():
    import graphc as gc
    rng = np.random.default_rng(0)
    x, w = np.ones((16, 8), np.float32), np.ones(8, np.float32)
    ws = [rng.standard_normal((32, 32)).astype(np.float32) * 0.2 for _ in range(40)]
    return {
        "chain": (chain, (x, w)),
        "grad": (gc.value_and_grad(chain, argnums=(0, 1)).fn, (x, w)),
        "mlp": (mlp, (rng.standard_normal((64, 32)).astype(np.float32), *ws)),
    }


def measure(fn, args, pipeline):
    from graphc.runtime import is_dynamic
    from graphc.trace import trace_into_graph
    from graphc.passes import manager

    start = time.perf_counter()
    builder, _ = trace_into_graph(fn, args, {}, is_dynamic)
    traced = time.perf_counter()
    graph, stats = manager.run(builder.graph, pipeline)
    done = time.perf_counter()
    return {"nodes": len(builder.graph.nodes), "after": len(graph.nodes), "trace_s": traced - start,
            "passes_s": done - traced, "per_pass": _per_pass(stats)}


def _per_pass(stats):
    """Seconds per pass name (a pass that runs twice, e.g. simplify, is summed)."""
    out = {}
    for s in stats:
        out[s.name] = out.get(s.name, 0.0) + s.seconds
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    lines = ["### Trace + passes time (no code generation)", "",
             "| graph | pipeline | nodes traced -> after | trace | passes | total | slowest passes |",
             "|---|---|---|---|---|---|---|"]
    for name, (fn, fargs) in workloads().items():
        for pipeline in ("O1", "O2"):
            measure(fn, fargs, pipeline)  # warm-up: imports, first-use caches
            runs = [measure(fn, fargs, pipeline) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("trace_s", "passes_s")}
            per_pass = {}
            for r in runs:
                for k, v in r["per_pass"].items():
                    per_pass.setdefault(k, []).append(v)
            slow = sorted(((statistics.median(v), k) for k, v in per_pass.items()), reverse=True)[:3]
            lines.append(f"| {name} | {pipeline} | {runs[0]['nodes']} -> {runs[0]['after']} | "
                         f"{med['trace_s'] * 1e3:.0f} ms | {med['passes_s'] * 1e3:.0f} ms | "
                         f"{(med['trace_s'] + med['passes_s']) * 1e3:.0f} ms | "
                         + ", ".join(f"{k} {s * 1e3:.0f} ms" for s, k in slow) + " |")
    lines += ["", f"- {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"Python {platform.python_version()}; median of {args.repeats} runs after one warm-up; "
              f"load average at end {os.getloadavg()}"]
    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "trace_passes.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
