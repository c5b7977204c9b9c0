"""NumPy's shape functions traced unchanged (issue 12, section 3 "Shape").

tile, repeat, pad, roll, flip(lr/ud), rot90, swapaxes, moveaxis, rollaxis, atleast_1d/2d/3d,
split and friends, column_stack, append, hstack/vstack/dstack (dtype=, casting=), linspace with
traced ends, select, and integer-array indices separated by a slice: every case is checked
through the interpreter against eager NumPy (no compile), the groups below are also compiled
(one graph each), the gradients pass check_grads(order=2), and bad arguments raise what NumPy
raises.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from graphc.testing import check_grads
from conftest import Case, assert_same, check_cases, check_interpreted, raw_graph

R = np.random.default_rng(12)


def F(shape, dtype="float64"):
    return R.uniform(-3, 3, size=shape).astype(dtype)


def I(shape, dtype="int64"):
    return R.integers(-5, 6, size=shape).astype(dtype)


x = F((3, 4), "float32")     # the workhorse: float32 must stay float32
x3 = F((2, 3, 4))
v = F((5,))
v6 = F((6,))
s = np.float64(1.5)           # 0-d
i = I((2, 3), "int32")
e = F((0, 3))                 # empty
special = np.array([np.inf, -np.inf, np.nan, -0.0, 1.0])

GROUPS: dict[str, list[Case]] = {
    "tile-repeat-pad": [
        Case("tile-int", lambda a: np.tile(a, 2), (x,)),
        Case("tile-more-reps", lambda a: np.tile(a, (2, 1, 3)), (x,)),
        Case("tile-1d-2d", lambda a: np.tile(a, (2, 2)), (v,)),
        Case("tile-0d", lambda a: np.tile(a, 3), (s,)),
        Case("tile-empty", lambda a: np.tile(a, (2, 2)), (e,)),
        Case("tile-zero", lambda a: np.tile(a, 0), (x,)),
        Case("tile-int32", lambda a: np.tile(a, (1, 2)), (i,)),
        Case("repeat-flat", lambda a: np.repeat(a, 2), (x,)),
        Case("repeat-axis", lambda a: np.repeat(a, 2, axis=1), (x,)),
        Case("repeat-list", lambda a: np.repeat(a, [1, 0, 2], axis=0), (x,)),
        Case("repeat-many-runs", lambda a: np.repeat(a, np.array([0, 1, 2, 3, 1])), (v,)),
        Case("repeat-one-count", lambda a: np.repeat(a, [2], axis=-1), (i,)),
        Case("repeat-0d", lambda a: np.repeat(a, 3), (s,)),
        Case("repeat-method", lambda a: a.repeat(2, axis=0), (x,)),
        Case("repeat-special", lambda a: np.repeat(a, 2), (special,)),
        Case("pad-int", lambda a: np.pad(a, 1), (x,)),
        Case("pad-pair", lambda a: np.pad(a, (1, 2)), (x,)),
        Case("pad-per-axis-value", lambda a: np.pad(a, ((0, 1), (2, 0)), constant_values=5), (x,)),
        Case("pad-per-axis-values", lambda a: np.pad(a, ((1, 1), (2, 1)), constant_values=((1, 2), (3, 4))), (x,)),
        Case("pad-inf", lambda a: np.pad(a, 2, constant_values=(np.inf, -np.inf)), (v,)),
        Case("pad-int-truncates", lambda a: np.pad(a, 1, constant_values=2.7), (i,)),
        Case("pad-traced-value", lambda a, c: np.pad(a, 1, constant_values=c), (x, np.float64(7.5))),
        Case("pad-edge", lambda a: np.pad(a, 2, mode="edge"), (x,)),
        Case("pad-reflect", lambda a: np.pad(a, ((1, 2), (3, 1)), mode="reflect"), (x,)),
        Case("pad-symmetric", lambda a: np.pad(a, ((1, 2), (3, 1)), mode="symmetric"), (x,)),
        Case("pad-wrap", lambda a: np.pad(a, ((1, 2), (3, 1)), mode="wrap"), (x,)),
        Case("pad-reflect-wide", lambda a: np.pad(a, (7, 9), mode="reflect"), (v,)),
        Case("pad-wrap-wide", lambda a: np.pad(a, (11, 6), mode="wrap"), (v,)),
        Case("pad-reflect-gather", lambda a: np.pad(a, ((0, 0), (20, 17)), mode="reflect"), (x[:, :3],)),
        Case("pad-reflect-singleton", lambda a: np.pad(a, 2, mode="reflect"), (F((1, 3)),)),
        Case("pad-edge-empty", lambda a: np.pad(a, ((0, 0), (1, 1)), mode="edge"), (e,)),
        Case("pad-constant-empty", lambda a: np.pad(a, 1), (e,)),
        Case("pad-dict", lambda a: np.pad(a, {1: (1, 2)}, mode="edge"), (x,)),
        Case("pad-0d", lambda a: np.pad(a, 2), (s,)),
        Case("pad-special", lambda a: np.pad(a, 3, mode="symmetric"), (special,)),
        Case("pad-reflect-odd", lambda a: np.pad(a, 2, mode="reflect", reflect_type="odd"), (x,)),
        Case("pad-reflect-odd-wide", lambda a: np.pad(a, (9, 13), mode="reflect", reflect_type="odd"), (v,), jit=False),
        Case("pad-symmetric-odd-int", lambda a: np.pad(a, ((1, 5), (6, 2)), mode="symmetric", reflect_type="odd"), (i,), jit=False),
        Case("pad-odd-singleton", lambda a: np.pad(a, 3, mode="reflect", reflect_type="odd"), (v[:1],)),
        Case("pad-maximum", lambda a: np.pad(a, 2, mode="maximum"), (x,)),
        Case("pad-minimum-length", lambda a: np.pad(a, ((1, 2), (3, 0)), mode="minimum", stat_length=2), (x,), jit=False),
        Case("pad-mean", lambda a: np.pad(a, 2, mode="mean", stat_length=(1, 3)), (v,)),
        Case("pad-mean-int-rounds-half-even", lambda a: np.pad(a, (2, 3), mode="mean", stat_length=2),
             (np.array([1, 2, 4, 7, 0, -3, -4]),)),
        Case("pad-linear_ramp", lambda a: np.pad(a, 3, mode="linear_ramp"), (x,)),
        Case("pad-linear_ramp-ends", lambda a: np.pad(a, 2, mode="linear_ramp", end_values=((1, 2), (3, 4))), (i,), jit=False),
        Case("pad-stat-empty", lambda a: np.pad(a, ((1, 1), (0, 0)), mode="mean"), (e.T,)),
    ],
    "roll-flip-axes-split": [
        Case("roll-flat", lambda a: np.roll(a, 1), (x,)),
        Case("roll-axis", lambda a: np.roll(a, -2, axis=1), (x,)),
        Case("roll-tuple", lambda a: np.roll(a, (1, 2), axis=(0, 1)), (x,)),
        Case("roll-same-axis", lambda a: np.roll(a, (1, 1), axis=(1, 1)), (x,)),
        Case("roll-wide", lambda a: np.roll(a, 7), (v,)),
        Case("roll-none", lambda a: np.roll(a, 5), (v,)),
        Case("roll-empty", lambda a: np.roll(a, 1, axis=0), (e,)),
        Case("flip-all", np.flip, (x,)),
        Case("flip-axis", lambda a: np.flip(a, 0), (x,)),
        Case("flip-tuple", lambda a: np.flip(a, (0, -1)), (x3,)),
        Case("fliplr", np.fliplr, (x,)),
        Case("flipud", np.flipud, (v,)),
        Case("flip-empty", lambda a: np.flip(a, 0), (e,)),
        Case("rot90", np.rot90, (x,)),
        Case("rot90-2", lambda a: np.rot90(a, 2), (x,)),
        Case("rot90-3", lambda a: np.rot90(a, 3), (x,)),
        Case("rot90-neg-axes", lambda a: np.rot90(a, -1, axes=(1, 0)), (x,)),
        Case("rot90-3d", lambda a: np.rot90(a, 1, axes=(0, 2)), (x3,)),
        Case("swapaxes", lambda a: np.swapaxes(a, 0, -1), (x3,)),
        Case("moveaxis", lambda a: np.moveaxis(a, 0, -1), (x3,)),
        Case("moveaxis-many", lambda a: np.moveaxis(a, [0, 1], [-1, -2]), (x3,)),
        Case("rollaxis", lambda a: np.rollaxis(a, 2), (x3,)),
        Case("rollaxis-start", lambda a: np.rollaxis(a, 0, 2), (x3,)),
        Case("atleast_1d", np.atleast_1d, (s,)),
        Case("atleast_2d", np.atleast_2d, (v,)),
        Case("atleast_2d-0d", np.atleast_2d, (s,)),
        Case("atleast_3d-1d", np.atleast_3d, (v,)),
        Case("atleast_3d-2d", np.atleast_3d, (x,)),
        Case("atleast_1d-several", lambda a, b, c: np.atleast_1d(a, b, c), (s, v, x)),
        Case("split-sections", lambda a: np.split(a, 3), (v6,)),
        Case("split-indices", lambda a: np.split(a, [1, 3], axis=1), (x,)),
        Case("array_split", lambda a: np.array_split(a, 3), (v,)),
        Case("array_split-negative", lambda a: np.array_split(a, [-1, 10]), (x,)),
        Case("array_split-more-than-size", lambda a: np.array_split(a, 5, axis=1), (x,)),
        Case("hsplit", lambda a: np.hsplit(a, 2), (x,)),
        Case("hsplit-1d", lambda a: np.hsplit(a, [2, 4]), (v6,)),
        Case("vsplit", lambda a: np.vsplit(a, [1]), (x,)),
        Case("dsplit", lambda a: np.dsplit(a, 2), (x3,)),
    ],
    "join-select-linspace-index": [
        Case("column_stack", lambda a, b: np.column_stack([a, b]), (v, v * 2)),
        Case("column_stack-mixed", lambda a, b: np.column_stack([a, b]), (v[:3], x[:, :2])),
        Case("column_stack-0d", lambda a: np.column_stack([a, a]), (s,)),
        Case("append-flat", lambda a, b: np.append(a, b), (x, v)),
        Case("append-axis", lambda a: np.append(a, a, axis=0), (x,)),
        Case("append-scalar", lambda a: np.append(a, 1.5), (i,)),
        Case("append-list", lambda a: np.append(a, [[1, 2, 3, 4]], axis=0), (x,)),
        Case("hstack-0d", lambda a, b: np.hstack([a, b]), (s, np.float64(-2.0))),
        Case("hstack-1d", lambda a: np.hstack([a, a]), (v,)),
        Case("hstack-2d", lambda a, b: np.hstack([a, b]), (x, x3[0].astype("float32"))),
        Case("hstack-promotes", lambda a, b: np.hstack([a, b]), (x, F((3, 2)))),
        Case("vstack-1d", lambda a: np.vstack([a, a * 2]), (v,)),
        Case("vstack-0d", lambda a, b: np.vstack([a, b]), (s, np.float64(3.0))),
        Case("vstack-mixed", lambda a, b: np.vstack([a, b]), (x, F((4,), "float32"))),
        Case("dstack", lambda a: np.dstack([a, a]), (v,)),
        Case("vstack-dtype", lambda a: np.vstack([a, a], dtype=np.float32), (i,)),
        Case("hstack-casting", lambda a, b: np.hstack([a, b], dtype=np.float32, casting="same_kind"), (v, v6)),
        Case("concatenate-dtype", lambda a, b: np.concatenate([a, b], dtype=np.int32), (i, I((2, 3)))),
        Case("concatenate-unsafe", lambda a: np.concatenate([a, a], dtype=np.int64, casting="unsafe"), (x,)),
        Case("stack-dtype", lambda a: np.stack([a, a], axis=-1, dtype=np.float64), (x,)),
        Case("select", lambda a: np.select([a > 0, a < -1], [a, a * 2], 0), (x,)),
        Case("select-strong-default", lambda a: np.select([a > 0], [a], np.float64(1)), (x,)),
        Case("select-float-default", lambda a: np.select([a > 0], [a], 2.5), (i,)),
        Case("select-scalars", lambda a: np.select([a > 0, a < -2], [1, 2]), (i,)),
        Case("select-broadcast", lambda c, a: np.select([c, c < 1], [a, -a], a * 3), (F((3, 1)) > 0, F((4,)))),
        Case("linspace", lambda a, b: np.linspace(a, b, 5), (np.float64(-1.0), np.float64(2.0))),
        Case("linspace-f32", lambda b: np.linspace(0.1, b, 7), (np.float32(2.5),)),
        Case("linspace-no-endpoint", lambda a, b: np.linspace(a, b, 4, endpoint=False), (np.float64(0.3), np.float64(1.1))),
        Case("linspace-one", lambda a, b: np.linspace(a, b, 1), (np.float64(0.3), np.float64(1.1))),
        Case("linspace-zero", lambda a, b: np.linspace(a, b, 0), (np.float64(0.3), np.float64(1.1))),
        Case("linspace-retstep", lambda a, b: np.linspace(a, b, 6, retstep=True), (np.float64(0.3), np.float64(1.1))),
        Case("linspace-arrays", lambda a, b: np.linspace(a, b, 4, axis=-1), (v[:3], v[2:])),
        Case("linspace-same-ends", lambda a, b: np.linspace(a, b, 4), (np.array([1.0, 2.0]), np.array([1.0, 5.0]))),
        Case("linspace-int-dtype", lambda a, b: np.linspace(a, b, 7, dtype=np.int64), (np.float64(-3.0), np.float64(2.0))),
        Case("linspace-dtype", lambda a, b: np.linspace(a, b, 5, dtype=np.float32), (np.float64(0.1), np.float64(0.7))),
        Case("linspace-inf", lambda a, b: np.linspace(a, b, 3), (np.float64(-0.0), np.float64(np.inf))),
        Case("linspace-int-ends", lambda a, b: np.linspace(a, b, 5), (np.int64(-2), np.int64(7))),
        Case("index-separated", lambda a: a[[0, 1], :, [1, 2]], (x3,)),
        Case("index-int-separated", lambda a: a[0, :, [1, 2]], (x3,)),
        Case("index-adjacent", lambda a: a[:, 0, [1, 3]], (x3,)),
        Case("index-none-separates", lambda a: a[[0, 1], None, [0, 1]], (x3,)),
        Case("index-none-first", lambda a: a[None, [1, 0], :, [0, 3]], (x3,)),
        Case("index-none-adjacent", lambda a: a[None, [1, 0]], (x3,)),
        Case("index-broadcast-slice", lambda a: a[[[0], [1]], 1:3, [0, 2, 3]], (x3,)),
        Case("index-traced", lambda a, k: a[k, ::-1, k], (x3, np.array([[1, 0], [0, -1]]))),
    ],
}


def _eager(fn):
    def run(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return fn(*args)
    return run


def test_long_rearrangements_are_one_gather():
    """Many pieces (a wide reflection) make one gather, not dozens of slices."""
    ops = [n.op for n in raw_graph(lambda a: np.pad(a, (20, 17), mode="reflect"), v[:3]).nodes]
    assert ops.count("gather") == 1 and "slice" not in ops


def test_interpreter_matches_numpy():
    """Every case: the traced graph (as traced and after the passes) interpreted == NumPy."""
    check_interpreted([c for cases in GROUPS.values() for c in cases])


@pytest.mark.parametrize("name", list(GROUPS))
def test_compiled_matches_numpy(name):
    """Each group is one compiled graph: compiled == interpreter == NumPy (variations of a case
    already compiled are left to the interpreter: jit=False)."""
    check_cases([c for c in GROUPS[name] if c.jit])


def test_row_stack_passes_casting_through():
    with pytest.warns(DeprecationWarning):
        check_interpreted([Case("row_stack", lambda a: np.row_stack([a, a], casting="safe"), (v,),
                                ref=_eager(lambda a: np.row_stack([a, a], casting="safe")))])


def test_pad_empty_mode_has_numpy_shape_and_dtype():
    """mode='empty' leaves the pad undefined in NumPy: graphc fills zeros."""
    out = gc.interpret(raw_graph(lambda a: np.pad(a, ((1, 2), (0, 3)), mode="empty"), x), x)[0]
    want = np.pad(x, ((1, 2), (0, 3)), mode="empty")
    assert out.dtype == want.dtype and out.shape == want.shape
    np.testing.assert_array_equal(out[1:4, :4], x)


def test_results_are_strong_arrays():
    """A traced Python scalar is weak, but NumPy's shape functions return arrays: float64 here."""
    f32 = F((3,), "float32")
    check_interpreted([
        Case("tile-of-python-float", lambda a, t: np.tile(t, 3) * a, (f32, 2.5)),
        Case("hstack-of-python-floats", lambda a, t: np.hstack([t, t, t]) * a, (f32, 2.5)),
        Case("stack-of-python-floats", lambda a, t: np.stack([t, t, t]) * a, (f32, 2.5)),
        Case("select-of-python-float", lambda a, t: np.select([a > 0], [t], 0) * a, (f32, 2.5)),
        Case("pad-of-python-float", lambda a, t: np.pad(np.atleast_1d(t), 1) * a, (f32, 2.5)),
    ])


