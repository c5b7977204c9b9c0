"""Captured values: what a traced function reads from its globals and closures, read at call time.

Eager Python reads a global or closed-over variable when the line runs; a compiled
call must behave the same (the first rule). While tracing, graphc runs the user's
function through a copy of it whose global and closure reads are watched:

* an array (``W``) becomes a graph input that the runtime reads *by reference* on
  every call, from the same global or cell: ``W[:] = 0`` and ``W = new_array``
  both take effect, and the array's values never land in the generated source;
  so does each array in a dict, list or tuple held there (``params["w"]``);
* any other value the trace used (a Python number, a model, an optimizer, a
  helper function) is guarded: when the global or cell holds something else at
  call time, the function is traced again, as torch.compile's guards do; small
  containers (``cfg = {"lr": 0.1}``, ``[w, b]``) are guarded item by item;
* helper functions the user's code calls (through globals or closures) and the
  user's own modules (``config.W``) are watched the same way, recursively;
  library code (graphc, NumPy, the standard library, installed packages) is not;
  ``np`` itself is seen through ``_NumPyView`` (np.asarray, np.float32(x)...);
* where NumPy needs a concrete value of a captured array (``if MASK[0]``,
  ``x[MASK]``), ``concrete`` computes it and guards the array's contents.

Arrays and numbers reached any other way (an attribute of your own plain object,
a default argument) are constants of the trace: their values are taken when the
function is traced. Keep such arrays in a ``graphc.state.State`` (or an
``nn.Parameter`` or buffer; a Module's plain ndarray attributes are read by
reference, see ``nn.Module.__getattr__``), or pass them as arguments, when they
change between calls.

Assignments to globals inside a traced function (``global n; n += 1``) happen
once, while tracing, like every Python side effect; assigning a traced value to
a global is an error.
"""
from __future__ import annotations

import dis
import functools
import os
import sys
import sysconfig
import types

import numpy as np

from graphc import pytree
from graphc.errors import TraceError
from graphc.ir import DTYPES
from graphc.ops import registry
from graphc.state import State

_WRAPPED = "graphc.capture.functions"  # builder.aux: original function -> watched copy
_GLOBALS = "graphc.capture.globals"    # builder.aux: id(globals dict) -> _WatchedGlobals
_CAPTURED = "graphc.capture.arrays"    # builder.aux: source key -> CapturedArray

_LIBRARY_DIRS = tuple(sorted({
    os.path.dirname(os.path.abspath(sys.modules["graphc"].__file__)) + os.sep,
    os.path.dirname(os.path.abspath(np.__file__)) + os.sep,
    *(os.path.abspath(p) + os.sep for p in (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib",
                                                                                    "purelib", "platlib")) if p),
}))

# a stand-in whose shape and dtype match no array: a captured name that no longer holds an
# array fails the runtime's shape/dtype check, which retraces (and the retrace sees the new value)
_NOT_AN_ARRAY = np.empty((0, 0, 0, 0, 0, 0, 0, 0), dtype=object)
_MISSING = object()
_SCALARS = (int, float, complex, str, bytes, bool, type(None), np.generic)
_SMALL = 64  # containers up to this many leaves are guarded item by item (larger: by identity)


class CapturedArray(State):
    """A read-only State whose array is looked up on every call (a global, a cell, an object)."""

    def __init__(self, getter, name):
        self._getter = getter
        self.name = name
        self._checked = None  # the array last found capturable (on the hot path: no re-check)

    @property
    def _data(self):
        value = self._getter()
        if value is self._checked:
            return value
        if capturable(value):
            self._checked = value
            return value
        return _NOT_AN_ARRAY

    def write(self, value):
        raise TraceError(f"{self.name} is captured by the traced function and read-only there")


def capturable(value) -> bool:
    """Arrays graphc reads by reference: plain ndarrays (or memory maps) of a dtype graphc compiles."""
    return (type(value) is np.ndarray or type(value) is np.memmap) and value.dtype in _DTYPES


_DTYPES = frozenset(np.dtype(name).newbyteorder(order) for name in DTYPES for order in "<>")


def captured(builder, key, getter, name):
    """The traced value of a captured array (one graph input per source and trace)."""
    table = builder.aux.setdefault(_CAPTURED, {})
    state = table.get(key)
    if state is None:
        state = table[key] = CapturedArray(getter, name)
    return builder.read_state(state)


def is_user_code(code) -> bool:
    filename = code.co_filename
    return not (filename.startswith(_LIBRARY_DIRS) or filename.startswith("<frozen"))


