"""The BTC pipeline as Dagster assets: see README.md; ``defs`` is in ``definitions.py``."""
