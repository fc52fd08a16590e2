"""The scorer contract: a config dataclass in, a ``Callable[[archs], scores]`` out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from latnas.schema.registry import Registry
from latnas.schema.spaces.base import Arch, SearchSpace

#: ``scorer(archs) -> (n,) float array``, higher is better, deterministic for a seed
Scorer = Callable[[Sequence[Arch]], np.ndarray]


@dataclass
class ScorerConfig:
    space: SearchSpace
    data: Any = None  # latnas.search.base.SearchData, for scorers that look at images
    seed: int = 0
    table: str | None = None  # --score-table: CSV of archs and score columns (scorer "table")
    column: str | None = None  # --score-column: which column of ``table``
    arch_column: str | None = None  # arch column of ``table`` (default: detected)
    options: dict[str, Any] = field(default_factory=dict)  # scorer-specific settings


SCORERS: Registry[Callable[[ScorerConfig], Scorer]] = Registry("scorer")


def register_scorer(name: str):
    """Decorator registering a factory ``f(config: ScorerConfig) -> Scorer`` under ``name``."""
    return SCORERS.register(name)


def make_scorer(name: str, config: ScorerConfig) -> Scorer:
    """Build the registered scorer ``name`` (the package ``__init__`` has registered the built-ins)."""
    return SCORERS.get(name)(config)
