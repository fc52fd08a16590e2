"""The few-shot combination of sources behind :class:`~predictors.transfer.TransferPredictor`.

With ``k`` (10-20) target samples a fit over many free columns follows noise
(one sample can set a signed intercept of -20 ms). This fit stays inside a
small family whose every member predicts ``sum_j w_j * column_j`` with
``w >= 0`` and positive columns (source predictions, no intercept): positive
and no larger than the sources scaled, by construction.

Family (each member fit by non-negative least squares on relative error):

* one source in one *view* of its (live, dead, cut-off) pieces
  (:func:`predictors.liveness.pieces`): ``run`` (the source as it is, one
  weight), ``fold`` (dead ops and a cut-off network free), or ``both`` (one
  weight per piece: the device's own samples decide how much dead ops cost);
* a mixture of the ``top`` best single sources (each in its best view);
* the mixture shrunk towards the best single source:
  ``(1 - lam) * best + lam * mixture``, ``lam`` in :data:`SHRINK`; with the
  optional ``stages`` view the top sources weighed per stage are one more
  such mixture (never a member alone: 8+ free weights follow noise at k = 20).

Members are scored by *trimmed* leave-one-out relative error (the worst
``trim`` folds dropped, squared errors capped), so a single outlier sample
decides neither the ranking of sources nor the mixture. Ties go to the
simpler member.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from latnas.schema.errors import DataError
from predictors.linear import REL_ERR_CAP, relative_scale

SHRINK = (0.0, 0.25, 0.5, 0.75, 1.0)
OUTLIER_REL = 1.0  # a sample missed by more than 100% (and 5x the median miss) is refit without
#: a fold-view prediction of a cut-off arch (0: its output is a constant) is raised to
#: this fraction of the median training latency: positive, and far below any real network
FLOOR_FRACTION = 1e-3


@dataclass
class Combination:
    """Weights of the chosen member, ``(S, P + 1)``: on every source's P pieces (>= 0), and its intercept share."""

    weights: np.ndarray
    member: str
    loo_score: float
    scores: dict = field(default_factory=dict)


#: a view maps a source's (live, dead, cut) pieces and a constant to the columns a member weighs
VIEWS = {
    "run": np.array([[1.0, 1.0, 1.0, 0.0]]),   # the source as it is: one weight
    "fold": np.array([[1.0, 0.0, 0.0, 0.0]]),  # dead ops and cut-off archs free
    "both": np.eye(3, 4),                      # the target's samples weigh each piece
    # bounded affine: a * P + b * (P - lo) + c, all >= 0: the intercept goes no lower
    # than -b * lo, so every arch the source puts above ``lo`` stays positive
    "affine": np.array([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 1.0]]),
}


def view_maps(view: str, lo: float, n_pieces: int = 3) -> np.ndarray:
    """``(m, n_pieces + 1)``: the columns of ``view`` as combinations of the pieces and a constant.

    Pieces beyond the first three are per-stage sums of the live ops and then
    the fixed cost (:func:`predictors.liveness.pieces` with stages); the
    ``stages`` view weighs them one by one (a source may describe a device
    in its early stages only), each weight >= 0.
    """
    if view == "stages":
        n_stages = n_pieces - 4
        maps = np.zeros((n_stages + 1, n_pieces + 1))
        maps[np.arange(n_stages + 1), 3 + np.arange(n_stages + 1)] = 1.0
        return maps
    base = VIEWS[view].copy()
    if view == "affine":
        base[1, 3], base[2, 3] = -lo, 1.0
    maps = np.zeros((len(base), n_pieces + 1))
    maps[:, :3], maps[:, -1] = base[:, :3], base[:, 3]
    return maps


