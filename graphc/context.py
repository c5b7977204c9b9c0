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
        self.every_size = False  # a trace compared with a template for every size (for_every_size)


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


def traced_for_every_size() -> bool:
    """Whether the trace in progress must come out alike at every size of a symbolic dimension:
    at the probe sizes, and at a size traced to be compared with the template made from them.
    A choice that is only worth making at some sizes (a product over T x B stacked rows) is not
    made then, so that all those traces agree."""
    return bool(_TRACING.probes) or _TRACING.every_size


@contextmanager
def for_every_size(on: bool = True):
    """Mark the traces of the ``with`` block (this thread) as compared with a template for every
    size (``traced_for_every_size``)."""
    saved, _TRACING.every_size = _TRACING.every_size, _TRACING.every_size or on
    try:
        yield
    finally:
        _TRACING.every_size = saved


def on_gpu(value) -> bool:
    """Is ``value`` a GPU array (CuPy's, Numba's, a PyTorch CUDA tensor: anything with
    ``__cuda_array_interface__``), not a NumPy array?"""
    return hasattr(type(value), "__cuda_array_interface__") and not isinstance(value, np.ndarray)
