"""ONNX export: ``gc.onnx.export(model, "model.onnx", example_x)``.

The function is traced with the examples and cleaned up by the ``O1`` pipeline (constant
folding, simplification, CSE, DCE: no fusion), then each graphc node becomes standard ONNX
operators built with ``onnx.helper``. Parameters, buffers, captured arrays and constants
become initializers. Where graphc's output dtype (NumPy's promotion) differs from what the
ONNX operator gives, an explicit ``Cast`` follows; every value is declared with graphc's
type, so ``onnx.checker.check_model(full_check=True)`` (run before writing) verifies each
dtype against ONNX's own inference.

Dynamic batch: the function is traced at the two probe batch sizes of ``graphc.symbolic``
(``PROBES``, sizes no layer is likely to have), each trace cleaned up by ``O1``, and
``symbolic.generalize`` makes them one template whose types and shape attributes hold the
symbol ``B``. The model is built from the template: a symbolic dimension in a type is an ONNX
``dim_param``; in a reshape's target it is 0 (copy) or -1 (infer), in a broadcast or iota a
shape computed from an input's ``Shape``, in a slice an open end. A graph that bakes the batch
size into a constant (``x / len(x)``; ``np.var`` over the batch, whose element count ``O1``
folds) is exported with the example's static batch (with a warning) or refused when
``dynamic_batch=True`` was asked for, and so is one whose template does not hold at the
example's batch size (``x[:5]`` of a batch of 3; ``np.squeeze`` of a batch of 1).

This module imports ``onnx`` at its top: ``import graphc`` never loads it (``gc.onnx``
does, on first use).
"""
from __future__ import annotations

import inspect
import math
import os
import re
import sys
import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

from graphc import __version__, pytree, symbolic
from graphc.errors import ExportError, NotGeneric, ShapeError
from graphc.fileio import write_atomically
from graphc.ir import Const
from graphc.nn.module import Module
from graphc.passes import manager
from graphc.runtime import Static, TracedFunction, is_dynamic
from graphc.trace import DYNAMIC, trace_into_graph

__all__ = ["export"]

DEFAULT_OPSET = 18
MIN_OPSET = 13  # ReduceSum takes its axes as an input from 13 on (the others from 18)
BATCH = "B"  # the symbol of the dynamic batch dimension
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


# -- public API ---------------------------------------------------------------------------
def export(obj, path, *example_args, opset: int = DEFAULT_OPSET, dynamic_batch="auto", **example_kwargs):
    """Write ``obj`` as an ONNX model to ``path``; returns the ``onnx.ModelProto``.

    ``obj``: an ``nn.Module`` (in its current mode: call ``model.eval()`` for inference), a
    ``TracedFunction`` or any callable, traced with ``example_args``. A ``TracedFunction`` that
    has been called may be given without examples: its latest signature is exported. Array
    arguments become the model's inputs, named after the parameters ("batch[0]" becomes
    "batch_0"); the model's parameters and buffers become initializers with their current
    values, named as in ``state_dict()``.

    ``dynamic_batch``: ``"auto"`` (the default) makes the leading dimension of the batched
    inputs (those whose first dimension equals the first array argument's) the symbol ``B``
    where the graph is generic in it (see ``graphc.symbolic``), and warns and keeps the
    example's batch otherwise, saying why; ``True`` raises ``ExportError`` instead of falling
    back; ``False`` keeps every shape static.

    Raises ``ExportError`` for an op with no ONNX mapping (naming it, its types and your
    line), a model ONNX's checker rejects, or a path that cannot be written. The file is
    written atomically (a temporary file renamed into place).
    """
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        raise ExportError(f"cannot write {os.fspath(path)!r}: directory {directory!r} does not exist")
    model = _to_model(obj, *example_args, opset=opset, dynamic_batch=dynamic_batch, **example_kwargs)
    _write_atomically(model, path)
    return model


