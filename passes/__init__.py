"""Graph-to-graph optimization passes, one module each; ``manager`` runs named pipelines."""
