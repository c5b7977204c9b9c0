"""graphc.optim: optimizers whose ``step()`` traces into the compiled training step.

Hyperparameters are State (``group['lr'] = x`` never retraces); per-parameter
buffers are State updated in place. Formulas follow PyTorch's single-tensor
implementations.
"""
from graphc.optim import lr_scheduler
from graphc.optim.algorithms import SGD, Adagrad, Adam, AdamW, RMSprop
from graphc.optim.optimizer import Optimizer, ParamGroup

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "ParamGroup", "RMSprop", "lr_scheduler"]