def _to_model(obj, *example_args, opset: int = DEFAULT_OPSET, dynamic_batch="auto", **example_kwargs):
    """The checked ``onnx.ModelProto`` that ``export`` writes (see there); warnings name the
    line that called ``export``."""
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET}, got {opset!r}")
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is newer than this onnx package supports "
                         f"({onnx.defs.onnx_opset_version()})")
    if dynamic_batch not in ("auto", True, False):
        raise ValueError(f"dynamic_batch must be 'auto', True or False, got {dynamic_batch!r}")
    traced = _trace(obj, example_args, example_kwargs)
    if traced.updates_state:
        warnings.warn(f"{traced.name} updates State when called (BatchNorm statistics in training mode?); "
                      f"the ONNX model computes its outputs only (call model.eval() for inference)",
                      stacklevel=3)
    if dynamic_batch is not False:
        template, reason = _generic(traced)
        if reason is None:
            traced = template
        else:
            if dynamic_batch is True:
                raise ExportError(f"{traced.name}: cannot export a dynamic batch dimension: {reason}")
            if reason != _NO_BATCH:
                warnings.warn(f"{traced.name}: exported with the example's static batch size, since {reason}",
                              stacklevel=3)
    model = _Builder(traced, opset).model()
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # (onnx raises ValidationError, InferenceError...)
        raise ExportError(f"{traced.name}: the exported ONNX model fails onnx.checker: {exc}") from exc
    return model


def _write_atomically(model, path):
    """Write beside ``path``, then rename over it: a reader never sees a half-written model, and a
    failed write leaves an existing file as it was."""
    try:
        write_atomically(path, model.SerializeToString(), durable=True)
    except OSError as exc:
        raise ExportError(f"cannot write {os.fspath(path)!r}: {exc}") from exc


# -- tracing --------------------------------------------------------------------------------
class _Traced:
    """The cleaned-up graph of one trace and what the export needs besides it."""

    def __init__(self, name, graph, initial, n_user, state_names, retrace, examples):
        self.name = name
        self.graph = graph
        self.initial = initial  # graph input position -> the array of a State / captured array
        self.n_user = n_user  # the user's outputs (the rest are State updates)
        self.updates_state = len(graph.outputs) > n_user
        self.state_names = state_names  # graph input position -> a parameter's qualified name
        self.retrace = retrace  # (args, kwargs) -> _Traced
        self.examples = examples  # the (args, kwargs) it was traced with

    def with_graph(self, graph) -> _Traced:
        """This trace with ``graph`` (the template) in place of its own: same inputs and outputs."""
        return _Traced(self.name, graph, self.initial, self.n_user, self.state_names, self.retrace,
                       self.examples)


def _trace(obj, args, kwargs) -> _Traced:
    # (a gc.load'ed function is a graph, not Python code to trace: tracing it failed with a
    # ShapeError about a Tracer argument; graphc.export is only loaded once gc.load was used)
    loaded = getattr(sys.modules.get("graphc.export"), "LoadedFunction", None)
    if loaded is not None and isinstance(obj, loaded):
        raise ExportError(f"gc.onnx.export: {obj.name} was loaded from {obj.path}, and exporting a loaded "
                          f"file to ONNX is not supported yet: export the original model or function")
    if isinstance(obj, TracedFunction) and not args and not kwargs:
        args, kwargs = obj._latest_arguments()  # (run() below marks the static ones again)
        args = tuple(a.value if isinstance(a, Static) else a for a in args)
    if not args and not kwargs:
        raise TypeError("gc.onnx.export needs example arguments to trace the function with")
    function = obj if isinstance(obj, TracedFunction) else TracedFunction(obj)
    if isinstance(obj, Module):  # inputs named after forward's parameters ("x"), not __call__'s
        function._signature = inspect.signature(obj.forward)
        function.name = type(obj).__name__
    names = _qualified_names(obj)

    def run(examples, kwargs):
        args = tuple(Static(a) if i in function.static_argnums else a for i, a in enumerate(examples))
        leaves, _ = pytree.flatten((args, kwargs))
        paths = function._check_arguments(args, kwargs, leaves)
        builder, (_, slots) = trace_into_graph(function._call_python, args, kwargs, is_dynamic, function.name,
                                               paths)
        graph, _ = manager.run(builder.graph, "O1")
        positions = {v: k for k, v in enumerate(builder.graph.inputs)}
        initial = {positions[v]: state._data for state, v in builder.state_inputs.items()}
        state_names = {positions[v]: names[id(state)] for state, v in builder.state_inputs.items()
                       if id(state) in names}
        n_user = sum(s is DYNAMIC for s in slots)
        return _Traced(function.name, graph, initial, n_user, state_names, run, (examples, kwargs))

    return run(args, kwargs)


def _qualified_names(obj) -> dict:
    """id(State) -> its name in the module tree ("0.weight"), for an nn.Module (or its method)."""
    module = obj if isinstance(obj, Module) else getattr(getattr(obj, "fn", obj), "__self__", None)
    if not isinstance(module, Module):
        return {}
    named = list(module.named_parameters()) + list(module.named_buffers())
    return {id(item): name for name, item in named}


