"""gc.save / gc.load: round trips (bit for bit), saved training steps, and files that must be refused."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import safetensors.numpy

import graphc as gc
from graphc import nn
from graphc import export
from graphc.ops import registry

from conftest import small_training_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def same_bits(a, b) -> bool:
    """Equal values, dtypes and shapes, bit for bit (NaN payloads and -0.0 included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def mixed(a, b):
    """Several results in a dict and a tuple, with a static None among them."""
    s = a * b + 1.5
    return {"sum": np.sum(s, axis=1), "parts": (np.tanh(a) - b, np.max(a)), "nothing": None}


@pytest.fixture(scope="module")
def saved_fn(tmp_path_factory):
    """``mixed`` traced at (3, 4) float32, saved once; shared by the round-trip and bad-file tests."""
    path = tmp_path_factory.mktemp("export") / "mixed.gcx"
    a = np.array([[1.0, -0.0, np.inf, np.nan], [2.0, 3.0, -1.0, 0.5], [0.0, 1e-30, -np.inf, 4.0]], np.float32)
    b = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    traced = gc.trace(mixed, a, b)
    gc.save(traced, path)
    return traced, path, (a, b)


def test_function_round_trip_is_bit_identical(saved_fn):
    traced, path, (a, b) = saved_fn
    loaded = gc.load(path)
    want, got = traced(a, b), loaded(a, b)
    assert set(got) == {"sum", "parts", "nothing"} and got["nothing"] is None
    assert isinstance(got["parts"], tuple) and len(got["parts"]) == 2
    for w, g in ((want["sum"], got["sum"]), (want["parts"][0], got["parts"][0]),
                 (want["parts"][1], got["parts"][1])):
        assert same_bits(w, g) and type(w) is type(g)
    assert loaded.compiled_graph() == traced.graph  # at the saved size: the graph the runtime compiled
    assert "f32[B,4]" in str(loaded.graph)  # saved generic in the batch size
    assert loaded.source == traced.source  # the same generated code
    assert "(a: f32[B,4], b: f32[B,4])" in loaded.signature()
    # the file: an uncompressed zip of exactly the two members
    with zipfile.ZipFile(path) as zf:
        assert [i.filename for i in zf.infolist()] == ["graphc.json", "weights.safetensors"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        doc = json.loads(zf.read("graphc.json"))
    assert doc["format"] == "graphc-export" and doc["format_version"] == "1.0"
    assert doc["entries"]["main"]["graph"]["nodes"][0]["op"] in registry.OPS


def test_loaded_function_checks_its_arguments(saved_fn):
    _, path, (a, b) = saved_fn
    loaded = gc.load(path)
    with pytest.raises(gc.ShapeError, match=r"argument 'b' must be f32\[B,4\], got float32\[3, 5\]"):
        loaded(a, np.zeros((3, 5), np.float32))
    with pytest.raises(gc.ShapeError, match=r"argument 'a' must be f32\[B,4\], got float64"):
        loaded(a.astype(np.float64), b)
    with pytest.raises(gc.ShapeError, match="argument 'a' must be a NumPy array"):
        loaded("a string", b)
    with pytest.raises(TypeError, match="another structure"):
        loaded(a)


def test_saving_never_leaves_a_half_written_file(saved_fn, tmp_path, monkeypatch):
    traced, path, _ = saved_fn
    with pytest.raises(gc.ExportError, match="does not exist"):
        gc.save(traced, tmp_path / "missing" / "f.gcx")
    target = tmp_path / "f.gcx"
    target.write_bytes(b"the old file")

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(export.zipfile.ZipFile, "writestr", fail)
    with pytest.raises(OSError, match="disk full"):
        gc.save(traced, target)
    assert target.read_bytes() == b"the old file"  # untouched, and no temporary file left over
    assert os.listdir(tmp_path) == ["f.gcx"]


def test_every_op_attribute_has_a_validated_type():
    for name in registry.OPS:
        for attr in export.op_attributes(name):
            assert attr in export.ATTRIBUTE_TYPES, f"op {name}: attribute {attr} has no type in export.py"


# -- modules ---------------------------------------------------------------------------------

def _bn_dropout_model():
    from graphc import nn
    nn.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))


def test_module_round_trip_eval_and_train_mode(tmp_path):
    model = _bn_dropout_model()
    x = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    model.train()
    traced = gc.trace(model)
    traced(x)  # one step of running statistics and dropout before saving
    gc.save(model, tmp_path / "train.gcx", x)
    loaded = gc.load(tmp_path / "train.gcx")
    sd = loaded.state_dict()
    assert list(sd) == list(model.state_dict())  # PyTorch's names: 0.weight, 1.running_mean...
    for k, v in model.state_dict().items():
        assert same_bits(v, sd[k]), k
    # train mode: batch statistics, running stats updated, a fresh dropout mask per call
    # (the counter-based generator's seed and counter are saved state, so the loaded
    # function draws the same masks as the original from here on)
    for _ in range(2):
        assert same_bits(traced(x), loaded(x))
    for k, v in model.state_dict().items():
        assert same_bits(v, loaded.state_dict()[k]), k
    assert {kind for _, kind, _ in loaded.parameters()} == {"parameter", "buffer", "rng"}
    gc.save(traced, tmp_path / "traced.gcx")  # gc.trace(model): arguments named after forward's
    assert gc.load(tmp_path / "traced.gcx").signature() == loaded.signature() == "(x: f32[B,5]) -> f32[B,2]"
    model.eval()
    gc.save(model, tmp_path / "eval.gcx", x)
    evaluated = gc.load(tmp_path / "eval.gcx")
    assert same_bits(evaluated(x), gc.trace(model)(x))
    assert "dropout" not in str(evaluated.graph) and all(kind != "rng" for _, kind, _ in evaluated.parameters())


