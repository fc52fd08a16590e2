"""Training data as plain records: arch tables (CSV) and profiled blocks.

Predictors never import the profilers: profile stores reach them as plain
dicts (``key, kind, backend, fingerprint, batch, median_ms, spec``; the CLI
reads them with ``profilers.store.ProfileStore.to_records``), and arch tables
as CSV files with an arch column (``arch`` as in the FBNet table, ``arch_str``
as in the NAS-Bench-201 table, or any named column) and ``<device>_ms``
columns.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from latnas.schema.errors import DataError, LatnasError
from latnas.schema.safe_json import loads
from latnas.schema.spec import BlockSpec

FBNET_CSV = "fbnet_cifar100_latency.csv"


def find_fbnet_csv() -> Path | None:
    """The shared FBNet latency CSV: ``$LATNAS_FBNET_DATA`` (file or folder) or
    ``../shared/data/fbnet-latency/`` beside the repository; None if absent."""
    env = os.environ.get("LATNAS_FBNET_DATA")
    candidates = []
    if env:
        p = Path(env)
        candidates.append(p / FBNET_CSV if p.is_dir() else p)
    root = Path(__file__).resolve().parents[1]
    candidates += [root.parent / "shared" / "data" / "fbnet-latency" / FBNET_CSV,
                   root / "shared" / "data" / "fbnet-latency" / FBNET_CSV]
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class ArchTable:
    """Archs of one space with measured latency columns."""

    space: str
    arch_strings: list[str]
    archs: np.ndarray  # (n, n_layers) int
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,) float ms

    def __len__(self) -> int:
        return len(self.arch_strings)

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise DataError(f"table has no column {name!r} (columns: {', '.join(self.columns) or 'none'})")
        return self.columns[name]

    def subset(self, rows) -> "ArchTable":
        rows = np.asarray(rows, dtype=np.int64)
        return ArchTable(self.space, [self.arch_strings[i] for i in rows], self.archs[rows],
                         {k: v[rows] for k, v in self.columns.items()})


ARCH_COLUMNS = ("arch", "arch_str")  # detected in this order when no column is named


MAX_TABLE_VALUE = 1e15  # larger than any latency, FLOP or parameter count a table holds
MIN_LATENCY_MS = 1e-6  # a nanosecond: below it a 'latency' is an underflow, not a measurement
MAX_HEADER_BYTES = 64 * 1024  # the header line; NAS-Bench-201's (24 columns) is 322 bytes
MAX_COLUMNS = 1024
MAX_ROWS = 10_000_000
NEWLINE = b"\n"
#: what a numeric cell may look like: ASCII digits, no '_' (``float()`` also takes '2_8' and Arabic-Indic digits)
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def _cell_value(text: str) -> float | None:
    """The number in a cell; None for an empty or text cell; DataError text for a numeral we must not guess."""
    text = text.strip()
    if not text:
        return None
    if NUMBER.fullmatch(text):
        return float(text)
    try:
        float(text)
    except ValueError:
        return None  # a text cell: the column is not numeric (or the cell is NaN)
    raise ValueError(f"value {text[:40]!r} is not a plain ASCII number (no '_', no non-ASCII digits)")


def _read_header(fh, path: Path) -> list[str]:
    """The header line, bounded before it is parsed: size, NUL bytes, column count, duplicate names."""
    raw = fh.readline(MAX_HEADER_BYTES + 1)
    if len(raw) > MAX_HEADER_BYTES:
        raise DataError(f"table {path}: header line is longer than {MAX_HEADER_BYTES} bytes; refused")
    if b"\x00" in raw:
        raise DataError(f"table {path} row 1: NUL byte in the header; not a text table")
    if raw.count(b",") >= MAX_COLUMNS:
        raise DataError(f"table {path}: header has more than {MAX_COLUMNS} columns; refused")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"table {path} row 1: not UTF-8 text (byte {exc.start})") from None
    try:
        header = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise DataError(f"cannot read table {path} row 1: {str(exc)[:200]}") from None
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if name in seen:
            raise DataError(f"table {path} row 1: column {name[:40]!r} appears twice (columns {seen[name] + 1} and "
                            f"{j + 1}); give each column once")
        seen[name] = j
    return header


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; NUL bytes, ragged rows and non-UTF-8 text refused with their row."""
    try:
        with path.open("rb") as fh:
            header = _read_header(fh, path)
            data = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read table {path}: {exc.strerror or exc}") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(f"table {path} row {data.count(NEWLINE, 0, nul) + 2}: NUL byte; not a text table")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"table {path} row {data.count(NEWLINE, 0, exc.start) + 2}: not UTF-8 text") from None
    del data
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise DataError(f"table {path} row {reader.line_num + 1}: {len(cells)} cells but the header has "
                                f"{len(header)} columns")
            rows.append(cells + [""] * (len(header) - len(cells)))
            if len(rows) > MAX_ROWS:
                raise DataError(f"table {path} has more than {MAX_ROWS} rows; refused")
    except csv.Error as exc:
        raise DataError(f"cannot read table {path} row {reader.line_num + 1}: {str(exc)[:200]}") from None
    return header, rows


