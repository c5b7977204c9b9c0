"""Autodiff as a graph transform: gradient, grad, value_and_grad, higher order, errors.

The op-by-op finite-difference sweep lives in test_grad_ops.py; here are the
user-facing behaviours of issue 3: the seed examples against analytic
derivatives, an MLP against hand-derived NumPy gradients, composition (grad of
grad, gc.trace(gc.grad(f)), grad inside a trace), argnums, has_aux, pytrees,
PyTorch's conventions at kinks and ties, numerically stable rules at huge
logits, and the bad-input errors. Every compiled function here is compiled
once (a distinct graph costs Numba time), and values are varied afterwards.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import graphc as gc
from graphc.testing import check_grads
from conftest import interpret_raw


def rosenbrock(x):
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def interpreted(traced_fn, *args):
    """Run what ``traced_fn`` traces through the NumPy interpreter (no compile)."""
    return interpret_raw(traced_fn, *args)


# -- the seed examples ----------------------------------------------------------------
def test_rosenbrock_grad_and_value_and_grad():
    x = np.array([-1.0, 2.0])
    g = gc.grad(rosenbrock)(x)
    assert isinstance(g, np.ndarray) and g.dtype == np.float64 and g.shape == (2,)
    np.testing.assert_array_equal(g, [396.0, 200.0])
    value, g2 = gc.value_and_grad(rosenbrock)(x)
    assert value == 104.0 and np.asarray(value).shape == ()
    np.testing.assert_array_equal(g2, [396.0, 200.0])


def test_matlab_style_gradient_inside_trace_with_python_floats():
    def my_loss(x1, x2):
        y = (x2 - x1 ** 2) ** 2 + (1 - x1) ** 2
        dydx1, dydx2 = gc.gradient(y, x1, x2)
        return y, dydx1, dydx2

    f = gc.trace(my_loss)
    loss, d1, d2 = f(2.0, 2.0)
    assert (loss, d1, d2) == (5.0, 18.0, -4.0)
    for x1, x2 in [(-1.5, 0.5), (0.3, 3.0), (1.0, 1.0)]:  # same signature: no recompile
        loss, d1, d2 = f(x1, x2)
        np.testing.assert_allclose(loss, (x2 - x1 ** 2) ** 2 + (1 - x1) ** 2, rtol=1e-14)
        np.testing.assert_allclose(d1, -4 * x1 * (x2 - x1 ** 2) - 2 * (1 - x1), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(d2, 2 * (x2 - x1 ** 2), rtol=1e-14, atol=1e-14)
    assert f.signatures == 1
    # gradients of its outputs (which include gradients) against finite differences
    check_grads(my_loss, (2.0, 2.0), order=2)


def test_gradient_single_x_intermediate_and_unrelated_values():
    def f(x, w):
        h = np.sin(x) * 3.0                 # an intermediate value
        y = np.sum(h ** 2)
        gh = gc.gradient(y, h)              # its own cotangent: 2h
        gx = gc.gradient(y, x)              # a single x gives a single array
        gw = gc.gradient(y, w)              # y does not depend on w: zeros
        return gh, gx, gw

    x, w = np.array([0.5, -1.0, 2.0]), np.array([[1.0, 2.0]])
    gh, gx, gw = interpreted(f, x, w)
    h = np.sin(x) * 3
    np.testing.assert_allclose(gh, 2 * h, rtol=1e-14)
    np.testing.assert_allclose(gx, 2 * h * 3 * np.cos(x), rtol=1e-14)
    np.testing.assert_array_equal(gw, np.zeros((1, 2)))


# -- an MLP with softmax cross-entropy against hand-derived gradients ---------------
def mlp_loss(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    z = h @ params["W2"] + params["b2"]
    return -np.mean(np.sum(gc.one_hot(y, 3, x.dtype) * gc.log_softmax(z), axis=1))


def mlp_reference(params, x, y):
    """Forward and backward by hand in float64 NumPy."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    x = x.astype(np.float64)
    n = x.shape[0]
    h = np.tanh(x @ p["W1"] + p["b1"])
    z = h @ p["W2"] + p["b2"]
    logp = special.log_softmax(z, axis=1)
    loss = -np.mean(logp[np.arange(n), y])
    dz = (np.exp(logp) - np.eye(3)[y]) / n
    da = (dz @ p["W2"].T) * (1 - h ** 2)
    return loss, {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_two_layer_mlp_against_hand_derived_gradients(dtype, rtol):
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(4, 5)), "b1": rng.normal(size=5),
              "W2": rng.normal(size=(5, 3)), "b2": rng.normal(size=3)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    x, y = rng.normal(size=(6, 4)).astype(dtype), rng.integers(0, 3, size=6)
    vg = gc.value_and_grad(mlp_loss)
    for step in range(2):
        loss, grads = vg(params, x, y)
        want_loss, want = mlp_reference(params, x, y)
        assert np.asarray(loss).dtype == dtype
        np.testing.assert_allclose(loss, want_loss, rtol=rtol)
        assert set(grads) == set(params)
        for k in params:
            assert grads[k].dtype == dtype and grads[k].shape == params[k].shape, k
            np.testing.assert_allclose(grads[k], want[k], rtol=rtol * 10, atol=rtol, err_msg=k)
        params = {k: v - dtype(0.5) * grads[k] for k, v in params.items()}  # a step: new values
    assert vg.signatures == 1


