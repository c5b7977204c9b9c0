"""Gradients of every differentiable op: ``check_grads(order=2)`` against finite differences.

Each case is a small function of random float64 arrays with random shapes that
broadcast; ``check_grads`` compares its reverse-mode gradient and its
Hessian-vector products (gc.grad of a function of gc.grad) with central finite
differences. The broad sweep runs through the NumPy interpreter on the traced
graph (forward and backward nodes exactly as gc.grad builds them, nothing
compiled); ``test_compiled_*`` run a few combined functions through the pass
pipeline and the Numba backend, one compile each.

Linear ops (slices, reshapes, sums) are wrapped in a nonlinearity so that the
second-order check has a Hessian to differentiate through their vjp rules.

``test_every_differentiable_op_has_a_gradient_test`` fails when a differentiable
op in the registry appears in no case.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ops import registry
from graphc.testing import GradientCheckError, check_grads
from graphc.trace import bind
from conftest import interpret_raw, raw_graph


# -- random shapes ---------------------------------------------------------------------
def rand_shape(rng, max_ndim=3):
    return tuple(int(n) for n in rng.integers(1, 5, size=int(rng.integers(0, max_ndim + 1))))


def broadcast_pair(rng):
    """Two shapes that broadcast to a common one: dropped leading dims, size-1 dims on either side."""
    full = rand_shape(rng)

    def partner():
        k = int(rng.integers(0, len(full) + 1))
        return tuple(1 if rng.random() < 0.3 else n for n in full[len(full) - k:])

    return partner(), partner()


def N(rng, shape):
    return rng.standard_normal(shape)


def U(rng, shape, lo, hi):
    return rng.uniform(lo, hi, size=shape)


def away(rng, shape, gap=0.1):
    """Normal-ish values at least ``gap`` from 0 (abs, sign, relu, division)."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0) * rng.uniform(gap, 2.0, size=shape)


# -- the cases: (id, ops the graph must contain, fn, args, check_grads options) ------------
CASES = []


def case(name, ops, fn, args, **options):
    CASES.append(pytest.param(fn, args, options, ops, id=name))


for seed in range(3):
    rng = np.random.default_rng(100 + seed)
    sa, sb = broadcast_pair(rng)
    case(f"add-{sa}-{sb}", {"add"}, lambda x, y: np.sin(x + y), (N(rng, sa), N(rng, sb)))
    case(f"sub-{sa}-{sb}", {"sub"}, lambda x, y: np.sin(x - y), (N(rng, sa), N(rng, sb)))
    case(f"mul-{sa}-{sb}", {"mul"}, lambda x, y: x * y, (N(rng, sa), N(rng, sb)))
    case(f"div-{sa}-{sb}", {"div"}, lambda x, y: x / y, (N(rng, sa), away(rng, sb, 0.5)))
    case(f"pow-{sa}-{sb}", {"pow"}, lambda x, y: x ** y, (U(rng, sa, 0.5, 2.0), N(rng, sb)))
    case(f"maximum-{sa}-{sb}", {"maximum"}, lambda x, y: np.maximum(x, y) ** 2, (N(rng, sa), N(rng, sb)))
    case(f"minimum-{sa}-{sb}", {"minimum"}, lambda x, y: np.minimum(x, y) ** 2, (N(rng, sa), N(rng, sb)))
    sc = broadcast_pair(rng)[0]
    case(f"where-{sa}-{sb}-{sc}", {"where"}, lambda c, x, y: np.where(c, x * x, np.sin(y)),
         (rng.random(sc) < 0.5, N(rng, sa), N(rng, sb)))
    case(f"clip-{sa}-{sb}-{sc}", {"clip"}, lambda x, lo, hi: np.clip(x, lo, hi) ** 2,
         (N(rng, sc), N(rng, sa) - 0.5, N(rng, sb) + 0.5))  # some lo > hi: hi wins, as np.clip

