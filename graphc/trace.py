"""Tracing: a ``Tracer`` stands in for an array and records every op into a Graph.

``bind(op, *args, **attrs)`` is the one place where nodes are made. When none of
its arguments is a Tracer it evaluates the op's NumPy reference instead, so the
same functions (``gc.tanh``, ``gc.softmax``...) also work on plain arrays and
constant subexpressions are folded while tracing.
"""
from __future__ import annotations

import functools
import linecache
import operator
import os
import sys

import numpy as np

from graphc import capture, pytree
from graphc.context import current_builder, on_gpu, tracing  # noqa: F401  (current_builder: re-exported)
from graphc.errors import ShapeError, TraceError
from graphc.ir import DTYPES, Const, Graph, TensorType, Value
from graphc.ops import registry

_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules["graphc"], np)
)


# the functions of `graphc demo` are user code: their nodes carry cli.py's lines
_DEMO_FILE = os.path.join(_LIBRARY_DIRS[0], "cli.py")


# -- where is the user? ------------------------------------------------------------
def user_frame():
    """The innermost stack frame that belongs to neither graphc nor NumPy."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename == _DEMO_FILE or (not filename.startswith(_LIBRARY_DIRS)
                                      and not filename.startswith("<frozen")):
            return frame
        frame = frame.f_back
    return None


def user_loc() -> str | None:
    """The user's ``file.py:line`` as stored on nodes."""
    frame = user_frame()
    if frame is None:
        return None
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _user_line_of(tb) -> str:
    """``path:line: text`` of the innermost user frame in a traceback."""
    found = "<unknown location>"
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if not path.startswith(_LIBRARY_DIRS) and not path.startswith("<frozen"):
            text = linecache.getline(path, tb.tb_lineno).strip()
            found = f"{path}:{tb.tb_lineno}" + (f": {text}" if text else "")
        tb = tb.tb_next
    return found


def user_line() -> str:
    """The user's full ``path:line: source text`` for error messages."""
    frame = user_frame()
    if frame is None:
        return "<unknown location>"
    path, lineno = frame.f_code.co_filename, frame.f_lineno
    text = linecache.getline(path, lineno).strip()
    return f"{path}:{lineno}" + (f": {text}" if text else "")