# -- the dynamic batch dimension ----------------------------------------------------------------
_NO_BATCH = "no argument has a batch dimension"


def _generic(traced: _Traced):
    """``(the _Traced of the template, None)``: the function traced for every batch size (graphc's
    symbolic.batch_template, its batch dimension the symbol ``BATCH``; the batched arguments are
    those of the first array argument's leading size, less any that only happen to share it),
    or ``(None, reason)`` when the graph is not generic in it."""
    leaves, treedef = pytree.flatten(traced.examples)
    first = next((leaf for leaf in leaves if isinstance(leaf, np.ndarray) and leaf.ndim), None)
    if first is None:
        return None, _NO_BATCH
    n = first.shape[0]
    batched = [k for k, leaf in enumerate(leaves) if isinstance(leaf, np.ndarray) and leaf.ndim and leaf.shape[0] == n]

    def at(chosen, size):  # the chosen arguments as zero-strided stand-ins of that size
        resized = [np.broadcast_to(np.zeros((), leaf.dtype), (size,) + leaf.shape[1:]) if k in chosen else leaf
                   for k, leaf in enumerate(leaves)]
        return traced.retrace(*pytree.unflatten(treedef, resized))

    probes = " and ".join(map(str, symbolic.PROBES))
    try:
        template, _, size_one = symbolic.batch_template(lambda chosen, size: at(chosen, size).graph, [batched],
                                                        BATCH)
    except NotGeneric as exc:
        return None, f"{exc} (traced at batch sizes {probes})"
    # the example's size must be one the template stands for (x[:5] of a batch of 3 is not)
    try:
        example = symbolic.instantiate(template, {BATCH: n})
    except ShapeError as exc:
        return None, f"the graph traced for a general batch does not hold at the example's batch size: {exc}"
    general = [str(v.type) for v in example.outputs]
    specific = [str(v.type) for v in traced.graph.outputs]
    if general != specific:
        return None, (f"at the example's batch size {n} it returns {', '.join(specific)}, but "
                      f"{', '.join(general)} for a general batch")
    if size_one is not None:  # (np.squeeze treats a batch of 1 apart, which a dim_param cannot exclude)
        return None, str(size_one)
    return traced.with_graph(template), None


# -- building the ONNX graph ------------------------------------------------------------------
def _elem_type(dtype: str) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _ir_version(opset: int) -> int:
    """The oldest IR version that carries ``opset`` (so older runtimes load the file)."""
    for _, ir, ai_onnx, *_ in helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return ir
    return onnx.IR_VERSION


_ONNX_TYPE = {"bool": "tensor(bool)", "int32": "tensor(int32)", "int64": "tensor(int64)",
              "float32": "tensor(float)", "float64": "tensor(double)"}
# where an ONNX operator does not take a dtype, compute in the next one up (exact for the
# operators it is used with) and cast back
_WIDER = {"bool": "int32", "int32": "int64", "float32": "float64"}


