"""The bottom layer of latnas: what a block, an op, a search space and a kernel *are*.

Specs (:mod:`~latnas.schema.spec`), the op registry and the ops' torch definitions
(:mod:`~latnas.schema.opdef`, :mod:`~latnas.schema.ops`, :mod:`~latnas.schema.blocks`),
the search spaces, analytic features and latency tables, kernel records, errors and the
shared registry. ``profilers`` and ``predictors`` import only this sub-package of latnas
(``tests/test_layers.py`` checks it); search, export, executors and the CLI sit above.
Nothing here imports from outside it.
"""
from __future__ import annotations

__version__ = "0.1.0"