# -- the builder -------------------------------------------------------------------
class Builder:
    """The graph being traced. Finished builders reject their leaked tracers."""

    parent = None  # the trace this one is nested in (a loop or branch body: RegionBuilder)

    def __init__(self, name="graph"):
        self.graph = Graph(name=name)
        self.finished = False
        self.aux = {}  # per-trace scratch space for libraries built on top (nn, optim)
        self.state_inputs = {}  # State -> graph input Value, in capture order
        self.state_values = {}  # State -> its current traced value
        self.state_writes = {}  # State -> value to write back after the call
        self.guards = []  # (check() -> value, value at trace time, description): retrace on change
        self.final_guards = {}  # key -> (check, description): guarded with their values at the end
        self.input_checks = []  # (graph input index, check(array)): run before every call
        self.input_paths = {}  # graph input Value -> the argument it came from ("x", "batch[0]")
        self.weak_outputs = []  # per returned value: a Python number's (eager code returns a float, not np.float64)

    def encloses(self, other) -> bool:
        """Whether ``other`` is this trace or a region traced inside it (at any depth)."""
        while other is not None:
            if other is self:
                return True
            other = other.parent
        return False

    def value_of(self, tracer) -> Value:
        """The Value of ``tracer`` in this graph (a tracer of this trace; see RegionBuilder)."""
        if tracer.builder is not self:
            raise TraceError(f"values from two different traces were mixed (at {user_line()})")
        return tracer.value

    def guard(self, check, value, description: str):
        """The graph depends on Python state: retrace whenever ``check()`` != ``value``."""
        self.guards.append((check, value, description))

    def guard_final(self, key, check, description: str):
        """Like ``guard``, with the value ``check()`` has when the trace ends (Python code run while
        tracing may still change it, as a module's forward setting its own attributes); one per key."""
        self.final_guards.setdefault(key, (check, description))

    def check_input(self, tracer, check) -> bool:
        """Run ``check(array)`` on the argument behind ``tracer`` before every compiled call.

        Returns False when ``tracer`` is not a graph input (nothing to check then).
        """
        for i, v in enumerate(self.graph.inputs):
            if v is tracer.value:
                self.input_checks.append((i, check))
                return True
        return False

    def read_state(self, state):
        """The traced value of ``state``: captured as an extra graph input on first read."""
        if state not in self.state_values:
            if self.finished:
                raise TraceError("a State was read from a finished trace")
            role = "captured" if isinstance(state, capture.CapturedArray) else "state"
            name = getattr(state, "name", None)
            value = self.graph.add_input(TensorType(state._data.shape, state._data.dtype.name),
                                         name if isinstance(name, str) else None, role)
            self.state_inputs[state] = value
            self.state_values[state] = Tracer(value, self)
        return self.state_values[state]

    def write_state(self, state, value):
        """Record ``value`` as the new content of ``state`` (checked against its type)."""
        want = TensorType(state._data.shape, state._data.dtype.name)
        got = type_of(value)
        if got.shape != want.shape:
            try:
                value = bind("broadcast_to", value, shape=tuple(want.shape))
            except ShapeError:
                raise ShapeError(f"cannot write a value of shape {got.shape} into state of shape "
                                 f"{want.shape}\n  at {user_line()}") from None
        value = convert(value, want.dtype)
        # a tracer object of its own (a later `v += 1` changes v only); a constant as a node, so
        # that a read of the State is a traced value (a Parameter's, differentiable)
        value = Tracer(value.value if isinstance(value, Tracer) else self.constant(np.asarray(value)), self)
        self.state_values[state] = value
        self.state_writes[state] = value

    def read_view(self, state):
        """``state.read()`` in this trace: the State's value now, as a DataView. In NumPy
        ``read()`` is the array itself, so a use after a write of the State is refused."""
        value = self.read_state(state)
        return DataView(value.value, value.builder, (self, state, value.value), value.weak, whole=True)

    def data_view(self, state) -> "StateView":
        """``state.data`` read in this trace."""
        return StateView(state, self)

    def detached_value(self, state) -> Value:
        """The State's value at this point of the trace, with no gradient through it."""
        current = self.read_state(state)
        cache = self.aux.setdefault(_DETACHED, {})
        hit = cache.get(state)
        if hit is None or hit[0] is not current:
            with tracing(self):  # (in this trace's graph, also when a loop body reads it)
                hit = cache[state] = (current, bind("stop_gradient", current).value)
        return hit[1]

    def assign_data(self, state, value):
        """``state.data = value`` in this trace: only as the end of ``state.data op= v``. NumPy
        would give the State ``value`` as its array, and a compiled call writes into the array
        the State has."""
        if isinstance(value, StateView) and value.state is state:
            return  # (``p.data -= g`` assigns the view it updated back to p.data)
        name = getattr(state, "name", None) or type(state).__name__
        raise TraceError(f"{name}.data = value inside a traced function is not supported (at {user_line()}): "
                         f"NumPy would make value the State's array, and a compiled call writes into the "
                         f"array the State has; write {name}.data[...] = value (or {name}.data -= ...)")

    def constant(self, array: np.ndarray) -> Value:
        node = self.graph.add_node("constant", [], {"value": Const(array)},
                                   [TensorType(array.shape, array.dtype.name)], user_loc())
        return node.output


