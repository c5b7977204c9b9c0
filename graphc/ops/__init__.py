"""The op registry and the NumPy-compatible functions on traced values.

Import order matters only in that every module registers its ops on import;
``methods.install()`` then gives ``Tracer`` its operators.
"""
from graphc.ops import registry  # noqa: F401  (first: the others register into it)
from graphc.ops import bitwise, creation, elementwise, indexing, linalg, nn, reduction, shape  # noqa: F401
from graphc.ops import linalg_decomp  # noqa: F401  (after linalg: it builds on matmul)
from graphc.ops import scan, sort  # noqa: F401
from graphc.ops import convert, fused  # noqa: F401  (fused: the fusion pass's op)
from graphc.ops import control  # noqa: F401  (loops and branches)
from graphc.ops import methods

methods.install()
