"""The op registry: every primitive is one ``Op`` record, defined once in graphc/ops/.

An op carries everything the rest of graphc needs to know about it:

* ``infer``: the shape/dtype rule, ``infer(in_types, **attrs) -> TensorType | list``,
  raising ``ShapeError`` (the tracer adds the user's line);
* ``reference``: the NumPy implementation, the oracle ``interpret.py`` runs;
* ``vjp``: the reverse-mode rule, written with traced functions so gradients are
  graphs: ``vjp(g, *inputs, out=out, **attrs) -> one cotangent (or None) per input``;
* the lowering: ``scalar`` for elementwise ops (a scalar expression that fusion
  pastes into a loop body) or ``emit`` for the rest (writes statements).

An op whose nodes own regions (nested graphs, ``Node.regions``) gets them as a
``regions=`` argument: its shape rule sees the region Graphs, its reference gets
one callable per region (the interpreter runs the region).

The registry also holds the public functions op families offer each other
(``export``; read through ``graphc.ops.prims``), so no family imports another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from graphc.ir import TensorType  # (the IR below; nothing above)
from graphc.ops.scalar import MATH

ELEMENTWISE = "elementwise"
REDUCTION = "reduction"


@dataclass(frozen=True, eq=False)
class Op:
    name: str
    kind: str
    infer: Callable
    reference: Callable
    vjp: Callable | None = None
    scalar: Callable | None = None
    emit: Callable | None = None
    # ops whose result is never differentiable (comparisons, argmax, casts to int...)
    differentiable: bool = True
    # the lowering returns a view of input 0's buffer (when both have rank >= 1), no copy:
    # memory planning keeps that buffer alive as long as the view
    view: bool = False
    # the lowering may raise at run time (an index out of range, Numba's integer power): a bool
    # or ``fn(node) -> bool``. Memory planning writes no State in place at or before such a
    # node, so a call that fails leaves every State unchanged (see ``can_raise``)
    raises: object = False
    # the op has an effect beyond its outputs (gc.print): passes never remove, merge, fold or
    # reorder it, even when nothing uses its result
    effect: bool = False
    # an elementwise op's math, named in the backend-neutral scalar vocabulary (scalar.MATH):
    # each backend maps the name to its own implementation (vectorized functions on CPU)
    math: str | None = None
    # why a float elementwise op deliberately has no vectorizable math (its loop stays scalar)
    scalar_reason: str | None = None
    # a reduction as data (``Reduction``): read by fusion and by every backend's schedule
    reduction: "Reduction | None" = None
    # the result depends only on the operands' types, not their values (``count``): constant
    # folding evaluates it once shapes are concrete; until then (a graph generic in its batch
    # size, graphc/symbolic.py) it stays a node
    shape_only: bool = False


@dataclass(frozen=True)
class Reduction:
    """What a reduction computes, as data: each element of the reduced axes is folded into an
    accumulator by ``combine``, which starts from ``initial(dtype)``; ``finalize`` turns the
    accumulator into the result. Backends pick the loop strategy (graphc/backend/schedule.py)."""

    # how one element folds in: "add", "mul", "max", "min" (NaN wins and stays, as in NumPy),
    # or "argmax"/"argmin" (the index of the first extreme, NaN first)
    combine: str
    accumulator: Callable  # input dtype -> the dtype the accumulator holds
    initial: Callable  # input dtype -> the accumulator's start value
    finalize: str = "none"  # "none", or "mean": the accumulator divided by the element count
    fusable: bool = True  # may end a fused group (arg-reductions track an index: they may not)


OPS: dict[str, Op] = {}
# NumPy function object -> graphc implementation (for Tracer.__array_function__)
NUMPY_FUNCTIONS: dict = {}
# ufunc name -> graphc implementation (for Tracer.__array_ufunc__)
UFUNCS: dict = {}
# NumPy objects that dispatch to no protocol (np.asarray, np.array, np.float32, np.r_...) ->
# what traced user code sees in their place (graphc.capture hands these out for ``np.*``)
NUMPY_OVERRIDES: dict = {}
# NumPy's scalar types -> what ``np.float32(x)`` calls in traced user code (the type itself
# everywhere else: graphc.capture tells the two uses apart)
NUMPY_CALL_OVERRIDES: dict = {}


def register(name, kind, infer, reference, **rules) -> Op:
    if name in OPS:
        raise ValueError(f"op {name!r} is registered twice")
    if rules.get("math") is not None and rules["math"] not in MATH:
        raise ValueError(f"op {name!r} names math {rules['math']!r}, which is not in the scalar "
                         f"vocabulary (graphc.ops.scalar.MATH)")
    op = Op(name, kind, infer, reference, **rules)
    OPS[name] = op
    return op


def get(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"graphc has no op named {name!r}") from None


def can_raise(node) -> bool:
    """Can the generated code of ``node`` raise when it runs (a node with regions: any of theirs)?"""
    if any(can_raise(n) for region in node.regions for n in region.nodes):
        return True
    rule = get(node.op).raises
    return bool(rule(node)) if callable(rule) else bool(rule)


def has_effect(node) -> bool:
    """Does ``node`` have an effect beyond its outputs (gc.print), itself or in its regions?"""
    return get(node.op).effect or any(has_effect(n) for region in node.regions for n in region.nodes)


def infer_types(name: str, in_types, attrs, regions=()) -> list[TensorType]:
    """The output types op ``name`` gives for these operand types, attributes (and regions)."""
    extra = {"regions": list(regions)} if regions else {}
    out = get(name).infer(list(in_types), **attrs, **extra)
    return [out] if isinstance(out, TensorType) else list(out)


def infer_node(node) -> list[TensorType]:
    """What ``node``'s op says its outputs are: the type rule ``Graph.verify`` takes."""
    return infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.regions)


def verify(graph):
    """``graph.verify`` with every registered op's type rule; returns the graph."""
    return graph.verify(infer_node)


# name -> public function an op family offers the others (graphc.ops.prims reads them)
FUNCTIONS: dict[str, Callable] = {}


def export(*functions, **named):
    """Offer these functions to the other op families under their ``__name__`` (or the given names)."""
    for fn in functions:
        named[fn.__name__] = fn
    for name, fn in named.items():
        if FUNCTIONS.get(name, fn) is not fn:
            raise ValueError(f"two op families export a function named {name!r}")
        FUNCTIONS[name] = fn


def implements(*numpy_functions, ufunc: str | None = None):
    """Decorator: route these NumPy functions (and/or a ufunc) on tracers to ``fn``."""

    def deco(fn):
        for f in numpy_functions:
            NUMPY_FUNCTIONS[f] = fn
        if ufunc:
            UFUNCS[ufunc] = fn
        return fn

    return deco
