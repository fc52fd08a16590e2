"""Scorer ``table``: look archs up in a user's CSV of scores (e.g. benchmark accuracies).

``config.table`` is the CSV path, ``config.column`` the score column and
``config.arch_column`` the arch column (default: ``arch`` or ``arch_str``,
whichever exists). Arch cells are parsed with ``space.parse_arch``, so any
form the space accepts works (digits, or NAS-Bench-201 strings for ``nb201``).
An arch the table lacks is an error naming it, never a made-up score; so are a
missing column, a non-numeric or NaN score and an arch listed twice.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from latnas.schema.errors import DataError, LatnasError
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.schema.spaces.base import Arch, SearchSpace

ARCH_COLUMNS = ("arch", "arch_str")


def load_score_table(space: SearchSpace, path: str | Path, column: str, arch_column: str | None = None) -> dict[Arch, float]:
    """``{arch: score}`` from a CSV; one-line DataError for anything unusable."""
    path = Path(path)
    try:
        f = path.open(newline="")
    except FileNotFoundError:
        raise DataError(f"score table {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"score table {path} cannot be read: {exc}") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if arch_column is None:
            found = [c for c in ARCH_COLUMNS if c in header]
            if not found:
                raise DataError(f"score table {path} has no arch column ({' or '.join(ARCH_COLUMNS)}); set the arch column")
            arch_column = found[0]
        for name, what in ((arch_column, "arch"), (column, "score")):
            if name not in header:
                raise DataError(f"score table {path} has no {what} column {name!r} (columns: {', '.join(header)})")
        table: dict[Arch, float] = {}
        try:
            for line, row in enumerate(reader, start=2):
                try:
                    arch = space.parse_arch(row[arch_column] or "")
                except LatnasError as exc:
                    raise DataError(f"score table {path} line {line}: {exc}") from None
                try:
                    value = float(row[column])
                except (TypeError, ValueError):
                    raise DataError(f"score table {path} line {line}: {column} {row[column]!r} is not a number") from None
                if not math.isfinite(value):
                    raise DataError(f"score table {path} line {line}: {column} is {value} for arch {row[arch_column]}")
                if arch in table:
                    raise DataError(f"score table {path} line {line}: arch {space.format_arch(arch)} is listed twice")
                table[arch] = value
        except csv.Error as exc:
            raise DataError(f"score table {path} is not valid CSV: {exc}") from None
    if not table:
        raise DataError(f"score table {path} has no rows")
    return table


class TableScorer:
    """Scores looked up in a loaded table; an arch it lacks raises DataError."""

    def __init__(self, space: SearchSpace, table: dict[Arch, float], source: str = ""):
        self.space = space
        self.table = table
        self.source = source

    def __call__(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.empty(len(archs), dtype=np.float64)
        for i, arch in enumerate(archs):
            key = self.space.parse_arch(tuple(int(v) for v in arch))
            try:
                out[i] = self.table[key]
            except KeyError:
                raise DataError(f"arch {self.space.format_arch(key)} is not in score table {self.source}") from None
        return out


@register_scorer("table")
def table_scorer(config: ScorerConfig) -> Scorer:
    if not config.table or not config.column:
        raise DataError("scorer table needs a CSV (--score-table) and a score column (--score-column)")
    table = load_score_table(config.space, config.table, config.column, config.arch_column)
    return TableScorer(config.space, table, str(config.table))