class RegionBuilder(Builder):
    """The trace of a region (a loop or branch body) inside an enclosing trace.

    A region is a closed graph: every value it reads from an enclosing trace (a closure's
    tracer, a Parameter, a captured global) becomes one more input of the region, recorded
    in ``captures`` (outer Value -> region input, in order), which the region's node then
    takes as operands. Guards and input checks are the enclosing function's: they go to the
    outermost trace. A region cannot write State (its node would have to return it).
    """

    def __init__(self, parent: Builder, name: str, what: str):
        super().__init__(name)
        self.parent = parent
        self.what = what  # the construct, for messages: "gc.fori_loop body"
        root = parent
        while root.parent is not None:
            root = root.parent
        self.root = root
        self.captures: dict = {}  # Value of the parent's graph -> input of this region
        self.aux["graphc.after_call"] = root.aux.setdefault("graphc.after_call", [])

    def value_of(self, tracer) -> Value:
        if tracer.builder is self:
            return tracer.value
        if not tracer.builder.encloses(self):
            raise TraceError(f"values from two different traces were mixed (at {user_line()})")
        outer = tracer.value if tracer.builder is self.parent else self.parent.value_of(tracer)
        inner = self.captures.get(outer)
        if inner is None:
            inner = self.captures[outer] = self.graph.add_input(outer.type)
        return inner

    def lift(self, tracer):
        """``tracer`` (from this trace or one enclosing it) as a tracer of this region."""
        return Tracer(self.value_of(tracer), self, tracer.weak)

    def read_state(self, state):
        if state not in self.state_values:
            with tracing(self.parent):  # read where it lives (Parameter.read records the read there)
                outer = state.read()
            self.state_values[state] = self.lift(outer)
        return self.state_values[state]

    def write_state(self, state, value):
        name = getattr(state, "name", None) or type(state).__name__
        raise TraceError(f"{self.what} writes State {name} (at {user_line()}): a loop or branch body "
                         f"cannot update State; return the new value from the body (as part of the "
                         f"carry) and write it after the loop")

    def guard(self, check, value, description: str):
        self.root.guard(check, value, description)

    def guard_final(self, key, check, description: str):
        self.root.guard_final(key, check, description)

    def check_input(self, tracer, check) -> bool:
        """Checked where the value comes from: an argument of the function, read from outside."""
        outer = next((o for o, v in self.captures.items() if v is tracer.value), None)
        return outer is not None and self.parent.check_input(Tracer(outer, self.parent), check)


_DETACHED = "graphc.trace.detached"  # Builder.aux key: State -> (its traced value, that value detached)
# ops whose NumPy counterpart returns a view of its first operand: writing into the result
# writes into that operand
NUMPY_VIEWS = frozenset({"reshape", "transpose", "broadcast_to", "slice", "index"})


