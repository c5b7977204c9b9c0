"""``gc.save`` / ``gc.load``: a compiled function, module or training step in one file.

The file is an uncompressed zip holding exactly ``graphc.json`` (the graph as
structured JSON, its signature and the role of every input) and
``weights.safetensors`` (every array: constants and state). The layout is
docs/format.md. Nothing in a file is ever executed, unpickled or imported:
loading validates the zip, the JSON, every op and attribute, every array's
declared size (against the file's length, before anything is read or
allocated) and the graph (``registry.verify``), and any failure is an
``ExportError`` saying what was wrong. The loaded graph is compiled with
graphc's own code generator, with the backend and options it was saved with.

What is saved is the traced graph before the passes, generic in the batch size
by default: the leading dimension of the batched arguments is the symbol ``B``
(graphc/symbolic.py), and ``gc.save`` refuses, naming the op and line, a function
that depends on it (``dynamic=False`` saves one fixed size). Loading binds ``B``
from the arguments, instantiates the graph at that size and runs the saved pass
pipeline and backend: at the saved example's size that is the very graph the
runtime compiled (``gc.save`` checks it), so the loaded function runs the same
generated code and gives bit-identical results on the same machine.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import re
import string
import struct
import sys
import types
import logging
import zipfile
from collections import OrderedDict

import numpy as np
import safetensors.numpy

from graphc import backend, pytree, symbolic
from graphc.context import for_every_size
from graphc.fileio import write_atomically
from graphc.errors import ExportError, NotGeneric, ShapeError, VerifyError
from graphc.ir import DTYPES, Const, Graph, Sym, TensorType, is_symbol
from graphc.nn.functional import _label_check
from graphc.nn.module import Module
from graphc.nn.parameter import Parameter
from graphc.ops import registry
from graphc.optim.optimizer import Optimizer
from graphc.passes import manager
from graphc.runtime import Compiled, Static, TracedFunction, _as_argument, _honourable, _typed_key, is_dynamic
from graphc.state import State
from graphc.trace import DYNAMIC, _check_fits, trace_into_graph

_log = logging.getLogger("graphc.export")
FORMAT = "graphc-export"
FORMAT_VERSION = (1, 0)  # major.minor: a newer major is refused, any minor of our major loads
OPSET = 2  # version of the op set (names, attributes, semantics) the graphs are written in (2: matmul_acc)
JSON_MEMBER = "graphc.json"
WEIGHTS_MEMBER = "weights.safetensors"
MEMBERS = (JSON_MEMBER, WEIGHTS_MEMBER)
MAX_JSON_BYTES = 256 << 20
MAX_REGION_DEPTH = 16

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_GRAPH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SAFETENSORS_DTYPES = {"F32": "float32", "F64": "float64", "I32": "int32", "I64": "int64", "BOOL": "bool"}
_PYTHON_SCALARS = {"float": float, "int": int}


# ---------------------------------------------------------------------------------------------
# attributes: which an op takes, and what type each must have

def _ints(v):
    return type(v) is tuple and all(type(i) is int for i in v)


def _size(i) -> bool:
    """An int >= 0, or a symbolic size (decoded from ``{"$sym": name}``)."""
    return (type(i) is int and i >= 0) or (type(i) is Sym and is_symbol(i))


def _dims(v):
    return type(v) is tuple and all(_size(i) for i in v)


def _slices(v):
    return type(v) is tuple and all(type(s) is tuple and len(s) == 3 and all(type(i) is int or _size(i) for i in s)
                                    for s in v)


def _format_string(v):
    """gc.print's format: plain fields only (``{}``, ``{0}``, ``{name}``, with a format spec),
    no attribute or index lookups."""
    if type(v) is not str:
        return False
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
    except ValueError:
        return False
    return all(f == "" or f.isdigit() or f.isidentifier() for f in fields)


ATTRIBUTE_TYPES = {
    "axes": ("a tuple of ints", _ints),
    "axis": ("an int", lambda v: type(v) is int),
    "keepdims": ("a bool", lambda v: type(v) is bool),
    "shape": ("a tuple of sizes (ints >= 0 or symbol names)", _dims),
    "perm": ("a tuple of ints", _ints),
    "indices": ("a tuple of ints", _ints),
    "slices": ("a tuple of (start, stop, step) int triples", _slices),
    "dtype": (f"one of the dtypes {', '.join(DTYPES)}", lambda v: type(v) is str and v in DTYPES),
    "value": ("a constant array", lambda v: isinstance(v, Const)),
    "transpose_a": ("a bool", lambda v: type(v) is bool),
    "transpose_b": ("a bool", lambda v: type(v) is bool),
    "reverse": ("a bool", lambda v: type(v) is bool),
    "full_matrices": ("a bool", lambda v: type(v) is bool),
    "rcond": ("a number or None", lambda v: v is None or type(v) in (int, float)),
    "shift": ("an int in [1, 63]", lambda v: type(v) is int and 1 <= v <= 63),
    "offset": ("a finite number", lambda v: type(v) in (int, float) and math.isfinite(v)),
    "minimum": ("an int", lambda v: type(v) is int),
    # loops (graphc/ops/control.py)
    "start": ("an int, or None for a scan", lambda v: v is None or type(v) is int),
    "stop": ("an int", lambda v: type(v) is int),
    "length": ("a size (an int >= 0 or a symbol name)", lambda v: _size(v)),
    "carries": ("an int >= 0", lambda v: type(v) is int and v >= 0),
    "xs": ("an int >= 0", lambda v: type(v) is int and v >= 0),
    "remat": ("a bool", lambda v: type(v) is bool),
    "fmt": ("a format string without attribute or index lookups", _format_string),
    "keys": ("a tuple of identifiers", lambda v: type(v) is tuple and all(type(k) is str and k.isidentifier()
                                                                           for k in v)),
}
# attributes an op's lowering reads that its shape rule does not name
_EXTRA_ATTRIBUTES = {"lshr": ("shift",)}


def op_attributes(name: str) -> tuple:
    """The attribute names op ``name`` takes: its shape rule's keyword parameters (after the
    operand types; ``regions`` is not an attribute) and those its lowering reads."""
    return tuple(_attribute_params(name)) + _EXTRA_ATTRIBUTES.get(name, ())


def required_attributes(name: str) -> tuple:
    """The attributes every node of op ``name`` must have: those its shape rule has no default
    for, and those its lowering reads."""
    return tuple(p for p, default in _attribute_params(name).items() if default is inspect.Parameter.empty) \
        + _EXTRA_ATTRIBUTES.get(name, ())


def _attribute_params(name: str) -> dict:
    params = list(inspect.signature(registry.get(name).infer).parameters.values())[1:]
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name != "regions"}


# ---------------------------------------------------------------------------------------------
# saving

def save(obj, path, *example_args, dynamic: bool = True):
    """Save a traced function, an ``nn.Module``, any callable or a compiled training step to ``path``.

    * ``gc.save(gc.trace(fn, a, b), "fn.gcx")``: a TracedFunction already traced (or called);
      with example arguments, the signature they select (traced now if needed).
    * ``gc.save(model, "model.gcx", x)``: an ``nn.Module`` in the mode it is in (call
      ``model.eval()`` first for inference), its forward traced with the examples.
    * ``gc.save(fn, "fn.gcx", a, b)``: any callable, traced with the examples.
    * ``gc.save(step, "step.gcx")``: a compiled training step with its parameters and
      optimizer state (their current values); ``gc.save(gc.load(...), path)`` writes a loaded
      function back with its current state.

    ``dynamic=True`` (the default) saves the graph for every batch size: the leading
    dimension of the array arguments that share the first one's leading size is the
    symbol ``B``. A function that depends on that size (``x / len(x)``) is refused with an
    ``ExportError`` naming the op and line; ``dynamic=False`` saves the example's sizes.

    The file is written to a temporary file in the same directory and renamed into place,
    so ``path`` is never left half-written. Raises ``ExportError`` when the object cannot
    be saved.
    """
    if isinstance(obj, LoadedFunction):
        if example_args:
            raise ExportError("gc.save of a loaded function takes no example arguments: its signature is fixed")
        entry, arrays = obj._entry()
    else:
        traced, owners = _traced(obj, example_args)
        entry, arrays = _entry_of(traced, owners, dynamic)
    doc = {"format": FORMAT, "format_version": f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}",
           "graphc_version": getattr(sys.modules.get("graphc"), "__version__", "unknown"),
           "opset": OPSET, "entries": {"main": entry}}
    _write(path, doc, arrays)


def _traced(obj, example_args):
    """(a TracedFunction compiled for the signature to save, the objects owning its State)."""
    if isinstance(obj, TracedFunction):
        if example_args:
            obj.lower(*example_args)
        if obj._last is None:
            raise ExportError(f"gc.save: {obj.name} has not been traced yet: call it once, or pass "
                              f"example arguments (gc.save(f, path, *example_args))")
        return obj, _owners(obj.fn)
    if not callable(obj):
        raise ExportError(f"gc.save needs a traced function, an nn.Module or a callable, got "
                          f"{type(obj).__name__}")
    if not example_args:
        raise ExportError(f"gc.save of a {type(obj).__name__} needs example arguments to trace it with: "
                          f"gc.save(obj, path, *example_args)")
    name = type(obj).__name__ if isinstance(obj, Module) else getattr(obj, "__name__", "graph")
    traced = TracedFunction(obj, name=_sanitized(name))
    if isinstance(obj, Module):  # arguments named as forward's parameters (x), not __call__'s (args[0])
        try:
            traced._signature = inspect.signature(obj.forward)
        except (TypeError, ValueError):
            pass
    traced.lower(*example_args)
    return traced, _owners(obj)


def _sanitized(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(name))[:128] or "graph"
    return name if not name[0].isdigit() else "_" + name[:127]


def _owners(fn) -> list:
    """Modules and optimizers the function can reach: itself, a bound method's object, the
    values of its closure and the globals its code names, and (a few levels down) the items
    and attributes of what those hold. They give State its PyTorch names."""
    found, seen, todo = [], set(), [(fn, 0)]
    while todo:
        o, depth = todo.pop()
        if id(o) in seen or depth > 4 or isinstance(o, (type, types.ModuleType, np.ndarray, str, bytes)):
            continue
        seen.add(id(o))
        if isinstance(o, (Module, Optimizer)):
            found.append(o)
            continue
        children = []
        if isinstance(o, TracedFunction):
            children = [o.fn]
        elif isinstance(o, types.MethodType):
            children = [o.__self__, o.__func__]
        elif isinstance(o, types.FunctionType):
            children = [c.cell_contents for c in (o.__closure__ or ()) if _filled(c)]
            children += [o.__globals__[n] for n in _code_names(o.__code__) if n in o.__globals__]
        elif isinstance(o, (list, tuple, set, frozenset)) and len(o) <= 64:
            children = list(o)
        elif isinstance(o, dict) and len(o) <= 64:
            children = list(o.values())
        elif isinstance(getattr(o, "__dict__", None), dict) and len(o.__dict__) <= 64:
            children = list(o.__dict__.values())
        todo += [(c, depth + 1) for c in children]
    return found


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _code_names(code) -> set:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _code_names(c)
    return names


def _state_roles(owners) -> dict:
    """id(State) -> its record's naming fields (kind, key...), from the owning modules and optimizers."""
    roles, param_keys = {}, {}
    for o in owners:
        if isinstance(o, Module):
            for name, p in o.named_parameters():
                roles.setdefault(id(p), {"kind": "parameter", "key": name})
                param_keys.setdefault(id(p), name)
                if p._grad_state is not None:
                    roles.setdefault(id(p._grad_state), {"kind": "gradient", "key": name})
            for name, b in o.named_buffers():
                roles.setdefault(id(b), {"kind": "buffer", "key": name})
            for order, st in enumerate(o.state_dict(keep_vars=True).values()):  # PyTorch's key order
                roles.get(id(st), {}).setdefault("order", order)
    optimizers = []
    for o in owners:
        if not isinstance(o, Optimizer):
            continue
        k = len(optimizers)
        index, groups = {}, []
        for g, group in enumerate(o.param_groups):
            params = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                params.append(index[id(p)])
                for buf, st in o.state.get(p, {}).items():
                    roles.setdefault(id(st), {"kind": "optimizer", "key": buf, "optimizer": k,
                                              "param": index[id(p)]})
            for option, st in group.states.items():
                for i, s in enumerate(st if isinstance(st, tuple) else (st,)):
                    roles.setdefault(id(s), {"kind": "hyperparameter", "key": option, "optimizer": k, "group": g,
                                             "index": i if isinstance(st, tuple) else None})
            options = {key: _json_option(v) for key, v in group.items() if key != "params"}
            groups.append({"params": params, "param_names": [param_keys.get(id(p)) or p.name
                                                             for p in group["params"]], "options": options})
        optimizers.append({"type": type(o).__name__, "param_groups": groups})
    return roles, optimizers