for seed in range(2):
    rng = np.random.default_rng(200 + seed)
    s = rand_shape(rng)
    case(f"neg-{s}", {"neg"}, lambda x: -x * x, (N(rng, s),))
    case(f"abs-{s}", {"abs"}, lambda x: np.abs(x) ** 3, (away(rng, s),))
    case(f"sign-{s}", {"sign"}, lambda x: np.sign(x) * x * x, (away(rng, s),))
    case(f"relu-{s}", {"relu"}, lambda x: gc.relu(x) ** 2, (away(rng, s),))
    case(f"exp-{s}", {"exp"}, np.exp, (N(rng, s),))
    case(f"log-{s}", {"log"}, np.log, (U(rng, s, 0.5, 3.0),))
    case(f"tanh-{s}", {"tanh"}, np.tanh, (N(rng, s),))
    case(f"sin-{s}", {"sin"}, np.sin, (N(rng, s),))
    case(f"cos-{s}", {"cos"}, np.cos, (N(rng, s),))
    case(f"sqrt-{s}", {"sqrt"}, np.sqrt, (U(rng, s, 0.5, 3.0),))
    case(f"sigmoid-{s}", {"sigmoid"}, gc.sigmoid, (N(rng, s) * 3,))
    case(f"square-{s}", {"mul"}, np.square, (N(rng, s),))
    case(f"pow-const-{s}", {"pow"}, lambda x: x ** 3 + x ** 2.0 - 2.0 ** x, (N(rng, s),))
    case(f"pow-int-exponent-{s}", {"pow"}, lambda x: x ** np.int64(3), (N(rng, s),))

