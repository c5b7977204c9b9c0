"""graphc.data: datasets and batching for training loops (as ``torch.utils.data``), NumPy only.

Batches are NumPy arrays, so a compiled step gets the same signature every
batch (use ``drop_last=True`` to avoid a second compile for a short last batch).
"""
from __future__ import annotations

import math
import operator

import numpy as np

__all__ = ["ConcatDataset", "DataLoader", "Dataset", "Subset", "TensorDataset", "default_collate",
           "random_split"]


class Dataset:
    """Anything with ``__getitem__(i)`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Arrays of equal first dimension; item ``i`` is the tuple ``(a[i] for a in arrays)``."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
                            for a in arrays)
        n = len(self.arrays[0])
        for k, a in enumerate(self.arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(f"TensorDataset: all arrays need the same first dimension; array 0 "
                                 f"has {n} rows, array {k} has shape {a.shape}")

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])


class Subset(Dataset):
    """The items of ``dataset`` at ``indices``; an index out of range raises IndexError."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)

    def __getitem__(self, index):
        if isinstance(index, (np.ndarray, list)):
            return self.dataset[self.indices[np.asarray(index)]] if _batchable(self.dataset) else \
                [self.dataset[int(i)] for i in self.indices[np.asarray(index)]]
        return self.dataset[int(self.indices[index])]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """Datasets one after another; an index out of range raises IndexError, as PyTorch's."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        self.cumulative = np.cumsum([len(d) for d in self.datasets])

    def __len__(self):
        return int(self.cumulative[-1]) if len(self.cumulative) else 0

    def __getitem__(self, index):
        index, n = operator.index(index), len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for a ConcatDataset of length {n}")
        if index < 0:
            index += n
        k = int(np.searchsorted(self.cumulative, index, side="right"))
        start = int(self.cumulative[k - 1]) if k else 0
        return self.datasets[k][index - start]


def _batchable(dataset) -> bool:
    """Datasets that can be indexed with an array of indices at once (fast path)."""
    if isinstance(dataset, TensorDataset):
        return True
    return isinstance(dataset, Subset) and _batchable(dataset.dataset)


def default_collate(batch):
    """Stack a list of samples: arrays/numbers -> one array; tuples/dicts recursively."""
    first = batch[0]
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(first, (tuple, list)):
        return type(first)(default_collate(list(s)) for s in zip(*batch))
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if hasattr(first, "detach"):
        batch = [b.detach().cpu().numpy() for b in batch]
    if isinstance(first, (str, bytes)):
        return list(batch)
    return np.stack([np.asarray(b) for b in batch])


def _make_rng(generator, seed):
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is not None:
        return np.random.default_rng(generator)
    return np.random.default_rng(seed)


class DataLoader:
    """Batches of a dataset: ``for xb, yb in DataLoader(ds, batch_size=64, shuffle=True): ...``.

    ``shuffle`` draws a new permutation each epoch from ``generator`` (a NumPy
    Generator or a seed; default: a fresh unseeded one). ``drop_last`` drops a
    short final batch; ``collate_fn`` turns a list of samples into a batch
    (default: stack NumPy arrays). ``TensorDataset``s are sliced directly.
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool = False, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn=None, pin_memory: bool = False,
                 drop_last: bool = False, generator=None, seed=None):
        if batch_size is not None and (int(batch_size) != batch_size or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer, got {batch_size!r}")
        if num_workers:
            raise ValueError("graphc.data.DataLoader loads in the main process only (num_workers=0)")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.collate_fn = collate_fn
        self.generator = _make_rng(generator, seed)

    def _indices(self):
        n = len(self.dataset)
        if self.sampler is not None:
            return np.asarray(list(self.sampler), dtype=np.int64)
        return self.generator.permutation(n) if self.shuffle else np.arange(n)

    def _batches(self):
        if self.batch_sampler is not None:
            yield from (np.asarray(b, dtype=np.int64) for b in self.batch_sampler)
            return
        idx = self._indices()
        if self.batch_size is None:
            yield from idx
            return
        bs = self.batch_size
        stop = len(idx) - len(idx) % bs if self.drop_last else len(idx)
        for start in range(0, stop, bs):
            yield idx[start:start + bs]

    def __iter__(self):
        fast = self.collate_fn is None and _batchable(self.dataset)
        for b in self._batches():
            if np.ndim(b) == 0:  # batch_size=None: single samples
                yield self.dataset[int(b)]
            elif fast:
                yield self.dataset[b]
            else:
                samples = [self.dataset[int(i)] for i in b]
                yield (self.collate_fn or default_collate)(samples)

    def __len__(self):
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(0 <= f <= 1 for f in lengths) and math.isclose(sum(lengths), 1) and sum(lengths) != n:
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):  # spread the remainder round-robin, as PyTorch
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"sum of input lengths ({sum(lengths)}) does not equal the length of the "
                         f"dataset ({n})")
    perm = _make_rng(generator, None).permutation(n)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[start:start + k]))
        start += k
    return out