def _json_option(v):
    if isinstance(v, tuple):
        return {"$tuple": [_json_option(x) for x in v]}
    if v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
        return v
    if isinstance(v, float):
        return _encode_attr(v, {}, "")
    return repr(v)  # (an option graphc does not know: kept as text, for reading only)


def _signature_of(traced: TracedFunction):
    """The parameters a user names: a module's forward's (its __call__ takes ``*args``)."""
    if isinstance(traced.fn, Module):
        try:
            return inspect.signature(traced.fn.forward)
        except (TypeError, ValueError):
            return None
    return traced._signature


def _batched(signature, args, kwargs) -> list:
    """Candidate batches: per leading size of the top-level array arguments (the first one's
    first), the names of the arguments of that leading size."""
    if signature is None:
        return []
    bound = signature.bind(*args, **kwargs).arguments
    arrays = {k: v for k, v in bound.items() if isinstance(v, np.ndarray) and v.ndim}
    leads = dict.fromkeys(v.shape[0] for v in arrays.values())
    return [[k for k, v in arrays.items() if v.shape[0] == lead] for lead in leads]


def _saved_graph(traced: TracedFunction, compiled, dynamic: bool):
    """(the graph to save: traced, before the passes, generic in ``B`` when ``dynamic``;
    {symbol: {"min": smallest size, "example": size}}). Checked: at the example's size it
    becomes, after the passes, the very graph the runtime compiled."""
    args, kwargs = traced._latest_arguments()
    signature = _signature_of(traced)
    candidates = _batched(signature, args, kwargs) if dynamic else []
    symbols, minimum = {}, 1
    if candidates:
        graph, batched, size_one = _generic_graph(traced, signature, args, kwargs, candidates)
        minimum = 1 if size_one is None else 2
        symbols = {"B": signature.bind(*args, **kwargs).arguments[batched[0]].shape[0]}
        if symbols["B"] < minimum:  # (the file's example must be a size it stands for)
            raise ExportError(f"gc.save: {traced.name} was traced with the example's batch size "
                              f"{symbols['B']}, but its graph for every batch size holds for batches of at "
                              f"least {minimum}" + (" (its code treats a batch of 1 apart)" if minimum == 2
                                                    else "") + ": save it with an example batch of at least "
                              f"{minimum}, or with dynamic=False")
        instance = _instantiated(graph, symbols, traced.name)
        if not symbolic.symbols(compiled.graph):  # (compiled for the example's sizes alone)
            instance = _traced_as_called(traced, args, kwargs)
    else:
        graph = instance = _traced_as_called(traced, args, kwargs)
    optimized, _ = manager.run(instance, traced.passes)
    if _program(optimized) != _program(_compiled_at_example(traced, compiled, args, kwargs)):
        raise ExportError(f"gc.save: tracing {traced.name} again gives another graph than the compiled one "
                          f"(its Python code read something that changed since the call?); call it again "
                          f"and save" + ("" if not symbols else ", or save with dynamic=False"))
    return graph, {s: {"min": minimum, "example": n} for s, n in symbols.items()}


def _traced_as_called(traced: TracedFunction, args, kwargs) -> Graph:
    """``traced``'s graph at these arguments, traced as its call traced it: a function with
    symbolic dimensions (dynamic=) traces each size as one compared with its graph for every
    size (graphc.context.for_every_size), which can make other choices (a scan gradient's
    per-step products)."""
    with for_every_size(bool(traced.dynamic)):
        builder, _ = trace_into_graph(traced._call_python, args, kwargs, is_dynamic, traced.name,
                                      traced._check_arguments(args, kwargs, pytree.flatten((args, kwargs))[0]))
    return builder.graph


def _compiled_at_example(traced: TracedFunction, compiled, args, kwargs) -> Graph:
    """The graph ``compiled`` runs at the example's sizes, after the passes. A ``gc.trace(fn,
    dynamic=...)`` call may run the symbolic graph compiled for every size: that graph (the
    trace's own template and symbol names) at the example's sizes. The NumPy interpreter's tier
    (``compile="never"``, a background compile not done or failed) runs the traced graph: that
    graph after the passes."""
    if compiled.interpreter_tier:
        return manager.run(compiled.graph, traced.passes)[0]
    if not symbolic.symbols(compiled.graph):
        return compiled.graph
    template = next((t for t, c in traced._generic.values() if c is compiled), None)
    if template is None:
        raise ExportError(f"gc.save: cannot find the graph {traced.name} compiled for every batch size")
    at_example = symbolic.instantiate(template, traced._symbol_sizes(args, kwargs))
    return manager.run(at_example, traced.passes)[0]


