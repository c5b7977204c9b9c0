"""``loss.backward()`` on traced values: the gradient transform applied to every Parameter read."""
from __future__ import annotations

import functools

from graphc.autodiff import backward as _graph_backward
from graphc.errors import TraceError
from graphc.nn.parameter import _READS, set_traced_grad
from graphc.ops.shape import broadcast_to
from graphc.trace import Tracer, user_line


def tracer_backward(self, gradient=None):
    """Add backward nodes for ``self`` (a scalar) and set ``.grad`` of each Parameter it uses.

    Gradients accumulate (as in PyTorch): into those of earlier ``backward`` calls
    of this trace and, without ``zero_grad()``, into the gradient an earlier
    compiled call left in ``p.grad``. A Parameter the loss does not depend on
    keeps its ``grad``, so optimizers leave it unchanged. ``gradient`` seeds a
    non-scalar ``self``. A loss that depends on no Parameter raises, as in PyTorch.
    """
    builder = self.builder
    if builder.finished:
        raise TraceError(f"backward() on a value from a finished trace (at {user_line()}); call it "
                         f"inside the traced function")
    if gradient is None and self.shape != ():
        raise TraceError(f"backward() needs a scalar loss, but this value has shape {self.shape} "
                         f"(at {user_line()}); reduce it first (e.g. loss.mean()) or pass gradient=")
    if self.dtype.kind != "f":
        raise TraceError(f"backward() of a {self.dtype} value: only floating-point values have "
                         f"gradients (at {user_line()})")
    reads = builder.aux.get(_READS, {})
    for p in reads:  # the graph depends on which Parameters require grad: retrace on a change
        builder.guard_final(("graphc.nn.requires_grad", id(p)), functools.partial(getattr, p, "requires_grad"),
                            f"requires_grad of {p.name or 'a parameter'}")
    params = [p for p, v in reads.items() if p.requires_grad and v.dtype.kind == "f"]
    if not params:
        raise TraceError(f"backward(): the loss depends on no Parameter that requires grad (at "
                         f"{user_line()}); nothing would get a gradient. Use gc.grad(fn) to differentiate "
                         f"with respect to plain arrays")
    seed = None
    if gradient is not None:
        seed = gradient if isinstance(gradient, Tracer) else broadcast_to(gradient, self.shape)
        if not isinstance(seed, Tracer):
            seed = Tracer(builder.constant(seed.astype(self.dtype)), builder)
    grads = _graph_backward(self, [reads[p].value for p in params], seed=seed)
    if all(g is None for g in grads):
        raise TraceError(f"backward(): the loss does not depend on any Parameter that requires grad "
                         f"(at {user_line()}); nothing would get a gradient")
    for p, g in zip(params, grads):
        if g is not None:
            old = p.grad
            set_traced_grad(p, builder, g if old is None else old + g)


def install():
    Tracer.backward = tracer_backward
