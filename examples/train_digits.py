"""Train an MLP on scikit-learn's bundled digits (8x8 images, no download) with graphc.

The whole training step (forward, backward, Adam update) is one compiled call.

    pip install "graphc[examples]"      # scikit-learn, tqdm, matplotlib
    python examples/train_digits.py [--epochs 20] [--plot digits_loss.png] [--device cuda]
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from tqdm import tqdm

import graphc as gc
from graphc import data, nn, optim


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--plot", default="digits_loss.png", help="where to save the loss curve ('' = none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default="", help="save the trained model here (e.g. digits.gcx; '' = don't)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: the step runs as kernels on an NVIDIA GPU (the 'cuda' extra)")
    args = ap.parse_args()

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)          # 1797 x 64, pixels in [0, 1]
    y = digits.target.astype(np.int64)
    nn.manual_seed(args.seed)
    train_set, test_set = data.random_split(data.TensorDataset(X, y), [0.8, 0.2], generator=args.seed)
    X_test, y_test = test_set.dataset[test_set.indices]

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(args.device)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    sched = optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1 / (1 + 0.01 * epoch))
    # every example, the last partial batch too: the batch dimension is symbolic, so that
    # batch does not trace the step again (it compiles once for its size)
    loader = data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=False,
                             generator=np.random.default_rng(args.seed))

    @gc.trace(dynamic={"x": 0, "t": 0}, device=args.device)
    def train_step(x, t):
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    # a module traces like a function (its results as NumPy arrays, on either device)
    predict = gc.trace(model, device=args.device, **({"to_host": True} if args.device == "cuda" else {}))

    start = time.perf_counter()
    curve = []
    for epoch in range(args.epochs):
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1:2d}/{args.epochs}", leave=False)
        for xb, yb in bar:
            losses.append(float(train_step(xb, yb)))   # parameters and Adam state updated in place
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        sched.step()
        curve.append(np.mean(losses))
        acc = (predict(X_test).argmax(1) == y_test).mean()
        tqdm.write(f"epoch {epoch + 1:2d}  train loss {curve[-1]:.4f}  test accuracy {acc:.2%}  "
                   f"lr {sched.get_last_lr()[0]:.2e}")
    elapsed = time.perf_counter() - start
    acc = (predict(X_test).argmax(1) == y_test).mean()
    print(f"final test accuracy {acc:.2%} on {len(y_test)} held-out digits "
          f"({elapsed:.1f} s including compilation; the train step traced once for every batch size, "
          f"compiled for {train_step.signatures} sizes; {train_step.interpreted_calls} steps ran in the "
          f"NumPy interpreter while Numba compiled)")
    if args.save:
        model.eval()
        model.to("cpu")
        gc.save(model, args.save, X_test)  # loads anywhere with gc.load, without this code
        print(f"model saved to {args.save}: {gc.load(args.save).signature()}")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(range(1, len(curve) + 1), curve, marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss (cross-entropy)")
        ax.set_title(f"graphc MLP on digits: test accuracy {acc:.1%}")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"loss curve saved to {args.plot}")
    return acc


if __name__ == "__main__":
    main()
