"""Scorer ``vote``: several zero-cost proxies averaged, each on a fixed scale.

Abdelfattah et al. (ICLR 2021) found that a vote of proxies ranks NAS-Bench-201
better than any single one; on the shipped table (``benchmarks/scorers_nb201.py``)
a vote of synflow and the parameter count ranks CIFAR-10 accuracy at Spearman
0.83 against 0.80 for synflow alone. A rank average depends on which archs are
in the batch, so each member is instead standardised against a *reference
sample* of the space (``reference`` archs drawn with a fixed seed, scored once):
``z = (t(s) - median_ref) / IQR_ref`` with ``t(s) = sign(s) * log1p(|s|)``,
which tames synflow's orders of magnitude and keeps the score of an arch the
same whatever else is scored with it. The vote is the mean of the members' z.

Options: ``members`` (default ``"synflow,params"``), ``reference`` (32).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from latnas.schema.errors import DataError
from latnas.search.scorers.base import SCORERS, Scorer, ScorerConfig, make_scorer, register_scorer

DEFAULT_MEMBERS = ("synflow", "params")
REFERENCE_SEED = 20211  # fixed: the reference sample is part of the scorer's definition


def _t(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    return np.sign(s) * np.log1p(np.abs(s))


class VoteScorer:
    """Mean of standardised member scores (see module docstring)."""

    def __init__(self, config: ScorerConfig, members: Sequence[str], reference: int):
        self.members = list(members)
        self.scorers: list[Scorer] = []
        for name in self.members:
            sub = ScorerConfig(space=config.space, data=config.data, seed=config.seed,
                               table=config.table, column=config.column, arch_column=config.arch_column)
            self.scorers.append(make_scorer(name, sub))
        ref = config.space.random_archs(reference, np.random.default_rng(REFERENCE_SEED))
        self.centre, self.scale = [], []
        for scorer in self.scorers:
            t = _t(scorer(ref))
            q25, q50, q75 = np.percentile(t, [25, 50, 75])
            self.centre.append(float(q50))
            self.scale.append(float(q75 - q25) if q75 > q25 else float(np.std(t)) or 1.0)

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        if len(archs) == 0:
            return np.zeros(0)
        z = [(_t(s(archs)) - c) / w for s, c, w in zip(self.scorers, self.centre, self.scale)]
        return np.mean(z, axis=0)


@register_scorer("vote")
def vote_scorer(config: ScorerConfig) -> Scorer:
    opts = dict(config.options)
    members = opts.pop("members", ",".join(DEFAULT_MEMBERS))
    reference = opts.pop("reference", 32)
    if opts:
        raise DataError(f"unknown vote scorer option(s): {', '.join(sorted(opts))} (known: members, reference)")
    names = [m.strip() for m in (members.split(",") if isinstance(members, str) else members) if m.strip()]
    if len(names) < 2 or "vote" in names:
        raise DataError("the vote needs at least two member scorers, not including 'vote' (e.g. members=synflow,params)")
    for name in names:
        SCORERS.get(name)  # one-line error for an unknown member
    try:
        reference = int(reference)
    except (TypeError, ValueError):
        raise DataError(f"vote option reference must be an integer, got {reference!r}") from None
    if not 8 <= reference <= 1000:
        raise DataError(f"vote option reference must be in 8..1000, got {reference}")
    return VoteScorer(config, names, reference)
