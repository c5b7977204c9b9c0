"""graphc's own exceptions. Each names the op, the shapes and the user's line."""


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class TraceError(GraphcError, TypeError):
    """The function cannot be traced (data-dependent control flow, unsupported call...)."""


class NotGeneric(TraceError):
    """A function traced for a symbolic dimension depends on its size (graphc/symbolic.py)."""


class ShapeError(GraphcError, ValueError):
    """Shapes or dtypes of an op's operands do not fit together."""


class ExportError(GraphcError, ValueError):
    """A model file cannot be written or read."""


class CompileError(GraphcError, RuntimeError):
    """The backend failed to compile the generated code for a node."""


class DeviceError(GraphcError, RuntimeError):
    """The requested device is missing (no GPU, no driver, no CUDA packages) or an array is
    on another device than the one a function was compiled for."""


class VerifyError(GraphcError, AssertionError):
    """A graph breaks an IR invariant (SSA, types, topological order)."""


class NonFiniteError(GraphcError, FloatingPointError):
    """``check_finite=True`` found NaN or inf in updated state; nothing was written back."""


class PassWarning(UserWarning):
    """An optimization pass failed on a graph (a graphc bug); the graph from before it was used.

    ``GRAPHC_PASS_ERRORS=raise`` raises the pass's exception instead.
    """