# -- training steps --------------------------------------------------------------------------

def _batches(n):
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32))
            for _ in range(n)]


def test_saved_training_step_resumes_bit_for_bit(tmp_path):
    model, step = small_training_step("adam")
    batches = _batches(6)
    for x, t in batches[:3]:
        step(x, t)
    gc.save(step, tmp_path / "step.gcx")
    loaded = gc.load(tmp_path / "step.gcx")
    assert loaded.kind == "training_step"
    for x, t in batches[3:]:
        assert same_bits(step(x, t), loaded(x, t))
    sd = loaded.state_dict()
    for k, v in model.state_dict().items():
        assert same_bits(v, sd["model"][k]), k
    # the optimizer's state in torch.optim's layout, which graphc.optim loads
    from graphc import optim
    opt = optim.Adam(model.parameters(), lr=0.5)
    opt.load_state_dict(sd["optimizer"])
    assert opt.param_groups[0]["lr"] == 0.01 and sd["optimizer"]["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert set(sd["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(sd["optimizer"]["state"][0]["step"]) == 6.0
    # writing the loaded step back keeps its trained state
    gc.save(loaded, tmp_path / "again.gcx")
    again = gc.load(tmp_path / "again.gcx")
    for (k, kind, v), (k2, _, v2) in zip(loaded.parameters(), again.parameters()):
        assert k == k2 and same_bits(v, v2), k
    x, t = batches[0]
    assert same_bits(loaded(x, t), again(x, t))
    # hyperparameters are live state: a learning rate of 0 leaves the parameters as they are
    lr = next(a for key, _, a in loaded.parameters() if key == "optimizer.param_groups.0.lr")
    lr[...] = 0.0
    before = {k: v.copy() for k, v in loaded.state_dict()["model"].items()}
    loaded(x, t)
    assert loaded.state_dict()["optimizer"]["param_groups"][0]["lr"] == 0.0
    for k, v in loaded.state_dict()["model"].items():
        assert same_bits(before[k], v), k


MODEL_SOURCE = textwrap.dedent('''
    import numpy as np
    import graphc as gc
    from graphc import nn, optim

    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    @gc.trace
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def batches():
        rng = np.random.default_rng(0)
        return [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(10)]
''')

FIRST = textwrap.dedent('''
    import sys, numpy as np, graphc as gc
    sys.path.insert(0, sys.argv[1])
    import exported_model as m
    data = m.batches()
    losses = [m.step(x, y) for x, y in data[:5]]
    gc.save(m.step, sys.argv[2])
    losses += [m.step(x, y) for x, y in data[5:]]  # the reference: ten steps in one process
    np.savez(sys.argv[3], losses=np.array(losses), **{k: v for k, v in m.model.state_dict().items()})
''')

SECOND = textwrap.dedent('''
    import sys, numpy as np, graphc as gc
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(10)]
    step = gc.load(sys.argv[1])
    losses = [step(x, y) for x, y in data[5:]]
    try:
        step(data[0][0], np.full(8, 7))
    except ValueError as exc:
        print("refused:", exc)
    np.savez(sys.argv[2], losses=np.array(losses), **step.state_dict()["model"])
''')


def test_training_step_resumes_in_a_fresh_process_without_the_model_code(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "exported_model.py").write_text(MODEL_SOURCE)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    first = subprocess.run([sys.executable, "-c", FIRST, str(src), str(tmp_path / "step.gcx"),
                            str(tmp_path / "ten.npz")], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    (src / "exported_model.py").unlink()  # the defining module is gone
    second = subprocess.run([sys.executable, "-c", SECOND, str(tmp_path / "step.gcx"), str(tmp_path / "resumed.npz")],
                            capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "refused: CrossEntropyLoss: target label 7 is out of range" in second.stdout  # the saved input check
    ten, resumed = np.load(tmp_path / "ten.npz"), np.load(tmp_path / "resumed.npz")
    assert same_bits(ten["losses"][5:], resumed["losses"])
    assert sorted(ten.files) == sorted(resumed.files)
    for k in ten.files:
        if k != "losses":
            assert same_bits(ten[k], resumed[k]), k


# -- files that must be refused --------------------------------------------------------------

def _members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def _write_zip(path, members: dict, compression=zipfile.ZIP_STORED, level=None):
    with zipfile.ZipFile(path, "w", compression=compression, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _edit_json(src, dst, edit):
    members = _members(src)
    doc = json.loads(members["graphc.json"])
    edit(doc)
    members["graphc.json"] = json.dumps(doc).encode()
    return _write_zip(dst, members)


def _weights_header(raw: bytes):
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _weights_bytes(header, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _edit_weights(src, dst, edit):
    members = _members(src)
    header, data = _weights_header(members["weights.safetensors"])
    data = edit(header, data)
    members["weights.safetensors"] = _weights_bytes(header, data)
    return _write_zip(dst, members)


def _main_graph(doc):
    return doc["entries"]["main"]["graph"]


def _first(doc, op):
    return next(n for n in _main_graph(doc)["nodes"] if n["op"] == op)


def _refused(path, match):
    with pytest.raises(gc.ExportError, match=match):
        gc.load(path)


def test_refuses_damaged_archives(saved_fn, tmp_path):
    _, path, _ = saved_fn
    raw = path.read_bytes()
    (tmp_path / "cut.gcx").write_bytes(raw[:len(raw) // 2])
    _refused(tmp_path / "cut.gcx", "not a readable zip archive")
    (tmp_path / "text.gcx").write_text("hello, not a zip")
    _refused(tmp_path / "text.gcx", "not a readable zip archive")
    _refused(tmp_path / "nothing-here.gcx", "cannot read")
    members = _members(path)
    _refused(_write_zip(tmp_path / "missing.gcx", {"graphc.json": members["graphc.json"]}),
             r"missing \['weights.safetensors'\]")
    _refused(_write_zip(tmp_path / "extra.gcx", {**members, "notes.txt": b"hi"}), r"unexpected members \['notes.txt'\]")
    _refused(_write_zip(tmp_path / "escape.gcx", {**members, "../evil.py": b"print(1)"}), "path traversal")
    _refused(_write_zip(tmp_path / "abs.gcx", {**members, "/etc/evil": b"x"}), "path traversal")
    _refused(_write_zip(tmp_path / "deflated.gcx", members, zipfile.ZIP_DEFLATED, 0), "compressed")
    flagged = bytearray(raw)  # the "encrypted" flag set in every local and central header
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = flagged.find(signature)
        while start >= 0:
            flagged[start + at] |= 1
            start = flagged.find(signature, start + 4)
    (tmp_path / "encrypted.gcx").write_bytes(bytes(flagged))
    _refused(tmp_path / "encrypted.gcx", "is encrypted")


def test_refuses_a_zip_bomb_before_inflating(tmp_path):
    members = {"graphc.json": b" " * (64 << 20), "weights.safetensors": b"\0" * 16}
    path = _write_zip(tmp_path / "bomb.gcx", members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20  # 64 MiB declared in well under 1 MiB
    _refused(path, r"declares 67108864 bytes in a file of \d+ bytes; refused before inflating")


def test_refuses_bad_versions_ops_and_attributes(saved_fn, tmp_path):
    _, path, _ = saved_fn

    def setter(**kv):
        return lambda doc: doc.update(kv)
    _refused(_edit_json(path, tmp_path / "v2.gcx", setter(format_version="2.0")), "newer than this graphc reads")
    older = gc.load(_edit_json(path, tmp_path / "v10.gcx", setter(format_version="1.7")))  # minor: loads
    assert older.name == "mixed"
    _refused(_edit_json(path, tmp_path / "fmt.gcx", setter(format="other")), "not a graphc model file")
    _refused(_edit_json(path, tmp_path / "opset.gcx", setter(opset=99)), "op set version 99")

    def unknown_op(doc):
        _main_graph(doc)["nodes"][-1]["op"] = "launch_missiles"
    _refused(_edit_json(path, tmp_path / "op.gcx", unknown_op), "unknown op 'launch_missiles'")

    def bad_axes(doc):
        node = next(n for n in _main_graph(doc)["nodes"] if "axes" in n.get("attrs", {}) or n["op"] == "fused")
        target = node if "axes" in node.get("attrs", {}) else next(
            m for m in node["regions"][0]["nodes"] if "axes" in m.get("attrs", {}))
        target["attrs"]["axes"] = "0); __import__('os').system('touch pwned')  # "
    _refused(_edit_json(path, tmp_path / "axes.gcx", bad_axes), "attribute axes must be a tuple of ints")

    def missing_attr(doc):
        node = next(n for n in _main_graph(doc)["nodes"] if n["op"] == "constant")
        del node["attrs"]["value"]
    _refused(_edit_json(path, tmp_path / "noattr.gcx", missing_attr), "op constant needs attribute.s. value")

    def extra_attr(doc):
        _first(doc, "constant")["attrs"]["shift"] = 3
    _refused(_edit_json(path, tmp_path / "attr.gcx", extra_attr), "takes no attribute 'shift'")

    def bad_dtype(doc):
        _first(doc, "constant")["outputs"][0]["dtype"] = "object"
    _refused(_edit_json(path, tmp_path / "dtype.gcx", bad_dtype), "unknown dtype 'object'")

    def wrong_type(doc):  # output types that the op's rule contradicts: verify() refuses
        _main_graph(doc)["outputs"] = _main_graph(doc)["outputs"][::-1]
        node = _main_graph(doc)["nodes"][-1]
        node["outputs"][0]["shape"] = [7, 7]
    _refused(_edit_json(path, tmp_path / "verify.gcx", wrong_type), "the graph is not valid")

    def dangling(doc):
        _main_graph(doc)["nodes"][0]["inputs"] = [10 ** 6]
    _refused(_edit_json(path, tmp_path / "ssa.gcx", dangling), "defined before the node")


def test_refuses_lying_or_mismatched_weights(saved_fn, tmp_path):
    _, path, _ = saved_fn
    header, _ = _weights_header(_members(path)["weights.safetensors"])
    key = next(k for k in header if k != "__metadata__")

    def past_the_end(h, data):
        h[key]["data_offsets"][1] += 4096
        return data
    _refused(_edit_weights(path, tmp_path / "offsets.gcx", past_the_end), "lie outside")

    def wrong_size(h, data):
        h[key]["data_offsets"][1] -= h[key]["data_offsets"][1] - h[key]["data_offsets"][0]
        return data
    _refused(_edit_weights(path, tmp_path / "size.gcx", wrong_size), "needs .* bytes, but its data_offsets span 0")

    def wrong_shape(h, data):
        h[key]["shape"] = [1] * (len(h[key]["shape"]) + 1)
        n = int(np.prod(h[key]["shape"]))
        h[key]["data_offsets"] = [len(data), len(data) + n * 4]
        return data + b"\0" * (n * 4)
    _refused(_edit_weights(path, tmp_path / "shape.gcx", wrong_shape), "but the graph declares")

    def lying_header_length(h, data):
        return data
    members = _members(path)
    raw = members["weights.safetensors"]
    members["weights.safetensors"] = struct.pack("<Q", 1 << 40) + raw[8:]
    _refused(_write_zip(tmp_path / "hlen.gcx", members), "header in")


def test_refuses_a_huge_declared_array_before_allocating(saved_fn, tmp_path):
    _, path, _ = saved_fn
    huge = [1 << 20, 1 << 20]  # 2**40 float32 elements: 4 TiB

    def edit(doc):
        const = _first(doc, "constant")
        const["outputs"][0]["shape"] = huge
        return doc
    src = _edit_json(path, tmp_path / "huge-graph.gcx", edit)
    key = _first(json.loads(_members(src)["graphc.json"]), "constant")["attrs"]["value"]["$tensor"]

    def declare(h, data):
        h[key]["shape"] = huge
        h[key]["data_offsets"] = [0, 4 << 40]
        return data
    dst = _edit_weights(src, tmp_path / "huge.gcx", declare)
    assert dst.stat().st_size < 1 << 20
    _refused(dst, r"data_offsets \[0, 4398046511104\] lie outside the \d+ bytes of data")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


def test_refuses_pickles_and_object_arrays_without_running_them(saved_fn, tmp_path):
    _, path, _ = saved_fn
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    members = _members(path)
    _refused(_write_zip(tmp_path / "pkl-member.gcx", {**members, "data.pkl": payload}), "unexpected members")
    _refused(_write_zip(tmp_path / "pkl-weights.gcx", {**members, "weights.safetensors": payload}),
             "weights.safetensors")
    npy = io.BytesIO()
    np.save(npy, np.array([_Payload(str(marker)), 1], dtype=object), allow_pickle=True)
    _refused(_write_zip(tmp_path / "npy-weights.gcx", {**members, "weights.safetensors": npy.getvalue()}),
             "weights.safetensors")
    header, data = _weights_header(members["weights.safetensors"])
    key = next(k for k in header if k != "__metadata__")
    header[key]["dtype"] = "O"
    _refused(_write_zip(tmp_path / "obj-dtype.gcx", {**members, "weights.safetensors": _weights_bytes(header, data)}),
             "dtype 'O' is refused")
    _refused(_write_zip(tmp_path / "pkl-json.gcx", {**members, "graphc.json": payload}), "not valid JSON")
    assert not marker.exists()


def test_a_file_may_hold_several_named_entries(saved_fn, tmp_path):
    traced, path, (a, b) = saved_fn
    members = _members(path)
    doc = json.loads(members["graphc.json"])
    arrays = safetensors.numpy.load(members["weights.safetensors"])
    text = json.dumps(doc["entries"]["main"]).replace('"main.', '"second.')  # its own tensor names
    doc["entries"]["second"] = json.loads(text)
    arrays.update({"second." + k[5:]: v for k, v in arrays.items()})
    members = {"graphc.json": json.dumps(doc).encode(), "weights.safetensors": safetensors.numpy.save(arrays)}
    both = _write_zip(tmp_path / "both.gcx", members)
    first, second = gc.load(both), gc.load(both, entry="second")
    assert first.entries == second.entries == ["main", "second"]
    assert same_bits(first(a, b)["sum"], second(a, b)["sum"])
    with pytest.raises(gc.ExportError, match="no entry 'third'; the file holds 'main', 'second'"):
        gc.load(both, entry="third")


def scaled(x, n, s, flip):
    """Python int and float arguments (weakly typed) and a static bool."""
    y = (x + n) * s
    return -y if flip else y


def test_python_scalar_and_static_arguments_round_trip(tmp_path):
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    traced = gc.trace(scaled)
    traced(x, 2, s=0.5, flip=True)
    gc.save(traced, tmp_path / "scaled.gcx")
    loaded = gc.load(tmp_path / "scaled.gcx")
    assert loaded.signature() == "(x: i32[B,3], n: int, s: float, True) -> f64[B,3]"
    # keyword arguments in any order, as in Python
    assert same_bits(loaded(x, 7, flip=True, s=1.25), traced(x, 7, s=1.25, flip=True))
    with pytest.raises(gc.ShapeError, match="argument 's' was a Python float when saved, got int"):
        loaded(x, 7, s=1, flip=True)
    with pytest.raises(TypeError, match="a static argument was True when saved, got False"):
        loaded(x, 7, s=1.25, flip=False)
    with pytest.raises(OverflowError, match="out of bounds for int32"):  # the saved input check
        loaded(x, 2 ** 40, s=1.25, flip=True)


def _divide(x, d):
    return x / d


def test_static_floats_compare_by_sign_of_zero_and_nan(tmp_path):
    """A graph saved for d=0.0 gave +inf for d=-0.0 (0.0 == -0.0 in Python) where NumPy gives
    -inf; a graph saved for d=nan could never be called (nan != nan)."""
    x = np.ones((2, 3))
    for saved, other in ((0.0, -0.0), (-0.0, 0.0), (float("nan"), 1.0)):
        gc.save(gc.trace(_divide, static_argnums=(1,)), tmp_path / "d.gcx", x, saved)
        loaded = gc.load(tmp_path / "d.gcx")
        with np.errstate(all="ignore"):
            assert same_bits(loaded(x, saved), _divide(x, saved))
        with pytest.raises(TypeError, match="a static argument was"):
            loaded(x, other)


def test_random_edits_of_a_file_load_or_raise_export_error(saved_fn, tmp_path):
    """Structured fuzzing: any value of graphc.json replaced by another JSON value gives a
    working function or an ExportError, never another exception."""
    _, path, _ = saved_fn
    members = _members(path)
    doc = json.loads(members["graphc.json"])

    def paths(x, p=()):
        yield p
        children = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
        for k, v in children:
            yield from paths(v, p + (k,))
    every = [p for p in paths(doc) if p]
    values = [None, True, 0, -1, 2 ** 62, 2 ** 70, 1.5, "", "float32", "B", "../x", [], [0], [[0, 1]], {},
              {"$tuple": []}, {"$tensor": "main.const.0.value"}, {"$float": "nan"}, {"tuple": []}, {"dict": [["a", "*"]]}]
    rng = np.random.default_rng(0)
    loaded = 0
    for _ in range(300):
        edited = json.loads(members["graphc.json"])
        where = every[rng.integers(len(every))]
        target = edited
        for k in where[:-1]:
            target = target[k]
        target[where[-1]] = values[rng.integers(len(values))]
        _write_zip(tmp_path / "edited.gcx", {**members, "graphc.json": json.dumps(edited).encode()})
        try:
            f = gc.load(tmp_path / "edited.gcx")
            f.signature(), f.state_dict(), f.parameters()
            loaded += 1
        except gc.ExportError:
            pass
    assert 0 < loaded < 300


def test_shapes_may_name_symbols():
    t = export._decode_type({"dtype": "float32", "shape": ["B", 3]}, "here")
    assert t.shape == ("B", 3) and export._encode_type(t) == {"dtype": "float32", "shape": ["B", 3]}
    for bad in (["B-1"], [""], ["1B"], [1.5], [-1], [True], [2 ** 62], [None]):
        with pytest.raises(gc.ExportError, match="a dimension is an int in"):
            export._decode_type({"dtype": "float32", "shape": bad}, "here")


def _symbolic_add_file(path, symbols=None, attrs=None):
    """A hand-written file: ``add(x, y)`` over ``f32[B,3]`` (B symbolic)."""
    t = {"dtype": "float32", "shape": ["B", 3]}
    doc = {"format": "graphc-export", "format_version": "1.0", "graphc_version": "test", "opset": 1,
           "entries": {"main": {
               "kind": "function", "name": "add", "device": "cpu", "options": {}, "passes": "O2", "states": [],
               "symbols": {"B": {"min": 1, "example": 4}} if symbols is None else symbols,
               "graph": {"name": "add", "inputs": [{**t, "name": "x", "role": "arg"}, {**t, "name": "y", "role": "arg"}],
                         "nodes": [{"op": "add", "inputs": [0, 1], "attrs": {}, "outputs": [t]}],
                         "outputs": [2], "donations": []},
               "signature": {"inputs": {"tuple": [{"tuple": ["*", "*"]}, {"dict": []}]},
                             "leaves": [{"kind": "array", "path": "x", **t}, {"kind": "array", "path": "y", **t}],
                             "outputs": "*", "slots": ["*"], "scalars": [None]}}}}
    return _write_zip(path, {"graphc.json": json.dumps(doc).encode(), "weights.safetensors": safetensors.numpy.save({})})


def test_symbolic_dims_bind_across_arguments(tmp_path):
    for symbols, message in (({}, "undeclared symbol"), ({"B": {"min": 0, "example": 4}}, "1 <= min"),
                             ({"B-1": {"min": 1, "example": 4}}, "cannot name"),
                             ({"B": {"min": 1, "example": 4}, "N": {"min": 1, "example": 2}}, None)):
        path = _symbolic_add_file(tmp_path / "bad.gcx", symbols)
        if message is None:
            gc.load(path)  # (an unused declared symbol is harmless)
            continue
        with pytest.raises(gc.ExportError, match=message):
            gc.load(path)
    f = gc.load(_symbolic_add_file(tmp_path / "sym.gcx"))
    assert f.signature() == "(x: f32[B,3], y: f32[B,3]) -> f32[B,3]"
    with pytest.raises(gc.ShapeError, match="argument 'y' has size 5 in dimension 0, which is B = 4"):
        f(np.ones((4, 3), np.float32), np.ones((5, 3), np.float32))
    for n in (4, 7, 1):
        x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
        assert same_bits(f(x, x), x + x)
    with pytest.raises(gc.ShapeError, match="B must be at least 1"):
        f(np.ones((0, 3), np.float32), np.ones((0, 3), np.float32))


def test_saved_for_every_batch_size(tmp_path):
    """gc.save makes the batch dimension symbolic: the loaded function runs any batch size, bit
    for bit as the function traced at that size; size-dependent code is refused with its line."""
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    model.eval()

    def scores(x, shift):
        return gc.softmax(model(x) - np.mean(x, axis=1, keepdims=True) + shift, axis=1).reshape(x.shape[0], 3, 1)
    rng = np.random.default_rng(3)
    shift = np.float32(0.5) * np.ones(3, np.float32)
    gc.save(scores, tmp_path / "scores.gcx", rng.standard_normal((4, 5)).astype(np.float32), shift)
    loaded, reference = gc.load(tmp_path / "scores.gcx"), gc.trace(scores)
    assert loaded.signature() == "(x: f32[B,5], shift: f32[3]) -> f32[B,3,1]"
    assert "reshape(" in str(loaded.graph) and "shape=(B, 3, 1)" in str(loaded.graph)
    for n in (4, 9, 2, 1):
        x = rng.standard_normal((n, 5)).astype(np.float32)
        assert same_bits(loaded(x, shift), reference(x, shift)), n
    # one compile serves every size from 2 on (the CPU backend's code for every B); 1 its own
    assert loaded._compiled["generic"] is not None and set(loaded._compiled) == {"generic", (("B", 1),)}
    with pytest.raises(gc.ExportError, match=r"not generic in its batch size.*test_export.py:\d+.*dynamic=False"):
        gc.save(lambda x: x / len(x), tmp_path / "len.gcx", np.ones((3, 2)))
    gc.save(lambda x: x / len(x), tmp_path / "len.gcx", np.ones((3, 2)), dynamic=False)
    fixed = gc.load(tmp_path / "len.gcx")
    assert fixed.signature() == "(x: f64[3,2]) -> f64[3,2]"
    with pytest.raises(gc.ShapeError, match="dimension 0 is 4, not 3"):
        fixed(np.ones((4, 2)))


def _doubles_big_batches(x):
    return x * 2 if len(x) > 100 else x


def test_save_refuses_code_that_decides_by_the_batch_size_alike_at_both_probes(tmp_path):
    """Both probe sizes (1009, 1013) take ``len(x) > 100`` and ``min(len(x), 64)`` alike: the
    template would silently give x * 2 (x * 64) at a batch of 8 where NumPy gives x (x * 8)."""
    x = np.ones((8, 3), np.float32)
    for fn in (_doubles_big_batches, lambda x: x * min(len(x), 64)):
        with pytest.raises(gc.ExportError, match=r"not generic in its batch size.*batch size 2.*"
                                                 r"test_export.py:\d+.*dynamic=False"):
            gc.save(fn, tmp_path / "d.gcx", x)
    assert not (tmp_path / "d.gcx").exists()


def _square_or_triple(x):
    return x @ x if x.shape[0] == x.shape[1] else x * 3


def test_save_checks_the_inputs_other_sizes_and_a_batch_of_one(tmp_path):
    """``x.shape[0] == x.shape[1]`` is False at every probe and check size but 4: the inputs' other
    sizes are checked too. np.squeeze treats a batch of 1 apart: the file says B >= 2, so a
    batch of 1 is a ShapeError rather than a result of another shape than NumPy's."""
    with pytest.raises(gc.ExportError, match=r"batch size 4.*test_export.py:\d+"):
        gc.save(_square_or_triple, tmp_path / "sq.gcx", np.ones((6, 4), np.float32))
    squeeze = lambda x: np.squeeze(x) * 2  # noqa: E731
    gc.save(squeeze, tmp_path / "squeeze.gcx", np.ones((4, 1), np.float32))
    doc = json.loads(zipfile.ZipFile(tmp_path / "squeeze.gcx").read("graphc.json"))
    assert doc["entries"]["main"]["symbols"] == {"B": {"min": 2, "example": 4}}
    loaded = gc.load(tmp_path / "squeeze.gcx")
    x3 = np.arange(3, dtype=np.float32).reshape(3, 1)
    assert same_bits(loaded(x3), squeeze(x3))
    with pytest.raises(gc.ShapeError, match="B must be at least 2 .*batch of 1 apart"):
        loaded(x3[:1])
    gc.save(lambda x: x * 2, tmp_path / "double.gcx", np.ones((4, 1), np.float32))  # the same at 1
    assert gc.load(tmp_path / "double.gcx")._entry()[0]["symbols"]["B"]["min"] == 1


def test_save_refuses_an_example_batch_below_the_smallest_it_stands_for(tmp_path):
    """An empty example batch wrote a file gc.load refused (example 0 < min 1); a batch of 1 of
    code that treats it apart was refused as if the code had changed since the call."""
    with pytest.raises(gc.ExportError, match=r"example's batch size 0.*at least 1.*dynamic=False"):
        gc.save(lambda x: x * 2, tmp_path / "empty.gcx", np.ones((0, 3), np.float32))
    with pytest.raises(gc.ExportError, match=r"example's batch size 1.*at least 2.*dynamic=False"):
        gc.save(lambda x: np.squeeze(x) * 2, tmp_path / "one.gcx", np.ones((1, 1), np.float32))
    assert not (tmp_path / "empty.gcx").exists() and not (tmp_path / "one.gcx").exists()
    gc.save(lambda x: x * 2, tmp_path / "empty.gcx", np.ones((0, 3), np.float32), dynamic=False)
    assert gc.load(tmp_path / "empty.gcx")(np.ones((0, 3), np.float32)).shape == (0, 3)


def test_an_argument_whose_leading_size_only_equals_the_batch_stays_fixed(tmp_path):
    """A (4, 5) weight passed beside a batch of 4 cannot be batched (x @ w would not hold at
    other sizes): it keeps its size, and x alone is batched (not a ShapeError about size 1009)."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    gc.save(lambda x, w: x @ w + 1, tmp_path / "mm.gcx", x, w)
    loaded = gc.load(tmp_path / "mm.gcx")
    assert loaded.signature() == "(x: f32[B,4], w: f32[4,5]) -> f32[B,5]"
    x7 = rng.standard_normal((7, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded(x7, w), x7 @ w + 1, rtol=1e-5)
    # the weights first: the first argument's leading size is no batch, the next one's is
    # the weights first, (5, 4): batching their leading size fails, so the next leading size is tried
    w, x9 = w.T.copy(), rng.standard_normal((9, 5)).astype(np.float32)
    gc.save(lambda w, x: x @ w, tmp_path / "wx.gcx", w, x9)
    loaded = gc.load(tmp_path / "wx.gcx")
    assert loaded.signature() == "(w: f32[5,4], x: f32[B,5]) -> f32[B,4]"
    np.testing.assert_allclose(loaded(w, x9[:2]), x9[:2] @ w, rtol=1e-5)


def test_symbolic_attributes_are_tagged(tmp_path):
    """A size in an attribute is {"$sym": "B"}: a plain string there is refused (it would reach
    the generated code as text), and so is a symbol the file does not declare."""
    gc.save(lambda x: x.reshape(x.shape[0], 2, 2), tmp_path / "r.gcx", np.ones((3, 4), np.float32))
    doc = json.loads(zipfile.ZipFile(tmp_path / "r.gcx").read("graphc.json"))
    node = doc["entries"]["main"]["graph"]["nodes"][0]
    assert node["op"] == "reshape" and node["attrs"]["shape"] == {"$tuple": [{"$sym": "B"}, 2, 2]}
    weights = zipfile.ZipFile(tmp_path / "r.gcx").read("weights.safetensors")
    for bad, message in (("B", "attribute shape must be"), ({"$sym": "N"}, "undeclared symbol"),
                         ({"$sym": "1x"}, r"\$sym names")):
        node["attrs"]["shape"] = {"$tuple": [bad, 2, 2]}
        path = _write_zip(tmp_path / "bad.gcx", {"graphc.json": json.dumps(doc).encode(),
                                                 "weights.safetensors": weights})
        with pytest.raises(gc.ExportError, match=message):
            gc.load(path)


def test_refuses_a_state_whose_shape_names_a_symbol(tmp_path):
    """A state's array has the size it was saved with: a file declaring it f32[B,3] (bound from
    the arguments) loaded, and x + weight read past the weight's end at a larger batch."""
    nn.manual_seed(0)
    model = nn.Linear(3, 4)
    model.eval()
    gc.save(model, tmp_path / "lin.gcx", np.ones((4, 3), np.float32))

    def symbolic_state(doc):
        g = _main_graph(doc)
        g["inputs"][1]["shape"] = ["B", 3]  # the (4, 3) weight
        g["nodes"] = [{"op": "add", "inputs": [0, 1], "attrs": {},
                       "outputs": [{"dtype": "float32", "shape": ["B", 3]}]}]
        g["outputs"] = [3]
    _refused(_edit_json(tmp_path / "lin.gcx", tmp_path / "bad.gcx", symbolic_state),
             r"state 0: .*weight.*f32\[B,3\].*fixed")


def test_refuses_a_scatter_slice_writing_outside_its_result(tmp_path):
    """scatter_slice's shape rule checked the update against its slices but not the slices
    against the result's shape: a file scattering 3000000 rows into a (2, 3) result loaded and
    wrote past the buffer (a segfault)."""
    gc.save(lambda x: -x, tmp_path / "neg.gcx", np.ones((4, 3), np.float32), dynamic=False)

    def overflow(doc):
        entry = doc["entries"]["main"]
        g = entry["graph"]
        g["inputs"][0]["shape"] = entry["signature"]["leaves"][0]["shape"] = [5, 3]
        g["nodes"] = [{"op": "scatter_slice", "inputs": [0],
                       "attrs": {"shape": {"$tuple": [2, 3]},
                                 "slices": {"$tuple": [{"$tuple": [0, 5, 1]}, {"$tuple": [0, 3, 1]}]}},
                       "outputs": [{"dtype": "float32", "shape": [2, 3]}]}]
        g["outputs"] = [1]
    _refused(_edit_json(tmp_path / "neg.gcx", tmp_path / "bad.gcx", overflow), "scatter_slice.*outside")


def test_refuses_a_gather_with_a_negative_axis(tmp_path):
    """The tracer gives gather a normalized axis; a file with axis=-1 passed the shape rule and
    failed to compile on the first call (a CompileError from Numba), not at load."""
    gc.save(lambda x, i: x[i], tmp_path / "g.gcx", np.ones((2, 3), np.float32), np.array([0, 1, 1, 0]),
            dynamic=False)

    def negative_axis(doc):
        node = _first(doc, "gather")
        node["attrs"]["axis"] = -1
        node["outputs"][0]["shape"] = [2, 4, 2, 3]
    _refused(_edit_json(tmp_path / "g.gcx", tmp_path / "bad.gcx", negative_axis), "axis must be >= 0")


def test_loading_allocates_nothing_from_the_graphs_declared_sizes(tmp_path):
    """A graph may declare a huge intermediate (a broadcast to 2**40 elements): loading reads
    it as types only; memory is the compiled code's business when it runs."""
    import tracemalloc
    huge = [1 << 20, 1 << 20]
    doc = {"format": "graphc-export", "format_version": "1.0", "graphc_version": "test", "opset": 1,
           "entries": {"main": {
               "kind": "function", "name": "big", "device": "cpu", "options": {}, "passes": "O2", "states": [],
               "graph": {"name": "big", "inputs": [{"dtype": "float32", "shape": [1], "name": "x", "role": "arg"}],
                         "nodes": [{"op": "broadcast_to", "inputs": [0], "attrs": {"shape": {"$tuple": huge}},
                                    "outputs": [{"dtype": "float32", "shape": huge}]},
                                   {"op": "sum", "inputs": [1], "attrs": {"axes": {"$tuple": [0, 1]}, "keepdims": False},
                                    "outputs": [{"dtype": "float32", "shape": []}]}],
                         "outputs": [2], "donations": []},
               "signature": {"inputs": {"tuple": [{"tuple": ["*"]}, {"dict": []}]},
                             "leaves": [{"kind": "array", "path": "x", "dtype": "float32", "shape": [1]}],
                             "outputs": "*", "slots": ["*"], "scalars": ["numpy"]}}}}
    path = _write_zip(tmp_path / "big.gcx", {"graphc.json": json.dumps(doc).encode(),
                                             "weights.safetensors": safetensors.numpy.save({})})
    tracemalloc.start()
    try:
        f = gc.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(f.graph.nodes[0].outputs[0].type) == "f32[1048576,1048576]"
    assert peak < 16 << 20


def test_random_byte_damage_loads_or_raises_export_error(saved_fn, tmp_path):
    """Bytes flipped anywhere (headers, names, sizes, data: zip CRCs catch data) give a working
    function or an ExportError, never another exception."""
    _, path, _ = saved_fn
    raw = path.read_bytes()
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(raw)
        for at in rng.integers(0, len(raw), rng.integers(1, 4)):
            damaged[at] = rng.integers(256)
        (tmp_path / "damaged.gcx").write_bytes(bytes(damaged))
        try:
            gc.load(tmp_path / "damaged.gcx")
        except gc.ExportError:
            pass


class _Trainer:
    """A training step as a method: the model and optimizer are attributes of ``self``."""

    def __init__(self):
        from graphc import nn, optim
        nn.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 3))
        self.opt = optim.SGD(self.model.parameters(), lr=0.1, momentum=0.5, nesterov=True)
        self.step = gc.trace(self._step)

    def _step(self, x, y):
        self.opt.zero_grad()
        loss = np.mean((self.model(x) - y) ** 2)
        loss.backward()
        self.opt.step()
        return loss


def test_state_names_come_from_modules_and_optimizers_held_by_an_object(tmp_path):
    trainer = _Trainer()
    x, y = np.ones((2, 4), np.float32), np.zeros((2, 3), np.float32)
    trainer.step(x, y)
    gc.save(trainer.step, tmp_path / "trainer.gcx")
    sd = gc.load(tmp_path / "trainer.gcx").state_dict()
    want = trainer.opt.state_dict()
    assert list(sd["model"]) == ["0.weight", "0.bias"]
    assert sd["optimizer"]["param_groups"] == want["param_groups"]
    assert sd["optimizer"]["state"].keys() == want["state"].keys()
    for i, buffers in want["state"].items():
        assert sd["optimizer"]["state"][i].keys() == buffers.keys() == {"step", "momentum_buffer"}
        for k, v in buffers.items():
            assert same_bits(v, sd["optimizer"]["state"][i][k]), (i, k)


def test_a_step_traced_for_every_batch_size_saves_and_resumes(tmp_path):
    """gc.trace(step, dynamic=...) compiles the symbolic graph: gc.save of it once refused with
    "tracing step again gives another graph than the compiled one" (it compared the graph at the
    example's size with the symbolic one). Saved after steps at two sizes, loaded, the step goes
    on bit for bit with the traced one, at other sizes too."""
    model, step = small_training_step("sgd", dynamic={"x": 0, "y": 0})
    rng = np.random.default_rng(11)
    batches = [(rng.standard_normal((n, 6)).astype(np.float32), rng.standard_normal((n, 3)).astype(np.float32))
                for n in (5, 3, 7, 2, 17)]
    for x, t in batches[:2]:
        step(x, t)
    assert [c is not None for _, c in step._generic.values()] == [True]  # the symbolic graph's one compile
    gc.save(step, tmp_path / "step.gcx")
    loaded = gc.load(tmp_path / "step.gcx")
    assert "f32[B,6]" in loaded.signature()
    for x, t in batches[2:]:
        assert same_bits(step(x, t), loaded(x, t))
    for k, v in model.state_dict().items():
        assert same_bits(v, loaded.state_dict()["model"][k]), k
