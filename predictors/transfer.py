"""Few-shot transfer to a new device from models of other (source) devices.

Recipe (what is used, precisely):

1. Source models: one :class:`~predictors.models.OneHotRidge` (linear ms
   target, additive) per source device, trained on that device's measured
   latencies of the rows given to :func:`fit_source_models` (by default every
   row of the table: the other devices are profiled offline on many archs,
   which may include archs later used to test the target).
2. Target: with only ``k`` measured archs of the target device, fit
   non-negative weights (NNLS on relative error, signed intercept) of the *source models'
   predictions* for those archs plus the arch's total MFLOPs (analytic, also
   additive), then a ridge on the per-layer one-hot of the remaining residual
   (alpha by exact leave-one-out relative error, so it stays near zero for
   small k). With ``stage_features`` a ridge on per-stage sums of each
   source model's per-layer terms comes first (standardised, alpha by LOO):
   it lets the target weigh a source differently at different resolutions,
   e.g. a GPU source for the early, wide stages only.

At prediction time only the arch is used: the source models predict from the
arch, and no measured source latency of the predicted rows is ever read.

``method="robust"`` (the default) replaces step 2 by the small family of
:mod:`predictors.transfer_fit`: non-negative weights (no free intercept) on
each source's live / dead / cut-off pieces (:mod:`predictors.liveness`) in a
few views (``run``: as the source; ``fold``: dead ops and cut-off networks
free; ``affine``: a bounded intercept), chosen by trimmed LOO with shrinkage
towards the best single source; then (``source_stages``, on; chain spaces
with stages) the earlier fit's per-source stage columns as an intercept-free
ridge correction (+0.013 mean Spearman on FBNet at k = 20; nothing on nb201,
one stage). The combined stage and one-hot corrections are intercept-free
ridges (off by default: they buy nothing at k = 10-20; the optional
``stages`` view is a shrinkage target, see docs/transfer.md), and
predictions are floored at ``FLOOR_FRACTION * median(y)``, so they are
positive and bounded by construction. Cut-off archs absent from the samples
are predicted as the chosen view says (``cut_unseen="source"``) or folded
(``"fold"``). ``method="nnls"`` is the earlier fit (with
``stage_features=True, residual=True`` and one-hot sources), kept for saved
models and the ablation. Sources are :class:`LiveDeadRidge` by default.

``self_check``: after fitting, the whole fit (selection included) is rerun
leaving each of the k samples out; ``loo_`` holds the resulting MAPE, within
±10% and Spearman on the k samples, the user's only view of how well the
transfer holds on their device.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from sklearn.utils.validation import check_is_fitted

from latnas.schema.errors import DataError, PredictorFileError
from predictors.base import as_list, state_float, state_vector
from predictors.features import layer_cost_tables
from predictors.linear import relative_scale, ridge_loo
from predictors.liveness import LiveDeadRidge, flops_tables, source_pieces, source_tables
from predictors.models import DEFAULT_ALPHAS, ArchPredictor, OneHotRidge, _y
from predictors.transfer_fit import FLOOR_FRACTION, combine, ridge_rel

STAGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
LOW_SAMPLE = 2000  # archs that set each source's low quantile (the affine view's bound)


def fit_source_models(table, columns: list[str], rows=None, space: str | None = None,
                      liveness: bool = True) -> dict:
    """One additive ridge (ms target) per source column of an ArchTable, fit on ``rows`` (default: all).

    ``liveness``: :class:`LiveDeadRidge` (separate live / dead op costs and a
    cut-off term, so a source that folds dead ops is not biased); else the
    plain linear :class:`OneHotRidge` of the earlier recipe.
    """
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = {}
    for col in columns:
        y = table.column(col)[rows]
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() < 2:
            raise DataError(f"source column {col!r} has fewer than 2 usable rows")
        model = LiveDeadRidge(space=space or table.space) if liveness else OneHotRidge(space=space or table.space, target="linear")
        out[col] = model.fit(table.archs[rows][ok], y[ok])
    return out


class TransferPredictor(ArchPredictor):
    """Target latency from source models' predictions and k target samples (see module docstring).

    ``source_models``: dict name -> fitted :class:`LiveDeadRidge` or linear
    :class:`OneHotRidge`, see :func:`fit_source_models`.
    """

    def __init__(self, space: str = "fbnet", source_models=None, use_flops: bool = True, stage_features: bool = False,
                 residual: bool = False, relative: bool = True, alphas=DEFAULT_ALPHAS, method: str = "robust",
                 liveness: bool = True, affine: bool = True, views=("run", "fold", "affine"), top: int = 3,
                 trim: int = 1, cut_unseen: str = "source", self_check: bool = False, source_stages: bool = True):
        self.space = space
        self.relative = relative
        self.source_models = source_models
        self.use_flops = use_flops
        self.stage_features = stage_features
        self.residual = residual
        self.alphas = alphas
        self.method = method
        self.liveness = liveness
        self.affine = affine
        self.views = views
        self.top = top
        self.trim = trim
        self.cut_unseen = cut_unseen
        self.self_check = self_check
        self.source_stages = source_stages

    # ------------------------------------------------------------ shared
    def _weights(self, y: np.ndarray):
        return 1.0 / relative_scale(y) ** 2 if self.relative else None

    def _source_tables(self) -> list[tuple]:
        """``(live, dead, cut, fixed)`` of every source (MFLOPs for the FLOPs column), see ``source_tables``."""
        sp = self._space()
        tabs = [source_tables(m, sp) for m in (self.source_models or {}).values()]
        return tabs + ([flops_tables(sp)] if self.use_flops else [])

    def _names(self) -> list[str]:
        return list(self.source_models or {}) + (["total_mflops"] if self.use_flops else [])

    def _stages(self) -> np.ndarray:
        return np.array([slot.stage for slot in self._space().layers])

    def _per_stage(self, per_layer: np.ndarray) -> np.ndarray:
        stages = self._stages()
        return np.column_stack([per_layer[:, stages == g].sum(axis=1) for g in np.unique(stages)])

    # ------------------------------------------------------------ the earlier fit (method="nnls")
    def _stage_design(self, archs: np.ndarray) -> np.ndarray:
        """(n, n_sources * n_stages): per-stage sums of each source's per-layer terms."""
        rows = np.arange(archs.shape[1])
        return np.column_stack([self._per_stage(tab[0][rows, archs]) for tab in self._source_tables()])

    def _sources(self, X) -> np.ndarray:
        """Columns: each source model's prediction (ms), then total MFLOPs if ``use_flops``."""
        if not self.source_models and not self.use_flops:
            raise DataError("transfer needs at least one source model")
        archs = self._archs(X)
        cols = [m.predict(archs) for m in (self.source_models or {}).values()]
        if self.use_flops:
            flops, *_, f0 = flops_tables(self._space())
            cols.append(flops[np.arange(archs.shape[1]), archs].sum(axis=1) + f0)
        return np.column_stack(cols)

    def _fit_nnls(self, archs, y):
        s = self._sources(archs)
        design = np.column_stack([s, np.ones(len(y)), -np.ones(len(y))])
        w, _ = nnls(design / relative_scale(y)[:, None], np.ones(len(y)))  # rows weighted by 1/y: relative error
        self.weights_ = w[: s.shape[1]].astype(np.float64)
        self.intercept_ = float(w[-2] - w[-1])
        base = s @ self.weights_ + self.intercept_
        n_stage_cols = len(self._source_tables()) * len(np.unique(self._stages()))
        self.stage_coef_, self.stage_intercept_ = np.zeros(n_stage_cols), 0.0
        if self.stage_features and len(y) >= 3:
            f = self._stage_design(archs)
            scale = np.where(f.std(axis=0) > 1e-12, f.std(axis=0), 1.0)
            fit = ridge_loo(f / scale, y, relative_scale(y), False, STAGE_ALPHAS, offset=base, weights=self._weights(y))
            self.stage_coef_, self.stage_intercept_ = fit.coef / scale, float(fit.intercept)
            base = base + f @ self.stage_coef_ + self.stage_intercept_
        if self.residual and len(y) >= 3:
            fit = ridge_loo(self._onehot(archs), y, relative_scale(y), False, self.alphas, offset=base, weights=self._weights(y))
            self.resid_coef_, self.resid_intercept_ = fit.coef.astype(np.float64), float(fit.intercept)
        else:
            self.resid_coef_ = np.zeros(self._n_onehot())
            self.resid_intercept_ = 0.0

    # ------------------------------------------------------------ the robust fit (method="robust")
    def _robust_parts(self, archs) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer terms (n, L) of the combined sources and their fixed part (n,)."""
        sp = self._space()
        rows = np.arange(sp.n_layers)
        live, cut = sp.live_mask(archs), sp.cut_off(archs)
        shape = (sp.n_layers, sp.n_choices)
        live_t, dead_t, cut_t = (t.reshape(shape)[rows, archs] for t in (self.live_table_, self.dead_table_, self.cut_table_))
        per_layer = np.where(cut[:, None], cut_t, np.where(live, live_t, dead_t))
        return per_layer, np.where(cut, self.cut_fixed_, self.fixed_)

    def _low_quantiles(self) -> np.ndarray:
        """Per source, the 1st percentile of its prediction over a fixed sample of the space's archs."""
        if getattr(self, "_lo_cache", None) is not None:  # set by the self-check's refits (same sources)
            return self._lo_cache
        sp = self._space()
        rng = np.random.default_rng(0)
        ref = np.column_stack([rng.choice(np.asarray(slot.allowed), size=LOW_SAMPLE) for slot in sp.layers]).astype(np.int64)
        _, parts = source_pieces(self.source_models, sp, ref, self.use_flops)
        self._lo_cache = np.percentile(parts[:, :, :3].sum(axis=2), 1.0, axis=0)
        return self._lo_cache

    def _source_stage_coef(self, parts, y, w) -> np.ndarray:
        """``(S, G)``: the earlier fit's stage columns as a correction of the chosen member.

        A ridge (no intercept, rows weighted by relative error, alpha by
        trimmed exact LOO, no correction a member) of the residual on every
        source's per-stage live sums, standardised: a source may describe the
        target in some stages only (a GPU for the wide early stages). On
        FBNet at k = 20 it buys +0.013 mean Spearman; weights may go below 0
        in a stage (bounded ones cost 0.001-0.002), predictions stay floored.
        """
        n_g = parts.shape[2] - 4
        f = parts[:, :, 3:3 + n_g].reshape(len(y), -1)  # (n, S * G), source-major
        base = np.einsum("nsp,sp->n", parts, w[:, :-1]) + w[:, -1].sum()
        scale = np.where(f.std(axis=0) > 1e-12, f.std(axis=0), 1.0)
        coef = ridge_rel(f / scale, y - base, y, STAGE_ALPHAS, self.trim).coef / scale
        return coef.reshape(w.shape[0], n_g)

    def _fit_robust(self, archs, y):
        sp = self._space()
        _, parts = source_pieces(self.source_models, sp, archs, self.use_flops)
        views = tuple(v for v in self.views if (self.liveness or v in ("run", "affine", "stages"))
                      and (self.affine or v != "affine"))
        if not self.liveness:  # one-hot view of every source: its own prediction, one weight
            parts = np.concatenate([parts[:, :, :3].sum(axis=2, keepdims=True), np.zeros_like(parts[:, :, :2]),
                                    parts[:, :, 3:]], axis=2)
        comb = combine(parts, y, top=self.top, trim=self.trim, views=views, lo=self._low_quantiles())
        w = comb.weights.copy()  # (S, P + 1): live, dead, cut, per-stage live, fixed; intercept share
        if self.source_stages and len(y) >= 4 and parts.shape[2] > 5:
            w[:, 3:-2] += self._source_stage_coef(parts, y, w)
        if not self.liveness:
            w[:, 1] = w[:, 2] = w[:, 0]
        self.cut_seen_ = bool(sp.cut_off(archs).any())
        if self.liveness and self.cut_unseen == "fold" and not self.cut_seen_:
            w[:, 2] = 0.0  # no cut-off arch among the samples: predict them folded (at the floor)
        tabs = self._source_tables()
        stages = self._stages()
        groups = np.unique(stages)
        live_table = np.zeros((sp.n_layers, sp.n_choices))
        for ws, t in zip(w, tabs):
            live_table += ws[0] * t[0]
            for j, g in enumerate(groups):  # a source weighed per stage (the stages view)
                live_table[stages == g] += ws[3 + j] * t[0][stages == g]

        def mix(col, part):
            return sum(wi * t[part] for wi, t in zip(w[:, col], tabs))

        self.weights_, self.piece_weights_ = w[:, 0].copy(), w[:, :3].ravel()
        self.live_table_ = live_table.ravel()
        self.dead_table_, self.cut_table_ = mix(1, 1).ravel(), mix(2, 2).ravel()
        self.intercept_ = float(w[:, -1].sum())
        self.cut_fixed_ = float(mix(2, 3)) + self.intercept_
        self.fixed_ = float(mix(0, 4) + mix(-2, 4)) + self.intercept_
        self.member_, self.stage_intercept_, self.resid_intercept_ = comb.member, 0.0, 0.0
        per_layer, fixed = self._robust_parts(archs)
        base = per_layer.sum(axis=1) + fixed
        self.stage_coef_ = np.zeros(len(np.unique(self._stages())))
        if self.stage_features and len(y) >= 4:
            self.stage_coef_ = ridge_rel(self._per_stage(per_layer), y - base, y, STAGE_ALPHAS, self.trim).coef
            base = base + self._per_stage(per_layer) @ self.stage_coef_
        self.resid_coef_ = np.zeros(self._n_onehot())
        if self.residual and len(y) >= 4:
            self.resid_coef_ = ridge_rel(self._onehot(archs), y - base, y, self.alphas, self.trim).coef
        self.floor_ = FLOOR_FRACTION * float(np.median(y))

    def _predict_robust(self, archs) -> np.ndarray:
        per_layer, fixed = self._robust_parts(archs)
        out = per_layer.sum(axis=1) + fixed + self._per_stage(per_layer) @ self.stage_coef_
        return np.maximum(out + self._onehot(archs) @ self.resid_coef_, self.floor_)

    # ------------------------------------------------------------ estimator API
    def fit(self, X, y):
        archs, y = self._archs(X), _y(y)
        if self.cut_unseen not in ("source", "fold"):
            raise DataError(f"transfer cut_unseen must be 'source' or 'fold', got {self.cut_unseen!r}")
        if self.method not in ("robust", "nnls"):
            raise DataError(f"transfer method must be 'robust' or 'nnls', got {self.method!r}")
        self.source_names_ = self._names()
        if not self.source_names_:
            raise DataError("transfer needs at least one source model")
        (self._fit_robust if self.method == "robust" else self._fit_nnls)(archs, y)
        self.n_features_in_ = self._space().n_layers
        self.loo_ = self._self_check(archs, y) if self.self_check else {}
        return self

    def _self_check(self, archs, y) -> dict:
        """The whole fit rerun without each sample in turn: MAPE / within ±10% / Spearman on the k samples."""
        from predictors.metrics import latency_metrics

        if len(y) < 5:
            return {}
        params = {**self.get_params(deep=False), "self_check": False}
        pred = np.empty(len(y))
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            child = TransferPredictor(**params)
            child._lo_cache = getattr(self, "_lo_cache", None)
            pred[i] = child.fit(archs[keep], y[keep]).predict(archs[i:i + 1])[0]
        m = latency_metrics(y, pred)
        return {"n": int(len(y)), "mape": float(m["mape"]), "within_10pct": float(m["within_10pct"]),
                "spearman": float(m["spearman"]), "max_rel_err": float(np.max(np.abs(pred / y - 1.0)))}

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        archs = self._archs(X)
        if self.method == "robust":
            return self._predict_robust(archs)
        out = self._sources(archs) @ self.weights_ + self.intercept_
        if np.any(self.stage_coef_):
            out = out + self._stage_design(archs) @ self.stage_coef_
        return out + self.stage_intercept_ + self._onehot(archs) @ self.resid_coef_ + self.resid_intercept_

    def effective_linear(self) -> tuple[np.ndarray, float]:
        """The whole model as one additive one-hot coefficient vector and intercept (ms).

        Exact for ``method="nnls"`` with one-hot sources and for chain spaces;
        with live/dead views on a cell space it counts every op as live (see
        :meth:`to_latency_table`).
        """
        check_is_fitted(self, "weights_")
        sp = self._space()
        stages = self._stages()
        groups = np.unique(stages)
        coef = self.resid_coef_.copy()
        if self.method == "robust":
            per_layer = self.live_table_.reshape(sp.n_layers, -1).copy()
            for j, g in enumerate(groups):
                per_layer[stages == g] *= 1.0 + self.stage_coef_[j]
            return coef + per_layer.ravel(), float(self.fixed_)  # the intercept is inside fixed_
        b = self.intercept_ + self.resid_intercept_ + self.stage_intercept_
        models = list((self.source_models or {}).values())
        fixed = [m.intercept_ for m in models] + ([flops_tables(sp)[4]] if self.use_flops else [])
        for i, (w, (tab, *_), f0) in enumerate(zip(self.weights_, self._source_tables(), fixed)):
            per_layer = w * tab
            for j, g in enumerate(groups):  # stage terms scale the source's layers of that stage
                per_layer[stages == g] += self.stage_coef_[i * len(groups) + j] * tab[stages == g]
            coef += per_layer.ravel()
            b += w * f0
        return coef, float(b)

    # ---------------------------------------------------------------- state
    def to_state(self) -> dict:
        """Learned weights; the source models are hyper-parameters, saved nested by persistence."""
        check_is_fitted(self, "weights_")
        out = {"weights": as_list(self.weights_), "intercept": self.intercept_,
               "resid_coef": as_list(self.resid_coef_), "resid_intercept": self.resid_intercept_,
               "stage_coef": as_list(self.stage_coef_), "stage_intercept": self.stage_intercept_,
               "source_names": list(self.source_names_), "method": self.method,
               "loo": {k: (float(v) if v == v else None) for k, v in (self.loo_ or {}).items()}}
        if self.method == "robust":
            out.update({"piece_weights": as_list(self.piece_weights_), "live_table": as_list(self.live_table_),
                        "dead_table": as_list(self.dead_table_), "cut_table": as_list(self.cut_table_),
                        "fixed": self.fixed_, "cut_fixed": self.cut_fixed_, "floor": self.floor_,
                        "member": self.member_, "cut_seen": self.cut_seen_})
        return out

    def set_state(self, state, files):
        sp = self._space()
        names = state.get("source_names")
        expected = self._names()
        if names != expected:
            raise PredictorFileError(f"transfer state names sources {str(names)[:80]}, its parameters give {expected}")
        method = state.get("method", "nnls")  # models saved before the robust fit are "nnls"
        if method not in ("robust", "nnls"):
            raise PredictorFileError(f"transfer state method must be 'robust' or 'nnls', got {str(method)[:40]!r}")
        try:
            n_tables = len(self._source_tables())
        except DataError as exc:
            raise PredictorFileError(str(exc)) from None
        self.method = method
        self.source_names_ = expected
        n_groups = len(np.unique(self._stages()))
        self.weights_ = state_vector(state, "weights", len(expected))
        self.intercept_ = state_float(state, "intercept")
        self.resid_coef_ = state_vector(state, "resid_coef", sp.n_layers * sp.n_choices)
        self.resid_intercept_ = state_float(state, "resid_intercept")
        self.stage_coef_ = state_vector(state, "stage_coef", n_groups * (n_tables if method == "nnls" else 1))
        self.stage_intercept_ = state_float(state, "stage_intercept")
        loo = state.get("loo", {})
        if not isinstance(loo, dict) or not all(v is None or isinstance(v, (int, float)) for v in loo.values()):
            raise PredictorFileError("transfer state 'loo' must map names to numbers")
        self.loo_ = {str(k): (float("nan") if v is None else float(v)) for k, v in loo.items()}
        if method == "robust":
            n_cells = sp.n_layers * sp.n_choices
            self.piece_weights_ = state_vector(state, "piece_weights", 3 * len(expected))
            self.live_table_, self.dead_table_, self.cut_table_ = (
                state_vector(state, key, n_cells) for key in ("live_table", "dead_table", "cut_table"))
            self.fixed_, self.cut_fixed_ = state_float(state, "fixed"), state_float(state, "cut_fixed")
            self.floor_ = state_float(state, "floor")
            if self.floor_ <= 0 or np.any(self.piece_weights_ < 0):
                raise PredictorFileError("robust transfer state needs a positive floor and non-negative weights")
            self.cut_seen_ = bool(state.get("cut_seen", False))
            self.member_ = str(state.get("member", ""))[:200]
        self.n_features_in_ = sp.n_layers
        return self

    def to_latency_table(self, space):
        from predictors.transfer_compile import compile_transfer

        return compile_transfer(self, space)
