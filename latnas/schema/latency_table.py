"""Per-layer latency lookup tables: the contract between predictors and search.

A predictor for a space compiles into a :class:`LatencyTable`: ``table[l, c]``
is the cost (ms) of choice ``c`` at searchable layer ``l`` (NaN where not
allowed), plus a monotone correction ``f`` applied to the per-arch sum:
``latency(arch) = f(sum_l table[l, arch[l]])`` where ``f`` is the piecewise
linear map through ``(knots_x, knots_y)`` (linear extrapolation at the ends),
or the identity plus ``offset`` when there are no knots. Evaluating it for a
batch of archs is two numpy gathers, millions per second on one core.

The FLOPs proxy is a LatencyTable too (unit "MFLOPs"), so search can swap the
proxy and the predictor without knowing either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latnas.schema.errors import PredictorFileError

TABLE_SCHEMA = "latnas.schema.latency_table/1"


def piecewise_linear(x: np.ndarray, knots_x: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    """The piecewise-linear map through increasing ``knots_x`` -> ``knots_y``,
    extrapolated linearly beyond the end knots (the one correction function
    shared by :class:`LatencyTable` and the block-sum predictor)."""
    x = np.asarray(x, dtype=np.float64)
    kx, ky = np.asarray(knots_x, dtype=np.float64), np.asarray(knots_y, dtype=np.float64)
    out = np.interp(x, kx, ky)
    lo, hi = x < kx[0], x > kx[-1]
    if lo.any():
        out[lo] = ky[0] + (x[lo] - kx[0]) * (ky[1] - ky[0]) / (kx[1] - kx[0])
    if hi.any():
        out[hi] = ky[-1] + (x[hi] - kx[-1]) * (ky[-1] - ky[-2]) / (kx[-1] - kx[-2])
    return out


@dataclass
class LatencyTable:
    space: str
    table: np.ndarray  # (n_layers, n_choices), NaN where a choice is not allowed
    offset: float = 0.0  # added to the sum (stem + head + overhead), used without knots
    knots_x: np.ndarray | None = None  # monotone correction of the sum, optional
    knots_y: np.ndarray | None = None
    unit: str = "ms"
    device: str = ""  # device / backend description the table was made for
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = np.asarray(self.table, dtype=np.float64)
        if self.knots_x is not None:
            self.knots_x = np.asarray(self.knots_x, dtype=np.float64)
            self.knots_y = np.asarray(self.knots_y, dtype=np.float64)
            if self.knots_x.shape != self.knots_y.shape or self.knots_x.size < 2:
                raise PredictorFileError("latency table correction needs >= 2 matching knots")
            if np.any(np.diff(self.knots_x) <= 0):
                raise PredictorFileError("latency table correction knots must increase")
        self._flat = np.nan_to_num(self.table, nan=np.inf).ravel()
        self._row = (np.arange(self.table.shape[0]) * self.table.shape[1]).astype(np.int64)

    @property
    def n_layers(self) -> int:
        return int(self.table.shape[0])

    def correct(self, total: np.ndarray) -> np.ndarray:
        """Apply the correction to per-arch sums."""
        if self.knots_x is None:
            return total + self.offset
        return piecewise_linear(total, self.knots_x, self.knots_y)

    def block_sum(self, archs: np.ndarray) -> np.ndarray:
        """Uncorrected sum of per-layer entries for an (n, n_layers) int array."""
        archs = np.asarray(archs)
        if archs.ndim == 1:
            archs = archs[None, :]
        if archs.shape[1] != self.n_layers:
            raise PredictorFileError(f"archs have {archs.shape[1]} layers, table has {self.n_layers}")
        return self._flat[archs.astype(np.int64, copy=False) + self._row].sum(axis=1)

    def predict(self, archs: np.ndarray) -> np.ndarray:
        """Latency (``unit``) of each arch; inf for archs using a disallowed choice."""
        return self.correct(self.block_sum(archs))

    def min_arch(self) -> tuple[np.ndarray, float]:
        """The cheapest arch (per-layer argmin; exact since the correction is monotone)."""
        arch = np.nanargmin(self.table, axis=1)
        return arch, float(self.predict(arch[None, :])[0])

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": TABLE_SCHEMA,
            "space": self.space,
            "unit": self.unit,
            "device": self.device,
            "offset": self.offset,
            "table": [[None if np.isnan(v) else float(v) for v in row] for row in self.table],
            "knots_x": None if self.knots_x is None else self.knots_x.tolist(),
            "knots_y": None if self.knots_y is None else self.knots_y.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyTable":
        if not isinstance(data, dict) or data.get("schema") != TABLE_SCHEMA:
            raise PredictorFileError(f"not a latnas latency table (expected schema {TABLE_SCHEMA})")
        try:
            table = np.array([[np.nan if v is None else float(v) for v in row] for row in data["table"]])
            return cls(
                space=str(data["space"]),
                table=table,
                offset=float(data.get("offset", 0.0)),
                knots_x=data.get("knots_x"),
                knots_y=data.get("knots_y"),
                unit=str(data.get("unit", "ms")),
                device=str(data.get("device", "")),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorFileError(f"corrupt latency table: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        from latnas.schema.errors import DataError
        from latnas.schema.safe_json import load as safe_load

        if not Path(path).exists():
            raise PredictorFileError(f"latency table {path} does not exist")
        try:
            data = safe_load(path, f"latency table {path}")
        except DataError as exc:
            raise PredictorFileError(str(exc)) from None
        return cls.from_dict(data)


def flops_table(space) -> LatencyTable:
    """The FLOPs proxy as a table (MFLOPs per layer choice; stem and head as offset)."""
    from latnas.schema.features import block_cost

    table = np.full((space.n_layers, space.n_choices), np.nan)
    for layer, choice, blocks in space.layer_table():
        table[layer, choice] = sum(block_cost(s).flops for s in blocks) / 1e6
    fixed = sum(block_cost(s).flops for s in space.fixed_blocks()) / 1e6
    return LatencyTable(space=space.name, table=table, offset=fixed, unit="MFLOPs", device="flops-proxy")
