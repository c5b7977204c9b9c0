"""gc.onnx.export: every exported model runs in ONNX's reference evaluator (and onnxruntime,
when installed) and gives graphc's results (and NumPy's), at the example's batch size and,
where the batch is dynamic, at others.

Each model is traced and exported once per module (a module-scoped fixture); the runtimes
are parameters, so onnxruntime's checks skip cleanly where it is not installed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.ir import Graph, TensorType

onnx = pytest.importorskip("onnx")
from onnx.reference import ReferenceEvaluator  # noqa: E402

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture(params=["reference", "onnxruntime"])
def runtime(request):
    """A function running an exported model file on one ONNX runtime: (path, feeds) -> outputs."""
    if request.param == "reference":
        return lambda path, feeds: ReferenceEvaluator(path).run(None, feeds)
    ort = pytest.importorskip("onnxruntime")

    def run(path, feeds):
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    return run


def feeds_of(model, *arrays):
    return dict(zip([i.name for i in model.graph.input], arrays))


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def assert_outputs(got, want, what):
    want = list(want) if isinstance(want, (tuple, list)) else [want]
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.dtype == w.dtype, f"{what}, output {k}: dtype {g.dtype}, expected {w.dtype}"
        assert g.shape == w.shape, f"{what}, output {k}: shape {g.shape}, expected {w.shape}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, equal_nan=True, err_msg=f"{what}, output {k}", **TOL[w.dtype.name])
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{what}, output {k}")


def eager(fn, *args):
    """What NumPy gives, run eagerly, as a flat list."""
    with np.errstate(divide="ignore"):  # (integer division by zero: 0 and a warning in NumPy)
        out = fn(*args)
    return list(out) if isinstance(out, tuple) else [out]


# -- models ---------------------------------------------------------------------------------------
def mlp():
    nn.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def batchnorm_dropout():
    nn.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.4), nn.ReLU(), nn.Linear(8, 4),
                          nn.LogSoftmax(dim=1))
    bn = model[1]
    rng = np.random.default_rng(5)  # statistics and affine parameters that are not the identity
    bn.running_mean.data[...] = rng.normal(size=8)
    bn.running_var.data[...] = rng.uniform(0.5, 2.0, size=8)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, size=8)
    bn.bias.data[...] = rng.normal(size=8)
    return model.eval()


def broadcast_reduce(x, w, counts):
    """Broadcasting, reductions with and without keepdims, NumPy promotion (int32 -> int64
    sums, integer means in float64, Python scalars weak), comparisons and where."""
    centered = x - x.mean(axis=1, keepdims=True)
    scaled = centered * w + 0.5
    total = np.sum(counts, axis=1)  # int32 -> int64
    return (scaled, scaled.max(axis=0), np.min(scaled, axis=1, keepdims=True), np.argmax(scaled, axis=1),
            total, counts.mean(axis=1), np.where(scaled > 0, scaled, 0.1 * scaled), (counts > 2).sum(axis=1))


def softmaxes(x):
    return gc.softmax(x, axis=1), gc.log_softmax(x, axis=-1), nn.Softmax(dim=0)(x), nn.LogSoftmax(dim=1)(x)


def float64_ops(x, idx):
    """float64 through matmul (batched, transposed), reshape, transpose, concatenate, slices,
    take/gather, expand_dims/squeeze and elementwise math."""
    w = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
    h = np.exp(-np.abs(x)) @ w + np.sqrt(x * x + 1.0) @ w  # (B, 3)
    stacked = np.concatenate([h, -h, h ** 2], axis=1)  # (B, 9)
    batched = stacked.reshape(x.shape[0], 3, 3)
    gram = batched @ np.transpose(batched, (0, 2, 1))  # (B, 3, 3) batched matmul
    picked = np.take(stacked, idx, axis=1)  # gather
    first = np.expand_dims(stacked[:, 0], 1)
    return (np.log(gram.sum(axis=(1, 2)) ** 2 + 1.0), picked * first, np.squeeze(stacked[:, ::-2][:, 1:2], axis=1),
            np.tanh(stacked[:, 2:7:2]).T)


def labels_ops(x, labels):
    """Row gathers, one_hot and iota over a dynamic batch."""
    rows = x[labels % 3]
    return ((gc.one_hot(labels, 4) * x).sum(axis=1), rows * gc.iota(x.shape, axis=0, dtype="float32"),
            gc.iota(x.shape, axis=1, dtype="int32") + labels[:, None].astype(np.int32))


def integer_ops(a, b):
    """Integer arithmetic with NumPy's floor semantics and casts both ways."""
    return (a // b, a % b, (a * 3 - b).astype(np.float32) / 2, np.maximum(a, b), np.abs(a - 7),
            a // (b - 3), a % (b - 3))  # (integer division by zero gives 0 in NumPy)


# each case: (name, model or function, example args, args at another batch size or None)
def _cases():
    rng = np.random.default_rng(0)
    x6 = lambda n: rng.normal(size=(n, 6)).astype(np.float32)  # noqa: E731
    x4 = lambda n: rng.normal(size=(n, 4)).astype(np.float32)  # noqa: E731
    counts = lambda n: rng.integers(0, 5, size=(n, 3)).astype(np.int32)  # noqa: E731
    w = rng.normal(size=4).astype(np.float32)
    big = x4(5) * 300  # softmax rows with large values: the max shift keeps them finite
    xd = lambda n: rng.normal(size=(n, 4))  # noqa: E731
    idx = np.array([0, 8, -1, 4])
    ints = lambda n: rng.integers(-20, 20, size=(n, 5)).astype(np.int64)  # noqa: E731
    nonzero = np.array([3, -4, 5, -2, 7], np.int64)  # (b - 3 has a zero)
    return {
        "mlp": (mlp(), (x6(5),), (x6(9),)),
        "batchnorm_dropout": (batchnorm_dropout(), (x6(5),), (x6(2),)),
        "broadcast_reduce": (broadcast_reduce, (x4(5), w, counts(5)), (x4(7), w, counts(7))),
        "softmax": (softmaxes, (big,), (x4(2) * 300,)),  # (softmax over axis 0 reduces over the batch)
        "float64": (float64_ops, (xd(5), idx), (xd(3), idx)),
        "integers": (integer_ops, (ints(6), nonzero), (ints(2), nonzero)),
        "labels": (labels_ops, (x4(5), rng.integers(0, 4, size=5)), (x4(8), rng.integers(0, 4, size=8))),
    }


CASES = _cases()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (path, model) of every case, exported once."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, (fn, args, _) in CASES.items():
        path = str(folder / f"{name}.onnx")
        out[name] = (path, gc.onnx.export(fn, path, *args))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_exported_model_matches_numpy(exported, runtime, name):
    fn, args, other = CASES[name]
    path, model = exported[name]
    assert_outputs(runtime(path, feeds_of(model, *args)), eager(fn, *args), name)
    if other is not None:  # the batch dimension is dynamic: another batch size runs too
        assert dims(model.graph.input[0])[0] == "B"
        assert_outputs(runtime(path, feeds_of(model, *other)), eager(fn, *other), f"{name} at another batch")


@pytest.mark.parametrize("name", ["mlp", "batchnorm_dropout", "broadcast_reduce"])
def test_exported_model_matches_compiled_graphc(exported, name):
    """The compiled function (one Numba compile per model) and the ONNX model agree."""
    fn, args, _ = CASES[name]
    path, model = exported[name]
    compiled = gc.trace(fn, *args)
    assert_outputs(ReferenceEvaluator(path).run(None, feeds_of(model, *args)), eager(compiled, *args), name)


@pytest.mark.parametrize("name", ["softmax", "float64", "integers", "labels"])
def test_exported_model_matches_graphc_interpreter(exported, name):
    fn, args, _ = CASES[name]
    path, model = exported[name]
    interpreted = gc.trace(fn, device="numpy")
    assert_outputs(ReferenceEvaluator(path).run(None, feeds_of(model, *args)), eager(interpreted, *args), name)


# -- every mapped op, on both runtimes ----------------------------------------------------------------
CAPTURED = np.linspace(-1.0, 1.0, 5).astype(np.float32)  # a global the function reads: an initializer


def float_zoo(x, y):
    return (np.sin(x) + np.cos(x) * np.tan(x * 0.1), np.sinh(x * 0.1) - np.cosh(x * 0.1),
            np.arctan(x) + np.arcsin(x * 0.1) + np.arccos(x * 0.1),
            np.arcsinh(x) + np.arccosh(np.abs(x) + 1) + np.arctanh(x * 0.1),
            np.floor(x) + np.ceil(x) + np.rint(x * 2.5), np.sign(x) * np.sqrt(np.abs(x)),
            np.exp2(x) + np.log2(np.abs(x) + 1) + np.log10(np.abs(x) + 1), np.power(np.abs(x), y),
            np.clip(x, -0.5, y), gc.sigmoid(x), np.cumsum(x, axis=1), np.prod(x, axis=0), np.argmin(x, axis=1),
            np.min(x), x.astype(np.int32), (x > 0).astype(np.float32), x @ y.T, x * CAPTURED)


def int_zoo(i, j, p, q):
    return (i + j, i * j, i - j, np.maximum(i, j), gc.relu(i), -i, np.abs(i), i // j, i % j, np.cumsum(i, axis=0),
            np.sum(i, axis=1), i.mean(), p & q, p | q, p ^ q, ~p, p + q, p * q, np.maximum(p, q), np.minimum(p, q),
            p == q, p != q, i < j, i <= j, i > j, i >= j, np.any(p, axis=1), np.all(p, axis=1), p.sum(),
            np.where(p, i, j), i ** 2, i.max(axis=1), i.astype(np.float64) / 3)


def index_zoo(x, k, m):
    cube = x.reshape(2, 2, 5)
    return (x[k], x[1], x[:, k], x[k, m], cube[:, k[:2] % 2, m[1:]], cube[k[:, None] % 2, :, m[None, :2]],
            x[::-1, 1::2], x[None, 2:, :3], x[k][:, m],
            np.concatenate([x, x[:, :1]], axis=1), np.broadcast_to(x[:1], x.shape), np.stack([x, x]),
            np.transpose(x)[::2], gc.one_hot(k, 5), np.arange(5.0) * x[0, 0])


def _zoo_cases():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    i = np.arange(12).reshape(4, 3) - 5
    return {"float": (float_zoo, (x, rng.uniform(0.5, 1.5, size=(4, 5)).astype(np.float32))),
            "int": (int_zoo, (i, np.array([3, -2, 5]), i > 0, i % 2 == 0)),
            "index": (index_zoo, (x, np.array([0, 3, -1]), np.array([1, 2, 4])))}


ZOO = _zoo_cases()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {name: (str(folder / f"{name}.onnx"), gc.onnx.export(fn, str(folder / f"{name}.onnx"), *args,
                                                                dynamic_batch=False))
            for name, (fn, args) in ZOO.items()}


@pytest.mark.parametrize("name", list(ZOO))
def test_op_zoo(zoo, runtime, name):
    fn, args = ZOO[name]
    path, model = zoo[name]
    assert_outputs(runtime(path, feeds_of(model, *args)), eager(fn, *args), f"{name} zoo")


def test_every_mapped_op_is_exported_by_a_test():
    """Each graphc op with an ONNX rule occurs in the O1 graph of a model above."""
    seen = set()
    for fn, args, *_ in list(CASES.values()) + list(ZOO.values()):
        graph = gc.trace(fn, device="numpy", passes="O1").lower(*args).graph
        seen |= {n.op for n in graph.nodes}
    assert set(gc.onnx._RULES) - seen == set()


def test_the_model_is_standard_onnx(exported):
    path, model = exported["mlp"]
    loaded = onnx.load(path)
    onnx.checker.check_model(loaded, full_check=True)
    assert [(o.domain, o.version) for o in loaded.opset_import] == [("", 18)]
    assert loaded.ir_version <= 9  # older runtimes load it
    ops = [n.op_type for n in loaded.graph.node]
    assert ops.count("Gemm") == 3 and "MatMul" not in ops and "Add" not in ops  # bias folded into Gemm
    assert [i.name for i in loaded.graph.input] == ["x"]
    assert dims(loaded.graph.input[0]) == ["B", 6] and dims(loaded.graph.output[0]) == ["B", 3]
    # parameters are initializers with their module names and current values
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    np.testing.assert_array_equal(inits["0.weight"], CASES["mlp"][0][0].weight.data)
    # a batched product (3-D, one operand transposed) is a MatMul
    assert {"MatMul", "Transpose"} <= {n.op_type for n in exported["float64"][1].graph.node}
    # reductions take their axes as inputs from opset 18 on
    reduce = next(n for n in exported["softmax"][1].graph.node if n.op_type == "ReduceMax")
    assert len(reduce.input) == 2 and not any(a.name == "axes" for a in reduce.attribute)


def test_explicit_casts_where_numpy_promotes(exported):
    ops = [n.op_type for n in exported["broadcast_reduce"][1].graph.node]
    casts = [n for n in exported["broadcast_reduce"][1].graph.node if n.op_type == "Cast"]
    targets = {a.i for n in casts for a in n.attribute if a.name == "to"}
    assert onnx.TensorProto.INT64 in targets and onnx.TensorProto.DOUBLE in targets, ops


def test_older_opset_puts_axes_in_attributes(tmp_path):
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    fn = lambda x: (x.max(axis=1), x.sum(axis=0), x.mean())  # noqa: E731
    model = gc.onnx.export(fn, tmp_path / "old.onnx", x, opset=17)
    assert model.opset_import[0].version == 17
    reduce_max = next(n for n in model.graph.node if n.op_type == "ReduceMax")
    assert [a.name for a in reduce_max.attribute if a.name == "axes"] == ["axes"]
    assert_outputs(ReferenceEvaluator(model).run(None, feeds_of(model, x)), eager(fn, x), "opset 17")


def test_special_values(tmp_path, runtime):
    x = np.array([[np.inf, -np.inf, 0.0, -0.0], [1e30, -1e30, 3.0, 2.0]], np.float32)
    fn = lambda x: (np.exp(-np.abs(x)), gc.softmax(x[1:], axis=1), x * 2)  # noqa: E731
    path = str(tmp_path / "special.onnx")
    model = gc.onnx.export(fn, path, x, dynamic_batch=False)
    assert_outputs(runtime(path, feeds_of(model, x)), eager(fn, x), "special values")


def test_nan_wins_in_max_min_and_their_arg_reductions(tmp_path, runtime):
    x = np.array([[1, np.nan, 3, np.nan], [5, 2, np.inf, 1], [np.nan, 0, 9, 9]], np.float32)
    fn = lambda a: (np.argmax(a, axis=1), np.argmin(a, axis=0), np.max(a, axis=1), np.min(a, axis=0),  # noqa: E731
                    np.max(a), np.maximum(a, 2.0), np.minimum(a, 2.0), np.clip(a, 0, 2))
    path = str(tmp_path / "nan.onnx")
    model = gc.onnx.export(fn, path, x, dynamic_batch=False)
    assert_outputs(runtime(path, feeds_of(model, x)), eager(fn, x), "NaN")


def test_a_traced_function_exports_without_examples(tmp_path):
    """gc.onnx.export(gc.trace(fn, x), path): the latest signature, traced again before fusion."""
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    f = gc.trace(lambda a: np.tanh(a * 2.0 + 1.0).sum(axis=1), x)
    assert any(n.op == "fused" for n in f.graph.nodes)
    model = gc.onnx.export(f, tmp_path / "f.onnx")
    assert dims(model.graph.input[0]) == ["B", 4]
    assert [n.op_type for n in model.graph.node] == ["Mul", "Add", "Tanh", "ReduceSum"]
    x3 = x[:3].copy()
    assert_outputs(ReferenceEvaluator(model).run(None, feeds_of(model, x3)), [f(x3)], "traced function")


def test_outputs_that_are_inputs_repeated_or_constants(tmp_path, runtime):
    """Returned inputs, a value returned twice, Python numbers and nested arguments."""
    x = np.arange(6.0).reshape(3, 2)
    fn = lambda a, batch: (a, a * 2, a * 2, 3.0, batch[0] - batch[1], np.float32(2) * a.sum())  # noqa: E731
    path = str(tmp_path / "outputs.onnx")
    model = gc.onnx.export(fn, path, x, [x, x + 1])
    assert [i.name for i in model.graph.input] == ["a", "batch_0", "batch_1"]
    assert len({o.name for o in model.graph.output}) == 6
    assert_outputs(runtime(path, feeds_of(model, x, x, x + 1)), eager(fn, x, [x, x + 1]), "outputs")


def test_a_module_in_training_mode_warns_that_state_updates_are_not_exported(tmp_path):
    nn.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))  # training mode: batch statistics
    x = np.random.default_rng(4).normal(size=(4, 2)).astype(np.float32)
    with pytest.warns(UserWarning, match="Sequential updates State"):
        onnx_model = gc.onnx.export(model, tmp_path / "train.onnx", x, dynamic_batch=False)
    before = model[1].running_mean.data.copy()
    want = model(x)
    assert_outputs(ReferenceEvaluator(onnx_model).run(None, feeds_of(onnx_model, x)), [want], "train mode")
    assert not np.array_equal(model[1].running_mean.data, before)  # (the eager call did update them)


