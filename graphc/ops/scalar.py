"""The backend-neutral scalar vocabulary: the math functions ops name, and typed literals.

An elementwise op names its math here (``Op.math``: "exp", "log1p", "tanh"...);
each backend maps these names to its own implementation (vectorizable functions
on the CPU: graphc/backend/codegen.py), and an op whose math a backend lacks
falls back to the op's ``scalar`` rule. Every backend generates Python source
for Numba (njit on the CPU, numba-cuda on a GPU), where ``np.float32(0.5)`` is a
typed scalar: lowering rules write their constants with ``literal``.
"""
from __future__ import annotations

import math

MATH = frozenset({
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "pow", "sigmoid",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "hypot",
    "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
})

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
