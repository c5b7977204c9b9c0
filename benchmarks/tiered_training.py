"""A whole training run from an empty compile cache: compile="background" against "eager".

    python benchmarks/tiered_training.py [--epochs 5] [--rounds 3]

Runs ``examples/train_digits.py`` (an MLP on scikit-learn's digits, Adam, a symbolic batch
dimension, test accuracy after each epoch) in a fresh process per run, each with an empty
GRAPHC_CACHE_DIR, alternating GRAPHC_COMPILE=background and eager. Reports the wall time of each
process (import to exit), the script's own training time, and how far the per-epoch loss curves
of the two modes are apart: the first calls of a background run are the NumPy interpreter's,
whose float32 results differ from the compiled code's by rounding (a few ulp per step), so the
curves agree to float32 rounding, not bit for bit. Needs the ``examples`` extra.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_digits.py")


def run(mode: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="graphc-tiered-") as cache:
        env = dict(os.environ, GRAPHC_CACHE_DIR=cache, GRAPHC_COMPILE=mode, PYTHONPATH=ROOT)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, SCRIPT, "--epochs", str(epochs), "--plot", ""], env=env,
                             capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - start
    curve = [float(x) for x in re.findall(r"train loss ([0-9.]+)", out)]
    train = float(re.search(r"\(([0-9.]+) s including compilation", out).group(1))
    accuracy = re.search(r"final test accuracy ([0-9.]+)%", out).group(1)
    return {"wall": wall, "train": train, "curve": np.array(curve), "accuracy": accuracy}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results = {"background": [], "eager": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(run(mode, args.epochs))
    print(f"examples/train_digits.py --epochs {args.epochs}, empty cache per run, {args.rounds} runs each "
          f"(medians; process wall time from start to exit)")
    print("| compile | process wall (s) | training loop (s) | final test accuracy |")
    print("|---|---:|---:|---|")
    for mode, runs in results.items():
        print(f"| {mode} | {np.median([r['wall'] for r in runs]):.2f} | "
              f"{np.median([r['train'] for r in runs]):.2f} | {', '.join(sorted({r['accuracy'] for r in runs}))}% |")
    eager = results["eager"][0]["curve"]
    gap = max(float(np.max(np.abs(r["curve"] - eager) / np.abs(eager))) for r in results["background"])
    print(f"loss curves: background vs eager, largest relative difference per epoch {gap:.1e} "
          f"(the script prints 4 decimals)")


if __name__ == "__main__":
    main()
