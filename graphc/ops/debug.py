"""``gc.print``: print traced values at run time, from compiled code (as ``jax.debug.print``).

The ``debug_print`` primitive has an effect (``Op.effect``): passes never remove it although
nothing uses its result (a 0-d bool token), never merge two of them, never fold it, and keep
it in program order. The compiled code prints through an object-mode block, with the same
formatting as NumPy eagerly: each value as an array (or a NumPy scalar) of its traced dtype.
"""
from __future__ import annotations

import builtins
import sys
import warnings

import numpy as np

from graphc.ir import TensorType
from graphc.ops.registry import register
from graphc.trace import Tracer, _builder_of, current_builder, type_of, user_line, user_loc

def _quiet_numba():
    """The print block holds the GIL: Numba says so on every compile (and cache load) of a
    generated module with a print, which is noise to the user."""
    warnings.filterwarnings("ignore", message=".*object mode won't allow parallel execution",
                            module=r"(.*[/\\])?g[0-9a-f]{8,}$")


_quiet_numba()


def _format(fmt, keys, values):
    """The text ``fmt.format(...)`` gives: positional values first, then ``keys``' values."""
    n = len(values) - len(keys)
    return fmt.format(*values[:n], **dict(zip(keys, values[n:])))


def _reference(*values, fmt, keys):
    values = [np.asarray(v) for v in values]
    builtins.print(_format(fmt, keys, [v[()] if v.ndim == 0 else v for v in values]))
    sys.stdout.flush()
    return np.array(True)


def debug_print_c(fmt, keys, dtypes, *values):
    """Called from compiled code (object mode): scalars get back their NumPy dtype."""
    values = [np.asarray(v, dtype=d) for v, d in zip(values, dtypes)]
    builtins.print(_format(fmt, keys, [v[()] if v.ndim == 0 else v for v in values]))
    sys.stdout.flush()


def _emit(em, node):
    args = "".join(f", {em.name(v)}" for v in node.inputs)
    dtypes = tuple(v.type.dtype for v in node.inputs)
    em.imports.update(("graphc.ops.debug:debug_print_c", "numba:objmode"))  # module:name, imported by name
    _quiet_numba()  # (again: a caller such as pytest may have reset the filters since import)
    with em.block("with objmode():"):
        em.line(f"debug_print_c({node.attrs['fmt']!r}, {node.attrs['keys']!r}, {dtypes!r}{args})")
    em.line(f"{em.define(node.outputs[0])} = True")


register("debug_print", "effect", lambda types, fmt, keys: TensorType((), "bool"), _reference,
         emit=_emit, differentiable=False, effect=True)


def print(fmt: str, *args, **kwargs):  # noqa: A001  (gc.print, as jax.debug.print)
    """Print ``fmt.format(*args, **kwargs)`` when the code runs, on every call.

    Inside ``gc.trace`` the values are those of each compiled call, printed in program
    order (``print()`` there would run once, while tracing, and show ``Tracer<...>``).
    Eagerly it just prints. Values are arrays or numbers; format them with ``{}``,
    ``{:.3f}`` (0-d values) or ``{name}`` as ``str.format`` does with NumPy values.
    """
    if not isinstance(fmt, str):
        raise TypeError(f"gc.print: the first argument is the format string, got {type(fmt).__name__}")
    values = list(args) + list(kwargs.values())
    for i, v in enumerate(values):
        if not isinstance(v, (Tracer, np.ndarray, np.generic, int, float)) or isinstance(v, complex):
            raise TypeError(f"gc.print: value {i} is a {type(v).__name__}; gc.print prints arrays and "
                            f"numbers (put other values into the format string) (at {user_line()})")
    builder = _builder_of(values) or current_builder()
    if builder is None:
        _reference(*values, fmt=fmt, keys=tuple(kwargs))
        return None
    _check_format(fmt, tuple(kwargs), values)
    # (value_of: a value from outside the loop or branch body being traced is captured as its input)
    operands = [builder.value_of(v) if isinstance(v, Tracer) else builder.constant(np.asarray(v)) for v in values]
    builder.graph.add_node("debug_print", operands, {"fmt": fmt, "keys": tuple(kwargs)},
                           [TensorType((), "bool")], user_loc())
    return None


def _check_format(fmt, keys, values):
    """A format that cannot print these values raises now, while tracing, not in compiled code."""
    stand_ins = []
    for v in values:
        t = type_of(v)
        stand_ins.append(np.zeros(t.shape, t.dtype)[()] if not t.shape else np.zeros(t.shape, t.dtype))
    try:
        _format(fmt, keys, stand_ins)
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        raise TypeError(f"gc.print: format {fmt!r} does not fit the {len(values)} value(s) given: "
                        f"{exc} (at {user_line()})") from None
