"""The call-time side of memory planning (graphc/backend/plan.py): workspaces and recycled outputs.

A compiled graph with a plan takes two kinds of extra arguments after its inputs
and constants: ``ws``, a byte buffer holding every intermediate array, and
``rb0, rb1, ...``, the arrays its large outputs are written into.

* Workspaces are allocated once and reused by every call. A call takes one from
  a free list and gives it back afterwards, so calls from several threads at once
  each get their own (the generated code releases the GIL).
* Output arrays are new to the user. ``Recycler`` hands the generated code an
  array it returned on an earlier call only once nothing but the recycler still
  refers to it (CPython's reference count: a view, a list entry or a variable of
  the user's keeps it out). It remembers the last two arrays per output, so a
  loop that rebinds ``g = f(x)`` alternates between two buffers instead of
  page-faulting a fresh one per call, as PyTorch's caching allocator does.
"""
from __future__ import annotations

import sys
import threading
from collections import deque

import numpy as np

from graphc.backend.plan import ALIGN

_KEEP = 2  # arrays remembered per output: double buffering covers `g = f(x)` in a loop


class Recycler:
    """Hands out an array of one shape and dtype, reusing one the user has dropped."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._recent: deque = deque(maxlen=_KEEP)
        self._lock = threading.Lock()

    def take(self) -> np.ndarray:
        with self._lock:
            for k in range(len(self._recent)):
                # referenced by the deque and getrefcount's argument only: nobody else can see it
                if sys.getrefcount(self._recent[k]) == 2:
                    array = self._recent[k]
                    del self._recent[k]
                    if not self._as_made(array):
                        break  # the user reshaped, retyped or froze it in place: let it go
                    self._recent.append(array)
                    return array
            array = np.empty(self.shape, self.dtype)
            self._recent.append(array)
            return array


    def _as_made(self, array) -> bool:
        """Still the array this recycler made? ``a.shape = ...``, ``a.dtype = ...`` and
        ``a.flags.writeable = False`` change an array in place."""
        flags = array.flags
        return (array.shape == self.shape and array.dtype == self.dtype and flags.writeable
                and flags.c_contiguous)


class Buffers:
    """The extra arguments of one compiled graph: a workspace per concurrent call, recycled outputs."""

    def __init__(self, workspace_bytes: int, out_types):
        self.workspace_bytes = workspace_bytes
        self.free: list = []  # workspaces not in use; list.pop/append are atomic under the GIL
        self.recyclers = [Recycler(t.shape, t.dtype) for t in out_types]

    def acquire(self) -> list:
        """The extra arguments for one call; give them back with ``release``."""
        extra = [self.take_workspace()] if self.workspace_bytes else []
        return extra + [r.take() for r in self.recyclers]

    def take_workspace(self) -> np.ndarray:
        try:
            return self.free.pop()
        except IndexError:  # none free (first call, or every one in use by another thread)
            # the plan's offsets are multiples of ALIGN: start the buffer on such a boundary too
            raw = np.empty(self.workspace_bytes + ALIGN, np.uint8)
            start = -raw.ctypes.data % ALIGN
            return raw[start:start + self.workspace_bytes]

    def release(self, extra: list):
        if self.workspace_bytes:
            self.free.append(extra[0])
