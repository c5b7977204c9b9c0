"""``TracedFunction``: traces on the first call per signature, then calls compiled code.

A signature is the structure of the arguments (nested tuples/lists/dicts), the
shape and dtype of every array or Python number in them, and the value of every
static argument (strings, None, callables, Python bools and ``static_argnums``).
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
import warnings
import weakref

import numpy as np

from graphc import backend, capture, pytree, symbolic
from graphc.ops import registry
from graphc.backend import background
from graphc.backend.base import buffer_roots
from graphc.backend.interpreter import Interpreted
from graphc.errors import DeviceError, GraphcError, NonFiniteError, ShapeError
from graphc.ir import DTYPES
from graphc.context import for_every_size, on_gpu
from graphc.trace import DYNAMIC, current_builder, rebuild_outputs, trace_into_graph
from graphc.passes import manager

_SCALAR_TYPES = (int, float, np.integer, np.floating, np.bool_)
log = logging.getLogger("graphc.runtime")


MAX_SIGNATURES = 64  # compiled signatures kept per traced function (least recently traced go first)
MAX_VARIANTS = 8  # variants kept per signature when guarded Python values change (train/eval...)
RETRACE_WARNING = 8  # signatures after which a one-time RetraceWarning names the changing argument


class RetraceWarning(UserWarning):
    """A traced function keeps compiling for new argument shapes or types."""


class Static:
    """Wraps an argument named in ``static_argnums``: part of the signature, not traced."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Static) and _typed_key(self.value) == _typed_key(other.value)

    def __hash__(self):
        return hash(_typed_key(self.value))


def _typed_key(value):
    """Equal keys only for values that trace alike: ``2``, ``2.0`` and ``True`` are equal in
    Python but promote differently in NumPy, so the type is part of the key (lists and other
    unhashable values stay unhashable)."""
    if type(value) is tuple:
        return (tuple, tuple(_typed_key(v) for v in value))
    return capture.scalar_key(value)


def is_dynamic(leaf) -> bool:
    """Arrays (host or GPU) and numbers are traced inputs; Python bools and other objects are static."""
    if isinstance(leaf, bool) or isinstance(leaf, Static):
        return False
    return isinstance(leaf, (np.ndarray, *_SCALAR_TYPES)) or on_gpu(leaf)


def _leaf_key(leaf):
    if isinstance(leaf, np.ndarray):
        return (leaf.shape, leaf.dtype)
    if on_gpu(leaf):
        return ("gpu", tuple(leaf.shape), np.dtype(leaf.dtype))
    if isinstance(leaf, np.generic):  # first: np.float64 is also a float, but strongly typed
        return ((), leaf.dtype)
    if isinstance(leaf, bool):
        return ("static", type(leaf), leaf)
    if isinstance(leaf, float):
        return "float"
    if isinstance(leaf, int):
        return "int"
    return ("static", type(leaf), leaf)


def _as_argument(leaf):
    """The form Numba receives: native byte order, C-contiguous arrays; 0-d arrays as NumPy scalars."""
    if isinstance(leaf, np.ndarray):
        if not leaf.dtype.isnative:
            leaf = leaf.astype(leaf.dtype.newbyteorder("="))
        if leaf.ndim == 0:
            return leaf[()]
        return leaf if leaf.flags.c_contiguous else np.ascontiguousarray(leaf)
    return leaf


# what an ndarray subclass overrides when its arithmetic or indexing means something else
_SEMANTIC_HOOKS = ("__array_ufunc__", "__array_function__", "__array_wrap__", "__array_finalize__",
                   "__getitem__", "__mul__", "__matmul__", "__add__", "__pow__")


@functools.lru_cache(maxsize=256)
def _honourable(cls) -> bool:
    """Does an ndarray subclass compute like a plain ndarray? np.memmap does; a subclass that
    overrides arithmetic, indexing or NumPy's hooks (np.ma, np.matrix...) may not."""
    if issubclass(cls, np.memmap):
        return True
    return not any(name in klass.__dict__ for klass in cls.__mro__[:cls.__mro__.index(np.ndarray)]
                   for name in _SEMANTIC_HOOKS)


def _subclass_error(name, path, leaf) -> TypeError:
    if isinstance(leaf, np.ma.MaskedArray):
        hint = "graphc cannot honour the mask of a masked array; pass x.filled(value) or x.data"
    elif isinstance(leaf, np.matrix):
        hint = "np.matrix multiplies as matrices; pass np.asarray(x) and use @ for products"
    else:
        hint = "pass np.asarray(x) if its values are all that matter"
    return TypeError(f"{name}: argument {path!r} is a {type(leaf).__module__}.{type(leaf).__name__}, an "
                     f"ndarray subclass whose semantics graphc cannot compile; {hint}")


_PYTHON_TYPE = {"f": float, "i": int, "b": bool}