class Tracer:
    """A traced array: has a static shape and dtype, but no value until the graph runs."""

    __slots__ = ("value", "builder", "weak")
    __array_priority__ = 1000

    def __init__(self, value: Value, builder: Builder, weak: bool = False):
        self.value = value
        self.builder = builder
        self.weak = weak  # born from a Python scalar: does not upcast arrays (as in JAX)

    shape = property(lambda self: self.value.type.shape)
    dtype = property(lambda self: np.dtype(self.value.type.dtype))
    ndim = property(lambda self: len(self.value.type.shape))
    size = property(lambda self: self.value.type.size)

    def __repr__(self):
        return f"Tracer<{self.value.type}>"

    __hash__ = object.__hash__

    # -- things that need a concrete value --------------------------------------
    def _concrete(self, what, hint="use gc.where(cond, a, b) to choose between values inside a trace"):
        """The concrete value, when it comes from captured arrays alone (a global mask or table,
        guarded by content); else a TraceError explaining ``what`` needed it."""
        value = capture.concrete(self)
        if value is not None:
            return value
        raise TraceError(f"{what} needs a concrete value, but {self!r} is traced "
                         f"(at {user_line()}). {hint[0].upper()}{hint[1:]}.")

    def __bool__(self):
        return bool(self._concrete(
            "Python control flow on a traced value (`if`, `while`, `and`, `or`)",
            "to choose between two values use gc.where(cond, a, b); to run one of two functions, "
            "gc.cond(pred, true_fn, false_fn, *operands); for a loop until a condition holds, "
            "gc.while_loop(cond_fn, body_fn, init); for a loop over a count, gc.fori_loop"))

    def __float__(self):
        return float(self._concrete("float() of a traced value", "return the value from the traced function "
                                    "instead, or use gc.where(cond, a, b) to choose between values inside a trace"))

    def __int__(self):
        return int(self._concrete("int() of a traced value", "pass it as a static argument "
                                  "(static_argnums) where it is a size, an axis or a count; else return it "
                                  "from the traced function, or use gc.where(cond, a, b)"))

    def __index__(self):
        return operator.index(self._concrete("using a traced value as a Python index or size",
                                             "pass it as a static argument")[()])

    def __complex__(self):
        return complex(self._concrete("complex() of a traced value", "graphc does not support complex numbers"))

    def __array__(self, dtype=None, copy=None):
        if dtype is not None:  # np.float32(x) asks for an array of its dtype
            return np.asarray(self._concrete(f"np.{np.dtype(dtype).name}(x) on a traced value",
                                             f"write x.astype(np.{np.dtype(dtype).name}) instead"), dtype)
        return self._concrete("converting a traced value to a NumPy array",
                              "this usually means a plain NumPy array made inside the function is indexed "
                              "or filled with traced values (np.eye(n)[labels], out[i] = value): make that "
                              "array a global, or use gc.one_hot / np.take on a traced array, and build "
                              "results with np.stack or np.concatenate instead of filling them")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    # -- NumPy protocols -------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fn = registry.UFUNCS.get(ufunc.__name__) if getattr(np, ufunc.__name__, None) is ufunc else None
        if method != "__call__" or fn is None or kwargs.get("out") is not None:
            name = _ufunc_name(ufunc) + ("" if method == "__call__" else f".{method}")
            if kwargs.get("out") is not None and fn is not None:
                raise TraceError(f"{name}(..., out=...) cannot be traced: traced arrays are immutable "
                                 f"(at {user_line()}); use the returned value")
            raise unsupported(name)
        kwargs.pop("out", None)
        return strong(distinct(fn(*inputs, **kwargs), inputs))

    def __array_function__(self, func, types, args, kwargs):
        fn = registry.NUMPY_FUNCTIONS.get(func)
        if fn is None:
            raise unsupported(f"{func.__module__.replace('numpy', 'np')}.{func.__name__}")
        out = fn(*args, **kwargs)
        if func in _PYTHON_SCALAR and isinstance(out, Tracer):  # (NumPy returns a Python bool: weak)
            out.weak = True
            return out
        if func not in _SAME_ARRAY and isinstance(out, DataView) and not any(out is a for a in args):
            out = Tracer(out.value, out.builder, out.weak)  # (np.tile, np.roll...: made from views, a copy)
        return strong(out if func in _SAME_ARRAY else distinct(out, args))


# NumPy functions that may hand back their argument itself or a view of it: the one traced
# value may be shared. Every other function returns a new array, so a traced result that is
# one of the arguments' tracer objects is given an object of its own (see ``distinct``)
_SAME_ARRAY = {np.asarray, np.asanyarray, np.reshape, np.ravel, np.transpose, np.squeeze, np.expand_dims,
               np.broadcast_to, np.swapaxes, np.moveaxis, np.rollaxis, np.atleast_1d, np.atleast_2d,
               np.atleast_3d, np.flip, np.fliplr, np.flipud, np.rot90, np.diagonal, np.split, np.array_split,
               np.hsplit, np.vsplit, np.dsplit, np.matrix_transpose}


_PYTHON_SCALAR = {np.allclose, np.array_equal, np.array_equiv}


def strong(out):
    """A NumPy function's result is a NumPy scalar or array even from Python numbers, as NumPy
    converts its inputs with ``np.asarray`` (``np.sqrt(2.0)`` is an np.float64, ``np.tile(2.0, 3)
    * float32`` is float64): never weakly typed."""
    if isinstance(out, Tracer) and out.weak:
        return Tracer(out.value, out.builder)
    return out


def distinct(out, args):
    """``out``, or a tracer object of its own when ``out`` is one of ``args`` (``np.concatenate([x])``
    is a new array in NumPy: an in-place update of it must not reach ``x``)."""
    if isinstance(out, Tracer) and any(
            out is a or (isinstance(a, (list, tuple)) and any(out is b for b in a)) for a in args):
        if isinstance(out, (StateView, DataView)):  # (np.einsum("ij->ij", p.data) is p.data's array)
            return DataView(out.value, out.builder, _view_of_data(out), out.weak,
                            whole=isinstance(out, StateView) or out.whole)
        return Tracer(out.value, out.builder, out.weak)
    return out


