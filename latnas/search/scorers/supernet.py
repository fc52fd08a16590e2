"""Scorer ``supernet``: a weight-sharing one-shot supernet (:class:`latnas.search.oneshot.SupernetScorer`).

Trains (or loads from the weights store) one supernet of the space on
``config.data`` (default digits) and scores each arch as its path's
validation accuracy after BN recalibration. ``config.options``: any field of
:class:`~latnas.search.oneshot.TrainConfig` (``epochs``, ``batch_size``,
``max_batches``, ``lr``, ``bn_batches``, ...), of
:class:`~latnas.search.oneshot.NetConfig` (``width_mult``, ``cells_per_stage``,
...), and ``resolution``, ``weights`` (folder of stored weights, ``none`` to
never store), ``threads``.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from latnas.schema.errors import DataError
from latnas.search.oneshot import NetConfig, SupernetConfig, SupernetScorer, TrainConfig
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.search.scorers.common import data_or_default

_TOP = {"resolution": int, "weights": str, "threads": int}


def _convert(name: str, value: Any, default: Any) -> Any:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    kind = type(default) if default is not None else (int if name in ("max_batches", "resolution") else str)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DataError(f"scorer supernet: option {name}={value!r} is not a valid {kind.__name__}") from None


def supernet_config(options: dict[str, Any]) -> SupernetConfig:
    """A :class:`SupernetConfig` from flat options; unknown names are refused."""
    base = SupernetConfig()
    train_f = {f.name for f in fields(TrainConfig)}
    net_f = {f.name for f in fields(NetConfig)}
    unknown = set(options) - train_f - net_f - set(_TOP)
    if unknown:
        known = ", ".join(sorted(train_f | net_f | set(_TOP)))
        raise DataError(f"scorer supernet: unknown options {', '.join(sorted(unknown))} (known: {known})")
    train = {k: _convert(k, v, getattr(base.train, k)) for k, v in options.items() if k in train_f}
    net = {k: _convert(k, v, getattr(base.net, k)) for k, v in options.items() if k in net_f}
    top = {k: (None if v is None else _TOP[k](v)) for k, v in options.items() if k in _TOP}
    if train.get("epochs", 1) is None or int(train.get("epochs", 1)) < 0:
        raise DataError("scorer supernet: epochs must be an integer >= 0")
    return replace(base, train=replace(base.train, **train), net=replace(base.net, **net), **top)


@register_scorer("supernet")
def supernet_scorer(config: ScorerConfig) -> Scorer:
    return SupernetScorer(config.space, data_or_default(config), supernet_config(config.options), seed=config.seed)
