"""Scorer ``rwe``: random-weight evaluation (:class:`latnas.search.rwe.RWEScorer`).

Uses ``config.data`` (the default digits data when None); ``config.options``
may set ``batch_size``, ``calibrate_bn`` and ``ridge`` of :class:`RWEConfig`.
"""
from __future__ import annotations

from dataclasses import fields

from latnas.schema.errors import DataError
from latnas.search.rwe import RWEConfig, RWEScorer
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.search.scorers.common import data_or_default


@register_scorer("rwe")
def rwe_scorer(config: ScorerConfig) -> Scorer:
    known = {f.name for f in fields(RWEConfig)} - {"seed"}
    unknown = set(config.options) - known
    if unknown:
        raise DataError(f"scorer rwe: unknown options {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return RWEScorer(config.space, data_or_default(config), RWEConfig(seed=config.seed, **config.options))