# NumPy's other elementwise functions (rounding and floor division: zero gradient between the jumps)
for seed in range(2):
    rng = np.random.default_rng(250 + seed)
    s = rand_shape(rng)
    for name, dom in (("log1p", lambda: U(rng, s, -0.5, 2.0)), ("expm1", lambda: N(rng, s)),
                      ("log2", lambda: U(rng, s, 0.5, 3.0)), ("log10", lambda: U(rng, s, 0.5, 3.0)),
                      ("exp2", lambda: N(rng, s)), ("tan", lambda: U(rng, s, -1.2, 1.2)), ("sinh", lambda: N(rng, s)),
                      ("cosh", lambda: N(rng, s)), ("arcsin", lambda: U(rng, s, -0.8, 0.8)),
                      ("arccos", lambda: U(rng, s, -0.8, 0.8)), ("arctan", lambda: N(rng, s)),
                      ("arcsinh", lambda: N(rng, s)), ("arccosh", lambda: U(rng, s, 1.2, 3.0)),
                      ("arctanh", lambda: U(rng, s, -0.8, 0.8))):
        case(f"{name}-{s}", {name}, getattr(np, name), (dom(),))
    for name, op in (("floor", "floor"), ("ceil", "ceil"), ("rint", "rint")):
        x = U(rng, s, -3, 3)
        x = np.where(np.abs(x - np.round(x)) < 0.05, x + 0.2, x)  # away from the jumps (and the ties)
        case(f"{name}-{s}", {op}, lambda x, f=getattr(np, name): f(x) * np.sin(x), (x,))
    sa, sb = broadcast_pair(rng)
    for name, op in (("arctan2", "arctan2"), ("hypot", "hypot"), ("logaddexp", "logaddexp"),
                     ("logaddexp2", "logaddexp2")):
        case(f"{name}-{sa}-{sb}", {op}, getattr(np, name), (away(rng, sa, 0.3), away(rng, sb, 0.3)))
    case(f"fmax-{sa}-{sb}", {"fmax"}, lambda x, y: np.fmax(x, y) ** 2, (N(rng, sa), N(rng, sb)))
    case(f"fmin-{sa}-{sb}", {"fmin"}, lambda x, y: np.fmin(x, y) ** 2, (N(rng, sa), N(rng, sb)))
    x, y = U(rng, sa, 0.1, 5.0), U(rng, sb, 0.7, 1.9)
    case(f"floor_divide-{sa}-{sb}", {"floordiv"}, lambda x, y: (x // y) * np.sin(x * y), (x, y))
    case(f"remainder-{sa}-{sb}", {"mod"}, lambda x, y: np.remainder(x, y) ** 2, (x, y))

# reductions over random axes
for seed in range(4):
    rng = np.random.default_rng(300 + seed)
    s = rand_shape(rng, 3) or (3,)
    axis = [None, 0, -1, tuple(range(len(s)))[:2]][seed]
    keep = bool(seed % 2)
    tag = f"{s}-axis={axis}-keepdims={keep}"
    case(f"sum-{tag}", {"sum"}, lambda x, axis=axis, keep=keep: np.sin(np.sum(x, axis=axis, keepdims=keep)),
         (N(rng, s),))
    case(f"mean-{tag}", {"mean"}, lambda x, axis=axis, keep=keep: np.mean(x, axis=axis, keepdims=keep) ** 2,
         (N(rng, s),))
    case(f"prod-{tag}", {"prod"}, lambda x, axis=axis, keep=keep: np.prod(x, axis=axis, keepdims=keep),
         (U(rng, s, 0.5, 1.5) * np.where(rng.random(s) < 0.5, -1, 1),))
    case(f"max-{tag}", {"max"}, lambda x, axis=axis, keep=keep: np.max(x, axis=axis, keepdims=keep) ** 2,
         (N(rng, s),))
    case(f"min-{tag}", {"min"}, lambda x, axis=axis, keep=keep: np.min(x, axis=axis, keepdims=keep) ** 2,
         (N(rng, s),))
    case(f"method-reductions-{tag}", {"sum", "max"},
         lambda x, axis=axis: np.tanh(x.sum(axis=axis) + x.max(axis=axis)), (N(rng, s),))

_rng = np.random.default_rng(400)
# prod with a zero in a slice: first derivatives exact, second derivatives exact (one zero per row)
case("prod-with-zeros", {"prod"}, lambda x: np.prod(x, axis=1),
     (np.array([[0.0, 2.0, 3.0], [1.5, -0.5, 2.0], [-1.0, 0.0, 4.0]]),))
# two zeros in a slice: exact first derivatives (second ones between the two zeros read 0,
# as PyTorch's prod without dim does)
case("prod-two-zeros-order1", {"prod"}, lambda x: np.prod(x, axis=0),
     (np.array([[0.0, 2.0], [0.0, 3.0], [5.0, 0.0]]),), order=1)
case("prod-scalar-axis-none", {"prod"}, lambda x: np.prod(x) * x[0], (U(_rng, (4,), 0.5, 2.0),))

# scans and sorts (more in tests/test_reductions_numpy.py)
case("cumsum", {"cumsum"}, lambda x: np.sin(np.cumsum(x, axis=1)), (N(_rng, (3, 4)),))
case("cumprod", {"cumprod"}, lambda x: np.cumprod(x, axis=0), (U(_rng, (4, 3), 0.5, 1.5),))
case("cumprod-with-zeros", {"cumprod"}, lambda x: np.cumprod(x, axis=1),
     (np.array([[0.0, 2.0, 3.0], [1.5, -0.5, 0.0], [-1.0, 0.0, 4.0]]),))
case("sort", {"sort"}, lambda x: np.sort(x, axis=0) * np.arange(1.0, 5.0)[:, None], (N(_rng, (4, 3)),))

# matmul in all its forms
case("matmul-2d", {"matmul"}, lambda a, b: np.tanh(a @ b), (N(_rng, (3, 4)), N(_rng, (4, 2))))
case("matmul-1d-2d", {"matmul"}, lambda a, b: np.sin(a @ b), (N(_rng, (4,)), N(_rng, (4, 3))))
case("matmul-2d-1d", {"matmul"}, lambda a, b: np.sin(a @ b), (N(_rng, (3, 4)), N(_rng, (4,))))
case("matmul-1d-1d", {"matmul"}, lambda a, b: np.sin(np.dot(a, b)), (N(_rng, (4,)), N(_rng, (4,))))
case("matmul-batched-broadcast", {"matmul"}, lambda a, b: np.sin(np.matmul(a, b)),
     (N(_rng, (2, 1, 3, 4)), N(_rng, (3, 4, 2))))
case("matmul-outer", {"matmul"}, lambda a, b: np.sin(np.outer(a, b)), (N(_rng, (3,)), N(_rng, (2,))))
# c + op(a) @ op(b): made by autodiff for a weight's gradient summed over a scan's steps
case("matmul_acc", {"matmul_acc"}, lambda c, a, b: np.sin(bind("matmul_acc", c, a, b, transpose_a=True)),
     (N(_rng, (3, 2)), N(_rng, (4, 3)), N(_rng, (4, 2))))
case("matmul_acc-transpose-b", {"matmul_acc"}, lambda c, a, b: np.sin(bind("matmul_acc", c, a, b, transpose_b=True)),
     (N(_rng, (3, 2)), N(_rng, (3, 4)), N(_rng, (2, 4))))

# shape ops
case("reshape", {"reshape"}, lambda x: np.sin(x.reshape(3, -1)) * np.arange(4.0), (N(_rng, (2, 6)),))
case("ravel-expand-squeeze", {"reshape"},
     lambda x: np.sin(np.squeeze(np.expand_dims(x, 0), 0).ravel()) * np.arange(6.0), (N(_rng, (3, 2)),))
case("transpose", {"transpose"}, lambda x: np.sin(x.T) * np.arange(3.0), (N(_rng, (3, 2, 4)),))
case("swapaxes", {"transpose"}, lambda x: np.sin(np.swapaxes(x, 0, 2)), (N(_rng, (2, 3, 4)),))
case("broadcast_to", {"broadcast_to"}, lambda x: np.sin(np.broadcast_to(x, (2, 3, 4)) * np.arange(4.0)),
     (N(_rng, (3, 1)),))
case("concatenate", {"concatenate"}, lambda a, b: np.sin(np.concatenate([a, b * b, a], axis=1)),
     (N(_rng, (2, 3)), N(_rng, (2, 1))))
case("stack", {"concatenate"}, lambda a, b: np.tanh(np.stack([a, b], axis=-1)), (N(_rng, (3,)), N(_rng, (3,))))

# indexing
case("slice", {"slice"}, lambda x: np.sin(x[1:3, ::2]), (N(_rng, (4, 5)),))
case("slice-reversed", {"slice"}, lambda x: np.sin(x[::-1, -1:0:-2]), (N(_rng, (3, 5)),))
case("index", {"index"}, lambda x: np.sin(x[1]) * x[0, 2], (N(_rng, (3, 4)),))
case("scatter_slice", {"scatter_slice"},
     lambda x: np.sin(bind("scatter_slice", x, shape=(4, 5), slices=((1, 3, 1), (0, 5, 2)))),
     (N(_rng, (2, 3)),))
case("gather-repeated", {"gather"}, lambda x: np.sin(x[np.array([2, 0, 2, -1])]), (N(_rng, (4, 3)),))
case("gather-traced-index", {"gather"}, lambda x, i: np.sin(x[:, i]), (N(_rng, (3, 4)), np.array([[1, 3], [3, 3]])))
case("gather-two-arrays", {"gather"}, lambda x: np.sin(x[[0, 2, 2], [1, 1, 0]]), (N(_rng, (3, 2, 2)),))
case("take", {"gather"}, lambda x: np.sin(np.take(x, [3, 1, 1], axis=1)), (N(_rng, (2, 4)),))
case("take_along_axis", {"gather"},
     lambda x: np.sin(np.take_along_axis(x, np.array([[0], [2], [1]]), axis=1)), (N(_rng, (3, 3)),))
case("scatter_add", {"scatter_add"},
     lambda x: np.sin(bind("scatter_add", x, np.array([1, 0, 1, 1]), shape=(3, 2), axis=0)),
     (N(_rng, (4, 2)),))

# neural-network compositions (their primitives: max, stop_gradient, exp, log, sum)
case("softmax", {"exp", "stop_gradient"}, lambda x: gc.softmax(x, axis=-1), (N(_rng, (3, 4)) * 2,))
case("softmax-axis0", {"exp"}, lambda x: gc.softmax(x, axis=0), (N(_rng, (3, 4)),))
case("log_softmax", {"log"}, lambda x: gc.log_softmax(x), (N(_rng, (2, 5)) * 2,))
case("logsumexp", {"log"}, lambda x: gc.logsumexp(x, axis=1), (N(_rng, (2, 3, 2)),))
case("logsumexp-all", {"log"}, lambda x: gc.logsumexp(x), (N(_rng, (2, 3)),))
case("cross-entropy", {"gather"},
     lambda z, y: -np.mean(np.take_along_axis(gc.log_softmax(z), y[:, None], axis=1)),
     (N(_rng, (4, 3)) * 3, np.array([0, 2, 1, 2])))
case("one_hot-cross-entropy", {"mul"},
     lambda z, y: -np.sum(gc.one_hot(y, 3, "float64") * gc.log_softmax(z)), (N(_rng, (4, 3)), np.array([0, 2, 1, 2])))
case("cast-int-input", {"cast"}, lambda x, k: x * k + np.sin(x) * (k > 1), (N(_rng, (2, 3)), np.array([0, 1, 2])))
# np.linalg (well-conditioned points: finite differences need them)
_sq = N(_rng, (2, 3, 3)) * 0.3 + 2 * np.eye(3)
case("inv", {"inv"}, lambda a: np.sin(np.linalg.inv(a)), (_sq,))
case("det", {"det"}, lambda a: np.linalg.det(a) ** 2, (_sq,))
case("slogdet", {"slogdet"}, lambda a: np.linalg.slogdet(a)[1], (_sq * np.array([[[1.0]], [[-1.0]]]),))
case("solve", {"solve"}, lambda a, b: np.sin(np.linalg.solve(a, b)), (_sq, N(_rng, (3, 2))))
case("cholesky", {"cholesky"}, lambda a: np.sin(np.linalg.cholesky(a)), (_sq @ np.swapaxes(_sq, -1, -2),))
case("eigh", {"eigh"}, lambda a: (lambda w, v: np.sum(np.sin(v * v)) + np.sum(np.sin(w)))(*np.linalg.eigh(a)),
     (N(_rng, (3, 3)),))
case("svd", {"svd"}, lambda a: (lambda u, s, vh: np.sum(np.sin(u * u)) + np.sum(np.cos(vh * vh)) + np.sum(s ** 2))(
    *np.linalg.svd(a, full_matrices=False)), (N(_rng, (4, 3)),))
case("pinv", {"pinv"}, lambda a: np.sin(np.linalg.pinv(a)), (N(_rng, (2, 3)),))
case("pytree-dict", {"matmul", "add"},
     lambda p, x: np.sum(np.tanh(x @ p["w"] + p["b"]) ** 2), ({"w": N(_rng, (3, 2)), "b": N(_rng, (2,))}, N(_rng, (4, 3))))
case("tuple-output", {"mul", "sin"}, lambda x, y: (x * y, np.sin(y), (x > 0)), (N(_rng, (2,)), N(_rng, (3, 1))))


@pytest.mark.parametrize("fn,args,options,ops", CASES)
def test_check_grads_order2(fn, args, options, ops):
    used = {node.op for node in raw_graph(fn, *args).nodes}
    assert ops <= used, f"the case does not exercise {ops - used} (its graph has {sorted(used)})"
    check_grads(fn, args, **{"order": 2, **options})


@pytest.mark.parametrize("fn,args,options,ops", CASES)
def test_float32_gradients_are_float32(fn, args, options, ops):
    """The same cases in float32: every vjp rule keeps its operand's dtype (no float64 leaks)."""
    from graphc import pytree
    leaves, tree = pytree.flatten(args)
    floats = [k for k, a in enumerate(leaves) if isinstance(a, (np.ndarray, float)) and np.asarray(a).dtype.kind == "f"]
    args32 = pytree.unflatten(tree, [np.asarray(a, np.float32) if k in floats else a for k, a in enumerate(leaves)])
    nums = tuple(i for i, a in enumerate(args) if any(np.asarray(x).dtype.kind == "f" for x in pytree.flatten(a)[0]))

    def loss(*a):
        outs = [o for o in pytree.flatten(fn(*a))[0] if getattr(o, "dtype", np.dtype(bool)).kind == "f"]
        return sum(np.sum(np.sin(o)) for o in outs)

    g64 = interpret_raw(gc.grad(loss, argnums=nums), *args)
    g32 = interpret_raw(gc.grad(loss, argnums=nums), *args32)
    assert len(g32) == len(g64) == len(floats)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32, f"a float32 input got a {a.dtype} gradient"
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * (np.max(np.abs(b)) if b.size else 1))


# loops and branches: reverse mode through fori_loop and scan (over saved residuals, and
# recomputed with remat), and through cond; while_loop has none (tests/test_control_flow.py)
for seed in range(2):
    rng = np.random.default_rng(300 + seed)
    w = N(rng, (3, 3)) * 0.5
    case(f"fori_loop-{seed}", {"fori_loop"},
         lambda x, w: np.sum(gc.fori_loop(0, 4, lambda i, v: np.tanh(v @ w) * (i + 1.0), x) ** 2),
         (N(rng, (2, 3)), w))
    case(f"scan-{seed}", {"scan"},
         lambda h, xs, w: np.sum(np.sin(gc.scan(lambda c, x: (np.tanh(c @ w + x), c * x), h, xs)[1])),
         (N(rng, (3,)), N(rng, (4, 3)), w))
    case(f"scan-remat-reverse-{seed}", {"scan"},
         lambda h, xs: np.sum(gc.scan(lambda c, x: (np.sin(c) * x, c * c), h, xs, reverse=True, remat=True)[0]),
         (N(rng, (2,)), N(rng, (3, 2))))
    case(f"cond-{seed}", {"cond"},
         lambda p, x, y: np.sum(gc.cond(p > 0, lambda a, b: np.sin(a) * b, lambda a, b: a * a + b, x, y) ** 2),
         (N(rng, ()) + (0.5 if seed else -0.5), N(rng, (3,)), N(rng, (3,))))

# Ops whose gradient is checked exactly below rather than against finite differences:
#  * cast: a float64 -> float32 -> float64 round trip loses the precision finite differences need
#  * stop_gradient: its gradient is zero on purpose, which finite differences cannot confirm
EXACT = {"cast", "stop_gradient"}
# Ops owned by others that are differentiated before they exist (fusion runs after autodiff):
#  * fused: made by passes/fusion.py from already-differentiated graphs; never traced by users
NOT_TRACED = {"fused"}


def test_every_differentiable_op_has_a_gradient_test():
    covered = set(EXACT)
    for p in CASES:
        fn, args, _, _ = p.values
        covered |= {node.op for node in raw_graph(fn, *args).nodes}
    differentiable = {name for name, op in registry.OPS.items() if op.differentiable}
    no_rule = sorted(name for name in differentiable if registry.OPS[name].vjp is None)
    assert not no_rule, f"ops marked differentiable without a vjp rule: {no_rule}"
    missing = differentiable - covered - NOT_TRACED
    assert not missing, f"differentiable ops with no gradient test in tests/test_grad_ops.py: {sorted(missing)}"


def test_cast_gradient_is_exact_and_keeps_dtypes():
    x32 = np.array([1.5, -2.0, 0.25], np.float32)
    w = np.array([3.0, 4.0, 5.0])

    def f(x):  # float32 -> float64 -> float32: gradient flows back through both casts
        return np.sum((x.astype(np.float64) * w).astype(np.float32) * np.float32(2))

    g = interpret_raw(gc.grad(f), x32)[0]
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, (2 * w).astype(np.float32))


