"""Backends: lower a Graph to generated source and compile it (cpu.py: Numba njit)."""