class _Builder:
    def __init__(self, traced: _Traced, opset: int):
        self.traced = traced
        self.graph = traced.graph  # its types and shape attributes may hold symbols (str dims)
        self.opset = opset
        self.nodes, self.initializers, self.value_info = [], [], []
        self.names = {}  # graphc Value -> ONNX name
        self.used = set()  # every ONNX name given out
        self.symbol_dims = {}  # symbol -> name of a 1-D int64 tensor holding its size
        self.shape_tensors = {}  # shape with symbols -> name of its int64 tensor
        self.constants = {}  # (dtype, bytes, shape) -> initializer name
        self.fold = {}  # matmul node -> the add node folded into its Gemm

    # names and constants
    def fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.used or not name:
            name, k = f"{hint}_{k}", k + 1
        self.used.add(name)
        return name

    def const(self, array, hint="const") -> str:
        array = np.asarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.constants:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))  # (0-d stays 0-d)
            self.constants[key] = name
        return self.constants[key]

    def ints(self, values) -> str:
        return self.const(np.asarray(values, np.int64), "shape")

    def add(self, op_type, inputs, n_out=1, hint=None, **attrs):
        outs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"{op_type}_node"),
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def cast(self, name, src: str, dst: str) -> str:
        return name if src == dst else self.add("Cast", [name], to=_elem_type(dst))

    def symbol_dim(self, symbol: str) -> str:
        """A 1-D int64 tensor holding the size of ``symbol``, read from an input that has it."""
        if symbol not in self.symbol_dims:
            for k, v in enumerate(self.graph.inputs):
                shape = v.type.shape
                if symbol in shape and k not in self.traced.initial:
                    dims = self.add("Shape", [self.names[v]], hint="shape")
                    self.symbol_dims[symbol] = self.add("Gather", [dims, self.ints([shape.index(symbol)])],
                                                        hint=f"dim_{symbol}", axis=0)
                    break
            else:
                raise ExportError(f"the symbolic dimension {symbol!r} is not a dimension of any input")
        return self.symbol_dims[symbol]

    def shape_tensor(self, shape) -> str:
        """An int64 shape tensor for ``shape``, whose entries may be symbols."""
        shape = tuple(shape)
        if all(isinstance(d, int) for d in shape):
            return self.ints(shape)
        if shape in self.shape_tensors:
            return self.shape_tensors[shape]
        pieces, run = [], []
        for d in shape:
            if isinstance(d, int):
                run.append(d)
                continue
            if run:
                pieces.append(self.ints(run))
                run = []
            pieces.append(self.symbol_dim(d))
        if run:
            pieces.append(self.ints(run))
        self.shape_tensors[shape] = self.add("Concat", pieces, hint="shape", axis=0)
        return self.shape_tensors[shape]

    def supports(self, op_type: str, dtype: str) -> bool:
        schema = onnx.defs.get_schema(op_type, self.opset, "")
        first = schema.inputs[0].type_str
        for constraint in schema.type_constraints:
            if constraint.type_param_str == first:
                return _ONNX_TYPE[dtype] in constraint.allowed_type_strs
        return first == _ONNX_TYPE[dtype]

    def compute_dtype(self, op_type: str, dtype: str, node) -> str:
        """``dtype``, or the nearest wider one ``op_type`` accepts (ExportError if none)."""
        d = dtype
        while not self.supports(op_type, d):
            if d not in _WIDER:
                raise _no_mapping(node, f"ONNX {op_type} does not take {dtype}")
            d = _WIDER[d]
        return d

    # the model
    def model(self):
        graph, traced = self.graph, self.traced
        inputs = []
        for k, v in enumerate(graph.inputs):
            if k in traced.initial:
                hint = traced.state_names.get(k) or graph.input_names[k] or ""
                name = self.fresh(_clean(hint) or f"param_{k}")
                self.initializers.append(numpy_helper.from_array(
                    np.array(traced.initial[k], dtype=v.type.dtype, order="C"), name))
            else:
                name = self.fresh(_input_name(graph.input_names[k], k))
                inputs.append(self._info(name, v))
            self.names[v] = name
        outputs = graph.outputs[:traced.n_user]
        out_names = ["output"] if len(outputs) == 1 else [f"output_{j}" for j in range(len(outputs))]
        for j, name in enumerate(out_names):
            out_names[j] = self.fresh(name)
        renamed = {}
        for v, name in zip(outputs, out_names):  # a node's result named as the output it is
            if v.producer is not None and v.producer.op != "constant" and v not in renamed:
                renamed[v] = name
        self._plan_gemm()
        self.emit(graph.nodes, renamed)
        for v, name in zip(outputs, out_names):
            if self.names[v] != name:
                self.add_named("Identity", [self.names[v]], name)
        # every intermediate declared with graphc's type: the checker's strict inference then
        # verifies each dtype (and static dim) against what the ONNX operators give
        top, declared = set(graph.nodes), set(out_names) | set(self.constants.values())
        for v, name in self.names.items():
            if v.producer in top and v.producer.op != "constant" and name not in declared:
                declared.add(name)
                self.value_info.append(self._info(name, v))
        onnx_graph = helper.make_graph(self.nodes, _graph_name(traced.name), inputs,
                                       [self._info(name, v) for v, name in zip(outputs, out_names)],
                                       initializer=self.initializers, value_info=self.value_info)
        model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="graphc", producer_version=__version__)
        model.ir_version = _ir_version(self.opset)
        return model

    def add_named(self, op_type, inputs, out, **attrs):
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.fresh(f"{op_type}_node"),
                                           **attrs))

    def _info(self, name, value):
        shape = [str(d) if isinstance(d, str) else d for d in value.type.shape]  # (a Sym as a plain str)
        return helper.make_tensor_value_info(name, _elem_type(value.type.dtype), shape)

    def _plan_gemm(self):
        """matmul(2-D float) followed only by ``+ bias`` (an input or constant): one Gemm."""
        users = self.graph.users()
        outputs = set(self.graph.outputs)
        order = {n: k for k, n in enumerate(self.graph.nodes)}
        for node in self.graph.nodes:
            if node.op != "matmul" or node.inputs[0].type.ndim != 2 or node.outputs[0].type.dtype not in (
                    "float32", "float64"):
                continue
            out = node.outputs[0]
            after = users.get(out, [])
            if out in outputs or len(after) != 1 or after[0].op != "add" or after[0].outputs[0].type != out.type:
                continue
            add = after[0]
            bias = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            # the bias must exist before the matmul: an input, or a constant traced before it
            if bias is out or (bias.producer is not None and (bias.producer.op != "constant" or
                                                              order[bias.producer] > order[node])):
                continue
            if bias.type.ndim <= 2 and all(b in (1, o) for b, o in zip(reversed(bias.type.shape),
                                                                      reversed(out.type.shape))):
                self.fold[node] = add

    def emit(self, nodes, renamed):
        """ONNX nodes for graphc ``nodes``; a value in ``renamed`` gets that name (a graph output)."""
        folded = set(self.fold.values())
        for node in nodes:
            if node in folded:
                continue
            if node.op not in _RULES:
                raise _no_mapping(node, "graphc has no ONNX mapping for it")
            target = self.fold.get(node, node)  # (a matmul whose bias add became its Gemm)
            results = _RULES[node.op](self, node, [self.names[v] for v in node.inputs])
            for v, (name, dtype) in zip(target.outputs, results if isinstance(results, list) else [results]):
                name = self.cast(name, dtype, v.type.dtype)
                if v in renamed:
                    name = self._name_output(name, renamed[v])
                self.names[v] = name

    def _name_output(self, name, wanted) -> str:
        """Give the tensor ``name`` the output name ``wanted``: the node that just made it is
        renamed, or (when ``name`` is older, an input or an initializer) an Identity is added."""
        last = self.nodes[-1] if self.nodes else None
        if last is not None and name in last.output and name not in self.names.values():
            last.output[list(last.output).index(name)] = wanted
        else:
            self.add_named("Identity", [name], wanted)
        return wanted


