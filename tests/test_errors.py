"""Bad input gives clear graphc errors, never a Numba traceback.

Shape errors name the op, both shapes and the user's file:line; bad arguments
are TypeErrors naming the parameter; data-dependent control flow and
unsupported NumPy functions are TraceErrors naming the line and the function;
a Numba failure is a CompileError naming the node and the saved source.
"""
from __future__ import annotations

import inspect
import os
import re

import numpy as np
import pytest

import graphc as gc
from graphc.ops import registry
from graphc.ops.elementwise import infer_same
from graphc.trace import bind
from conftest import raw_graph

X = np.ones((3, 4), np.float32)
W = np.ones((5, 2), np.float32)
HERE = os.path.abspath(__file__)


def line_of(fn, text):
    """Absolute line number of the first line of ``fn``'s source containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return start + k
    raise AssertionError(f"{text!r} not in the source of {fn.__name__}")


def assert_names_line(exc, fn, text):
    message = str(exc.value)
    assert f"{HERE}:{line_of(fn, text)}" in message, message
    assert text in message, message  # the source text of that line is quoted


# -- shape errors ------------------------------------------------------------------
def test_matmul_shape_mismatch():
    def f(x, w):
        return np.tanh(x @ w)

    with pytest.raises(gc.ShapeError) as exc:
        gc.trace(f)(X, W)
    message = str(exc.value)
    assert "matmul" in message
    assert "[3,4]" in message and "[5,2]" in message
    assert_names_line(exc, f, "x @ w")


def test_matmul_shape_mismatch_in_eager_trace_and_batched():
    def f(x, w):
        return np.matmul(x, w)

    with pytest.raises(gc.ShapeError) as exc:
        gc.trace(f, np.ones((2, 3, 4)), np.ones((3, 5, 2)))
    assert "matmul" in str(exc.value) and "[2,3,4]" in str(exc.value) and "[3,5,2]" in str(exc.value)
    assert_names_line(exc, f, "np.matmul(x, w)")
    with pytest.raises(gc.ShapeError, match="batch"):
        gc.trace(f, np.ones((2, 3, 4)), np.ones((3, 4, 2)))
    with pytest.raises(gc.ShapeError, match=r"\[4\].*\[3\]|\[4\].*aligned"):
        raw_graph(lambda a, b: a @ b, np.ones(4), np.ones(3))
    with pytest.raises(gc.ShapeError, match="at least 1-D"):
        raw_graph(lambda a, b: a @ b, np.ones(4), 2.0)


def test_broadcast_mismatch():
    def f(x, y):
        z = x * 2.0
        return z + y

    with pytest.raises(gc.ShapeError) as exc:
        gc.trace(f)(X, np.ones(5, np.float32))
    message = str(exc.value)
    assert "add" in message and "[3,4]" in message and "[5]" in message
    assert_names_line(exc, f, "z + y")


@pytest.mark.parametrize("fn, pattern", [
    (lambda x: np.where(x > 0, x, np.ones(5)), "where"),
    (lambda x: np.maximum(x, np.ones((2, 4))), "maximum"),
    (lambda x: x.reshape(5, 3), "reshape"),
    (lambda x: x.reshape(-1, 5), "reshape"),
    (lambda x: np.concatenate([x, np.ones((2, 3))]), "concatenate"),
    (lambda x: np.stack([x, x.T]), "stack"),
    (lambda x: np.broadcast_to(x, (4, 4)), "broadcast_to"),
    (lambda x: np.transpose(x, (0, 0)), "transpose"),
    (lambda x: np.sum(x, axis=2), "axis 2"),
    (lambda x: np.sum(x, axis=(0, 0)), "duplicate"),
    (lambda x: np.squeeze(x, 0), "squeeze"),
    (lambda x: np.max(x[:0], axis=0), "zero-size"),
    (lambda x: np.argmax(x[:, :0], axis=1), "zero-size"),
    (lambda x: np.take_along_axis(x, np.zeros(3, np.int64), axis=0), "take_along_axis"),
    (lambda x: gc.gather(x, np.zeros(2), axis=0), "integer"),
    (lambda x: np.concatenate([x[0, 0], x[0, 1]]), "zero-dimensional"),
])
def test_other_shape_errors(fn, pattern):
    with pytest.raises(gc.ShapeError, match=pattern) as exc:
        raw_graph(fn, X)
    assert "test_errors.py" in str(exc.value)


def test_shape_errors_are_value_errors_and_graphc_errors():
    assert issubclass(gc.ShapeError, ValueError) and issubclass(gc.ShapeError, gc.GraphcError)
    assert issubclass(gc.TraceError, TypeError) and issubclass(gc.TraceError, gc.GraphcError)
    assert issubclass(gc.CompileError, gc.GraphcError)


def test_index_errors():
    with pytest.raises(IndexError, match="out of bounds"):
        raw_graph(lambda x: x[3], X)
    with pytest.raises(IndexError, match="out of bounds"):
        raw_graph(lambda x: x[:, np.array([0, 4])], X)
    with pytest.raises(IndexError, match="too many indices"):
        raw_graph(lambda x: x[0, 0, 0], X)
    with pytest.raises(IndexError, match="ellipsis"):
        raw_graph(lambda x: x[..., 0, ...], X)
    with pytest.raises(IndexError, match="integer"):
        raw_graph(lambda x: x[np.array([0.5])], X)
    with pytest.raises(IndexError, match="out of bounds"):
        raw_graph(lambda x: np.take(x, [12]), X)


# -- arguments ------------------------------------------------------------------------
def _two(x, w):
    return x


@pytest.mark.parametrize("args, kwargs, names", [
    ((X,), {}, ["'w'"]),
    ((X, W, W), {}, ["x", "w"]),
    ((X, W), {"v": W}, ["'v'"]),
])
def test_wrong_number_of_arguments(args, kwargs, names):
    with pytest.raises(TypeError) as exc:
        gc.trace(_two)(*args, **kwargs)
    for name in names:
        assert name in str(exc.value), str(exc.value)


@pytest.mark.parametrize("bad, dtype", [
    (X.astype(np.complex64), "complex64"),
    (X.astype(object), "object"),
    (X.astype(np.float16), "float16"),
    (X.astype(np.uint8), "uint8"),
    (np.float16(1.0), "float16"),
    (np.uint16(1), "uint16"),
    (np.complex128(1j), "complex"),
    (1 + 2j, "complex"),
    (np.array(["a", "b"]), "<U1"),
    (np.datetime64("2020-01-01"), "datetime64"),
    (2**70, "int64"),
    (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "masked"),
])
def test_unsupported_argument_types_name_the_parameter(bad, dtype):
    with pytest.raises(TypeError) as exc:
        gc.trace(_two)(X, bad)
    message = str(exc.value)
    assert "'w'" in message and dtype in message, message


def test_unsupported_argument_types_in_pytrees_and_keywords():
    def f(x, params):
        return x

    with pytest.raises(TypeError, match=r"params\['b'\].*float16"):
        gc.trace(f)(X, {"a": X, "b": X.astype(np.float16)})
    with pytest.raises(TypeError, match=r"params\[1\].*object"):
        gc.trace(f)(X, [X, X.astype(object)])
    # keyword arguments in any order name the right parameter
    with pytest.raises(TypeError, match=r"'params'.*complex"):
        gc.trace(f)(params=X.astype(np.complex128), x=X)
    with pytest.raises(TypeError, match=r"'x'.*complex"):
        gc.trace(f)(params=X, x=X.astype(np.complex128))

    def g(*xs):
        return xs[0]

    with pytest.raises(TypeError, match=r"xs\[1\].*float16"):
        gc.trace(g)(X, X.astype(np.float16))


def test_bad_trace_options():
    with pytest.raises(TypeError, match="function"):
        gc.trace(3)
    with pytest.raises(ValueError, match="O7"):
        gc.trace(lambda x: x, passes="O7")
    with pytest.raises(ValueError, match="device"):
        gc.trace(lambda x: x, device="tpu")


# -- data-dependent control flow ----------------------------------------------------------
def _if(x):
    if x.sum() > 0:
        return x
    return -x


def _while(x):
    while x.max() > 1:
        x = x / 2
    return x


def _and(x):
    return (x > 0) and (x < 1)


def _float(x):
    scale = float(x.sum())
    return x * scale


def _int(x):
    n = int(x[0, 0])
    return x * n


def _range(x):
    return [x * i for i in range(x.sum())]


def _item(x):
    return x * x.max().item()


def _asarray(x):
    return x.__array__() + 1  # what a library does to turn its argument into an ndarray


def _setitem(x):
    x[0] = 1.0
    return x


@pytest.mark.parametrize("fn, text, what", [
    (_if, "if x.sum() > 0:", "control flow"),
    (_while, "while x.max() > 1:", "control flow"),
    (_and, "return (x > 0) and (x < 1)", "control flow"),
    (_float, "scale = float(x.sum())", "float()"),
    (_int, "n = int(x[0, 0])", "int()"),
    (_range, "for i in range(x.sum())", "index or size"),
    (_item, "x.max().item()", "item()"),
    (_asarray, "x.__array__() + 1", "NumPy array"),
    (_setitem, "x[0] = 1.0", "immutable"),
])
def test_data_dependent_python_is_a_trace_error(fn, text, what):
    with pytest.raises(gc.TraceError) as exc:
        gc.trace(fn)(X)
    message = str(exc.value)
    assert what in message, message
    assert_names_line(exc, fn, text)
    if fn in (_if, _while, _and, _float, _int):
        assert "gc.where" in message, message


def test_trace_error_is_not_raised_for_static_values():
    def f(x, flag, n):
        if flag:  # a Python bool: static
            return x * n
        return x

    assert raw_graph(f, X, True, 3).nodes


# -- unsupported functions --------------------------------------------------------------------
@pytest.mark.parametrize("fn, name", [
    (lambda x: np.fft.fft(x), "np.fft.fft"),
    (lambda x: np.linalg.qr(x[:3, :3]), "np.linalg.qr"),  # (inv and the like trace now)
    (lambda x: np.searchsorted(x[0], x[1]), "np.searchsorted"),
    (lambda x: np.histogram(x), "np.histogram"),
    (lambda x: np.unique(x), "np.unique"),
    (lambda x: np.cbrt(x), "np.cbrt"),
    (lambda x: np.add.reduce(x), "np.add.reduce"),
    (lambda x: np.exp(x, out=np.empty_like(X)), "np.exp"),
    (lambda x: np.sum(x, out=np.empty(4)), "out"),
    (lambda x: np.sum(x, where=x > 0), "where"),
    (lambda x: x.reshape(4, 3, order="F"), "order"),
    (lambda x: x[x > 0], "boolean mask"),
    (lambda x: np.where(x > 0), "np.where(condition)"),
    (lambda x: np.fmod(x, 2), "np.fmod"),
    (lambda x: x.__setitem__(0, 1.0), "immutable"),
])
def test_unsupported_functions_are_trace_errors_naming_them(fn, name):
    with pytest.raises(gc.TraceError) as exc:
        gc.trace(fn)(X)
    assert name in str(exc.value), str(exc.value)
    assert "test_errors.py" in str(exc.value)


def test_mixing_two_traces():
    holder = []

    def outer(x):
        holder.append(x)
        return gc.trace(inner_uses_outer)(x * 2)

    def inner_uses_outer(y):
        return y

    raw_graph(outer, X)
    with pytest.raises(gc.TraceError, match="escaped"):
        raw_graph(lambda x: x + holder[0], X)


# -- Numba compile failures -----------------------------------------------------------------
@pytest.fixture
def broken_op():
    """A test-only elementwise op whose scalar lowering is invalid code for Numba."""
    name = "test_broken"
    registry.register(name, registry.ELEMENTWISE, infer_same, np.negative,
                      scalar=lambda c, a: f"no_such_function_anywhere({a})")
    try:
        yield name
    finally:
        del registry.OPS[name]


@pytest.mark.parametrize("passes", ["O0", "O2"])
def test_numba_failure_is_a_compile_error_naming_the_node(broken_op, passes):
    def f(x):
        y = np.tanh(x)
        return bind(broken_op, y) * 2.0

    traced = gc.trace(f, passes=passes)
    with pytest.raises(gc.CompileError) as exc:
        traced(X)
    message = str(exc.value)
    assert broken_op in message, message  # the node (or the fused group holding it)
    assert "test_errors.py:" in message, message  # with the user's line
    path = re.search(r"saved at (\S+\.py)", message).group(1)
    assert os.path.exists(path)
    with open(path) as fh:
        assert "no_such_function_anywhere" in fh.read()
    assert "Traceback" not in message


def test_compile_error_from_invalid_python(broken_op):
    op = registry.OPS[broken_op]
    object.__setattr__(op, "scalar", lambda c, a: f"({a} +* 1")  # a frozen record; removed after the test
    with pytest.raises(gc.CompileError, match="saved at"):
        gc.trace(lambda x: bind(broken_op, x), passes="O0")(X)
