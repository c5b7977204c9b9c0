"""``Module``: PyTorch's module tree (parameters, buffers, children, state dicts, train/eval)."""
from __future__ import annotations

import functools
from collections import OrderedDict, namedtuple

import numpy as np

from graphc.backend import cuda_device  # (imports no CUDA package: that happens on first use)
from graphc.context import on_gpu
from graphc.errors import GraphcError
from graphc.nn.parameter import Parameter, zero_grad
from graphc.state import State
from graphc import capture
from graphc.trace import current_builder



class StateDictError(GraphcError, RuntimeError):
    """``load_state_dict`` found missing, unexpected or wrong-shaped keys."""


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _as_numpy(value):
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    elif isinstance(value, State):
        value = value._data
    return np.asarray(value)


def checked_copy(value, dtype, what: str):
    """``value`` as a new array of ``dtype``, for a state dict: numbers only (booleans, integers,
    floats); strings, objects and complex values are refused rather than turned into NaN."""
    try:
        array = _as_numpy(value)
    except (TypeError, ValueError) as exc:
        raise StateDictError(f"{what}: cannot be read as an array ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise StateDictError(f"{what}: expected numbers, got an array of dtype {array.dtype} "
                             f"({type(value).__name__})")
    with np.errstate(all="ignore"):
        return np.array(array, dtype=dtype)


def _changed(module):
    """Count an attribute change: compiled functions that called the module trace again."""
    module.__dict__["_graphc_version"] = module.__dict__.get("_graphc_version", 0) + 1


def _set_mode(module, effects, key):
    """After a compiled call: leave ``module`` in the mode the traced code left it in."""
    module.__dict__["_training"] = effects[key]


def _version(module) -> int:
    return module.__dict__.get("_graphc_version", 0)


