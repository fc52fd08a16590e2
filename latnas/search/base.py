"""Shared records of every search algorithm: what goes in, what comes out.

An algorithm is a function ``run(ctx: SearchContext) -> SearchResult``
registered with :func:`register_algorithm`. The latency objective is a
:class:`latnas.latency_table.LatencyTable` (a compiled predictor, or the FLOPs
proxy) so algorithms never see predictor internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latnas.latency_table import LatencyTable
from latnas.registry import Registry
from latnas.spaces.base import Arch, SearchSpace


@dataclass
class SearchData:
    """A small image classification dataset already in memory (NCHW float tensors)."""

    x_train: Any  # torch.Tensor (N, C, H, W)
    y_train: Any  # torch.Tensor (N,) int64
    x_val: Any
    y_val: Any
    num_classes: int
    name: str = ""


@dataclass
class SearchContext:
    space: SearchSpace
    latency: LatencyTable  # objective / constraint: predictor table (ms) or FLOPs proxy
    data: SearchData | None = None  # for accuracy estimates (RWE) and supernet training
    budget: float | None = None  # in latency.unit; None = unconstrained two-objective search
    evals: int = 200  # bound on evaluated archs (accuracy estimates)
    seed: int = 0
    workdir: Path | None = None  # checkpoints go here when set
    progress: Callable[[int, int, str], None] | None = None  # (done, total, message)
    options: dict[str, Any] = field(default_factory=dict)  # algorithm-specific settings

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


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


ALGORITHMS: Registry[Callable[[SearchContext], SearchResult]] = Registry("search algorithm")


def register_algorithm(name: str):
    """Decorator registering ``run(ctx) -> SearchResult`` under ``name``."""
    return ALGORITHMS.register(name)