# -- bad arguments raise what NumPy raises ----------------------------------------------------
BAD = [
    ("swapaxes-axis", lambda a: np.swapaxes(a, 0, 3), x3),
    ("moveaxis-axis", lambda a: np.moveaxis(a, 3, 0), x3),
    ("flip-axis", lambda a: np.flip(a, 2), x),
    ("rollaxis-start", lambda a: np.rollaxis(a, 0, 5), x3),
    ("split-unequal", lambda a: np.split(a, 2), v),
    ("array_split-zero", lambda a: np.array_split(a, 0), v),
    ("hsplit-0d", lambda a: np.hsplit(a, 1), s),
    ("vsplit-1d", lambda a: np.vsplit(a, 1), v),
    ("dsplit-2d", lambda a: np.dsplit(a, 1), x),
    ("pad-mode", lambda a: np.pad(a, 1, mode="bogus"), x),
    ("pad-kwarg", lambda a: np.pad(a, 1, mode="edge", constant_values=1), x),
    ("pad-float-width", lambda a: np.pad(a, 1.5), x),
    ("pad-negative", lambda a: np.pad(a, -1), x),
    ("pad-edge-empty-axis", lambda a: np.pad(a, 1, mode="edge"), e),
    ("pad-int-overflow", lambda a: np.pad(a, 1, constant_values=2 ** 40), i),
    ("pad-stat-length-zero", lambda a: np.pad(a, 1, mode="maximum", stat_length=0), x),
    ("pad-stat-length-negative", lambda a: np.pad(a, 1, mode="mean", stat_length=-1), x),
    ("fliplr-1d", np.fliplr, v),
    ("flipud-0d", np.flipud, s),
    ("rot90-same-axes", lambda a: np.rot90(a, axes=(0, 0)), x),
    ("rot90-axes-range", lambda a: np.rot90(a, axes=(0, 2)), x),
    ("concatenate-casting-no", lambda a, b: np.concatenate([a, b], casting="no"), x, x.astype("float64")),
    ("concatenate-to-int", lambda a, b: np.concatenate([a, b], dtype=np.int64), x, x),
    ("concatenate-bad-casting", lambda a: np.concatenate([a, a], casting="bogus"), x),
    ("vstack-safe", lambda a: np.vstack([a, a], dtype=np.float32, casting="safe"), v),
    ("stack-shapes", lambda a, b: np.stack([a, b]), x, x.T),
    ("concatenate-0d", lambda a: np.concatenate([a, a]), s),
    ("select-not-bool", lambda a: np.select([a], [a]), x),
    ("select-lengths", lambda a: np.select([a > 0], [a, a]), x),
    ("select-empty", lambda a: np.select([], []), x),
    ("repeat-lengths", lambda a: np.repeat(a, [1, 2], axis=0), x),
    ("repeat-negative", lambda a: np.repeat(a, -1), x),
    ("repeat-axis", lambda a: np.repeat(a, 2, axis=2), x),
    ("tile-negative", lambda a: np.tile(a, -1), x),
    ("roll-2d-shift", lambda a: np.roll(a, [[1]], axis=0), x),
    ("linspace-negative-num", lambda a, b: np.linspace(a, b, -1), s, s),
]