def test_symbolic_dims_of_the_graph_become_dim_params(runtime, tmp_path):
    """A graph whose types already carry a symbol (graphc.symbolic's form: a str in the shape)
    exports it as a dim_param, in value types and in shape attributes."""
    g = Graph(name="sym")
    x = g.add_input(TensorType(("N", 4), "float32"), "x")
    w = g.add_input(TensorType((3, 4), "float32"), "w", "state")
    y = g.add_node("matmul", [x, w], {"transpose_b": True}, [TensorType(("N", 3), "float32")]).outputs[0]
    r = g.add_node("reshape", [y], {"shape": ("N", 3, 1)}, [TensorType(("N", 3, 1), "float32")]).outputs[0]
    b = g.add_node("broadcast_to", [r], {"shape": ("N", 3, 2)}, [TensorType(("N", 3, 2), "float32")]).outputs[0]
    g.outputs = [b]
    weights = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    traced = gc.onnx._Traced("sym", g, {1: weights}, 1, {}, None, None)
    model = gc.onnx._Builder(traced, 18).model()
    onnx.checker.check_model(model, full_check=True)
    assert dims(model.graph.input[0]) == ["N", 4] and dims(model.graph.output[0]) == ["N", 3, 2]
    path = str(tmp_path / "sym.onnx")
    onnx.save(model, path)
    for n in (1, 6):
        xs = np.ones((n, 4), np.float32)
        want = np.broadcast_to((xs @ weights.T)[:, :, None], (n, 3, 2))
        assert_outputs(runtime(path, {"x": xs}), [want], f"N={n}")


