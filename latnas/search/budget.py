"""The latency budget of a search: a typed value with its unit, parsed and checked once.

``Budget.parse("4.5ms")`` / ``Budget.parse("300MFLOPs")`` read what a user
types; :meth:`Budget.check` refuses a budget in the wrong unit for the latency
objective or below its cheapest reachable arch. The search problem
(:class:`latnas.search.problem.SearchProblem`) owns the budget and is the only
place that decides whether an arch meets it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from latnas.schema.errors import DataError
from latnas.schema.latency_table import LatencyTable
from latnas.schema.spaces.base import SearchSpace

UNITS = ("ms", "MFLOPs")

# suffix (lower case) -> (unit, scale to that unit)
_SUFFIXES = {
    "": ("ms", 1.0), "ms": ("ms", 1.0), "s": ("ms", 1e3), "us": ("ms", 1e-3), "µs": ("ms", 1e-3),
    "mflops": ("MFLOPs", 1.0), "mflop": ("MFLOPs", 1.0), "m": ("MFLOPs", 1.0),
    "gflops": ("MFLOPs", 1e3), "gflop": ("MFLOPs", 1e3), "g": ("MFLOPs", 1e3),
    "flops": ("MFLOPs", 1e-6), "kflops": ("MFLOPs", 1e-3),
}


def unit_kind(unit: str) -> str:
    """A latency table's unit as a budget unit: ``"MFLOPs"`` for any FLOP count, else ``"ms"``."""
    return "MFLOPs" if "flop" in str(unit).lower() else "ms"


@dataclass(frozen=True)
class Budget:
    """A positive, finite latency bound in ``unit`` (``"ms"`` or ``"MFLOPs"``)."""

    value: float
    unit: str = "ms"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise DataError(f"budget unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise DataError(f"budget must be a number, got {self.value!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise DataError(f"budget must be positive and finite, got {self.value!r} {self.unit}")
        object.__setattr__(self, "value", value)

    @classmethod
    def parse(cls, text: "str | float | Budget") -> "Budget":
        """``"4.5ms"``, ``"4.5"`` (ms), ``"4500us"``, ``"300MFLOPs"``, ``"0.3GFLOPs"`` -> Budget."""
        if isinstance(text, Budget):
            return text
        if isinstance(text, bool):
            raise DataError(f"cannot read budget {text!r}")
        if isinstance(text, (int, float)):
            return cls(float(text), "ms")
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*", str(text))
        if not m or m.group(2).lower() not in _SUFFIXES:
            raise DataError(f"cannot read budget {text!r}: use e.g. 4.5ms, 4.5 (ms) or 300MFLOPs")
        unit, scale = _SUFFIXES[m.group(2).lower()]
        value = float(m.group(1)) * scale
        if not math.isfinite(value) or value <= 0:
            raise DataError(f"budget must be positive and finite, got {text!r}")
        return cls(value, unit)

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"

    def with_margin(self, margin: float) -> "Budget":
        """The budget shrunk by a guard band ``margin`` in [0, 1) (absorbs predictor error)."""
        if not 0.0 <= float(margin) < 1.0:
            raise DataError(f"--margin must lie in [0, 1), got {margin}")
        return Budget(self.value * (1.0 - float(margin)), self.unit)

    def check(self, table: LatencyTable, space: SearchSpace) -> None:
        """Refuse a budget in another unit than ``table`` or below its cheapest reachable arch."""
        if self.unit != unit_kind(table.unit):
            hint = "e.g. 300MFLOPs" if self.unit == "ms" else "e.g. 4.5ms"
            raise DataError(f"budget {self} does not match the latency objective's unit {table.unit} ({hint})")
        arch, min_lat = table.min_arch()
        if self.value < min_lat:
            raise DataError(
                f"budget {self} is below the minimum reachable latency {min_lat:.4g} {table.unit} "
                f"(arch {space.format_arch(arch)}) of this predictor"
            )

    def admits(self, latency: np.ndarray) -> np.ndarray:
        """Elementwise: finite and within the budget."""
        lat = np.asarray(latency, dtype=np.float64)
        return np.isfinite(lat) & (lat <= self.value)


def parse_budget(text: "str | float | Budget | None") -> Budget | None:
    """:meth:`Budget.parse`, with ``None`` or an empty string meaning no budget."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    return Budget.parse(text)
