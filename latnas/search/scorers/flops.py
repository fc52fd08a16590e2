"""Scorer ``flops``: whole-model MFLOPs from :func:`latnas.schema.latency_table.flops_table` (more is better)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from latnas.schema.latency_table import flops_table
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer


class FlopsScorer:
    """MFLOPs of each arch: two gathers in the space's FLOPs table."""

    def __init__(self, space):
        self.space = space
        self.table = flops_table(space)

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        if len(archs) == 0:
            return np.zeros(0)
        a = np.array([self.space.parse_arch(tuple(int(v) for v in arch)) for arch in archs], dtype=np.int64)
        return self.table.predict(a)


@register_scorer("flops")
def flops_scorer(config: ScorerConfig) -> Scorer:
    return FlopsScorer(config.space)
