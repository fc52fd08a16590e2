"""Save and load predictors as a folder of JSON files (never pickle).

Layout::

    MODEL/meta.json    schema, predictor level and registered name, hyper-parameters
                       (nested predictors inline), feature names, space, target /
                       device, training-data hash and rows, library versions,
                       metrics, sha256 of every other file
    MODEL/state.json   {"state": the predictor's ``to_state()``, "nested": the
                       predictor-valued hyper-parameters with their own state}
    MODEL/<file>       files in the model's own format (``to_files()``), e.g.
                       XGBoost's ``model.json``

This module is generic: it calls the :class:`~predictors.base.SavedState`
hooks and looks names up in :mod:`predictors.registry`. A predictor folder is
untrusted input; loading refuses, with one :class:`PredictorFileError` line:
a wrong schema, any file in the folder that ``meta.json`` does not list, a
listed file missing or not matching its sha256, a space / target / feature
mismatch, state the predictor's ``set_state`` rejects (tree structure is
checked in Python before native code sees it), and a model whose predictions
on a few random archs of its space are not finite and positive.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latnas.schema.errors import DataError, LatnasError, PredictorFileError
from latnas.schema.safe_json import loads
from predictors.atomic_dir import replace_dir, scratch_dir
from predictors.base import SavedState, space_of
from predictors.data import MAX_TABLE_VALUE  # a prediction above it is no latency

SCHEMA = "latnas.predictor/2"  # /2: state.json = {"state", "nested"}; predictors own their state
META = "meta.json"
STATE = "state.json"
MAX_META_BYTES = 16 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024  # per listed file; our largest (a 100-tree forest) is a few MB
MAX_STATE_BYTES = 16 * 1024 * 1024  # state.json is parsed into Python objects (about 10x its size in memory)
N_SANITY_ARCHS = 8


def library_versions() -> dict[str, str]:
    import sklearn
    import xgboost

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "xgboost": xgboost.__version__}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ------------------------------------------------------------------ nested hyper-parameters
def _nested_doc(model, with_state: bool) -> dict[str, Any]:
    from predictors.registry import registered_name

    level, name = registered_name(model)
    if model.to_files():
        raise PredictorFileError(f"a nested {type(model).__name__} with its own files cannot be saved")
    doc = {"level": level, "predictor": name, "params": encode_params(model, with_state)}
    if with_state:
        doc["state"] = model.to_state()
    return doc


def _is_nested(value) -> bool:
    return isinstance(value, SavedState) or (
        isinstance(value, dict) and bool(value) and all(isinstance(v, SavedState) for v in value.values()))


def _encode(value, with_state: bool):
    if isinstance(value, SavedState):
        return {"$predictor": _nested_doc(value, with_state)}
    if _is_nested(value):
        return {"$predictors": {str(k): _nested_doc(v, with_state) for k, v in value.items()}}
    if isinstance(value, (tuple, list)):
        return [_encode(v, with_state) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_params(model, with_state: bool = False) -> dict[str, Any]:
    """``get_params(deep=False)`` as JSON. Predictor-valued parameters (a block model,
    source models) become ``{"$predictor": ...}`` / ``{"$predictors": {...}}`` entries
    naming their registered type and parameters, and, ``with_state``, their learned state."""
    return {k: _encode(v, with_state) for k, v in model.get_params(deep=False).items()}


def _restore_nested(doc: Any):
    from predictors.registry import predictor_class

    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise PredictorFileError("nested predictor entry is malformed")
    return build(predictor_class(doc.get("level"), doc.get("predictor")), doc["params"], doc.get("state"), {})


def _decode(value):
    if isinstance(value, dict) and set(value) == {"$predictor"}:
        return _restore_nested(value["$predictor"])
    if isinstance(value, dict) and set(value) == {"$predictors"}:
        inner = value["$predictors"]
        if not isinstance(inner, dict):
            raise PredictorFileError("nested predictors entry is malformed")
        return {k: _restore_nested(v) for k, v in inner.items()}
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def build(cls: type, params: dict[str, Any], state: Any, files: dict[str, bytes]):
    """Instance of ``cls`` from saved hyper-parameters with its learned state restored (validated)."""
    try:
        model = cls(**{str(k): _decode(v) for k, v in params.items()})
        if not isinstance(model, SavedState):
            raise PredictorFileError(f"{cls.__name__} does not implement predictors.base.SavedState")
        if not isinstance(state, dict):
            raise PredictorFileError(f"{cls.__name__} state must be a JSON object")
        return model.set_state(state, files)
    except LatnasError as exc:
        raise PredictorFileError(str(exc)) from None
    except Exception as exc:  # malformed content that still matched its hash
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise PredictorFileError(f"{cls.__name__} cannot be restored: {type(exc).__name__}: {text}") from None


def state_document(model) -> dict[str, Any]:
    """What ``state.json`` holds: the model's own state and its nested predictors (with state)."""
    nested = {k: _encode(v, True) for k, v in model.get_params(deep=False).items() if _is_nested(v)}
    return {"state": model.to_state(), "nested": nested}