def _generic_graph(traced: TracedFunction, signature, args, kwargs, candidates):
    """(the template of ``traced`` with dimension 0 of some arguments the symbol ``B``, the names
    of those arguments, why a batch of 1 differs or None): symbolic.batch_template over
    the ``candidates`` (lists of argument names); ExportError naming why when none is generic."""
    generic = TracedFunction(traced.fn, passes=traced.passes, device=traced.device, name=traced.name,
                             math=traced.math, to_host=traced.to_host)
    generic._signature = generic._dynamic_signature = signature
    paths = generic._check_arguments(args, kwargs, pytree.flatten((args, kwargs))[0])

    def trace_at(names, n):
        generic.dynamic = {name: {0: "B"} for name in names}
        builder, _ = trace_into_graph(generic._call_python, *generic._at_size(args, kwargs, n), is_dynamic,
                                      traced.name, paths)
        return builder.graph
    try:
        return symbolic.batch_template(trace_at, candidates, "B")
    except NotGeneric as exc:
        raise ExportError(f"gc.save: {traced.name} is not generic in its batch size (dimension 0 of "
                          f"{', '.join(candidates[0])}), so it cannot be saved for every batch: {exc}. "
                          f"Save one fixed size with gc.save(..., dynamic=False)") from None


def _program(graph: Graph) -> str:
    """What a graph computes: its text without source lines and input names (a module's
    parameters are named ``weight`` or ``0.weight`` depending on what asked for them first)."""
    anonymous = graph.clone()
    anonymous.input_names = [None] * len(anonymous.inputs)
    return re.sub(r"   # [^\n]*", "", str(anonymous))


def _instantiated(graph, symbols, name):
    try:
        return symbolic.instantiate(graph, symbols)
    except ShapeError as exc:
        raise ExportError(f"gc.save: {name}'s graph for every batch size does not hold at the example's "
                          f"size ({exc}); save it with dynamic=False") from None


def _entry_of(traced: TracedFunction, owners, dynamic: bool = True):
    compiled = traced._latest()
    treedef, leaf_keys = traced._latest_key()
    graph, symbols = _saved_graph(traced, compiled, dynamic)
    arrays = {}
    n_args = graph.input_roles.count("arg")
    paths = _forward_paths(traced.fn, treedef) if isinstance(traced.fn, Module) else None
    leaves, k = [], 0
    for i, leaf in enumerate(leaf_keys):
        path = paths[i] if paths else graph.input_names[k] if k < len(graph.input_names) else None
        if isinstance(leaf, tuple) and len(leaf) == 2 and isinstance(leaf[0], tuple):  # an array
            leaves.append({"kind": "array", "path": path, "dtype": np.dtype(leaf[1]).name,
                           "shape": _encode_type(graph.inputs[k].type)["shape"]})
            k += 1
        elif leaf in ("float", "int"):
            leaves.append({"kind": "scalar", "path": path, "python": leaf, "dtype": graph.inputs[k].type.dtype,
                           "shape": []})
            k += 1
        else:
            value = leaf[2].value if isinstance(leaf[2], Static) else leaf[2]
            if not (value is None or isinstance(value, (bool, int, str)) or isinstance(value, float)):
                raise ExportError(f"gc.save: {traced.name} takes a static argument of type "
                                  f"{type(value).__name__} ({value!r}), which a file cannot hold; "
                                  f"make it an array argument or a constant of the function")
            leaves.append({"kind": "static", "value": _json_option(value)})
    if k != n_args:
        raise ExportError(f"gc.save: {traced.name}'s graph has {n_args} argument inputs but its "
                          f"signature {k} arrays")
    out_tree, slots = compiled.out_spec
    outputs = []
    for slot in slots:
        if slot is DYNAMIC:
            outputs.append("*")
        elif slot is None or isinstance(slot, (bool, int, float, str)):
            outputs.append({"static": _json_option(slot)})
        else:
            raise ExportError(f"gc.save: {traced.name} returns a {type(slot).__name__} beside its arrays, "
                              f"which a file cannot hold")
    scalars = [None if t is None else "python" if t in (float, int, bool) else "numpy"
               for t in compiled.scalar_types[:compiled.n_user]]
    roles, optimizers = _state_roles(owners)
    states = list(compiled.state_in) + [st for st in compiled.state_out if st not in compiled.state_in]
    records = []
    for i, st in enumerate(states):
        record = _state_record(st, roles)
        if st in compiled.state_in:
            record["input"] = n_args + compiled.state_in.index(st)
            record["tensor"] = f"main.state.{i}"
            arrays[record["tensor"]] = np.array(st._data, order="C")
        else:
            record["input"] = None
        record["output"] = (compiled.n_user + compiled.state_out.index(st)) if st in compiled.state_out else None
        records.append(record)
    checks = [_check_spec(traced.name, i, check) for i, check in compiled.input_checks]
    entry = {
        "kind": "training_step" if any(r["kind"] in ("optimizer", "hyperparameter") for r in records)
        else "function",
        "name": graph.name if _GRAPH_NAME.fullmatch(graph.name) else _sanitized(graph.name),
        "device": traced.device,
        "options": {k: v for k, v in traced.options.items() if k not in backend.base.RUNTIME_OPTIONS},
        "passes": traced.passes, "check_finite": bool(traced.check_finite),
        "graph": _encode_graph(graph, arrays, "main.const"),
        "symbols": symbols,
        "signature": {"inputs": _encode_treedef(treedef, traced.name), "leaves": leaves,
                      "outputs": _encode_treedef(out_tree, traced.name), "slots": outputs, "scalars": scalars},
        "states": records, "optimizers": optimizers, "input_checks": checks,
    }
    entry["graph"]["name"] = entry["name"]
    return entry, arrays


def _forward_paths(module, treedef):
    """Argument paths of a module's call named after its forward's parameters (``x``, not the
    ``args[0]`` of ``Module.__call__(*args)``), or None."""
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    args, kwargs = pytree.unflatten(treedef, [None] * _count_leaves(treedef))
    if len(args) > len(params):
        return None
    paths = []
    for param, value in zip(params, args):
        paths += pytree.leaf_paths(value, param.name)
    for name, value in kwargs.items():
        paths += pytree.leaf_paths(value, name)
    return paths


def _state_record(st, roles) -> dict:
    role = roles.get(id(st))
    name = getattr(st, "name", None)
    name = name if isinstance(name, str) else None
    if role is None:
        if isinstance(st, Parameter):
            role = {"kind": "parameter", "key": name}
        elif name in ("generator.seed", "generator.counter"):
            role = {"kind": "rng", "key": name}
        elif type(st).__name__ == "CapturedArray":
            role = {"kind": "captured", "key": name}
        else:
            role = {"kind": "state", "key": name}
    return {"name": name, **role}


def _check_spec(name, i, check):
    """An input check of the trace (labels in range, a Python int that fits) as data."""
    spec = getattr(check, "spec", None)
    if spec is not None:
        return {"input": i, **spec}
    func = getattr(check, "func", None)
    if func is _check_fits and len(check.args) == 1:
        return {"input": i, "kind": "int_fits", "dtype": np.dtype(check.args[0].dtype).name}
    raise ExportError(f"gc.save: {name}'s trace checks input {i} with {check!r}, a check a file cannot hold")


def _encode_treedef(d, name):
    if d == pytree.LEAF:
        return "*"
    kind = d[0]
    if kind in ("tuple", "list"):
        return {kind: [_encode_treedef(c, name) for c in d[1]]}
    if kind == "dict":
        if not all(isinstance(k, str) for k in d[1]):
            raise ExportError(f"gc.save: {name} uses a dict with non-string keys {list(d[1])!r} in its "
                              f"arguments or results; a file holds string keys only")
        return {"dict": [[k, _encode_treedef(c, name)] for k, c in zip(d[1], d[2])]}
    raise ExportError(f"gc.save: {name} uses a {d[1].__name__} (a namedtuple) in its arguments or results; "
                      f"a file holds tuples, lists and dicts: use one of those")


def _encode_type(t: TensorType) -> dict:
    return {"dtype": t.dtype, "shape": [str(d) if isinstance(d, Sym) else d for d in t.shape]}


def _encode_graph(graph: Graph, arrays: dict, prefix: str) -> dict:
    names = {}
    for v in graph.inputs:
        names[v] = len(names)
    nodes = []
    for n, node in enumerate(graph.nodes):
        entry = {"op": node.op, "inputs": [names[v] for v in node.inputs],
                 "attrs": {k: _encode_attr(a, arrays, f"{prefix}.{n}.{k}") for k, a in sorted(node.attrs.items())},
                 "outputs": [_encode_type(v.type) for v in node.outputs]}
        if node.loc is not None:
            entry["loc"] = node.loc
        if node.regions:
            entry["regions"] = [_encode_graph(r, arrays, f"{prefix}.{n}.r{i}") for i, r in enumerate(node.regions)]
        nodes.append(entry)
        for v in node.outputs:
            names[v] = len(names)
    return {"name": graph.name,
            "inputs": [{**_encode_type(v.type), "name": name, "role": role}
                       for v, name, role in zip(graph.inputs, graph.input_names, graph.input_roles)],
            "nodes": nodes, "outputs": [names[v] for v in graph.outputs],
            "donations": [[j, k] for j, k in sorted(graph.donations.items())]}


