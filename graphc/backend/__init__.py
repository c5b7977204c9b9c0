"""Backends: each compiles a Graph into an ``Executable`` behind one interface (base.py).

``get(device)`` returns the backend ``gc.trace(device=...)`` selects. Built in: ``cpu``
(cpu.py: generated Python compiled by Numba, with the memory plan of plan.py) and
``numpy`` (interpreter.py: the NumPy interpreter, no compilation) and ``cuda`` (cuda.py:
kernels through numba-cuda, imported only when a function is traced for it). See docs/architecture.md.
"""
from graphc.backend.base import DEFAULT_DEVICE, Backend, Executable, devices, get, register

# the built-in backends register themselves on import
from graphc.backend import cpu as _cpu, cuda as _cuda, interpreter as _interpreter  # noqa: E402,F401

__all__ = ["DEFAULT_DEVICE", "Backend", "Executable", "devices", "get", "register"]
