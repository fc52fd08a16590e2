"""Block-level latency predictors and the block-sum whole-model predictor.

Block-level models take ``X`` = :func:`predictors.features.block_features`
rows and ``y`` = measured block latency (ms). A whole model is then
predicted as the sum of its blocks (stem + searchable layers + head) with an
optional monotone correction fit on whole-model measurements
(:class:`BlockSumPredictor`).

* :class:`PerOpRandomForest`: nn-Meter style, one random forest per op type
  (log target). Its trees are exported to plain arrays right after fitting
  and predictions always run from those arrays, so a model saved as JSON
  predicts exactly like the fitted one (no pickle).
* :class:`LookupTableSum`: exact lookup of measured blocks (no generalisation).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

from latnas.schema.errors import DataError, PredictorFileError
from latnas.schema.latency_table import LatencyTable, piecewise_linear
from predictors.base import SavedState, as_list, state_vector
from predictors.features import BLOCK_FEATURE_NAMES, BLOCK_OPS, block_features
from predictors.models import ArchPredictor
from predictors.validate import check_tree

N_OPS = len(BLOCK_OPS)


# ------------------------------------------------------------------ tree arrays
def export_tree(tree) -> dict[str, list]:
    """A fitted sklearn tree as plain lists (children, feature, threshold, value)."""
    t = tree.tree_
    return {
        "left": t.children_left.tolist(),
        "right": t.children_right.tolist(),
        "feature": t.feature.tolist(),
        "threshold": t.threshold.tolist(),
        "value": t.value[:, 0, 0].tolist(),
    }


def predict_tree(tree: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Evaluate an exported tree like sklearn does (float32 inputs, ``x <= threshold`` goes left)."""
    left, right, feat, thr, val = (tree[k] for k in ("left", "right", "feature", "threshold", "value"))
    x = x.astype(np.float32).astype(np.float64)
    node = np.zeros(len(x), dtype=np.int64)
    rows = np.arange(len(x))
    active = left[node] >= 0
    while active.any():
        n = node[active]
        go_left = x[rows[active], feat[n]] <= thr[n]
        node[active] = np.where(go_left, left[n], right[n])
        active = left[node] >= 0
    return val[node]


TREE_KEYS = ("left", "right", "feature", "threshold", "value")


def tree_arrays(tree: dict[str, list]) -> dict[str, np.ndarray]:
    ints = ("left", "right", "feature")
    return {k: np.asarray(v, dtype=np.int64 if k in ints else np.float64) for k, v in tree.items()}


def checked_tree(tree, what: str) -> dict[str, np.ndarray]:
    """A saved tree (plain lists), structurally validated, as arrays ready for :func:`predict_tree`."""
    if not isinstance(tree, dict) or set(tree) != set(TREE_KEYS):
        raise PredictorFileError(f"{what} must have exactly the keys {', '.join(TREE_KEYS)}")
    check_tree(tree["left"], tree["right"], tree["feature"], len(BLOCK_FEATURE_NAMES),
               threshold=tree["threshold"], value=tree["value"], what=what)
    return tree_arrays(tree)


class BlockPredictor(SavedState, RegressorMixin, BaseEstimator):
    """Base of block-level predictors: ``X`` = block feature rows."""

    level = "block"
    space = None  # block models are not tied to a space

    @property
    def feature_names(self) -> list[str]:
        return list(BLOCK_FEATURE_NAMES)

    def _check_x(self, X) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(BLOCK_FEATURE_NAMES):
            raise DataError(f"block features must have {len(BLOCK_FEATURE_NAMES)} columns, got shape {x.shape}")
        return x


def _op_index(x: np.ndarray) -> np.ndarray:
    return np.argmax(x[:, :N_OPS], axis=1)


