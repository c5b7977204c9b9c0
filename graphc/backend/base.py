"""The backend interface: ``Backend.compile(graph, options) -> Executable``, looked up by device.

A backend turns an optimized Graph into something the runtime can call. The runtime
(graphc/runtime.py) names no backend: ``gc.trace(fn, device=...)`` asks ``get(device)``
here, validates the user's options with ``Backend.check_options`` when the function is
traced, and calls ``Backend.compile`` once per signature. Everything the first rule
needs beyond computing the outputs (copies of outputs that alias inputs, State
write-back, guards, retracing) is the runtime's; what it needs to know from the backend
is on the ``Executable``. docs/architecture.md describes the layers.
"""
from __future__ import annotations

from graphc.ir import Graph
from graphc.ops import registry

# Options the runtime passes to every backend's compile; users do not set them here (their
# public spelling is gc.trace's own argument). "passes": the pipeline the graph went
# through; a backend may keep its own optimizations for the full one (the CPU backend
# plans memory only after "O2", so O0 and O1 stay the plain reference).
RUNTIME_OPTIONS = {"passes": "O2"}
DEFAULT_DEVICE = "cpu"  # what gc.trace compiles for unless told otherwise


def buffer_roots(graph: Graph) -> dict:
    """Value -> the value whose buffer it shares (itself unless a view op made it).

    This is the aliasing every backend may rely on, and the only aliasing the runtime
    allows for: an output whose root is an input (``x``, ``x.reshape(...)``), or whose root
    is returned twice, is copied by the runtime before the user sees it.
    """
    root = {v: v for v in graph.inputs}
    for node in graph.nodes:
        op = registry.get(node.op)
        for out in node.outputs:
            x = node.inputs[0] if node.inputs else None
            shares = op.view and x is not None and x.type.shape and out.type.shape
            root[out] = root[x] if shares else out
    return root


class Executable:
    """What ``Backend.compile`` returns: one graph, ready to run on one device.

    ``executable(*args)`` takes the graph's inputs in ``graph.inputs`` order, as the runtime
    prepares them (NumPy arrays in native byte order and C order, 0-d values as NumPy or
    Python scalars), and returns a tuple with one value per ``graph.outputs``: an array, or
    for a 0-d output a scalar or 0-d array (the runtime gives it its dtype). Each array must
    be new to the caller (nothing else holds or will write it), except

    * outputs that ``buffer_roots`` says share an input's buffer, or share a buffer with
      another output: the runtime copies those itself;
    * outputs listed in ``inplace``: written into the array of a donated input (a State's
      update written over its current value); the runtime then skips that write-back.

    An error raised by the call propagates to the user (the runtime adds a note naming the
    ops that can raise); a call that raises must not have written any donated input.
    """

    source: str | None = None  # the generated source, where the backend generates one
    ready: bool = True  # False while the first call still has to compile
    # 0-d outputs are device arrays the runtime hands over as they are (CUDA's on a GPU), not
    # scalars it gives their dtype
    device_scalars: bool = False

    def prepare(self, *args):
        """Compile for these inputs now, where the backend would compile on the first call;
        raises what that call would (CompileError), running nothing."""
    cache_hits: int = 0  # machine code loaded from a disk cache / compiled afresh (0 where no cache)
    cache_misses: int = 0

    def __init__(self, inplace: dict | None = None):
        # output position -> input position whose array the output was written into
        self.inplace = dict(inplace or {})

    def __call__(self, *args) -> tuple:
        raise NotImplementedError

    @property
    def fast_entry(self):
        """A callable equivalent to calling the executable, cheaper to call, once one exists
        (None until then, or where there is none): the runtime calls it instead."""
        return None


class Backend:
    """One device: validates its options and compiles graphs into ``Executable`` objects.

    Subclasses set ``device`` (the name ``gc.trace(device=...)`` selects) and ``options``
    (option name -> its allowed values, the default first), and implement ``compile``.
    """

    device: str = ""
    options: dict[str, tuple] = {}
    # compiles a graph with symbolic dimensions (``f32[B,64]``) into one executable for every
    # size of them >= 2, or raises; the runtime tries that only on backends that say so
    symbolic_dims: bool = False
    # its executables can be compiled by a worker process into the disk cache while the NumPy
    # interpreter runs the first calls (compile="background": graphc/backend/background.py)
    background: bool = False

    def check_options(self, options: dict) -> dict:
        """The options with defaults filled in; ``ValueError`` naming the device and the
        option for an option it does not have or a value it does not accept."""
        for name, value in options.items():
            if name in RUNTIME_OPTIONS:
                continue
            if name not in self.options:
                have = ", ".join(self.options) or "none"
                raise ValueError(f"device {self.device!r} has no option {name!r} (its options: {have})")
            if value not in self.options[name]:
                raise ValueError(f"device {self.device!r}: unknown {name} mode {value!r}; choose one of "
                                 f"{', '.join(map(str, self.options[name]))}")
        checked = {name: options.get(name, allowed[0]) for name, allowed in self.options.items()}
        checked.update({name: options.get(name, default) for name, default in RUNTIME_OPTIONS.items()})
        return checked

    def compile(self, graph: Graph, options: dict) -> Executable:
        """An ``Executable`` running ``graph`` (reads the graph, never changes it); ``options``
        are the user's (see ``check_options``) plus ``RUNTIME_OPTIONS``."""
        raise NotImplementedError

    def __repr__(self):
        return f"<graphc backend {self.device!r}>"


_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Make ``backend`` selectable as ``gc.trace(device=backend.device)``."""
    _BACKENDS[backend.device] = backend
    return backend


def devices() -> tuple:
    """The names of the registered devices."""
    return tuple(_BACKENDS)


def get(device) -> Backend:
    """The backend for ``device``; ``ValueError`` listing the devices for any other name."""
    backend = _BACKENDS.get(device) if isinstance(device, str) else None
    if backend is None:
        raise ValueError(f"device {device!r} is not available: graphc's devices are "
                         f"{', '.join(map(repr, _BACKENDS))}")
    return backend
