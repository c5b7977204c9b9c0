"""Edge cases a hostile review found in the NumPy surface: each once gave a silently different
result (or a raw Numba error), now NumPy's result or a clear error."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.testing import check_grads


def test_eigh_of_a_matmul_result():  # a generated temporary once shadowed the output buffer
    x = np.array([[3.0, 1, 0], [0, 2, 1], [1, 0, 4]])
    for fn in (lambda x: np.linalg.eigvalsh(x @ x.T), lambda x: np.linalg.eigvalsh(x.T @ x)):
        np.testing.assert_allclose(gc.trace(fn)(x), fn(x), rtol=1e-12)
    np.testing.assert_allclose(gc.grad(lambda x: np.sum(np.linalg.eigvalsh(x @ x.T)))(x), 2 * x, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(nan=np.inf), dict(nan=-np.inf, neginf=5.0), dict(posinf=1.0), {}])
def test_nan_to_num_masks_come_from_the_input(kw):
    x = np.array([np.nan, 2.0, np.inf, -np.inf])
    np.testing.assert_array_equal(gc.trace(lambda x: np.nan_to_num(x, **kw))(x), np.nan_to_num(x, **kw))


def test_nan_to_num_in_place_is_refused():
    with pytest.raises(gc.TraceError, match="copy=False"):
        gc.trace(lambda x: np.nan_to_num(x, copy=False))(np.ones(2))


def test_sinc_second_derivative_at_zero():
    x = np.array([0.0, 1e-9, 0.3, -2.5, 1e-5])
    np.testing.assert_array_equal(gc.trace(np.sinc)(x), np.sinc(x))
    check_grads(np.sinc, (x,), order=2)


@pytest.mark.parametrize("fn", [np.sin, np.exp, lambda x: -x, lambda x: x - x, lambda x: x ** x, np.square,
                                np.sign])
def test_booleans_where_numpy_raises_or_gives_a_small_dtype(fn):
    with pytest.raises(TypeError, match="boolean"):
        gc.trace(fn)(np.array([True, False]))


def test_dtype_arguments_graphc_cannot_follow_are_refused():
    x = np.arange(4)
    with pytest.raises(gc.TraceError, match="int64"):
        gc.trace(lambda x: np.cumsum(x, dtype=np.int32))(x)
    with pytest.raises(gc.TraceError, match="float dtype"):
        gc.trace(lambda x: np.var(x, dtype=np.int64))(x)
    with pytest.raises(TypeError, match="casting"):
        gc.trace(lambda x: np.einsum("i,i", x, x, dtype=np.float32))(np.ones(3))


@pytest.mark.parametrize("ord", [2, -2, "nuc"])
def test_matrix_norms_from_singular_values(ord):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    for axis, keepdims in (((1, 2), False), ((2, 0), True)):
        got = gc.trace(lambda x: np.linalg.norm(x, ord, axis, keepdims))(x)
        np.testing.assert_allclose(got, np.linalg.norm(x, ord, axis, keepdims), rtol=1e-12)
    check_grads(lambda x: np.linalg.norm(x, ord, (1, 2)), (x,), order=1)


def test_np_float32_casts_where_called_and_stays_a_type_elsewhere():
    def f(x):
        assert x.dtype.type is np.float64 and issubclass(np.float32, np.floating)
        return np.float32(x.sum()), np.int64(x[0]), np.float64(np.maximum(x, 1).sum()), np.zeros(2, np.float32)

    x = np.arange(3.0)
    for got, want in zip(gc.trace(f)(x), f(x)):
        assert np.asarray(got).dtype == np.asarray(want).dtype and np.array_equal(got, want)


@pytest.mark.parametrize("fn", [lambda b: b ** 2, lambda b: +b, lambda b: np.arctan2(b, b), lambda b: np.hypot(b, b)])
def test_more_boolean_refusals(fn):
    with pytest.raises(TypeError, match="boolean"):
        gc.trace(fn)(np.array([True, False]))


def test_an_error_raised_in_compiled_code_names_the_users_line():
    f = gc.trace(lambda a: np.linalg.inv(a) * 2)
    f(np.eye(2))
    with pytest.raises(np.linalg.LinAlgError) as err:
        f(np.zeros((2, 2)))
    assert any("inv at test_numpy_edge_cases.py:" in note for note in err.value.__notes__)


def test_constant_lists_as_operands_np_take_on_a_plain_table_and_allclose_as_a_bool():
    def f(img, labels):
        return ((img - [0.485, 0.456]) / (0.2, 0.3), np.take(np.eye(3), labels, axis=0), img @ [1.0, 2.0],
                np.allclose(img, img))

    args = (np.ones((2, 2), np.float32), np.array([0, 2]))
    for got, want in zip(gc.trace(f)(*args), f(*args)):
        assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype
        assert np.allclose(got, want)