def test_a_graph_fixed_to_its_batch_size_exports_static(tmp_path):
    x = np.ones((5, 4), np.float32)
    line = sys._getframe().f_lineno + 1
    fn = lambda a: a.sum(axis=0) / a.shape[0]  # noqa: E731  (the batch size becomes a constant)
    with pytest.warns(UserWarning, match=f"static batch size.*test_onnx.py:{line} depends on the batch size"):
        model = gc.onnx.export(fn, tmp_path / "auto.onnx", x)
    assert dims(model.graph.input[0]) == [5, 4]
    assert_outputs(ReferenceEvaluator(model).run(None, feeds_of(model, x)), eager(fn, x), "static")
    with pytest.raises(gc.ExportError, match=f"dynamic batch.*test_onnx.py:{line}.*constant"):
        gc.onnx.export(fn, tmp_path / "dynamic.onnx", x, dynamic_batch=True)
    assert not (tmp_path / "dynamic.onnx").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = gc.onnx.export(lambda a: a * 2, tmp_path / "static.onnx", x, dynamic_batch=False)
    assert dims(model.graph.input[0]) == [5, 4]


def test_code_deciding_by_the_batch_size_alike_at_both_probes_exports_static(tmp_path):
    """``len(a) > 100`` holds at both probe sizes: a dynamic model would double a batch of 5,
    which NumPy does not; the trace at batch size 2 shows it (static, with a warning)."""
    x = np.ones((5, 4), np.float32)
    line = sys._getframe().f_lineno + 1
    fn = lambda a: a * 2 if len(a) > 100 else a + 1  # noqa: E731
    with pytest.warns(UserWarning, match=f"static batch size.*batch size 2.*test_onnx.py:{line}"):
        model = gc.onnx.export(fn, tmp_path / "big.onnx", x)
    assert dims(model.graph.input[0]) == [5, 4]
    assert_outputs(ReferenceEvaluator(model).run(None, feeds_of(model, x)), eager(fn, x), "static")
    with pytest.raises(gc.ExportError, match="dynamic batch.*batch size 2"):
        gc.onnx.export(fn, tmp_path / "dynamic.onnx", x, dynamic_batch=True)
    # x.shape[0] == x.shape[1] holds only at 4 (an input's other size); np.squeeze treats 1 apart
    for fn, n in ((lambda a: a @ a if a.shape[0] == a.shape[1] else a * 3, 4), (np.squeeze, 1)):
        with pytest.warns(UserWarning, match=f"static batch size.*batch size {n} does not"):
            model = gc.onnx.export(fn, tmp_path / "other.onnx", x)
        assert dims(model.graph.input[0]) == [5, 4]