# -- composition and higher order ----------------------------------------------------------
def test_grad_of_grad_gives_a_hessian_row():
    x = np.array([-1.0, 2.0])
    row0 = gc.grad(lambda x: gc.grad(rosenbrock)(x)[0])(x)
    # H = [[1200 x0^2 - 400 x1 + 2, -400 x0], [-400 x0, 200]]
    np.testing.assert_allclose(row0, [1200 * 1 - 400 * 2 + 2, 400.0])


def test_full_hessian_and_third_order_in_one_trace():
    def derivatives(x, t):
        hess = np.stack([gc.grad(lambda x: gc.grad(rosenbrock)(x)[i])(x) for i in range(2)])
        quartic = lambda t: t ** 4          # noqa: E731
        d3 = gc.grad(gc.grad(gc.grad(quartic)))(t)
        d4 = gc.grad(gc.grad(gc.grad(gc.grad(quartic))))(t)
        return hess, d3, d4

    f = gc.trace(derivatives)
    for x0, x1, t in [(-1.0, 2.0, 2.0), (0.5, -0.25, -1.5)]:
        hess, d3, d4 = f(np.array([x0, x1]), t)
        np.testing.assert_allclose(hess, [[1200 * x0 ** 2 - 400 * x1 + 2, -400 * x0], [-400 * x0, 200]],
                                   rtol=1e-13)
        np.testing.assert_allclose(d3, 24 * t, rtol=1e-13)
        np.testing.assert_allclose(d4, 24.0, rtol=1e-13)


def test_second_derivatives_are_finite_at_zero_for_pow_and_prod():
    # d/dy x**y = x**y log x is 0 at x = 0 (PyTorch); its own derivatives must not be 0 * inf = NaN
    def hessian_of(f, *args):
        n = len(args)
        rows = [gc.grad(lambda *a, i=i: gc.grad(f, argnums=tuple(range(n)))(*a)[i], argnums=tuple(range(n)))
                for i in range(n)]
        return lambda *a: [list(r(*a)) for r in rows]

    h = interpreted(gc.trace(hessian_of(lambda x, y: x ** y, 0.0, 2.0)), 0.0, 2.0)
    np.testing.assert_array_equal(np.reshape(h, (2, 2)), [[2.0, 0.0], [0.0, 0.0]])
    # prod with one zero: the Hessian is the product of the other entries, not NaN
    x = np.array([0.0, 2.0, 3.0])
    rows = [interpreted(gc.grad(lambda x, i=i: gc.grad(np.prod)(x)[i]), x)[0] for i in range(3)]
    np.testing.assert_array_equal(rows, [[0.0, 3.0, 2.0], [3.0, 0.0, 0.0], [2.0, 0.0, 0.0]])