def _nnls_rel(cols: np.ndarray, y: np.ndarray, ys: np.ndarray, trim: int = 1) -> np.ndarray:
    """NNLS on relative error; then refit without up to ``trim`` gross outliers (rows missed by
    more than ``OUTLIER_REL`` and by 5x the median miss), so that one bad sample cannot set the weights."""
    if cols.shape[1] == 0:
        return np.zeros(0)
    w, _ = nnls(cols / ys[:, None], y / ys)
    if trim and len(y) > 2 * trim + 2:
        # misses judged against a robust start (the median ratio of y to one column), since a
        # gross outlier pulls the least-squares fit towards itself and hides among the others
        err = np.abs(cols @ w - y) / ys
        for j in range(cols.shape[1]):
            pos = cols[:, j] > 0
            if pos.sum() > 2 * trim + 2:
                e = np.abs(np.median(y[pos] / cols[pos, j]) * cols[:, j] - y) / ys
                if np.median(e) < np.median(err):
                    err = e
        worst = np.argsort(-err)[:trim]
        worst = worst[err[worst] > max(OUTLIER_REL, 5.0 * float(np.median(err)))]
        if worst.size:
            keep = np.setdiff1d(np.arange(len(y)), worst)
            w, _ = nnls(cols[keep] / ys[keep, None], y[keep] / ys[keep])
    return w


