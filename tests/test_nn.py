"""graphc.nn: modules, losses, BatchNorm/Dropout train and eval, state dicts, the compiled train step.

Compiling a train step takes seconds, so each compiled graph here checks many things.
"""
import math

import numpy as np
import pytest

import graphc as gc
from graphc import data, nn, optim
from graphc.errors import GraphcError, ShapeError, TraceError


def blobs(n=96, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y.astype(np.int64)


# -- the canonical loop, compiled -----------------------------------------------------------
def test_training_loop_compiles_to_one_step_and_learns():
    nn.manual_seed(0)
    X, y = blobs()
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=0.05)
    sched = optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1 / (1 + 0.1 * epoch))
    loader = data.DataLoader(data.TensorDataset(X, y), batch_size=32, shuffle=True, drop_last=True,
                             generator=np.random.default_rng(0))
    weight = model[0].weight.data  # updated in place: this reference stays valid

    @gc.trace(check_finite=True)
    def train_step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    losses = []
    for epoch in range(8):
        for xb, yb in loader:
            losses.append(float(train_step(xb, yb)))
        sched.step()
    assert train_step.signatures == 1  # the scheduler changed State data, not the graph
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 / 1.8)
    assert losses[-1] < 0.5 * losses[0], losses
    assert model[0].weight.data is weight and not np.array_equal(weight, 0)
    assert float(opt.state[model[0].weight]["step"].data) == 8 * 3

    predict = gc.trace(model)  # a module traces like a function
    logits = predict(X)
    np.testing.assert_allclose(logits, model(X), rtol=1e-5, atol=1e-5)
    assert (logits.argmax(1) == y).mean() > 0.9

    # bad labels: refused before anything is updated
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = yb.copy()
    bad[0] = 7
    with pytest.raises((ValueError, FloatingPointError), match="7|non-finite"):
        train_step(xb, bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_eager_label_error_names_largest_label_and_class_count():
    logits = np.zeros((3, 10), np.float32)
    with pytest.raises(ValueError, match=r"12.*10 classes|10 classes.*12"):
        nn.CrossEntropyLoss()(logits, np.array([1, 12, 3]))
    with pytest.raises(ValueError, match="-1"):
        nn.CrossEntropyLoss()(logits, np.array([1, -1, 3]))
    nn.CrossEntropyLoss(ignore_index=-1)(logits, np.array([1, -1, 3]))  # ignored: fine


def test_backward_outside_a_trace_explains():
    model = nn.Linear(2, 1)
    loss = nn.MSELoss()(model(np.ones((4, 2), np.float32)), np.zeros((4, 1), np.float32))
    with pytest.raises(TraceError, match="gc.trace"):
        loss.backward()


def test_mismatched_width_names_the_layer():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ShapeError, match=r"Linear layer '2'.*5.*\(3, 8\)"):
        model(np.zeros((3, 4), np.float32))
    with pytest.raises(ShapeError, match=r"Linear layer '0'"):
        gc.trace(model)(np.zeros((3, 6), np.float32))  # fails while tracing, before compiling


# -- BatchNorm and Dropout -------------------------------------------------------------------
def test_batchnorm_train_updates_running_stats_in_place_and_eval_uses_them():
    rng = np.random.default_rng(1)
    bn = nn.BatchNorm1d(3, momentum=0.2, dtype=np.float64)
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, -1.0, 3.0]
    rm, rv = bn.running_mean.data, bn.running_var.data
    f = gc.trace(bn)
    want_m, want_v = np.zeros(3), np.ones(3)
    for _ in range(2):
        x = rng.normal(2.0, 3.0, size=(8, 3))
        y = f(x)
        mu, var = x.mean(0), x.var(0)
        np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5) * bn.weight.data + bn.bias.data,
                                   rtol=1e-12, atol=1e-12)
        want_m = 0.8 * want_m + 0.2 * mu
        want_v = 0.8 * want_v + 0.2 * x.var(0, ddof=1)
        np.testing.assert_allclose(rm, want_m, rtol=1e-12)
        np.testing.assert_allclose(rv, want_v, rtol=1e-12)
    assert bn.running_mean.data is rm and int(bn.num_batches_tracked.data) == 2
    bn.eval()
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(bn(x), (x - want_m) / np.sqrt(want_v + 1e-5) * bn.weight.data + bn.bias.data,
                               rtol=1e-12)
    np.testing.assert_allclose(rm, want_m)  # eval leaves the statistics alone
    with pytest.raises(ShapeError, match="BatchNorm1d"):
        bn(np.zeros((4, 5)))


def test_dropout_mask_in_compiled_step_matches_eager_and_advances():
    nn.manual_seed(123)
    drop = nn.Dropout(p=0.25)
    x = np.ones((200, 50), np.float32)
    f = gc.trace(drop)
    counter0 = int(nn.default_generator.counter.data)
    eager = drop(x)  # the same generator, eagerly (NumPy reference of the same ops)
    nn.default_generator.counter.data[...] = counter0
    a = f(x)
    np.testing.assert_array_equal(a, eager)
    assert int(nn.default_generator.counter.data) == counter0 + x.size
    b = f(x)
    assert not np.array_equal(a, b)  # a fresh mask every call, no retrace
    assert f.signatures == 1
    for out in (a, b):
        kept = out != 0
        assert abs(kept.mean() - 0.75) < 0.02
        np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    nn.manual_seed(123)
    np.testing.assert_array_equal(f(x), a)  # re-seeding reproduces the stream
    drop.eval()
    np.testing.assert_array_equal(drop(x), x)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_random_bits_are_uniform():
    g = nn.Generator(7)
    u = np.asarray(g.uniform((100000,), "float64"))
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert hist.min() > 9500 and hist.max() < 10500


