"""The training examples run end to end (short runs; train_digits needs the 'examples' extra)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_mytorch_mlp_runs():
    out = _run("mytorch_mlp.py", "--epochs", "3", "--hidden", "16")
    assert "xavier" in out.lower() and "kaiming" in out.lower()


def test_train_digits_runs(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = _run("train_digits.py", "--epochs", "1", "--plot", "")
    assert "accuracy" in out


def test_rnn_example_trains_and_continues_waves(tmp_path):
    plot = tmp_path / "rnn_loss.png"
    out = _run("rnn.py", "--epochs", "4", "--sequences", "256", "--plot", str(plot))
    losses = [float(v) for v in re.findall(r"epoch +\d+  train loss ([\d.]+)", out)]
    assert len(losses) == 4 and losses[-1] < 0.2 * losses[0], out
    m = re.search(r"continuation of 40 steps on 8 unseen waves: RMS error ([\d.]+) "
                  r"\(repeating the last value: ([\d.]+)\)", out)
    assert m and float(m.group(1)) < float(m.group(2)), out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in out and not plot.exists()
    else:
        assert plot.exists() and plot.stat().st_size > 10_000
