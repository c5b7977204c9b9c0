"""The classic homework MLP (hidden layers + BatchNorm + SGD with momentum) on a spiral dataset.

Compares Xavier and Kaiming initialisation in a small table. Both runs reuse
the *same* compiled training step: re-initialising writes new numbers into the
parameter arrays in place, so nothing is traced or compiled again.

    python examples/mytorch_mlp.py [--epochs 60]
"""
import argparse
import time

import numpy as np

import graphc as gc
from graphc import data, nn, optim


def spiral(n_per_class=300, classes=3, noise=0.25, seed=0):
    """The CS231n spiral: ``classes`` interleaved arms in 2-D."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1, n_per_class)
        t = np.linspace(c * 4, (c + 1) * 4, n_per_class) + rng.normal(0, noise, n_per_class)
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(n_per_class, c))
    return np.concatenate(X).astype(np.float32), np.concatenate(y).astype(np.int64)


def initialise(model, scheme):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=64)
    args = ap.parse_args()

    X, y = spiral()
    train_set, test_set = data.random_split(data.TensorDataset(X, y), [0.8, 0.2], generator=0)
    X_test, y_test = test_set.dataset[test_set.indices]
    X_train, y_train = train_set.dataset[train_set.indices]
    X_all = np.concatenate([X_train, X_test])

    h = args.hidden
    model = nn.Sequential(
        nn.Linear(2, h), nn.BatchNorm1d(h), nn.ReLU(),
        nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(),
        nn.Linear(h, 3),
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    @gc.trace
    def train_step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    # traced in eval mode (BatchNorm with running statistics); only ever called in eval mode,
    # since a compiled graph keeps the mode it was traced in
    predict = gc.trace(model)

    rows = []
    for scheme in ("xavier", "kaiming"):
        nn.manual_seed(1)
        initialise(model, scheme)
        for buffers in opt.state.values():  # fresh momentum buffers, in place
            for st in buffers.values():
                st.data[...] = 0
        loader = data.DataLoader(train_set, batch_size=48, shuffle=True, drop_last=True, generator=1)
        start = time.perf_counter()
        model.train()
        first = None
        for epoch in range(args.epochs):
            losses = [float(train_step(xb, yb)) for xb, yb in loader]
            first = first if first is not None else np.mean(losses)
        seconds = time.perf_counter() - start
        model.eval()
        labels = predict(X_all).argmax(1)  # one call, one compiled signature
        train_acc = (labels[:len(y_train)] == y_train).mean()
        test_acc = (labels[len(y_train):] == y_test).mean()
        rows.append((scheme, first, np.mean(losses), train_acc, test_acc, seconds))

    print(f"\n{'init':<8} {'loss ep1':>9} {'loss last':>10} {'train acc':>10} {'test acc':>9} {'time':>7}")
    for scheme, l0, l1, tr, te, s in rows:
        print(f"{scheme:<8} {l0:9.4f} {l1:10.4f} {tr:10.2%} {te:9.2%} {s:6.1f}s")
    print(f"\n(one compiled train step: {train_step.signatures} signature; the first run's time includes "
          f"compiling it, {train_step.interpreted_calls} steps run by the NumPy interpreter meanwhile)")


if __name__ == "__main__":
    main()