def _clean(name: str) -> str:
    """A tensor name without quotes, spaces or brackets ("batch[0]" -> "batch_0")."""
    return re.sub(r"[^\w.\-/:]+", "_", name).strip("_")


def _input_name(path, k) -> str:
    return _clean(path) if path and _clean(path) else f"input_{k}"


def _graph_name(name: str) -> str:
    return name if name.isidentifier() else "graph"


def _short(a) -> str:
    text = repr(a.array if isinstance(a, Const) else a)
    return text if len(text) < 60 else text[:57] + "..."


def _no_mapping(node, why: str) -> ExportError:
    ins = ", ".join(str(v.type) for v in node.inputs)
    outs = ", ".join(str(v.type) for v in node.outputs)
    attrs = ", ".join(f"{k}={_short(a)}" for k, a in node.attrs.items())
    return ExportError(f"cannot export op {node.op!r} to ONNX ({why}): {node.op}({ins}{', ' if attrs and ins else ''}"
                       f"{attrs}) -> {outs}\n  at {node.loc or 'an unknown line'}")


# -- the rules: graphc node -> ONNX nodes ---------------------------------------------------------
# Each rule returns (name, dtype) per output of the node; the builder casts to graphc's dtype.
_RULES = {}


def _rule(*ops):
    def deco(fn):
        for op in ops:
            _RULES[op] = fn
        return fn
    return deco


def _dtype(node, k=0) -> str:
    return node.inputs[k].type.dtype


def _elementwise(op_type, bool_result=False):
    def rule(b, node, ins):
        dtype = _dtype(node)
        work = b.compute_dtype(op_type, dtype, node)
        out = b.add(op_type, [b.cast(x, dtype, work) for x in ins])
        return out, "bool" if bool_result else work
    return rule


for _op, _onnx in {"neg": "Neg", "abs": "Abs", "sign": "Sign", "exp": "Exp", "log": "Log", "tanh": "Tanh",
                   "sigmoid": "Sigmoid", "sqrt": "Sqrt", "sin": "Sin", "cos": "Cos", "tan": "Tan", "sinh": "Sinh",
                   "cosh": "Cosh", "arcsin": "Asin", "arccos": "Acos", "arctan": "Atan", "arcsinh": "Asinh",
                   "arccosh": "Acosh", "arctanh": "Atanh", "sub": "Sub", "div": "Div", "pow": "Pow",
                   "and": "And", "or": "Or", "xor": "Xor", "not": "Not"}.items():
    _RULES[_op] = _elementwise(_onnx)
