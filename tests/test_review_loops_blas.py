"""A hostile review of the loop changes (hoist's transposed const, a scan's recomputed residuals,
the outer product rule) and of graphc.backend.blas.prepare (Numba's registries loaded without
scipy.linalg). The two races found in prepare's first form (cython_blas put in sys.modules alone
for a while, the registries loaded outside Numba's compiler lock) are tests here, now passing."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    environ = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), GRAPHC_COMPILE="eager", **env)
    environ["PYTHONPATH"] = ROOT + os.pathsep + environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)


# Another thread imports scipy.linalg while graphc's first compile loads Numba's registries (with
# GRAPHC_COMPILE=background the compile itself runs in a worker thread beside the user's code).
# The first form of blas.prepare had cython_blas alone in sys.modules then, and the package never
# got its attribute. The wrapper below makes that interleaving deterministic: the thread runs, and
# is joined, while the registries load.
RACE_CHILD = """
import sys, threading
import numpy as np
import graphc as gc
from numba.core.registry import cpu_target

refresh = cpu_target.typing_context.refresh
def refresh_while_a_thread_imports_scipy_linalg():
    t = threading.Thread(target=lambda: __import__("scipy.linalg"))
    t.start(); t.join()
    return refresh()
cpu_target.typing_context.refresh = refresh_while_a_thread_imports_scipy_linalg

f = gc.trace(lambda a, b: np.tanh(a @ b))
a = np.ones((3, 3))
assert np.allclose(f(a, a), np.tanh(a @ a))
import scipy.linalg.cython_blas
print(scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"])
"""


def test_scipy_linalg_imported_by_a_thread_during_the_first_compile_keeps_its_cython_blas_attribute(tmp_path):
    proc = _child(RACE_CHILD, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True"], proc.stdout


# Numba loads its registries lazily, under its compiler lock, on a process's first compile:
# RegistryLoader's generators are not re-entrant. blas.prepare's first form refreshed them outside
# that lock, so graphc's first compile racing a Numba compile in another thread (a user's @njit,
# or another graphc function) could iterate the same generator twice: three threads each compiling
# a first graphc function failed ~1 in 18 fresh processes with "ValueError: generator already
# executing" (numba/core/typing/templates.py new_registrations).
# Deterministic form: a Numba compile started in another thread while prepare loads the
# registries must wait for it (the lock), not run inside the window.
LOCK_CHILD = """
import threading
import numba
import numpy as np
import graphc as gc
from numba.core.registry import cpu_target

refresh = cpu_target.target_context.refresh
seen = []
main = threading.main_thread()
def refresh_while_another_thread_compiles():
    if threading.current_thread() is main and not seen:  # (once: graphc's prepare, in this thread)
        other = threading.Thread(target=lambda: numba.njit(lambda x: x + 1)(1), daemon=True)
        other.start(); other.join(2.0)
        seen.append("waited" if other.is_alive() else "ran inside the window")
    return refresh()
cpu_target.target_context.refresh = refresh_while_another_thread_compiles

f = gc.trace(lambda a, b: np.tanh(a @ b))
a = np.ones((3, 3))
assert np.allclose(f(a, a), np.tanh(a @ a))
print(seen[0])
"""


def test_prepare_loads_numbas_registries_under_its_compiler_lock(tmp_path):
    proc = _child(LOCK_CHILD, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "waited", proc.stdout


# -- what holds (coverage the commit's own tests lack) -----------------------------------------
def test_recomputed_residuals_of_the_index_an_int_carry_and_a_comparison_give_the_unrolled_gradient():
    """A fori_loop from 2 whose backward body recomputes cheap residuals: of the step index, of
    an integer carry (a cast), and a where on a comparison; value and gradient equal the unrolled
    Python loop's, second order by finite differences."""
    import numpy as np

    import graphc as gc
    from graphc.testing import check_grads

    def step(i, h, k, w):
        scale = i * 0.5 + (k % 3).astype(np.float64)
        gate = np.where(h > 0.1, h * w, 0.3 * h - w)
        return np.sin(h * scale + gate), k + 1

    def looped(h, w):
        def body(i, carry):
            return step(i, *carry, w)
        return np.sum(gc.fori_loop(2, 6, body, (h, np.int64(1)))[0] ** 2)

    def unrolled(h, w):
        k = np.int64(1)
        for i in range(2, 6):
            h, k = step(i, h, k, w)
        return np.sum(h ** 2)

    rng = np.random.default_rng(3)
    args = (rng.standard_normal(5), rng.standard_normal(5))
    got, want = gc.grad(looped, argnums=(0, 1))(*args), gc.grad(unrolled, argnums=(0, 1))(*args)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    check_grads(looped, args, order=2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_outer_product_with_broadcast_batch_dims_is_exactly_numpys_matmul(dtype):
    """(2,1,3,1) @ (4,1,5) (contraction of one term, leading dims broadcast) becomes a broadcast
    multiply + 0.0: the same bits as np.matmul on signed zeros, infinities and NaN."""
    import numpy as np

    import graphc as gc

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 1, 3, 1)).astype(dtype), rng.standard_normal((4, 1, 5)).astype(dtype)
    a.flat[:4] = [-0.0, np.inf, np.nan, 0.0]
    b.flat[:3] = [-0.0, 2.0, -np.inf]
    f = gc.trace(lambda a, b: a @ b)
    with np.errstate(invalid="ignore"):  # (inf * 0)
        got, want = f(a, b), a @ b
    assert got.dtype == want.dtype and got.shape == want.shape == (2, 4, 3, 5)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    assert "matmul" not in [n.op for n in f.lower(a, b).graph.nodes]