SUPPORTED_LIST = "docs/numpy.md"  # the generated list of what graphc traces (python -m graphc.supported)

_OUT_OF_SCOPE = (("np.fft", "Fourier transforms"), ("np.emath", "complex results"),
                 ("scipy", "SciPy functions"))


def unsupported(name: str) -> TraceError:
    """The TraceError for a NumPy (or SciPy) function graphc cannot trace."""
    name = name.replace("np._core.", "np.").replace("np.core.", "np.")
    why = next((f"; {what} are out of graphc's scope for now" for prefix, what in _OUT_OF_SCOPE
                if name.startswith(prefix)), "")
    if not why and any(word in name for word in ("complex", "conj", "real_if_close", "angle", "imag")):
        why = "; complex numbers are out of graphc's scope for now"
    return TraceError(f"{name} is not supported on traced values by graphc{why} (at {user_line()}). "
                      f"The functions graphc can trace are listed in {SUPPORTED_LIST}")


def _ufunc_name(ufunc) -> str:
    """``np.exp``, or ``scipy.special.gammaln`` for a ufunc that is not NumPy's."""
    if getattr(np, ufunc.__name__, None) is ufunc:
        return f"np.{ufunc.__name__}"
    homes = [module_name for module_name, module in list(sys.modules.items())
             if module_name.startswith(("scipy.", "numpy.")) and module is not None
             and getattr(module, ufunc.__name__, None) is ufunc]
    if not homes:
        return f"the ufunc {ufunc.__name__}"
    public = min(homes, key=lambda m: ("._" in m, len(m)))  # scipy.special, not scipy.special._ufuncs
    return f"{public.replace('numpy', 'np', 1)}.{ufunc.__name__}"


def is_tracer(x) -> bool:
    return isinstance(x, Tracer)


# -- making nodes ------------------------------------------------------------------
def _builder_of(args) -> Builder | None:
    """The trace a node on ``args`` goes into: theirs, or the innermost region being traced
    (a loop body) when they come from traces enclosing it (values it reads from outside)."""
    builder = None
    for a in args:
        if isinstance(a, Tracer):
            if a.builder.finished:
                raise TraceError(f"a traced value escaped from a finished trace and was used again "
                                 f"(at {user_line()}); return it from the traced function instead")
            if builder is None or a.builder.encloses(builder):
                builder = a.builder if builder is None else builder
            elif builder.encloses(a.builder):
                builder = a.builder
            else:
                raise TraceError(f"values from two different traces were mixed (at {user_line()})")
    current = current_builder()
    if builder is not None and current is not None and current is not builder and builder.encloses(current):
        builder = current  # (a node of a loop body on values from outside it belongs to the body)
    return builder


def _reject_container(x):
    """A list or tuple holding traced values where an array is expected: name the argument."""
    if not isinstance(x, (list, tuple)):
        return
    tracers = [leaf for leaf in pytree.flatten(x)[0] if isinstance(leaf, Tracer)]
    if not tracers:
        return
    path = tracers[0].builder.input_paths.get(tracers[0].value)
    what = f"argument {path.split('[')[0]!r}" if path else f"a {type(x).__name__} of traced values"
    raise TypeError(f"{what} is a {type(x).__name__} where an array is expected (at {user_line()}): graphc "
                    f"traces each element of a list or tuple as a separate value; pass np.asarray(...) "
                    f"to call with an array, or build one inside with np.stack")


def type_of(x) -> TensorType:
    if isinstance(x, Tracer):
        return x.value.type
    _reject_container(x)
    if on_gpu(x):
        return TensorType(tuple(x.shape), np.dtype(x.dtype).name)
    x = np.asarray(x)
    return TensorType(tuple(x.shape), x.dtype.name)


def _shape_error(name, exc):
    return ShapeError(f"{name}: {exc}\n  at {user_line()}")


