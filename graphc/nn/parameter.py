"""``Parameter``: a trainable ``State`` with a ``.grad``, and ``no_grad``.

Outside a trace ``p.data`` is the NumPy array and ``p.grad`` is None or an
array, as in PyTorch. Inside a traced function ``p.grad`` is traced:
``loss.backward()`` adds the loss's gradient to it, ``zero_grad()`` sets it to
None, and ``opt.step()`` reads it. The gradient persists between calls as in
PyTorch: its array is held in a ``State`` (``p._grad_state``), so a compiled
step leaves the gradient in ``p.grad`` and a step without ``zero_grad()``
accumulates into the gradient of the previous calls (gradient accumulation).
Whether ``p.grad`` is None is Python state: a trace that reads it is guarded on
it, and the compiled call sets it (``after_call``) the way the trace ended.
"""
from __future__ import annotations

import threading

import numpy as np

from graphc.context import on_gpu
from graphc.errors import TraceError
from graphc.ops.creation import zeros_like
from graphc.state import State
from graphc.trace import Tracer, current_builder, user_line

_READS = "graphc.nn.reads"   # builder.aux key: Parameter -> latest traced value read
_GRADS = "graphc.nn.grads"   # builder.aux key: Parameter -> traced gradient (or None) set in this trace
AFTER_CALL = "graphc.after_call"  # builder.aux key: callables the runtime runs after each compiled call

_local = threading.local()


class no_grad:
    """``with gc.no_grad(): w -= lr * w.grad`` (or ``@gc.no_grad()``): as ``torch.no_grad``.

    In-place arithmetic on a Parameter that requires a gradient is allowed only
    inside it, as in PyTorch (the update is not part of what ``backward`` sees).
    """

    def __enter__(self):
        _local.depth = getattr(_local, "depth", 0) + 1
        return self

    def __exit__(self, *exc):
        _local.depth -= 1
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


def is_grad_enabled() -> bool:
    """False inside ``no_grad``."""
    return not getattr(_local, "depth", 0)