def test_stop_gradient_blocks_the_gradient():
    x = np.array([0.5, -1.0, 2.0])
    f = gc.grad(lambda x: np.sum(x * gc.stop_gradient(x) + gc.stop_gradient(np.sin(x))))
    g = interpret_raw(f, x)[0]
    np.testing.assert_allclose(g, x)  # d/dx x * c = c = x; the sin term is a constant


# -- compiled: one graph per group, through passes and the Numba backend -----------------
# Order-2 graphs of broad elementwise functions compile to many kernels (tens of seconds
# of Numba time), so the big mixes are checked at order 1 and small ones at order 2.
def test_compiled_elementwise_broadcasting():
    rng = np.random.default_rng(1)

    def f(x, y, c):
        a = np.where(c, x * y, np.exp(-x * x)) / (1.5 + np.tanh(y))
        return (np.sin(a) + gc.sigmoid(x) * np.maximum(x, y) ** 2 + np.log(1.0 + y * y) * gc.relu(x)
                - np.abs(x) * np.clip(y, -0.5, 0.5) + np.sqrt(2.0 + np.cos(y)) * np.minimum(x, 0.3))

    check_grads(f, (N(rng, (3, 1)), N(rng, (4,)), rng.random((3, 4)) < 0.5), order=1, compiled=True)
    check_grads(lambda x, y: np.sin(x * y) * np.exp(y), (N(rng, (3, 1)), N(rng, (4,))),
                order=2, compiled=True)