class Compiled:
    """One signature's compiled graph plus how to rebuild the outputs and write back state.

    ``compiled`` is the backend's ``Executable`` (graphc/backend/base.py)."""

    def __init__(self, graph, compiled, out_spec, pass_stats, builder, check_finite=False):
        self.graph = graph
        self.compiled = compiled
        self.out_spec = out_spec
        self.pass_stats = pass_stats
        self.check_finite = check_finite
        self.state_in = list(builder.state_inputs)
        self.state_types = [(st._data.shape, st._data.dtype) for st in self.state_in]
        self.state_out = list(builder.state_writes)
        self.n_user = len(graph.outputs) - len(self.state_out)
        # 0-d outputs come back from Numba as Python scalars: give them their dtype, unless the eager
        # code returns a Python number there (a weakly typed value: np.float64 would promote strongly)
        weak = builder.weak_outputs + [False] * (len(graph.outputs) - len(builder.weak_outputs))
        self.scalar_types = [(_PYTHON_TYPE[np.dtype(v.type.dtype).kind] if w else np.dtype(v.type.dtype).type)
                             if not v.type.shape and not compiled.device_scalars else None
                             for v, w in zip(graph.outputs, weak)]
        # a state update that is (a view of) an input must be copied before any write-back
        views = _input_views(graph)
        self.copy_first = [v in views for v in graph.outputs[self.n_user:]]
        # a State marked ``replace_on_write`` (graphc.nn's gradients) takes the new array itself
        # instead of a copy into its old one, where that array is the call's own: returned once,
        # not a view of an input nor a constant, not returned to the user too, not 0-d (a scalar)
        self.replace = self._replaceable(graph, views) if any(
            getattr(st, "replace_on_write", False) for st in self.state_out) else None
        out_tree, slots = out_spec
        self.single_output = out_tree == pytree.LEAF and slots == [DYNAMIC]
        self.flat_tuple = (out_tree[0] == "tuple" and all(c == pytree.LEAF for c in out_tree[1])
                           and all(sl is DYNAMIC for sl in slots)) if out_tree != pytree.LEAF else False
        self._call = compiled
        self.to_host = getattr(compiled, "to_host_value", None)
        self.guards = list(builder.guards)
        self.input_checks = list(builder.input_checks)
        self.needs_validation = bool(self.state_in or self.guards)
        self.valid = self._validator()
        # Python state a library sets after each call as the trace left it (graphc.nn: p.grad None or not)
        self.after_call = tuple(builder.aux.get("graphc.after_call", ()))
        # argument positions of the States whose update the executable writes into the
        # State's own array (the CPU backend's memory plan: graphc/backend/plan.py in_place)
        inplace = compiled.inplace
        self.inplace_args = [inplace[j] for j in range(self.n_user, len(graph.outputs)) if j in inplace]
        self._cached_for = None  # the State arrays that _donated and _always_copy describe
        self._donated, self._always_copy = [], set()
        # a returned input (x, x.reshape(...), x * 1.0 simplified to x) or State value is the
        # caller's or the State's live array: return a copy, taken before the write-back, so
        # every result is new to the caller, as in eager NumPy
        roots = buffer_roots(graph)
        inputs = set(graph.inputs)
        copy_user, returned = [], set()
        for v in graph.outputs[:self.n_user]:  # (a buffer returned twice, `y, y.copy()`: two arrays)
            root = roots.get(v, v)
            copy_user.append(bool(v.type.shape) and (root in inputs or root in returned))
            returned.add(root)
        self.copy_user = copy_user if any(copy_user) else None
        # compile="background": the NumPy interpreter runs this signature while a worker compiles
        # it (a _Pending); then every call goes to the compiled signature it switched to
        self.interpreter_tier = False
        self.pending: _Pending | None = None
        self.upgraded: Compiled | None = None
        self.interpreted_calls = 0

    def _validator(self):
        """``valid()``: False when a State changed shape or dtype, or a guarded Python value
        changed. A closure over plain tuples (it runs on every call): globals and cells that still
        hold the very object the trace read pass with one ``is`` each (capture.IdentityGuard.fast);
        anything else runs the guards' checks."""
        states = tuple((st, shape, dtype) for st, (shape, dtype) in zip(self.state_in, self.state_types))
        cells, names, others = [], [], []
        for guard in self.guards:
            fast = getattr(guard[0], "fast", None)
            if fast is None:
                others.append(guard)
            elif fast[0] == "cell":
                cells.append(fast[1:])
            else:
                names.append(fast[1:])
        cells, names, others, every = tuple(cells), tuple(names), tuple(others), tuple(self.guards)

        def hold(guards) -> bool:
            for check, value, _ in guards:
                if check() != value:
                    return False
            return True

        def valid() -> bool:
            for st, shape, dtype in states:
                data = st._data
                if data.shape != shape or data.dtype != dtype:
                    return False
            for namespace, name, obj in names:
                if namespace.get(name) is not obj:
                    return hold(every)
            try:
                for cell, obj in cells:
                    if cell.cell_contents is not obj:
                        return hold(every)
            except ValueError:  # (a cell emptied by `del`)
                return hold(every)
            return hold(others) if others else True

        return valid

    def _name_the_ops(self, exc):
        """An error raised while the graph runs (a singular matrix, an index out of range)
        gets a note naming the ops of this graph that can raise, with the user's lines."""
        if isinstance(exc, GraphcError) or getattr(exc, "_graphc_noted", False):
            return
        ops = [f"{node.op if node.op != 'fused' else 'a fused loop'} at {node.loc or 'an unknown line'}"
               for node in self.graph.nodes if registry.can_raise(node)]
        if ops:
            exc.add_note(f"raised while running the graph of {self.graph.name}; what can raise there: "
                         f"{'; '.join(ops)}")
            exc._graphc_noted = True

    def failed_guard(self) -> str | None:
        """What changed since this variant was traced (for the retrace warning)."""
        for check, value, description in self.guards:
            if check() != value:
                return description
        return None

    def run(self, arguments):
        if self.upgraded is not None:
            return self.upgraded.run(arguments)
        if self.interpreter_tier:
            pending = self.pending  # (read once: another thread may switch it meanwhile)
            # (from the second call on: the first returns without starting the worker)
            if pending is not None and self.interpreted_calls and pending.job.done:
                self.switch()
                if self.upgraded is not None:
                    return self.upgraded.run(arguments)
            self.interpreted_calls += 1
        if self.state_in:
            arguments = list(arguments) + [_as_argument(st._data) for st in self.state_in]
            if self.inplace_args:
                self._protect_inplace(arguments)
        for i, check in self.input_checks:  # e.g. labels in range: before anything is updated
            check(arguments[i])
        for st in self.state_out:  # all or nothing: refuse before any State is written
            if not st._data.flags.writeable:
                name = getattr(st, "name", None) or type(st).__name__
                raise ValueError(f"cannot update {name}: its array is read-only (a read-only memory map, "
                                 f"or flags.writeable is False); no state was changed")
        try:
            outs = self._call(*arguments)
        except Exception as exc:  # (no cost on the normal path)
            self._name_the_ops(exc)
            raise
        if self._call is self.compiled and self.compiled.ready:
            # compiled now: call its cheaper entry from here on where it has one (it skips the
            # error-mapping wrapper), and stop checking
            entry = self.compiled.fast_entry
            self._call = entry if entry is not None else self.compiled.__call__
        if self.copy_user:  # (o.copy(): a device array stays on its device)
            outs = [o.copy() if c else o for o, c in zip(outs, self.copy_user)] + list(outs[self.n_user:])
        if self.state_out:
            self._write_back(outs[self.n_user:])
        for effect in self.after_call:
            effect()
        if self.single_output:
            t = self.scalar_types[0]
            return outs[0] if t is None else t(outs[0])
        outs = [o if t is None else t(o) for t, o in zip(self.scalar_types, outs[:self.n_user])]
        if self.flat_tuple:
            return tuple(outs)
        return rebuild_outputs(self.out_spec, outs)

    def switch(self, wait: bool = False):
        """Once the background compile has finished (``wait``: after waiting for it), switch to
        its compiled code; a failed one warns once and leaves the interpreter running."""
        while True:
            pending = self.pending
            if pending is None:
                return
            if wait:  # (not under the lock: other signatures switch meanwhile)
                pending.job.wait()
            with _SWITCH_LOCK:
                if self.pending is not pending:
                    continue  # (another thread switched it)
                if not pending.job.done:
                    return
                after, upgraded = pending.outcome()
                if upgraded is not None:  # (first: a call seeing no pending finds the upgrade)
                    self.upgraded = upgraded
                self.pending = after
            if not wait:
                return  # (a fallback compile took over, or it failed: the interpreter goes on)

    def prepare(self, arguments):
        """Compile the executable for these arguments now (a backend that compiles on its first
        call does it here, running nothing): a failure to compile is known before any call."""
        if self.state_in:
            arguments = list(arguments) + [_as_argument(st._data) for st in self.state_in]
        self.compiled.prepare(*arguments)

    def _protect_inplace(self, arguments):
        """Hand a State written in place a copy of its array instead when writing into the
        array itself would be unsafe: a user argument shares its memory (the user passed the
        parameter, or a view of it, as an input), it shares memory with another State, it is
        read-only, or ``check_finite`` must be able to refuse the update. The copy is written
        back after the call as before."""
        first = len(arguments) - len(self.state_in)
        if self._cached_for is None or any(a is not st._data for a, st in zip(self._cached_for, self.state_in)):
            self._cache_states(arguments, first)
        unsafe = set(self._always_copy)
        for b in arguments[:first]:
            if not (isinstance(b, np.ndarray) and b.nbytes):
                continue
            owner, lo = _owner(b), None
            for k, o, (start, end) in self._donated:
                if owner.base is None and o.base is None:  # both NumPy's own memory: shared
                    hit = o is owner  # only through one owner (cheaper than an address)
                else:  # a foreign buffer (bytes, mmap, Numba's) on either side: addresses
                    if lo is None:
                        lo = b.ctypes.data
                    hit = start < lo + b.nbytes and lo < end
                if hit:
                    unsafe.add(k)
        for k in unsafe:
            arguments[k] = arguments[k].copy()

    def _cache_states(self, arguments, first):
        """Per set of State arrays: each donated State's memory owner and address range, and
        the donated States that must always get a copy."""
        datas = [st._data for st in self.state_in]
        self._donated = []
        self._always_copy = set()
        for k in self.inplace_args:
            a = arguments[k]
            data = datas[k - first]
            if a is not data:
                continue  # (not C-contiguous: _as_argument already made the call a private copy)
            if self.check_finite or not data.flags.writeable or any(
                    q != k - first and isinstance(d, np.ndarray) and np.may_share_memory(data, d)
                    for q, d in enumerate(datas)):
                self._always_copy.add(k)
            else:
                self._donated.append((k, _owner(a), (a.ctypes.data, a.ctypes.data + a.nbytes)))
        self._cached_for = tuple(datas)  # (holding them: their ids stay theirs)

    def _replaceable(self, graph, views):
        roots = buffer_roots(graph)
        counts = {}
        for v in graph.outputs:
            counts[roots.get(v, v)] = counts.get(roots.get(v, v), 0) + 1
        return [getattr(st, "replace_on_write", False) and bool(v.type.shape) and v not in views
                and counts[roots.get(v, v)] == 1 and v.producer is not None and v.producer.op != "constant"
                for st, v in zip(self.state_out, graph.outputs[self.n_user:])]

    def _write_back(self, values):
        values = [v.copy() if copy else v for v, copy in zip(values, self.copy_first)]
        if self.to_host is not None:  # (a GPU backend: a State whose array is on the host gets a host copy)
            values = [self.to_host(v) if isinstance(st._data, np.ndarray) else v
                      for st, v in zip(self.state_out, values)]
        if self.check_finite:
            for st, v in zip(self.state_out, values):
                if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all():
                    bad = int(np.size(v) - np.isfinite(v).sum())
                    name = getattr(st, "name", None) or repr(type(st).__name__)
                    raise NonFiniteError(f"check_finite: the update of state {name} {np.shape(v)} has "
                                         f"{bad} non-finite value(s); no state was written back")
        replace = self.replace or ()
        for k, (st, v) in enumerate(zip(self.state_out, values)):
            if v is not st._data:  # (an update written in place came back as st._data itself)
                if k < len(replace) and replace[k]:
                    st._data = v
                else:
                    st._data[...] = v


