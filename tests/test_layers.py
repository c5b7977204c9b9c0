"""The package is layered one way (DESIGN.md, docs/architecture.md): no import cycle, no
import going up a layer, no op family importing another, and each layer loads on its own.

The layer table below is the architecture in code: a new module must be given a layer here.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import networkx as nx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# bottom to top; a module may import modules of its own layer or below
LAYERS = [
    ("base", ["graphc.errors", "graphc.pytree", "graphc.context", "graphc.fileio"]),
    ("ir", ["graphc.ir"]),
    ("registry", ["graphc.ops.registry", "graphc.ops.scalar"]),
    ("state", ["graphc.state", "graphc.capture"]),
    ("trace", ["graphc.trace"]),
    ("op helpers", ["graphc.ops.rules", "graphc.ops.prims"]),
    ("op families", ["graphc.ops.elementwise", "graphc.ops.shape", "graphc.ops.reduction",
                     "graphc.ops.indexing", "graphc.ops.linalg", "graphc.ops.linalg_decomp",
                     "graphc.ops.creation", "graphc.ops.scan", "graphc.ops.sort", "graphc.ops.nn",
                     "graphc.ops.convert", "graphc.ops.bitwise", "graphc.ops.debug", "graphc.ops.fused",
                     "graphc.ops.control"]),
    ("ops", ["graphc.ops.methods", "graphc.ops"]),
    ("transforms", ["graphc.interpret", "graphc.autodiff", "graphc.symbolic"]),
    ("passes", ["graphc.passes.*"]),
    ("backend", ["graphc.backend.*"]),
    ("runtime", ["graphc.runtime"]),
    ("api", ["graphc", "graphc.api", "graphc.nn.*", "graphc.optim.*", "graphc.data.*", "graphc.testing",
             "graphc.supported", "graphc.cli", "graphc.__main__", "graphc.onnx", "graphc.export"]),
]
# layers whose modules must not import each other (they talk through graphc.ops.prims)
SIBLINGS_APART = {"op families"}


def layer_of(module: str) -> int:
    for rank, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or (name.endswith(".*") and (module == name[:-2] or module.startswith(name[:-1]))):
                return rank
    raise AssertionError(f"module {module} has no layer: add it to LAYERS in tests/test_layers.py")


def _modules() -> dict:
    """module name -> source path, for graphc/ and passes/ (installed as graphc.passes)."""
    found = {}
    for base, package in (("graphc", "graphc"), ("passes", "graphc.passes")):
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, base))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join([package] + rel)] = os.path.join(dirpath, f)
    return found


MODULES = _modules()


def _imports(module: str, path: str):
    """(imported graphc module, line, inside a function?) for every import in the file."""
    return _imports_in(module, open(path).read(), path.endswith("__init__.py"))


# calls that import a module named by their first argument
_DYNAMIC_IMPORTS = {"import_module", "__import__"}


def _imports_in(module: str, source: str, is_package: bool = False):
    """The imports of ``module`` given its source: ``import a.b [as c]``, ``from a import b``,
    relative ``from . import b`` / ``from ..a import b``, and ``importlib.import_module("a.b")``
    or ``__import__("a.b")`` (an f-string counts as its constant prefix: ``f"graphc.{x}"`` is
    ``graphc``)."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    local = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local |= {id(st) for st in ast.walk(fn) if isinstance(st, (ast.Import, ast.ImportFrom, ast.Call))}
    for st in ast.walk(tree):
        if isinstance(st, ast.Import):
            targets = [a.name for a in st.names]
        elif isinstance(st, ast.ImportFrom):
            base = st.module or ""
            if st.level:  # relative: resolved against the module's own package
                parts = package.split(".")
                parent = ".".join(parts[:len(parts) - (st.level - 1)])
                base = f"{parent}.{base}" if base else parent
            # `from graphc.ops import prims`: the submodule when there is one, else the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in st.names]
        elif isinstance(st, ast.Call) and st.args and _called_name(st.func) in _DYNAMIC_IMPORTS:
            arg = st.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                targets = [arg.value]
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                targets = [str(arg.values[0].value).rstrip(".")]
            else:
                continue
        else:
            continue
        for target in targets:
            if target == "graphc" or target.startswith("graphc."):
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                yield target, st.lineno, id(st) in local


