"""The training examples run end to end (short runs; train_digits needs the 'examples' extra)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
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
