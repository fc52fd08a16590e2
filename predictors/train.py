"""Training and evaluation workflows behind ``latnas train | eval`` (data in, data out)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from latnas.schema.errors import DataError
from predictors.data import MIN_LATENCY_MS, ArchTable, json_hash, load_block_table, rows_hash
from predictors.features import arch_totals
from predictors.metrics import flops_baseline, latency_metrics
from predictors.models import space_of

logger = logging.getLogger(__name__)

#: fast but sound defaults for each arch-level model name
ARCH_MODELS = ("xgb", "ridge", "flops", "params", "transfer")


def _usable(y: np.ndarray) -> np.ndarray:
    return np.isfinite(y) & (y > 0)


def split_rows(n_rows: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train rows (``n_train`` of ``n_rows``, by ``seed``) and the rest."""
    if not 1 <= n_train <= n_rows:
        raise DataError(f"--n-train must be in 1..{n_rows} (the table's usable rows), got {n_train}")
    perm = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def make_arch_model(name: str, space: str, source_models=None, **params):
    """A registered arch-level predictor for ``space`` (``source_models`` go to those that take them)."""
    from predictors.registry import PREDICTORS

    cls = PREDICTORS.get(name)
    if not getattr(cls, "table_trainable", True):
        raise DataError(f"model {name!r} is trained from a profile store (--store), not from a table")
    if source_models is not None:
        params = {**params, "source_models": source_models}
    try:
        return cls(space=space, **params)
    except TypeError as exc:
        raise DataError(f"model {name!r} does not take these parameters: {str(exc)[:200]}") from None


def fit_block_model(name: str, specs, block_ms, **params):
    """Fit a registered block-level model on profiled blocks."""
    from predictors.features import block_features
    from predictors.registry import BLOCK_PREDICTORS

    return BLOCK_PREDICTORS.get(name)(**params).fit(block_features(list(specs)), block_ms)


def target_rows(y: np.ndarray, target: str) -> tuple[np.ndarray, int]:
    """Rows of ``target`` to train on and the number of empty (NaN) rows skipped.

    Empty cells are skipped (counted); a column with no value, or any
    infinite, zero or negative latency, is refused with one line.
    """
    y = np.asarray(y, dtype=np.float64)
    empty = np.isnan(y)
    if empty.all():
        raise DataError(f"target column {target!r} has no latency values")
    bad = np.flatnonzero(~empty & ~(np.isfinite(y) & (y >= MIN_LATENCY_MS)))
    if bad.size:
        raise DataError(f"target column {target!r} has {bad.size} infinite, zero or negative latencies or ones below "
                        f"{MIN_LATENCY_MS:g} ms (first at data row {bad[0] + 1}: {y[bad[0]]}); latencies must be positive ms")
    skipped = int(empty.sum())
    if skipped:
        logger.warning("target %s: skipped %d rows with no latency", target, skipped)
    return np.flatnonzero(~empty), skipped


def train_arch_model(table: ArchTable, target: str, model: str = "xgb", n_train: int | None = None, seed: int = 0,
                     transfer_from: list[str] | None = None, params: dict[str, Any] | None = None):
    """Fit an arch-level model on ``n_train`` random rows of ``table[target]``.

    With ``transfer_from`` the model is a :class:`TransferPredictor` whose
    source models are fit on *every* usable row of the source columns (other
    devices' offline measurements, test archs of the target included); the
    target itself only contributes its ``n_train`` rows. Returns (model, meta).
    """
    y_all = table.column(target)
    usable, skipped = target_rows(y_all, target)
    n_train = len(usable) if n_train is None else n_train
    tr_pos, te_pos = split_rows(len(usable), n_train, seed)
    tr, te = usable[tr_pos], usable[te_pos]
    sources = None
    if transfer_from:
        from predictors.transfer import fit_source_models

        bad = [c for c in transfer_from if c == target]
        if bad:
            raise DataError(f"--transfer-from must not include the target column {target!r}")
        sources = fit_source_models(table, list(transfer_from))
        model = "transfer"
        params = {"self_check": True, **(params or {})}  # the LOO error on its own k samples, reported
    est = make_arch_model(model, table.space, source_models=sources, **(params or {}))
    est.fit(table.archs[tr], y_all[tr])
    meta: dict[str, Any] = {
        "target": target,
        "device": target[:-3] if target.endswith("_ms") else target,
        "training": {
            "n_train": int(len(tr)), "seed": int(seed), "skipped_empty_rows": skipped, "rows_sha256": rows_hash(table.archs[tr], y_all[tr]),
            "train_rows": tr.tolist(), "train_archs": [table.arch_strings[i] for i in tr],
        },
    }
    if sources:
        meta["training"]["transfer"] = {
            "sources": list(transfer_from),
            "source_rows": "all usable rows of the table (other devices' offline measurements; target test archs included)",
            "source_rows_sha256": json_hash({c: table.column(c).tolist() for c in transfer_from}),
            "prediction_inputs": "arch only (source-model predictions; no measured source latency is read at prediction time)",
        }
        loo = getattr(est, "loo_", None)
        if loo:
            clean = {k: (v if isinstance(v, int) or np.isfinite(v) else None) for k, v in loo.items()}
            meta["training"]["transfer"]["loo"] = {**clean, "large": loo_is_large(loo)}
    if len(te):
        meta["metrics"] = {"heldout": evaluate_rows(est, table, target, te, train_rows=tr)}
    return est, meta