def _plain(value):
    """Attributes hold plain Python values (NumPy scalars would not print as parseable text)."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class StateView(Tracer):
    """``state.data`` inside a trace. In NumPy ``p.data`` is the State's array itself, so this
    tracer has no fixed value: each use reads the State's value at that point of the function
    (after ``opt.step()`` the updated one), detached from gradients; ``x op= v`` and
    ``x[...] = v`` write the State (detached too), as NumPy writes the array."""

    __slots__ = ("state",)

    def __init__(self, state, builder):
        self.state = state
        self.builder = builder
        self.weak = False

    @property
    def value(self):
        return self.builder.detached_value(self.state)

    @value.setter
    def value(self, new):  # x op= v (graphc.ops.methods._update_in_place)
        self._write(Tracer(new, self.builder))

    def __getitem__(self, key):
        if isinstance(key, tuple) and key == () and not self.ndim:
            return Tracer(self.value, self.builder)  # (a 0-d array's [()] is a scalar: a copy)
        return Tracer.__getitem__(self, key)

    def __setitem__(self, key, value):
        whole = key is Ellipsis or (isinstance(key, tuple) and key == ()) or (
            isinstance(key, slice) and key == slice(None))
        if not whole:
            raise TraceError(f"p.data[key] = value inside a traced function writes the whole array only "
                             f"(p.data[...] = value) (at {user_line()}); build the new value with "
                             f"gc.where(mask, value, p.data) and assign it: p.data[...] = new")
        if not isinstance(value, Tracer):  # NumPy's own casts, broadcasts and overflow errors
            array = np.empty(self.shape, self.dtype)
            array[...] = value
            self._write(array)
            return
        value = Tracer(value.value, value.builder)
        while value.ndim > self.ndim and value.shape[0] == 1:  # (NumPy drops leading 1s)
            value = value.reshape(value.shape[1:])
        self._write(value)

    def _write(self, value):
        """Write the State, detached from gradients (torch's ``.data``)."""
        _write_in(self.builder, self.state, bind("stop_gradient", value) if isinstance(value, Tracer) else value)


class DataView(Tracer):
    """A value of a State that NumPy would share with the State's array, inside a trace: what
    ``state.read()`` gives (``whole``: the array itself), a view of it or of ``state.data`` (a
    slice, reshape, .T). NumPy shows a later write of the State through it and a traced value
    cannot, so a use after such a write is refused (``.copy()`` it before the write to keep the
    old values). In-place arithmetic on a whole one writes the State, as NumPy writes the array."""

    __slots__ = ("_value", "_of", "whole")

    def __init__(self, value, builder, of, weak=False, whole=False):
        self.builder, self.weak, self._value = builder, weak, value
        self._of = of  # (the builder that holds the State, the State, the State's Value then)
        self.whole = whole

    @property
    def value(self):
        owner, state, seen = self._of
        if _state_value(owner, state) is not seen:
            name = getattr(state, "name", None) or type(state).__name__
            raise TraceError(f"a value of {name} read before {name} was written (p.read(), p in an expression, "
                             f"or a view of {name}.data: a slice, reshape or .T) is used after that write (by "
                             f"opt.step(), p.write() or an in-place update) (at {user_line()}): in NumPy it is "
                             f"the State's array itself and shows the new values, a trace cannot; read it "
                             f"again after the write, or .copy() it before")
        return self._value

    @value.setter
    def value(self, new):  # x op= v (graphc.ops.methods._update_in_place)
        if not self.whole:
            self._value = new
            return
        owner, state, _ = self._of
        _write_in(owner, state, Tracer(new, owner))
        self._value = _state_value(owner, state)
        self._of = (owner, state, self._value)

    shape = property(lambda self: self._value.type.shape)
    dtype = property(lambda self: np.dtype(self._value.type.dtype))
    ndim = property(lambda self: len(self._value.type.shape))
    size = property(lambda self: self._value.type.size)


def _write_in(owner, state, value):
    """Write ``state`` in the trace ``owner`` that read it, which must be the one being traced
    (a loop body reading it from outside cannot update State: its write_state raises)."""
    current = current_builder()
    if current is not owner:
        if isinstance(current, RegionBuilder) and owner.encloses(current):
            current.write_state(state, value)
        raise TraceError(f"values from two different traces were mixed (at {user_line()})")
    owner.write_state(state, value)


def _state_value(builder, state):
    """The Value ``state`` has at this point of ``builder``'s trace (None before it is read)."""
    value = builder.state_values.get(state)
    return None if value is None else value.value


def _view_of_data(source):
    """(builder, State, its traced value) when ``source`` is ``state.data`` or a view of it."""
    if isinstance(source, StateView):
        source.value  # (read it: the State has a traced value to compare with)
        owner = source.builder
        return owner, source.state, _state_value(owner, source.state)
    return source._of if isinstance(source, DataView) else None


def bind(name: str, *args, regions=(), **attrs):
    """Apply primitive ``name``: add a node when tracing, else run its NumPy reference.
    ``regions``: the node's nested graphs (a loop body), for an op that has them."""
    attrs = {k: _plain(v) for k, v in attrs.items()}
    op = registry.get(name)
    # an op with no operands (iota) is recorded whenever a trace is in progress
    builder = _builder_of(args) if args else current_builder()
    try:
        out_types = registry.infer_types(name, [type_of(a) for a in args], attrs, regions)
    except ShapeError as exc:
        raise _shape_error(name, exc) from None
    if builder is None:
        if regions:
            raise TraceError(f"{name}: a node with regions (a loop or branch body) is made only inside a trace")
        result = op.reference(*[np.asarray(a) for a in args], **attrs)
        results = result if len(out_types) > 1 else (result,)
        outs = tuple(np.asarray(r, dtype=t.dtype) for r, t in zip(results, out_types))
        return outs if len(outs) > 1 else outs[0]
    values = [builder.value_of(a) if isinstance(a, Tracer) else builder.constant(np.asarray(a)) for a in args]
    node = builder.graph.add_node(name, values, attrs, out_types, user_loc(), regions)
    outs = tuple(Tracer(v, builder) for v in node.outputs)
    if name in NUMPY_VIEWS and (name != "index" or node.outputs[0].type.shape):  # (x[0] of 1-d: a copy)
        of = _view_of_data(args[0])
        if of is not None:
            outs = (DataView(node.outputs[0], builder, of),)
    return outs[0] if len(outs) == 1 else outs  # (a loop with no carry has no outputs: ())


# -- dtype promotion (NumPy 2 rules: Python scalars are weak) ---------------------
_WEAK_STAND_IN = {"b": False, "i": 0, "u": 0, "f": 0.0}


def _promotion_stand_in(x):
    if isinstance(x, Tracer):
        return _WEAK_STAND_IN[x.dtype.kind] if x.weak else x.dtype
    if isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, (np.ndarray, np.generic)):
        return x.dtype
    _reject_container(x)
    if isinstance(x, (list, tuple)):  # a constant list of numbers is an array to NumPy ([0.485, 0.456])
        array = np.asarray(x)
        if array.dtype.kind in "biuf":
            return array.dtype
    raise TypeError(f"graphc cannot use a value of type {type(x).__name__} in an array operation "
                    f"(at {user_line()})")


