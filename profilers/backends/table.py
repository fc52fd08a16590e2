"""``table``: an emulated device whose "measurement" of an arch is a lookup in a latency table.

Benchmark users (HW-NAS-Bench, HELP) judge hardware-aware search against
published per-device latencies; this backend lets ``latnas profile --models``
and ``latnas search --profile-top K`` run their real code path against such a
table (e.g. the NAS-Bench-201 CSV)::

    get_backend("table", table="nb201.csv", column="pixel3_ms")

The table is read with :func:`predictors.data.load_arch_table` (archs parsed by
the space being profiled, so archs of another space are refused with their
row). One-line errors: no table or column given, a column that is missing or
not numeric, a constant column, zero / negative latencies, an arch the table
lacks (or holds no value for), block profiling (a table holds whole models).
The fingerprint names the table's sha256 and the column, never this host.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from latnas.schema.errors import DataError
from profilers.base import Backend, LatencyStats, ProtocolConfig, register_backend


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stats(ms: float) -> LatencyStats:
    return LatencyStats(median_ms=ms, mean_ms=ms, std_ms=0.0, min_ms=ms, p10_ms=ms, p25_ms=ms, p75_ms=ms, p90_ms=ms,
                        iqr_ms=0.0, repeats=1, warmup_runs=0, stable=True, noisy=False)


@register_backend("table")
class TableBackend(Backend):
    description = "emulated device: whole-model latency looked up in a table (e.g. the NAS-Bench-201 CSV)"
    requires = "a CSV of archs and latency columns (--device-table CSV --device-column COL)"
    remote = True  # measures nothing on this host: no profiling lock, one lookup per session
    agent_options = frozenset()  # a path: never settable through `latnas agent`

    def __init__(self, table: str | Path | None = None, column: str | None = None, arch_column: str | None = None):
        self.table = None if table in (None, "") else Path(table)
        self.column = column or None
        self.arch_column = arch_column or None
        self._sha: str | None = None
        self._lookup: dict[str, dict[tuple[int, ...], float]] = {}  # space name -> {arch: ms}

    def availability(self) -> tuple[bool, str]:
        if self.table is None or self.column is None:
            return False, "needs a latency table and a column (--device-table CSV --device-column COL)"
        if not self.table.is_file():
            return False, f"device table {self.table} does not exist"
        return True, ""

    def check(self) -> "TableBackend":
        """One-line DataError unless a readable table and a column are given."""
        ok, reason = self.availability()
        if not ok:
            raise DataError(f"backend table {reason}")
        return self

    def sha256(self) -> str:
        if self._sha is None:
            self._sha = file_sha256(self.check().table)
        return self._sha

    def versions(self) -> dict[str, str]:
        return {}

    def device_info(self) -> dict[str, Any]:
        if self.table is None or self.column is None:
            return {"emulated": "table", "table": None, "column": self.column}
        return {"emulated": "table", "table": self.table.name, "table_sha256": self.sha256(), "column": self.column}

    def lookup(self, space) -> dict[tuple[int, ...], float]:
        """``{arch: ms}`` of ``space`` from the table's column (validated once per space)."""
        if space.name not in self._lookup:
            from predictors.data import load_arch_table

            self.check()
            table = load_arch_table(self.table, space, self.arch_column)
            if self.column not in table.columns:
                raise DataError(f"device table {self.table} has no numeric column {self.column!r} "
                                f"(numeric: {', '.join(list(table.columns)[:8]) or 'none'}{', ...' if len(table.columns) > 8 else ''})")
            y = table.columns[self.column]
            good = y[y == y]
            if good.size and good.min() <= 0:
                raise DataError(f"device table {self.table} column {self.column!r} has zero or negative latencies "
                                f"(min {good.min():g}); not a latency column")
            if good.size < 2 or good.max() == good.min():
                raise DataError(f"device table {self.table} column {self.column!r} is constant "
                                f"({good[0] if good.size else 'no values'}); not a device's latency")
            self._lookup[space.name] = {tuple(int(v) for v in a): float(ms) for a, ms in zip(table.archs.tolist(), y)
                                        if ms == ms}
        return self._lookup[space.name]

    def latency_ms(self, space, arch) -> float:
        """The table's latency of one arch; a one-line DataError when it has none."""
        key = tuple(int(v) for v in space.parse_arch(arch))
        try:
            return self.lookup(space)[key]
        except KeyError:
            raise DataError(f"arch {space.format_arch(key)} is not in device table {self.table} "
                            f"(column {self.column}); the table backend measures only archs it lists") from None

    # --- the hooks the runner calls
    def prepare(self, module, example, config: ProtocolConfig):
        raise DataError("the table backend looks whole models up by arch; it cannot time a module")

    def measure_spec(self, spec, config: ProtocolConfig = ProtocolConfig()):
        raise DataError("the table backend holds whole-model latencies only: profile models (--models N), not blocks")

    def measure_model(self, space_name: str, arch_string: str, batch: int = 1, config: ProtocolConfig = ProtocolConfig(),
                      *, space=None) -> LatencyStats:
        if space is None:
            from latnas.schema.spaces import get_space

            space = get_space(space_name, batch=batch)
        return _stats(self.latency_ms(space, arch_string))
