"""Graph-to-graph optimization passes, one module each; ``manager`` runs named pipelines.

The repository keeps this folder at its top level; it is installed and imported as
``graphc.passes`` (a setuptools ``package-dir`` mapping in pyproject.toml), so a user's
own ``passes.py`` cannot shadow it. In a source checkout that is not installed,
``graphc/__init__.py`` loads it from here under the same name.
"""