@pytest.mark.parametrize("name,fn,args", [pytest.param(n, f, a, id=n) for n, f, *a in BAD])
def test_bad_arguments_raise_as_numpy(name, fn, args):
    with pytest.raises(Exception) as eager:
        _eager(fn)(*args)
    with pytest.raises(type(eager.value)) as traced:
        raw_graph(fn, *args)
    assert str(eager.value).split(" (at ")[0] in str(traced.value) or isinstance(traced.value, gc.ShapeError)


@pytest.mark.parametrize("fn,args,what", [
    (lambda a, k: np.roll(a, k), (v, np.int64(1)), "shift must be static"),
    (lambda a, k: np.repeat(a, k), (v, np.array([1, 2, 1, 1, 1])), "repeats must be static"),
    (lambda a, k: np.tile(a, k), (v, np.int64(2)), "reps must be static"),
    (lambda a, k: np.pad(a, k), (v, np.int64(1)), "pad_width must be static"),
    (lambda a: np.pad(a, 1, mode="median"), (v,), "mode='median'"),
    (lambda a: np.pad(a, 1, mode=lambda *args: None), (v,), "function as mode"),
])
def test_untraceable_arguments_raise_trace_errors(fn, args, what):
    with pytest.raises(gc.TraceError, match=what.replace("(", r"\(")):
        raw_graph(fn, *args)