#: the transfer self-check warns when the fit misses its own k samples (left out in turn) by more than this MAPE
LOO_WARN_MAPE = 0.2


def loo_is_large(loo: dict[str, Any]) -> bool:
    """Whether a transfer fit's leave-one-out error on its own samples is large (the user's only signal)."""
    mape = loo.get("mape")
    return bool(mape is None or not np.isfinite(mape) or mape > LOO_WARN_MAPE)


def loo_warning(loo: dict[str, Any]) -> str:
    """One line for stderr when :func:`loo_is_large`."""
    return (f"warning: transfer misses its own {loo.get('n')} samples by MAPE {100 * float(loo.get('mape', float('nan'))):.0f}% "
            f"(each left out in turn; within ±10% {100 * float(loo.get('within_10pct', float('nan'))):.0f}%, "
            f"Spearman {float(loo.get('spearman', float('nan'))):.2f}): the sources may not describe this device; "
            "measure more archs (--n-train) or other sources")


def evaluate_rows(model, table: ArchTable, target: str, rows: np.ndarray, train_rows: np.ndarray | None = None) -> dict[str, Any]:
    """The seven metrics on ``rows`` plus a ``flops`` sub-object (FLOPs ranks; FLOPs-linear fit
    on ``train_rows``, or on the evaluated rows themselves when none are given)."""
    y = table.column(target)
    pred = model.predict(table.archs[rows])
    out: dict[str, Any] = latency_metrics(y[rows], pred)
    space = space_of(table.space)
    fl = arch_totals(space, table.archs)[:, 0]
    fit_rows = rows if train_rows is None or len(train_rows) < 2 else train_rows
    out["flops"] = flops_baseline(fl[fit_rows], y[fit_rows], fl[rows], y[rows])
    return out


def eval_model(model, meta: dict[str, Any], table: ArchTable, target: str, exclude_train: bool = False):
    """Metrics of a loaded model on a table; returns (metrics, rows, predictions)."""
    if table.space != meta.get("space"):
        raise DataError(f"table is for space {table.space!r}, model for {meta.get('space')!r}")
    y = table.column(target)
    rows = np.flatnonzero(_usable(y))
    train_archs = set((meta.get("training") or {}).get("train_archs") or [])
    if exclude_train:
        if not train_archs:
            raise DataError("model records no training archs; cannot --exclude-train")
        rows = np.array([i for i in rows if table.arch_strings[i] not in train_archs], dtype=np.int64)
    if len(rows) == 0:
        raise DataError("no rows left to evaluate")
    train_rows = np.array([i for i, a in enumerate(table.arch_strings) if a in train_archs], dtype=np.int64)
    metrics = evaluate_rows(model, table, target, rows, train_rows if len(train_rows) >= 2 else None)
    return metrics, rows, model.predict(table.archs[rows])


def train_block_model(records, backend: str, space: str = "fbnet", fingerprint: str | None = None,
                      block_model: str = "rf", correction: str = "linear", params: dict[str, Any] | None = None,
                      stat: str = "median_ms"):
    """Block-level model from profile records (+ correction from whole-model rows of ``space``)."""
    from predictors.block_models import BlockSumPredictor

    data = load_block_table(records, backend=backend, fingerprint=fingerprint, space=space, stat=stat)
    if len(data.specs) < 2:
        raise DataError(f"need at least 2 profiled blocks for backend {backend!r}, found {len(data.specs)}")
    if data.batch != space_of(space).batch:
        logger.warning("profiles are batch %d; block features carry no batch, predictions are for that batch", data.batch)
    bm = fit_block_model(block_model, data.specs, data.block_ms, **(params or {}))
    est = BlockSumPredictor(space=space, block_model=bm, correction="none")
    archs = np.array([space_of(space).parse_arch(a) for a in data.model_archs], dtype=np.int64).reshape(-1, space_of(space).n_layers)
    meta: dict[str, Any] = {
        "target": None,
        "device": f"{backend}@{data.fingerprint}",
        "backend": backend,
        "fingerprint": data.fingerprint,
        "batch": data.batch,
        "training": {
            "n_blocks": len(data.specs), "n_models": len(data.model_archs),
            "rows_sha256": json_hash({"blocks": [(s.key, float(v)) for s, v in zip(data.specs, data.block_ms)],
                                      "models": [(a, float(v)) for a, v in zip(data.model_archs, data.model_ms)]}),
            "train_archs": list(data.model_archs), "block_model": block_model, "correction": correction,
            "statistic": stat,
        },
    }
    metrics: dict[str, Any] = {}
    if len(archs):
        est.fit()  # identity correction: the block sum alone
        metrics["block_sum_in_sample"] = latency_metrics(data.model_ms, est.predict(archs))
    est.set_params(correction=correction)
    est.fit(archs if len(archs) else None, data.model_ms if len(archs) else None)
    if len(archs):
        metrics["corrected_in_sample"] = latency_metrics(data.model_ms, est.predict(archs))
    meta["metrics"] = metrics
    return est, meta