def _params_from(meta_params: dict[str, Any], doc: Any) -> tuple[dict[str, Any], Any]:
    """Hyper-parameters (nested predictors taken from the hashed state.json) and the own state."""
    if not isinstance(doc, dict) or not isinstance(doc.get("nested"), dict) or "state" not in doc:
        raise PredictorFileError(f"{STATE} must hold 'state' and 'nested' objects")
    params = dict(meta_params)
    for key, value in params.items():
        marker = isinstance(value, dict) and set(value) in ({"$predictor"}, {"$predictors"})
        if marker != (key in doc["nested"]):
            raise PredictorFileError(f"nested predictor {key!r} is not in both {META} and {STATE}")
    extra = set(doc["nested"]) - set(params)
    if extra:
        raise PredictorFileError(f"{STATE} holds nested predictors {sorted(extra)[:3]} that {META} does not name")
    params.update(doc["nested"])
    return params, doc["state"]


# ------------------------------------------------------------------ save
def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save_predictor(model, folder: str | Path, verify: bool = True, **meta: Any) -> Path:
    """Write ``model`` to ``folder``; ``meta`` adds fields such as ``target``, ``training``, ``metrics``,
    ``fingerprint``. Loaded back with every check :func:`load_predictor` applies (``verify``) before it
    replaces anything: a model that would not load is a one-line :class:`PredictorFileError`, nothing written."""
    from predictors.registry import registered_name

    check_model_folder(Path(folder))
    level, name = registered_name(model)
    doc = {"level": level, "predictor": name, "space": getattr(model, "space", None)}
    return write_model_folder(model, folder, {**doc, **meta}, load_predictor if verify else None)


def check_model_folder(folder: Path) -> None:
    """``folder`` may receive a model: absent, empty, or holding a model (which is replaced)."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise PredictorFileError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / META).is_file():
        raise PredictorFileError(f"{folder} holds files but no model ({META}); refusing to write a model into it")


def write_model_folder(model, folder: str | Path, doc: dict[str, Any], verify: Callable[[Path], Any] | None) -> Path:
    """The one writer of model folders (latency and accuracy predictors): ``state.json``, the model's own
    files and ``meta.json`` (``doc`` plus schema, params, feature names, library versions and every file's
    sha256) go to a hidden folder beside ``folder``; ``verify(tmp)`` loads it back, and only then is it
    renamed into place, so a kill leaves either the previous folder or the complete new one."""
    folder = Path(folder)
    check_model_folder(folder)
    blobs = {STATE: json.dumps(state_document(model), default=_json_default).encode()}
    for fname, data in model.to_files().items():
        if fname in (META, STATE) or Path(fname).name != fname:
            raise PredictorFileError(f"{type(model).__name__} wants to write a bad file name {fname!r}")
        blobs[fname] = bytes(data)
    doc = {
        "schema": SCHEMA,
        "level": doc.pop("level"),
        "predictor": doc.pop("predictor"),
        "params": encode_params(model),
        "space": doc.pop("space", None),
        "feature_names": list(model.feature_names),
        "libraries": library_versions(),
        "files": {fname: _sha256(data) for fname, data in blobs.items()},
        **doc,
    }
    blobs[META] = json.dumps(doc, indent=1, default=_json_default).encode()
    tmp = scratch_dir(folder)
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a model folder gets the usual mode
        for fname, data in blobs.items():  # meta.json last: a folder without it is never a model
            _write_synced(tmp / fname, data)
        if verify is not None:
            try:
                verify(tmp)
            except PredictorFileError as exc:
                reason = str(exc).replace(f"model {tmp}: ", "").replace(str(tmp), str(folder))
                raise PredictorFileError(f"the trained model would not load, so {folder} was not written: {reason}") from None
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------ load
def _read_bounded(path: Path, limit: int) -> bytes:
    """A regular file (not a link, FIFO or device) of at most ``limit`` bytes."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise PredictorFileError(f"{path} is a symbolic link; a model folder holds its own files only")
        if not stat.S_ISREG(st.st_mode):
            raise PredictorFileError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise PredictorFileError(f"{path} is larger than {limit} bytes; refused")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise PredictorFileError(f"{path} is larger than {limit} bytes; refused")
        return data
    except FileNotFoundError:
        raise PredictorFileError(f"{path} is missing") from None
    except OSError as exc:
        raise PredictorFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse(data: bytes, what: str):
    try:
        return loads(data, what)
    except DataError as exc:
        raise PredictorFileError(str(exc)) from None


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The checked ``meta.json`` of a model folder (schema, listed files)."""
    folder = Path(folder)
    if not folder.exists():
        raise PredictorFileError(f"model {folder} does not exist")
    if not folder.is_dir():
        raise PredictorFileError(f"model {folder} is not a model folder (expected {META} inside)")
    if not os.path.lexists(folder / META):
        raise PredictorFileError(f"model {folder} has no {META}")
    try:
        meta = loads(_read_bounded(folder / META, MAX_META_BYTES), f"{folder}/{META}")
    except DataError as exc:
        raise PredictorFileError(f"model {folder}/{META} is corrupt: {exc}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise PredictorFileError(f"model {folder} has schema {str(found)[:60]!r}; this latnas reads {SCHEMA}")
    files = meta.get("files")
    if not isinstance(files, dict) or STATE not in files or not all(isinstance(v, str) for v in files.values()):
        raise PredictorFileError(f"model {folder}/{META} lists no files")
    return meta


def read_files(folder: str | Path, meta: dict[str, Any]) -> dict[str, bytes]:
    """Every listed file's bytes, hash-checked; anything in the folder that is not listed is refused."""
    folder = Path(folder)
    listed = meta["files"]
    for entry in sorted(folder.iterdir()):
        if entry.name != META and entry.name not in listed:
            raise PredictorFileError(f"model {folder} holds {entry.name}, which {META} does not list; refused")
    out = {}
    for fname, digest in listed.items():
        path = folder / fname
        if Path(fname).name != fname or fname in (META, "", ".", "..") or "\x00" in fname:
            raise PredictorFileError(f"model {folder}/{META} lists {fname[:60]!r}, which is not a plain file name")
        if not os.path.lexists(path):
            raise PredictorFileError(f"model {folder} is missing {fname}")
        data = _read_bounded(path, MAX_STATE_BYTES if fname == STATE else MAX_FILE_BYTES)
        if _sha256(data) != digest:
            raise PredictorFileError(f"model {folder}/{fname} does not match its sha256 in {META} (modified or corrupt)")
        out[fname] = data
    return out