def _encode_attr(a, arrays, key):
    if isinstance(a, Sym):  # a symbolic size (reshape(shape=(B, 64))): tagged, never a plain string
        return {"$sym": str(a)}
    if a is None or isinstance(a, (bool, str)) or type(a) is int:
        return a
    if type(a) is float:
        if math.isfinite(a):
            return a
        return {"$float": ("-" if math.copysign(1.0, a) < 0 else "") + ("nan" if math.isnan(a) else "inf")}
    if type(a) is tuple:
        return {"$tuple": [_encode_attr(x, arrays, f"{key}.{i}") for i, x in enumerate(a)]}
    if type(a) is list:
        return [_encode_attr(x, arrays, f"{key}.{i}") for i, x in enumerate(a)]
    if isinstance(a, Const):
        arrays[key] = np.array(a.array, order="C")
        return {"$tensor": key}
    raise ExportError(f"gc.save: attribute {key} is a {type(a).__name__} ({a!r}), which the format cannot hold")


def _write(path, doc, arrays):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ExportError(f"cannot save to {path}: the directory {directory} does not exist")
    text = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    weights = safetensors.numpy.save(arrays, metadata={"format": FORMAT})

    def write_zip(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in ((JSON_MEMBER, text), (WEIGHTS_MEMBER, weights)):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
    write_atomically(path, write_zip, durable=True)


# ---------------------------------------------------------------------------------------------
# loading: read and validate everything, then build

def load(path, entry: str | None = None, device: str | None = None) -> "LoadedFunction":
    """Load a file written by ``gc.save``: a callable with ``.graph``, ``.source`` and ``.state_dict()``.

    ``entry`` picks one of several graphs in a file (default: the only one, or ``"main"``);
    ``device`` compiles for another device than the saved one (``"numpy"``: interpret).
    Nothing from the file is executed; a file that is not valid raises ``ExportError``.
    """
    doc, tensors = read(path)
    entries = doc["entries"]
    if entry is None:
        entry = "main" if "main" in entries or len(entries) != 1 else next(iter(entries))
    if entry not in entries:
        raise ExportError(f"{path}: no entry {entry!r}; the file holds {', '.join(map(repr, entries))}")
    loaded = LoadedFunction(entries[entry], tensors, path, device)
    loaded.format_version, loaded.graphc_version = doc["format_version"], str(doc.get("graphc_version"))
    loaded.entry, loaded.entries = entry, list(entries)  # this entry's name, and every entry of the file
    return loaded


def read(path):
    """``(doc, arrays)`` of a model file after full validation: ``doc["entries"][name]`` hold
    decoded graphs (``"graph"``: a verified ``Graph``), ``arrays`` the named arrays."""
    data = _read_members(path)
    doc = _parse_json(data[JSON_MEMBER], path)
    expected = {}
    entries = _check_header(doc, path)
    decoded = {}
    for name, entry in entries.items():
        try:
            decoded[name] = _decode_entry(entry, expected, f"{path}: entry {name!r}")
        except RecursionError:
            raise ExportError(f"{path}: entry {name!r} nests too deeply") from None
    tensors = _read_weights(data[WEIGHTS_MEMBER], expected, path)
    for name, entry in decoded.items():
        _build_constants(entry["graph"], tensors)
        _verify(entry["graph"], entry["symbols"], f"{path}: entry {name!r}")
    return {**doc, "entries": decoded}, tensors


def _read_members(path) -> dict:
    """The two members' bytes, after checking the zip's structure and declared sizes."""
    try:
        size = os.stat(path).st_size
        f = open(path, "rb")
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise ExportError(f"{path} is not a graphc model file: not a readable zip archive ({exc}); "
                              f"a truncated or damaged file reads this way too") from None
        with zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            for name in names:
                if name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name) or ":" in name:
                    raise ExportError(f"{path}: member name {name!r} is an absolute path or leaves the "
                                      f"archive (path traversal); refused")
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ExportError(f"{path}: members {dupes} appear more than once")
            missing = [m for m in MEMBERS if m not in names]
            extra = [n for n in names if n not in MEMBERS]
            if missing or extra:
                raise ExportError(f"{path}: a graphc model file holds exactly {' and '.join(MEMBERS)}; "
                                  + (f"missing {missing}" if missing else "")
                                  + ("; " if missing and extra else "")
                                  + (f"unexpected members {extra}" if extra else ""))
            total = 0
            for info in infos:
                if info.file_size > size or info.compress_size > size:
                    raise ExportError(f"{path}: member {info.filename} declares {info.file_size} bytes in a "
                                      f"file of {size} bytes; refused before inflating (a zip bomb?)")
                if info.flag_bits & 0x1:
                    raise ExportError(f"{path}: member {info.filename} is encrypted; graphc model files are not")
                if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                    raise ExportError(f"{path}: member {info.filename} is compressed; graphc model files "
                                      f"hold stored (uncompressed) members only")
                if info.header_offset + info.file_size > size:
                    raise ExportError(f"{path}: member {info.filename} reaches past the end of the file "
                                      f"({size} bytes): the file is truncated")
                total += info.file_size
            if total > size:
                raise ExportError(f"{path}: members declare {total} bytes in a file of {size} bytes")
            if zf.getinfo(JSON_MEMBER).file_size > MAX_JSON_BYTES:
                raise ExportError(f"{path}: {JSON_MEMBER} is larger than {MAX_JSON_BYTES} bytes")
            try:
                return {m: zf.read(m) for m in MEMBERS}
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
                raise ExportError(f"{path}: cannot read its members ({exc}); the file is damaged or "
                                  f"truncated") from None