for _op, _onnx in {"eq": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater",
                   "ge": "GreaterOrEqual"}.items():
    _RULES[_op] = _elementwise(_onnx, bool_result=True)


@_rule("where")
def _where(b, node, ins):
    dtype = _dtype(node, 1)
    return b.add("Where", [ins[0]] + [b.cast(x, dtype, dtype) for x in ins[1:]]), dtype


@_rule("add", "mul", "maximum", "minimum")
def _add_mul_max_min(b, node, ins):
    # on booleans (NumPy: add and maximum are "or", mul and minimum are "and")
    if _dtype(node) == "bool":
        return b.add("Or" if node.op in ("add", "maximum") else "And", ins), "bool"
    return _elementwise({"add": "Add", "mul": "Mul", "maximum": "Max", "minimum": "Min"}[node.op])(b, node, ins)


@_rule("ne")
def _ne(b, node, ins):
    equal, _ = _RULES["eq"](b, node, ins)
    return b.add("Not", [equal]), "bool"


@_rule("floor", "ceil", "rint")
def _rounding(b, node, ins):
    if not _dtype(node).startswith("float"):
        return b.add("Identity", ins), _dtype(node)  # (NumPy: integers round to themselves)
    return _elementwise({"floor": "Floor", "ceil": "Ceil", "rint": "Round"}[node.op])(b, node, ins)


@_rule("relu")
def _relu(b, node, ins):
    dtype = _dtype(node)
    if dtype.startswith("float"):
        return b.add("Relu", ins), dtype
    return b.add("Max", [ins[0], b.const(np.zeros((), dtype))]), dtype


@_rule("exp2")
def _exp2(b, node, ins):
    dtype = _dtype(node)
    return b.add("Pow", [b.const(np.asarray(2, dtype)), ins[0]]), dtype


@_rule("log2", "log10")
def _log_base(b, node, ins):
    dtype = _dtype(node)
    scale = np.asarray(math.log(2.0 if node.op == "log2" else 10.0), dtype)
    return b.add("Div", [b.add("Log", ins), b.const(scale)]), dtype


@_rule("mod", "floordiv")
def _mod_floordiv(b, node, ins):
    dtype = _dtype(node)
    if not dtype.startswith("int"):
        raise _no_mapping(node, "only integer operands map exactly (ONNX's float Mod is C's fmod)")
    # NumPy gives 0 for an integer divided by 0 (ONNX leaves it undefined): divide by 1 there
    zero, one = b.const(np.zeros((), dtype)), b.const(np.ones((), dtype))
    by_zero = b.add("Equal", [ins[1], zero])
    divisor = b.add("Where", [by_zero, one, ins[1]])
    rem = b.add("Mod", [ins[0], divisor], fmod=0)  # the remainder takes the divisor's sign, as in NumPy
    result = rem if node.op == "mod" else b.add("Div", [b.add("Sub", [ins[0], rem]), divisor])  # exact
    return b.add("Where", [by_zero, zero, result]), dtype


@_rule("clip")
def _clip(b, node, ins):
    dtype = _dtype(node)
    if dtype == "bool":
        raise _no_mapping(node, "ONNX Max/Min do not take booleans")
    return b.add("Min", [b.add("Max", ins[:2]), ins[2]]), dtype


@_rule("cast")
def _cast(b, node, ins):
    return ins[0], _dtype(node)  # (the builder casts to the node's dtype)


@_rule("constant")
def _constant(b, node, ins):
    out = node.outputs[0]
    return b.const(np.asarray(node.attrs["value"].array, out.type.dtype)), out.type.dtype


@_rule("iota")
def _iota(b, node, ins):
    shape, axis, dtype = (node.attrs["shape"], node.attrs["axis"],
                          node.attrs["dtype"])
    axis %= len(shape)
    ramp_shape = [-1 if d == axis else 1 for d in range(len(shape))]
    if all(isinstance(d, int) for d in shape):  # a constant
        ramp = np.arange(shape[axis], dtype=dtype).reshape(ramp_shape)
        return b.const(np.broadcast_to(ramp, shape).copy()), dtype
    # 0, 1, ... along the axis, then spread over the (symbolic) shape
    size = shape[axis]
    limit = (b.add("Reshape", [b.symbol_dim(size), b.ints([])]) if isinstance(size, str)
             else b.const(np.asarray(size, np.int64)))
    ramp = b.add("Range", [b.const(np.asarray(0, np.int64)), limit, b.const(np.asarray(1, np.int64))])
    ramp = b.add("Reshape", [b.cast(ramp, "int64", dtype), b.ints(ramp_shape)])
    return b.add("Expand", [ramp, b.shape_tensor(shape)]), dtype


