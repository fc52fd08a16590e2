"""Accuracy estimators ("scorers") for search, one registry.

A scorer is a callable ``scorer(archs) -> np.ndarray`` of scores (higher is
better) for a list of arch tuples of one space. Factories are registered by
name and built with :func:`make_scorer`::

    scorer = make_scorer("synflow", ScorerConfig(space=space, data=data, seed=0))

Built-in names (each in its own module): ``rwe`` (random-weight evaluation),
``params``, ``flops``, ``synflow``, ``naswot``, ``table`` (lookup in a user's
accuracy table). Register your own with :func:`register_scorer`.
"""
from __future__ import annotations

from latnas.search.scorers.base import SCORERS, Scorer, ScorerConfig, make_scorer, register_scorer

__all__ = ["SCORERS", "Scorer", "ScorerConfig", "make_scorer", "register_scorer"]