def _parse_json(raw: bytes, path):
    def no_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    def unique(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constant, object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ExportError(f"{path}: {JSON_MEMBER} is not valid JSON ({str(exc)[:200]})") from None


def _check_header(doc, path) -> dict:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ExportError(f"{path}: {JSON_MEMBER} does not say format {FORMAT!r}: not a graphc model file")
    version = doc.get("format_version")
    m = re.fullmatch(r"(\d{1,6})\.(\d{1,6})", version) if isinstance(version, str) else None
    if m is None:
        raise ExportError(f"{path}: format_version {version!r} is not 'major.minor'")
    major = int(m.group(1))
    if major > FORMAT_VERSION[0]:
        raise ExportError(f"{path} has format version {version}, newer than this graphc reads "
                          f"({FORMAT_VERSION[0]}.x, graphc {getattr(sys.modules.get('graphc'), '__version__', '')}); "
                          f"upgrade graphc to load it")
    if major < FORMAT_VERSION[0]:
        raise ExportError(f"{path} has format version {version}, older than any this graphc reads")
    opset = doc.get("opset")
    if type(opset) is not int or not 1 <= opset <= OPSET:
        raise ExportError(f"{path}: op set version {opset!r}; this graphc knows op sets 1 to {OPSET}")
    entries = doc.get("entries")
    if not isinstance(entries, dict) or not entries:
        raise ExportError(f"{path}: {JSON_MEMBER} has no 'entries'")
    for name in entries:
        if not _GRAPH_NAME.fullmatch(name):
            raise ExportError(f"{path}: entry name {name!r} is not an identifier")
    return entries


def _need(cond, where, what):
    if not cond:
        raise ExportError(f"{where}: {what}")


def _decode_type(t, where) -> TensorType:
    _need(isinstance(t, dict) and set(t) >= {"dtype", "shape"}, where, f"a type is {{dtype, shape}}, got {t!r}")
    dtype, shape = t["dtype"], t["shape"]
    _need(isinstance(dtype, str) and dtype in DTYPES, where, f"unknown dtype {dtype!r} (graphc has {', '.join(DTYPES)})")
    _need(isinstance(shape, list) and len(shape) <= 32, where, f"a shape is a list of at most 32 dims, got {shape!r}")
    for d in shape:
        _need((type(d) is int and 0 <= d < 2**62) or (type(d) is str and is_symbol(d)), where,
              f"a dimension is an int in [0, 2**62) or a symbol name, got {d!r}")
    known = [d for d in shape if type(d) is int]
    _need(math.prod(known) < 2**62, where, f"shape {shape} has more than 2**62 elements")
    return TensorType(tuple(shape), dtype)


def _decode_attr(v, expected, where, out_type):
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is list:
        return [_decode_attr(x, expected, where, None) for x in v]
    _need(type(v) is dict and len(v) == 1, where, f"an attribute value is a JSON scalar, list or tagged object, "
          f"got {v!r}"[:300])
    (tag, x), = v.items()
    if tag == "$tuple":
        _need(type(x) is list, where, "$tuple holds a list")
        return tuple(_decode_attr(e, expected, where, None) for e in x)
    if tag == "$sym":
        _need(type(x) is str and is_symbol(x), where, f"$sym names a symbolic dimension, got {x!r}"[:300])
        return Sym(x)
    if tag == "$float":
        _need(x in ("nan", "-nan", "inf", "-inf"), where, f"$float is nan, -nan, inf or -inf, got {x!r}")
        return math.copysign(math.nan, -1.0) if x == "-nan" else float(x)
    if tag == "$tensor":
        _need(type(x) is str and 0 < len(x) <= 256, where, f"$tensor names a tensor, got {x!r}")
        _need(out_type is not None, where, "a constant array appears where none is allowed")
        _expect(expected, x, out_type, where)
        return _TensorRef(x)
    raise ExportError(f"{where}: unknown attribute tag {tag!r}")


def _expect(expected: dict, key: str, t: TensorType, where):
    """Note that tensor ``key`` must have type ``t`` (entries may share a tensor of one type)."""
    _need(expected.setdefault(key, t) == t, where, f"tensor {key!r} is used as {t} and as {expected[key]}")


class _TensorRef:
    """A constant attribute before the weights are read: the tensor's name."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


def _decode_graph(g, expected, where, depth=0) -> Graph:
    _need(depth <= MAX_REGION_DEPTH, where, f"regions nest deeper than {MAX_REGION_DEPTH}")
    _need(isinstance(g, dict) and {"name", "inputs", "nodes", "outputs"} <= set(g), where,
          "a graph is {name, inputs, nodes, outputs, donations}")
    name = g["name"]
    _need(isinstance(name, str) and _GRAPH_NAME.fullmatch(name), where, f"graph name {name!r} is not an identifier")
    where = f"{where}: graph {name}"
    graph = Graph(name=name)
    _need(isinstance(g["inputs"], list), where, "inputs is a list")
    values = []
    for k, inp in enumerate(g["inputs"]):
        _need(isinstance(inp, dict), where, f"input {k} is an object")
        role, iname = inp.get("role", "arg"), inp.get("name")
        _need(role in ("arg", "state", "captured"), where, f"input {k} has role {role!r}")
        _need(iname is None or (isinstance(iname, str) and len(iname) <= 512 and iname.isprintable()), where,
              f"input {k}'s name {iname!r} is not a printable string")
        values.append(graph.add_input(_decode_type(inp, f"{where}: input {k}"), iname, role))
    _need(isinstance(g["nodes"], list), where, "nodes is a list")
    for n, node in enumerate(g["nodes"]):
        at = f"{where}: node {n}"
        _need(isinstance(node, dict) and {"op", "inputs", "outputs"} <= set(node), at,
              "a node is {op, inputs, attrs, outputs, loc, regions}")
        op = node["op"]
        _need(isinstance(op, str) and op in registry.OPS, at, f"unknown op {op!r}: this graphc has no op of "
              f"that name (op set {OPSET})"[:300])
        at = f"{at} ({op})"
        refs = node["inputs"]
        _need(isinstance(refs, list) and all(type(r) is int and 0 <= r < len(values) for r in refs), at,
              f"operands {refs!r} must name values defined before the node (0 to {len(values) - 1})"[:300])
        outs = node["outputs"]
        _need(isinstance(outs, list) and outs, at, "outputs is a non-empty list of types")
        out_types = [_decode_type(t, at) for t in outs]
        attrs = node.get("attrs", {})
        _need(isinstance(attrs, dict), at, "attrs is an object")
        allowed = op_attributes(op)
        missing = [a for a in required_attributes(op) if a not in attrs]
        _need(not missing, at, f"op {op} needs attribute(s) {', '.join(missing)}")
        decoded = {}
        for key, raw in attrs.items():
            _need(key in allowed, at, f"op {op} takes no attribute {key!r} (it takes {', '.join(allowed) or 'none'})")
            value = _decode_attr(raw, expected, f"{at}: attribute {key}",
                                 out_types[0] if op == "constant" and key == "value" else None)
            description, ok = ATTRIBUTE_TYPES[key]
            if isinstance(value, _TensorRef):
                _need(key == "value", at, f"attribute {key} cannot be an array")
            elif not ok(value):
                raise ExportError(f"{at}: attribute {key} must be {description}, got {value!r}"[:400])
            decoded[key] = value
        loc = node.get("loc")
        _need(loc is None or (isinstance(loc, str) and len(loc) <= 1024 and loc.isprintable()), at,
              f"loc {loc!r} is not a printable source location"[:300])
        regions = node.get("regions", [])
        _need(isinstance(regions, list), at, "regions is a list")
        regions = [_decode_graph(r, expected, f"{at}: region {i}", depth + 1) for i, r in enumerate(regions)]
        made = graph.add_node(op, [values[r] for r in refs], decoded, out_types, loc, regions)
        values += made.outputs
    outputs = g["outputs"]
    _need(isinstance(outputs, list) and all(type(r) is int and 0 <= r < len(values) for r in outputs), where,
          "outputs name defined values")
    graph.outputs = [values[r] for r in outputs]
    donations = g.get("donations", [])
    _need(isinstance(donations, list) and all(isinstance(d, list) and len(d) == 2 and all(type(i) is int for i in d)
                                               for d in donations), where, "donations are [output, input] pairs")
    graph.donations = {j: k for j, k in donations}
    _need(len(graph.donations) == len(donations), where, "an output is donated twice")
    return graph


def _decode_treedef(d, where, depth=0):
    _need(depth < 64, where, "the signature nests too deeply")
    if d == "*":
        return pytree.LEAF
    _need(isinstance(d, dict) and len(d) == 1, where, f"a tree node is '*' or {{tuple|list|dict: ...}}, got {d!r}"[:300])
    (kind, children), = d.items()
    _need(kind in ("tuple", "list", "dict") and isinstance(children, list), where, f"unknown tree node {kind!r}")
    if kind == "dict":
        _need(all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in children), where,
              "a dict node holds [key, child] pairs with string keys")
        return ("dict", tuple(c[0] for c in children),
                tuple(_decode_treedef(c[1], where, depth + 1) for c in children))
    return (kind, tuple(_decode_treedef(c, where, depth + 1) for c in children))


def _count_leaves(d) -> int:
    if d == pytree.LEAF:
        return 1
    return sum(_count_leaves(c) for c in (d[2] if d[0] == "dict" else d[1]))


def _json_value(v, where):
    """A static value or option from the file: JSON scalars and $tuple/$float tags."""
    if v is None or type(v) in (bool, int, float, str):
        return v
    return _decode_attr(v, {}, where, None)


_STATE_KINDS = ("parameter", "buffer", "optimizer", "hyperparameter", "gradient", "rng", "captured", "state")


def _decode_entry(entry, expected, where) -> dict:
    """One entry, checked: its graph, signature, state table, input checks and optimizers."""
    _need(isinstance(entry, dict), where, "an entry is an object")
    for key in ("graph", "signature", "states"):
        _need(key in entry, where, f"missing {key!r}")
    graph = _decode_graph(entry["graph"], expected, where)
    device = entry.get("device", backend.DEFAULT_DEVICE)
    _need(isinstance(device, str), where, "device is a string")
    passes = entry.get("passes", "O2")
    _need(isinstance(passes, str) and passes in manager.PIPELINES, where, f"unknown pass pipeline {passes!r}")
    options = entry.get("options", {})
    _need(isinstance(options, dict) and all(isinstance(v, (str, bool, int, float)) or v is None
                                            for v in options.values()), where, "options is an object of scalars")
    signature = _decode_signature(entry["signature"], graph, where)
    _decode_states(entry["states"], graph, signature, expected, where)
    checks = _decode_checks(entry.get("input_checks", []), graph, where)
    optimizers = _decode_optimizers(entry.get("optimizers", []), where)
    for i, st in enumerate(entry["states"]):
        _check_state_fields(st, optimizers, f"{where}: state {i}")
    symbols = _decode_symbols(entry.get("symbols", {}), graph, where)
    kind = entry.get("kind", "function")
    _need(kind in ("function", "training_step"), where, f"unknown entry kind {kind!r}")
    name = entry.get("name", graph.name)
    _need(isinstance(name, str) and _GRAPH_NAME.fullmatch(name), where, f"name {name!r} is not an identifier")
    return {**entry, "name": name, "kind": kind, "graph": graph, "device": device, "passes": passes,
            "options": options, "in_tree": signature["in_tree"], "out_tree": signature["out_tree"],
            "slots": signature["slots"], "check_finite": bool(entry.get("check_finite", False)),
            "input_checks": checks, "optimizers": optimizers, "symbols": symbols}


def _decode_symbols(symbols, graph, where) -> dict:
    """{symbol: {"min": int, "example": int}}: every symbol of the graph declared, with sizes."""
    _need(isinstance(symbols, dict) and len(symbols) <= 8, where, "symbols is an object of at most 8 symbols")
    for name, spec in symbols.items():
        _need(is_symbol(name), where, f"{name!r} cannot name a symbolic dimension")
        _need(isinstance(spec, dict) and set(spec) == {"min", "example"}
              and all(type(spec[k]) is int for k in spec) and 1 <= spec["min"] <= spec["example"] < 2**62, where,
              f"symbol {name} is {{min, example}} with 1 <= min <= example, got {spec!r}"[:300])
    used = set()
    _symbols_in(graph, used)
    _need(used <= set(symbols), where, f"the graph uses undeclared symbol(s) {sorted(used - set(symbols))}")
    declared = set(symbolic.symbols(graph))
    _need(used <= declared, where, f"symbol(s) {sorted(used - declared)} appear in no argument's shape, so no "
          f"call could give them a size")
    return symbols


def _symbols_in(graph, found: set):
    def scan(a):
        if isinstance(a, Sym):
            found.add(str(a))
        elif isinstance(a, (tuple, list)):
            for x in a:
                scan(x)
    for v in graph.inputs:
        scan(v.type.shape)
    for node in graph.nodes:
        for v in node.outputs:
            scan(v.type.shape)
        for a in node.attrs.values():
            scan(a)
        for region in node.regions:
            _symbols_in(region, found)


def _decode_signature(sig, graph, where) -> dict:
    """The input and output trees, checked against the graph's argument inputs and outputs."""
    _need(isinstance(sig, dict) and {"inputs", "leaves", "outputs", "slots", "scalars"} <= set(sig), where,
          "signature is {inputs, leaves, outputs, slots, scalars}")
    in_tree = _decode_treedef(sig["inputs"], where)
    _need(in_tree != pytree.LEAF and in_tree[0] == "tuple" and len(in_tree[1]) == 2
          and in_tree[1][0] != pytree.LEAF and in_tree[1][0][0] == "tuple"
          and in_tree[1][1] != pytree.LEAF and in_tree[1][1][0] == "dict", where,
          "the input tree is (args tuple, kwargs dict)")
    leaves = sig["leaves"]
    _need(isinstance(leaves, list) and len(leaves) == _count_leaves(in_tree), where,
          "one leaf record per leaf of the input tree")
    arg_types = []
    for i, leaf in enumerate(leaves):
        at = f"{where}: argument leaf {i}"
        _need(isinstance(leaf, dict) and leaf.get("kind") in ("array", "scalar", "static"), at,
              "a leaf is an array, a scalar or a static value")
        if leaf["kind"] == "static":
            leaf["value"] = _json_value(leaf.get("value"), at)
            continue
        t = _decode_type(leaf, at)
        _need(leaf["kind"] != "scalar" or (leaf.get("python") in _PYTHON_SCALARS and not t.shape), at,
              "a scalar leaf is a Python float or int")
        _need(leaf.get("path") is None or (isinstance(leaf["path"], str) and leaf["path"].isprintable()), at,
              "path is a string")
        arg_types.append(t)
    n_args = len(arg_types)
    _need(len(graph.inputs) >= n_args and [v.type for v in graph.inputs[:n_args]] == arg_types
          and all(r == "arg" for r in graph.input_roles[:n_args])
          and all(r != "arg" for r in graph.input_roles[n_args:]), where,
          "the signature's arrays do not match the graph's argument inputs")
    out_tree = _decode_treedef(sig["outputs"], where)
    slots = sig["slots"]
    _need(isinstance(slots, list) and len(slots) == _count_leaves(out_tree), where, "one slot per output leaf")
    decoded = []
    for slot in slots:
        if slot == "*":
            decoded.append(DYNAMIC)
        else:
            _need(isinstance(slot, dict) and set(slot) == {"static"}, where,
                  f"a slot is '*' or {{static: value}}, got {slot!r}"[:300])
            decoded.append(_json_value(slot["static"], where))
    n_user = decoded.count(DYNAMIC)
    scalars = sig["scalars"]
    _need(isinstance(scalars, list) and len(scalars) == n_user and n_user <= len(graph.outputs)
          and all(s in (None, "python", "numpy") for s in scalars), where,
          "one scalar kind (null, python, numpy) per array output")
    return {"in_tree": in_tree, "out_tree": out_tree, "slots": decoded, "n_args": n_args, "n_user": n_user}


def _decode_states(states, graph, signature, expected, where):
    """The state table: every graph input after the arguments is a state read, every output
    after the results a state's update, each state's tensor has its input's type."""
    n_args, n_user = signature["n_args"], signature["n_user"]
    _need(isinstance(states, list), where, "states is a list")
    state_inputs, state_outputs = set(), set()
    for i, st in enumerate(states):
        at = f"{where}: state {i}"
        _need(isinstance(st, dict) and st.get("kind") in _STATE_KINDS, at, f"kind is one of {', '.join(_STATE_KINDS)}")
        for key in ("name", "key"):
            _need(st.get(key) is None or (isinstance(st[key], str) and len(st[key]) <= 512), at, f"{key} is a string")
        k, j = st.get("input"), st.get("output")
        _need(k is not None or j is not None, at, "a state is an input, an output or both")
        if k is not None:
            _need(type(k) is int and n_args <= k < len(graph.inputs) and k not in state_inputs, at,
                  f"input {k!r} is not a state input of the graph")
            # (its array has the size it was saved with: a symbol, bound from the arguments, could
            # make the kernels read past its end)
            _need(not graph.inputs[k].type.symbolic, at, f"input {k} ({graph.input_names[k]}) is "
                  f"{graph.inputs[k].type}, but a state's shape is fixed")
            tensor = st.get("tensor")
            _need(isinstance(tensor, str) and 0 < len(tensor) <= 256, at, "an input state names its tensor")
            _expect(expected, tensor, graph.inputs[k].type, at)
            state_inputs.add(k)
        if j is not None:
            _need(type(j) is int and n_user <= j < len(graph.outputs) and j not in state_outputs, at,
                  f"output {j!r} is not a state output of the graph")
            if k is not None:
                _need(graph.outputs[j].type == graph.inputs[k].type, at, "its update's type differs from its input's")
            state_outputs.add(j)
    _need(sorted(state_inputs) == list(range(n_args, len(graph.inputs))), where,
          "every non-argument input of the graph is a state")
    _need(sorted(state_outputs) == list(range(n_user, len(graph.outputs))), where,
          "every output after the function's results is a state's update")


def _decode_checks(checks, graph, where) -> list:
    """The input checks a loaded function runs before each call (graphc's two kinds only)."""
    _need(isinstance(checks, list), where, "input_checks is a list")
    for c in checks:
        _need(isinstance(c, dict) and type(c.get("input")) is int and 0 <= c["input"] < len(graph.inputs), where,
              f"an input check names an input, got {c!r}"[:300])
        if c.get("kind") == "class_labels":
            _need(type(c.get("classes")) is int and type(c.get("ignore_index")) is int, where,
                  "a class_labels check has int classes and ignore_index")
        elif c.get("kind") == "int_fits":
            _need(c.get("dtype") in ("int32", "int64"), where, "an int_fits check names int32 or int64")
        else:
            raise ExportError(f"{where}: unknown input check {c.get('kind')!r}"[:300])
    return checks


def _decode_optimizers(optimizers, where) -> list:
    """Each optimizer's type and parameter groups (options decoded)."""
    _need(isinstance(optimizers, list), where, "optimizers is a list")
    out = []
    for k, opt in enumerate(optimizers):
        at = f"{where}: optimizer {k}"
        _need(isinstance(opt, dict) and isinstance(opt.get("type"), str) and isinstance(opt.get("param_groups"), list),
              at, "an optimizer is {type, param_groups}")
        groups = []
        for g, group in enumerate(opt["param_groups"]):
            _need(isinstance(group, dict), at, f"group {g} is an object")
            params, options = group.get("params", []), group.get("options", {})
            _need(isinstance(params, list) and all(type(p) is int and p >= 0 for p in params), at,
                  f"group {g}'s params are parameter indices")
            _need(isinstance(options, dict), at, f"group {g}'s options are an object")
            groups.append({"params": params, "param_names": group.get("param_names"),
                           "options": {key: _json_value(v, f"{at}: option {key}") for key, v in options.items()}})
        out.append({"type": opt["type"], "param_groups": groups})
    return out


def _check_state_fields(st, optimizers, where):
    """The fields a state's kind needs: which optimizer, parameter, group and tuple index."""
    _need(isinstance(st.get("key"), str) or st["kind"] in ("state", "captured"), where, "key is a string")
    _need(st.get("order") is None or type(st["order"]) is int, where, "order is an int")
    if st["kind"] not in ("optimizer", "hyperparameter"):
        return
    k = st.get("optimizer")
    _need(type(k) is int and 0 <= k < len(optimizers), where, f"optimizer {k!r} is not one of the entry's")
    if st["kind"] == "optimizer":
        _need(type(st.get("param")) is int and st["param"] >= 0, where, "param is a parameter index")
        return
    groups = optimizers[k]["param_groups"]
    g, index = st.get("group"), st.get("index")
    _need(type(g) is int and 0 <= g < len(groups), where, f"group {g!r} is not one of the optimizer's")
    option = groups[g]["options"].get(st["key"])
    if index is None:
        _need(type(option) is not tuple, where, f"option {st['key']!r} is a tuple: the state needs an index")
    else:
        _need(type(index) is int and type(option) is tuple and 0 <= index < len(option), where,
              f"index {index!r} does not fit option {st['key']!r} = {option!r}")


def _read_weights(raw: bytes, expected: dict, path) -> dict:
    """Check the safetensors header against the file's length and the graph's types before
    anything is allocated, then read it with ``safetensors.numpy`` (which checks it again)."""
    where = f"{path}: {WEIGHTS_MEMBER}"
    _need(len(raw) >= 8, where, "shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    _need(n <= len(raw) - 8, where, f"declares a {n}-byte header in {len(raw) - 8} bytes")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ExportError(f"{where}: its header is not valid JSON ({str(exc)[:200]})") from None
    _need(isinstance(header, dict), where, "its header is not a JSON object")
    header.pop("__metadata__", None)
    data_len = len(raw) - 8 - n
    spans = []
    for key, info in header.items():
        at = f"{where}: tensor {key!r}"
        _need(isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= set(info), at,
              "a tensor is {dtype, shape, data_offsets}")
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        _need(dtype is not None, at, f"dtype {info['dtype']!r} is refused (graphc reads "
              f"{', '.join(_SAFETENSORS_DTYPES)}; no object arrays)")
        shape, offsets = info["shape"], info["data_offsets"]
        _need(isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape), at, f"bad shape {shape!r}")
        _need(isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets), at,
              f"bad data_offsets {offsets!r}")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        begin, end = offsets
        _need(0 <= begin <= end <= data_len, at, f"data_offsets {offsets} lie outside the {data_len} bytes of data")
        _need(end - begin == nbytes, at, f"shape {shape} of {dtype} needs {nbytes} bytes, but its data_offsets "
              f"span {end - begin}")
        spans.append((begin, end))
        want = expected.get(key)
        _need(want is not None, at, "the graph uses no tensor of that name (unexpected tensor)")
        _need(want.dtype == dtype and len(want.shape) == len(shape) and all(
            w == s for w, s in zip(want.shape, shape) if type(w) is int), at,
            f"is {dtype}{shape}, but the graph declares {want}")
    missing = sorted(set(expected) - set(header))
    _need(not missing, where, f"missing tensors {missing[:10]}")
    spans.sort()
    _need(all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), where, "tensors overlap")
    try:
        arrays = safetensors.numpy.load(raw)
    except Exception as exc:  # (safetensors raises its own SafetensorError)
        raise ExportError(f"{where}: {exc}") from None
    return arrays


