"""Accuracy estimators ("scorers") for search, one registry.

A scorer is a callable ``scorer(archs) -> np.ndarray`` of scores (higher is
better) for a list of arch tuples of one space. Factories are registered by
name and built with :func:`make_scorer`::

    scorer = make_scorer("synflow", ScorerConfig(space=space, data=data, seed=0))

Built-in names (each in its own module): ``rwe`` (random-weight evaluation),
``params``, ``flops``, ``synflow``, ``naswot``, ``table`` (lookup in a user's
accuracy table), ``vote``, ``supernet``, ``predictor`` (a trained few-shot
accuracy predictor). Register your own with :func:`register_scorer`.

The registry (:mod:`.base`) imports none of its members; each member module
registers itself into it, and this package imports them all.
"""
from __future__ import annotations

from latnas.search.scorers.base import SCORERS, Scorer, ScorerConfig, make_scorer, register_scorer
from latnas.search.scorers import flops as _flops  # noqa: F401,E402  (each member registers itself)
from latnas.search.scorers import naswot as _naswot  # noqa: F401,E402
from latnas.search.scorers import params as _params  # noqa: F401,E402
from latnas.search.scorers import predictor as _predictor  # noqa: F401,E402
from latnas.search.scorers import rwe as _rwe  # noqa: F401,E402
from latnas.search.scorers import supernet as _supernet  # noqa: F401,E402
from latnas.search.scorers import synflow as _synflow  # noqa: F401,E402
from latnas.search.scorers import table as _table  # noqa: F401,E402
from latnas.search.scorers import vote as _vote  # noqa: F401,E402

__all__ = ["SCORERS", "Scorer", "ScorerConfig", "make_scorer", "register_scorer"]
