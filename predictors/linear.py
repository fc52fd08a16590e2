"""Fast additive ridge fits with exact leave-one-out (one SVD for every alpha).

Used by the one-hot ridge, the linear base of the XGBoost predictor and the
transfer residual. Alpha (and, optionally, log vs linear target) is chosen by
the leave-one-out *relative* squared error ``mean((pred / y - 1)^2)``, which
is the quantity the ±x% metrics care about.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: relative errors are taken against max(y, REL_FLOOR * median(y)): a few rows far
#: below the typical latency (e.g. a runtime that folds a disconnected network to
#: a constant, measured in µs) would otherwise dominate every relative fit
REL_FLOOR = 0.1


#: squared relative LOO errors are capped here (50% off) when choosing alpha and the
#: weighting: a few rows no additive model can follow must not pick the model
REL_ERR_CAP = 0.25


def relative_scale(y: np.ndarray) -> np.ndarray:
    """The denominator of relative errors: ``y`` floored at ``REL_FLOOR`` times its median."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return y
    return np.maximum(y, REL_FLOOR * float(np.median(y)))


@dataclass
class AdditiveFit:
    coef: np.ndarray  # on the design columns
    intercept: float
    alpha: float
    log_target: bool
    loo_rel_mse: float


def ridge_loo(x: np.ndarray, t: np.ndarray, y: np.ndarray, log_target: bool, alphas, offset=None,
              weights=None) -> AdditiveFit:
    """Ridge of ``t - offset`` on ``x`` (intercept unpenalised), alpha by exact LOO.

    ``y`` is the latency in ms used to score relative LOO error; ``offset`` a
    fixed per-row prior (e.g. a FLOPs fit) added back to predictions;
    ``weights`` optional per-row least-squares weights (e.g. ``1 / y**2`` to
    fit relative rather than absolute error).
    """
    n = len(t)
    off = np.zeros(n) if offset is None else np.asarray(offset, float)
    r = t - off
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    sw = np.sqrt(w)
    xm, rm = (w @ x) / w.sum(), float(w @ r / w.sum())
    xc, rc = sw[:, None] * (x - xm), sw * (r - rm)
    if n > x.shape[1]:  # tall: eigen-decompose the small Gram matrix (much cheaper than an SVD)
        evals, v = np.linalg.eigh(xc.T @ xc)
        keep = evals > 1e-12 * max(float(evals.max(initial=0.0)), 1e-300)
        s, vt = np.sqrt(evals[keep]), v[:, keep].T
        u = (xc @ vt.T) / s
    else:
        u, s, vt = np.linalg.svd(xc, full_matrices=False)
        keep = s > 1e-10 * (s[0] if s.size else 1.0)
        u, s, vt = u[:, keep], s[keep], vt[keep]
    ur = u.T @ rc
    best = None
    for a in alphas:
        shrink = s**2 / (s**2 + a)
        fitted = (u @ (shrink * ur)) / sw + rm + off
        h = (u**2) @ shrink + w / w.sum()
        loo_t = t - (t - fitted) / np.maximum(1.0 - h, 1e-9)
        pred = np.exp(np.clip(loo_t, -50, 50)) if log_target else loo_t
        err = float(np.mean(np.minimum((pred / y - 1.0) ** 2, REL_ERR_CAP))) if n > 1 else 0.0
        if best is None or err < best[0]:
            best = (err, a, shrink)
    err, a, shrink = best
    coef = vt.T @ (s / (s**2 + a) * ur)
    return AdditiveFit(coef, float(rm - xm @ coef), float(a), log_target, err)


def fit_additive(x: np.ndarray, y: np.ndarray, target: str, alphas, prior=None,
                 relative: bool = False, trim: bool = True) -> tuple[AdditiveFit, tuple[float, float]]:
    """Additive model ``t = prior_a * prior + prior_b + x @ coef + intercept``.

    ``target``: "linear", "log" or "auto" (lower LOO relative error wins).
    ``prior``: optional per-row additive quantity (total MFLOPs) fit first by
    least squares; the ridge then shrinks towards that fit instead of a constant.
    ``relative``: also try weighting linear-target rows by ``1 / y**2`` (least
    squares on relative error, robust to heavy right tails; log targets are
    relative already); the lower capped LOO relative error picks the weighting.
    Relative errors use :func:`relative_scale` (``y`` floored at a tenth of its median).
    ``trim``: refit once without gross outliers (rows the first fit misses by
    more than 100% and by 10x the median relative error, at most 10% of the
    rows, with at least 20 rows): runtimes that fold a disconnected network
    away measure µs where an additive model cannot follow, and squared error
    lets those few rows bend every other prediction.
    Returns the fit and the prior's (slope, intercept).
    """
    options = {"linear": [False], "log": [True], "auto": [False, True]}[target]
    best = None
    ys = relative_scale(y)
    candidates = [(log, rel) for log in options for rel in ((True, False) if (relative and not log) else (False,))]
    for log, rel in candidates:
        t = np.log(ys) if log else y
        w = 1.0 / ys**2 if rel else None
        pa, pb = 0.0, 0.0
        if prior is not None and len(y) >= 3 and np.ptp(prior) > 0:
            pa, pb = np.polyfit(prior, t, 1, w=None if w is None else np.sqrt(w))
        off = pa * prior + pb if prior is not None else None
        fit = ridge_loo(x, t, ys, log, alphas, offset=off, weights=w)
        fit.intercept += pb
        if best is None or fit.loo_rel_mse < best[0].loo_rel_mse:
            best = (fit, (float(pa), float(pb)))
    if trim and len(y) >= 20:
        fit, (pa, _) = best
        t_hat = x @ fit.coef + fit.intercept + (pa * prior if prior is not None else 0.0)
        pred = np.exp(np.clip(t_hat, -50, 50)) if fit.log_target else t_hat
        rel = np.abs(pred / ys - 1.0)
        out = rel > max(1.0, 10.0 * float(np.median(rel)))
        if 0 < out.sum() <= 0.1 * len(y):
            keep = ~out
            return fit_additive(x[keep], y[keep], "log" if fit.log_target else "linear", alphas,
                                None if prior is None else np.asarray(prior)[keep], relative, trim=False)
    return best