def sanity_check(model, meta: dict[str, Any], n: int = N_SANITY_ARCHS) -> None:
    """Refuse an arch-level model whose predictions on random archs of its space (or, for
    models that only cover measured blocks, its training archs) are not finite and positive."""
    if getattr(model, "level", "arch") != "arch":
        return
    space = space_of(model.space)
    batches = [np.array(space.random_archs(n, rng=0, unique=False), dtype=np.int64)]
    trained = [a for a in ((meta.get("training") or {}).get("train_archs") or [])[:n] if isinstance(a, str)]
    refused = None
    for archs in batches + ([trained] if trained else []):
        try:
            if isinstance(archs, list):
                archs = np.array([space.parse_arch(a) for a in archs], dtype=np.int64)
            with np.errstate(over="ignore", invalid="ignore"):
                pred = np.asarray(model.predict(archs), dtype=np.float64)
        except LatnasError as exc:  # e.g. a lookup table without some blocks: try the training archs
            refused = str(exc)
            continue
        if pred.shape != (len(archs),) or not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            raise PredictorFileError("model predicts non-finite or non-positive latency for archs of its space; refused")
        if np.any(pred > MAX_TABLE_VALUE):
            raise PredictorFileError(f"model predicts latencies above {MAX_TABLE_VALUE:g} ms for archs of its space; refused")
        return
    raise PredictorFileError(f"model cannot predict archs of its space: {refused}")


def load_predictor(folder: str | Path, space: str | None = None, target: str | None = None):
    """Load a saved predictor; returns ``(model, meta)``. ``space``/``target``
    (optional) must match what the model was trained for."""
    from predictors.registry import predictor_class

    folder = Path(folder)
    meta = read_meta(folder)
    files = read_files(folder, meta)
    if space is not None and meta.get("space") != space:
        raise PredictorFileError(f"model {folder} is for space {meta.get('space')!r}, not {space!r}")
    if target is not None and meta.get("target") not in (None, target):
        raise PredictorFileError(f"model {folder} was trained for target {meta.get('target')!r}, not {target!r}")
    cls = predictor_class(meta.get("level", "arch"), meta.get("predictor"))
    if not isinstance(meta.get("params"), dict):
        raise PredictorFileError(f"model {folder}/{META} has no params object")
    try:
        params, state = _params_from(meta["params"], _parse(files.pop(STATE), f"{folder}/{STATE}"))
        model = build(cls, params, state, files)
        if list(model.feature_names) != meta.get("feature_names"):
            raise PredictorFileError(f"feature names do not match this latnas's {meta.get('space')!r} space")
        sanity_check(model, meta)
    except LatnasError as exc:
        raise PredictorFileError(f"model {folder}: {exc}") from None
    return model, meta


def load_latency_table(folder: str | Path, space):
    """Verify a predictor folder, load it and compile it into a LatencyTable for ``space``
    (a :class:`~latnas.schema.spaces.base.SearchSpace`); the one way search should read a folder."""
    from predictors.compile import compile_predictor

    model, meta = load_predictor(folder, space=space.name)
    parts = [str(meta.get(k)) for k in ("target", "device", "backend") if meta.get(k)]
    fp = meta.get("fingerprint")
    if isinstance(fp, str) and fp:
        parts.append(fp)
    table = compile_predictor(model, device=" ".join(dict.fromkeys(parts)))
    table.meta.setdefault("predictor_folder", str(folder))
    return table
