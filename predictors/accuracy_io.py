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

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from latnas.schema.errors import LatnasError, PredictorFileError
from predictors.accuracy import AccuracyPredictor
from predictors.base import space_of
from predictors.persistence import (META, SCHEMA, STATE, _install, _json_default, _params_from, _parse, _sha256,
                                    _write_synced, build, encode_params, library_versions, read_files, read_meta,
                                    state_document)

LEVEL = "accuracy"
NAME = "accuracy"


def save_accuracy_predictor(model: AccuracyPredictor, folder: str | Path, verify: bool = True, **meta: Any) -> Path:
    """Write a fitted :class:`AccuracyPredictor` to ``folder`` (loaded back before it replaces anything)."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise PredictorFileError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / META).is_file():
        raise PredictorFileError(f"{folder} holds files but no model ({META}); refusing to write a model into it")
    blobs = {STATE: json.dumps(state_document(model), default=_json_default).encode()}
    for fname, data in model.to_files().items():
        blobs[fname] = bytes(data)
    doc = {"schema": SCHEMA, "level": LEVEL, "predictor": NAME, "params": encode_params(model), "space": model.space,
           "feature_names": list(model.feature_names), "libraries": library_versions(),
           "files": {fname: _sha256(data) for fname, data in blobs.items()}, **meta}
    blobs[META] = json.dumps(doc, indent=1, default=_json_default).encode()
    folder.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.part-", dir=folder.absolute().parent))
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for fname, data in blobs.items():  # meta.json last: a folder without it is never a model
            _write_synced(tmp / fname, data)
        if verify:
            try:
                load_accuracy_predictor(tmp)
            except PredictorFileError as exc:
                reason = str(exc).replace(str(tmp), str(folder))
                raise PredictorFileError(f"the trained model would not load, so {folder} was not written: {reason}") from None
        _install(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


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
