"""Fast additive ridge fits with exact leave-one-out (one SVD for every alpha).

Used by the one-hot ridge, the linear base of the XGBoost predictor and the
transfer residual. Alpha (and, optionally, log vs linear target) is chosen by
the leave-one-out *relative* squared error ``mean((pred / y - 1)^2)``, which
is the quantity the ±x% metrics care about.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        err = float(np.mean((pred / y - 1.0) ** 2)) if n > 1 else 0.0
        if best is None or err < best[0]:
            best = (err, a, shrink)
    err, a, shrink = best
    coef = vt.T @ (s / (s**2 + a) * ur)
    return AdditiveFit(coef, float(rm - xm @ coef), float(a), log_target, err)


def fit_additive(x: np.ndarray, y: np.ndarray, target: str, alphas, prior=None,
                 relative: bool = False) -> tuple[AdditiveFit, tuple[float, float]]:
    """Additive model ``t = prior_a * prior + prior_b + x @ coef + intercept``.

    ``target``: "linear", "log" or "auto" (lower LOO relative error wins).
    ``prior``: optional per-row additive quantity (total MFLOPs) fit first by
    least squares; the ridge then shrinks towards that fit instead of a constant.
    ``relative``: weight linear-target rows by ``1 / y**2`` (least squares on
    relative error, robust to heavy right tails; log targets are relative already).
    Returns the fit and the prior's (slope, intercept).
    """
    options = {"linear": [False], "log": [True], "auto": [False, True]}[target]
    best = None
    for log in options:
        t = np.log(y) if log else y
        w = 1.0 / y**2 if (relative and not log) else None
        pa, pb = 0.0, 0.0
        if prior is not None and len(y) >= 3 and np.ptp(prior) > 0:
            pa, pb = np.polyfit(prior, t, 1, w=None if w is None else np.sqrt(w))
        off = pa * prior + pb if prior is not None else None
        fit = ridge_loo(x, t, y, log, alphas, offset=off, weights=w)
        fit.intercept += pb
        if best is None or fit.loo_rel_mse < best[0].loo_rel_mse:
            best = (fit, (float(pa), float(pb)))
    return best
