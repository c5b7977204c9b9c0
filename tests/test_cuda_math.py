"""The GPU versions of cuda_math's typed helpers (sign, logaddexp, floor_divide...) against NumPy.

On a GPU they run with libdevice's functions; the simulator runs NumPy's own functions
instead, so the kernels tests never execute these. Here their logic runs as Python (the
simulator's device functions are plain functions), with NumPy's floor/fmod/... standing in
for libdevice's, on every pair of special values, in float32 and float64.
"""
import itertools

import numpy as np
import pytest

from graphc.backend import cuda_math
from graphc.backend.cuda_device import simulated

# (outside the simulator the device functions are real CUDA ones, which Python cannot call)
pytestmark = pytest.mark.skipif(not simulated(), reason="needs NUMBA_ENABLE_CUDASIM=1")
SPECIAL = [np.inf, -np.inf, np.nan, -0.0, 0.0, 1.0, -1.0, 0.5, -0.5, -0.4, 1.5, 2.5, -2.5, 3.0, -7.0, 1e-3, 1e30]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_typed_helpers_give_numpys_results(dtype):
    fns = cuda_math._typed(dtype, np.floor, np.ceil, np.rint, np.exp2, np.fmod, np.copysign, np.log1p)
    unary = {"sign": np.sign, "floor": np.floor, "ceil": np.ceil, "rint": np.rint, "exp2": np.exp2}
    binary = {"logaddexp": np.logaddexp, "logaddexp2": np.logaddexp2, "floor_divide": np.floor_divide,
              "remainder": np.remainder}
    values = [dtype(v) for v in SPECIAL]
    with np.errstate(all="ignore"):
        for name, want_fn in unary.items():
            for x in values:
                got, want = fns[name](x), want_fn(x)
                assert np.asarray(got).dtype == dtype, (name, x, type(got))
                np.testing.assert_array_equal(got, want, err_msg=f"{name}({x})")
                assert np.signbit(got) == np.signbit(want) or np.isnan(want), f"{name}({x}): sign of zero"
        for name, want_fn in binary.items():
            for x, y in itertools.product(values, values):
                got, want = fns[name](x, y), want_fn(x, y)
                if name not in ("logaddexp", "logaddexp2"):  # (their math.exp is float64 in Python,
                    # float32 on the GPU: the PTX tests check that)
                    assert np.asarray(got).dtype == dtype, (name, x, y, type(got))
                np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0,
                                           err_msg=f"{name}({x}, {y})")
                if want == 0:
                    assert np.signbit(got) == np.signbit(want), f"{name}({x}, {y}): sign of zero"