# -- gradients ----------------------------------------------------------------------------
G = np.random.default_rng(5)
a34, a234, a5 = G.standard_normal((3, 4)), G.standard_normal((2, 3, 4)), G.standard_normal(5)
GRADS = [
    ("tile", lambda a: np.sin(np.tile(a, (2, 1, 2))), (a34,)),
    ("repeat-int", lambda a: np.sin(np.repeat(a, 2, axis=1)), (a34,)),
    ("repeat-counts", lambda a: np.sin(np.repeat(a, [2, 0, 1, 3, 1])), (a5,)),
    ("repeat-gather", lambda a: np.sin(np.repeat(a, [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2], axis=None)), (a34,)),
    ("pad-constant", lambda a: np.sin(np.pad(a, ((1, 0), (2, 1)), constant_values=0.5)) * a[0, 0], (a34,)),
    ("pad-traced-constant", lambda a, c: np.sin(np.pad(a, 1, constant_values=c) * c), (a34, np.float64(0.7))),
    ("pad-edge", lambda a: np.sin(np.pad(a, 2, mode="edge")), (a34,)),
    ("pad-reflect", lambda a: np.sin(np.pad(a, ((1, 2), (3, 1)), mode="reflect")), (a34,)),
    ("pad-symmetric-wide", lambda a: np.sin(np.pad(a, (8, 11), mode="symmetric")), (a5,)),
    ("pad-reflect-gather", lambda a: np.sin(np.pad(a, (13, 15), mode="reflect")), (a5[:3],)),
    ("pad-reflect-odd", lambda a: np.sin(np.pad(a, (7, 9), mode="symmetric", reflect_type="odd")), (a5,)),
    ("pad-maximum-mean", lambda a: np.sin(np.pad(a, ((1, 2), (2, 1)), mode="maximum", stat_length=2))
     + np.pad(a, ((1, 2), (2, 1)), mode="mean") ** 2, (a34,)),
    ("pad-linear_ramp", lambda a: np.sin(np.pad(a, (3, 2), mode="linear_ramp", end_values=(1, -2))), (a34,)),
    ("pad-wrap", lambda a: np.sin(np.pad(a, (2, 4), mode="wrap")), (a5,)),
    ("roll", lambda a: np.sin(np.roll(a, (1, -1), axis=(0, 1))) * np.arange(4.0), (a34,)),
    ("flip-rot90", lambda a: np.sin(np.rot90(np.flip(a, -1), 3)) * np.arange(3.0), (a34,)),
    ("moveaxis-rollaxis", lambda a: np.sin(np.moveaxis(a, 0, -1)) + np.cos(np.rollaxis(a, 2, 1)).sum(), (a234,)),
    ("atleast_3d", lambda a: np.sin(np.atleast_3d(a)) * np.arange(5.0)[:, None], (a5,)),
    ("split", lambda a: sum(np.sin(p) * k for k, p in enumerate(np.array_split(a, 3, axis=1))), (a34,)),
    ("column_stack-append", lambda a, b: np.sin(np.append(np.column_stack([a, b]), a)), (a5, a5[::-1] * 2)),
    ("hstack-vstack-0d", lambda a, b: np.sin(np.vstack([np.hstack([a, b, a * b]), np.hstack([b, a, a])])),
     (np.float64(0.3), np.float64(-1.2))),
    ("select", lambda a: np.select([a > 0.5, a < -0.5], [np.sin(a), a * a], np.cos(a)), (a34,)),
    ("linspace", lambda a, b: np.sin(np.linspace(a, b, 7)) * np.arange(7.0), (np.float64(-0.4), np.float64(1.3))),
    ("linspace-arrays", lambda a, b: np.sin(np.linspace(a, b, 4, endpoint=False, axis=1)), (a5, a5 * 2 + 1)),
    ("index-separated", lambda a: np.sin(a[[0, 1, 1], 1:, [3, 0, 3]]), (a234,)),
]