class PerOpRandomForest(BlockPredictor):
    """One RandomForest per op type on block features, log-latency target.

    Op types with fewer than ``min_op_samples`` rows use a forest fit on all rows.
    """

    def __init__(self, n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: float = 1.0, min_op_samples: int = 4, random_state: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.min_op_samples = min_op_samples
        self.random_state = random_state

    def _forest(self, x, t) -> list[dict[str, np.ndarray]]:
        rf = RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                   min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
                                   random_state=self.random_state, n_jobs=1).fit(x, t)
        return [tree_arrays(export_tree(e)) for e in rf.estimators_]

    def fit(self, X, y):
        x = self._check_x(X)
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(x) or len(y) == 0 or np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise DataError("block latencies must be positive, finite and match the feature rows")
        t = np.log(y)
        ops = _op_index(x)
        self.forests_: dict[str, list] = {"*": self._forest(x, t)}
        for i, name in enumerate(BLOCK_OPS):
            mask = ops == i
            if mask.sum() >= self.min_op_samples:
                self.forests_[name] = self._forest(x[mask], t[mask])
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "forests_")
        x = self._check_x(X)
        out = np.empty(len(x))
        ops = _op_index(x)
        for i, name in enumerate(BLOCK_OPS):
            mask = ops == i
            if mask.any():
                forest = self.forests_.get(name, self.forests_["*"])
                out[mask] = np.mean([predict_tree(tr, x[mask]) for tr in forest], axis=0)
        return np.exp(out)

    def to_state(self) -> dict:
        check_is_fitted(self, "forests_")
        return {"forests": {op: [{k: v.tolist() for k, v in tr.items()} for tr in trees]
                            for op, trees in self.forests_.items()}}

    def set_state(self, state, files):
        forests = state.get("forests") if isinstance(state, dict) else None
        if not isinstance(forests, dict) or "*" not in forests:
            raise PredictorFileError("random-forest state needs a 'forests' object with a '*' forest")
        unknown = set(forests) - {"*", *BLOCK_OPS}
        if unknown:
            raise PredictorFileError(f"random-forest state has forests of unknown ops {sorted(unknown)[:5]}")
        out = {}
        for op, trees in forests.items():
            if not isinstance(trees, list) or not trees:
                raise PredictorFileError(f"random-forest state: forest {op!r} must be a non-empty list of trees")
            out[op] = [checked_tree(t, f"random-forest {op!r} tree {i}") for i, t in enumerate(trees)]
        self.forests_ = out
        self.n_features_in_ = len(BLOCK_FEATURE_NAMES)
        return self


class LookupTableSum(BlockPredictor):
    """Measured block latency by exact feature match (median of repeats).

    Used inside :class:`BlockSumPredictor` it gives the classic lookup-table
    sum; blocks that were never measured predict NaN (or raise when
    ``strict``).
    """

    def __init__(self, strict: bool = True):
        self.strict = strict

    def fit(self, X, y):
        x = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        groups: dict[tuple, list[float]] = {}
        for row, v in zip(x, y):
            groups.setdefault(tuple(np.round(row, 9)), []).append(float(v))
        self.table_ = {k: float(np.median(v)) for k, v in groups.items()}
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "table_")
        x = np.asarray(X, dtype=np.float64)
        out = np.array([self.table_.get(tuple(np.round(r, 9)), np.nan) for r in x])
        if self.strict and np.isnan(out).any():
            raise DataError(f"{int(np.isnan(out).sum())} block(s) were never measured (lookup table has no entry)")
        return out

    def to_state(self) -> dict:
        check_is_fitted(self, "table_")
        return {"rows": [list(k) for k in self.table_], "ms": list(self.table_.values())}

    def set_state(self, state, files):
        rows, ms = state.get("rows"), state_vector(state, "ms")
        n = len(BLOCK_FEATURE_NAMES)
        try:
            x = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError):
            raise PredictorFileError("lookup-table state 'rows' must be a list of number lists") from None
        if x.shape != (len(ms), n) or not np.all(np.isfinite(x)) or np.any(ms <= 0):
            raise PredictorFileError(f"lookup-table state needs {len(ms)} finite rows of {n} features and positive ms")
        self.table_ = {tuple(r): float(v) for r, v in zip(x.tolist(), ms)}
        self.n_features_in_ = n
        return self