class Parameter(State):
    """A trainable array. ``Parameter(np.zeros((3, 4), np.float32))``."""

    def __init__(self, data, requires_grad: bool = True, dtype=None):
        if isinstance(data, Parameter):
            data = data._data
        super().__init__(data.astype(dtype or data.dtype, copy=True) if on_gpu(data)
                         else np.array(data, dtype=dtype, copy=True))
        self.requires_grad = requires_grad
        self._grad = None        # the gradient array (or None) between calls
        self._grad_state = None  # a State whose data is the gradient array, once a trace needs one
        self.name = None  # set by Module (the state-dict key), used in error messages

    def read(self):
        value = super().read()
        builder = current_builder()
        if builder is not None and isinstance(value, Tracer):  # (for backward: the value as read, unchecked)
            builder.aux.setdefault(_READS, {})[self] = Tracer(value.value, value.builder, value.weak)
        return value

    # -- the gradient ----------------------------------------------------------------------
    @property
    def grad(self):
        builder = current_builder()
        if builder is None:
            return self._grad
        table = builder.aux.get(_GRADS)
        value = table[self] if table is not None and self in table else self._grad_at_call(builder)
        return GradTracer(value, self) if isinstance(value, Tracer) else value

    @grad.setter
    def grad(self, value):
        builder = current_builder()
        if builder is None:
            self._set_eager_grad(value)
        elif isinstance(value, Tracer) and value.builder is not builder:
            raise TraceError(f"p.grad = value: the value is from another trace (at {user_line()})")
        else:
            set_traced_grad(self, builder, value)

    def _set_eager_grad(self, value):
        if value is None:
            self._grad = None
            return
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ValueError(f"assigned grad has shape {value.shape}, but parameter {self.name or ''} "
                             f"has shape {self._data.shape}")
        if value.dtype != self._data.dtype:
            if not np.can_cast(value.dtype, self._data.dtype, "same_kind"):
                raise TypeError(f"assigned grad has dtype {value.dtype}, but parameter {self.name or ''} "
                                f"is {self._data.dtype}")
            value = value.astype(self._data.dtype)
        if not value.flags.writeable:  # (a compiled step may accumulate into it)
            value = value.copy()
        self._grad = value
        if self._grad_state is not None:
            self._grad_state._data = value

    def _grad_at_call(self, builder):
        """The gradient as it will be when the compiled call starts (guarded on being None)."""
        has = self._grad is not None
        builder.guard(lambda: self._grad is not None, has, f"whether parameter {self.name or ''} has a .grad")
        if not has:
            return None
        if (self._grad.shape, self._grad.dtype) != (self._data.shape, self._data.dtype):
            raise TraceError(f"parameter {self.name or ''} has shape {self._data.shape} and dtype "
                             f"{self._data.dtype}, but its .grad has {self._grad.shape} and "
                             f"{self._grad.dtype}; call zero_grad() first (at {user_line()})")
        return self._holder().read()

    def _holder(self) -> State:
        """The State that carries the gradient into and out of compiled calls."""
        st = self._grad_state
        want = (self._data.shape, self._data.dtype)
        if st is None or (st._data.shape, st._data.dtype) != want:
            st = State(np.zeros_like(self._data, order="C"))  # (on the parameter's device: CuPy's for a GPU array)
            st.name = f"gradient of {self.name or 'parameter'}"
            st.replace_on_write = True  # a compiled call hands over its new gradient array, no copy
            self._grad_state = st
        if self._grad is not None and self._grad is not st._data:
            st._data = self._grad
        return st

    # -- in-place arithmetic (``w -= lr * w.grad`` under ``no_grad``) ---------------------------
    def _inplace(self, name, other):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"in-place {name} on parameter {self.name or ''} that requires grad: "
                               f"wrap the update in `with gc.no_grad():` (as in PyTorch)")
        if isinstance(other, State):
            other = other.read()
        new = getattr(self.read(), _BINARY[name])(other)
        if new is NotImplemented:
            return NotImplemented
        new = np.asarray(new) if not isinstance(new, Tracer) else new
        dtype = self._data.dtype
        if np.dtype(new.dtype) != dtype and not np.can_cast(new.dtype, dtype, "same_kind"):
            raise TypeError(f"in-place {name} on parameter {self.name or ''}: cannot cast the "
                            f"{new.dtype} result to {dtype} (as NumPy's same_kind casting)")
        if tuple(new.shape) != self._data.shape:
            raise ValueError(f"in-place {name} on parameter {self.name or ''}: a result of shape "
                             f"{tuple(new.shape)} does not fit its shape {self._data.shape}")
        self.write(new)
        return self

    def zero_(self):
        """Set every element to 0 in place (under ``no_grad`` when it requires a gradient)."""
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"zero_() on parameter {self.name or ''} that requires grad: wrap it in "
                               f"`with gc.no_grad():` (as in PyTorch)")
        self.write(zeros_like(self.read()))
        return self

    # conveniences, so a Parameter reads like an array in forward code
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    T = property(lambda self: self.read().T)

    def numpy(self):
        if current_builder() is not None:
            raise TraceError(f"p.numpy() of Parameter {self.name or ''} inside a trace would bake its current "
                             f"value into the graph; use p.data or p.read() (at {user_line()})")
        return self._data

    __array_ufunc__ = None  # ndarray (op) Parameter defers to the Parameter's reflected operator

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(p)`` shares ``p.data``; ``np.array(p)`` (``copy=True``) copies, as NumPy 2."""
        if current_builder() is not None:
            raise TraceError(f"converting Parameter {self.name or ''} to a NumPy array inside a trace "
                             f"would bake its current value into the graph; use p.read() instead")
        if copy is False and dtype is not None and np.dtype(dtype) != self._data.dtype:
            raise ValueError(f"np.asarray(p, dtype={np.dtype(dtype)}, copy=False): converting parameter "
                             f"{self.name or ''} of dtype {self._data.dtype} needs a copy")
        if dtype is not None and np.dtype(dtype) != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def __repr__(self):
        return f"Parameter({self._data!r})"

    __hash__ = object.__hash__


_BINARY = {"+=": "__add__", "-=": "__sub__", "*=": "__mul__", "/=": "__truediv__", "**=": "__pow__",
           "@=": "__matmul__"}


class GradTracer(Tracer):
    """``p.grad`` inside a trace: a traced array that also knows its parameter, so that
    ``p.grad.zero_()`` and ``p.grad += g`` set the parameter's gradient, as in PyTorch."""

    __slots__ = ("param",)

    def __init__(self, tracer: Tracer, param: Parameter):
        super().__init__(tracer.value, tracer.builder, tracer.weak)
        self.param = param

    def zero_(self):
        """Set the gradient to zeros (it stays a gradient, not None)."""
        set_traced_grad(self.param, self.builder, zeros_like(Tracer(self.value, self.builder)))
        return self.param.grad

    def _update(self, name, other):
        new = getattr(Tracer(self.value, self.builder), _BINARY[name])(other)
        if new.shape != self.shape or not np.can_cast(new.dtype, self.dtype, "same_kind"):
            raise TraceError(f"p.grad {name} value: a {new.dtype} result of shape {new.shape} does not "
                             f"fit the gradient ({self.dtype}, {self.shape}) (at {user_line()})")
        set_traced_grad(self.param, self.builder, new)
        return self.param.grad


