"""Which trace is in progress, per thread: the lowest layer that knows a trace exists.

``State`` (below the tracer) asks ``current_builder()`` whether to hand out its
array or a traced stand-in; the tracer pushes and pops builders here.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np


class _Tracing(threading.local):
    """Traces in progress, per thread: a trace never sees another thread's eager work."""

    def __init__(self):
        self.active: list = []
        self.probes: frozenset = frozenset()  # sizes a symbolic dimension takes while probed


_TRACING = _Tracing()


def current_builder():
    """The innermost trace in progress in this thread (a ``graphc.trace.Builder``), or None."""
    active = _TRACING.active
    return active[-1] if active else None


@contextmanager
def tracing(builder):
    """Make ``builder`` the current trace of this thread for the ``with`` block."""
    _TRACING.active.append(builder)
    try:
        yield builder
    finally:
        _TRACING.active.pop()


def probe_sizes() -> frozenset:
    """The sizes that stand for a symbolic dimension in the trace in progress (graphc/symbolic.py):
    a trace-time decision that holds only because a dim is that large must raise NotGeneric."""
    return _TRACING.probes


@contextmanager
def probing(sizes):
    """Mark ``sizes`` as symbolic-dimension probes for the ``with`` block (this thread)."""
    saved, _TRACING.probes = _TRACING.probes, frozenset(sizes)
    try:
        yield
    finally:
        _TRACING.probes = saved


def on_gpu(value) -> bool:
    """Is ``value`` a GPU array (CuPy's, Numba's, a PyTorch CUDA tensor: anything with
    ``__cuda_array_interface__``), not a NumPy array?"""
    return hasattr(type(value), "__cuda_array_interface__") and not isinstance(value, np.ndarray)