class Module:
    """Base class of every layer and model. Subclasses define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_arrays", {})  # plain ndarray attributes (a loss's class weights)
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_path", None)

    # -- registration -------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning attributes")
        if name != "training":  # (train/eval mode has a guard of its own, in the property)
            _changed(self)
        if name in self._parameters and not isinstance(value, Parameter) and value is not None:
            raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} of "
                            f"{type(self).__name__} (graphc.nn.Parameter or None expected); to change "
                            f"its values in place write {name}.data[...] = value")
        if name in self._buffers and isinstance(value, np.ndarray):  # stays a buffer, as in PyTorch
            old = self._buffers[name]
            self.register_buffer(name, value, getattr(old, "persistent", True))
            return
        if name in self._parameters and value is None:
            self._parameters[name] = None
            object.__setattr__(self, name, None)
            return
        arrays = self.__dict__.get("_arrays")
        if arrays is not None:
            arrays.pop(name, None)
            if type(value) is np.ndarray:  # read through __getattr__: a trace reads it by reference
                for table in (self._parameters, self._buffers, self._modules):
                    table.pop(name, None)
                self.__dict__.pop(name, None)
                arrays[name] = value
                return
        home = (self._parameters if isinstance(value, Parameter)
                else self._modules if isinstance(value, Module) else None)
        for table in (self._parameters, self._buffers, self._modules):
            if table is not home:  # (a replacement keeps its place in the order, as in PyTorch)
                table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            if value.name is None:
                value.name = name
        elif isinstance(value, Module):
            self._modules[name] = value
            if value._path is None:
                object.__setattr__(value, "_path", name)
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        """A plain ndarray attribute (``self.mask``, a loss's ``weight``): inside a trace it is read
        by reference on every call, so ``module.mask[0] = 0`` takes effect as in eager code."""
        arrays = self.__dict__.get("_arrays")
        if arrays is None or name not in arrays:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = arrays[name]
        builder = current_builder()
        if builder is None or not capture.capturable(value):
            return value
        return capture.captured(builder, ("module array", id(self), name), functools.partial(arrays.get, name),
                                f"{self._label()}.{name}")

    def __delattr__(self, name):
        _changed(self)
        arrays = self.__dict__.get("_arrays")
        if arrays is not None and name in arrays:
            del arrays[name]
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None):
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor, persistent: bool = True):
        """A non-trainable State (BatchNorm statistics...) saved in the state dict."""
        st = tensor if isinstance(tensor, State) else State(np.array(tensor))
        st.persistent = persistent
        if getattr(st, "name", None) is None:
            st.name = name
        self._buffers.pop(name, None)
        setattr(self, name, st)
        self._buffers[name] = st
        return st

    def add_module(self, name: str, module: "Module"):
        setattr(self, name, module)

    # -- calling --------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        builder = current_builder()
        if builder is not None:
            self.training  # noqa: B018  (the graph may depend on train/eval mode: guarded)
            # and on every attribute (a layer or Parameter rebound, Dropout.p, a loss's reduction)
            builder.guard_final(("graphc.nn.module", id(self)), functools.partial(_version, self),
                                f"{self._label()} attributes")
            # a forward written by the user reads its globals at call time, as any traced function
            return capture.watch(self.forward, builder)(*args, **kwargs)
        return self.forward(*args, **kwargs)

    @property
    def training(self) -> bool:
        """Train or eval mode. Read inside a trace, it is guarded: a compiled function that read
        it retraces after ``train()``/``eval()`` (also in a ``forward`` compiled with ``@gc.trace``)."""
        mode = self.__dict__["_training"]
        builder = current_builder()
        if builder is not None:
            guarded = builder.aux.setdefault("graphc.nn.mode_guards", set())
            if id(self) not in guarded:  # (not when the traced code set the mode itself first)
                guarded.add(id(self))
                builder.guard(lambda: self.__dict__["_training"], mode, f"{self._label()} train/eval mode")
        return mode

    @training.setter
    def training(self, mode):
        self.__dict__["_training"] = bool(mode)
        builder = current_builder()
        if builder is not None:
            # model.train()/eval() inside a traced function: the graph follows the mode set here
            # (no guard on the mode on entry), and every compiled call sets it again afterwards,
            # as running the function eagerly would
            builder.aux.setdefault("graphc.nn.mode_guards", set()).add(id(self))
            effects = builder.aux.setdefault("graphc.nn.mode_effects", {})
            if id(self) not in effects:
                effects[id(self)] = None
                builder.aux.setdefault("graphc.after_call", []).append(
                    functools.partial(_set_mode, self, effects, id(self)))
            effects[id(self)] = bool(mode)

    # -- traversal ------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = ""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, table, prefix, recurse):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, module in mods:
            for name, item in getattr(module, table).items():
                if item is None or id(item) in seen:
                    continue
                seen.add(id(item))
                yield (f"{mprefix}.{name}" if mprefix else name), item

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        for name, p in self._named_members("_parameters", prefix, recurse):
            p.name = name
            yield name, p

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    # -- modes and conversion -------------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True):
        """Gradients to None (or to zeros with ``set_to_none=False``), as PyTorch's."""
        zero_grad(self.parameters(), set_to_none)

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args, device=None, dtype=None):
        """``model.to("cuda")``, ``model.to("cpu")``, ``model.to(np.float32)`` or both, as PyTorch's.

        A device moves every parameter, gradient and buffer: to GPU arrays for ``"cuda"`` (a
        compiled step with ``device="cuda"`` then reads and updates them there, without
        copies), back to NumPy arrays for ``"cpu"``. A dtype converts the floating-point ones.
        Compiled functions using this model retrace on their next call where a dtype changed.
        """
        for arg in args:
            if isinstance(arg, str) and arg.split(":")[0] in ("cpu", "cuda"):
                device = arg
            elif arg is not None:
                dtype = arg
        if dtype is not None:
            self._convert(np.dtype(dtype))
        if device is not None:
            self._move(device)
        return self

    def _convert(self, dtype):
        if dtype.kind != "f":
            raise TypeError(f"Module.to() only converts to floating-point dtypes, got {dtype}")
        for st in list(self.parameters()) + list(self.buffers()):
            if st._data.dtype.kind == "f":
                st._data = st._data.astype(dtype)
                if isinstance(st, Parameter) and st._grad is not None:
                    st.grad = st._grad.astype(dtype)

    def _move(self, device: str):
        if device not in ("cpu", "cuda", "cuda:0"):
            raise ValueError(f"Module.to({device!r}): graphc runs on 'cpu' or 'cuda' (the current CUDA "
                             f"device; choose another with `with cupy.cuda.Device(n):`)")
        move = _to_host if device == "cpu" else _to_gpu()
        for st in list(self.parameters()) + list(self.buffers()):
            st._data = move(st._data)
            if isinstance(st, Parameter) and st._grad is not None:
                st._grad = move(st._grad)
                if st._grad_state is not None:
                    st._grad_state._data = st._grad

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # -- state dicts --------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by PyTorch's key names (the arrays themselves, not
        copies; NumPy copies of those on a GPU)."""
        out = OrderedDict() if destination is None else destination
        for mprefix, module in self.named_modules(prefix=prefix.rstrip(".")):
            for table in ("_parameters", "_buffers"):
                for name, st in getattr(module, table).items():
                    if st is None or not getattr(st, "persistent", True):
                        continue
                    out[f"{mprefix}.{name}" if mprefix else name] = st if keep_vars else _to_host(st._data)
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into this model's state in place. Keys and shapes as PyTorch's.

        Missing or unexpected keys (with ``strict``), wrong shapes, values that are not
        numbers (strings, objects) and read-only arrays raise ``StateDictError`` listing
        all of them; everything is checked before anything is written, so on an error
        nothing has changed.
        """
        own = self.state_dict(keep_vars=True)
        given = dict(state_dict.items())
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        problems = []
        if strict and missing:
            problems.append("missing key(s): " + ", ".join(repr(k) for k in missing))
        if strict and unexpected:
            problems.append("unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
        # everything is checked and converted first: on any error nothing has been written
        converted, wrong = {}, []
        for k, st in own.items():
            if k not in given:
                continue
            try:
                value = checked_copy(given[k], st._data.dtype, repr(k))
            except StateDictError as exc:
                problems.append(str(exc))
                continue
            if value.shape != st._data.shape:
                wrong.append(f"{k}: expected shape {st._data.shape}, got {value.shape}")
            elif on_gpu(st._data):  # (a model moved to the GPU: the value goes there)
                converted[k] = cuda_device.device().to_device(value)
            elif not st._data.flags.writeable:
                problems.append(f"{k!r}: the model's array is read-only")
            else:
                converted[k] = value
        if wrong:
            problems.append("size mismatch for " + "; ".join(wrong))
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                                 + "\n  ".join(problems))
        for k, value in converted.items():
            own[k]._data[...] = value
        return IncompatibleKeys(missing, unexpected)

    # -- printing ------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = ([extra] if extra else []) + lines
        return f"{type(self).__name__}(\n  " + "\n  ".join(body) + "\n)"

    def _label(self) -> str:
        """How errors name this layer: ``Linear layer '0' (in_features=4, ...)``."""
        where = f" '{self._path}'" if self._path else ""
        return f"{type(self).__name__} layer{where} ({self.extra_repr()})"


class Sequential(Module):
    """Modules applied in order: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 1))``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules registered as children (``0``, ``1``...)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def _to_host(array):
    """A NumPy array: ``array`` itself, or a host copy of a GPU array."""
    if isinstance(array, np.ndarray):
        return array
    return cuda_device.device().to_host(array)


def _to_gpu():
    return cuda_device.device().to_device  # (DeviceError where there is no GPU and no simulator)