@functools.lru_cache(maxsize=4096)
def _assigned_names(code) -> frozenset:
    """Globals and free variables the code (or code nested in it) assigns or deletes."""
    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL", "STORE_DEREF", "DELETE_DEREF"):
            names.add(ins.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _assigned_names(const)
    return frozenset(names)


def _identity(current):
    """What a guard compares (the value it has when the trace ends, so the traced code's own
    assignments do not count): numbers and strings by value (typed, the sign of zero and NaN
    told apart), anything else by identity (the guard holds the traced object, so its id
    cannot be reused)."""
    return scalar_key(current) if isinstance(current, _SCALARS) else ("object", id(current))


def watch(fn, builder):
    """``fn`` as it should run inside the trace of ``builder``: its captured reads watched."""
    if isinstance(fn, types.MethodType):
        func = watch(fn.__func__, builder)
        return fn if func is fn.__func__ else types.MethodType(func, fn.__self__)
    if isinstance(fn, functools.partial):
        func = watch(fn.func, builder)
        return fn if func is fn.func else functools.partial(func, *fn.args, **fn.keywords)
    if type(fn) is not types.FunctionType:
        return fn
    table = builder.aux.setdefault(_WRAPPED, {})  # (a watched copy maps to itself)
    found = table.get(fn)
    if found is not None:
        return found
    code = fn.__code__
    user = is_user_code(code)
    cells = fn.__closure__ or ()
    if not user and not any(_watchable(c) for c in cells):
        table[fn] = fn
        return fn
    fn_globals = _watched_globals(fn.__globals__, builder) if user else fn.__globals__
    assigned = _assigned_names(code)
    # a fresh cell where the copy may see another value; the real cell where the function
    # assigns the variable (its writes must reach the enclosing scope) or it is empty yet
    fresh = [not (name in assigned or _contents(cell) is _MISSING) for name, cell in zip(code.co_freevars, cells)]
    new_cells = tuple(types.CellType() if f else cell for f, cell in zip(fresh, cells))
    copy = types.FunctionType(code, fn_globals, fn.__name__, fn.__defaults__, new_cells)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__dict__.update(fn.__dict__)
    copy.__qualname__, copy.__module__ = fn.__qualname__, fn.__module__
    table[fn] = table[copy] = copy  # before the cells are filled: a function closing over itself finds it
    for name, cell, new, f in zip(code.co_freevars, cells, new_cells, fresh):
        if not f:
            continue
        value = cell.cell_contents
        if user:
            new.cell_contents = _read(builder, ("cell", id(cell)), functools.partial(_contents, cell), value,
                                      f"{fn.__qualname__}'s closure variable {name!r}")
        else:
            new.cell_contents = watch(value, builder) if _watchable(cell) else value
    return copy


def _read(builder, key, getter, value, where):
    """What traced user code sees for ``value``, read from a global, cell or module attribute
    through ``getter``: an array becomes a captured input; a dict, list or tuple holding arrays
    (``params = {"w": W}``) has each array captured and its keys guarded; another small container
    is guarded item by item; a module of the user's is watched; anything else is guarded."""
    if capturable(value):
        return captured(builder, key, getter, where)
    if type(value) in (dict, list, tuple):
        leaves = pytree.flatten(value)[0]
        if any(capturable(leaf) for leaf in leaves):
            builder.guard_final(("capture",) + key, lambda: _structure(getter()), where)
            items = value.items() if type(value) is dict else enumerate(value)
            parts = {k: _read(builder, key + (k,), functools.partial(_item, getter, k), v, f"{where}[{k!r}]")
                     for k, v in items}
            return parts if type(value) is dict else type(value)(parts.values())
        if len(leaves) <= _SMALL:
            # a small container (config = {"lr": 0.1}, params = [w, b], layers = [...]): changed in
            # place too; numbers by value, other objects (Parameters, modules) by identity
            builder.guard_final(("capture",) + key, lambda: _content(getter()), where)
            return value
    if isinstance(value, types.ModuleType):  # (rebinding `np` is not a thing to guard on every call)
        file = getattr(value, "__file__", None)
        return _UserModuleView(value, builder) if file and not file.startswith(_LIBRARY_DIRS) else value
    builder.guard_final(("capture",) + key, IdentityGuard(getter, value), where)
    return watch(value, builder)


class IdentityGuard:
    """A guard's check on a global, cell or attribute: the value's identity key (``_identity``).
    ``fast`` tells the runtime how to test, without a call, that the very object read while
    tracing is still there (the common case on every call): ("cell", cell, object) or
    ("dict", namespace, name, object); None when there is no such shortcut."""

    __slots__ = ("getter", "value", "held", "fast")

    def __init__(self, getter, value):
        self.getter, self.value, self.held = getter, value, _identity(value)
        self.fast = None
        if isinstance(getter, functools.partial):
            if getter.func is _contents:
                self.fast = ("cell", getter.args[0], value)
            elif isinstance(getattr(getter.func, "__self__", None), dict) and getter.func.__name__ == "get":
                self.fast = ("dict", getter.func.__self__, getter.args[0], value)

    def __call__(self):
        current = self.getter()
        return self.held if current is self.value else _identity(current)


class _UserModuleView(types.ModuleType):
    """A module of the user's own (``import config``) as traced code sees it: ``config.W`` and
    ``config.helper`` are read like globals (arrays captured, the rest guarded and followed)."""

    def __init__(self, module, builder):
        super().__init__(module.__name__, module.__doc__)
        object.__setattr__(self, "_graphc_module", module)
        object.__setattr__(self, "_graphc_builder", builder)
        object.__setattr__(self, "_graphc_seen", {})

    def __getattr__(self, name):
        module, builder, seen = self._graphc_module, self._graphc_builder, self._graphc_seen
        value = getattr(module, name)
        if builder.finished or name.startswith("__"):
            return value
        if name not in seen:
            seen[name] = _read(builder, ("attribute", id(module), name),
                               functools.partial(getattr, module, name, None), value, f"{module.__name__}.{name}")
        return seen[name]

    def __setattr__(self, name, value):
        setattr(self._graphc_module, name, value)


def _content(container):
    """Identity, structure and leaves (numbers typed, -0.0 and NaN told apart; other objects by
    identity) of a small container."""
    if type(container) not in (dict, list, tuple):
        return None
    leaves, tree = pytree.flatten(container)
    return id(container), tree, tuple(_identity(leaf) for leaf in leaves)


def scalar_key(value):
    """A key equal only for values that trace alike: the type, and for floats the sign of zero
    and NaN (``0.0 == -0.0`` and ``nan != nan`` in Python)."""
    if isinstance(value, (float, np.floating)):
        return type(value), repr(float(value))
    return type(value), value


def _structure(container):
    """A container's identity and keys (or length): what a captured container's guard compares."""
    keys = tuple(container) if type(container) is dict else len(container) if type(container) in (list, tuple) else None
    return id(container), keys


def _item(getter, key):
    try:
        return getter()[key]
    except (KeyError, IndexError, TypeError):
        return None


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:
        return _MISSING


def _watchable(cell) -> bool:
    value = _contents(cell)
    return isinstance(value, (types.FunctionType, types.MethodType, functools.partial))


def _watched_globals(real: dict, builder):
    table = builder.aux.setdefault(_GLOBALS, {})
    found = table.get(id(real))
    if found is None:
        found = table[id(real)] = _WatchedGlobals(real, builder)
    return found


class _WatchedGlobals(dict):
    """A user module's globals as the traced copy of a function sees them.

    CPython looks globals up through ``__getitem__`` when the globals are a dict
    subclass, so each read can be turned into a captured input or a guard.
    Stores made while tracing land here and are copied back by ``finish``.
    """

    def __init__(self, real, builder):
        super().__init__(real)
        self.real = real
        self.builder = builder
        self.snapshot = dict(real)
        self.seen = {}

    def __getitem__(self, name):
        stored = dict.get(self, name, _MISSING)
        if stored is not self.snapshot.get(name, _MISSING):  # assigned or deleted by the traced code
            if stored is _MISSING:
                raise KeyError(name)
            return stored
        value = self.real[name]  # the module's value now (code graphc does not follow may rebind it)
        if self.builder.finished:
            return value  # KeyError: Python goes on to the builtins
        found = self.seen.get(name, _MISSING)
        if found is not _MISSING:
            return found
        if value is np:
            found = _NUMPY_VIEW
        elif _override(value) is not None:
            found = _override(value)  # `from numpy import asarray`
        else:
            found = _read(self.builder, ("global", id(self.real), name),
                          functools.partial(self.real.get, name, None), value, f"global {name!r}")
        self.seen[name] = found
        return found


def _override(value):
    try:
        return registry.NUMPY_OVERRIDES.get(value)
    except TypeError:  # unhashable
        return None


class _NumPyView(types.ModuleType):
    """``numpy`` as traced user code sees it: the few functions that NumPy does not dispatch
    to traced values (np.asarray, np.array, np.r_...) are graphc's. ``np.float32(x)`` too, but
    only where the attribute is loaded to be called: anywhere else (``dtype=np.float32``,
    ``x.dtype.type is np.float32``) the user's code gets NumPy's own type."""

    def __getattr__(self, name):
        value = getattr(np, name)
        found = _override(value)
        if found is None and _CALL_OVERRIDES.get(value) is not None and _loaded_to_call(sys._getframe(1)):
            found = _CALL_OVERRIDES[value]
        return value if found is None else found

    def __dir__(self):
        return dir(np)


_NUMPY_VIEW = _NumPyView("numpy", np.__doc__)
_CALL_OVERRIDES = registry.NUMPY_CALL_OVERRIDES


def _loaded_to_call(frame) -> bool:
    """Is the attribute being read by ``np.name(...)``, a method-style load (3.11's LOAD_METHOD,
    3.12's LOAD_ATTR with the method bit), rather than as a value?"""
    return _call_load(frame.f_code, frame.f_lasti)


@functools.lru_cache(maxsize=4096)
def _call_load(code, lasti) -> bool:
    instructions = list(dis.get_instructions(code))
    at = next((k for k, ins in enumerate(instructions) if ins.offset == lasti), None)
    if at is None:
        return False
    load = instructions[at]
    if load.opname == "LOAD_METHOD" or load.argrepr.startswith("NULL|self"):
        return True
    # a plain load (3.11 loads `module.name(...)` so): follow the stack until the loaded value
    # is consumed; it is the callee when a call's arguments are exactly what was pushed above it
    above, calls_above = 0, 0
    for ins in instructions[at + 1:]:
        if ins.opname in ("PRECALL", "CALL"):
            if ins.opname == "CALL" and calls_above:  # (the CALL of a PRECALL already counted)
                calls_above -= 1
                continue
            if above == ins.arg:
                return True
            if above < ins.arg + 2:
                return False
            above -= ins.arg + 1  # a call among the arguments: its callable pair and args become one value
            calls_above += ins.opname == "PRECALL"
            continue
        if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            return False
        try:
            above += dis.stack_effect(ins.opcode, ins.arg)
        except ValueError:
            return False
        if above < 0:
            return False
    return False


def finish(builder, is_traced):
    """After a trace: copy assignments to globals made while tracing back to the real modules
    (``is_traced(value)``: whether a value is the trace's own, which cannot leave it)."""
    for watched in builder.aux.get(_GLOBALS, {}).values():
        for name in set(watched) | set(watched.snapshot):
            new = dict.get(watched, name, _MISSING)
            old = watched.snapshot.get(name, _MISSING)
            if new is old:
                continue
            if is_traced(new):
                raise TraceError(f"the traced function assigned a traced value to the global {name!r}; "
                                 f"return it instead (a compiled call runs no Python code)")
            if new is _MISSING:
                watched.real.pop(name, None)
            else:
                watched.real[name] = new


def concrete(tracer):
    """The value of ``tracer`` when it is computed from captured arrays and constants alone (a
    global mask, ``int(SIZES.sum())``): NumPy needs such values concretely, as eager code has
    them. The trace then depends on those arrays' contents, which are guarded (compared on every
    call, so keep such arrays small). None when the value depends on an argument."""
    builder = tracer.builder
    sources = {v: st for st, v in builder.state_inputs.items() if isinstance(st, CapturedArray)}
    needed, todo = set(), [tracer.value]
    while todo:
        v = todo.pop()
        if v in needed:
            continue
        needed.add(v)
        if v.producer is None:
            if v not in sources:
                return None  # an argument, a State: genuinely traced
        elif registry.has_effect(v.producer):
            return None
        else:
            todo.extend(v.producer.inputs)
    env = {v: np.array(sources[v]._data) for v in needed if v.producer is None}
    for v, snapshot in env.items():
        state = sources[v]
        builder.guard(functools.partial(_same_contents, state, snapshot), True,
                      f"the contents of {state.name}, used as a concrete value")
    with np.errstate(all="ignore"):
        for node in builder.graph.nodes:
            if not any(o in needed for o in node.outputs):
                continue
            result = registry.get(node.op).reference(*[env[i] for i in node.inputs], **node.attrs)
            results = result if len(node.outputs) > 1 else (result,)
            for out, r in zip(node.outputs, results):
                env[out] = np.asarray(r, dtype=out.type.dtype)
    return env[tracer.value]


def _same_contents(state, snapshot) -> bool:
    current = state._data
    return (current.shape == snapshot.shape and current.dtype == snapshot.dtype
            and np.array_equal(current, snapshot, equal_nan=current.dtype.kind == "f"))

