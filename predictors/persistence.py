"""Save and load predictors as a folder of JSON files (never pickle).

Layout::

    MODEL/meta.json    schema, predictor type, hyper-parameters, feature names,
                       space, target / device, training-data hash and rows,
                       library versions, metrics, sha256 of every other file
    MODEL/state.json   learned arrays (coefficients, weights, knots, tree arrays)
    MODEL/model.json   XGBoost's own JSON (``Booster.save_model``), xgb only

Loading checks the schema version, every file's sha256, the feature names and
the space (and, when asked, the target), and raises a one-line
:class:`~latnas.errors.PredictorFileError` on any mismatch, corruption or
missing file. Random forests are stored as their exported tree arrays.
"""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from latnas.errors import PredictorFileError
from predictors.block_models import BlockSumPredictor, LookupTableSum, PerOpRandomForest, tree_arrays
from predictors.features import BLOCK_FEATURE_NAMES, arch_feature_names, onehot_feature_names
from predictors.models import FlopsLinear, OneHotRidge, ParamsLinear, XGBLatencyPredictor, space_of
from predictors.transfer import TransferPredictor

SCHEMA = "latnas.predictor/1"
META = "meta.json"
STATE = "state.json"
BOOSTER = "model.json"

TYPES = {
    "xgb": XGBLatencyPredictor, "ridge": OneHotRidge, "flops": FlopsLinear, "params": ParamsLinear,
    "transfer": TransferPredictor, "blocksum": BlockSumPredictor,
}
BLOCK_TYPES = {"rf": PerOpRandomForest, "lut": LookupTableSum}


def type_name(model) -> str:
    for name, cls in TYPES.items():
        if type(model) is cls:
            return name
    raise PredictorFileError(f"cannot save a {type(model).__name__} (known: {', '.join(TYPES)})")


def feature_names_of(model) -> list[str]:
    space = space_of(model.space)
    if isinstance(model, XGBLatencyPredictor):
        return arch_feature_names(space, totals=model.totals)
    if isinstance(model, BlockSumPredictor):
        return list(BLOCK_FEATURE_NAMES)
    return onehot_feature_names(space)


def library_versions() -> dict[str, str]:
    import sklearn
    import xgboost

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "xgboost": xgboost.__version__}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _arr(a) -> list | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def _plain_params(model) -> dict[str, Any]:
    params = model.get_params(deep=False)
    params.pop("source_models", None)
    params.pop("block_model", None)
    if "alphas" in params:
        params["alphas"] = [float(a) for a in params["alphas"]]
    return params


# ------------------------------------------------------------------ state
def _block_state(m) -> dict[str, Any]:
    if isinstance(m, PerOpRandomForest):
        forests = {op: [{k: v.tolist() for k, v in tr.items()} for tr in trees] for op, trees in m.forests_.items()}
        return {"type": "rf", "params": m.get_params(), "forests": forests}
    if isinstance(m, LookupTableSum):
        return {"type": "lut", "params": m.get_params(), "rows": [list(k) for k in m.table_], "ms": list(m.table_.values())}
    raise PredictorFileError(f"cannot save block model {type(m).__name__}")


def _get_state(model) -> dict[str, Any]:
    if isinstance(model, OneHotRidge):
        return {"coef": _arr(model.coef_), "intercept": model.intercept_, "alpha": model.alpha_, "log_target": model.log_target_}
    if isinstance(model, (FlopsLinear, ParamsLinear)):
        return {"coef": model.coef_, "intercept": model.intercept_}
    if isinstance(model, XGBLatencyPredictor):
        return {"linear_coef": _arr(model.linear_coef_), "linear_intercept": model.linear_intercept_,
                "log_target": model.log_target_, "n_trees": model.n_trees_}
    if isinstance(model, TransferPredictor):
        sources = {name: {"coef": _arr(m.coef_), "intercept": m.intercept_} for name, m in (model.source_models or {}).items()}
        return {"sources": sources, "weights": _arr(model.weights_), "intercept": model.intercept_,
                "resid_coef": _arr(model.resid_coef_), "resid_intercept": model.resid_intercept_,
                "stage_coef": _arr(model.stage_coef_), "stage_intercept": model.stage_intercept_,
                "source_names": model.source_names_}
    if isinstance(model, BlockSumPredictor):
        return {"block_model": _block_state(model.block_model), "knots_x": _arr(model.knots_x_), "knots_y": _arr(model.knots_y_)}
    raise PredictorFileError(f"cannot save a {type(model).__name__}")


def _restore_block(state: dict[str, Any]):
    cls = BLOCK_TYPES[state["type"]]
    m = cls(**state["params"])
    if state["type"] == "rf":
        m.forests_ = {op: [tree_arrays(tr) for tr in trees] for op, trees in state["forests"].items()}
    else:
        m.table_ = {tuple(float(v) for v in row): float(ms) for row, ms in zip(state["rows"], state["ms"])}
    m.n_features_in_ = len(BLOCK_FEATURE_NAMES)
    return m


