"""Python operators and array methods of ``Tracer``, routed to the op functions."""
from __future__ import annotations

import numpy as np

from graphc.errors import TraceError
from graphc.state import State
from graphc.ops import elementwise as ew, indexing, linalg, reduction as red, registry, scan, shape, sort
from graphc.trace import NUMPY_VIEWS, DataView, StateView, Tracer, user_line


def _bool_only(name, fn):
    def method(a, b=None):
        args = (a,) if b is None else (a, b)
        if any(getattr(x, "dtype", None) is not None and x.dtype.kind != "b" for x in args):
            raise TraceError(f"operator {name} on non-boolean traced values is not supported "
                             f"(at {user_line()}); graphc has logical ops on booleans only")
        return fn(*args)
    return method


def _unsupported(name):
    def method(*args):
        raise TraceError(f"operator {name} is not supported on traced values (at {user_line()})")
    method.unsupported = True  # (left out of docs/numpy.md)
    return method


def _setitem(a, key, value):
    raise TraceError(f"x[...] = value on a traced array is not supported: traced arrays are immutable "
                     f"(at {user_line()}); build the result with gc.where(mask, value, x) or np.concatenate")


_OWNED = "graphc.methods.owned"  # builder.aux key: tracers that are fresh copies (x.copy())


def _caller_array(a):
    """Is ``a`` an argument of the traced function or a State read (or a NumPy view of one)?
    In-place arithmetic on it would change the caller's array when run eagerly. (A State's
    ``read()`` or ``.data`` is not: its in-place update writes the State.)"""
    if a in a.builder.aux.get(_OWNED, ()) or _writes_state(a):
        return False
    value = a.value
    while value.producer is not None and value.producer.op in NUMPY_VIEWS:
        value = value.producer.inputs[0]
    return value.producer is None and not a.weak and value in a.builder.graph.inputs


def _inplace(symbol, name):
    """``a op= b``: as NumPy on an array the trace owns (the result keeps ``a``'s dtype and
    shape); a TraceError on an argument, whose caller's array would change when run eagerly."""
    def method(a, b):
        if _caller_array(a):
            raise TraceError(f"x {symbol} value on a traced argument, State or captured global array (or "
                             f"a view of one) is not supported: NumPy would change the caller's array, a compiled "
                             f"function cannot "
                             f"(at {user_line()}); write x = x {symbol[:-1]} value and return x")
        out = getattr(a, name)(b)
        if out is NotImplemented:
            return out
        if (a.weak or not a.ndim) and not _writes_state(a):
            # a Python number or NumPy scalar (x.sum(), an argument `lr`) cannot change in place:
            # Python rebinds the name to the result, and other names keep the old value
            return out
        if out.shape != a.shape:
            raise ValueError(f"x {symbol} value: the result's shape {out.shape} does not fit x's shape "
                             f"{a.shape} (at {user_line()})")
        if out.dtype != a.dtype:
            if not np.can_cast(out.dtype, a.dtype, "same_kind"):
                raise TypeError(f"x {symbol} value: cannot cast the {out.dtype} result to x's dtype "
                                f"{a.dtype} with casting rule 'same_kind', as NumPy (at {user_line()})")
            out = ew.cast(out, a.dtype.name)
        return _update_in_place(a, out, f"x {symbol} value")
    method.__name__ = "__i" + name[2:]
    return method


def _writes_state(a) -> bool:
    """``a`` is a State's array itself (``s.data``, ``s.read()``): in-place updates write the State."""
    return isinstance(a, StateView) or (isinstance(a, DataView) and a.whole)


def _update_in_place(a, new, what):
    """Give the tracer object ``a`` the value ``new``, as NumPy writes into the array: every
    Python name bound to ``a`` (``y = x``) sees it. A NumPy view taken of ``a`` earlier
    (``y = x[0]``) would see it too, and a traced view cannot: that is refused."""
    producer = a.value.producer
    if producer is not None and producer.op in NUMPY_VIEWS and a.ndim:
        raise TraceError(f"{what}: this array is a view (a slice, reshape, transpose or .T) of another, which "
                         f"NumPy would update too and a trace cannot (at {user_line()}); write x = x op value")
    for node in () if _writes_state(a) else a.builder.graph.nodes:  # (a State's views: DataViews)
        if (node.op in NUMPY_VIEWS and node.inputs and node.inputs[0] is a.value
                and node.outputs[0].type.shape):  # (x[0] of a 1-d array is a copy: a scalar)
            raise TraceError(f"{what}: this array has a view (a slice, reshape, transpose or .T) taken "
                             f"earlier, which NumPy would update too and a trace cannot (at {user_line()}); "
                             f"write x = x op value, or take the view after the update")
    a.value = new.value
    return a


def _copy(a):
    """``x.copy()``: a tracer of its own (in-place arithmetic on it is fine)."""
    out = Tracer(a.value, a.builder, a.weak)
    a.builder.aux.setdefault(_OWNED, set()).add(out)
    return out


def _astype(a, dtype, order="K", casting="unsafe", subok=True, copy=True):
    """``x.astype(dtype)``: a new array (one the function owns) unless ``copy=False``."""
    out = ew.cast(a, dtype)
    return _copy(out) if out is a and copy else out