def test_an_argument_whose_leading_size_only_equals_the_batch_stays_static(tmp_path, runtime):
    """A (4, 5) weight beside a batch of 4: batching both failed and the whole model went static
    with a warning; now only x is batched."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    fn = lambda a, b: np.tanh(a @ b)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = gc.onnx.export(fn, tmp_path / "mm.onnx", x, w)
    assert dims(model.graph.input[0]) == ["B", 4] and dims(model.graph.input[1]) == [4, 5]
    x7 = rng.standard_normal((7, 4)).astype(np.float32)
    assert_outputs(runtime(str(tmp_path / "mm.onnx"), feeds_of(model, x7, w)), eager(fn, x7, w), "batch 7")


def test_variance_is_dynamic_except_over_the_batch(tmp_path, runtime):
    """np.var divides by a count node, which O1 folds to a constant in each probe trace: over the
    batch axis that constant differs between the probes (exported static, with a warning naming
    the line; refused under dynamic_batch=True), over another axis it is the same (dynamic)."""
    x = np.random.default_rng(6).normal(size=(5, 3)).astype(np.float32)
    line = sys._getframe().f_lineno + 1
    over_batch = lambda a: np.var(a, axis=0, ddof=1)  # noqa: E731
    path = str(tmp_path / "var_batch.onnx")
    with pytest.warns(UserWarning, match=f"static batch size.*test_onnx.py:{line} depends.*constant"):
        model = gc.onnx.export(over_batch, path, x)
    assert dims(model.graph.input[0]) == [5, 3]
    assert_outputs(runtime(path, feeds_of(model, x)), eager(over_batch, x), "var over the batch")
    with pytest.raises(gc.ExportError, match=f"dynamic batch.*test_onnx.py:{line}"):
        gc.onnx.export(over_batch, tmp_path / "refused.onnx", x, dynamic_batch=True)
    over_features = lambda a: (np.var(a, axis=1, ddof=1), np.std(a, axis=-1))  # noqa: E731
    path = str(tmp_path / "var_features.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = gc.onnx.export(over_features, path, x, dynamic_batch=True)
    assert dims(model.graph.input[0]) == ["B", 3]
    for xs in (x, x[:2], np.tile(x, (3, 1))):
        assert_outputs(runtime(path, feeds_of(model, xs)), eager(over_features, xs), f"var at {len(xs)}")


def test_the_template_must_hold_at_the_examples_batch_size(tmp_path):
    """The batch is probed at sizes no model dim is likely to have (graphc.symbolic.PROBES), and
    the graph for a general batch must hold at the example's: x[:5] of a batch of 3 (which a
    second trace at 4 would mistake for the whole batch) and np.squeeze of a batch of 1 export
    static, saying why, and so does x[:1500]; x[:5] of a batch of 8 is dynamic."""
    head = lambda a: a[:5] * 2  # noqa: E731
    x3, x8 = np.arange(6.0).reshape(3, 2), np.arange(16.0).reshape(8, 2)
    with pytest.warns(UserWarning, match="does not hold at the example's batch size.*B=3"):
        model = gc.onnx.export(head, tmp_path / "head3.onnx", x3)
    assert dims(model.graph.input[0]) == [3, 2]
    assert_outputs(ReferenceEvaluator(model).run(None, feeds_of(model, x3)), eager(head, x3), "x[:5] of 3")
    model = gc.onnx.export(head, tmp_path / "head8.onnx", x8, dynamic_batch=True)
    assert dims(model.graph.input[0]) == ["B", 2] and dims(model.graph.output[0]) == [5, 2]
    for xs in (x8, np.arange(12.0).reshape(6, 2)):
        assert_outputs(ReferenceEvaluator(model).run(None, feeds_of(model, xs)), eager(head, xs), "x[:5]")
    with pytest.warns(UserWarning, match=r"batch size 1 it returns f64\[2\], but f64\[1,2\] for a general"):
        model = gc.onnx.export(np.squeeze, tmp_path / "squeeze.onnx", x3[:1])
    assert dims(model.graph.input[0]) == [1, 2] and dims(model.graph.output[0]) == [2]
    # the probe traces run under symbolic.probing: x[:1500] is all of a probe batch only
    probes = " and ".join(map(str, gc.symbolic.PROBES))
    with pytest.warns(UserWarning, match=f"1500.*depends on the batch size.*traced at batch sizes {probes}"):
        model = gc.onnx.export(lambda a: a[:1500], tmp_path / "head1500.onnx", x3)
    assert dims(model.graph.input[0]) == [3, 2]


def test_an_op_with_no_mapping_names_the_op_types_and_line(tmp_path):
    x = np.ones((5, 4), np.float32)
    path = tmp_path / "sorted.onnx"
    line = sys._getframe().f_lineno + 2
    with pytest.raises(gc.ExportError) as info:
        gc.onnx.export(lambda a: np.sort(a, axis=1) + 1, path, x)
    message = str(info.value)
    assert "'sort'" in message and "f32[B,4]" in message and "axis=1" in message  # (the template's types)
    assert f"test_onnx.py:{line}" in message
    assert not path.exists()


def test_float_floor_division_is_refused_rather_than_approximated(tmp_path):
    x = np.ones((2, 3))
    with pytest.raises(gc.ExportError, match="'floordiv'.*f64"):
        gc.onnx.export(lambda a: a // 0.3, tmp_path / "fd.onnx", x)


def test_bad_paths(tmp_path):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(gc.ExportError, match="does not exist"):
        gc.onnx.export(lambda a: a + 1, tmp_path / "missing" / "m.onnx", x)
    (tmp_path / "taken").mkdir()
    with pytest.raises(gc.ExportError, match="cannot write"):
        gc.onnx.export(lambda a: a + 1, tmp_path / "taken", x)
    assert sorted(os.listdir(tmp_path)) == ["taken"]  # no temporary file left behind


def test_a_failed_export_leaves_an_existing_file_alone(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(gc.ExportError):
        gc.onnx.export(lambda a: np.sort(a), path, np.ones(3))
    assert path.read_bytes() == b"previous"


def test_bad_arguments(tmp_path):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="opset"):
        gc.onnx.export(lambda a: a, tmp_path / "m.onnx", x, opset=11)
    with pytest.raises(ValueError, match="dynamic_batch"):
        gc.onnx.export(lambda a: a, tmp_path / "m.onnx", x, dynamic_batch="yes")
    with pytest.raises(TypeError, match="example arguments"):
        gc.onnx.export(lambda a: a, tmp_path / "m.onnx")
    gc.save(lambda a: a * 2, tmp_path / "double.gcx", x)
    for examples in ((), (x,)):  # (with examples it was a ShapeError: "must be a NumPy array, got Tracer")
        with pytest.raises(gc.ExportError, match="loaded from .*double.gcx.*not supported"):
            gc.onnx.export(gc.load(tmp_path / "double.gcx"), tmp_path / "m.onnx", *examples)


def test_import_graphc_does_not_load_onnx():
    code = "import sys, graphc; assert 'onnx' not in sys.modules; graphc.onnx; assert 'onnx' in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