def is_weak(x) -> bool:
    return (isinstance(x, Tracer) and x.weak) or (isinstance(x, (bool, int, float)) and not isinstance(x, np.generic))


def result_dtype(*args) -> str:
    dtype = np.result_type(*[_promotion_stand_in(a) for a in args]).name
    if dtype not in DTYPES:
        raise TypeError(f"graphc does not support dtype {dtype} (from {[type_of(a) for a in args]}); "
                        f"supported: {', '.join(DTYPES)}")
    return dtype


def convert(x, dtype: str):
    """``x`` as dtype: a cast node for tracers, a NumPy conversion for constants."""
    if isinstance(x, Tracer):
        if x.value.type.dtype == dtype:
            return x
        if x.weak and x.dtype.kind in "iu" and np.dtype(dtype).kind in "iu":
            # a Python int argument: NumPy 2 raises when it does not fit the array's dtype
            x.builder.check_input(x, functools.partial(_check_fits, np.iinfo(dtype)))
        out = bind("cast", x, dtype=dtype)
        out.weak = x.weak
        return out
    return np.asarray(x, dtype=dtype)


def _check_fits(info, value):
    if not info.min <= value <= info.max:
        raise OverflowError(f"Python integer {value} out of bounds for {info.dtype}")


def promote(*args, dtype: str | None = None):
    """Bring args to one dtype (``dtype`` if given, else NumPy's result type)."""
    dtype = dtype or result_dtype(*args)
    return [convert(a, dtype) for a in args]