@_rule("broadcast_to")
def _broadcast_to(b, node, ins):
    x = node.inputs[0]
    target = list(node.attrs["shape"])
    # a symbolic target dim the input already has broadcasts as 1 (Expand keeps the input's dim)
    source = (None,) * (len(target) - x.type.ndim) + x.type.shape
    target = [1 if isinstance(d, str) and source[k] == d else d for k, d in enumerate(target)]
    return b.add("Expand", [ins[0], b.shape_tensor(target)]), _dtype(node)


@_rule("reshape")
def _reshape(b, node, ins):
    source = node.inputs[0].type.shape
    target = list(node.attrs["shape"])
    if 0 in target:  # a real zero-size dimension: allowzero, so 0 is not "copy the input's"
        return b.add("Reshape", [ins[0], b.shape_tensor(target)], allowzero=1), _dtype(node)
    for k, d in enumerate(target):  # a symbol in the same place as in the input: 0 copies it
        if isinstance(d, str) and k < len(source) and source[k] == d:
            target[k] = 0
    symbols = [k for k, d in enumerate(target) if isinstance(d, str)]
    if len(symbols) == 1 and -1 not in target:
        target[symbols[0]] = -1  # the one dimension left to infer
    return b.add("Reshape", [ins[0], b.shape_tensor(target)]), _dtype(node)


@_rule("transpose")
def _transpose(b, node, ins):
    return b.add("Transpose", ins, perm=list(node.attrs["perm"])), _dtype(node)


@_rule("concatenate")
def _concatenate(b, node, ins):
    return b.add("Concat", ins, axis=node.attrs["axis"]), _dtype(node)


@_rule("slice")
def _slice(b, node, ins):
    slices = node.attrs["slices"]
    shape = node.inputs[0].type.shape
    axes, starts, ends, steps = [], [], [], []
    for axis, ((start, stop, step), n) in enumerate(zip(slices, shape)):
        if (start, stop, step) == (0, n, 1):
            continue  # the whole axis (also where its size is a symbol)
        if isinstance(start, str) or isinstance(stop, str) and (start, step) != (0, 1):
            raise _no_mapping(node, "a slice bound depends on the batch size")
        if isinstance(stop, str):
            stop = _INT64_MAX
        elif step < 0 and stop < 0:
            stop = _INT64_MIN  # slice.indices() gives -1 for "down to index 0 inclusive"
        axes.append(axis), starts.append(start), ends.append(stop), steps.append(step)
    if not axes:
        return b.add("Identity", ins), _dtype(node)
    return b.add("Slice", [ins[0], b.ints(starts), b.ints(ends), b.ints(axes), b.ints(steps)]), _dtype(node)


@_rule("index")
def _index(b, node, ins):
    out = ins[0]
    for i in node.attrs["indices"]:  # each scalar index removes the leading axis
        out = b.add("Gather", [out, b.const(np.asarray(i, np.int64))], axis=0)
    return (out if node.attrs["indices"] else b.add("Identity", ins)), _dtype(node)


@_rule("gather")
def _gather(b, node, ins):
    x, *idx = node.inputs
    axis, k = node.attrs["axis"], len(idx)
    if k == 1:
        return b.add("Gather", ins, axis=axis), _dtype(node)
    # x[:, ..., i1, ..., ik, ...] with k index arrays: GatherND on the indexed axes moved to
    # the front (it checks bounds and wraps negative indices as NumPy does), moved back after
    ndim, out_shape = x.type.ndim, node.outputs[0].type.shape
    front = list(range(axis, axis + k)) + list(range(axis)) + list(range(axis + k, ndim))
    data = b.add("Transpose", [ins[0]], perm=front) if front != list(range(ndim)) else ins[0]
    batch = b.shape_tensor(out_shape[axis:len(out_shape) - (ndim - axis - k)])
    last = b.ints([-1])
    columns = [b.add("Unsqueeze", [b.add("Expand", [b.cast(name, v.type.dtype, "int64"), batch]), last])
               for name, v in zip(ins[1:], idx)]
    out = b.add("GatherND", [data, b.add("Concat", columns, axis=-1)])
    nb = len(out_shape) - (ndim - k)  # result now: batch, pre, post -> pre, batch, post
    back = list(range(nb, nb + axis)) + list(range(nb)) + list(range(nb + axis, len(out_shape)))
    return (b.add("Transpose", [out], perm=back) if back != list(range(len(out_shape))) else out), _dtype(node)


