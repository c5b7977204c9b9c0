"""The on-disk cache of generated modules.

A module is stored as ``<cache dir>/g<hash>.py`` where the hash covers the
source, the backend version and the Numba and NumPy versions. Numba's own
``cache=True`` then keeps the machine code in ``__pycache__`` beside it, so a
second process starts warm. Files are written atomically and never rewritten
when unchanged (a new mtime would invalidate Numba's cache).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile

import numba
import numpy as np


def cache_dir() -> str:
    path = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")
    os.makedirs(path, exist_ok=True)
    return path


def content_hash(source: str, backend_version: str) -> str:
    h = hashlib.sha256()
    for part in (backend_version, numba.__version__, np.__version__, source):
        h.update(part.encode())
        h.update(b"\0")
    # Numba's cache only watches the generated file itself: the graphc modules it imports
    # (vecmath's kernels are compiled into it) must be part of the key, or an upgrade of
    # them would keep running stale machine code
    for module in sorted(set(re.findall(r"^from (graphc[\w.]*) import", source, re.M))):
        h.update(_module_digest(module).encode())
    return h.hexdigest()[:24]


@functools.lru_cache(maxsize=None)
def _module_digest(module: str) -> str:
    spec = importlib.util.find_spec(module)
    try:
        with open(spec.origin, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError, AttributeError):
        return module


def write_module(key: str, source: str) -> str:
    """Write ``source`` as module ``g<key>.py`` unless an identical file is there already."""
    path = os.path.join(cache_dir(), f"g{key}.py")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == source:
                return path
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: (re)write it
    purge_compiled(path)  # machine code of a corrupt or different file must not be trusted
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".py")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(source)
    os.replace(tmp, path)
    return path


def purge_compiled(path: str):
    """Delete Numba's cached machine code for the module at ``path``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    pycache = os.path.join(os.path.dirname(path), "__pycache__")
    if os.path.isdir(pycache):
        for name in os.listdir(pycache):
            if name.startswith(stem + "."):
                try:
                    os.remove(os.path.join(pycache, name))
                except OSError:
                    pass


def import_module(path: str):
    name = "graphc_generated." + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault(name, module)
    return module


def clear():
    """Remove every cached module and its machine code."""
    shutil.rmtree(cache_dir(), ignore_errors=True)
