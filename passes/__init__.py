"""Graph-to-graph optimization passes, one module each; ``manager`` runs named pipelines.

Passes work on graphc's IR and op registry, so graphc is loaded first: importing
a pass module on its own (``import passes.fusion``) must not enter graphc's
import of ``passes.manager`` halfway through.
"""
import graphc  # noqa: F401
