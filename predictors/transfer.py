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
Because every part is additive in ms, the result compiles exactly into a
LatencyTable.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from sklearn.utils.validation import check_is_fitted

from latnas.errors import DataError, PredictorFileError
from predictors.base import as_list, state_float, state_vector
from predictors.features import layer_cost_tables
from predictors.linear import relative_scale, ridge_loo
from predictors.models import DEFAULT_ALPHAS, ArchPredictor, OneHotRidge, _y

STAGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def fit_source_models(table, columns: list[str], rows=None, space: str | None = None) -> dict[str, OneHotRidge]:
    """One additive ridge (ms target) per source column of an ArchTable, fit on ``rows`` (default: all)."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = {}
    for col in columns:
        y = table.column(col)[rows]
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() < 2:
            raise DataError(f"source column {col!r} has fewer than 2 usable rows")
        out[col] = OneHotRidge(space=space or table.space, target="linear").fit(table.archs[rows][ok], y[ok])
    return out


class TransferPredictor(ArchPredictor):
    """Target latency = w . source_predictions(arch) + b + one-hot residual.

    ``source_models``: dict name -> fitted additive :class:`OneHotRidge`
    (``target="linear"``), see :func:`fit_source_models`.
    """

    def __init__(self, space: str = "fbnet", source_models=None, use_flops: bool = True, stage_features: bool = True,
                 residual: bool = True, relative: bool = True, alphas=DEFAULT_ALPHAS):
        self.space = space
        self.relative = relative
        self.source_models = source_models
        self.use_flops = use_flops
        self.stage_features = stage_features
        self.residual = residual
        self.alphas = alphas

    def _weights(self, y: np.ndarray):
        return 1.0 / relative_scale(y) ** 2 if self.relative else None

    def _source_tables(self) -> list[np.ndarray]:
        """Per-(layer, choice) additive terms of every source column (ms; MFLOPs for the FLOPs column)."""
        sp = self._space()
        tabs = []
        for m in (self.source_models or {}).values():
            if getattr(m, "log_target_", True):
                raise DataError("transfer sources must be linear-target OneHotRidge models")
            tabs.append(m.coef_.reshape(sp.n_layers, sp.n_choices))
        if self.use_flops:
            tabs.append(self._flops()[0])
        return tabs

    def _stages(self) -> np.ndarray:
        return np.array([slot.stage for slot in self._space().layers])

    def _stage_design(self, archs: np.ndarray) -> np.ndarray:
        """(n, n_sources * n_stages): per-stage sums of each source's per-layer terms."""
        stages = self._stages()
        rows = np.arange(archs.shape[1])
        cols = []
        for tab in self._source_tables():
            per_layer = tab[rows, archs]
            cols += [per_layer[:, stages == g].sum(axis=1) for g in np.unique(stages)]
        return np.column_stack(cols)

    def _flops(self) -> tuple[np.ndarray, float]:
        flops, _, f0, _ = layer_cost_tables(self._space())
        return flops, f0

    def _sources(self, X) -> np.ndarray:
        """Columns: each source model's prediction (ms), then total MFLOPs if ``use_flops``."""
        if not self.source_models and not self.use_flops:
            raise DataError("transfer needs at least one source model")
        archs = self._archs(X)
        cols = [m.predict(archs) for m in (self.source_models or {}).values()]
        if self.use_flops:
            flops, f0 = self._flops()
            cols.append(flops[np.arange(archs.shape[1]), archs].sum(axis=1) + f0)
        return np.column_stack(cols)

    def fit(self, X, y):
        archs, y = self._archs(X), _y(y)
        s = self._sources(archs)
        design = np.column_stack([s, np.ones(len(y)), -np.ones(len(y))])
        w, _ = nnls(design / relative_scale(y)[:, None], np.ones(len(y)))  # rows weighted by 1/y: relative error
        self.source_names_ = list(self.source_models or {}) + (["total_mflops"] if self.use_flops else [])
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
            self.resid_coef_ = np.zeros(self._space().n_layers * self._space().n_choices)
            self.resid_intercept_ = 0.0
        self.n_features_in_ = self._space().n_layers
        return self

    def effective_linear(self) -> tuple[np.ndarray, float]:
        """The whole model as one additive one-hot coefficient vector and intercept (ms)."""
        check_is_fitted(self, "weights_")
        coef = self.resid_coef_.copy()
        b = self.intercept_ + self.resid_intercept_
        models = list((self.source_models or {}).values())
        fixed = [m.intercept_ for m in models] + ([self._flops()[1]] if self.use_flops else [])
        tabs = self._source_tables()
        stages = self._stages()
        groups = np.unique(stages)
        for i, (w, tab, f0) in enumerate(zip(self.weights_, tabs, fixed)):
            per_layer = w * tab
            for j, g in enumerate(groups):  # stage terms scale the source's layers of that stage
                per_layer[stages == g] += self.stage_coef_[i * len(groups) + j] * tab[stages == g]
            coef += per_layer.ravel()
            b += w * f0
        b += self.stage_intercept_
        return coef, float(b)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        archs = self._archs(X)
        out = self._sources(archs) @ self.weights_ + self.intercept_
        if np.any(self.stage_coef_):
            out = out + self._stage_design(archs) @ self.stage_coef_
        return out + self.stage_intercept_ + self._onehot(archs) @ self.resid_coef_ + self.resid_intercept_

    # ---------------------------------------------------------------- state
    def to_state(self) -> dict:
        """Learned weights; the source models are hyper-parameters, saved nested by persistence."""
        check_is_fitted(self, "weights_")
        return {"weights": as_list(self.weights_), "intercept": self.intercept_,
                "resid_coef": as_list(self.resid_coef_), "resid_intercept": self.resid_intercept_,
                "stage_coef": as_list(self.stage_coef_), "stage_intercept": self.stage_intercept_,
                "source_names": list(self.source_names_)}

    def set_state(self, state, files):
        sp = self._space()
        names = state.get("source_names")
        expected = list(self.source_models or {}) + (["total_mflops"] if self.use_flops else [])
        if names != expected:
            raise PredictorFileError(f"transfer state names sources {str(names)[:80]}, its parameters give {expected}")
        try:
            n_tables = len(self._source_tables())
        except DataError as exc:
            raise PredictorFileError(str(exc)) from None
        self.source_names_ = expected
        self.weights_ = state_vector(state, "weights", len(expected))
        self.intercept_ = state_float(state, "intercept")
        self.resid_coef_ = state_vector(state, "resid_coef", sp.n_layers * sp.n_choices)
        self.resid_intercept_ = state_float(state, "resid_intercept")
        self.stage_coef_ = state_vector(state, "stage_coef", n_tables * len(np.unique(self._stages())))
        self.stage_intercept_ = state_float(state, "stage_intercept")
        self.n_features_in_ = sp.n_layers
        return self

    def to_latency_table(self, space):
        from predictors.compile import linear_table

        coef, b = self.effective_linear()
        return linear_table(space, coef.reshape(space.n_layers, space.n_choices), b, {"predictor": type(self).__name__})
