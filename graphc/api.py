"""Compiled differentiation: ``grad`` and ``value_and_grad`` return traced (compiled) functions.

The graph transform itself is ``graphc.autodiff``; these wrap it in a
``TracedFunction`` (the runtime), which is why they live above both.
"""
from __future__ import annotations

from graphc.autodiff import _differentiate
from graphc.runtime import TracedFunction


def grad(fn, argnums=0, has_aux=False, **trace_options):
    """A compiled function returning the gradient of scalar-valued ``fn`` w.r.t. ``argnums``.

    ``argnums`` is an int (one gradient) or a tuple (a tuple of gradients); an
    argument may be a nested tuple/list/dict of arrays (gradients have its shape).
    With ``has_aux``, ``fn`` returns ``(value, aux)`` and grad returns ``(grads, aux)``.
    Options of ``gc.trace`` (``passes``, ``device``, ``static_argnums``) are accepted.
    """
    name = f"grad_{getattr(fn, '__name__', 'fn')}".replace("<lambda>", "lambda")
    body = _differentiate(fn, argnums, has_aux, "gc.grad")

    def grad_fn(*args, **kwargs):
        value, aux, grads = body(*args, **kwargs)
        return (grads, aux) if has_aux else grads

    return TracedFunction(grad_fn, name=name, **trace_options)


def value_and_grad(fn, argnums=0, has_aux=False, **trace_options):
    """A compiled function returning ``(value, gradient)`` of scalar-valued ``fn``.

    With ``has_aux``: ``((value, aux), gradient)``, as ``jax.value_and_grad``.
    """
    name = f"value_and_grad_{getattr(fn, '__name__', 'fn')}".replace("<lambda>", "lambda")
    body = _differentiate(fn, argnums, has_aux, "gc.value_and_grad")

    def value_and_grad_fn(*args, **kwargs):
        value, aux, grads = body(*args, **kwargs)
        return ((value, aux), grads) if has_aux else (value, grads)

    return TracedFunction(value_and_grad_fn, name=name, **trace_options)
