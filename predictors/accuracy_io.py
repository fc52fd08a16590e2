"""Save and load few-shot accuracy predictors as a hashed folder of JSON files (never pickle).

The layout is a latency predictor's (:mod:`predictors.persistence`:
``meta.json`` with the sha256 of every file, ``state.json``, one XGBoost JSON
file per ensemble member) with ``level = "accuracy"``. Accuracy predictors are
not in the latency registry (``latnas search --predictor`` must never take one
for a latency model), so this module names the one class it restores; the
loader applies every check of :func:`predictors.persistence.load_predictor`
(schema, unlisted or modified files, tree structure before XGBoost parses it),
plus a check that predictions on random archs of the space are finite.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latnas.schema.errors import LatnasError, PredictorFileError
from predictors.accuracy import AccuracyPredictor
from predictors.base import space_of
from predictors.persistence import META, STATE, _params_from, _parse, build, read_files, read_meta, write_model_folder

LEVEL = "accuracy"
NAME = "accuracy"


def save_accuracy_predictor(model: AccuracyPredictor, folder: str | Path, verify: bool = True, **meta: Any) -> Path:
    """Write a fitted :class:`AccuracyPredictor` to ``folder`` (loaded back before it replaces anything)."""
    doc = {"level": LEVEL, "predictor": NAME, "space": model.space, **meta}
    return write_model_folder(model, folder, doc, load_accuracy_predictor if verify else None)


def load_accuracy_predictor(folder: str | Path, space: str | None = None) -> tuple[AccuracyPredictor, dict[str, Any]]:
    """``(model, meta)`` of a saved accuracy predictor; one-line :class:`PredictorFileError` for anything wrong."""
    folder = Path(folder)
    meta = read_meta(folder)
    if meta.get("level") != LEVEL or meta.get("predictor") != NAME:
        raise PredictorFileError(f"model {folder} is a {meta.get('level')!r} predictor, not an accuracy predictor "
                                 "(train one with `latnas train-accuracy`)")
    if space is not None and meta.get("space") != space:
        raise PredictorFileError(f"accuracy model {folder} is for space {meta.get('space')!r}, not {space!r}")
    if not isinstance(meta.get("params"), dict):
        raise PredictorFileError(f"model {folder}/{META} has no params object")
    files = read_files(folder, meta)
    try:
        params, state = _params_from(meta["params"], _parse(files.pop(STATE), f"{folder}/{STATE}"))
        if isinstance(params.get("proxies"), list):
            params["proxies"] = tuple(params["proxies"])
        model = build(AccuracyPredictor, params, state, files)
        if list(model.feature_names) != meta.get("feature_names"):
            raise PredictorFileError(f"feature names do not match this latnas's {meta.get('space')!r} space")
        s = space_of(model.space)
        archs = np.array(s.random_archs(4, rng=0, unique=False), dtype=np.float64)
        raw = np.sign(model.proxy_mean_) * np.expm1(np.abs(model.proxy_mean_))  # the training rows' typical proxy values
        probe = np.hstack([archs, np.tile(raw, (len(archs), 1))]) if len(model.proxies) else archs
        if not np.all(np.isfinite(model.predict(probe))):
            raise PredictorFileError("model predicts non-finite accuracy for archs of its space; refused")
    except LatnasError as exc:
        raise PredictorFileError(f"model {folder}: {exc}") from None
    return model, meta
