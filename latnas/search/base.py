"""Shared records of every search algorithm: what goes in, what comes out.

:class:`SearchData` is a small in-memory dataset, :class:`SearchResult` what
an algorithm returns. :class:`SearchContext` bundles everything one in-process
run needs (``latnas.search.run_algorithm(name, ctx)`` turns it into a
:class:`~latnas.search.problem.SearchProblem`, an algorithm and a
termination, and calls :func:`~latnas.search.algorithm.minimize`). The
latency objective is a :class:`latnas.schema.latency_table.LatencyTable` (a compiled
predictor, or the FLOPs proxy) so algorithms never see predictor internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latnas.schema.latency_table import LatencyTable
from latnas.search.budget import Budget
from latnas.schema.spaces.base import Arch, SearchSpace


@dataclass
class SearchData:
    """A small image classification dataset already in memory (NCHW float tensors)."""

    x_train: Any  # torch.Tensor (N, C, H, W)
    y_train: Any  # torch.Tensor (N,) int64
    x_val: Any
    y_val: Any
    num_classes: int
    name: str = ""


@dataclass(frozen=True)
class SearchContext:
    """One in-process search run; read-only (algorithms never change it)."""

    space: SearchSpace
    latency: LatencyTable  # objective / constraint: predictor table (ms) or FLOPs proxy
    data: SearchData | None = None  # for accuracy estimates (RWE) and supernet training
    budget: Budget | None = None  # None = unconstrained two-objective search
    evals: int = 200  # termination: archs whose accuracy is estimated
    seed: int = 0
    workdir: Path | None = None  # checkpoints go here when set
    progress: Callable[[int, int, str], None] | None = None  # (done, total, message)
    options: dict[str, Any] = field(default_factory=dict)  # the algorithm's options (its Options dataclass)
    scorer: Callable[[list[Arch]], np.ndarray] | None = None  # accuracy estimate; None = RWE on ``data``
    scorer_key: str | None = None  # what the scores depend on (checkpoint compatibility)
    resume: bool = False  # reuse the scores in ``workdir``'s checkpoint


@dataclass
class SearchResult:
    algo: str
    archs: list[Arch]  # the final front / chosen archs, best first
    predicted: list[float]  # latency.predict of each arch, in latency.unit
    scores: list[float]  # accuracy estimate of each arch (higher is better)
    evals: int = 0  # archs whose accuracy was estimated
    wall_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)  # per-generation / per-round notes
    extra: dict[str, Any] = field(default_factory=dict)
