"""The list of NumPy functions, ufuncs, methods and operators graphc traces, made from the registry.

``python3 -m graphc.supported`` prints it; ``python3 -m graphc.supported --write``
writes ``docs/numpy.md`` (a test keeps that file current). The TraceError for an
unsupported call points there.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import graphc  # noqa: F401  (registers every op)
from graphc.ops import methods, registry

DOC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "numpy.md")


def _public_name(obj) -> str:
    """``np.linalg.inv`` for a NumPy function, ``np.exp`` for a ufunc."""
    name = getattr(obj, "__name__", None) or type(obj).__name__
    module = getattr(obj, "__module__", None) or "numpy"
    module = module.replace("numpy._core.", "numpy.").replace("numpy.core.", "numpy.")
    for public in ("numpy.linalg", "numpy"):
        if module.startswith(public):
            namespace = sys.modules[public]
            if getattr(namespace, name, None) is obj:
                return public.replace("numpy", "np") + "." + name
    for public in ("numpy.linalg", "numpy.lib.stride_tricks", "numpy"):  # re-exported elsewhere
        if getattr(sys.modules.get(public), name, None) is obj:
            return public.replace("numpy", "np") + "." + name
    return f"{module.replace('numpy', 'np')}.{name}"


def _numpy_names() -> list[str]:
    names = {_public_name(f) for f in registry.NUMPY_FUNCTIONS}
    names |= {f"np.{u}" for u in registry.UFUNCS if isinstance(getattr(np, u, None), np.ufunc)}
    for original in registry.NUMPY_OVERRIDES:
        if original is np.r_:
            names.add("np.r_")
        elif original is np.c_:
            names.add("np.c_")
        else:
            names.add(_public_name(original))
    return sorted(names, key=lambda n: (n.count("."), n.lower()))


_SYMBOLS = {"__add__": "+", "__sub__": "-", "__mul__": "*", "__truediv__": "/", "__floordiv__": "//",
            "__mod__": "%", "__pow__": "**", "__matmul__": "@", "__divmod__": "divmod()", "__neg__": "-x",
            "__pos__": "+x", "__abs__": "abs()", "__eq__": "==", "__ne__": "!=", "__lt__": "<", "__le__": "<=",
            "__gt__": ">", "__ge__": ">=", "__and__": "&", "__or__": "|", "__xor__": "^", "__invert__": "~",
            "__getitem__": "x[...]"}


def render() -> str:
    """The markdown text of docs/numpy.md."""
    numpy_names = _numpy_names()
    lines = [
        "# What graphc traces",
        "",
        "Generated from graphc's op registry by `python3 -m graphc.supported --write`; a test keeps it",
        "current. Each of these works on traced values with NumPy's semantics (axes, keepdims, dtypes,",
        "broadcasting, special values); the differentiable ones have gradients checked to second order.",
        "Anything else raises `graphc.TraceError` naming the function.",
        "",
        f"## NumPy functions and ufuncs ({len(numpy_names)})",
        "",
    ]
    lines += [", ".join(f"`{n}`" for n in numpy_names), ""]
    method_names = [f"`x.{m}`" if isinstance(fn, property) else f"`x.{m}()`"
                    for m, fn in sorted(methods.METHODS.items()) if not getattr(fn, "unsupported", False)]
    lines += [f"## Array attributes and methods ({len(method_names)})", "", ", ".join(method_names), ""]
    symbols = sorted(_SYMBOLS[name] for name, fn in methods.OPERATORS.items()
                     if name in _SYMBOLS and not getattr(fn, "unsupported", False))
    lines += [f"## Operators ({len(symbols)})", "", " ".join(f"`{s}`" for s in symbols),
              "", "In-place operators (`x += y`...) work on values the function computed; on an argument "
              "they raise `graphc.TraceError` (a compiled call cannot change the caller's array).", ""]
    lines += ["## Out of scope for now", "",
              "Complex numbers, `np.fft`, `np.random` inside a trace (use `graphc.nn`'s generator), and SciPy",
              "functions raise `graphc.TraceError` saying so.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m graphc.supported", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH} instead of printing")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        os.makedirs(os.path.dirname(DOC_PATH), exist_ok=True)
        with open(DOC_PATH, "w") as f:
            f.write(text)
        print(f"wrote {DOC_PATH}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
