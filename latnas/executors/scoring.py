"""Scoring a search's candidates through an executor.

A search asks its problem to score a batch of archs between ``ask`` and
``tell``. :class:`ParallelScorer` wraps the scorer so that batch is cut into
sub-batches run by an :class:`~latnas.executors.base.Executor`; the scores come
back in the order asked, so the search continues exactly as with the local
executor (a scorer must give an arch the same score wherever it runs, as the
seeded RWE scorer does).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from latnas.executors.base import Executor, get_executor


class ParallelScorer:
    """``scorer(archs) -> scores`` whose batches run on ``executor`` (name or instance).

    ``batch_size`` is how many archs go to one task (default 1: scores are
    the slow part, so each free worker pulls the next arch; ``None`` splits
    a request evenly over the workers). Attributes of the wrapped scorer (e.g. a
    cache) stay reachable through :attr:`scorer`.
    """

    def __init__(self, scorer: Callable[[Sequence[Any]], Any], executor: Executor | str = "local", batch_size: int | None = 1):
        self.scorer = scorer
        self.executor = get_executor(executor)
        self.batch_size = batch_size
        self.calls = 0
        self._fn = _ScoreBatch(scorer)  # one object: the executor uploads the scorer (and its data) once

    def __call__(self, archs: Sequence[Any]) -> np.ndarray:
        archs = [tuple(int(v) for v in a) for a in archs]
        self.calls += 1
        if not archs:
            return np.zeros(0)
        return np.asarray(self.executor.map_batches(self._fn, archs, self.batch_size), dtype=np.float64)


class _ScoreBatch:
    """The picklable batch function shipped to workers: scores as plain floats."""

    def __init__(self, scorer: Callable[[Sequence[Any]], Any]):
        self.scorer = scorer

    def __call__(self, archs: list[Any]) -> list[float]:
        return [float(s) for s in np.asarray(self.scorer(archs), dtype=np.float64).reshape(-1)]
