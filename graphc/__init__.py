"""graphc: a just-in-time compiler for numeric Python.

Trace NumPy-style code into a typed graph, optimize it, differentiate it as a
graph transform, and run it as fused Numba kernels::

    import numpy as np, graphc as gc

    @gc.trace
    def f(x, w):
        return np.sum(np.tanh(x @ w), axis=1)

    f(x, w)          # same numbers as NumPy, compiled on the first call
    print(f.graph)   # the IR, one node per line with your file:line
"""
import importlib.util as _importlib_util
import os as _os
import sys as _sys

# In a source checkout the passes live in the repository's top-level passes/ folder, which
# pip installs as graphc.passes. Load that folder under the same name when it sits beside
# this package, so a checkout (or a git worktree of one) runs its own passes, never those
# of another install.
_CHECKOUT_PASSES = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "passes")
if "graphc.passes" not in _sys.modules and _os.path.isfile(_os.path.join(_CHECKOUT_PASSES, "manager.py")):
    _spec = _importlib_util.spec_from_file_location(
        "graphc.passes", _os.path.join(_CHECKOUT_PASSES, "__init__.py"),
        submodule_search_locations=[_CHECKOUT_PASSES])
    _sys.modules["graphc.passes"] = _importlib_util.module_from_spec(_spec)
    _spec.loader.exec_module(_sys.modules["graphc.passes"])

from graphc.errors import CompileError, DeviceError, ExportError, GraphcError, ShapeError, TraceError, VerifyError
from graphc import ops as _ops  # registers every op  # noqa: F401
from graphc.autodiff import gradient
from graphc.interpret import interpret
from graphc.runtime import RetraceWarning, TracedFunction, trace
from graphc.api import grad, value_and_grad
from graphc.errors import PassWarning
from graphc.backend.cache import CacheWarning
from graphc.backend.background import CompileWarning
from graphc.backend.cuda_device import PerformanceWarning

# NumPy-compatible functions that work on traced values and on plain arrays
from graphc.ops.creation import arange, full, full_like, ones, ones_like, zeros, zeros_like
from graphc.ops.elementwise import (
    absolute, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, around, cast, ceil,
    clip, cos, cosh, deg2rad, degrees, divide, divmod, equal, exp, exp2, expm1, fabs, floor,
    floor_divide, fmax, fmin, greater, greater_equal, hypot, iota, isfinite, isinf, isnan, less,
    less_equal, log, log1p, log2, log10, logaddexp, logaddexp2, logical_and, logical_not,
    logical_or, logical_xor, maximum, minimum, mod, multiply, nan_to_num, negative, not_equal,
    power, rad2deg, radians, reciprocal, relu, remainder, rint, round, sigmoid, sign, sin, sinc,
    sinh, sqrt, square, subtract, tan, tanh, where,
)
from graphc.ops.control import checkpoint, cond, fori_loop, remat, scan, while_loop
from graphc.ops.indexing import gather, one_hot, take, take_along_axis
from graphc.ops.linalg import (
    diag, diagonal, dot, einsum, eye, inner, kron, matmul, outer, tensordot, tril, triu, vdot,
)
# (np.trace traces too; gc.trace is the compiler, so the matrix trace is not exported here)
from graphc.ops.nn import log_softmax, logsumexp, softmax, stop_gradient
from graphc.ops.reduction import (
    all, allclose, any, argmax, argmin, average, isclose, max, mean, min, norm, prod, std, sum, var,
)
from graphc.ops.scan import cumprod, cumsum, diff
from graphc.ops.sort import argpartition, argsort, partition, sort
from graphc.ops.shape import (
    broadcast_to, concatenate, expand_dims, ravel, reshape, squeeze, stack, swapaxes, transpose,
)
from graphc.ops.creation import linspace
from graphc.ops.indexing import select
from graphc.ops.shape import (
    append, array_split, atleast_1d, atleast_2d, atleast_3d, column_stack, dsplit, dstack, flip, fliplr,
    flipud, hsplit, hstack, moveaxis, pad, repeat, roll, rollaxis, rot90, split, tile, vsplit, vstack,
)

from graphc.nn.parameter import no_grad  # noqa: E402  (torch.no_grad's counterpart)
from graphc.ops.debug import print  # noqa: E402,A004  (jax.debug.print's counterpart)

abs = absolute
astype = cast

__version__ = "0.1.0"


def __getattr__(name):  # graphc.nn, .optim, .data, .testing, .onnx, .export (gc.save, gc.load) load on first use
    if name in ("nn", "optim", "data", "testing", "onnx", "export"):
        import importlib
        return importlib.import_module(f"graphc.{name}")
    if name in ("save", "load"):  # graphc.export's (it imports graphc.nn and graphc.optim)
        return getattr(__getattr__("export"), name)
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")
