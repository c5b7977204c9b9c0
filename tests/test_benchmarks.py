"""The benchmark harness still runs: a smoke test of benchmarks/elementwise.py (not a timing)."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_elementwise_quick_run_samples_the_bandwidth_probe(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "elementwise.py"), "--quick", "--no-machine",
           "--backends", "numpy,graphc", "--cases", "n=1e5, dtype=float32, mode=fwd+bwd, wb=array",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "elementwise.json").read_text())
    (entry,) = results["cases"]
    graphc = entry["backends"]["graphc"]
    assert graphc["status"] == "ok" and graphc["rel_err"] < 2e-4
    probe = entry["probe"]  # the triad, one sample per round, paired with graphc's
    assert len(probe["gbs"]) == len(graphc["samples"]) == 3
    assert all(gbs > 0 for gbs in probe["gbs"])
    assert len(probe["solo_gbs"]) == len(graphc["solo_samples"]) == 3  # the two alone, after the rounds
    assert "triad (probe)" not in entry["backends"]  # not a peer: no column of its own
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| n=1e5") and "GB/s" in line)
    assert f"{np.median(probe['gbs']):.1f} GB/s" in row and f"{np.median(probe['solo_gbs']):.1f} GB/s" in row