def _called_name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def import_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for module, path in MODULES.items():
        g.add_node(module)
        for target, line, in_function in _imports(module, path):
            if target != module:
                g.add_edge(module, target, line=line, in_function=in_function)
    return g


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_cycle():
    g = import_graph()
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:5])


def test_imports_only_go_down():
    bad = []
    for a, b, data in import_graph().edges(data=True):
        la, lb = layer_of(a), layer_of(b)
        if lb > la:
            bad.append(f"{a} (layer {LAYERS[la][0]}) imports {b} (layer {LAYERS[lb][0]}) at line {data['line']}")
        elif la == lb and LAYERS[la][0] in SIBLINGS_APART:
            bad.append(f"{a} imports its sibling {b} at line {data['line']} (use graphc.ops.prims)")
    assert not bad, "\n".join(bad)


def test_no_function_local_imports_of_graphc():
    """Function-local imports exist only for heavy optional dependencies, never to dodge a cycle."""
    bad = [f"{a} imports {b} inside a function (line {data['line']})"
           for a, b, data in import_graph().edges(data=True) if data["in_function"]]
    assert not bad, "\n".join(bad)


_PROBE = """
import importlib, json, sys, types
root = sys.argv[1]
for name, path in (("graphc", "graphc"), ("graphc.ops", "graphc/ops"), ("graphc.backend", "graphc/backend"),
                   ("graphc.passes", "passes"), ("graphc.nn", "graphc/nn")):
    m = types.ModuleType(name)  # the package without running its __init__ (which loads every layer)
    m.__path__ = [root + "/" + path]
    m.__file__ = root + "/" + path + "/__init__.py"
    sys.modules[name] = m
importlib.import_module(sys.argv[2])
print(json.dumps({"graphc": sorted(k for k in sys.modules if k.startswith("graphc.")),
                  "numba": "numba" in sys.modules}))
"""


@pytest.mark.parametrize("module", ["graphc.ir", "graphc.ops.registry", "graphc.trace", "graphc.ops.elementwise",
                                    "graphc.ops.reduction", "graphc.interpret", "graphc.autodiff"])
def test_a_layer_loads_without_the_layers_above(module):
    """In a fresh interpreter, importing a layer loads nothing above it; the IR loads no Numba."""
    done = subprocess.run([sys.executable, "-c", _PROBE, ROOT, module], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    rank = layer_of(module)
    above = [m for m in loaded["graphc"] if m in MODULES and layer_of(m) > rank
             and m not in ("graphc.ops", "graphc.backend", "graphc.passes", "graphc.nn")]  # (the stubs)
    assert not above, f"importing {module} loaded {above}"
    if layer_of(module) < layer_of("graphc.backend"):
        assert not loaded["numba"], f"importing {module} loaded Numba"


def test_the_import_scan_sees_every_spelling_of_an_import():
    """Relative imports, aliases and importlib calls are imports too (or the checks above miss them)."""
    source = """
import graphc.runtime as rt
from . import autodiff
from ..backend import plan
from .registry import get
import importlib
importlib.import_module("graphc.passes.manager")
def later(name):
    return __import__(f"graphc.backend.{name}")
"""
    found = sorted(_imports_in("graphc.ops.shape", source))
    assert found == [("graphc.backend", 9, True), ("graphc.backend.plan", 4, False),
                     ("graphc.ops.autodiff" if "graphc.ops.autodiff" in MODULES else "graphc.ops", 3, False),
                     ("graphc.ops.registry", 5, False), ("graphc.passes.manager", 7, False),
                     ("graphc.runtime", 2, False)]
