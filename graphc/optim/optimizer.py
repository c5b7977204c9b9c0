"""``Optimizer``: PyTorch's parameter groups and per-parameter state, built on ``State``.

Every numeric hyperparameter of a group (``lr``, ``momentum``, ``betas``...) is
held in a 0-d float64 ``State``: ``group['lr'] = 0.01`` (or a scheduler) changes
the data a compiled step reads, never the graph, so nothing retraces. Boolean
options (``nesterov``, ``amsgrad``...) shape the graph and are read when the
step is traced. Per-parameter buffers (momentum, Adam moments, step counts) are
``State`` too, created on the first ``step()`` and updated in place.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

import graphc.ops.elementwise as ew
from graphc.nn.parameter import Parameter
from graphc.state import State
from graphc.errors import TraceError
from graphc.nn.parameter import zero_grad
from graphc.nn.module import StateDictError, checked_copy
from graphc.trace import current_builder, user_line



class ParamGroup(dict):
    """A dict like PyTorch's param group; numeric entries live in 0-d float64 States."""

    def __init__(self, group):
        super().__init__()
        self.states = {}
        for k, v in group.items():
            self[k] = v

    def __setitem__(self, key, value):
        if key in self.states:
            if current_builder() is not None:
                raise TraceError(f"param_group[{key!r}] = value inside a traced function is not supported "
                                 f"(at {user_line()}): the compiled step would write the value computed "
                                 f"when traced on every call; set it between calls (a scheduler's step()), "
                                 f"or write opt.param_groups[i].states[{key!r}].data[...] = value")
            st = self.states[key]
            if isinstance(st, tuple):
                for s, v in zip(st, value):
                    s._data[...] = float(v)
            else:
                st._data[...] = float(value)
        elif _is_number(value):
            self.states[key] = _hyper(value, key)
        elif isinstance(value, tuple) and value and all(_is_number(v) for v in value):
            self.states[key] = tuple(_hyper(v, f"{key}[{i}]") for i, v in enumerate(value))
        super().__setitem__(key, value)

    def __getitem__(self, key):
        st = self.states.get(key)
        if st is None:
            return super().__getitem__(key)
        builder = current_builder()
        if builder is not None:  # a Python number of the trace: retrace when it changes
            builder.guard_final(("graphc.optim.hyperparameter", id(self), key), lambda: self._number(key),
                                f"hyperparameter {key!r} of a param group, read as a Python number")
        return self._number(key)

    def option(self, key):
        """``group[key]`` without the guard a trace adds: for the optimizer's own reads, which
        guard what the graph depends on (``Optimizer._guard``: ``momentum != 0``, not its value)."""
        return self._number(key) if key in self.states else super().__getitem__(key)

    def _number(self, key):
        st = self.states[key]
        return tuple(float(s._data) for s in st) if isinstance(st, tuple) else float(st._data)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        return ((k, self[k]) for k in self.keys())

    def values(self):
        return (self[k] for k in self.keys())

    def read(self, key):
        """The hyperparameter as a value of the step: a traced input inside a trace, else a 0-d array."""
        st = self.states[key]
        return tuple(s.read() for s in st) if isinstance(st, tuple) else st.read()


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _hyper(value, name):
    st = State(np.array(float(value), np.float64))
    st.name = f"hyperparameter {name}"
    return st


