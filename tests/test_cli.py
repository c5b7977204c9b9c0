"""The ``graphc`` command: ``graphc demo`` end to end in a subprocess, and the small commands."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from graphc import cli


def _run(args, cache_dir, timeout=600):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("graphc-demo-cache")


@pytest.fixture(scope="module")
def demo_run(demo_cache):
    """One cold run of ``python -m graphc demo`` (new cache dir), shared by the tests below."""
    return _run(["demo"], demo_cache)


def test_demo_succeeds_and_prints_ir_checks_and_timings(demo_run):
    out = demo_run.stdout
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert "demo OK" in out
    assert out.count("check vs NumPy: max abs error") == 3
    assert out.count(" OK\n") >= 3 and "MISMATCH" not in out
    # the IR of each function, with the user's file:line on every node
    assert "graph f(%0:f32[512,64] x, %1:f32[64,32] w, %2:f32[32] b):" in out
    assert "= matmul(" in out and "tanh" in out and "# cli.py:" in out  # tanh may sit in a fused node
    assert "graph value_and_grad_rosenbrock(" in out
    assert "graph value_and_grad_softmax_cross_entropy(" in out
    # timings: first call and warm calls against NumPy
    assert out.count("first call (trace + passes + compile or cache load)") == 3
    assert out.count("warm call, median: graphc") == 3
    assert "compiled now" in out


def test_demo_second_process_loads_from_disk_cache(demo_run, demo_cache):
    assert demo_run.returncode == 0
    warm = _run(["demo", "--quiet", "--no-timing"], demo_cache)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert warm.stdout.count("machine code loaded from the disk cache") == 3, warm.stdout
    assert "IR after optimization" not in warm.stdout  # --quiet
    assert "warm call" not in warm.stdout  # --no-timing


@pytest.mark.skipif(shutil.which("graphc") is None, reason="the graphc console script is not installed")
def test_console_script_version(tmp_path):
    out = subprocess.run(["graphc", "--version"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path)))
    assert out.returncode == 0
    assert out.stdout.startswith("graphc ") and "numba" in out.stdout


def test_version_and_cache_dir(tmp_path, capsys, monkeypatch):
    import graphc

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"graphc {graphc.__version__} ")

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(cache))
    assert cli.main(["cache-dir"]) == 0
    assert capsys.readouterr().out.strip() == str(cache)


def test_clear_cache_in_the_working_directory_removes_only_graphc_files(tmp_path, capsys, monkeypatch):
    """``GRAPHC_CACHE_DIR=. graphc clear-cache`` once deleted the whole directory, the user's
    files with it: now it removes graphc's entries and says what it removed."""
    from graphc.backend import cache

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", ".")
    (tmp_path / "train.py").write_text("print('my script')\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"mine")
    keys = []
    for k in range(2):
        source = f"from numba import njit\n\n\n@njit\ndef entry(x):\n    return x + {k + 0.5}\n"
        keys.append(cache.content_hash(source, "cli-test"))
        module, path, on_disk = cache.load_module(keys[-1], source)
        assert on_disk and module.entry(1.0) == 1.5 + k  # compiled: Numba's files are written too
    store = tmp_path / cache.STORE
    written = len(os.listdir(store)) - 1  # all but the tag

    assert cli.main(["clear-cache", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"removed {written + 1} file(s) graphc wrote (2 compiled graph(s), ")
    assert f"from {tmp_path}\n" in out
    assert all(f"g{key}.py" in out for key in keys)  # --verbose lists them
    assert sorted(os.listdir(tmp_path)) == ["__pycache__", "train.py"]
    assert (tmp_path / "__pycache__" / "train.cpython-311.pyc").read_bytes() == b"mine"

    assert cli.main(["clear-cache"]) == 0
    assert capsys.readouterr().out == f"nothing to remove: no files graphc wrote in {tmp_path}\n"
    assert (tmp_path / "train.py").exists()


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_max_error_reports_mismatches():
    a = np.array([1.0, 2.0])
    assert cli.max_error((a, 3.0), (a, 3.0)) == (0.0, 3.0)
    err, scale = cli.max_error((a + 0.5, 3.0), (a, 3.0))
    assert err == 0.5 and scale == 3.0
    assert cli.max_error(a, np.ones(3))[0] == float("inf")  # shape mismatch
    assert cli.max_error((a, a), a)[0] == float("inf")  # structure mismatch


def test_demo_fails_with_nonzero_exit_on_a_mismatch(monkeypatch, tmp_path, capsys):
    """A demo function that disagrees with NumPy makes the command fail."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    cases = cli.demo_cases()[1:2]  # Rosenbrock: cheap to compile
    wrong = cli.DemoCase(cases[0].title, cases[0].make, cases[0].args,
                         lambda x: (1.0, np.zeros(2)), cases[0].rtol)
    monkeypatch.setattr(cli, "demo_cases", lambda: [wrong])
    assert cli.main(["demo", "--quiet", "--no-timing"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "demo FAILED" in out


# -- commands on model files (gc.save) ----------------------------------------------------------

def two_results(x, w):
    """A saved function with two results (run writes them to a .npz)."""
    y = x @ w
    return {"y": y, "total": np.sum(y)}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A saved eval-mode module (one result) and a saved two-result function, with input files."""
    import graphc as gc
    from graphc import nn
    d = tmp_path_factory.mktemp("models")
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    model.eval()
    x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4)
    gc.save(model, d / "mlp.gcx", x)
    gc.save(model, d / "fixed.gcx", x, dynamic=False)
    np.save(d / "x.npy", x)
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    traced = gc.trace(two_results, x, w)
    gc.save(traced, d / "two.gcx")
    np.savez(d / "xw.npz", x=x, w=w)
    return d, gc.trace(model)(x), traced(x, w)


def test_show_prints_signature_ir_and_parameter_table(model_files):
    d, _, _ = model_files
    out = _run(["show", str(d / "mlp.gcx")], os.environ["GRAPHC_CACHE_DIR"])
    assert out.returncode == 0, out.stderr
    assert "signature: (x: f32[B,4]) -> f32[B,3]" in out.stdout
    assert "symbolic dimension B: any size >= 1 (saved with B=5)" in out.stdout
    assert "graph Sequential(" in out.stdout and "= matmul(" in out.stdout
    assert "state: 4 array(s), 268 bytes" in out.stdout
    assert [line.split() for line in out.stdout.splitlines() if "0.weight" in line] == \
        [["0.weight", "parameter", "8x4", "float32", "128"]]


def test_dot_writes_graphviz_with_fused_clusters(model_files, tmp_path):
    d, _, _ = model_files
    out = _run(["dot", str(d / "mlp.gcx"), "-o", str(tmp_path / "g.dot")], os.environ["GRAPHC_CACHE_DIR"])
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "g.dot").read_text()
    assert text.startswith('digraph "Sequential" {') and text.rstrip().endswith("}")
    assert "subgraph cluster_" in text and '"relu -> f32[5,8]"' in text and '"matmul -> f32[5,8]"' in text
    import networkx as nx  # the edges form one connected DAG from the inputs to the output
    g = nx.DiGraph([tuple(line.strip().rstrip(";").split(" -> ")) for line in text.splitlines()
                    if " -> " in line and "label" not in line])
    assert nx.is_directed_acyclic_graph(g) and nx.is_weakly_connected(g)


