"""Layers: Linear, activations, Dropout, BatchNorm1d, Flatten, Identity, and the losses."""
from __future__ import annotations

import math

import numpy as np

import graphc.ops.elementwise as ew
from graphc.errors import ShapeError
from graphc.nn import functional as F, init
from graphc.nn.module import Module
from graphc.nn.parameter import Parameter
from graphc.ops.reduction import element_count, mean as reduce_mean
from graphc.ops.shape import reshape
from graphc.trace import type_of, user_line


def _as_float(x, dtype):
    """Cast a non-matching input to the layer's dtype (float64 data into a float32 model)."""
    return ew.cast(x, dtype) if type_of(x).dtype != np.dtype(dtype).name else x


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight`` of shape ``(out_features, in_features)``.

    Initialised as PyTorch does: ``kaiming_uniform_(weight, a=sqrt(5))`` and a
    bias uniform in ``±1/sqrt(in_features)``. Inputs of another float dtype are
    cast to the layer's dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype))
        self.bias = Parameter(np.empty((self.out_features,), dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        shape = type_of(x).shape
        if not shape or shape[-1] != self.in_features:
            raise ShapeError(f"{self._label()} expects inputs whose last dimension is "
                             f"{self.in_features}, but got an input of shape {tuple(shape)}\n"
                             f"  at {user_line()}")
        w = self.weight.read()
        x = _as_float(x, w.dtype)
        return F.linear(x, w, self.bias.read() if self.bias is not None else None)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        shape = tuple(type_of(x).shape)
        n = len(shape)
        s, e = self.start_dim % n, self.end_dim % n
        new = shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
        return reshape(x, new)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zeroes elements with probability ``p`` in training mode (identity in eval).

    The mask is drawn inside the compiled step from a counter-based generator
    whose seed and counter are State (see ``graphc.nn.random``): each call gets
    a fresh mask without retracing. ``generator`` defaults to the shared one
    seeded by ``graphc.nn.manual_seed``.
    """

    def __init__(self, p: float = 0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)`` inputs, as PyTorch.

    Train mode normalises with the batch statistics (biased variance) and
    updates ``running_mean``/``running_var`` (unbiased variance) and
    ``num_batches_tracked`` in place; eval mode uses the running statistics.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        shape = tuple(type_of(x).shape)
        if len(shape) not in (2, 3) or shape[1] != self.num_features:
            raise ShapeError(f"{self._label()} expects input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L), but got shape {shape}\n  at {user_line()}")
        dtype = self.weight.dtype if self.affine else (
            self.running_mean.dtype if self.track_running_stats else np.dtype("float32"))
        x = _as_float(x, dtype)
        axes = (0,) if len(shape) == 2 else (0, 2)
        bshape = (1, self.num_features) + ((1,) if len(shape) == 3 else ())
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            n = shape[0] * (shape[2] if len(shape) == 3 else 1)
            if n <= 1:
                raise ValueError(f"{self._label()}: expected more than 1 value per channel when "
                                 f"training, got input of shape {shape}")
            mean = reduce_mean(x, axis=axes, keepdims=True)
            d = x - mean
            var = reduce_mean(d * d, axis=axes, keepdims=True)
            if self.training and self.track_running_stats:
                count = self.num_batches_tracked.read() + 1
                self.num_batches_tracked.write(count)
                if self.momentum is None:  # cumulative moving average
                    f = ew.cast(ew.divide(1.0, ew.cast(count, "float64")), dtype)
                else:
                    f = np.asarray(self.momentum, dtype)
                rm, rv = self.running_mean.read(), self.running_var.read()
                m1, v1 = reshape(mean, (self.num_features,)), reshape(var, (self.num_features,))
                # n / (n - 1) from nodes, not Python numbers: generic in a symbolic batch size
                ratio = ew.divide(element_count(x, axes, "float64"), element_count(x, axes, "float64", offset=-1))
                unbiased = v1 * ew.cast(ratio, dtype)
                self.running_mean.write((1 - f) * rm + f * m1)
                self.running_var.write((1 - f) * rv + f * unbiased)
        else:
            mean = reshape(self.running_mean.read(), bshape)
            var = reshape(self.running_var.read(), bshape)
            d = x - mean
        y = d * (1 / ew.sqrt(var + np.asarray(self.eps, dtype)))
        if self.affine:
            y = y * reshape(self.weight.read(), bshape) + reshape(self.bias.read(), bshape)
        return y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


# -- losses ----------------------------------------------------------------------------
class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits and integer class targets (or class probabilities)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.weight = None if weight is None else np.asarray(weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)
