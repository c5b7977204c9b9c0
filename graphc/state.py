"""State: arrays that a compiled function reads and updates in place across calls.

Parameters, optimizer buffers, BatchNorm statistics, hyperparameters and RNG
counters are ``State``. Inside a trace, ``read()`` gives a traced value for an
implicit graph input (the runtime passes the current ``data`` on every call) and
``write(v)`` records a new value that ends up *in* ``data`` (written there by the
generated code when that is safe, graphc/backend/plan.py ``in_place``; otherwise copied
in after the call), so other references to the array stay valid. A hyperparameter
held in a 0-d State changes the numbers, not the graph: no retrace. ``data`` is the array
outside a trace and NumPy's name for it inside one (graphc/trace.py ``StateView``); graphc's
own code reads the array as ``_data``.
"""
from __future__ import annotations

import numpy as np

from graphc.context import current_builder, on_gpu
from graphc.ir import DTYPES


class State:
    """A mutable array that traced functions may read and write."""

    def __init__(self, data, dtype=None):
        if on_gpu(data):  # (a model moved to the GPU: its optimizer's buffers are made there too)
            data = data.astype(dtype or data.dtype, copy=False)
            if np.dtype(data.dtype).name not in DTYPES:
                data = data.astype(np.float64 if np.dtype(data.dtype).kind in "fc" else np.int64)
            self._data = data
            return
        array = np.asarray(data, dtype=dtype)
        if array.dtype.name not in DTYPES:
            array = array.astype(np.float64 if array.dtype.kind in "fc" else np.int64)
        self._data = array if array is not data or array.flags.writeable else array.copy()

    @property
    def data(self):
        """The array. Inside a trace, NumPy's name for that array: each use sees the State's value
        at that point of the function (after an ``opt.step()`` too), and ``x[...] = v`` or
        ``x -= v`` writes the State; no gradient flows through it, as through torch's ``.data``."""
        builder = current_builder()
        return self._data if builder is None else builder.data_view(self)

    @data.setter
    def data(self, value):
        """Outside a trace: the State holds ``value`` from now on. Inside one a TraceError (a
        compiled call writes into the State's array; ``data[...] = value`` does that), except
        as the end of ``state.data op= v``."""
        builder = current_builder()
        if builder is None:
            self._data = value
        else:
            builder.assign_data(self, value)

    def read(self):
        """The current value: the array itself, or its traced stand-in inside a trace (whose use
        after a write of the State is refused: the array itself would show the new values)."""
        builder = current_builder()
        return self._data if builder is None else builder.read_view(self)

    def write(self, value):
        """Set a new value (same shape and dtype): now, or by the time the compiled call returns."""
        builder = current_builder()
        if builder is None:
            self._data[...] = value
        else:
            builder.write_state(self, value)

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    def __repr__(self):
        return f"{type(self).__name__}({self._data!r})"