_SWITCH_LOCK = threading.RLock()


def _new_switch_lock():
    global _SWITCH_LOCK
    _SWITCH_LOCK = threading.RLock()  # (a fork while another thread held it: the child's is free)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_switch_lock)


class _Pending:
    """A background compile a signature waits for while the interpreter runs it.

    ``make(graph, stats)`` builds the Compiled to switch to from the worker's optimized graph;
    ``fallback(error)`` may start another compile instead of giving up (a graph the worker could
    not compile for every size of its symbolic dimensions is compiled for this size), returning
    its _Pending, or None to warn and keep interpreting."""

    def __init__(self, job, make, name, fallback=None):
        self.job, self.make, self.name, self.fallback = job, make, name, fallback

    def outcome(self):
        """``(next _Pending or None, Compiled to switch to or None)`` of a finished job."""
        job = self.job
        background.relay_warnings(job)
        if job.error is None:
            try:
                return None, self.make(*job.result[:2])
            except Exception as exc:  # (compiling the worker's graph here failed: say so)
                error = f"{type(exc).__name__}: {exc}"
        else:
            error = job.error
        again = self.fallback(error) if self.fallback is not None else None
        if isinstance(again, Compiled):
            return None, again
        if again is None and not getattr(job.origin, "warned", False):
            job.origin.warned = True  # (one warning per failed compile, however many signatures wait on it)
            background.warn_failed(self.name, error)
        return again, None