def _restore(name: str, params: dict[str, Any], state: dict[str, Any], folder: Path):
    cls = TYPES[name]
    if "alphas" in params:
        params = {**params, "alphas": tuple(params["alphas"])}
    if name == "transfer":
        sources = {}
        for src, s in state["sources"].items():
            m = OneHotRidge(space=params["space"], target="linear")
            m.coef_, m.intercept_, m.log_target_, m.alpha_ = np.asarray(s["coef"]), float(s["intercept"]), False, 0.0
            m.n_features_in_ = space_of(params["space"]).n_layers
            sources[src] = m
        model = cls(source_models=sources, **params)
        model.weights_, model.intercept_ = np.asarray(state["weights"]), float(state["intercept"])
        model.resid_coef_, model.resid_intercept_ = np.asarray(state["resid_coef"]), float(state["resid_intercept"])
        model.source_names_ = list(state["source_names"])
        model.stage_coef_, model.stage_intercept_ = np.asarray(state["stage_coef"]), float(state["stage_intercept"])
    elif name == "blocksum":
        model = cls(block_model=_restore_block(state["block_model"]), **params)
        kx, ky = state["knots_x"], state["knots_y"]
        model.knots_x_ = None if kx is None else np.asarray(kx)
        model.knots_y_ = None if ky is None else np.asarray(ky)
    else:
        model = cls(**params)
        if name == "ridge":
            model.coef_, model.intercept_ = np.asarray(state["coef"]), float(state["intercept"])
            model.alpha_, model.log_target_ = float(state["alpha"]), bool(state["log_target"])
        elif name in ("flops", "params"):
            model.coef_, model.intercept_ = float(state["coef"]), float(state["intercept"])
        elif name == "xgb":
            import xgboost as xgb

            lc = state["linear_coef"]
            model.linear_coef_ = None if lc is None else np.asarray(lc)
            model.linear_intercept_, model.log_target_ = float(state["linear_intercept"]), bool(state["log_target"])
            model.n_trees_ = int(state["n_trees"])
            model.booster_ = None
            if model.n_trees_:
                booster = xgb.Booster()
                booster.load_model(str(folder / BOOSTER))
                model.booster_ = booster
    model.n_features_in_ = space_of(params["space"]).n_layers
    return model


# ------------------------------------------------------------------ save / load
def save_predictor(model, folder: str | Path, **meta: Any) -> Path:
    """Write ``model`` to ``folder`` (created); ``meta`` adds fields such as
    ``target``, ``training`` (hash, rows), ``metrics``, ``fingerprint``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PredictorFileError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    name = type_name(model)
    files = {STATE: _get_state(model)}
    (folder / STATE).write_text(json.dumps(files[STATE]))
    hashes = {STATE: _sha256(folder / STATE)}
    if name == "xgb" and model.booster_ is not None:
        model.booster_.save_model(str(folder / BOOSTER))
        hashes[BOOSTER] = _sha256(folder / BOOSTER)
    doc = {
        "schema": SCHEMA,
        "predictor": name,
        "params": _plain_params(model),
        "space": model.space,
        "feature_names": feature_names_of(model),
        "libraries": library_versions(),
        "files": hashes,
        **meta,
    }
    (folder / META).write_text(json.dumps(doc, indent=1, default=_json_default))
    return folder


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_meta(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.exists():
        raise PredictorFileError(f"model {folder} does not exist")
    if not folder.is_dir():
        raise PredictorFileError(f"model {folder} is not a model folder (expected {META} inside)")
    try:
        meta = json.loads((folder / META).read_text())
    except FileNotFoundError:
        raise PredictorFileError(f"model {folder} has no {META}") from None
    except (OSError, ValueError) as exc:
        raise PredictorFileError(f"model {folder}/{META} is corrupt: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise PredictorFileError(f"model {folder} has schema {found!r}; this latnas reads {SCHEMA}")
    return meta


def load_predictor(folder: str | Path, space: str | None = None, target: str | None = None):
    """Load a saved predictor; returns ``(model, meta)``. ``space``/``target``
    (optional) must match what the model was trained for."""
    folder = Path(folder)
    meta = read_meta(folder)
    name = meta.get("predictor")
    if name not in TYPES:
        raise PredictorFileError(f"model {folder} has unknown predictor type {name!r}")
    files = meta.get("files")
    if not isinstance(files, dict) or STATE not in files:
        raise PredictorFileError(f"model {folder}/{META} lists no files")
    for fname, digest in files.items():
        path = folder / fname
        if Path(fname).name != fname or not path.is_file():
            raise PredictorFileError(f"model {folder} is missing {fname}")
        if _sha256(path) != digest:
            raise PredictorFileError(f"model {folder}/{fname} does not match its sha256 in {META} (modified or corrupt)")
    if space is not None and meta.get("space") != space:
        raise PredictorFileError(f"model {folder} is for space {meta.get('space')!r}, not {space!r}")
    if target is not None and meta.get("target") not in (None, target):
        raise PredictorFileError(f"model {folder} was trained for target {meta.get('target')!r}, not {target!r}")
    try:
        params = dict(meta["params"])
        state = json.loads((folder / STATE).read_text())
        model = _restore(name, params, state, folder)
    except PredictorFileError:
        raise
    except Exception as exc:  # malformed content that still matched its hash
        raise PredictorFileError(f"model {folder} cannot be restored: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if feature_names_of(model) != meta.get("feature_names"):
        raise PredictorFileError(f"model {folder} feature names do not match this latnas's {meta.get('space')!r} space")
    return model, meta
