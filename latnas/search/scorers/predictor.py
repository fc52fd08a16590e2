"""Scorer ``predictor``: a trained few-shot accuracy predictor (``latnas train-accuracy``) scores any arch of its space.

``config.options["model"]`` is the folder ``latnas train-accuracy -o`` wrote
(``latnas search --score predictor --score-model A``). The archs the user
trained are only the predictor's training rows: every other arch is predicted,
never refused. Zero-cost proxies the model was fit with are computed here
(:func:`latnas.search.scorers.proxies.proxy_features`, the slow ones cached).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from latnas.schema.errors import DataError
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.search.scorers.proxies import proxy_features
from latnas.schema.spaces.base import SearchSpace


class PredictorScorer:
    """``scorer(archs)`` = the accuracy predictor on (arch, proxies) of each arch."""

    def __init__(self, space: SearchSpace, model, seed: int = 0, data=None):
        if model.space != space.name:
            raise DataError(f"accuracy predictor is for space {model.space!r}, not {space.name!r}")
        self.space = space
        self.model = model
        self.seed = int(seed)
        self.data = data

    def features(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        archs = [tuple(int(v) for v in a) for a in archs]
        enc = np.asarray(archs, dtype=np.float64).reshape(len(archs), self.space.n_layers)
        if not self.model.proxies:
            return enc
        return np.hstack([enc, proxy_features(self.space, archs, tuple(self.model.proxies), seed=self.seed, data=self.data)])

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        if len(archs) == 0:
            return np.zeros(0)
        return np.asarray(self.model.predict(self.features(archs)), dtype=np.float64)


@register_scorer("predictor")
def predictor_scorer(config: ScorerConfig) -> Scorer:
    from predictors.accuracy_io import load_accuracy_predictor

    path = (config.options or {}).get("model")
    if not path:
        raise DataError("--score predictor needs --score-model A (a folder written by `latnas train-accuracy -o A`)")
    model, _ = load_accuracy_predictor(path, space=config.space.name)
    return PredictorScorer(config.space, model, seed=config.seed, data=config.data)