def load_arch_table(path: str | Path, space, arch_column: str | None = None) -> ArchTable:
    """Read a CSV of archs of ``space`` with measured columns.

    The arch column is ``arch_column`` when given, else the first of
    :data:`ARCH_COLUMNS` present; its strings go through ``space.parse_arch``
    (so any form the space accepts). Columns with no numeric value are
    ignored; empty or non-numeric cells of numeric columns become NaN.
    Refused with one line naming the row and column: a header over
    :data:`MAX_HEADER_BYTES` or :data:`MAX_COLUMNS` (checked before any row is
    read), a column named twice, a NUL byte, a row with more cells than the
    header, a numeral ``float()`` takes but that is not plain ASCII (``2_8``,
    Arabic-Indic digits), a missing arch column, an arch that does not parse,
    a duplicate arch, no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} does not exist")
    header, rows = _read_rows(path)
    if arch_column is None:
        arch_column = next((c for c in ARCH_COLUMNS if c in header), None)
        if arch_column is None:
            raise DataError(f"table {path} has no arch column ({' or '.join(ARCH_COLUMNS)}; name one with "
                            f"--arch-column); columns: {', '.join(header[:20]) or 'none'}")
    elif arch_column not in header:
        raise DataError(f"table {path} has no column {arch_column!r} (columns: {', '.join(header[:20]) or 'none'})")
    if not rows:
        raise DataError(f"table {path} has no rows")
    a = header.index(arch_column)
    names = [(j, h) for j, h in enumerate(header) if j != a]
    archs = np.empty((len(rows), space.n_layers), dtype=np.int64)
    strings = []
    seen: dict[tuple, int] = {}
    cols = {n: np.full(len(rows), np.nan) for _, n in names}
    for i, row in enumerate(rows):
        text = row[a].strip()
        try:
            archs[i] = space.parse_arch(text)
        except LatnasError as exc:
            raise DataError(f"table {path} row {i + 2} column {arch_column[:40]!r}: {exc}") from None
        key = tuple(archs[i])
        if key in seen:
            raise DataError(f"table {path} row {i + 2}: arch {text[:80]!r} repeats row {seen[key] + 2}; "
                            "give each arch once")
        seen[key] = i
        strings.append(text)
        for j, n in names:
            try:
                value = _cell_value(row[j])
            except ValueError as exc:
                raise DataError(f"table {path} row {i + 2} column {n[:40]!r}: {exc}") from None
            if value is None:
                continue
            if math.isfinite(value) and abs(value) > MAX_TABLE_VALUE:  # 1e308 overflows every fit (inf: refused at training)
                raise DataError(f"table {path} row {i + 2} column {n[:40]!r}: value {row[j].strip()[:40]!r} is out of "
                                f"range (|value| <= {MAX_TABLE_VALUE:g})")
            cols[n][i] = value
    numeric = {n: v for n, v in cols.items() if np.isfinite(v).any()}
    return ArchTable(space.name, strings, archs, numeric)


def rows_hash(archs: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the training rows (arch matrix and targets) for provenance."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(np.asarray(archs, dtype=np.int64)).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y, dtype=np.float64)).tobytes())
    return h.hexdigest()


def json_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------- profiled blocks
@dataclass
class BlockTable:
    """Profiled blocks (one row per block) and whole-model rows of one device/backend."""

    specs: list[BlockSpec]
    block_ms: np.ndarray
    model_archs: list[str]  # whole-model rows: arch strings
    model_ms: np.ndarray
    model_space: str
    backend: str
    fingerprint: str
    batch: int


def load_block_table(records: Iterable[dict[str, Any]], backend: str | None = None,
                     fingerprint: str | None = None, batch: int | None = None,
                     space: str | None = None, stat: str = "median_ms") -> BlockTable:
    """Adapter from plain profile records to a :class:`BlockTable`.

    Records are dicts with ``key, kind ("block"|"model"), backend, fingerprint,
    batch, median_ms, spec`` (spec: a BlockSpec dict, or ``{"space", "arch"}``
    for whole models; a JSON string is accepted too). Filters pick one
    backend / device / batch; if several devices remain, that is an error
    (models must not mix devices). ``stat`` picks the latency statistic of
    each record ("median_ms", or "min_ms", which resists scheduling noise on a
    shared machine).
    """
    rows = []
    for r in records:
        if backend is not None and r.get("backend") != backend:
            continue
        if fingerprint is not None and r.get("fingerprint") != fingerprint:
            continue
        if batch is not None and int(r.get("batch", 1)) != batch:
            continue
        rows.append(r)
    if not rows:
        raise DataError(f"no profile records for backend {backend!r}" + (f" and device {fingerprint}" if fingerprint else ""))
    fps = sorted({str(r.get("fingerprint")) for r in rows})
    if len(fps) > 1:
        raise DataError(f"profile records of {len(fps)} devices ({', '.join(fps)}); pick one fingerprint")
    batches = sorted({int(r.get("batch", 1)) for r in rows})
    if len(batches) > 1:
        raise DataError(f"profile records of several batch sizes ({batches}); pick one batch")
    specs, block_ms, archs, model_ms, spaces = [], [], [], [], set()
    for r in rows:
        spec = r.get("spec") or {}
        if isinstance(spec, str):
            try:
                spec = loads(spec, "profile record spec")
            except DataError:
                raise DataError(f"profile record {str(r.get('key'))[:80]!r} has a corrupt spec") from None
        if not isinstance(spec, dict):
            raise DataError(f"profile record {str(r.get('key'))[:80]!r} has a spec that is not an object")
        try:
            ms = float(r[stat])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"profile record {r.get('key')!r} has no {stat}") from None
        if not np.isfinite(ms) or ms <= 0:
            continue
        if r.get("kind") == "model":
            if space is not None and spec.get("space") != space:
                continue
            spaces.add(spec.get("space"))
            archs.append(str(spec.get("arch")))
            model_ms.append(ms)
        else:
            try:
                specs.append(BlockSpec.from_dict(spec))
            except LatnasError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"profile record {str(r.get('key'))[:80]!r} has a bad block spec: {str(exc)[:120]}") from None
            block_ms.append(ms)
    if len(spaces) > 1:
        raise DataError(f"whole-model records of several spaces ({sorted(map(str, spaces))}); pick one with --space")
    return BlockTable(specs, np.array(block_ms), archs, np.array(model_ms),
                      next(iter(spaces), space or ""), str(rows[0].get("backend")), fps[0], batches[0])