@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=n) for n, f, a in GRADS])
def test_gradients_order2(fn, args):
    check_grads(fn, args, order=2)


def test_compiled_gradient():
    """One compiled check of a mix (slices, broadcasts, gathers, concatenates in reverse mode)."""
    def f(a, b):
        return np.sum(np.sin(np.pad(np.roll(a, 1, axis=0), 1, mode="reflect")) * np.tile(b, (2, 2))[:5, :6]) \
            + np.sum(np.select([a > 0], [a * b], np.repeat(b, [1, 2, 1], axis=0)[:3]))
    check_grads(f, (a34[:3].copy(), G.standard_normal((3, 4))), order=1, compiled=True)


@pytest.mark.parametrize("fn,args", [pytest.param(f, a, id=n) for n, f, a in GRADS])
def test_float32_gradients_stay_float32(fn, args):
    """The same functions on float32 inputs: every gradient is float32 (no float64 leaks)."""
    args32 = tuple(np.asarray(a, np.float32) for a in args)

    def loss(*a):
        return np.sum(np.sin(fn(*a)))

    nums = tuple(range(len(args)))
    g32 = gc.interpret(raw_graph(gc.grad(loss, argnums=nums), *args32), *args32)
    g64 = gc.interpret(raw_graph(gc.grad(loss, argnums=nums), *args), *args)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32, f"a float32 input got a {a.dtype} gradient"
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * max(np.max(np.abs(b)), 1))


