"""The autodiff examples run as a newcomer would run them, and print what they promise."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_rosenbrock_example(tmp_path):
    out_png = tmp_path / "rosenbrock.png"
    out = run_example("rosenbrock.py", "--out", str(out_png), cwd=tmp_path)
    assert "grad f(2, 2) = [18. -4.]" in out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(lr = .+?)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+([\d.e+-]+|nan|inf)\s+(yes|no)$", line)
        if m:
            rows[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)), float(m.group(4)), m.group(5))
    assert set(rows) == {"lr = 0.1", "lr = 0.2", "lr = 0.2 / (1 + 0.01 it)"}, out
    x1, x2, loss, ok = rows["lr = 0.1"]
    assert ok == "yes" and abs(x1 - 1) < 0.05 and abs(x2 - 1) < 0.05 and loss < 1e-3
    assert rows["lr = 0.2"][3] == "no" and rows["lr = 0.2"][2] > 1e-2
    assert rows["lr = 0.2 / (1 + 0.01 it)"][3] == "yes"
    # the whole descent in one call (a gc.fori_loop per schedule) ends where the Python loop does
    one_call = out.split("the whole descent in one call (gc.fori_loop over 100 steps):")[1]
    same = {}
    for line in one_call.splitlines():
        m = re.match(r"(lr = .+?)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+([\d.e+-]+|nan|inf)\s+(yes|NO) \(max difference", line)
        if m:
            same[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)), m.group(5))
    assert set(same) == set(rows), out
    for name, (x1, x2, ok) in same.items():
        assert ok == "yes" and (x1, x2) == rows[name][:2], (name, out)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed: skipping the plot" in out
        assert not out_png.exists()
    else:
        assert out_png.exists() and out_png.stat().st_size > 10_000


def test_computational_graph_example(tmp_path):
    out = run_example("computational_graph.py", cwd=tmp_path)
    forward = out.split("1. forward graph")[1].split("2. forward + backward graph")[0]
    for op in ("mul(", "sin(", "div(", "add(", "log(", "tanh("):
        assert op in forward, op
    backward = out.split("2. forward + backward graph")[1].split("3. optimized graph")[0]
    assert "# ---- backward" in backward and "cos(" in backward  # d sin(y)/dy = cos(y)
    assert "3. optimized graph" in out
    table = out.split("4. the chain rule by hand")[1]
    for name in ("df/dx", "df/dy", "df/dz"):
        assert name in table
    assert "graphc matches the chain rule" in out
    # another point, given on the command line
    out = run_example("computational_graph.py", "-0.3", "2.0", "0.7", cwd=tmp_path)
    assert "graphc matches the chain rule" in out