def test_trace_of_grad_and_grad_inside_trace():
    x = np.array([-1.0, 2.0])
    traced = gc.trace(gc.grad(rosenbrock))
    np.testing.assert_array_equal(traced(x), [396.0, 200.0])

    @gc.trace
    def step(x, lr):
        value, g = gc.value_and_grad(rosenbrock)(x)
        return x - lr * g, value

    new_x, value = step(x, 0.001)
    assert value == 104.0
    np.testing.assert_allclose(new_x, x - 0.001 * np.array([396.0, 200.0]))


def test_argnums_tuple_and_python_float_arguments():
    def f(x, y, z):
        return np.sum(x * y) + z ** 2

    x, y = np.array([1.0, 2.0]), np.array([3.0, -4.0])
    gx, gz = gc.grad(f, argnums=(0, 2))(x, y, 1.5)
    np.testing.assert_array_equal(gx, y)
    assert gz == 3.0
    value, gy = gc.value_and_grad(f, argnums=1)(x, y, 1.5)
    assert value == 1 * 3 - 2 * 4 + 2.25
    np.testing.assert_array_equal(gy, x)
    (single,) = gc.grad(f, argnums=(1,))(x, y, 1.5)  # a 1-tuple gives a 1-tuple
    np.testing.assert_array_equal(single, x)


def test_has_aux():
    def f(x):
        pred = np.tanh(x)
        return np.sum(pred ** 2), {"pred": pred, "norm": np.sum(x * x)}

    x = np.array([0.5, -0.25])
    g, aux = gc.grad(f, has_aux=True)(x)
    pred = np.tanh(x)
    np.testing.assert_allclose(g, 2 * pred * (1 - pred ** 2), rtol=1e-14)
    np.testing.assert_allclose(aux["pred"], pred, rtol=1e-14)
    assert aux["norm"] == 0.3125
    (value, aux2), g2 = gc.value_and_grad(f, has_aux=True)(x)
    np.testing.assert_allclose(value, np.sum(pred ** 2), rtol=1e-14)
    np.testing.assert_allclose(g2, g, rtol=1e-14)
    np.testing.assert_allclose(aux2["pred"], pred, rtol=1e-14)


def test_pytree_arguments_nested_lists_and_dicts():
    def f(params, scale):
        (a, b), c = params["pair"], params["c"]
        return scale * (np.sum(a ** 2) + np.sum(np.sin(b)) + c ** 3)

    params = {"pair": [np.array([1.0, -2.0]), np.array([[0.5], [1.5]])], "c": 2.0}
    g = gc.grad(f)(params, 0.5)
    assert isinstance(g, dict) and isinstance(g["pair"], list)
    np.testing.assert_allclose(g["pair"][0], 0.5 * 2 * params["pair"][0])
    np.testing.assert_allclose(g["pair"][1], 0.5 * np.cos(params["pair"][1]))
    assert g["c"] == 0.5 * 3 * 4.0
    check_grads(f, (params, 0.5), order=2)


# -- conventions (PyTorch's) ---------------------------------------------------------------
CONVENTION_ARGS = (
    np.array([-1.0, 0.0, 2.0]),                 # relu: relu'(0) = 0
    np.array([-2.0, 0.0, 3.0]),                 # abs: abs'(0) = 0
    np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0]]),   # max over rows: ties split
    np.array([2.0, -1.0, 5.0, -1.0]),           # min: ties split
    np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0]),      # maximum(e, f), minimum(e, f)
    np.array([-1.0, -0.5, 0.0, 0.5, 1.0]),      # clip(-0.5, 0.5): boundaries pass the gradient
    np.array([4.0, 1.0, 4.0]),                  # max of all elements, ties split
)


def conventions(a, b, c, d, e, f, x, m):
    return (np.sum(gc.relu(a)) + np.sum(np.abs(b)) + np.sum(np.max(c, axis=1) * np.array([1.0, 2.0]))
            + np.min(d) + np.sum(np.maximum(e, f)) + 10 * np.sum(np.minimum(e, f))
            + np.sum(np.clip(x, -0.5, 0.5)) + np.max(m))


