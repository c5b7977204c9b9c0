"""The benchmark harness still runs and reports: a smoke test of benchmarks/elementwise.py (not a timing)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = "n=1e5, dtype=float32, mode=fwd+bwd, wb=array"


def _run_elementwise(tmp_path, *args):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "elementwise.py"), "--quick", "--no-machine",
           "--cases", CASE, "--out", str(tmp_path), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (entry,) = json.loads((tmp_path / "elementwise.json").read_text())["cases"]
    return proc, entry


def test_elementwise_quick_run_samples_the_bandwidth_probe(tmp_path):
    proc, entry = _run_elementwise(tmp_path, "--backends", "numpy,graphc")
    graphc = entry["backends"]["graphc"]
    assert graphc["status"] == "ok" and graphc["rel_err"] < 2e-4
    probe = entry["probe"]  # the triad, one sample per round, paired with graphc's
    assert len(probe["gbs"]) == len(graphc["samples"]) == 3
    assert all(gbs > 0 for gbs in probe["gbs"])
    assert len(probe["solo_gbs"]) == len(graphc["solo_samples"]) == 3  # the two alone, after the rounds
    assert "triad (probe)" not in entry["backends"]  # not a peer: no column of its own
    row = next((line for line in proc.stdout.splitlines() if line.startswith("| n=1e5") and "GB/s" in line), None)
    assert row is not None, proc.stdout
    assert f"{np.median(probe['gbs']):.1f} GB/s" in row and f"{np.median(probe['solo_gbs']):.1f} GB/s" in row


def test_no_probe_without_graphc(tmp_path):
    proc, entry = _run_elementwise(tmp_path, "--backends", "numpy")
    assert "probe" not in entry and "triad (probe)" not in proc.stderr


@pytest.fixture
def elementwise():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import elementwise
        yield elementwise
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))


def _results(graphc, probe=None):
    entry = {"case": {"n": 10**6, "dtype": "float64", "mode": "fwd+bwd", "wb": "array"},
             "backends": {"graphc": graphc}}
    if probe is not None:
        entry["probe"] = probe
    return {"machine": {"limits": {"triad_gbs": 48.0}}, "cases": [entry]}


def test_floor_ratios_pair_samples_by_round(elementwise):
    # 48 MB moved: at 48 GB/s the floor is 1 ms; the probe stopped after two rounds
    graphc = {"median_s": 2e-3, "samples": [1e-3, 2e-3, 3e-3], "speedup_vs_numpy": 10.0}
    (row,) = [r for r in elementwise.summarize(_results(graphc, {"gbs": [48.0, 24.0]})) if r.startswith("| n=")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:4] == ["1.50 ms", "36.0 GB/s", "1.00 (1.00-1.00)"]  # rounds 1 and 2 only
    assert cells[4:7] == ["n/a"] * 3  # no solo samples
    assert cells[7] == "2.00"  # against the start-of-run triad


def test_floor_ratios_without_a_probe_fall_back_to_the_start_of_run_triad(elementwise):
    graphc = {"median_s": 2e-3, "samples": [2e-3], "speedup_vs_numpy": 10.0}
    (row,) = [r for r in elementwise.summarize(_results(graphc)) if r.startswith("| n=")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:7] == ["n/a"] * 6 and cells[7] == "2.00"


def test_cuda_benchmark_runs_in_the_simulator(tmp_path):
    """benchmarks/cuda.py --sim: every graphc case at tiny sizes in Numba's CUDA simulator, checked
    against NumPy (nothing timed); without a GPU this is what keeps the GPU benchmark runnable."""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "cuda.py"), "--sim", "--no-ptx",
           "--parts", "elementwise,matmul", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = (tmp_path / "cuda_sim.md").read_text()
    assert "| 300 | ok (not timed) |" in report and "| ok (not timed) |" in report.split("Matrix product")[1]
