"""Scorer ``params``: parameter count of the whole model (more is better, as an accuracy proxy).

ZiCo (ICLR 2023) reports that plain parameter count is a baseline most
zero-cost proxies fail to beat consistently. The count is the sum of the
parameters of the blocks the arch places (its per-layer block table plus the
fixed blocks, as :func:`latnas.schema.latency_table.flops_table` sums FLOPs): equal to
counting ``space.build(arch)`` (tested for every space), and a gather per arch
instead of a model build.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from latnas.schema.features import block_cost
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.schema.spaces.base import SearchSpace


def params_table(space: SearchSpace) -> tuple[np.ndarray, int]:
    """(n_layers, n_choices) parameters each choice places (NaN where not allowed), and the fixed blocks' total."""
    table = np.full((space.n_layers, space.n_choices), np.nan)
    for layer, choice, blocks in space.layer_table():
        table[layer, choice] = sum(block_cost(s).params for s in blocks)
    return table, sum(block_cost(s).params for s in space.fixed_blocks())


class ParamsScorer:
    """Whole-model parameter count of each arch."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.table, self.fixed = params_table(space)

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        if len(archs) == 0:
            return np.zeros(0)
        a = np.array([self.space.parse_arch(tuple(int(v) for v in arch)) for arch in archs], dtype=np.int64)
        return self.table[np.arange(self.space.n_layers), a].sum(axis=1) + self.fixed


@register_scorer("params")
def params_scorer(config: ScorerConfig) -> Scorer:
    return ParamsScorer(config.space)