def test_functions_work_eagerly_on_plain_arrays():
    """gc.pad, gc.tile... called outside a trace give NumPy's arrays."""
    for fn, np_fn, args in [(gc.pad, np.pad, (v, (2, 1), "reflect")), (gc.tile, np.tile, (x, (2, 1))),
                            (gc.repeat, np.repeat, (v, [1, 0, 2, 1, 1])), (gc.roll, np.roll, (x, 1, 0)),
                            (gc.select, np.select, ([v > 0], [v], -1.0)), (gc.linspace, np.linspace, (0, 1, 4)),
                            (gc.rot90, np.rot90, (x,)), (gc.hstack, np.hstack, ([s, s],))]:
        got, want = fn(*args), np_fn(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@st.composite
def mixed_keys(draw, shape):
    """Keys mixing ints, slices, None, ... and integer arrays (adjacent or separated)."""
    items, dims = [], list(shape)
    while dims:
        n = dims.pop(0)
        kind = draw(st.sampled_from(["int", "slice", "array", "array", "none"]))
        if kind == "none":
            items.append(None)
            dims.insert(0, n)
        elif kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            items.append(draw(st.slices(n)))
        else:
            index_shape = draw(st.sampled_from([(2,), (1, 3), (3,), ()]))
            items.append(draw(hnp.arrays(np.int64, index_shape, elements=st.integers(-n, n - 1))))
    if not any(isinstance(k, np.ndarray) for k in items):
        items[0] = np.array([0, -1])
    if draw(st.booleans()):  # drop trailing items (they become full slices), or an ellipsis
        items = items[:draw(st.integers(1, len(items)))]
    return tuple(items)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
def test_interpreter_advanced_indexing_broadly(data, shape):
    """Integer arrays with ints, slices and None anywhere: NumPy's placement of the index dims."""
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    key = data.draw(mixed_keys(shape))
    try:
        want = x[key]
    except IndexError:  # index arrays that cannot be broadcast together
        return
    (got,) = gc.interpret(raw_graph(lambda x: x[key], x), x)
    assert_same(got, want, f"x{shape}[{key}]")
