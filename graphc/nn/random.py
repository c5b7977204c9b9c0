"""Counter-based random numbers for traced code (dropout masks).

The design is SplitMix64 used as a counter-based generator (as JAX's
threefry / PyTorch's Philox offsets, but simpler): element ``i`` of a draw is
``mix64(seed * K + (counter + i) * GAMMA)``, where ``mix64`` is SplitMix64's
finalizer (xor-shift-multiply, passes BigCrush). Each draw of ``n`` numbers
advances ``counter`` by ``n``. ``seed`` and ``counter`` are ``State`` (int64,
0-d), so inside a compiled step the generator is an ordinary graph input and
its new counter is written back after the call: every call draws fresh numbers
with no retrace, and re-seeding changes data, not the graph.

All arithmetic is int64 with wraparound, as NumPy's (graphc's compiled int64
``*`` and ``+`` wrap too: graphc.ops.elementwise ``_wrapping``), with the bit
primitives of graphc/ops/bitwise.py (``bitxor``, ``lshr``).
"""
from __future__ import annotations

import numpy as np

from graphc.ops.bitwise import bitxor, lshr
from graphc.ops.elementwise import add, cast, iota, multiply
from graphc.ops.reduction import element_count
from graphc.state import State
from graphc.nn import init

_GAMMA = -7046029254386353131     # 0x9E3779B97F4A7C15 as int64
_M1 = -4658895280553007687        # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685        # 0x94D049BB133111EB
_SEED_K = 0x2545F4914F6CDD1D


def _wrapping(fn):
    with np.errstate(over="ignore"):
        return fn()


def mix64(z):
    """SplitMix64's finalizer on int64 bits."""
    def run():
        x = multiply(bitxor(z, lshr(z, 30)), np.int64(_M1))
        x = multiply(bitxor(x, lshr(x, 27)), np.int64(_M2))
        return bitxor(x, lshr(x, 31))
    return _wrapping(run)


def _flat_index(shape):
    """int64 array of ``shape`` holding each element's row-major position."""
    if not shape:
        return np.zeros((), np.int64)
    idx, stride = None, 1
    for axis in range(len(shape) - 1, -1, -1):
        term = iota(shape, axis=axis)
        term = term if stride == 1 else multiply(term, np.int64(stride))
        idx = term if idx is None else add(idx, term)
        stride *= shape[axis]
    return idx


class Generator:
    """A counter-based generator whose seed and counter are ``State``."""

    def __init__(self, seed: int = 0):
        self.seed_state = State(np.array(int(seed), np.int64))
        self.counter = State(np.array(0, np.int64))
        self.seed_state.name = "generator.seed"
        self.counter.name = "generator.counter"

    def manual_seed(self, seed: int):
        """Restart the stream: changes data only (no retrace of compiled steps)."""
        self.seed_state.data[...] = int(seed)
        self.counter.data[...] = 0
        return self

    def bits(self, shape, like=None):
        """int64 random bits of ``shape``; advances the counter (inside a trace: on each call).
        ``like``: an array of that shape, whose element count (a node, generic in a symbolic batch
        size) advances the counter instead of a Python number."""
        shape = tuple(int(n) for n in shape)
        n = np.int64(int(np.prod(shape)) if shape else 1)
        if like is not None:
            n = element_count(like, range(len(shape)), "int64")
        base = self.counter.read()
        seed = self.seed_state.read()

        def run():
            start = add(multiply(seed, np.int64(_SEED_K)), multiply(base, np.int64(_GAMMA)))
            z = add(start, multiply(_flat_index(shape), np.int64(_GAMMA)))
            # write last: eagerly, ``base`` is the counter's own array
            self.counter.write(add(base, n))
            return mix64(z)
        return _wrapping(run)

    def uniform(self, shape, dtype="float32", like=None):
        """Uniform floats in [0, 1) (24 random bits for float32, 53 for float64); ``like`` as in ``bits``."""
        dtype = np.dtype(dtype).name
        nbits = 24 if dtype == "float32" else 53
        u = cast(lshr(self.bits(shape, like), 64 - nbits), dtype)
        return multiply(u, np.asarray(2.0 ** -nbits, dtype))

    def state_dict(self):
        return {"seed": int(self.seed_state._data), "counter": int(self.counter._data)}

    def load_state_dict(self, sd):
        self.seed_state.data[...] = int(sd["seed"])
        self.counter.data[...] = int(sd["counter"])


default_generator = Generator(0)


def manual_seed(seed: int):
    """Seed graphc.nn's default generator (dropout) and the init generator."""
    default_generator.manual_seed(seed)
    init.manual_seed(seed)
    return default_generator