def set_traced_grad(p: Parameter, builder, value):
    """Set ``p.grad`` inside a trace: recorded as the write of the gradient's State, and as
    Python state (None or not) that the compiled call sets when it returns."""
    table = builder.aux.setdefault(_GRADS, {})
    holders = builder.aux.setdefault(_GRADS + ".states", {})
    if not table:  # first gradient of this trace: set p.grad after each call as the trace ends
        builder.aux.setdefault(AFTER_CALL, []).append(_grad_setter(table, holders))
    if value is None:
        table[p] = None
        if holders.get(p) is not None:
            builder.state_writes.pop(holders[p], None)
        return
    if isinstance(value, Tracer) and value.dtype.kind != "f":
        raise TraceError(f"p.grad of parameter {p.name or ''} set to a {value.dtype} value; gradients "
                         f"are floating-point (at {user_line()})")
    holder = holders[p] = p._holder()
    builder.write_state(holder, value)
    table[p] = builder.state_values[holder]


def zero_grad(params, set_to_none: bool = True):
    """``zero_grad`` of a Module or an optimizer: gradients to None, or to zeros in place."""
    for p in params:
        if set_to_none:  # (without reading p.grad: a trace then does not depend on it)
            p.grad = None
            continue
        g = p.grad
        if g is None:
            continue
        if isinstance(g, Tracer):
            p.grad = zeros_like(Tracer(g.value, g.builder))
        else:
            g[...] = 0


def _grad_setter(table, holders):
    """After a compiled call: each parameter whose gradient the trace set gets it (or None)."""
    final = []

    def after_call():
        if not final:
            final.extend((p, None if v is None else holders[p]) for p, v in table.items())
        for p, holder in final:
            p._grad = None if holder is None else holder._data
    return after_call


def _delegate(name):
    def method(self, *args):
        return getattr(self.read(), name)(*args)
    method.__name__ = name
    return method


def _inplace_method(symbol):
    def method(self, other):
        return self._inplace(symbol, other)
    method.__name__ = "__i" + _BINARY[symbol][2:]
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__matmul__", "__rmatmul__", "__neg__", "__pow__", "__getitem__",
              "reshape", "sum", "mean"):
    setattr(Parameter, _name, _delegate(_name))
for _symbol in ("+=", "-=", "*=", "/=", "**=", "@="):
    setattr(Parameter, _inplace_method(_symbol).__name__, _inplace_method(_symbol))
    setattr(GradTracer, _inplace_method(_symbol).__name__,
            lambda self, other, _s=_symbol: self._update(_s, other))
