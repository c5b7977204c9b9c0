"""The backend-neutral scalar vocabulary: dtype constructors and typed literals in generated source.

Every backend generates Python source for Numba (njit on the CPU, numba-cuda on a
GPU), where ``np.float32(0.5)`` is a typed scalar; ops' lowering rules write
their constants with ``literal`` so the text means the same on every backend.
"""
from __future__ import annotations

import math

# dtype name -> the constructor generated source calls
CTOR = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32",
        "int64": "np.int64", "bool": "np.bool_"}


def literal(value, dtype: str) -> str:
    """A typed scalar literal for generated source: ``np.float32(0.5)``, ``np.float64(-np.inf)``."""
    if dtype == "bool":
        return "True" if bool(value) else "False"
    if dtype.startswith("int"):
        return f"{CTOR[dtype]}({int(value)})"
    v = float(value)
    if math.isnan(v):
        text = "np.nan"
    elif math.isinf(v):
        text = "np.inf" if v > 0 else "-np.inf"
    else:
        text = repr(v)
    return f"{CTOR[dtype]}({text})"
