"""Weight initialisation, as ``torch.nn.init`` (in place on ``Parameter``/``State``/arrays).

Random draws come from a NumPy generator seeded with ``manual_seed`` (or
``graphc.nn.manual_seed``, which also seeds dropout).
"""
from __future__ import annotations

import math

import numpy as np

from graphc.errors import TraceError
from graphc.trace import current_builder, user_line

_rng = np.random.default_rng(0)


def manual_seed(seed: int):
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _rng


def _array(t):
    return t.data if hasattr(t, "data") and not isinstance(t, np.ndarray) else t


def _fill(t, values):
    a = _array(t)
    a[...] = np.asarray(values).astype(a.dtype, copy=False)
    return t


def calculate_gain(nonlinearity: str, param=None) -> float:
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t):
    shape = _array(t).shape
    if len(shape) < 2:
        raise ValueError("fan in and fan out can not be computed for arrays with fewer than 2 dimensions")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(t, mode):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} is not supported; use 'fan_in' or 'fan_out'")
    return fan_in if mode == "fan_in" else fan_out


def _random(what):
    """Refused inside a trace: the draw would be made once, when traced, and written on every call."""
    if current_builder() is not None:
        raise TraceError(f"nn.init.{what} inside a traced function would write the same random draw "
                         f"on every call (at {user_line()}); initialise outside the traced function")


def uniform_(t, a: float = 0.0, b: float = 1.0, generator=None):
    _random("uniform_")
    return _fill(t, (generator or _rng).uniform(a, b, _array(t).shape))


def normal_(t, mean: float = 0.0, std: float = 1.0, generator=None):
    _random("normal_")
    return _fill(t, (generator or _rng).normal(mean, std, _array(t).shape))


def constant_(t, val: float):
    return _fill(t, val)


def zeros_(t):
    return _fill(t, 0)


def ones_(t):
    return _fill(t, 1)


def xavier_uniform_(t, gain: float = 1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, generator)


def xavier_normal_(t, gain: float = 1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(t, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None):
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None):
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    return normal_(t, 0.0, std, generator)