def _owner(a: np.ndarray):
    """The array at the end of ``a``'s chain of bases: NumPy's owner of the memory (its
    ``base`` is None) or the view of a foreign buffer (its ``base`` is that buffer)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _input_views(graph) -> set:
    """Graph values that are graph inputs or views of them (reshape, index) in the generated code."""
    inputs = set(graph.inputs)
    return {v for v, root in buffer_roots(graph).items() if root in inputs}


class TracedFunction:
    """A function compiled by graphc. Call it like the original.

    ``f.graph`` and ``f.source`` show the optimized IR and the generated source
    of the most recent signature; ``f.stats`` the passes' statistics.
    """

    def __init__(self, fn, static_argnums=(), passes="O2", device=backend.DEFAULT_DEVICE, name=None,
                 check_finite=False, math=None, dynamic=None, compile=None, to_host=None):
        if not callable(fn):
            raise TypeError(f"graphc.trace needs a function, got {type(fn).__name__}")
        self.backend = backend.get(device)  # (ValueError listing the devices)
        self.fn = fn
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        self.passes = manager.check_pipeline(passes)
        # the device's options, checked now (only those given: each device has its defaults)
        self.math = math  # cpu: "fast" (vectorizable exp/log/tanh...) or "libm" (NumPy's scalar calls)
        self.to_host = to_host  # cuda: array results as NumPy arrays instead of device arrays
        given = {"math": math, "to_host": to_host}
        self.options = self.backend.check_options({k: v for k, v in given.items() if v is not None})
        self.device = device
        # "background" / "eager" / "never" (None: $GRAPHC_COMPILE at each compile, else background)
        self.compile = compile if compile is None else background.check_mode(compile)
        self.check_finite = check_finite
        self.name = name or getattr(fn, "__name__", "graph")
        if self.name == "<lambda>":
            self.name = "lambda_"
        try:
            self._signature = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None
        # the parameters dynamic= names: an nn.Module's forward's (its __call__ takes *args, **kwargs)
        self._dynamic_signature = _forward_signature(fn, self._signature)
        self.dynamic = _check_dynamic(dynamic, self._dynamic_signature, self.name)
        self._templates: dict = {}  # symbolic signature -> [(template, builder, out_spec)]
        # id(template) -> (template, its Compiled for every size, or None where it has none)
        self._generic: dict = {}
        self._cache: dict = {}
        self._compile_lock = threading.RLock()
        self._warned = False
        self._compiles = 0
        self._fast: dict = {}  # (shape, dtype) per positional array -> Compiled
        self._last: Compiled | None = None
        functools.update_wrapper(self, fn, updated=())

    # -- calling ------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if not kwargs and not self.static_argnums:
            # fast path: positional C-contiguous NumPy arrays (the common case) -> one dict lookup
            key = []
            for a in args:
                kind = type(a)
                if kind is np.ndarray and a.ndim and a.flags.c_contiguous:
                    key.append((a.shape, a.dtype))
                elif kind is float or kind is int:  # Python numbers: weakly typed scalars
                    key.append(kind)
                else:
                    break
            else:
                for compiled in self._fast.get(tuple(key), ()):
                    if not compiled.needs_validation or compiled.valid():
                        self._last = compiled
                        return compiled.run(args)
        return self._call_general(args, kwargs)

    def __get__(self, obj, objtype=None):
        """``@gc.trace`` on a method: each instance gets its own compiled function of the bound
        method (``self`` is not an argument of the graph; its attributes are read when traced,
        its State and Parameters on every call). ``static_argnums`` count ``self`` as 0."""
        if obj is None:
            return self
        bound = self.__dict__.setdefault("_bound", {})  # id(instance) -> (reference, TracedFunction)
        entry = bound.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        try:  # held weakly, so the instance (and with it its compiled code) can be freed
            ref = weakref.ref(obj, lambda _, key=id(obj): bound.pop(key, None))
        except TypeError:
            ref = lambda: obj  # noqa: E731  (an instance without weak references stays alive)
        fn = self.fn

        def method(*args, **kwargs):
            return fn(ref(), *args, **kwargs)
        functools.update_wrapper(method, fn)
        if self._signature is not None:
            params = list(self._signature.parameters.values())[1:]
            method.__signature__ = self._signature.replace(parameters=params)
        traced = TracedFunction(method, static_argnums=tuple(i - 1 for i in self.static_argnums if i > 0),
                                passes=self.passes, device=self.device, name=self.name,
                                check_finite=self.check_finite, math=self.math, to_host=self.to_host, dynamic=self.dynamic,
                                compile=self.compile)
        bound[id(obj)] = (ref, traced)
        return traced

    def _call_general(self, args, kwargs):
        if self.static_argnums:
            args = tuple(Static(a) if i in self.static_argnums else a for i, a in enumerate(args))
        if current_builder() is not None:
            # called inside another trace: inline, so the outer graph sees every value this
            # function uses (arguments, and tracers of the outer trace it closes over)
            return self._call_python(*args, **kwargs)
        leaves, treedef = pytree.flatten((args, kwargs))
        for leaf in leaves:
            if isinstance(leaf, np.ndarray) and type(leaf) is not np.ndarray and not _honourable(type(leaf)):
                self._check_arguments(args, kwargs, leaves)  # names the argument (on every call)
            if self.device != "cuda" and on_gpu(leaf):
                self._check_arguments(args, kwargs, leaves)
        try:
            key = (treedef, tuple(_leaf_key(leaf) for leaf in leaves))
            variants = self._cache.get(key, ())
        except TypeError:  # an unhashable static argument
            variants, key = (), None
        # several variants per signature when the graph depended on Python state (train/eval...)
        compiled = next((c for c in variants if not c.needs_validation or c.valid()), None)
        if compiled is None:
            # one compile per signature when several threads call at once (re-entrant: a
            # signal handler or callback calling back in on the same thread never deadlocks)
            with self._compile_lock:
                variants = self._cache.get(key, ()) if key is not None else ()
                compiled = next((c for c in variants if not c.needs_validation or c.valid()), None)
                if compiled is None:
                    compiled = self._compile(key, args, kwargs, leaves)
        if not kwargs and not self.static_argnums and all(
                (type(a) is np.ndarray and a.ndim and a.flags.c_contiguous and a.dtype.isnative)
                or type(a) in (float, int) for a in args):
            fast_key = tuple((a.shape, a.dtype) if type(a) is np.ndarray else type(a) for a in args)
            fast = self._fast.setdefault(fast_key, [])
            if compiled not in fast:
                fast.insert(0, compiled)
        self._last = compiled
        return compiled.run([_as_argument(leaf) for leaf in leaves if is_dynamic(leaf)])

    def _call_python(self, *args, **kwargs):
        args = tuple(a.value if isinstance(a, Static) else a for a in args)
        builder = current_builder()
        fn = self.fn if builder is None else capture.watch(self.fn, builder)  # globals read at call time
        return fn(*args, **kwargs)

    def _compile(self, key, args, kwargs, leaves, mode=None):
        paths = self._check_arguments(args, kwargs, leaves)
        mode = self._compile_mode(mode)
        if key is None:
            raise TypeError(f"{self.name}: static arguments must be hashable (they are part of the "
                            f"compiled signature)")
        sizes = self._symbol_sizes(args, kwargs) if self.dynamic else None
        # the function is always traced at this call's own sizes: Python code may decide by the
        # size (``x * 2 if len(x) > 100 else x``) where the two probe sizes decide alike
        with for_every_size(sizes is not None):  # (compared with the template below)
            builder, out_spec = trace_into_graph(self._call_python, args, kwargs, is_dynamic, self.name, paths)
        traced = builder.graph
        if sizes is not None and min(sizes.values()) >= 2 and self.backend.symbolic_dims:
            # (sizes 0 and 1 trace as themselves: NumPy code may treat them apart, np.squeeze does)
            template, t_builder, t_spec = self._template(args, kwargs, paths)
            if self._template_holds(template, t_spec, builder, out_spec, sizes):
                generic = None
                if mode == "eager" or id(template) in self._generic:
                    generic = self._generic_compiled(template, t_builder, t_spec, leaves)
                elif mode == "background":  # interpreted while a worker compiles the template
                    generic = self._interpreted(traced, builder, out_spec, leaves,
                                                (template, t_builder, t_spec))
                    if generic is None:  # compiled before (it loads from the cache), or no cache
                        generic = self._generic_compiled(template, t_builder, t_spec, leaves)
                if generic is not None:  # the template's one compile, for every size it holds at
                    self._remember(key, generic, paths, compiled_now=False)
                    return generic
        compiled = None
        if mode != "eager":
            compiled = self._interpreted(traced, builder, out_spec, leaves)
        if compiled is None:
            compiled = self._compiled(traced, builder, out_spec)
        stale = self._cache.get(key, ())
        self._remember(key, compiled, paths, stale[0].failed_guard() if stale else None)
        return compiled

    def _compiled(self, traced, builder, out_spec, optimized=None):
        """The Compiled of a traced graph, compiled now (``optimized``: the graph and pass stats
        a background worker produced from it)."""
        graph, stats = optimized or manager.run(traced, self.passes)
        executable = self.backend.compile(graph, {**self.options, "passes": self.passes})
        return Compiled(graph, executable, out_spec, stats, builder, self.check_finite)

    # -- compile="background" / "never": the NumPy interpreter first (graphc/backend/background.py)
    def _compile_mode(self, mode=None) -> str:
        mode = mode or self.compile or background.check_mode(None)
        return mode if getattr(self.backend, "background", False) else "eager"

    def _interpreted(self, traced, builder, out_spec, leaves, generic=None):
        """The signature run by the NumPy interpreter on its traced graph, with a background
        compile to switch to (the template's, where ``generic``); None where it should compile
        now instead: compile="background" where a worker compiled this graph before (it loads
        from the disk cache) or nothing can be handed to one (no usable disk cache)."""
        user = [_as_argument(leaf) for leaf in leaves if is_dynamic(leaf)]
        pending = None
        if self._compile_mode() != "never":
            arguments = user + [_as_argument(st._data) for st in builder.state_inputs]
            pending = self._start(traced, builder, out_spec, arguments, generic, user)
            if pending is None:
                return None
        compiled = Compiled(traced, Interpreted(traced), out_spec, [], builder, self.check_finite)
        compiled.interpreter_tier, compiled.pending = True, pending
        return compiled

    def _start(self, traced, builder, out_spec, arguments, generic=None, user=()):
        """A _Pending for a background compile of ``traced`` (or of the template ``generic``),
        or None where the graph should be compiled now. ``arguments``: the graph's inputs
        (``user``: the function's own, without State)."""
        if generic is not None:
            template, t_builder, t_spec = generic
            how, job = background.start(template, self.passes, self.options, arguments, generic=True)
            if how != "job":
                return None

            def make(graph, stats):
                found = self._generic.get(id(template))
                if found is None or found[0] is not template or found[1] is None:
                    found = (template, self._compiled(template, t_builder, t_spec, (graph, stats)))
                    self._generic[id(template)] = found
                symbolic.bind(template, [np.shape(a) for a in user])  # (ShapeError naming the dim)
                return found[1]

            def fallback(error):  # not compilable for every size: this size's own graph, then
                log.debug("%s: no code for every size (%s); compiling this size", self.name, error)
                self._generic[id(template)] = (template, None)
                return self._start(traced, builder, out_spec, arguments) or self._compiled(traced, builder, out_spec)
            return _Pending(job, make, self.name, fallback)
        how, job = background.start(traced, self.passes, self.options, arguments)
        if how != "job":
            return None

        def fallback(error):  # no worker could start (no Python to run, no fork): compile here
            return self._compiled(traced, builder, out_spec) if job.start_failed else None
        return _Pending(job, lambda graph, stats: self._compiled(traced, builder, out_spec, (graph, stats)),
                        self.name, fallback)

    # -- symbolic dimensions (graphc/symbolic.py) ----------------------------------------------
    def _generic_compiled(self, template, builder, out_spec, leaves):
        """The Compiled of ``template`` itself, which serves every size of its symbols (>= 2,
        where the template holds: the caller instantiated it at this call's sizes), or None
        where the passes or the backend cannot compile it for every size: then each size
        compiles its own graph, as before. Tried once per template; a failure is silent (a
        debug log), since the per-size path computes the same thing."""
        arguments = [_as_argument(leaf) for leaf in leaves if is_dynamic(leaf)]
        found = self._generic.get(id(template))
        if found is None or found[0] is not template:
            compiled = None
            try:
                # passes and backend raise on what they cannot do for every size (a .size of a
                # symbolic type, a shape comparison, a Numba error): never a PassWarning here
                graph, stats = manager.run(template, self.passes, errors="raise")
                executable = self.backend.compile(graph, {**self.options, "passes": self.passes})
                compiled = Compiled(graph, executable, out_spec, stats, builder, self.check_finite)
                compiled.prepare(arguments)  # Numba compiles here, for the argument types
            except Exception as exc:  # (any failure: the per-size path is always there)
                log.debug("%s: no code for every size of its symbolic dimensions (%s: %s); compiling "
                          "each size", self.name, type(exc).__name__, exc)
                compiled = None
            self._generic[id(template)] = (template, compiled)
            if len(self._generic) > MAX_SIGNATURES:
                del self._generic[next(iter(self._generic))]
        compiled = self._generic[id(template)][1]
        if compiled is not None:
            symbolic.bind(template, [np.shape(a) for a in arguments])  # ShapeError naming the dim
        return compiled

    def _dynamic_arguments(self, args, kwargs):
        """``inspect.BoundArguments`` of a call, for reading and replacing the dynamic arguments."""
        bound = self._dynamic_signature.bind(*args, **kwargs)
        for name, axes in self.dynamic.items():
            value = bound.arguments.get(name)
            if not isinstance(value, np.ndarray) or any(axis >= value.ndim for axis in axes):
                raise ShapeError(f"{self.name}: dynamic={{{name!r}: ...}} marks dimension(s) "
                                 f"{sorted(axes)} of {name!r}, but the call passes "
                                 f"{_describe(value)}")
        return bound

    def _symbol_sizes(self, args, kwargs) -> dict:
        """Each symbol's size in this call; ShapeError where two arguments disagree."""
        bound, sizes = self._dynamic_arguments(args, kwargs), {}
        for name, axes in self.dynamic.items():
            shape = bound.arguments[name].shape
            for axis, symbol in axes.items():
                if sizes.setdefault(symbol, shape[axis]) != shape[axis]:
                    raise ShapeError(f"{self.name}: dimension {axis} of {name!r} is {symbol}, which is "
                                     f"{sizes[symbol]} in an earlier argument but {shape[axis]} here")
        return sizes

    def _at_size(self, args, kwargs, size):
        """The call's arguments with every dynamic dimension set to ``size`` (zero-strided
        stand-ins: tracing reads only shapes and dtypes)."""
        bound = self._dynamic_arguments(args, kwargs)
        for name, axes in self.dynamic.items():
            a = bound.arguments[name]
            shape = tuple(size if axis in axes else n for axis, n in enumerate(a.shape))
            bound.arguments[name] = np.broadcast_to(np.zeros((), a.dtype), shape)
        return bound.args, bound.kwargs

    @staticmethod
    def _template_holds(template, t_spec, builder, out_spec, sizes) -> bool:
        """Whether the function traced at ``sizes`` (``builder``) is ``template`` there: same graph
        (up to identities the tracer leaves out) and same Python outputs."""
        (symbol, n), = sizes.items()
        try:
            symbolic.check_sizes(template, lambda _: builder.graph, symbol, sizes=(n,))
            return bool(t_spec == out_spec)
        except (ShapeError, symbolic.NotGeneric):
            return False
        except Exception:  # noqa: BLE001  (static outputs that do not compare)
            return False

    def _template(self, args, kwargs, paths):
        """(template, builder, out_spec) of this call's symbolic signature: traced at the two
        probe sizes and generalized once, then reused while the trace's guards hold."""
        small = self._at_size(args, kwargs, symbolic.PROBES[0])
        leaves, treedef = pytree.flatten(small)
        key = (treedef, tuple(_leaf_key(leaf) for leaf in leaves))
        entries = self._templates.setdefault(key, [])
        for entry in entries:
            if all(check() == value for check, value, _ in entry[1].guards):
                return entry
        large = self._at_size(args, kwargs, symbolic.PROBES[1])
        try:
            with symbolic.probing(symbolic.PROBES):
                builder, out_spec = trace_into_graph(self._call_python, *small, is_dynamic, self.name, paths)
                other, other_spec = trace_into_graph(self._call_python, *large, is_dynamic, self.name, paths)
        except (ShapeError, ValueError, IndexError) as exc:
            if isinstance(exc, symbolic.NotGeneric):
                raise
            marked = ", ".join(repr(name) for name in self.dynamic)
            raise symbolic.NotGeneric(
                f"{self.name}: traced with its symbolic dimension at the probe sizes {symbolic.PROBES[0]} and "
                f"{symbolic.PROBES[1]} (dynamic= marks {marked}), it raises {type(exc).__name__}: {exc}. "
                f"Is every argument that shares the batch dimension marked dynamic?") from None
        try:
            same_outputs = bool(out_spec == other_spec)
        except Exception:  # (static outputs that do not compare)
            same_outputs = False
        if not same_outputs:
            raise symbolic.NotGeneric(f"{self.name} returns Python values (not arrays) that depend on "
                                      f"the batch size, which is symbolic here (dynamic=...)")
        (symbol,) = {s for axes in self.dynamic.values() for s in axes.values()}
        template = symbolic.generalize(builder.graph, other.graph, symbol)
        entries.insert(0, (template, builder, out_spec))
        del entries[MAX_VARIANTS:]
        return entries[0]

    def template(self, *args, **kwargs):
        """The symbolic graph (before passes) for these example arguments: the function traced
        for every size of the dimensions marked ``dynamic``."""
        if not self.dynamic:
            raise ValueError(f"{self.name} has no symbolic dimensions: trace it with dynamic=...")
        leaves = pytree.flatten((args, kwargs))[0]
        return self._template(args, kwargs, self._check_arguments(args, kwargs, leaves))[0]

    def _remember(self, key, compiled, paths, failed_guard=None, compiled_now=True):
        """Keep at most MAX_SIGNATURES signatures (the oldest go first) and MAX_VARIANTS variants of
        each, and warn once when the function keeps being traced again, naming what changes.
        (``compiled_now=False``: a Compiled that serves every size of a symbolic dimension, kept
        for one more size: no compile, no warning.)"""
        variants = self._cache.setdefault(key, [])
        variants.insert(0, compiled)
        self._compiles += compiled_now
        dropped = variants[MAX_VARIANTS:]  # guarded Python values that keep changing
        del variants[MAX_VARIANTS:]
        while len(self._cache) > MAX_SIGNATURES:
            dropped += self._cache.pop(next(iter(self._cache)))
        if dropped:  # (a Compiled serving every size leaves the fast path for all of them)
            for fast_key, entries in list(self._fast.items()):
                entries[:] = [c for c in entries if c not in dropped]
                if not entries:
                    del self._fast[fast_key]
        if compiled_now and self._compiles == RETRACE_WARNING and not self._warned:
            self._warned = True
            shapes = [[leaf[0] if type(leaf) is tuple and len(leaf) == 2 and type(leaf[0]) is tuple else None
                       for leaf in k[1]] for k in self._cache if k[0] == key[0]]
            changing = [p for i, p in enumerate(paths) if len({s[i] for s in shapes if i < len(s)}) > 1]
            if changing:
                which = (f"argument {changing[0]!r} has had "
                         f"{len({s[paths.index(changing[0])] for s in shapes})} different shapes")
            elif failed_guard:
                which = f"the Python value it depends on keeps changing ({failed_guard})"
            else:
                which = "its arguments' dtypes or static values keep changing"
            hint = ("use fixed shapes (pad the last batch, or DataLoader(drop_last=True)) to compile once"
                    if changing else "pass values that change between calls as arguments (or keep them in "
                    "a gc State), so they are data rather than part of the graph")
            warnings.warn(f"{self.name} has been traced and compiled {RETRACE_WARNING} times: {which}. Each "
                          f"change compiles again (at most {MAX_SIGNATURES} signatures are kept); {hint}",
                          RetraceWarning, stacklevel=5)  # (the user's call: _compile, _call_general, __call__)

    def _check_arguments(self, args, kwargs, leaves):
        """Clear TypeErrors naming the parameter, before anything is traced."""
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)  # wrong arity -> TypeError naming it
            except TypeError as exc:
                raise TypeError(f"{self.name}{self._signature}: {exc}") from None
            # paths in the order pytree.flatten((args, kwargs)) gives the leaves
            params = [p for p in self._signature.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            star = next((p.name for p in self._signature.parameters.values() if p.kind == p.VAR_POSITIONAL),
                        "args")
            paths = []
            for i, value in enumerate(args):
                name = params[i].name if i < len(params) else f"{star}[{i - len(params)}]"
                paths += pytree.leaf_paths(value, name)
            for name, value in kwargs.items():
                paths += pytree.leaf_paths(value, name)
        else:
            paths = [f"argument {i}" for i in range(len(leaves))]
        self._check_leaves(paths, leaves)
        return paths

    def _check_leaves(self, paths, leaves):
        for path, leaf in zip(paths, leaves):
            if isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.name not in DTYPES:
                kind = "an array" if isinstance(leaf, np.ndarray) else "a scalar"
                raise TypeError(f"{self.name}: argument {path!r} is {kind} of dtype {leaf.dtype}, which graphc "
                                f"cannot compile; use one of {', '.join(DTYPES)} (e.g. x.astype(np.float32))")
            if isinstance(leaf, np.generic) and not isinstance(leaf, _SCALAR_TYPES):
                raise TypeError(f"{self.name}: argument {path!r} is a {type(leaf).__name__} scalar, "
                                f"which graphc cannot compile")
            if isinstance(leaf, complex):
                raise TypeError(f"{self.name}: argument {path!r} is complex; graphc supports real numbers only")
            if isinstance(leaf, int) and not isinstance(leaf, bool) and not -2**63 <= leaf < 2**63:
                raise TypeError(f"{self.name}: argument {path!r} = {leaf} does not fit in int64")
            if isinstance(leaf, np.ndarray) and not _honourable(type(leaf)):
                raise _subclass_error(self.name, path, leaf)
            if on_gpu(leaf):
                if self.device != "cuda":
                    raise DeviceError(f"{self.name}: argument {path!r} is a GPU array ({type(leaf).__name__}), but "
                                      f"this function runs on device {self.device!r}; copy it to the host "
                                      f"(cupy.asnumpy(x)) or trace with device='cuda'")
                if np.dtype(leaf.dtype).name not in DTYPES:
                    raise TypeError(f"{self.name}: argument {path!r} is a GPU array of dtype {leaf.dtype}, which "
                                    f"graphc cannot compile; use one of {', '.join(DTYPES)}")

    # -- inspection ---------------------------------------------------------------------
    def _latest(self, settle: bool = True) -> Compiled:
        """The latest signature's Compiled; ``settle``: after waiting for its background compile
        (what it shows, graph and source, is the compiled code's)."""
        if self._last is None:
            raise RuntimeError(f"{self.name} has not been traced yet: call it once, or trace it "
                               f"eagerly with gc.trace({self.name}, *example_args)")
        latest = self._last
        if settle:
            latest.switch(wait=True)
            while latest.upgraded is not None:
                latest = latest.upgraded
        return latest

    def _latest_key(self) -> tuple:
        """The signature ``(treedef, leaf keys)`` of the latest compiled graph."""
        latest = self._latest(settle=False)
        for key, variants in self._cache.items():
            if latest in variants:
                return key
        raise RuntimeError(f"{self.name}: its latest graph is no longer kept (more than {MAX_SIGNATURES} "
                           f"signatures since): call it again")

    def _latest_arguments(self):
        """``(args, kwargs)`` standing in for the latest signature's, to trace it again (gc.save,
        gc.onnx.export): zero-strided arrays of its shapes (nothing allocated), numbers, and the
        static values themselves (as ``Static``)."""
        treedef, leaf_keys = self._latest_key()
        leaves = []
        for leaf in leaf_keys:
            if isinstance(leaf, tuple) and len(leaf) == 2 and isinstance(leaf[0], tuple):
                leaves.append(np.broadcast_to(np.zeros((), leaf[1]), leaf[0]))
            elif leaf in ("float", "int"):
                leaves.append(0.0 if leaf == "float" else 0)
            else:
                leaves.append(leaf[2])
        return pytree.unflatten(treedef, leaves)

    @property
    def graph(self):
        """The optimized graph of the latest signature."""
        return self._latest().graph

    @property
    def source(self) -> str | None:
        """The generated source of the latest signature (None on ``device="numpy"``, which
        generates none)."""
        return self._latest().compiled.source

    @property
    def stats(self):
        """Per-pass statistics (nodes before/after, seconds) of the latest signature."""
        return self._latest().pass_stats

    @property
    def interpreted_calls(self) -> int:
        """Calls the NumPy interpreter ran while a background compile was not ready
        (``compile="background"``), or ran for good (``compile="never"``)."""
        return sum(c.interpreted_calls for c in self._variants())

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Wait for this function's background compiles and switch to their code; True when
        every signature runs compiled code (False after ``timeout`` seconds, or where a compile
        failed or ``compile="never"``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for compiled in self._variants():
            while (pending := compiled.pending) is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not pending.job.wait(left):
                    return False
                compiled.switch()
        if not getattr(self.backend, "background", False):
            return True  # (device="numpy": nothing to compile)
        return all(c.upgraded is not None or not c.interpreter_tier for c in self._variants())

    def _variants(self) -> list:
        every = list(self._cache.values())  # (one C-level copy: another thread may add a signature)
        return list({id(c): c for variants in every for c in list(variants)}.values())

    @property
    def signatures(self) -> int:
        """How many graphs have been compiled (signatures times guarded variants; a graph compiled
        once for every size of a symbolic dimension counts once)."""
        return len({id(c.upgraded or c) for variants in self._cache.values() for c in variants})

    def lower(self, *args, **kwargs) -> "TracedFunction":
        """Trace and compile for these example arguments now; returns self."""
        if self.static_argnums:
            args = tuple(Static(a) if i in self.static_argnums else a for i, a in enumerate(args))
        leaves, treedef = pytree.flatten((args, kwargs))
        key = (treedef, tuple(_leaf_key(leaf) for leaf in leaves))
        compiled = next((c for c in self._cache.get(key, ()) if not c.needs_validation or c.valid()), None)
        if compiled is not None:
            compiled.switch(wait=True)  # (compiling in the background: the compiled code, now)
        self._last = compiled or self._compile(key, args, kwargs, leaves, mode="eager")
        return self

    def __repr__(self):
        return f"<graphc.TracedFunction {self.name}: {self.signatures} compiled graph(s)>"


def _describe(value) -> str:
    return f"an array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__


def _forward_signature(fn, signature):
    """``signature``, or where it takes only ``*args, **kwargs`` and ``fn`` has a ``forward`` (an
    nn.Module), the forward's."""
    forward = getattr(fn, "forward", None)
    if signature is None or not callable(forward) or not all(
            p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
        return signature
    try:
        return inspect.signature(forward)
    except (TypeError, ValueError):
        return signature


def _check_dynamic(dynamic, signature, name) -> dict:
    """``dynamic`` as {parameter name: {axis: symbol}}; TypeError/ValueError naming what is wrong."""
    if not dynamic:
        return {}
    if not isinstance(dynamic, dict):
        raise TypeError(f"{name}: dynamic must be a dict like {{'x': {{0: 'B'}}}}, got {type(dynamic).__name__}")
    if signature is None:
        raise TypeError(f"{name}: dynamic=... needs a function with an inspectable signature")
    out = {}
    for param, axes in dynamic.items():
        if param not in signature.parameters:
            raise ValueError(f"{name}: dynamic names {param!r}, which is not a parameter of "
                             f"{name}{signature}")
        if isinstance(axes, int) and not isinstance(axes, bool):
            axes = {axes: "B"}
        if not isinstance(axes, dict) or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0
                                                 for a in axes):
            raise TypeError(f"{name}: dynamic[{param!r}] must be {{axis: symbol}} with axes >= 0, "
                            f"like {{0: 'B'}}; got {axes!r}")
        for symbol in axes.values():
            if not symbolic.is_symbol(symbol):
                raise ValueError(f"{name}: {symbol!r} cannot name a dimension; use a name like 'B'")
        out[param] = dict(axes)
    if len({s for axes in out.values() for s in axes.values()}) > 1:
        raise ValueError(f"{name}: one symbolic dimension per function for now (got "
                         f"{sorted({s for axes in out.values() for s in axes.values()})})")
    return out


def trace(fn=None, *example_args, static_argnums=(), passes="O2", device=backend.DEFAULT_DEVICE,
          check_finite=False, math=None, dynamic=None, compile=None, to_host=None, **example_kwargs):
    """Compile ``fn`` with graphc.

    * ``@gc.trace`` or ``gc.trace(fn)``: traces on the first call per input signature.
    * ``gc.trace(fn, *example_args)``: traces and compiles now (like ``torch.jit.trace``).
    * ``@gc.trace(static_argnums=(1,), passes="O1")``: with options.

    Options: ``static_argnums`` (positions of arguments that are compile-time
    constants), ``passes`` ("O0", "O1" or "O2"), ``device`` ("cpu": compiled with Numba;
    "numpy": run by the NumPy interpreter, nothing compiled, for debugging and as the
    oracle; "cuda": kernels on an NVIDIA GPU, see the README's CUDA section, with
    ``to_host=True`` for NumPy results instead of device arrays), ``check_finite`` (raise ``NonFiniteError`` instead of writing NaN/inf into
    State) and, on the cpu device, ``math`` ("fast", the default: vectorizable
    exp/log/tanh/sigmoid/sin/cos/pow in fused loops, a few ulp from NumPy; "libm": the
    plain scalar calls).

    ``dynamic={"x": {0: "B"}}`` makes dimension 0 of argument ``x`` symbolic: the function
    is traced once for every size ``B`` (graphc/symbolic.py), and a size it has not seen
    compiles that graph without tracing again. ``{"x": 0}`` is short for ``{"x": {0: "B"}}``.
    Code that depends on the size (``x / len(x)``, a branch on ``x.shape[0]``) raises
    ``graphc.symbolic.NotGeneric`` naming the line; ``np.mean`` and friends are generic.

    ``compile`` (the cpu device): ``"background"`` (the default, or ``$GRAPHC_COMPILE``): a new
    signature runs in the NumPy interpreter at once while a worker process compiles it, and
    calls switch to the compiled code when it is ready (``f.wait_compiled()`` waits for it;
    ``f.interpreted_calls`` counts the calls the interpreter ran); a signature compiled before
    loads from the disk cache at once. ``"eager"``: the first call compiles, then runs.
    ``"never"``: the interpreter only. Tracing with example arguments compiles eagerly.
    """
    options = dict(static_argnums=static_argnums, passes=passes, device=device, check_finite=check_finite,
                   math=math, dynamic=dynamic, compile=compile, to_host=to_host)
    if fn is None:
        return functools.partial(trace, **options)
    traced = TracedFunction(fn, **options)
    if example_args or example_kwargs:
        traced.lower(*example_args, **example_kwargs)
    return traced
