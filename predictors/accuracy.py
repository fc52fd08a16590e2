"""Few-shot accuracy predictor: ridge and an XGBoost ensemble over the arch encoding and zero-cost proxies.

``AccuracyPredictor(space, proxies=("synflow", "params", "flops")).fit(X, y)``
with ``X`` = ``(n, n_layers + len(proxies))``: the arch's choice indices, then
the raw proxy values in the order of ``proxies`` (the caller computes them:
:func:`latnas.search.scorers.proxies.proxy_features`; predictors never import
the search layer). Features: the per-layer one-hot, the count of each choice,
and each proxy as ``sign(p) log1p(|p|)`` standardised on the training rows.

Two models, and their average: a ridge on (one-hot, proxies) with its
penalty chosen by leave-one-out (what 10-20 rows can support: it follows the
proxies' trend), and ``ensemble`` XGBoost regressors (bootstrap rows, feature
subsampling, distinct seeds) that learn interactions once rows accumulate.
``mode="auto"`` uses the ridge below 30 rows and otherwise picks ``ridge``,
``xgb`` or ``blend`` by 5-fold cross-validated Spearman on the K rows. :meth:`predict_std` is
the ensemble's spread (the surrogate search's uncertainty).

Saved like a latency predictor (``predictors.persistence``: JSON state, one
XGBoost JSON file per member, all hashed; tree structure checked before
XGBoost parses it). ``level = "accuracy"``: the latency sanity check on load
does not apply (predictions need proxy values).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from latnas.schema.errors import DataError, PredictorFileError
from predictors.base import SavedState, as_list, space_of, state_float, state_int, state_vector
from predictors.features import check_archs, onehot, onehot_feature_names

MODES = ("auto", "ridge", "xgb", "blend")
ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 12))
MAX_ROWS = 100_000
RIDGE_BELOW = 30  # mode "auto" with fewer rows: the ridge alone


def _t(p: np.ndarray) -> np.ndarray:
    return np.sign(p) * np.log1p(np.abs(p))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    r = spearmanr(a, b)[0]
    return float(r) if np.isfinite(r) else -1.0


class AccuracyPredictor(SavedState, RegressorMixin, BaseEstimator):
    """Accuracy from (arch encoding, zero-cost proxies); see the module docstring."""

    level = "accuracy"
    table_trainable = False  # trained by `latnas train-accuracy`, not `latnas train`

    def __init__(self, space: str = "nb201", proxies: Sequence[str] = (), mode: str = "auto", ensemble: int = 5,
                 n_estimators: int = 300, max_depth: int = 3, learning_rate: float = 0.05, random_state: int = 0):
        self.space = space
        self.proxies = proxies
        self.mode = mode
        self.ensemble = ensemble
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.random_state = random_state

    # ---------------------------------------------------------- features
    @property
    def feature_names(self) -> list[str]:
        s = space_of(self.space)
        return onehot_feature_names(s) + [f"count_{c.name}" for c in s.choices] + [f"proxy_{p}" for p in self.proxies]

    def _split(self, X) -> tuple[np.ndarray, np.ndarray]:
        s = space_of(self.space)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        width = s.n_layers + len(self.proxies)
        if X.ndim != 2 or X.shape[1] != width:
            raise DataError(f"accuracy features must be (n, {width}): {s.n_layers} arch columns then "
                            f"{len(self.proxies)} proxy values ({', '.join(self.proxies) or 'none'}); got {X.shape}")
        archs = check_archs(X[:, :s.n_layers], s.n_layers, s.n_choices)
        proxies = X[:, s.n_layers:]
        if proxies.size and not np.all(np.isfinite(proxies)):
            raise DataError("zero-cost proxy values must be finite")
        return archs, proxies

    def _features(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(ridge features, tree features)."""
        s = space_of(self.space)
        archs, proxies = self._split(X)
        oh = onehot(archs, s.n_layers, s.n_choices)
        counts = np.stack([(archs == c).sum(axis=1) for c in range(s.n_choices)], axis=1).astype(np.float64)
        pz = (_t(proxies) - self.proxy_mean_) / self.proxy_scale_
        return np.hstack([oh, pz]), np.hstack([oh, counts, pz])

    # ---------------------------------------------------------- fit
    def _xgb_params(self, member: int) -> dict:
        return {"objective": "reg:squarederror", "max_depth": int(self.max_depth), "eta": float(self.learning_rate),
                "subsample": 0.8, "colsample_bytree": 0.8, "seed": int(self.random_state) * 101 + member,
                "nthread": 1, "tree_method": "hist", "verbosity": 0}

    def _fit_parts(self, lin: np.ndarray, tree: np.ndarray, y: np.ndarray, trees: bool):
        import xgboost as xgb
        from sklearn.linear_model import RidgeCV

        ridge = RidgeCV(alphas=ALPHAS).fit(lin, y)
        boosters = []
        if trees:
            d = xgb.DMatrix(tree, label=y)
            boosters = [xgb.train(self._xgb_params(m), d, num_boost_round=int(self.n_estimators))
                        for m in range(int(self.ensemble))]
        return (ridge.coef_.astype(np.float64), float(ridge.intercept_)), boosters

    def _choose(self, lin, tree, y) -> str:
        if self.mode != "auto":
            return self.mode
        folds = np.random.default_rng(self.random_state).permutation(len(y)) % 5
        oof = {m: np.empty(len(y)) for m in ("ridge", "xgb", "blend")}
        for f in range(5):
            te, tr = folds == f, folds != f
            (coef, b), boosters = self._fit_parts(lin[tr], tree[tr], y[tr], trees=True)
            r, x = lin[te] @ coef + b, self._trees(boosters, tree[te])
            oof["ridge"][te], oof["xgb"][te], oof["blend"][te] = r, x, (r + x) / 2
        return max(oof, key=lambda m: _spearman(oof[m], y))

    def fit(self, X, y):
        if self.mode not in MODES:
            raise DataError(f"accuracy predictor mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        archs, proxies = self._split(X)
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(archs):
            raise DataError(f"{len(y)} accuracies for {len(archs)} archs")
        if not np.all(np.isfinite(y)):
            raise DataError("accuracy targets must be finite numbers")
        if not 5 <= len(y) <= MAX_ROWS:
            raise DataError(f"an accuracy predictor needs 5..{MAX_ROWS} trained archs, got {len(y)}")
        t = _t(proxies)
        self.proxy_mean_ = t.mean(axis=0)
        sd = t.std(axis=0)
        self.proxy_scale_ = np.where(sd > 0, sd, 1.0)
        lin, tree = self._features(X)
        few = len(y) < RIDGE_BELOW  # too few rows for trees or for choosing between models (benchmark: ridge wins)
        self.chosen_ = ("ridge" if few else self._choose(lin, tree, y)) if self.mode == "auto" else self.mode
        (self.coef_, self.intercept_), self.boosters_ = self._fit_parts(lin, tree, y, trees=self.chosen_ != "ridge")
        self.n_trees_ = int(self.n_estimators) if self.boosters_ else 0
        return self

    # ---------------------------------------------------------- predict
    @staticmethod
    def _member_preds(boosters, tree: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        d = xgb.DMatrix(tree)
        return np.stack([b.predict(d) for b in boosters]).astype(np.float64)

    def _trees(self, boosters, tree):
        return self._member_preds(boosters, tree).mean(axis=0)

    def predict_std(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Prediction and the ensemble's spread (zero for a ridge-only model)."""
        if not hasattr(self, "coef_"):
            raise DataError("the accuracy predictor is not fitted")
        lin, tree = self._features(X)
        ridge = lin @ self.coef_ + self.intercept_
        if self.chosen_ == "ridge":
            return ridge, np.zeros(len(ridge))
        members = self._member_preds(self.boosters_, tree)
        if self.chosen_ == "blend":
            members = (members + ridge[None, :]) / 2
        return members.mean(axis=0), members.std(axis=0)

    def predict(self, X) -> np.ndarray:
        return self.predict_std(X)[0]

    # ---------------------------------------------------------- saved state
    def to_state(self) -> dict:
        return {"proxy_mean": as_list(self.proxy_mean_), "proxy_scale": as_list(self.proxy_scale_),
                "coef": as_list(self.coef_), "intercept": self.intercept_, "chosen": self.chosen_,
                "members": len(self.boosters_), "n_trees": self.n_trees_}

    def to_files(self) -> dict[str, bytes]:
        return {f"xgb_{i}.json": bytes(b.save_raw("json")) for i, b in enumerate(self.boosters_)}

    def set_state(self, state: dict, files: dict) -> "AccuracyPredictor":
        import xgboost as xgb

        from latnas.schema.safe_json import loads
        from predictors.validate import check_xgb_json

        s = space_of(self.space)
        p = len(self.proxies)
        self.proxy_mean_ = state_vector(state, "proxy_mean", p)
        self.proxy_scale_ = state_vector(state, "proxy_scale", p)
        if np.any(self.proxy_scale_ <= 0):
            raise PredictorFileError("predictor state 'proxy_scale' must be positive")
        self.coef_ = state_vector(state, "coef", s.n_layers * s.n_choices + p)
        self.intercept_ = state_float(state, "intercept")
        self.chosen_ = state.get("chosen")
        if self.chosen_ not in MODES[1:]:
            raise PredictorFileError(f"predictor state 'chosen' must be one of {', '.join(MODES[1:])}")
        members = state_int(state, "members", 0, 100)
        self.n_trees_ = state_int(state, "n_trees", 0, 100_000)
        if (members == 0) != (self.chosen_ == "ridge"):
            raise PredictorFileError(f"a {self.chosen_} accuracy predictor with {members} tree members")
        self.boosters_ = []
        for i in range(members):
            name = f"xgb_{i}.json"
            raw = files.get(name)
            if raw is None:
                raise PredictorFileError(f"accuracy predictor has no {name}")
            try:
                doc = loads(raw, name)
            except DataError as exc:
                raise PredictorFileError(str(exc)) from None
            if check_xgb_json(doc, len(self.feature_names), what=name) != self.n_trees_:
                raise PredictorFileError(f"{name} does not hold the {self.n_trees_} trees state.json names")
            booster = xgb.Booster()
            try:
                booster.load_model(bytearray(raw))
            except xgb.core.XGBoostError as exc:
                raise PredictorFileError(f"{name} is refused by XGBoost: {str(exc).splitlines()[0][:200]}") from None
            self.boosters_.append(booster)
        return self