def _build_constants(graph: Graph, tensors: dict):
    for node in graph.nodes:
        for key, value in node.attrs.items():
            if isinstance(value, _TensorRef):
                node.attrs[key] = Const(tensors[value.key])
        for region in node.regions:
            _build_constants(region, tensors)


def _verify(graph: Graph, symbols: dict, where):
    """A symbolic graph is verified at its example's sizes (its shape rules run there)."""
    try:
        if symbols:
            graph = symbolic.instantiate(graph, {s: spec["example"] for s, spec in symbols.items()})
        registry.verify(graph)
    except VerifyError as exc:
        raise ExportError(f"{where}: the graph is not valid: {exc}") from None
    except Exception as exc:  # a shape rule given attributes of the wrong kind
        raise ExportError(f"{where}: the graph is not valid: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# the loaded function

class LoadedState(State):
    """A State of a loaded function (its ``name`` and ``kind`` from the file)."""

    def __init__(self, data, name, kind):
        super().__init__(data)
        self.name = name
        self.kind = kind


class LoadedFunction:
    """A function loaded by ``gc.load``: call it like the original (same arguments).

    ``f.graph`` is the saved graph, ``f.source`` its generated code, ``f.state_dict()``
    its parameters, buffers and optimizer state. A training step updates its state in
    place on every call; ``gc.save(f, path)`` writes the current state.
    """

    def __init__(self, entry: dict, tensors: dict, path, device=None):
        self.path = os.fspath(path)
        self.name = entry["name"]
        self.kind = entry["kind"]
        self._entry_json = entry
        self._graph = entry["graph"]
        self.device = device or entry["device"]
        try:
            self.backend = backend.get(self.device)
            self.options = self.backend.check_options(
                {k: v for k, v in entry["options"].items() if k not in backend.base.RUNTIME_OPTIONS}
                if self.device == entry["device"] else {})
        except ValueError as exc:
            raise ExportError(f"{path}: {exc}") from None
        self.passes = entry["passes"]
        self.check_finite = entry["check_finite"]
        self._in_tree, self._out_tree, self._slots = entry["in_tree"], entry["out_tree"], entry["slots"]
        self._leaves = entry["signature"]["leaves"]
        self._scalars = entry["signature"]["scalars"]
        self._records = entry["states"]
        self._optimizers = entry["optimizers"]
        self.states = []
        for rec in self._records:
            if rec.get("input") is not None:
                data = np.array(tensors[rec["tensor"]])  # own, writable copy
            else:  # only written (a gradient): allocated when first compiled, not from a size in the file
                t = self._graph.outputs[rec["output"]].type
                data = np.zeros((0,) * len(t.shape), t.dtype)
            self.states.append(LoadedState(data, rec.get("name"), rec["kind"]))
        self._checks = [(c["input"], self._make_check(c)) for c in entry["input_checks"]]
        self.symbols = entry["symbols"]  # {symbol: {"min", "example"}}: the batch dim's name and sizes
        self._compiled = {}

    @staticmethod
    def _make_check(spec):
        if spec["kind"] == "class_labels":
            return _label_check(spec["classes"], spec["ignore_index"])
        return lambda value, info=np.iinfo(spec["dtype"]): _check_fits(info, value)

    # -- inspection -------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        """The saved graph: as traced, before the passes; generic in its symbols (``f32[B,64]``)."""
        return self._graph

    def _example(self) -> dict:
        return {s: spec["example"] for s, spec in self.symbols.items()}

    def compiled_graph(self, **sizes) -> Graph:
        """The graph as compiled for ``sizes`` of the symbols (``B=64``; default: the sizes it
        was saved with): after the pass pipeline, fused groups included."""
        for symbol, n in sizes.items():
            if symbol not in self.symbols:
                raise ShapeError(f"{self.name} has no symbolic dimension {symbol} (it has {', '.join(self.symbols) or 'none'})")
            if type(n) is not int or n < self.symbols[symbol]["min"]:
                raise ShapeError(f"{self.name}: {symbol} must be at least {self.symbols[symbol]['min']}, got {n!r}")
        return self._compile({**self._example(), **sizes}).graph

    @property
    def source(self) -> str | None:
        """The generated source at the saved example's sizes (compiled now if need be)."""
        return self._compile(self._example()).compiled.source

    def signature(self) -> str:
        """The call signature, e.g. ``(x: f32[B,64]) -> f32[B,10]``."""
        args = []
        for leaf in self._leaves:
            if leaf["kind"] == "static":
                args.append(repr(leaf["value"]))
            elif leaf["kind"] == "scalar":
                args.append(f"{leaf.get('path') or '?'}: {leaf['python']}")
            else:
                args.append(f"{leaf.get('path') or '?'}: {TensorType(tuple(leaf['shape']), leaf['dtype'])}")
        outs = [str(v.type) for v in self._graph.outputs[:self._slots.count(DYNAMIC)]]
        return f"({', '.join(args)}) -> {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}"

    def parameters(self):
        """``(key, kind, array)`` of every saved state array: parameters and buffers by their
        module names, optimizer state by its path in ``state_dict()``
        (``optimizer.state.0.exp_avg``, ``optimizer.param_groups.0.betas[1]``). The arrays are
        live: writing into a hyperparameter's array changes it for the next call."""
        return [(self._label(i, rec), rec["kind"], st._data)
                for i, (rec, st) in enumerate(zip(self._records, self.states)) if rec.get("input") is not None]

    @staticmethod
    def _label(i, rec) -> str:
        key = rec.get("key") or rec.get("name") or f"state{i}"
        opt = f"optimizer{rec['optimizer'] or ''}" if type(rec.get("optimizer")) is int else "optimizer"
        if rec["kind"] == "optimizer":
            return f"{opt}.state.{rec.get('param')}.{key}"
        if rec["kind"] == "hyperparameter":
            index = f"[{rec['index']}]" if rec.get("index") is not None else ""
            return f"{opt}.param_groups.{rec.get('group')}.{key}{index}"
        return key

    def state_dict(self):
        """The state by PyTorch's names (live arrays, as ``Module.state_dict``).

        An inference function: ``{name: array}`` of its parameters and buffers, by the
        module's ``named_parameters``/``named_buffers`` names. A training step:
        ``{"model": {name: array}, "optimizer": {"state": {i: {buffer: array}},
        "param_groups": [{option: value, ..., "params": [i, ...]}]}}``, the layout of
        ``torch.optim.Optimizer.state_dict()`` (parameters numbered as there), which
        ``graphc.optim`` optimizers load with ``load_state_dict``.
        """
        model = OrderedDict()
        held = [(rec["order"] if type(rec.get("order")) is int else len(self._records), i)
                for i, rec in enumerate(self._records)
                if rec["kind"] in ("parameter", "buffer") and rec.get("input") is not None]
        for _, i in sorted(held):  # in the module's state_dict order
            model[self._records[i].get("key") or self._records[i].get("name")] = self.states[i]._data
        if self.kind != "training_step":
            return model
        optimizers = []
        for k, opt in enumerate(self._optimizers):
            state, groups = {}, []
            for rec, st in zip(self._records, self.states):
                if rec["kind"] == "optimizer" and rec.get("optimizer") == k:
                    state.setdefault(rec["param"], {})[rec["key"]] = st._data
            for g, group in enumerate(opt["param_groups"]):
                options = dict(group["options"])
                for rec, st in zip(self._records, self.states):  # the live hyperparameters
                    if rec["kind"] == "hyperparameter" and rec.get("optimizer") == k and rec.get("group") == g:
                        value = float(st._data)
                        if rec.get("index") is None:
                            options[rec["key"]] = value
                        else:
                            items = list(options.get(rec["key"], ()))
                            items[rec["index"]] = value
                            options[rec["key"]] = tuple(items)
                groups.append({**options, "params": list(group["params"])})
            optimizers.append({"state": dict(sorted(state.items())), "param_groups": groups})
        out = {"model": model}
        for k, opt in enumerate(optimizers):
            out["optimizer" if k == 0 else f"optimizer{k}"] = opt
        return out

    def __repr__(self):
        return f"<graphc.LoadedFunction {self.name}{self.signature()} from {self.path}>"

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if kwargs:  # keyword arguments in the saved order, whatever order they come in
            saved = self._in_tree[1][1][1]
            kwargs = {k: kwargs[k] for k in saved if k in kwargs} | kwargs
        leaves, treedef = pytree.flatten((args, kwargs))
        if treedef != self._in_tree:
            raise TypeError(f"{self.name}: called with arguments of another structure than saved; "
                            f"it takes {self.signature()}")
        arrays, bindings = [], {}
        for leaf, spec in zip(leaves, self._leaves):
            if spec["kind"] == "static":
                if _typed_key(leaf) != _typed_key(spec["value"]):  # (-0.0 is not 0.0; nan is nan)
                    raise TypeError(f"{self.name}: a static argument was {spec['value']!r} when saved, got {leaf!r}")
                continue
            arrays.append(self._checked(leaf, spec, bindings))
        return self._compile(bindings, arrays).run(arrays)

    def _checked(self, leaf, spec, bindings):
        """The argument as the executable takes it, after checking it against the saved signature."""
        path = spec.get("path") or "?"
        if spec["kind"] == "scalar":
            want = _PYTHON_SCALARS[spec["python"]]
            if type(leaf) is not want:
                raise ShapeError(f"{self.name}: argument {path!r} was a Python {spec['python']} when saved, "
                                 f"got {type(leaf).__name__}")
            return leaf
        if not (isinstance(leaf, np.generic) or (isinstance(leaf, np.ndarray) and _honourable(type(leaf)))):
            raise ShapeError(f"{self.name}: argument {path!r} must be a NumPy array "
                             f"{TensorType(tuple(spec['shape']), spec['dtype'])}, got {type(leaf).__name__}")
        want = TensorType(tuple(spec["shape"]), spec["dtype"])
        if leaf.dtype.name != spec["dtype"] or leaf.ndim != len(spec["shape"]):
            raise ShapeError(f"{self.name}: argument {path!r} must be {want}, got {leaf.dtype}{list(leaf.shape)}")
        for axis, (want_dim, got) in enumerate(zip(spec["shape"], leaf.shape)):
            if type(want_dim) is str:
                least = self.symbols[want_dim]["min"]
                if got < least:
                    raise ShapeError(f"{self.name}: argument {path!r} has size {got} in dimension {axis}, which "
                                     f"is {want_dim}; {want_dim} must be at least {least}" + (
                                         " (the saved code treats a batch of 1 apart, as np.squeeze does)"
                                         if least == 2 and got == 1 else ""))
                bound = bindings.setdefault(want_dim, got)
                if bound != got:
                    raise ShapeError(f"{self.name}: argument {path!r} has size {got} in dimension {axis}, which "
                                     f"is {want_dim} = {bound} in an earlier argument; it must be {want}")
            elif want_dim != got:
                raise ShapeError(f"{self.name}: argument {path!r} must be {want}, got {leaf.dtype}{list(leaf.shape)}"
                                 f" (dimension {axis} is {got}, not {want_dim})")
        return _as_argument(leaf)

    def _compile(self, bindings: dict, arrays=None) -> Compiled:
        """The compiled graph for these symbol values (``{"B": 64}``). A call (``arrays``) at sizes
        >= 2 runs the saved graph compiled once for every size, where the backend can
        (``Backend.symbolic_dims``); otherwise, and for ``.source``, the graph instantiated at
        the sizes (graphc/symbolic.py) is compiled, once per size."""
        if arrays is not None and self.symbols and min(bindings.values()) >= 2:
            generic = self._generic(arrays)
            if generic is not None:
                return generic
        key = tuple(sorted(bindings.items()))
        compiled = self._compiled.get(key)
        if compiled is None:
            self._allocate_written_states(bindings)
            graph = symbolic.instantiate(self._graph, bindings) if self.symbols else self._graph
            graph, stats = manager.run(graph, self.passes)
            executable = self.backend.compile(graph, {**self.options, "passes": self.passes})
            compiled = Compiled(graph, executable, (self._out_tree, self._slots), stats, self._builder(),
                                self.check_finite)
            self._compiled[key] = compiled
        return compiled

    def _allocate_written_states(self, bindings):
        for rec, st in zip(self._records, self.states):
            if rec.get("input") is None:  # a state only written: its array, to write into
                t = self._graph.outputs[rec["output"]].type
                st._data = np.zeros(tuple(d if type(d) is int else bindings.get(d, 0) for d in t.shape), t.dtype)

    def _generic(self, arrays) -> Compiled | None:
        """The saved graph compiled as it is, for every size of its symbols (tried once; None
        where the passes or the backend cannot, or a written-only state's shape is symbolic)."""
        if "generic" not in self._compiled:
            compiled = None
            written = [self._graph.outputs[rec["output"]].type for rec in self._records if rec.get("input") is None]
            if self.backend.symbolic_dims and not any(t.symbolic for t in written):
                try:
                    self._allocate_written_states({})
                    graph, stats = manager.run(self._graph, self.passes, errors="raise")
                    executable = self.backend.compile(graph, {**self.options, "passes": self.passes})
                    compiled = Compiled(graph, executable, (self._out_tree, self._slots), stats, self._builder(),
                                        self.check_finite)
                    compiled.prepare(arrays)  # Numba compiles here: a failure runs nothing
                except Exception as exc:  # noqa: BLE001  (each size compiles its own graph instead)
                    _log.debug("%s: no code for every size (%s: %s); compiling each size", self.name,
                               type(exc).__name__, exc)
                    compiled = None
            self._compiled["generic"] = compiled
        return self._compiled["generic"]

    def _builder(self):
        """What ``runtime.Compiled`` reads of a trace: the States in input and output order, which
        outputs are Python numbers, and the input checks."""
        inputs = sorted((rec["input"], st) for rec, st in zip(self._records, self.states) if rec.get("input") is not None)
        outputs = sorted((rec["output"], st) for rec, st in zip(self._records, self.states)
                         if rec.get("output") is not None)
        return types.SimpleNamespace(
            state_inputs=dict.fromkeys(st for _, st in inputs), state_writes=dict.fromkeys(st for _, st in outputs),
            weak_outputs=[s == "python" for s in self._scalars], guards=[], aux={},
            input_checks=list(self._checks))

    # -- saving back ----------------------------------------------------------------------
    def _entry(self):
        """The entry and arrays ``gc.save`` writes: the loaded graph with the current state."""
        arrays = {}
        raw = self._entry_json
        entry = {k: v for k, v in raw.items() if k not in ("graph", "in_tree", "out_tree", "slots")}
        entry["graph"] = _encode_graph(self._graph, arrays, "main.const")
        entry["options"] = {k: v for k, v in self.options.items() if k not in backend.base.RUNTIME_OPTIONS}
        entry["device"] = self.device
        entry["states"] = []
        for i, (rec, st) in enumerate(zip(self._records, self.states)):
            rec = dict(rec)
            if rec.get("input") is not None:
                rec["tensor"] = f"main.state.{i}"
                arrays[rec["tensor"]] = np.array(st._data, order="C")
            entry["states"].append(rec)
        entry["optimizers"] = [{"type": opt["type"], "param_groups": [
            {**group, "options": {k: _json_option(v) for k, v in group["options"].items()}}
            for group in opt["param_groups"]]} for opt in self._optimizers]
        sig = dict(entry["signature"])
        sig["leaves"] = [{**leaf, "value": _json_option(leaf["value"])} if leaf["kind"] == "static" else leaf
                         for leaf in sig["leaves"]]
        sig["slots"] = ["*" if s is DYNAMIC else {"static": _json_option(s)} for s in self._slots]
        entry["signature"] = sig
        return entry, arrays