class BlockSumPredictor(ArchPredictor):
    """Whole-model latency = correction(sum of per-block predictions).

    ``block_model`` is a fitted block-level predictor (prefit, like sklearn's
    ``cv="prefit"``). ``fit(archs, ms)`` fits only the ``correction`` on
    whole-model measurements: "linear" (``a * sum + b``, a > 0), "isotonic"
    (monotone piecewise-linear) or "none". With no whole-model rows the
    correction is the identity. ``predict_block_sum`` gives the uncorrected sum.
    """

    table_trainable = False  # fit from a profile store (``train_block_model``), not from an arch table

    def __init__(self, space: str = "fbnet", block_model=None, correction: str = "linear"):
        self.space = space
        self.block_model = block_model
        self.correction = correction

    def _block_ms(self, specs) -> np.ndarray:
        if self.block_model is None:
            raise DataError("BlockSumPredictor needs a fitted block_model")
        return self.block_model.predict(block_features(list(specs)))

    def layer_ms(self, space, cells) -> np.ndarray:
        """Predicted ms of each (layer, choice): the sum over the blocks it places."""
        groups = [space.layer_blocks(int(l), int(c)) for l, c in cells]
        flat = [b for g in groups for b in g]
        ms = self._block_ms(flat) if flat else np.zeros(0)
        ends = np.cumsum([len(g) for g in groups])
        return np.array([ms[e - len(g):e].sum() for g, e in zip(groups, ends)])

    def predict_block_sum(self, X) -> np.ndarray:
        """Sum of block predictions over stem, decoded layers and head of each arch."""
        s = self._space()
        archs = self._archs(X)
        cache: dict = {}
        fixed = float(self._block_ms(list(s.fixed_blocks())).sum())
        need = sorted({(l, int(c)) for a in archs for l, c in enumerate(a)})
        cache = dict(zip(need, self.layer_ms(s, need)))
        return np.array([fixed + sum(cache[(l, int(c))] for l, c in enumerate(a)) for a in archs])

    def fit(self, X=None, y=None):
        self.knots_x_, self.knots_y_ = None, None
        self.n_features_in_ = self._space().n_layers
        if X is None or y is None or len(y) == 0 or self.correction == "none":
            return self
        total = self.predict_block_sum(X)
        y = np.asarray(y, dtype=np.float64).ravel()
        if self.correction == "isotonic" and len(y) >= 3:
            iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(total, y)
            kx, ky = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
            if len(kx) >= 2:
                span = max(kx[-1] - kx[0], 1.0)
                # flat extrapolation, written as knots so LatencyTable reproduces it exactly
                self.knots_x_ = np.concatenate([[kx[0] - 1e3 * span], kx, [kx[-1] + 1e3 * span]])
                self.knots_y_ = np.concatenate([[ky[0]], ky, [ky[-1]]])
                return self
        if len(y) >= 2 and np.ptp(total) > 0:
            a, b = np.polyfit(total, y, 1)
            if a <= 0:
                a, b = 1.0, float(np.mean(y - total))
        else:
            a, b = 1.0, float(np.mean(y - total)) if len(y) else 0.0
        lo, hi = float(total.min()), float(max(total.max(), total.min() + 1.0))
        self.knots_x_ = np.array([lo, hi])
        self.knots_y_ = a * self.knots_x_ + b
        return self

    def apply_correction(self, total: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        if self.knots_x_ is None:
            return total
        return piecewise_linear(total, self.knots_x_, self.knots_y_)

    def predict(self, X) -> np.ndarray:
        return self.apply_correction(self.predict_block_sum(X))

    @property
    def feature_names(self) -> list[str]:
        return list(BLOCK_FEATURE_NAMES)

    # ---------------------------------------------------------------- state
    def to_state(self) -> dict:
        """Correction knots; the block model is a hyper-parameter, saved nested by persistence."""
        check_is_fitted(self, "n_features_in_")
        return {"knots_x": as_list(self.knots_x_), "knots_y": as_list(self.knots_y_)}

    def set_state(self, state, files):
        kx = state_vector(state, "knots_x", allow_none=True)
        ky = state_vector(state, "knots_y", allow_none=True)
        if (kx is None) != (ky is None):
            raise PredictorFileError("block-sum state needs both knots_x and knots_y, or neither")
        if kx is not None and (kx.size < 2 or kx.shape != ky.shape or np.any(np.diff(kx) <= 0)):
            raise PredictorFileError("block-sum correction needs >= 2 matching, increasing knots")
        self.knots_x_, self.knots_y_ = kx, ky
        self.n_features_in_ = self._space().n_layers
        return self

    def to_latency_table(self, space):
        table = np.full((space.n_layers, space.n_choices), np.nan)
        cells = [(l, c) for l, c in zip(*np.nonzero(space.allowed_mask()))]
        for (l, c), v in zip(cells, self.layer_ms(space, cells)):
            table[l, c] = v
        fixed = float(self._block_ms(list(space.fixed_blocks())).sum())
        meta = {"predictor": type(self).__name__, "table_values": "ms (block predictions)"}
        if self.knots_x_ is None:
            return LatencyTable(space=space.name, table=table, offset=fixed, meta=meta)
        # the knots act on the full sum; the table sum excludes the fixed blocks
        return LatencyTable(space=space.name, table=table, knots_x=self.knots_x_ - fixed, knots_y=self.knots_y_, meta=meta)