def _sort_in_place(a, axis=-1, kind=None, order=None, *, stable=None):
    """``x.sort()``: sorts ``x`` in place (None), where the function owns ``x``."""
    if _caller_array(a):
        raise TraceError(f"x.sort() on a traced argument (or a view of one) is not supported: NumPy would "
                         f"sort the caller's array, a compiled function cannot (at {user_line()}); "
                         f"write x = np.sort(x) and return x")
    _update_in_place(a, sort.sort(a, axis=axis, kind=kind, order=order, stable=stable), "x.sort()")


def _reflected(fn):
    return lambda a, b: fn(b, a)


OPERATORS = {
    "__add__": ew.add, "__radd__": _reflected(ew.add),
    "__sub__": ew.subtract, "__rsub__": _reflected(ew.subtract),
    "__mul__": ew.multiply, "__rmul__": _reflected(ew.multiply),
    "__truediv__": ew.divide, "__rtruediv__": _reflected(ew.divide),
    "__pow__": ew.power, "__rpow__": _reflected(ew.power),
    "__matmul__": linalg.matmul, "__rmatmul__": _reflected(linalg.matmul),
    "__neg__": ew.negative, "__pos__": lambda a: _copy(ew.positive(a)), "__abs__": ew.absolute,
    "__eq__": ew.equal, "__ne__": ew.not_equal, "__lt__": ew.less, "__le__": ew.less_equal,
    "__gt__": ew.greater, "__ge__": ew.greater_equal,
    "__and__": _bool_only("&", ew.logical_and), "__rand__": _bool_only("&", ew.logical_and),
    "__or__": _bool_only("|", ew.logical_or), "__ror__": _bool_only("|", ew.logical_or),
    "__xor__": _bool_only("^", ew.logical_xor), "__rxor__": _bool_only("^", ew.logical_xor),
    "__invert__": _bool_only("~", ew.logical_not),
    "__floordiv__": ew.floor_divide, "__rfloordiv__": _reflected(ew.floor_divide),
    "__mod__": ew.remainder, "__rmod__": _reflected(ew.remainder),
    "__divmod__": ew.divmod, "__rdivmod__": _reflected(ew.divmod),
    "__getitem__": indexing.getitem, "__setitem__": _setitem,
}
# in-place operators: those Python would otherwise rewrite as ``x = x op y`` silently
INPLACE = {symbol: name for symbol, name in (
    ("+=", "__add__"), ("-=", "__sub__"), ("*=", "__mul__"), ("/=", "__truediv__"), ("**=", "__pow__"),
    ("@=", "__matmul__"), ("//=", "__floordiv__"), ("%=", "__mod__"), ("&=", "__and__"),
    ("|=", "__or__"), ("^=", "__xor__"))}
OPERATORS.update({"__i" + name[2:]: _inplace(symbol, name) for symbol, name in INPLACE.items()})


def _reading_state(fn):
    """A binary operator whose other operand may be a State (an nn.Parameter): its traced value."""
    def method(a, b):
        return fn(a, b.read() if isinstance(b, State) else b)
    method.unsupported = getattr(fn, "unsupported", False)
    return method


OPERATORS.update({name: _reading_state(fn) for name, fn in OPERATORS.items()
                  if name not in ("__getitem__", "__setitem__", "__neg__", "__pos__", "__abs__", "__invert__")
                  and not name.startswith("__i")})

METHODS = {
    "sum": red.sum, "mean": red.mean, "prod": red.prod, "max": red.max, "min": red.min,
    "argmax": red.argmax, "argmin": red.argmin,
    "var": red.var, "std": red.std, "all": red.all, "any": red.any,
    "cumsum": scan.cumsum, "cumprod": scan.cumprod, "argsort": sort.argsort, "sort": _sort_in_place,
    "round": lambda a, decimals=0, out=None: np.round(a, decimals) if out is None else np.round(a, decimals, out),
    "transpose": lambda a, *axes: shape.transpose(a, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None)),
    "reshape": lambda a, *s, **kw: shape.reshape(a, s[0] if len(s) == 1 else s, **kw),
    "squeeze": shape.squeeze, "ravel": shape.ravel, "flatten": lambda a, order="C": _copy(shape.ravel(a, order)),
    "swapaxes": shape.swapaxes, "repeat": shape.repeat, "astype": _astype, "clip": ew.clip, "take": indexing.take,
    "dot": linalg.dot, "copy": _copy,
    "T": property(lambda a: shape.transpose(a)),
    "mT": property(lambda a: shape.swapaxes(a, -1, -2)),
}


def install():
    for name, fn in {**OPERATORS, **METHODS}.items():
        setattr(Tracer, name, fn)
    Tracer.__hash__ = object.__hash__  # __eq__ is elementwise; keep identity hashing
    Tracer.item = lambda self, *args: self._concrete("x.item()", "return the value from the traced function "
                                                      "instead").item(*args)
    Tracer.tolist = lambda self: self._concrete("x.tolist()", "return the value from the traced function "
                                                "instead").tolist()

# what the other op families call (through graphc.ops.prims)
registry.export(
    owned_copy=_copy,
)
