"""Accuracy metrics of latency predictions, always reported beside the FLOPs proxy."""
from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, spearmanr

METRIC_KEYS = ("within_5pct", "within_10pct", "rmspe", "mape", "kendall", "spearman", "n")


def _rank(fn, a, b) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])


def latency_metrics(y_true, y_pred) -> dict[str, float]:
    """within_5pct / within_10pct (share of |pred/true - 1| <= x), rmspe and mape
    (fractions, not percent), kendall and spearman rank correlations, n."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({y.size} vs {p.size})")
    if y.size == 0:
        return {k: (0 if k == "n" else float("nan")) for k in METRIC_KEYS}
    rel = np.abs(p / y - 1.0)
    return {
        "within_5pct": float(np.mean(rel <= 0.05)),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "rmspe": float(np.sqrt(np.mean(rel**2))),
        "mape": float(np.mean(rel)),
        "kendall": _rank(kendalltau, p, y),
        "spearman": _rank(spearmanr, p, y),
        "n": int(y.size),
    }


def flops_baseline(flops_train, y_train, flops_test, y_test) -> dict[str, float]:
    """The FLOPs proxy on the same rows: rank metrics from raw FLOPs, the ±x%
    metrics from a least-squares line ``ms = a * FLOPs + b`` fit on the train rows."""
    ft, yt = np.asarray(flops_train, float), np.asarray(y_train, float)
    fe, ye = np.asarray(flops_test, float), np.asarray(y_test, float)
    if ft.size >= 2 and np.ptp(ft) > 0:
        a, b = np.polyfit(ft, yt, 1)
    else:
        a, b = 0.0, float(np.mean(yt)) if yt.size else 0.0
    out = latency_metrics(ye, a * fe + b)
    out["kendall"] = _rank(kendalltau, fe, ye)
    out["spearman"] = _rank(spearmanr, fe, ye)
    return out


def quantisation_bound(y_ms, step_ms: float = 1.0, tol: float = 0.05) -> float:
    """Share of rows whose half-step rounding error alone exceeds ``tol`` (for integer-ms data)."""
    y = np.asarray(y_ms, float)
    return float(np.mean((step_ms / 2) / y > tol)) if y.size else float("nan")