def test_compiled_reductions():
    rng = np.random.default_rng(2)

    def f(x):
        return (np.sum(np.sin(x), axis=1) * np.mean(x * x, axis=1) + np.max(x, axis=1) ** 2
                - np.min(np.tanh(x), axis=1) + np.prod(x[:, :3], axis=1))

    check_grads(f, (N(rng, (4, 5)),), order=1, compiled=True)


def test_compiled_matmul_and_shapes():
    rng = np.random.default_rng(3)

    def f(a, b, v):  # batched with broadcast batch dims, then transposes and reshapes
        return np.tanh(np.matmul(a, b) + v).transpose(0, 2, 1).reshape(-1, 3)

    check_grads(f, (N(rng, (2, 3, 4)), N(rng, (4, 2)), N(rng, (2,))), order=2, compiled=True)


def test_compiled_indexing():
    rng = np.random.default_rng(4)

    def f(x, i):
        return np.sin(x[1:, ::-1]).sum(axis=0) + np.cos(x[i, 1]) ** 2 + x[0] * x[2, 1]

    check_grads(f, (N(rng, (3, 3)), np.array([0, 2, 2])), order=2, compiled=True)


def test_compiled_softmax_cross_entropy():
    rng = np.random.default_rng(5)

    def f(z, y):
        logp = gc.log_softmax(z)
        return (-np.mean(np.sum(gc.one_hot(y, 4, "float64") * logp, axis=1))
                + np.sum(gc.softmax(z, axis=0) ** 2) + np.sum(gc.logsumexp(z, axis=1)))

    check_grads(f, (N(rng, (3, 4)) * 2, np.array([0, 3, 1])), order=1, compiled=True)


