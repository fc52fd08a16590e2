"""Helpers shared by the built-in scorers: per-arch caching, seeded builds, default data."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from latnas.schema.spaces.base import Arch, SearchSpace


class CachedScorer:
    """``scorer(archs) -> scores`` from a per-arch function, each arch computed once."""

    def __init__(self, space: SearchSpace, fn: Callable[[Arch], float], name: str = ""):
        self.space = space
        self.fn = fn
        self.name = name
        self.cache: dict[Arch, float] = {}

    def score(self, arch: Sequence[int]) -> float:
        key = self.space.parse_arch(tuple(int(v) for v in arch))
        if key not in self.cache:
            self.cache[key] = float(self.fn(key))
        return self.cache[key]

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        return np.array([self.score(a) for a in archs], dtype=np.float64)


def seeded_build(space: SearchSpace, arch: Arch, seed: int) -> nn.Module:
    """``space.build(arch)`` with weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build(arch)


def data_or_default(config):
    """``config.data``, or the shipped default (digits at the space's resolution) for ``config.seed``."""
    if config.data is None:
        from latnas.search.data import load_data

        config.data = load_data(space=config.space, seed=config.seed)
    return config.data