def mark_weak(out, *args):
    """A result is weakly typed when all its operands were (3.0 * 2 stays weak)."""
    if isinstance(out, Tracer) and all(is_weak(a) for a in args):
        out.weak = True
    return out


# -- tracing a Python function ----------------------------------------------------
DYNAMIC = object()  # marks an output slot filled from the graph's outputs


def trace_into_graph(fn, args, kwargs, is_dynamic, name="graph", paths=None):
    """Trace ``fn(*args, **kwargs)``; leaves where ``is_dynamic(leaf)`` become graph inputs
    (``paths``, one per leaf, name them in error messages).

    Returns ``(graph, out_spec)`` where out_spec rebuilds the output pytree from
    the graph's output arrays (non-array outputs are kept as Python objects).
    """
    builder = Builder(name)
    leaves, treedef = pytree.flatten((args, kwargs))
    traced = []
    for k, leaf in enumerate(leaves):
        if is_dynamic(leaf):
            path = paths[k] if paths is not None and k < len(paths) else None
            value = builder.graph.add_input(type_of(leaf), path)
            traced.append(Tracer(value, builder, weak=is_weak(leaf)))
            if path is not None:
                builder.input_paths[value] = path
        else:
            traced.append(leaf)
    targs, tkwargs = pytree.unflatten(treedef, traced)
    try:
        with tracing(builder):
            result = fn(*targs, **tkwargs)
            capture.finish(builder, is_traced=lambda v: isinstance(v, Tracer))
            for check, description in builder.final_guards.values():
                builder.guard(check, check(), description)
    except ShapeError as exc:
        if "\n  at " in str(exc):
            raise
        # raised by a shape rule outside bind (reshape, axis checks...): add the user's line
        raise ShapeError(f"{exc}\n  at {_user_line_of(exc.__traceback__)}").with_traceback(
            exc.__traceback__) from None
    try:
        out_leaves, out_tree = pytree.flatten(result)
        slots = []
        for leaf in out_leaves:
            if isinstance(leaf, Tracer):
                if leaf.builder is not builder:
                    raise TraceError(f"{name} returned a traced value from another trace")
                builder.graph.outputs.append(leaf.value)
                builder.weak_outputs.append(leaf.weak)
                slots.append(DYNAMIC)
            elif isinstance(leaf, (np.ndarray, np.generic, int, float)) and not isinstance(leaf, bool):
                builder.graph.outputs.append(builder.constant(np.asarray(leaf)))
                builder.weak_outputs.append(is_weak(leaf))
                slots.append(DYNAMIC)
            else:
                slots.append(leaf)  # static output (None, strings...), returned as is
        # updated state: extra outputs, each offered the buffer of the state's input (a
        # donation, as in jax.jit's donate_argnums): memory planning writes it in place where safe
        donations = {}
        for state, value in builder.state_writes.items():  # (tracers: Builder.write_state)
            if state in builder.state_inputs:
                donations[len(builder.graph.outputs)] = builder.graph.inputs.index(builder.state_inputs[state])
            builder.graph.outputs.append(value.value)
        builder.graph.donations = donations
    finally:
        builder.finished = True
    return builder, (out_tree, slots)


def rebuild_outputs(out_spec, arrays):
    out_tree, slots = out_spec
    it = iter(arrays)
    return pytree.unflatten(out_tree, [next(it) if s is DYNAMIC else s for s in slots])