class Optimizer:
    """Base class: holds ``param_groups`` and ``state``; subclasses define ``_update``."""

    _buffers: tuple = ()  # names of per-parameter State buffers

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state: dict = {}  # Parameter -> {name: State}
        self.param_groups: list[ParamGroup] = []
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def _group_structure(self) -> tuple:
        return tuple(tuple(map(id, group["params"])) for group in self.param_groups)

    def add_param_group(self, group):
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Parameter) else list(ps)
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize graphc.nn.Parameter objects, got "
                                f"{type(p).__name__}")
            if p._data.dtype.kind != "f":
                raise TypeError(f"optimizer can only optimize floating-point parameters, got {p._data.dtype}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError("some parameters appear in more than one parameter group")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group["params"] = ps
        self.param_groups.append(ParamGroup(group))

    def zero_grad(self, set_to_none: bool = True):
        """Gradients to None (or to zeros with ``set_to_none=False``), as PyTorch's; inside a
        trace the compiled call does it."""
        zero_grad((p for group in self.param_groups for p in group["params"]), set_to_none)

    def _guard(self, group, key, test=None):
        """Read a structural option the traced graph depends on, noting it for runtime guards.

        ``test`` maps the value to what the graph depends on (e.g. ``wd != 0``).
        Recorded as a guard of the trace: ``check()`` recomputes the value at call
        time and the runtime retraces when it changed.
        """
        test = test or (lambda v: v)
        value = test(group.option(key))
        builder = current_builder()
        if builder is not None:
            builder.guard(lambda: test(group.option(key)), value, f"{type(self).__name__} option {key!r}")
        return value

    def _buffer_names(self, group) -> tuple:
        return self._buffers

    def _counts_steps(self, group) -> bool:
        return True

    def _group_of(self, p):
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                return group
        raise KeyError("parameter is not in this optimizer")

    def _state_for(self, p, group=None):
        """The parameter's buffers, made when first needed: also later, when an option that needs
        a buffer (SGD's momentum, RMSprop's centered) is switched on after some steps."""
        st = self.state.setdefault(p, OrderedDict())
        group = group or self._group_of(p)
        wanted = (("step",) if self._counts_steps(group) else ()) + tuple(self._buffer_names(group))
        for name in wanted:
            if name not in st:
                st[name] = State(np.zeros((), np.float64) if name == "step"
                                 else np.full_like(p._data, self._initial(name, group)))
                st[name].name = f"{type(self).__name__} {name} of {p.name or 'parameter'}"
        return st

    def _initial(self, name, group):
        return 0.0

    def step(self, closure=None):
        """Update every parameter that has a gradient (the others are left unchanged).

        Raises when no parameter has one: ``loss.backward()`` inside a traced function
        (this one, or an earlier compiled call) sets them; eagerly, set ``p.grad`` by hand.
        """
        loss = closure() if closure is not None else None
        builder = current_builder()
        if builder is not None:  # the graph depends on the groups' parameters: add_param_group retraces
            builder.guard_final(("graphc.optim.groups", id(self)), self._group_structure,
                                f"{type(self).__name__} parameter groups")
        updates = [(p, group, p.grad) for group in self.param_groups for p in group["params"]]
        updates = [(p, group, g) for p, group, g in updates if g is not None]
        if not updates:
            where = ("inside this trace, no loss.backward() set a gradient and no earlier compiled "
                     f"call left one (at {user_line()})") if current_builder() is not None else (
                     "eagerly, loss.backward() cannot run: put zero_grad, the forward pass, backward "
                     "and step in a function decorated with @gc.trace")
            raise (TraceError if current_builder() is not None else RuntimeError)(
                f"{type(self).__name__}.step(): no parameter has a gradient; {where}")
        for p, group, g in updates:
            dtype = p._data.dtype
            self._update(p, ew.cast(g, dtype), group, self._state_for(p, group), dtype)
        return loss

    def _update(self, p, g, group, state, dtype):
        raise NotImplementedError

    # -- hyperparameter helpers -----------------------------------------------------------
    @staticmethod
    def _h(group, key, dtype):
        """Hyperparameter ``key`` in the parameter's dtype."""
        return ew.cast(group.read(key), dtype)

    # -- state dicts ----------------------------------------------------------------------
    def state_dict(self):
        """``{'state': {index: {name: array}}, 'param_groups': [...]}`` as PyTorch's layout."""
        index, groups = {}, []
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: s._data.copy() for k, s in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load ``state_dict()``'s layout: hyperparameters per group and per-parameter buffers.

        Everything is checked first (group count and sizes, parameter indices, shapes, numbers
        rather than strings or objects); on any error ``ValueError`` is raised and nothing
        has changed.
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer "
                             f"has {len(self.param_groups)}")
        params, writes = {}, []
        for g, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"loaded state dict's parameter group {g} has {len(theirs['params'])} "
                                 f"parameters, this optimizer's has {len(mine['params'])}")
            for p, i in zip(mine["params"], theirs["params"]):
                params[i] = p
            for k, v in theirs.items():
                if k != "params":
                    writes.append((mine, k, self._checked_option(g, k, v, mine)))
        buffers = []
        for i, entries in state_dict["state"].items():
            if i not in params:
                raise ValueError(f"loaded optimizer state names parameter {i!r}, which no parameter "
                                 f"group lists")
            p = params[i]
            own = self.state.get(p, {})
            for k, v in entries.items():
                where = f"optimizer state {k!r} of parameter {i}"
                want = own[k]._data if k in own else None
                try:
                    dtype = want.dtype if want is not None else (p._data.dtype if np.ndim(v) else np.float64)
                    value = checked_copy(v, dtype, where)
                except StateDictError as exc:
                    raise ValueError(str(exc)) from None
                shape = want.shape if want is not None else (p._data.shape if value.ndim else ())
                if value.shape != shape:
                    raise ValueError(f"{where}: expected shape {shape}, got {value.shape}")
                buffers.append((p, k, value))
        for group, k, v in writes:
            group[k] = v
        for p, k, value in buffers:
            st = self._state_for(p)
            if k in st:
                st[k]._data[...] = value
            else:
                st[k] = State(value)
                st[k].name = f"{type(self).__name__} {k} of {p.name or 'parameter'}"

    @staticmethod
    def _checked_option(g, key, value, group):
        """A loaded hyperparameter: a number (or tuple of numbers) where this group holds one."""
        current = group.get(key)
        numeric = key in group.states
        if numeric and isinstance(current, tuple):
            ok = isinstance(value, (tuple, list)) and len(value) == len(current) and all(
                _is_number(v) for v in value)
            value = tuple(value) if ok else value
        elif numeric:
            ok = _is_number(value) or isinstance(value, np.ndarray) and value.ndim == 0 and \
                value.dtype.kind in "iuf"
        else:
            ok = True
        if not ok:
            raise ValueError(f"loaded state dict's parameter group {g}: option {key!r} = {value!r} is "
                             f"not a number like this optimizer's {current!r}")
        return value

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])


def lerp(a, b, w, small: bool = True):
    """PyTorch's ``a.lerp_(b, w)`` rounding: ``a + w (b - a)`` for ``w < 0.5`` (``small``), else
    ``b - (b - a)(1 - w)``. ``small`` is decided when tracing (and guarded)."""
    d = b - a
    return a + w * d if small else b - d * (1 - w)
