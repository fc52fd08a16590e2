"""Kernel-level latency predictor: one model per kernel type, summed over a model's kernels (nn-Meter style).

Each kernel type gets a non-negative linear baseline ``ms = a + b * flops +
c * in + d * out + e * params`` (a launch cost plus work: it extrapolates to
kernels smaller or larger than any profiled one) times ``exp`` of a random
forest on the log residual over
:data:`~latnas.schema.kernels.records.KERNEL_FEATURES`. A model's latency is the sum
of its kernels' predictions, optionally through the whole-model correction
``ms = a * sum + b * kernels + c`` fitted on profiled whole models. Saved as
JSON (trees as plain lists), hashed, through the :class:`SavedState` hooks.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_is_fitted

from latnas.schema.errors import DataError, PredictorFileError, UnknownNameError
from latnas.schema.kernels.records import KERNEL_FEATURES, Kernel, kernel_features
from predictors.base import SavedState
from predictors.block_models import TREE_KEYS, export_tree, predict_tree, tree_arrays
from predictors.validate import check_tree

BASE_COLUMNS = (12, 13, 14, 15)  # log_flops, log_in, log_out, log_params: the baseline uses them unlogged
BASE_SCALE = 1e-6  # per mega-op / mega-element, so the coefficients are of order one
MAX_TYPES = 64


def as_kernels(X: Sequence[Any]) -> list[Kernel]:
    """Kernel records from records or dicts."""
    out = []
    for k in X:
        if isinstance(k, Kernel):
            out.append(k)
        elif isinstance(k, dict):
            out.append(Kernel.from_dict(k))
        else:
            raise DataError(f"expected kernel records or dicts, got {type(k).__name__}")
    return out


def _base_x(f: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(f)), np.expm1(f[:, BASE_COLUMNS]) * BASE_SCALE])


def _fit_base(xb: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error (a 10 µs kernel counts as much as a 10 ms one)."""
    from scipy.optimize import nnls

    coef = nnls(xb / y[:, None], np.ones(len(y)), maxiter=50 * xb.shape[1])[0]
    if not np.any(coef > 0):  # degenerate: a constant at the median
        coef = np.zeros(xb.shape[1])
        coef[0] = float(np.median(y))
    return coef


def _base(xb: np.ndarray, coef: np.ndarray) -> np.ndarray:
    return np.maximum(xb @ coef, 1e-7)


