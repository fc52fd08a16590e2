"""Weight-sharing one-shot supernets (single-path, uniform sampling) for HourNAS, NSE and ``--score supernet``.

- :mod:`~latnas.search.oneshot.net`: the supernets (chain spaces; the NAS-Bench-201 macro network);
- :mod:`~latnas.search.oneshot.train`: uniform path sampling, training, BN-recalibrated evaluation;
- :mod:`~latnas.search.oneshot.store`: weights on disk (torch weights-only), keyed by space and config;
- :mod:`~latnas.search.oneshot.scorer`: :class:`SupernetScorer` (a scorer with ``fit(mask)``).
"""
from __future__ import annotations

from latnas.search.oneshot.net import NetConfig, build_supernet
from latnas.search.oneshot.scorer import SupernetConfig, SupernetScorer, is_supernet
from latnas.search.oneshot.train import TrainConfig, evaluate_path, sample_path, train_paths

__all__ = ["NetConfig", "SupernetConfig", "SupernetScorer", "TrainConfig", "build_supernet", "evaluate_path",
           "is_supernet", "sample_path", "train_paths"]
