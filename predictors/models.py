"""Arch-level latency predictors (scikit-learn estimators).

Every model here takes ``X`` = an ``(n, n_layers)`` integer matrix of archs of
one search space (``space`` hyper-parameter, a registered space name) and
``y`` = latency in ms. ``__init__`` only stores hyper-parameters; ``fit``
returns ``self`` and sets learned attributes ending in ``_``.

Models:

* :class:`XGBLatencyPredictor` (default): a ridge fit on the per-layer one-hot
  as base margin, then XGBoost boosting the residual (log or linear target).
  With ``max_depth=1`` on one-hot features (the default) the model is
  additive over layers by construction, so it compiles exactly into a
  :class:`~latnas.schema.latency_table.LatencyTable`.
* :class:`OneHotRidge`: ridge on the per-layer one-hot (additive).
* :class:`FlopsLinear`, :class:`ParamsLinear`: ``ms = a * total + b``.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from latnas.schema.errors import PredictorFileError
from predictors.base import SavedState, as_list, space_of, state_bool, state_float, state_int, state_vector
from predictors.features import (arch_feature_names, arch_totals, check_archs, layer_cost_tables, onehot,
                                 onehot_feature_names)
from predictors.linear import fit_additive

XGB_FILE = "model.json"  # XGBoost's own JSON model, beside state.json
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-4, 3, 15))


def _y(y) -> np.ndarray:
    from latnas.schema.errors import DataError

    y = np.asarray(y, dtype=np.float64).ravel()
    if y.size and (not np.all(np.isfinite(y)) or np.any(y <= 0)):
        raise DataError("latency targets must be finite and positive")
    return y


def additive_fit(space, archs: np.ndarray, y: np.ndarray, target: str, alphas, prior: str, relative: bool = True):
    """Fit the additive one-hot model; returns (coef over one-hot, intercept, alpha, log_target)."""
    x = onehot(archs, space.n_layers, space.n_choices)
    flops, _, f0, _ = layer_cost_tables(space)
    total = (flops[np.arange(space.n_layers), archs].sum(axis=1) + f0) if prior == "flops" else None
    fit, (pa, _) = fit_additive(x, y, target, alphas, prior=total, relative=relative)
    coef = fit.coef.astype(np.float64)
    intercept = fit.intercept
    if total is not None:  # fold the FLOPs prior into the per-layer coefficients (still additive)
        coef = coef + pa * flops.ravel()
        intercept += pa * f0
    return coef, float(intercept), fit.alpha, fit.log_target


class ArchPredictor(SavedState, RegressorMixin, BaseEstimator):
    """Base of arch-level predictors: validates archs of ``self.space``;
    subclasses implement the :class:`~predictors.base.SavedState` hooks."""

    space: str

    def _space(self):
        return space_of(self.space)

    def _archs(self, X) -> np.ndarray:
        s = self._space()
        return check_archs(X, s.n_layers, s.n_choices)

    def _onehot(self, X) -> np.ndarray:
        s = self._space()
        return onehot(X, s.n_layers, s.n_choices)

    @property
    def feature_names(self) -> list[str]:
        return onehot_feature_names(self._space())

    def _n_onehot(self) -> int:
        s = self._space()
        return s.n_layers * s.n_choices

    def _restored(self):
        self.n_features_in_ = self._space().n_layers
        return self


class OneHotRidge(ArchPredictor):
    """Ridge regression on the per-layer choice one-hot (alpha by exact LOO).

    ``target``: "linear" (ms, exactly additive), "log" (log ms: multiplicative
    per-layer factors) or "auto" (lower leave-one-out relative error wins).
    ``prior="flops"`` first fits the target on total MFLOPs and shrinks the
    per-layer terms towards that fit (much better with few rows); "none"
    shrinks towards a constant. ``relative=True`` fits a linear target by least
    squares on relative error (rows weighted ``1 / y**2``), which the ±x%
    metrics reward and which heavy right tails cannot dominate.
    """

    def __init__(self, space: str = "fbnet", target: str = "auto", prior: str = "flops", relative: bool = True,
                 alphas=DEFAULT_ALPHAS):
        self.space = space
        self.target = target
        self.prior = prior
        self.relative = relative
        self.alphas = alphas

    def fit(self, X, y):
        archs, y = self._archs(X), _y(y)
        self.coef_, self.intercept_, self.alpha_, self.log_target_ = additive_fit(
            self._space(), archs, y, self.target, self.alphas, self.prior, self.relative)
        self.n_features_in_ = self._space().n_layers
        return self

    def decision_function(self, X) -> np.ndarray:
        """Additive score (log ms or ms) before the inverse target transform."""
        check_is_fitted(self, "coef_")
        return self._onehot(X) @ self.coef_ + self.intercept_

    def predict(self, X) -> np.ndarray:
        z = self.decision_function(X)
        return np.exp(z) if self.log_target_ else z

    def to_state(self) -> dict:
        check_is_fitted(self, "coef_")
        return {"coef": as_list(self.coef_), "intercept": self.intercept_, "alpha": self.alpha_,
                "log_target": bool(self.log_target_)}

    def set_state(self, state, files):
        self.coef_ = state_vector(state, "coef", self._n_onehot())
        self.intercept_, self.alpha_ = state_float(state, "intercept"), state_float(state, "alpha")
        self.log_target_ = state_bool(state, "log_target")
        return self._restored()

    def to_latency_table(self, space):
        from predictors.compile import exp_table, linear_table

        check_is_fitted(self, "coef_")
        table = self.coef_.reshape(space.n_layers, space.n_choices)
        meta = {"predictor": type(self).__name__}
        if self.log_target_:
            return exp_table(space, table, self.intercept_, meta)
        return linear_table(space, table, self.intercept_, meta)


class _TotalLinear(ArchPredictor):
    column = 0

    def __init__(self, space: str = "fbnet"):
        self.space = space

    def _total(self, X) -> np.ndarray:
        return arch_totals(self._space(), self._archs(X))[:, self.column]

    def fit(self, X, y):
        t, y = self._total(X), _y(y)
        if len(t) >= 2 and np.ptp(t) > 0:
            a, b = np.polyfit(t, y, 1)
        else:
            a, b = 0.0, float(np.mean(y))
        self.coef_, self.intercept_ = float(a), float(b)
        self.n_features_in_ = self._space().n_layers
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return self.coef_ * self._total(X) + self.intercept_

    def to_state(self) -> dict:
        check_is_fitted(self, "coef_")
        return {"coef": self.coef_, "intercept": self.intercept_}

    def set_state(self, state, files):
        self.coef_, self.intercept_ = state_float(state, "coef"), state_float(state, "intercept")
        return self._restored()

    def to_latency_table(self, space):
        from predictors.compile import linear_table

        check_is_fitted(self, "coef_")
        flops, params, f0, p0 = layer_cost_tables(space)
        base, fixed = (flops, f0) if self.column == 0 else (params, p0)
        return linear_table(space, self.coef_ * base, self.coef_ * fixed + self.intercept_,
                            {"predictor": type(self).__name__})


class FlopsLinear(_TotalLinear):
    """``ms = a * MFLOPs + b`` (the FLOPs proxy as a predictor)."""

    column = 0


class ParamsLinear(_TotalLinear):
    """``ms = a * Mparams + b``."""

    column = 1


class XGBLatencyPredictor(ArchPredictor):
    """XGBoost on (log) latency, boosting the residual of a one-hot ridge.

    The ridge (``linear_init``) captures the near-additive structure of latency
    over layers; trees add what it misses. The number of trees is chosen by
    early stopping on a ``validation_fraction`` hold-out, then the booster is
    refit on all rows with that many trees. ``max_depth=1`` with
    ``totals=False`` keeps the model additive over layers (compilable exactly);
    deeper trees or whole-model totals (MFLOPs, params) add interactions.
    """

    def __init__(self, space: str = "fbnet", target: str = "auto", n_estimators: int = 1500,
                 max_depth: int = 1, learning_rate: float = 0.05, subsample: float = 0.8,
                 colsample_bytree: float = 1.0, min_child_weight: float = 1.0, reg_lambda: float = 1.0,
                 early_stopping_rounds: int = 50, validation_fraction: float = 0.15,
                 linear_init: bool = True, prior: str = "flops", relative: bool = True, totals: bool = False,
                 random_state: int = 0, n_jobs: int = 1):
        self.space = space
        self.target = target
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.linear_init = linear_init
        self.prior = prior
        self.relative = relative
        self.totals = totals
        self.random_state = random_state
        self.n_jobs = n_jobs

    @property
    def feature_names(self) -> list[str]:
        return arch_feature_names(self._space(), totals=self.totals)

    def _features(self, X) -> np.ndarray:
        x = self._onehot(X)
        return np.hstack([x, arch_totals(self._space(), self._archs(X))]) if self.totals else x

    def _params(self) -> dict:
        return {
            "objective": "reg:squarederror", "base_score": 0.0, "max_depth": self.max_depth,
            "eta": self.learning_rate, "subsample": self.subsample, "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight, "lambda": self.reg_lambda, "seed": self.random_state,
            "nthread": self.n_jobs, "tree_method": "hist", "max_bin": 16,
        }

    def _base(self, X) -> np.ndarray:
        x = self._onehot(X)
        if self.linear_coef_ is None:
            return np.full(x.shape[0], self.linear_intercept_)
        return x @ self.linear_coef_ + self.linear_intercept_

    def fit(self, X, y):
        import xgboost as xgb

        archs, y = self._archs(X), _y(y)
        feats = self._features(archs)
        if self.linear_init:
            self.linear_coef_, self.linear_intercept_, _, self.log_target_ = additive_fit(
                self._space(), archs, y, self.target, DEFAULT_ALPHAS, self.prior, self.relative)
        else:
            self.log_target_ = self.target != "linear"
            self.linear_coef_ = None
            self.linear_intercept_ = float(np.mean(np.log(y) if self.log_target_ else y))
        t = np.log(y) if self.log_target_ else y
        base = self._base(archs)
        params = self._params()
        n = len(t)
        n_val = int(round(n * self.validation_fraction))
        rounds = self.n_estimators
        if n < 10 or n_val < 3:
            rounds = 0  # too few rows to choose the number of trees: the linear base is the model
        elif self.early_stopping_rounds:
            perm = np.random.default_rng(self.random_state).permutation(n)
            va, tr = perm[:n_val], perm[n_val:]
            dtr = xgb.DMatrix(feats[tr], label=t[tr], base_margin=base[tr])
            dva = xgb.DMatrix(feats[va], label=t[va], base_margin=base[va])
            b = xgb.train(params, dtr, self.n_estimators, evals=[(dva, "val")],
                          early_stopping_rounds=self.early_stopping_rounds, verbose_eval=False)
            rounds = int(b.best_iteration) + 1
            # keep the trees only if they lower the hold-out *relative* error of the base
            inv = np.exp if self.log_target_ else (lambda z: z)
            with_trees = inv(b.predict(dva, iteration_range=(0, rounds), output_margin=True).astype(np.float64))
            rel = lambda p: float(np.mean((p / y[va] - 1.0) ** 2))  # noqa: E731
            if rounds <= 1 or rel(with_trees) >= rel(inv(base[va])):
                rounds = 0
        self.n_trees_ = rounds
        dall = xgb.DMatrix(feats, label=t, base_margin=base)
        self.booster_ = xgb.train(params, dall, rounds) if rounds else None
        self.n_features_in_ = self._space().n_layers
        return self

    @property
    def is_additive(self) -> bool:
        """True when the model is a sum of per-layer terms (exactly compilable)."""
        return self.max_depth == 1 and not self.totals

    def decision_function(self, X) -> np.ndarray:
        """Score before the inverse target transform (log ms or ms)."""
        import xgboost as xgb

        check_is_fitted(self, "n_trees_")
        z = self._base(X)
        if self.booster_ is not None:
            feats = self._features(X)
            z = z + self.booster_.predict(xgb.DMatrix(feats, base_margin=np.zeros(len(feats))), output_margin=True).astype(np.float64)
        return z

    def predict(self, X) -> np.ndarray:
        z = self.decision_function(X)
        return np.exp(z) if self.log_target_ else z

    # ---------------------------------------------------------------- state
    def to_state(self) -> dict:
        check_is_fitted(self, "n_trees_")
        return {"linear_coef": as_list(self.linear_coef_), "linear_intercept": self.linear_intercept_,
                "log_target": bool(self.log_target_), "n_trees": int(self.n_trees_)}

    def to_files(self) -> dict[str, bytes]:
        return {} if self.booster_ is None else {XGB_FILE: bytes(self.booster_.save_raw("json"))}

    def set_state(self, state, files):
        import xgboost as xgb

        from latnas.schema.errors import DataError
        from latnas.schema.safe_json import loads
        from predictors.validate import check_xgb_json

        self.linear_coef_ = state_vector(state, "linear_coef", self._n_onehot(), allow_none=True)
        self.linear_intercept_ = state_float(state, "linear_intercept")
        self.log_target_ = state_bool(state, "log_target")
        self.n_trees_ = state_int(state, "n_trees")
        self.booster_ = None
        if self.n_trees_:
            raw = files.get(XGB_FILE)
            if raw is None:
                raise PredictorFileError(f"XGBoost predictor with {self.n_trees_} trees has no {XGB_FILE}")
            try:
                doc = loads(raw, XGB_FILE)
            except DataError as exc:
                raise PredictorFileError(str(exc)) from None
            n_trees = check_xgb_json(doc, len(self.feature_names), what=XGB_FILE)  # before native code sees it
            if n_trees != self.n_trees_:
                raise PredictorFileError(f"{XGB_FILE} holds {n_trees} trees, state.json says {self.n_trees_}")
            booster = xgb.Booster()
            try:
                booster.load_model(bytearray(raw))
            except xgb.core.XGBoostError as exc:
                raise PredictorFileError(f"{XGB_FILE} is refused by XGBoost: {str(exc).splitlines()[0][:200]}") from None
            self.booster_ = booster
        return self._restored()

    def to_latency_table(self, space):
        from predictors.compile import exp_table, linear_table, xgb_layer_table

        check_is_fitted(self, "n_trees_")
        if not self.is_additive:
            raise PredictorFileError("only additive XGBoost predictors (max_depth=1, totals=False) compile exactly")
        L, C = space.n_layers, space.n_choices
        table = np.zeros((L, C)) if self.linear_coef_ is None else self.linear_coef_.reshape(L, C).copy()
        const = self.linear_intercept_
        if self.booster_ is not None:
            trees, c = xgb_layer_table(self.booster_, L, C)
            table += trees
            const += c
        meta = {"predictor": type(self).__name__}
        return exp_table(space, table, const, meta) if self.log_target_ else linear_table(space, table, const, meta)