class KernelPredictor(SavedState, RegressorMixin, BaseEstimator):
    """``fit(kernels, ms)`` / ``predict(kernels) -> ms per kernel``; :meth:`predict_model` sums one model."""

    level = "kernel"
    space = None
    table_trainable = False

    def __init__(self, backend: str = "onnxruntime", n_estimators: int = 60, min_samples_leaf: int = 2,
                 random_state: int = 0):
        self.backend = backend
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    @property
    def feature_names(self) -> list[str]:
        return list(KERNEL_FEATURES)

    def fit(self, X, y):
        kernels = as_kernels(X)
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(kernels) or not len(y) or not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise DataError("kernel latencies must be positive, finite and one per kernel")
        f, t = kernel_features(kernels), np.log(y)
        ops = np.array([k.op for k in kernels])
        self.types_: dict[str, dict[str, Any]] = {}
        for op in sorted(set(ops)):
            m = ops == op
            xb = _base_x(f[m])
            coef = _fit_base(xb, y[m])
            resid = t[m] - np.log(_base(xb, coef))
            rf = RandomForestRegressor(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                       max_features=0.7, random_state=self.random_state, n_jobs=1).fit(f[m], resid)
            self.types_[op] = {"coef": coef, "trees": [tree_arrays(export_tree(e)) for e in rf.estimators_], "n": int(m.sum())}
        self.correction_: list[float] | None = None
        return self

    def predict(self, X) -> np.ndarray:
        """Milliseconds per kernel."""
        check_is_fitted(self, "types_")
        kernels = as_kernels(X)
        if not kernels:
            return np.zeros(0)
        f = kernel_features(kernels)
        ops = np.array([k.op for k in kernels])
        missing = sorted(set(ops) - set(self.types_))
        if missing:
            raise UnknownNameError(f"kernel type(s) {', '.join(missing)} were not profiled for this predictor "
                                   f"(it covers {', '.join(sorted(self.types_))})")
        out = np.empty(len(kernels))
        for op, model in self.types_.items():
            m = ops == op
            if m.any():
                resid = np.mean([predict_tree(tr, f[m]) for tr in model["trees"]], axis=0)
                out[m] = _base(_base_x(f[m]), model["coef"]) * np.exp(resid)
        return out

    def predict_model(self, kernels: Sequence[Any]) -> float:
        """Predicted latency (ms) of one model given its kernels (sum, then the whole-model correction)."""
        raw = float(self.predict(kernels).sum())
        return self.correct(raw, len(kernels))

    def correct(self, raw: float, n_kernels: int) -> float:
        c = getattr(self, "correction_", None)
        if not c:
            return raw
        return max(c[0] * raw + c[1] * n_kernels + c[2], 0.25 * raw)

    def fit_correction(self, raw_sums, n_kernels, measured) -> "KernelPredictor":
        """Fit ``ms = a * sum + b * kernels + c`` on whole models (relative least squares); needs >= 4 models."""
        raw, n, y = (np.asarray(v, dtype=np.float64) for v in (raw_sums, n_kernels, measured))
        if len(y) < 4:
            self.correction_ = None
            return self
        w = 1.0 / y  # relative error
        A = np.column_stack([raw, n, np.ones_like(raw)]) * w[:, None]
        coef = np.linalg.lstsq(A, y * w, rcond=None)[0]
        self.correction_ = [float(v) for v in coef] if coef[0] > 0 and np.all(np.isfinite(coef)) else None
        return self

    def to_state(self) -> dict:
        check_is_fitted(self, "types_")
        return {"types": {op: {"coef": m["coef"].tolist(), "n": m["n"],
                               "trees": [{k: v.tolist() for k, v in tr.items()} for tr in m["trees"]]}
                          for op, m in self.types_.items()},
                "correction": getattr(self, "correction_", None)}

    def set_state(self, state, files):
        types = state.get("types") if isinstance(state, dict) else None
        if not isinstance(types, dict) or not types or len(types) > MAX_TYPES:
            raise PredictorFileError("kernel predictor state needs a non-empty 'types' object")
        out = {}
        for op, m in types.items():
            if not isinstance(m, dict) or not isinstance(m.get("trees"), list) or not m["trees"]:
                raise PredictorFileError(f"kernel type {str(op)[:40]!r}: needs 'coef' and a non-empty 'trees' list")
            coef = np.asarray(m.get("coef"), dtype=np.float64)
            if coef.shape != (len(BASE_COLUMNS) + 1,) or not np.all(np.isfinite(coef)) or np.any(coef < 0):
                raise PredictorFileError(f"kernel type {str(op)[:40]!r}: bad baseline coefficients")
            trees = []
            for i, tr in enumerate(m["trees"]):
                if not isinstance(tr, dict) or set(tr) != set(TREE_KEYS):
                    raise PredictorFileError(f"kernel type {op!r} tree {i}: must have the keys {', '.join(TREE_KEYS)}")
                check_tree(tr["left"], tr["right"], tr["feature"], len(KERNEL_FEATURES), threshold=tr["threshold"],
                           value=tr["value"], what=f"kernel type {op!r} tree {i}")
                trees.append(tree_arrays(tr))
            out[str(op)] = {"coef": coef, "trees": trees, "n": int(m.get("n") or 0)}
        corr = state.get("correction")
        if corr is not None and (not isinstance(corr, list) or len(corr) != 3
                                 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in corr)):
            raise PredictorFileError("kernel predictor correction must be null or three finite numbers")
        self.types_, self.correction_ = out, corr
        return self


def kernels_of_records(records: list[dict], backend: str) -> tuple[list[Kernel], np.ndarray, list[dict]]:
    """``(kernels, ms, model records)`` of a store's kernel rows and whole-model rows with detected kernels."""
    kernels, ms, models = [], [], []
    for r in records:
        if r.get("backend") != backend:
            continue
        spec = r.get("spec")
        if isinstance(spec, str):
            import json

            spec = json.loads(spec)
        value = float(r.get("median_ms") or 0)
        if not (np.isfinite(value) and value > 0) or not isinstance(spec, dict):
            continue
        if r.get("kind") == "kernel":
            kernels.append(Kernel.from_dict(spec))
            ms.append(value)
        elif r.get("kind") == "model" and isinstance(spec.get("kernels"), list):
            models.append({"key": r.get("key"), "ms": value, "kernels": as_kernels(spec["kernels"])})
    return kernels, np.asarray(ms), models


def train_kernel_model(records: list[dict], backend: str, fingerprint: str | None = None,
                       n_estimators: int | None = None) -> tuple[KernelPredictor, dict]:
    """Fit a :class:`KernelPredictor` on a store's kernel rows (+ correction from its whole ONNX models)."""
    kernels, ms, models = kernels_of_records(records, backend)
    if len(kernels) < 10:
        raise DataError(f"the store holds {len(kernels)} kernel profiles for backend {backend!r}; "
                        f"run `latnas kernels profile --backend {backend}` first")
    est = KernelPredictor(backend=backend, **({"n_estimators": n_estimators} if n_estimators else {})).fit(kernels, ms)
    metrics: dict[str, Any] = {"kernels": len(kernels), "types": {op: m["n"] for op, m in est.types_.items()}}
    usable = [m for m in models if {k.op for k in m["kernels"]} <= set(est.types_)]
    if usable:
        raw = [float(est.predict(m["kernels"]).sum()) for m in usable]
        est.fit_correction(raw, [len(m["kernels"]) for m in usable], [m["ms"] for m in usable])
        metrics["correction_models"] = len(usable)
    meta = {"target": "kernels", "backend": backend, "fingerprint": fingerprint, "metrics": metrics}
    return est, meta
