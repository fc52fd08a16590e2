"""Fit a few-shot accuracy predictor on the archs a user trained (`latnas train-accuracy`).

The input is the user's CSV of archs they trained and the accuracy each
reached (``--score-column``); usually a few dozen rows. ``n_train`` of them
(all by default; a seeded random subset otherwise, the rest held out and
reported) fit an :class:`predictors.accuracy.AccuracyPredictor` over the arch
encoding plus zero-cost proxies, which is saved as a hashed JSON folder
(:mod:`predictors.accuracy_io`). ``latnas search --score predictor
--score-model A`` then scores any arch of the space with it.

Refused with one line, before anything is written: a missing or unreadable
CSV, a missing column, an arch of another space, an arch listed twice, a
non-numeric, NaN or out-of-range score (accuracy is a percentage or a
fraction: 0..100), and ``n_train`` larger than the rows or below
:data:`MIN_TRAIN`.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latnas.schema.errors import DataError
from latnas.schema.spaces.base import SearchSpace

MIN_TRAIN = 5
MAX_TRAIN = 100_000  # predictors.accuracy.MAX_ROWS
SCORE_RANGE = (0.0, 100.0)
DEFAULT_PROXIES = ("synflow", "params", "flops")


def read_accuracy_table(space: SearchSpace, path: str | Path, column: str,
                        arch_column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(archs (n, n_layers) int, scores (n,))`` of a user's CSV, every value checked."""
    from latnas.search.scorers.table import load_score_table

    table = load_score_table(space, path, column, arch_column)  # duplicates, NaN, other spaces: one line
    archs = np.asarray(list(table), dtype=np.int64).reshape(len(table), space.n_layers)
    scores = np.asarray(list(table.values()), dtype=np.float64)
    lo, hi = SCORE_RANGE
    bad = np.flatnonzero((scores < lo) | (scores > hi))
    if bad.size:
        arch = space.format_arch(tuple(archs[bad[0]]))
        raise DataError(f"accuracy table {path}: {column} is {scores[bad[0]]:g} for arch {arch}; "
                        f"accuracies must be within {lo:g}..{hi:g}")
    return archs, scores


def train_accuracy(space: SearchSpace, path: str | Path, column: str, out: str | Path, n_train: int | None = None,
                   proxies: Sequence[str] = DEFAULT_PROXIES, seed: int = 0, arch_column: str | None = None,
                   mode: str = "auto") -> dict[str, Any]:
    """Fit and save; returns a summary (rows, held-out Spearman when rows were held out, fit seconds)."""
    from scipy.stats import spearmanr

    from latnas.search.scorers.proxies import parse_proxies
    from latnas.search.scorers.predictor import PredictorScorer
    from predictors.accuracy import MODES, AccuracyPredictor
    from predictors.accuracy_io import save_accuracy_predictor

    proxies = parse_proxies(proxies)
    if mode not in MODES:
        raise DataError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    archs, scores = read_accuracy_table(space, path, column, arch_column)
    n = len(scores) if n_train is None else int(n_train)
    if n > len(scores):
        raise DataError(f"--n-train {n} is larger than the {len(scores)} archs of {path}")
    if not MIN_TRAIN <= n <= MAX_TRAIN:
        raise DataError(f"--n-train must be within {MIN_TRAIN}..{MAX_TRAIN}, got {n}")
    order = np.random.default_rng(seed).permutation(len(scores))
    tr, held = order[:n], order[n:]
    t0 = time.perf_counter()
    model = AccuracyPredictor(space=space.name, proxies=proxies, mode=mode, random_state=seed)
    scorer = PredictorScorer(space, model, seed=seed)
    model.fit(scorer.features(archs[tr]), scores[tr])
    fit_s = time.perf_counter() - t0
    metrics: dict[str, Any] = {"chosen": model.chosen_, "fit_s": round(fit_s, 3)}
    if len(held) >= 5:
        pred = scorer(archs[held])
        metrics["held_out_rows"] = int(len(held))
        metrics["held_out_spearman"] = float(spearmanr(pred, scores[held])[0])
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    save_accuracy_predictor(model, out, target=column, metrics=metrics, training={
        "sha256": digest, "rows": int(n), "table_rows": int(len(scores)), "column": column, "seed": int(seed),
        "train_archs": [space.format_arch(tuple(a)) for a in archs[tr]]})
    return {"rows": int(n), "table_rows": int(len(scores)), "proxies": list(proxies), "out": str(out), **metrics}
