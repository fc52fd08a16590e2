"""The latency objective of a search: load it, check it fits the space, translate budgets.

``load_latency("flops" | table.json | predictor folder, space)`` gives a
:class:`LatencyTable` (ms from a predictor, MFLOPs for the proxy).
:func:`flops_budget_from_samples` gives the FLOPs proxy a fair budget: the
MFLOPs that a linear fit on the same measured samples maps to the ms budget.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from latnas.schema import safe_json
from latnas.schema.errors import DataError, PredictorFileError
from latnas.schema.latency_table import TABLE_SCHEMA, LatencyTable, flops_table
from latnas.schema.spaces.base import SearchSpace


def load_latency(predictor: str | Path, space: SearchSpace) -> LatencyTable:
    """``"flops"``, a latency table JSON file, or a saved predictor folder -> LatencyTable for ``space``."""
    if str(predictor).lower() in ("flops", "mflops"):
        return flops_table(space)
    path = Path(predictor).expanduser()
    if not path.exists():
        raise PredictorFileError(f"predictor {path} does not exist (give a predictor folder, a latency table JSON or 'flops')")
    if path.is_dir():
        from predictors.persistence import load_latency_table

        table = load_latency_table(path, space)  # verified (every file hashed in its manifest), then compiled
    else:
        try:
            data = safe_json.load(path, what=f"predictor {path}")
        except DataError as exc:
            raise PredictorFileError(str(exc)) from None
        if not isinstance(data, dict) or data.get("schema") != TABLE_SCHEMA:
            raise PredictorFileError(f"{path} is not a latnas latency table (schema {TABLE_SCHEMA}) nor a predictor folder")
        table = LatencyTable.from_dict(data)
    check_table(table, space)
    return table


def check_table(table: LatencyTable, space: SearchSpace, backend: str | None = None) -> None:
    """Refuse a table made for another space (or, when ``backend`` is given, another device)."""
    if table.space != space.name:
        raise PredictorFileError(f"predictor was made for space {table.space!r}, not {space.name!r}; refused")
    if table.table.shape != (space.n_layers, space.n_choices):
        raise PredictorFileError(
            f"predictor table has shape {table.table.shape}, space {space.name!r} needs {(space.n_layers, space.n_choices)}"
        )
    allowed = space.allowed_mask()
    if np.isnan(table.table[allowed]).any():
        raise PredictorFileError(f"predictor table has no entry for some allowed choices of space {space.name!r}")
    if backend and table.device and table.unit == "ms":
        described = f"{table.device} {table.meta.get('backend', '')}".lower()
        if backend.lower() not in described:
            raise PredictorFileError(
                f"predictor was made for device {table.device!r}, not backend {backend!r}; refused "
                "(profile and train a predictor for this backend)"
            )


def flops_budget_from_samples(space: SearchSpace, archs, measured_ms, budget_ms: float,
                              flops: LatencyTable | None = None) -> float:
    """The MFLOPs budget equivalent to ``budget_ms`` on the device the ``k`` samples were measured on.

    Fits ``ms = a * MFLOPs + b`` by least squares on the same measured archs a
    predictor would be trained on, and inverts it at ``budget_ms``, so the FLOPs
    proxy gets the information a predictor gets (no more). Refused (one line)
    with fewer than two samples, a non-increasing fit, or a budget the fit puts
    at or below zero MFLOPs. ``flops`` is ``flops_table(space)`` when already at hand.
    """
    archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
    y = np.asarray(measured_ms, dtype=np.float64).reshape(-1)
    if len(archs) != len(y) or len(y) < 2:
        raise DataError(f"need at least two measured archs (with one latency each), got {len(archs)} archs / {len(y)} latencies")
    if not np.isfinite(y).all() or not np.isfinite(budget_ms) or budget_ms <= 0:
        raise DataError("measured latencies and the budget must be finite (and the budget positive)")
    mflops = (flops if flops is not None else flops_table(space)).predict(archs)
    if np.ptp(mflops) <= 0:
        raise DataError("the sampled archs all have the same FLOPs; cannot fit ms against MFLOPs")
    a, b = np.polyfit(mflops, y, 1)
    if not a > 0:
        raise DataError(f"measured latency does not grow with FLOPs on these samples (slope {a:.3g} ms/MFLOP)")
    value = (float(budget_ms) - b) / a
    if not value > 0:
        raise DataError(f"budget {budget_ms:g} ms maps to {value:.3g} MFLOPs under the fit ms = {a:.3g}*MFLOPs + {b:.3g}")
    return float(value)
