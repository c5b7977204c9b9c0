"""The CUDA device as the CUDA backend sees it: is there one, its array library, transfers.

Nothing here is imported by the CPU path, and nothing here imports numba-cuda or CuPy
until a function is traced for ``device="cuda"`` (``device()``). Two ways to have one:

* a real NVIDIA GPU with its driver, the ``numba-cuda`` package and CuPy (the ``cuda``
  extra): kernels run on the GPU, device arrays are CuPy arrays, matrix products go to
  cuBLAS through CuPy;
* ``NUMBA_ENABLE_CUDASIM=1``: Numba's CUDA simulator runs the same kernels on the host, one
  Python thread per GPU thread. Its "device arrays" are NumPy arrays (the simulator reads
  and writes host memory), so CuPy is not needed; it is slow and meant for tests.

Without either, ``device()`` raises ``DeviceError`` saying what is missing.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import warnings

import numpy as np

from graphc.errors import DeviceError

INSTALL_HINT = ('install the extra with  pip install "graphc[cuda]"  (numba-cuda and CuPy for CUDA 12), '
                "or set NUMBA_ENABLE_CUDASIM=1 to run the kernels in Numba's CUDA simulator (slow: "
                "for tests)")


def simulated() -> bool:
    """Is Numba's CUDA simulator switched on for this process (read when Numba starts)?"""
    from numba.core import config
    return bool(config.ENABLE_CUDASIM)


class Device:
    """The CUDA device of this process: ``xp`` (CuPy, or NumPy under the simulator), the
    kernel compiler ``cuda`` (numba.cuda) and the launch limits."""

    def __init__(self):
        self.simulator = simulated()
        try:
            from numba import cuda
        except ImportError as exc:  # (numba-cuda missing and numba's own target gone)
            raise DeviceError(f"device='cuda': numba's CUDA target cannot be imported ({exc}); "
                              f"{INSTALL_HINT}") from None
        self.cuda = cuda
        # held around each launch: the simulator keeps a launch's state in globals, so two
        # threads must not launch at once; a GPU queues launches itself
        self.launching = threading.Lock() if self.simulator else contextlib.nullcontext()
        if self.simulator:
            _serialize_simulated_shared_arrays()
            self.xp = np
            self.name = "Numba CUDA simulator"
            self.sm_count = 1
            # the simulator runs a thread per GPU thread: small blocks keep tests fast
            self.threads = 32
            return
        if not _available(cuda):
            raise DeviceError(f"device='cuda': no CUDA device or driver was found; {INSTALL_HINT}")
        try:
            import cupy
        except ImportError:
            raise DeviceError(f"device='cuda': CuPy is not installed (graphc keeps device arrays "
                              f"and matrix products in CuPy); {INSTALL_HINT}") from None
        self.xp = cupy
        try:  # CuPy and numba-cuda both launch on the legacy default stream: an array CuPy hands
            # a kernel needs no wait for CuPy's stream (numba-cuda would wait for each argument)
            from numba.cuda.core import config as cuda_config
            cuda_config.CUDA_ARRAY_INTERFACE_SYNC = False
        except ImportError:
            pass
        gpu = cuda.get_current_device()
        self.name = gpu.name.decode() if isinstance(gpu.name, bytes) else str(gpu.name)
        self.sm_count = gpu.MULTIPROCESSOR_COUNT
        self.threads = 256

    # -- arrays -----------------------------------------------------------------------------
    def is_device_array(self, a) -> bool:
        if self.simulator:
            return isinstance(a, np.ndarray)
        return isinstance(a, self.xp.ndarray)

    def to_device(self, a):
        """``a`` as a device array: device arrays as they are, anything with
        ``__cuda_array_interface__`` or DLPack without a copy, host arrays copied."""
        if self.simulator:
            if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
                raise DeviceError(f"a {type(a).__name__} lives on a real GPU, but this process runs the "
                                  f"CUDA simulator (NUMBA_ENABLE_CUDASIM=1), whose arrays are NumPy arrays")
            a = np.asarray(a)
            return a if a.flags.c_contiguous else np.ascontiguousarray(a)  # (0-d stays 0-d)
        xp = self.xp
        if isinstance(a, xp.ndarray):
            if a.device.id != xp.cuda.runtime.getDevice():
                raise DeviceError(f"an array on GPU {a.device.id} was given to a function running on GPU "
                                  f"{xp.cuda.runtime.getDevice()}; copy it there with cupy.asarray inside "
                                  f"`with cupy.cuda.Device({xp.cuda.runtime.getDevice()}):`")
            return a
        if hasattr(a, "__cuda_array_interface__"):
            return xp.asarray(a)  # (shares the memory: CuPy reads the interface)
        if hasattr(a, "__dlpack__") and not isinstance(a, np.ndarray):
            try:
                return xp.from_dlpack(a)
            except Exception:
                pass  # (a host tensor: copied below)
        return xp.asarray(np.asarray(a))

    def to_host(self, a):
        """``a`` as a NumPy array (a copy from the device; under the simulator ``a`` itself)."""
        if self.simulator or isinstance(a, np.ndarray):
            return np.asarray(a)
        return self.xp.asnumpy(a)

    def empty(self, shape, dtype):
        try:
            return self.xp.empty(shape, dtype=dtype)
        except MemoryError as exc:  # (CuPy's OutOfMemoryError is one)
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            raise MemoryError(f"device='cuda': out of device memory allocating {size:,} bytes for a "
                              f"{dtype}{list(shape)} array ({exc})") from None

    def zeros(self, shape, dtype):
        made = self.empty(shape, dtype)
        made.fill(0)
        return made

    def launch(self, elements: int, per_block: int = 1) -> tuple[int, int]:
        """(blocks, threads) for a grid-stride kernel over ``elements`` items: a thread per item
        (``per_block`` 1), or a block of ``per_block`` threads per item (a reduction's row)."""
        threads = self.threads if per_block == 1 else per_block
        need = -(-elements // threads) if per_block == 1 else elements
        cap = 2 if self.simulator else self.sm_count * 32
        return max(1, min(need, cap)), threads


def _serialize_simulated_shared_arrays():
    """Work around a race in Numba's CUDA simulator: the first thread of a block to ask for a
    shared array makes it, unlocked, so a thread switch between its lookup and its store hands
    two threads of one block different arrays, and a block reduction then reads memory no
    thread wrote (a wrong max about one run in four). The same lookup, under a lock; keyed, as
    the simulator's, by the kernel's file and line (one shared array per line)."""
    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared
    if getattr(shared.array, "graphc_serialized", False):
        return
    original, lock = shared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:  # (graphc's kernels use neither)
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            made = self._allocations.get(caller)
            if made is None:
                made = self._allocations[caller] = np.empty(shape, dtype)
        return made

    array.graphc_serialized = True
    shared.array = array


def _available(cuda) -> bool:
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


_DEVICE: Device | None = None


def device() -> Device:
    """The process's CUDA device (found once), or ``DeviceError`` saying why there is none."""
    global _DEVICE
    if _DEVICE is None:
        _DEVICE = Device()
    return _DEVICE


_WARNED: set = set()


def warn_once(key, message: str):
    """A ``PerformanceWarning`` said once per process for ``key``."""
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, PerformanceWarning, stacklevel=4)


class PerformanceWarning(UserWarning):
    """graphc runs something slower than it could (host/device copies on every call...)."""