def _loo_pred(cols: np.ndarray, y: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of the NNLS fit on ``cols``."""
    n = len(y)
    out = np.empty(n)
    idx = np.arange(n)
    for i in range(n):
        keep = idx != i
        out[i] = cols[i] @ _nnls_rel(cols[keep], y[keep], ys[keep], trim=0)  # scoring: plain fits, trimmed score
    return out


def trimmed_score(pred: np.ndarray, y: np.ndarray, ys: np.ndarray, trim: int) -> float:
    """Mean capped squared relative error after dropping the ``trim`` worst rows."""
    err = np.minimum(((pred - y) / ys) ** 2, REL_ERR_CAP)
    if trim and len(err) > 2 * trim + 2:
        err = np.sort(err)[: len(err) - trim]
    return float(np.mean(err))


def combine(parts: np.ndarray, y: np.ndarray, top: int = 3, trim: int = 1,
            views: tuple[str, ...] = ("run", "fold", "both", "affine"), shrink: tuple[float, ...] = SHRINK,
            lo: np.ndarray | None = None, all_sources: bool = True) -> Combination:
    """Choose and fit a member of the family (see module docstring) on ``(n, S, 3)`` source pieces.

    ``lo``: per source, a low quantile of its prediction over the space (the
    floor of the ``affine`` view's intercept); without it that view is skipped.
    """
    y = np.asarray(y, dtype=np.float64)
    n, n_src, n_pieces = parts.shape
    if n < 3:
        raise DataError(f"transfer needs at least 3 target samples to choose its sources, got {n}")
    ys = relative_scale(y)
    if not np.any(parts[:, :, 1:3]):  # no dead op, no cut-off arch among the samples: views coincide
        views = tuple(v for v in views if v in ("run", "affine", "stages"))
    if n_pieces <= 5:  # one stage: the stages view is the affine one without its bound
        views = tuple(v for v in views if v != "stages")
    if lo is None:
        views = tuple(v for v in views if v != "affine")
    singles = {}  # (source, view) -> (columns, LOO predictions, score)
    for s in range(n_src):
        for view in views:
            maps = view_maps(view, 0.0 if lo is None else float(lo[s]), n_pieces)
            cols = parts[:, s, :] @ maps[:, :-1].T + maps[:, -1]
            used = np.any(cols != 0, axis=0)
            if not used[0] or not np.any(cols > 0):
                continue
            cols, maps = cols[:, used], maps[used]
            loo = _loo_pred(cols, y, ys)
            singles[(s, view)] = (cols, maps, loo, trimmed_score(loo, y, ys, trim))
    if not singles:
        raise DataError("no transfer source predicts a positive latency for the target's samples")
    rank = {v: i for i, v in enumerate((*VIEWS, "stages"))}
    staged = {key: singles.pop(key) for key in [key for key in singles if key[1] == "stages"]}
    if not singles:
        singles, staged = staged, {}
    order = sorted(singles, key=lambda key: (singles[key][3], rank[key[1]]))  # ties: the simpler view
    best = order[0]
    chosen: list[tuple[int, str]] = []
    for key in order:  # the best view of each of the `top` best sources
        if key[0] not in {c[0] for c in chosen}:
            chosen.append(key)
        if len(chosen) == top:
            break
    mixtures = {f"top-{len(chosen)}": chosen}
    if all_sources and n_src > len(chosen):  # every source as it is (sparse by NNLS) and a constant >= 0
        best_view = {}
        for key in order:  # each source in its best view
            best_view.setdefault(key[0], key)
        mixtures["all"] = [best_view[s] for s in sorted(best_view)]
        if lo is not None:  # and each source shifted by its low quantile: a bounded negative intercept
            for s in sorted(best_view):
                maps = view_maps("affine", float(lo[s]), n_pieces)[1:2]
                singles[(s, "shift")] = (parts[:, s, :] @ maps[:, :-1].T + maps[:, -1], maps, None, np.inf)
                mixtures["all"].append((s, "shift"))
    if staged:  # a source weighed per stage: only a shrinkage target (its 8+ weights follow noise at k = 20)
        singles.update(staged)
        mixtures["stages"] = [(c[0], "stages") for c in chosen if (c[0], "stages") in staged]
    scores = {f"single:{best[0]}:{best[1]}": singles[best][3]}
    pick = (singles[best][3], 0.0, None)
    loos = {}
    for name, keys in mixtures.items():
        if len(keys) < (1 if name.startswith("stages") else 2):
            continue
        cols = np.column_stack([singles[c][0] for c in keys] + ([np.ones(n)] if name == "all" else []))
        loos[name] = (keys, cols, _loo_pred(cols, y, ys))
        for lam in shrink:
            if lam == 0.0:
                continue
            score = trimmed_score((1 - lam) * singles[best][2] + lam * loos[name][2], y, ys, trim)
            scores[f"shrink:{name}:{lam:g}"] = score
            if score < pick[0] - 1e-12:
                pick = (score, lam, name)
    lam, name = pick[1], pick[2]
    weights = np.zeros((n_src, n_pieces + 1))  # per piece; the last column: each source's share of the intercept

    def add(keys, cols, share, const=False):
        w = _nnls_rel(cols, y, ys) * share
        j = 0
        for s, _view in keys:
            maps = singles[(s, _view)][1]
            weights[s] += w[j:j + len(maps)] @ maps
            j += len(maps)
        if const:
            weights[0, -1] += w[j]

    add([best], singles[best][0], 1.0 - lam)
    if lam > 0:
        keys, cols, _ = loos[name]
        add(keys, cols, lam, const=name == "all")
    member = f"single {best[1]}" if lam == 0 else f"shrink {lam:g} towards the {name} mixture"
    return Combination(weights, member, pick[0], scores)


@dataclass
class RidgeFit:
    coef: np.ndarray
    alpha: float
    loo_score: float


def ridge_rel(x: np.ndarray, r: np.ndarray, y: np.ndarray, alphas, trim: int = 1) -> RidgeFit:
    """Ridge of the residual ``r`` on ``x`` with **no intercept**, rows weighted by relative error.

    Alpha by the trimmed LOO relative error (exact hat-matrix LOO); no
    correction (alpha infinite) and then the largest alpha win ties, so with
    few rows the correction stays at or near zero.
    """
    ys = relative_scale(y)
    sw = 1.0 / ys
    xw, rw = x * sw[:, None], r * sw
    u, s, vt = np.linalg.svd(xw, full_matrices=False)
    keep = s > 1e-10 * (s[0] if s.size else 1.0)
    u, s, vt = u[:, keep], s[keep], vt[keep]
    ur = u.T @ rw
    best = (trimmed_score(y - r, y, ys, trim), np.inf)  # no correction at all is a member too
    for a in sorted(alphas, reverse=True):
        shrink = s**2 / (s**2 + a)
        fitted = u @ (shrink * ur)
        h = (u**2) @ shrink
        loo = rw - (rw - fitted) / np.maximum(1.0 - h, 1e-9)  # LOO fitted residual, weighted units
        score = trimmed_score(y - r + loo / sw, y, ys, trim)
        if score < best[0] - 1e-12:
            best = (score, a)
    score, a = best
    coef = np.zeros(x.shape[1]) if not np.isfinite(a) else vt.T @ (s / (s**2 + a) * ur)
    return RidgeFit(coef, float(a), score)