CONVENTION_GRADS = (
    [0.0, 0.0, 1.0],
    [-1.0, 0.0, 1.0],
    [[0.0, 0.5, 0.5, 0.0], [0.5, 0.5, 0.5, 0.5]],
    [0.0, 0.5, 0.0, 0.5],
    [0.5 + 5.0, 1.0, 0.5 + 5.0],
    [0.5 + 5.0, 10.0, 0.5 + 5.0],
    [0.0, 1.0, 1.0, 1.0, 0.0],
    [0.5, 0.0, 0.5],
)


def test_conventions_at_kinks_and_ties_compiled_and_interpreted():
    grad_fn = gc.grad(conventions, argnums=tuple(range(8)))
    for got in (grad_fn(*CONVENTION_ARGS), interpreted(grad_fn, *CONVENTION_ARGS)):
        for k, (g, want) in enumerate(zip(got, CONVENTION_GRADS)):
            np.testing.assert_array_equal(g, want, err_msg=f"argument {k}")
    # max of all elements with keepdims, min along axis 0 split four ways
    g = interpreted(gc.grad(lambda x: np.sum(np.min(x, axis=0, keepdims=True))), np.ones((4, 2)))[0]
    np.testing.assert_array_equal(g, np.full((4, 2), 0.25))


def test_integer_and_boolean_inputs_get_no_gradient():
    def f(x, k, mask):
        y = x * k + np.where(mask, x ** 2, 0.0)      # k int, mask bool: operands with no gradient
        y = y + x.astype(np.int64) * 100.0            # through an integer cast: no gradient either
        return np.sum(y * (k > 0))

    x, k, mask = np.array([0.5, 1.5, 2.5]), np.array([1, 2, 0]), np.array([True, False, True])
    g = interpreted(gc.grad(f), x, k, mask)[0]
    np.testing.assert_allclose(g, (k + np.where(mask, 2 * x, 0.0)) * (k > 0))


def test_float32_gradients_stay_float32():
    x = np.array([0.5, -1.0], np.float32)
    g = interpreted(gc.grad(lambda x: np.sum(np.exp(x) * 2.0 + np.mean(x) / 3)), x)[0]
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * np.exp(x) + 1 / 3, rtol=1e-6)  # mean/3 is added to both entries


# -- numerically stable rules at huge logits -----------------------------------------------
def stable_losses(z, w, y):
    n = z.shape[0]
    return (np.sum(gc.sigmoid(z)) + np.sum(gc.log_softmax(z) * w) + np.sum(gc.logsumexp(z, axis=1))
            + np.sum(gc.softmax(z) * w) - np.sum(np.take_along_axis(gc.log_softmax(z), y[:, None], axis=1)) / n)


def stable_reference(z, w, y):
    z, w = z.astype(np.float64), w.astype(np.float64)
    n = z.shape[0]
    s, p, logp = special.expit(z), special.softmax(z, axis=1), special.log_softmax(z, axis=1)
    value = (s.sum() + (logp * w).sum() + special.logsumexp(z, axis=1).sum() + (p * w).sum()
             - logp[np.arange(n), y].sum() / n)
    pw = p * w
    grad = (s * (1 - s) + w - p * w.sum(1, keepdims=True) + p + pw - p * pw.sum(1, keepdims=True)
            + (p - np.eye(z.shape[1])[y]) / n)
    return value, grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_rules_at_large_logits(dtype):
    z = np.array([[1000.0, -1000.0, 999.0, 0.0], [-1000.0, -998.0, -1000.0, -999.5],
                  [3.0, -2.0, 0.5, 1.0]], dtype)
    w = np.array([[0.5, -1.0, 2.0, 1.0], [1.0, 0.0, -0.5, 0.25], [1.0, 1.0, 1.0, -1.0]], dtype)
    y = np.array([1, 0, 3])
    value, g = gc.value_and_grad(stable_losses)(z, w, y)
    assert np.isfinite(value) and np.all(np.isfinite(g)) and g.dtype == dtype
    want_value, want = stable_reference(z, w, y)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(value, want_value, rtol=tol)
    np.testing.assert_allclose(g, want, rtol=tol, atol=tol)
    # the same through the interpreter, and at +-1e3 in every entry
    big = np.where(np.arange(12).reshape(3, 4) % 2, 1e3, -1e3).astype(dtype)
    iv, ig = interpreted(gc.value_and_grad(stable_losses), big, w, y)
    assert np.isfinite(iv) and np.all(np.isfinite(ig))
    np.testing.assert_allclose(ig, stable_reference(big, w, y)[1], rtol=tol, atol=tol)


