"""Where independent work runs: in this process or on a Ray cluster.

``get_executor("local")`` / ``get_executor("ray", workers=2, address=...)``
return an :class:`Executor` whose ``map_batches(fn, items)`` returns ``fn``'s
results in input order. :class:`ParallelScorer` sends a search's scoring
batches through one. Fleet profiling (many devices at once) lives in
:mod:`profilers.fleet` and uses the same Ray connection helpers.
"""
from __future__ import annotations

from latnas.executors.base import (
    EXECUTORS,
    Executor,
    ExecutorUnavailable,
    chunked,
    default_batch_size,
    get_executor,
    register_executor,
)
from latnas.executors import ray_executor as _ray_executor  # noqa: F401  (registers "ray"; imports ray lazily)
from latnas.executors.local import LocalExecutor
from latnas.executors.scoring import ParallelScorer

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorUnavailable",
    "LocalExecutor",
    "ParallelScorer",
    "chunked",
    "default_batch_size",
    "get_executor",
    "register_executor",
]