# -- check_grads itself -----------------------------------------------------------------
def test_check_grads_catches_a_wrong_gradient_and_names_the_argument():
    x, w = np.array([[0.3, -1.2], [0.7, 2.0]]), np.array([1.0, 2.0])

    def f(x, w):  # the gradient w.r.t. w is wrong on purpose (half of it is stopped)
        return np.sum(x * w + gc.stop_gradient(w) * w)

    check_grads(f, (x, w), order=2, argnums=0)  # x alone is fine
    with pytest.raises(GradientCheckError) as info:
        check_grads(f, (x, w), order=1)
    text = str(info.value)
    assert "with respect to w " in text and "finite differences" in text
    assert "expected" in text and "got" in text and "direction v" in text and "worst entry w[" in text


def test_check_grads_catches_a_wrong_second_derivative():
    def f(x):  # x**2 with the right value and gradient (2x) but a zero second derivative
        sg = gc.stop_gradient
        return np.sum(np.sin(x) + sg(x * x) + sg(2 * x) * (x - sg(x)))

    x = np.array([0.4, -0.9, 1.3])
    check_grads(f, (x,), order=1)
    with pytest.raises(GradientCheckError, match="Hessian-vector product"):
        check_grads(f, (x,), order=2)


def test_check_grads_rejects_bad_requests():
    with pytest.raises(ValueError, match="order"):
        check_grads(np.sin, (np.ones(2),), order=3)
    with pytest.raises(ValueError, match="no floating-point argument"):
        check_grads(lambda k: k * 2.0, (np.arange(3),))
    with pytest.raises(ValueError, match="not finite"):
        check_grads(np.log, (np.array([-1.0, 2.0]),))


def test_check_grads_accepts_a_single_array_and_python_floats():
    gc.testing.check_grads(np.sin, np.array([0.1, 0.2]))  # also reachable as gc.testing
    check_grads(lambda a, b: a * b ** 3, (2.0, 1.5), order=2)