def test_second_derivatives_stay_finite_at_large_logits():
    z = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -998.0, -999.0]])
    hvp = gc.grad(lambda z: np.sum(gc.grad(lambda z: np.sum(gc.logsumexp(z, axis=1)) + np.sum(gc.sigmoid(z)))(z) * z))
    h = interpreted(hvp, z)[0]
    assert np.all(np.isfinite(h))


# -- bad input -------------------------------------------------------------------------------
def test_gradient_of_a_non_scalar_says_a_scalar_is_needed_and_the_shape():
    with pytest.raises(gc.TraceError, match=r"scalar.*\(3,\)"):
        gc.trace(lambda x: gc.gradient(x * 2, x))(np.ones(3))
    with pytest.raises(gc.TraceError, match=r"scalar.*\(2, 3\)"):
        gc.grad(lambda x: x * 2)(np.ones((2, 3)))


def test_a_constant_function_has_zero_gradients_and_a_non_number_is_an_error():
    g = interpreted(gc.grad(lambda x, y: 3.0, argnums=(0, 1)), np.ones(2), 2.0)
    np.testing.assert_array_equal(g[0], [0.0, 0.0])
    assert g[1] == 0.0
    with pytest.raises(gc.TraceError, match="must return a scalar.*returned a str"):
        gc.grad(lambda x: "loss")(np.ones(2))


def test_differentiating_an_integer_or_boolean_argument_names_it():
    with pytest.raises(gc.TraceError, match=r"'counts'.*int64"):
        gc.grad(lambda counts: np.sum(counts * 2.0))(np.arange(3))
    with pytest.raises(gc.TraceError, match=r"'mask'.*bool"):
        gc.grad(lambda x, mask: np.sum(np.where(mask, x, 0.0)), argnums=(0, 1))(np.ones(2), np.ones(2, bool))
    with pytest.raises(gc.TraceError, match=r"'n'.*int"):
        gc.value_and_grad(lambda x, n: x * n, argnums=1)(2.0, 3)
    with pytest.raises(gc.TraceError, match=r"argument 2 .*int64"):
        gc.trace(lambda x, k: gc.gradient(np.sum(x * k), x, k))(np.ones(3), np.arange(3))


def test_x_that_is_not_a_traced_value_is_a_trace_error():
    with pytest.raises(gc.TraceError, match="not a traced value"):
        gc.trace(lambda x: gc.gradient(np.sum(x ** 2), np.ones(3)))(np.ones(3))
    with pytest.raises(gc.TraceError, match="not a traced value"):
        gc.trace(lambda x: gc.gradient(np.sum(x ** 2), 2.0))(np.ones(3))
    with pytest.raises(gc.TraceError, match="traced"):
        gc.gradient(np.float64(3.0), np.ones(3))  # outside any trace
    with pytest.raises(gc.TraceError, match="not differentiable|dtype"):
        gc.trace(lambda x: gc.gradient(np.sum(x > 0), x))(np.ones(3))