@_rule("matmul")
def _matmul(b, node, ins):
    dtype = _dtype(node)
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    add = b.fold.get(node)
    if node.inputs[0].type.ndim == 2 and dtype in ("float32", "float64"):
        inputs = list(ins)
        if add is not None:
            bias = add.inputs[1] if add.inputs[0] is node.outputs[0] else add.inputs[0]
            inputs.append(b.names[bias])
        return b.add("Gemm", inputs, transA=int(ta), transB=int(tb)), dtype
    ndim = node.inputs[0].type.ndim
    swap = list(range(ndim - 2)) + [ndim - 1, ndim - 2]
    a = b.add("Transpose", [ins[0]], perm=swap) if ta else ins[0]
    c = b.add("Transpose", [ins[1]], perm=swap) if tb else ins[1]
    work = b.compute_dtype("MatMul", dtype, node)
    return b.add("MatMul", [b.cast(a, dtype, work), b.cast(c, dtype, work)]), work


_REDUCE = {"sum": "ReduceSum", "prod": "ReduceProd", "mean": "ReduceMean", "max": "ReduceMax",
           "min": "ReduceMin"}


@_rule(*_REDUCE)
def _reduce(b, node, ins):
    op_type, axes, keepdims = _REDUCE[node.op], node.attrs["axes"], node.attrs["keepdims"]
    src, out = _dtype(node), node.outputs[0].type.dtype
    # sum/prod accumulate in int64, mean in float64 (NumPy): the input is cast first
    work = b.compute_dtype(op_type, out, node)
    x = b.cast(ins[0], src, work)
    if not axes:
        return b.add("Identity", [x]), work
    result = _reduce_node(b, op_type, x, axes, keepdims)
    if node.op in ("max", "min") and work.startswith("float"):
        # a NaN wins, as in NumPy (onnxruntime's ReduceMax/ReduceMin skip it)
        nan = _any_nan(b, x, work, axes, keepdims)
        result = b.add("Where", [nan, b.const(np.asarray(np.nan, work)), result])
    return result, work


def _reduce_node(b, op_type, x, axes, keepdims):
    if b.opset >= 18 or op_type == "ReduceSum":  # (axes became an input)
        return b.add(op_type, [x, b.ints(axes)], keepdims=int(keepdims))
    return b.add(op_type, [x], axes=list(axes), keepdims=int(keepdims))


def _any_nan(b, x, dtype, axes, keepdims):
    """Booleans: does the slice of ``x`` reduced over ``axes`` hold a NaN?"""
    flags = b.cast(b.add("IsNaN", [x]), "bool", dtype)
    return b.cast(_reduce_node(b, "ReduceMax", flags, axes, keepdims), dtype, "bool")


@_rule("argmax", "argmin")
def _argmax(b, node, ins):
    op_type = "ArgMax" if node.op == "argmax" else "ArgMin"
    dtype, axis, keepdims = _dtype(node), node.attrs["axes"][0], int(node.attrs["keepdims"])
    work = b.compute_dtype(op_type, dtype, node)
    x = b.cast(ins[0], dtype, work)
    result = b.add(op_type, [x], axis=axis, keepdims=keepdims)
    if work.startswith("float"):  # the first NaN wins, as in NumPy (onnxruntime skips NaN)
        flags = b.cast(b.add("IsNaN", [x]), "bool", "int32")
        first_nan = b.add("ArgMax", [flags], axis=axis, keepdims=keepdims)
        result = b.add("Where", [_any_nan(b, x, work, (axis,), keepdims), first_nan, result])
    return result, "int64"


@_rule("cumsum")
def _cumsum(b, node, ins):
    src, out = _dtype(node), node.outputs[0].type.dtype
    work = b.compute_dtype("CumSum", out, node)
    return b.add("CumSum", [b.cast(ins[0], src, work), b.const(np.asarray(node.attrs["axis"], np.int64))],
                 reverse=int(node.attrs["reverse"])), work
