"""graphc.nn: PyTorch-shaped neural-network modules that trace into graphc graphs.

::

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()

Parameters are ``State`` (``p.data`` is the NumPy array); inside ``gc.trace``
``loss.backward()`` adds its gradient to each parameter's ``.grad``, which holds the
gradient after the compiled call, as in PyTorch (see ``graphc.nn.parameter``).
"""
from graphc.nn import autograd as _autograd
from graphc.nn import functional, init
from graphc.nn.layers import (
    BatchNorm1d, BCEWithLogitsLoss, CrossEntropyLoss, Dropout, Flatten, Identity, L1Loss, LeakyReLU,
    Linear, LogSoftmax, MSELoss, ReLU, Sigmoid, Softmax, Tanh,
)
from graphc.nn.module import IncompatibleKeys, Module, ModuleList, Sequential, StateDictError
from graphc.nn.parameter import Parameter
from graphc.nn.random import Generator, default_generator, manual_seed

_autograd.install()

__all__ = [
    "BatchNorm1d", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Flatten", "Generator",
    "Identity", "IncompatibleKeys", "L1Loss", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "Module",
    "ModuleList", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax", "StateDictError", "Tanh",
    "default_generator", "functional", "init", "manual_seed",
]