def test_nan_from_a_domain_error_propagates():
    x = np.array([-1.0, 2.0])
    value, g = gc.value_and_grad(lambda x: np.sum(np.log(x) ** 2 + np.sqrt(x)))(x)
    assert np.isnan(value)
    assert np.isnan(g[0])                         # no silent zero where the function is NaN
    np.testing.assert_allclose(g[1], 2 * np.log(2.0) / 2 + 0.5 / np.sqrt(2.0), rtol=1e-14)
    gi = interpreted(gc.grad(lambda x: np.sum(np.log(x) ** 2 + np.sqrt(x))), x)[0]
    assert np.isnan(gi[0]) and np.isfinite(gi[1])
    # a NaN reaching a max reduction poisons its gradient, as in PyTorch
    gm = interpreted(gc.grad(lambda x: np.max(np.log(x))), x)[0]
    assert np.all(np.isnan(gm))


def test_a_node_with_a_region_is_differentiated_through_its_body():
    """A node that owns a region and has no vjp rule of its own (a fused group) is differentiated
    generically: its body is replayed and differentiated, every output's cotangent counted."""
    from graphc.ir import parse
    from graphc.trace import Tracer, current_builder
    from graphc.testing import check_grads

    body = parse("""graph body(%0:f64[3], %1:f64[3]):
  %2:f64[3] = mul(%0, %1)
  %3:f64[3] = tanh(%2)
  %4:f64[] = sum(%3, axes=(0,), keepdims=False)
  return %4, %2""")

    def f(x, y):
        builder = current_builder()
        region = body.clone()
        node = builder.graph.add_node("fused", [x.value, y.value], {}, [v.type for v in region.outputs],
                                      None, [region])
        total, prod = (Tracer(v, builder) for v in node.outputs)
        return total * 2.0 + np.sum(prod * prod)

    def numpy_f(x, y):
        return np.sum(np.tanh(x * y)) * 2.0 + np.sum((x * y) ** 2)

    x, y = np.array([0.3, -1.2, 2.0]), np.array([1.5, 0.25, -0.5])
    value, (gx, gy) = gc.value_and_grad(f, argnums=(0, 1))(x, y)
    assert np.isclose(value, numpy_f(x, y))
    sech2 = 1 - np.tanh(x * y) ** 2
    np.testing.assert_allclose(gx, 2 * sech2 * y + 2 * x * y * y, rtol=1e-12)
    np.testing.assert_allclose(gy, 2 * sech2 * x + 2 * x * x * y, rtol=1e-12)
    check_grads(f, (x, y), order=2)


def _region_node(body_text, *operands):
    """``fused(*operands)`` running ``body_text``, recorded into the current trace."""
    from graphc.ir import parse
    from graphc.trace import Tracer, current_builder

    builder = current_builder()
    body = parse(body_text)
    node = builder.graph.add_node("fused", [x.value for x in operands], {}, [v.type for v in body.outputs],
                                  None, [body])
    return [Tracer(v, builder) for v in node.outputs]


def test_a_region_is_differentiated_only_back_to_its_operands(monkeypatch):
    """The replayed body is walked back to the node's operands and no further: an operand computed
    from another operand (fused(x, exp(x))) and an operand passed twice each count once (they used
    to count two and four times)."""
    monkeypatch.setenv("GRAPHC_PASS_ERRORS", "raise")
    body = """graph body(%0:f64[3], %1:f64[3]):
  %2:f64[3] = mul(%0, %1)
  %3:f64[] = sum(%2, axes=(0,), keepdims=False)
  return %3, %2"""

    def derived(x):  # sum(x * e^x) + sum(x * e^x) + sum(e^x * e^x)
        e = np.exp(x)
        total, prod = _region_node(body, x, e)
        return total + np.sum(prod) + np.sum(e * e)

    def repeated(x):  # sum(x * x) + sum(x * x)
        total, prod = _region_node(body, x, x)
        return total + np.sum(prod)

    x = np.array([0.3, -1.2, 2.0])
    e = np.exp(x)
    np.testing.assert_allclose(gc.grad(derived, device="numpy")(x), 2 * (e + x * e) + 2 * e * e, rtol=1e-12)
    np.testing.assert_allclose(gc.grad(repeated, device="numpy")(x), 4 * x, rtol=1e-12)