def test_run_writes_results_that_match_the_original(model_files, tmp_path):
    d, want_mlp, want_two = model_files
    cache_dir = os.environ["GRAPHC_CACHE_DIR"]
    out = _run(["run", str(d / "two.gcx"), str(d / "xw.npz"), "-o", str(tmp_path / "out.npz")], cache_dir)
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "out.npz")
    assert sorted(got.files) == ["out['total']", "out['y']"]
    assert np.array_equal(got["out['y']"], want_two["y"]) and got["out['total']"] == want_two["total"]


def test_bench_times_random_inputs_of_the_signature(model_files):
    d, _, _ = model_files
    out = _run(["bench", str(d / "mlp.gcx"), "--batch", "9", "--repeat", "3"], os.environ["GRAPHC_CACHE_DIR"])
    assert out.returncode == 0, out.stderr
    assert "median per call over 3 calls:" in out.stdout and "Sequential(x: f32[B,4])" in out.stdout


def test_model_commands_report_errors_with_their_exit_codes(model_files, tmp_path, capsys):
    d, want_mlp, _ = model_files
    assert cli.main(["run", str(d / "mlp.gcx"), str(d / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), want_mlp)
    assert cli.main(["run", str(d / "mlp.gcx"), str(d / "x.npy")]) == 0
    assert "out: float32[5, 3]" in capsys.readouterr().out
    cases = [
        (["show", str(tmp_path / "missing.gcx")], cli.EXIT_BAD_MODEL, "cannot read"),
        (["dot", str(d / "x.npy")], cli.EXIT_BAD_MODEL, "not a readable zip archive"),
        (["run", str(d / "mlp.gcx"), str(tmp_path / "none.npy")], cli.EXIT_BAD_INPUT, "does not exist"),
        (["run", str(d / "mlp.gcx")], cli.EXIT_BAD_INPUT, r"takes 1 array\(s\)"),
        (["run", str(d / "mlp.gcx"), str(tmp_path / "wide.npy")], cli.EXIT_BAD_INPUT,
         r"argument 'x' must be f32\[B,4\], got float32\[5, 6\]"),
        (["run", str(d / "mlp.gcx"), str(tmp_path / "f64.npy")], cli.EXIT_BAD_INPUT, "got float64"),
        (["run", str(d / "mlp.gcx"), str(tmp_path / "obj.npy")], cli.EXIT_BAD_INPUT, "allow_pickle"),
        (["run", str(d / "two.gcx"), str(d / "xw.npz"), "-o", str(tmp_path / "one.npy")], cli.EXIT_USAGE,
         "returns 2 arrays"),
        (["bench", str(d / "fixed.gcx"), "--batch", "7"], cli.EXIT_USAGE, "fixed leading dimension 5"),
        (["dot", str(d / "mlp.gcx"), "--batch", "0"], cli.EXIT_BAD_INPUT, "B must be at least 1|does not hold"),
        (["bench", str(d / "mlp.gcx"), "--batch", "-5"], cli.EXIT_USAGE, "--batch must be at least 0"),
        (["bench", str(d / "mlp.gcx"), "--batch", str(10 ** 13)], cli.EXIT_USAGE, "cannot make random inputs"),
        # two.gcx: x is batched, the (4, 3) w keeps its size at any --batch
        (["bench", str(d / "two.gcx"), "--batch", "2", "--repeat", "1"], 0, ""),
    ]
    np.save(tmp_path / "wide.npy", np.ones((5, 6), np.float32))
    np.save(tmp_path / "f64.npy", np.ones((5, 4)))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for argv, code, message in cases:
        assert cli.main(argv) == code, argv
        err = capsys.readouterr().err
        assert re.search(message, err), (argv, err)
    for command in ("show", "dot", "run", "bench"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        assert "exit codes: 0 success" in capsys.readouterr().out.replace("\n", " ")