# -- gradients vs PyTorch (optional oracle) ---------------------------------------------------
def test_gradients_match_torch():
    torch = pytest.importorskip("torch")
    nn.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6, dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64), nn.Tanh(),
                          nn.Linear(6, 4, dtype=np.float64), nn.LeakyReLU(0.1))
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(),
                                 torch.nn.Linear(6, 4), torch.nn.LeakyReLU(0.1)).double()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(7, 5)), rng.integers(0, 4, size=7)

    @gc.trace
    def grads(x, t):
        loss = nn.CrossEntropyLoss(label_smoothing=0.1)(model(x), t)
        loss.backward()
        return loss, {k: p.grad for k, p in model.named_parameters()}

    loss, g = grads(x, t)
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(tmodel(torch.tensor(x)), torch.tensor(t))
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-12)
    for k, p in tmodel.named_parameters():
        np.testing.assert_allclose(g[k], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
    for k, v in tmodel.state_dict().items():  # running statistics as PyTorch's
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)


def test_losses_match_numpy_formulas():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    np.testing.assert_allclose(nn.MSELoss()(x, y), np.mean((x - y) ** 2))
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(x, y), np.sum((x - y) ** 2))
    np.testing.assert_allclose(nn.L1Loss(reduction="none")(x, y), np.abs(x - y))
    z = (y > 0).astype(np.float64)
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(nn.BCEWithLogitsLoss()(x, z), -np.mean(z * np.log(sig) + (1 - z) * np.log(1 - sig)))
    pw = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(nn.BCEWithLogitsLoss(pos_weight=pw)(x, z),
                               -np.mean(pw * z * np.log(sig) + (1 - z) * np.log(1 - sig)))
    t = rng.integers(0, 3, size=6)
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    nll = -logp[np.arange(6), t]
    np.testing.assert_allclose(nn.CrossEntropyLoss()(x, t), nll.mean())
    np.testing.assert_allclose(nn.CrossEntropyLoss(reduction="none")(x, t), nll)
    w = np.array([0.2, 1.0, 3.0])
    np.testing.assert_allclose(nn.CrossEntropyLoss(weight=w)(x, t), (w[t] * nll).sum() / w[t].sum())
    t2 = t.copy()
    t2[0] = -100
    np.testing.assert_allclose(nn.CrossEntropyLoss()(x, t2), nll[1:].mean())
    big = np.array([[1000.0, 0.0], [0.0, -1000.0]])  # stable log-softmax
    np.testing.assert_allclose(nn.CrossEntropyLoss(reduction="none")(big, np.array([1, 1])), [1000.0, 1000.0])
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


def test_activations_and_shape_layers():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(nn.ReLU()(x), np.maximum(x, 0))
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(x), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(nn.Sigmoid()(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(nn.Tanh()(x), np.tanh(x))
    np.testing.assert_allclose(nn.Softmax(dim=1)(x), np.exp(x) / np.exp(x).sum())
    assert nn.Flatten()(np.zeros((2, 3, 4))).shape == (2, 12)
    assert nn.Identity()(x) is x


# -- Module API and state dicts ----------------------------------------------------------------
def test_module_api():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.1), nn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert list(model.state_dict()) == names[:4] + ["1.running_mean", "1.running_var",
                                                    "1.num_batches_tracked"] + names[4:]
    assert model[0].weight.shape == (3, 4) and model[0].weight.dtype == np.float32
    assert len(list(model.children())) == 4 and len(list(model.modules())) == 5
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.to(np.float64)
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    assert "Linear(in_features=4, out_features=3, bias=True)" in repr(model)


def test_linear_default_init_is_pytorch_s():
    nn.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.95 * bound
    assert abs(layer.weight.data.std() - bound / math.sqrt(3)) < 0.01 * bound


def test_init_functions():
    w = nn.Parameter(np.empty((200, 300), np.float32))
    nn.init.xavier_uniform_(w)
    a = math.sqrt(6 / 500)
    assert np.abs(w.data).max() <= a and abs(w.data.std() - a / math.sqrt(3)) < 0.02 * a
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.data.std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    nn.init.xavier_normal_(w)
    assert abs(w.data.std() - math.sqrt(2 / 500)) < 0.02 * math.sqrt(2 / 500)
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert np.abs(w.data).max() <= math.sqrt(6 / 200)
    nn.init.zeros_(w)
    assert not w.data.any()
    nn.init.ones_(w)
    assert (w.data == 1).all()
    nn.init.normal_(w, 1.0, 0.5)
    assert abs(w.data.mean() - 1.0) < 0.01
    nn.init.uniform_(w, -2, -1)
    assert w.data.min() >= -2 and w.data.max() <= -1


def test_state_dict_round_trip_and_errors():
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    a[1].running_mean.data[...] = 0.5
    held = b[0].weight.data
    b.load_state_dict(a.state_dict())
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    assert b[0].weight.data is held  # loaded in place
    sd = dict(a.state_dict())
    del sd["0.bias"]
    sd["extra.weight"] = np.zeros(2)
    sd["2.weight"] = np.zeros((3, 3))
    with pytest.raises(GraphcError) as exc:
        b.load_state_dict(sd)
    msg = str(exc.value)
    assert "'0.bias'" in msg and "'extra.weight'" in msg and "2.weight" in msg and "(2, 4)" in msg
    np.testing.assert_array_equal(b.state_dict()["2.weight"], a.state_dict()["2.weight"])  # unchanged
    sd2 = dict(a.state_dict())
    del sd2["0.bias"]
    result = b.load_state_dict(sd2, strict=False)
    assert result.missing_keys == ["0.bias"]


def test_loads_a_pytorch_state_dict():
    torch = pytest.importorskip("torch")
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model.load_state_dict(tmodel.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x), tmodel(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
