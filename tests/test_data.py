"""graphc.data: TensorDataset, DataLoader batching/shuffling, random_split (no compilation)."""
import numpy as np
import pytest

from graphc import data


def make(n=10):
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return X, y, data.TensorDataset(X, y)


def test_tensor_dataset_items_and_errors():
    X, y, ds = make()
    assert len(ds) == 10
    xi, yi = ds[3]
    np.testing.assert_array_equal(xi, X[3])
    assert yi == 3
    with pytest.raises(ValueError, match="same first dimension"):
        data.TensorDataset(X, y[:5])


def test_batching_in_order_and_len():
    X, y, ds = make(10)
    loader = data.DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    dropped = data.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]


def test_shuffle_is_a_seeded_permutation_that_changes_per_epoch():
    X, y, ds = make(20)
    loader = data.DataLoader(ds, batch_size=5, shuffle=True, generator=np.random.default_rng(1))
    epoch1 = np.concatenate([b[1] for b in loader])
    epoch2 = np.concatenate([b[1] for b in loader])
    assert sorted(epoch1) == list(range(20)) and sorted(epoch2) == list(range(20))
    assert not np.array_equal(epoch1, np.arange(20)) and not np.array_equal(epoch1, epoch2)
    again = data.DataLoader(ds, batch_size=5, shuffle=True, generator=np.random.default_rng(1))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in again]), epoch1)
    # rows stay paired with their labels
    for xb, yb in data.DataLoader(ds, batch_size=7, shuffle=True, seed=3):
        np.testing.assert_array_equal(xb, X[yb])


class Squares(data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.full(2, i, np.float64), "y": i * i}


def test_custom_dataset_collate_and_collate_fn():
    batches = list(data.DataLoader(Squares(), batch_size=2))
    assert batches[0]["x"].shape == (2, 2) and list(batches[0]["y"]) == [0, 1]
    assert len(batches) == 3
    lists = list(data.DataLoader(Squares(), batch_size=3, collate_fn=lambda s: [d["y"] for d in s]))
    assert lists == [[0, 1, 4], [9, 16]]
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(Squares(), batch_size=0)


def test_random_split():
    X, y, ds = make(10)
    a, b = data.random_split(ds, [7, 3], generator=np.random.default_rng(0))
    assert len(a) == 7 and len(b) == 3
    ids = sorted(int(a[i][1]) for i in range(7)) + sorted(int(b[i][1]) for i in range(3))
    assert sorted(ids) == list(range(10))
    c, d = data.random_split(ds, [0.8, 0.2], generator=0)
    assert (len(c), len(d)) == (8, 2)
    xb, yb = next(iter(data.DataLoader(c, batch_size=8)))
    np.testing.assert_array_equal(xb, X[yb])
    with pytest.raises(ValueError, match="does not equal"):
        data.random_split(ds, [5, 6])
