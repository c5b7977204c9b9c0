"""Python operators and array methods of ``Tracer``, routed to the op functions."""
from __future__ import annotations

from graphc.errors import TraceError
from graphc.ops import elementwise as ew, indexing, linalg, reduction as red, shape
from graphc.trace import Tracer, user_line


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
    return method


def _setitem(a, key, value):
    raise TraceError(f"x[...] = value on a traced array is not supported: traced arrays are immutable "
                     f"(at {user_line()}); build the result with gc.where(mask, value, x) or np.concatenate")


def _reflected(fn):
    return lambda a, b: fn(b, a)


OPERATORS = {
    "__add__": ew.add, "__radd__": _reflected(ew.add),
    "__sub__": ew.subtract, "__rsub__": _reflected(ew.subtract),
    "__mul__": ew.multiply, "__rmul__": _reflected(ew.multiply),
    "__truediv__": ew.divide, "__rtruediv__": _reflected(ew.divide),
    "__pow__": ew.power, "__rpow__": _reflected(ew.power),
    "__matmul__": linalg.matmul, "__rmatmul__": _reflected(linalg.matmul),
    "__neg__": ew.negative, "__pos__": lambda a: a, "__abs__": ew.absolute,
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

METHODS = {
    "sum": red.sum, "mean": red.mean, "prod": red.prod, "max": red.max, "min": red.min,
    "argmax": red.argmax, "argmin": red.argmin,
    "transpose": lambda a, *axes: shape.transpose(a, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None)),
    "reshape": lambda a, *s, **kw: shape.reshape(a, s[0] if len(s) == 1 else s, **kw),
    "squeeze": shape.squeeze, "ravel": shape.ravel, "flatten": shape.ravel,
    "swapaxes": shape.swapaxes, "astype": ew.cast, "clip": ew.clip, "take": indexing.take,
    "dot": linalg.dot, "copy": lambda a: a,
    "T": property(lambda a: shape.transpose(a)),
    "mT": property(lambda a: shape.swapaxes(a, -1, -2)),
}


def install():
    for name, fn in {**OPERATORS, **METHODS}.items():
        setattr(Tracer, name, fn)
    Tracer.__hash__ = object.__hash__  # __eq__ is elementwise; keep identity hashing
    Tracer.item = lambda self: self._concrete("x.item()", "return the value from the traced function instead")
    Tracer.tolist = lambda self: self._concrete("x.tolist()", "return the value from the traced function instead")

