"""``Parameter``: a trainable ``State`` with a ``.grad``.

Outside a trace ``p.data`` is the NumPy array and ``p.grad`` is None or an
array you set. Inside a traced function, ``loss.backward()`` sets ``p.grad`` to
the traced gradient *for that trace only* (every compiled call starts from
``zero_grad``), and ``opt.step()`` reads it.
"""
from __future__ import annotations

import numpy as np

from graphc.state import State
from graphc.trace import Tracer, current_builder

_READS = "graphc.nn.reads"   # builder.aux key: Parameter -> latest traced value read
_GRADS = "graphc.nn.grads"   # builder.aux key: Parameter -> traced gradient


class Parameter(State):
    """A trainable array. ``Parameter(np.zeros((3, 4), np.float32))``."""

    def __init__(self, data, requires_grad: bool = True, dtype=None):
        if isinstance(data, Parameter):
            data = data.data
        super().__init__(np.array(data, dtype=dtype, copy=True))
        self.requires_grad = requires_grad
        self._grad = None
        self.name = None  # set by Module (the state-dict key), used in error messages

    def read(self):
        value = super().read()
        builder = current_builder()
        if builder is not None and isinstance(value, Tracer):
            builder.aux.setdefault(_READS, {})[self] = value
        return value

    @property
    def grad(self):
        builder = current_builder()
        if builder is not None:
            return builder.aux.get(_GRADS, {}).get(self)
        return self._grad

    @grad.setter
    def grad(self, value):
        builder = current_builder()
        if builder is not None:
            grads = builder.aux.setdefault(_GRADS, {})
            if value is None:
                grads.pop(self, None)
            else:
                grads[self] = value
        else:
            self._grad = None if value is None else np.asarray(value)

    # conveniences, so a Parameter reads like an array in forward code
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.read().T)

    def numpy(self):
        return self.data

    __array_ufunc__ = None  # ndarray (op) Parameter defers to the Parameter's reflected operator

    def __array__(self, dtype=None, copy=None):
        if current_builder() is not None:
            from graphc.errors import TraceError
            raise TraceError(f"converting Parameter {self.name or ''} to a NumPy array inside a trace "
                             f"would bake its current value into the graph; use p.read() instead")
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        return f"Parameter({self.data!r})"

    __hash__ = object.__hash__


def _delegate(name):
    def method(self, *args):
        return getattr(self.read(), name)(*args)
    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__matmul__", "__rmatmul__", "__neg__", "__pow__", "__getitem__",
              "reshape", "sum", "mean"):
    setattr(Parameter, _name, _delegate(_name))
