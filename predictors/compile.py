"""Compile trained predictors of a space into a :class:`LatencyTable`.

A LatencyTable computes ``f(sum_l table[l, arch[l]])`` with ``f`` piecewise
linear through monotone knots. Each predictor compiles itself
(``to_latency_table(space)``, see :mod:`predictors.base`); this module holds
the entry point and the two table shapes they build:

* :func:`linear_table`: linear-target additive models (one-hot ridge,
  FLOPs/params lines, transfer, block sums): ``table`` = per-layer ms,
  offset for the rest;
* :func:`exp_table`: log-target additive models (one-hot ridge on log ms, the
  default ``max_depth=1`` XGBoost): ``table`` = per-layer *log* factors and
  the correction knots sample ``exp`` densely over every sum the table can
  reach (spacing 2e-4, so the interpolation error of exp is below 1e-8
  relative; LatencyTable itself is unchanged).

XGBoost trees are read from the booster's JSON dump
(:func:`xgb_layer_table`): with depth-1 trees on one-hot features each tree
adds one value to one (layer, choice) and another to every other choice of
that layer, so the sum over trees is a table. Non-additive models (deeper
trees, whole-model totals) refuse with a one-line error.
"""
from __future__ import annotations

import numpy as np

from latnas.schema.errors import PredictorFileError
from latnas.schema.latency_table import LatencyTable
from latnas.schema.safe_json import loads
from predictors.base import space_of

EXP_KNOT_SPACING = 2e-4

def xgb_layer_table(booster, n_layers: int, n_choices: int) -> tuple[np.ndarray, float]:
    """Per-(layer, choice) sum of depth-1 tree outputs on one-hot features, plus a constant."""
    table = np.zeros((n_layers, n_choices))
    const = 0.0
    for text in booster.get_dump(dump_format="json"):
        node = loads(text, "XGBoost tree dump")
        if "leaf" in node:
            const += float(node["leaf"])
            continue
        kids = {c["nodeid"]: c for c in node.get("children", [])}
        if any("leaf" not in c for c in kids.values()):
            raise PredictorFileError("XGBoost model has trees deeper than 1; it is not additive and cannot be compiled")
        feat = int(str(node["split"]).lstrip("f"))
        if feat >= n_layers * n_choices:
            raise PredictorFileError("XGBoost model splits on non one-hot features; it cannot be compiled")
        thr = float(node["split_condition"])
        yes, no = float(kids[node["yes"]]["leaf"]), float(kids[node["no"]]["leaf"])
        v0 = yes if 0.0 < thr else no  # value when the one-hot bit is 0
        v1 = yes if 1.0 < thr else no  # value when it is 1
        layer, choice = divmod(feat, n_choices)
        table[layer] += v0
        table[layer, choice] += v1 - v0
    return table, const


def exp_table(space, logs: np.ndarray, const: float, meta: dict) -> LatencyTable:
    """Table of log-factors; knots make the correction exp(sum + const)."""
    mask = space.allowed_mask()
    t = np.where(mask, logs, np.nan)
    lo, hi = float(np.nansum(np.nanmin(t, axis=1))), float(np.nansum(np.nanmax(t, axis=1)))
    n = int(np.ceil((hi - lo) / EXP_KNOT_SPACING)) + 2
    kx = np.linspace(lo - 1e-9, hi + 1e-9 + EXP_KNOT_SPACING, max(n, 2))
    return LatencyTable(space=space.name, table=t, knots_x=kx, knots_y=np.exp(kx + const),
                        meta={**meta, "table_values": "log-factors", "correction": "exp (dense knots)"})


def linear_table(space, table: np.ndarray, offset: float, meta: dict) -> LatencyTable:
    """Table of per-layer ms (NaN where not allowed); ``offset`` adds the rest."""
    t = np.where(space.allowed_mask(), table, np.nan)
    return LatencyTable(space=space.name, table=t, offset=float(offset), meta={**meta, "table_values": "ms"})


def compile_predictor(model, device: str = "") -> LatencyTable:
    """An exact LatencyTable of a fitted arch-level predictor (its ``to_latency_table``)."""
    hook = getattr(model, "to_latency_table", None)
    if hook is None or getattr(model, "level", "arch") != "arch":
        raise PredictorFileError(f"cannot compile a {type(model).__name__} into a latency table")
    out = hook(space_of(model.space))
    out.meta.setdefault("predictor", type(model).__name__)
    out.device = device
    return out
