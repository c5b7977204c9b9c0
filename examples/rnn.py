"""Train a small recurrent network with ``gc.scan`` to continue sine waves.

An Elman RNN, h_t = tanh(W_in x_t + W_rec h_{t-1} + b), y_t = W_out h_t, reads windows of
sine waves of random frequency and phase and learns to predict each next value. The time loop
is one ``gc.scan`` node: the training step (forward over the window, backpropagation through
time, Adam update) is traced once and compiled once, whatever the window's length (a Python
loop over time would be unrolled into one copy of the cell per step). The parameters are
read inside the scan's body and ``loss.backward()`` goes through the scan, as in PyTorch.

After training, the network continues a wave it has not seen on its own: a second scan feeds
each prediction back as the next input.

    pip install "graphc[examples]"      # tqdm, matplotlib (optional here)
    python examples/rnn.py [--epochs 15] [--hidden 32] [--window 32] [--plot rnn_loss.png]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphc as gc
from graphc import data, nn, optim

try:
    from tqdm import tqdm
except ImportError:  # a plain loop without the progress bar
    tqdm = None


class ElmanRNN(nn.Module):
    """A one-layer tanh RNN with a linear read-out at every step; sequences are (batch, time, 1)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(1, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)

    def cell(self, h, x):
        """One time step: the new hidden state, and the prediction of the next value."""
        h = np.tanh(self.inp(x) + self.rec(h))
        return h, self.out(h)

    def forward(self, x, h0=None):
        """Predictions for every step of ``x`` (batch, time, 1), and the last hidden state."""
        if h0 is None:
            h0 = np.zeros((x.shape[0], self.hidden), np.float32)
        h, ys = gc.scan(self.cell, h0, x.transpose(1, 0, 2))  # scan over time: (time, batch, 1)
        return ys.transpose(1, 0, 2), h

    def generate(self, h, x, steps: int):
        """``steps`` values after the state ``h`` and the last input ``x``, each prediction fed
        back as the next input (a scan without xs)."""
        def step(carry, _):
            h, x = carry
            h, y = self.cell(h, x)
            return (h, y), y[:, 0]
        _, ys = gc.scan(step, (h, x), length=steps)
        return ys.T  # (batch, steps)


def sine_waves(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sampled sine waves of random frequency and phase, (n, length), float32."""
    freq = rng.uniform(0.2, 0.3, size=(n, 1))  # periods of 21 to 31 steps
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    return np.sin(freq * np.arange(length) + phase).astype(np.float32)


def progress(iterable, desc):
    return tqdm(iterable, desc=desc, leave=False) if tqdm is not None else iterable


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--window", type=int, default=32, help="time steps the network reads per example")
    ap.add_argument("--sequences", type=int, default=512, help="training windows")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--horizon", type=int, default=40, help="steps of the continuation after training")
    ap.add_argument("--plot", default="rnn_loss.png", help="where to save the loss curve ('' = none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    waves = sine_waves(args.sequences, args.window + 1, rng)[..., None]  # (n, window + 1, 1)
    inputs, targets = waves[:, :-1], waves[:, 1:]                          # predict the next value
    nn.manual_seed(args.seed)
    model = ElmanRNN(args.hidden)
    loss_fn = nn.MSELoss()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    loader = data.DataLoader(data.TensorDataset(inputs, targets), batch_size=args.batch_size, shuffle=True,
                             drop_last=True, generator=np.random.default_rng(args.seed))

    @gc.trace
    def train_step(x, t):
        opt.zero_grad()
        y, _ = model(x)
        loss = loss_fn(y, t)
        loss.backward()      # backpropagation through time: through the scan, in reverse
        opt.step()
        return loss

    start = time.perf_counter()
    curve = []
    for epoch in range(args.epochs):
        losses = []
        bar = progress(loader, f"epoch {epoch + 1:2d}/{args.epochs}")
        for xb, tb in bar:
            losses.append(float(train_step(xb, tb)))  # parameters and Adam state updated in place
            if tqdm is not None:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        curve.append(float(np.mean(losses)))
        (tqdm.write if tqdm is not None else print)(f"epoch {epoch + 1:2d}  train loss {curve[-1]:.5f}")
    elapsed = time.perf_counter() - start
    print(f"{args.epochs} epochs of {len(loader)} steps in {elapsed:.1f} s including compilation "
          f"({train_step.interpreted_calls} steps ran in the NumPy interpreter while Numba compiled)")

    # continue unseen waves: read a window, then feed the predictions back
    test = sine_waves(8, args.window + args.horizon, np.random.default_rng(args.seed + 1))
    continue_waves = gc.trace(lambda x: model.generate(*_last_state(model, x), args.horizon))
    predicted = continue_waves(test[:, :args.window, None])
    truth = test[:, args.window:]
    err = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    flat = float(np.sqrt(np.mean((truth - test[:, args.window - 1:args.window]) ** 2)))
    print(f"continuation of {args.horizon} steps on 8 unseen waves: RMS error {err:.4f} "
          f"(repeating the last value: {flat:.4f})")

    if args.plot:
        plot(curve, test, predicted, args)
    return curve, err, flat


def _last_state(model, x):
    """The hidden state after reading ``x`` (batch, time, 1), and its last value (batch, 1)."""
    _, h = model(x[:, :-1])
    return h, x[:, -1]


def plot(curve, test, predicted, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib to get it)")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.semilogy(range(1, len(curve) + 1), curve, marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss (MSE)", title="Elman RNN (gc.scan) on sine waves")
    t = np.arange(test.shape[1])
    for k, color in zip(range(3), ("tab:blue", "tab:red", "tab:green")):
        ax2.plot(t, test[k], color=color, lw=1, alpha=0.5)
        ax2.plot(t[args.window:], predicted[k], "--", color=color, lw=1.5)
    ax2.axvline(args.window - 0.5, color="0.5", lw=0.8)
    ax2.set(xlabel="time step", title="read the window, then continue (dashed)")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"loss curve and continuations saved to {args.plot}")


if __name__ == "__main__":
    main()
