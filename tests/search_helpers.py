"""Helpers shared by the search tests: synthetic latency tables and cheap scorers."""
from __future__ import annotations

import numpy as np

from latnas.schema.latency_table import LatencyTable


def synthetic_table(space, seed: int = 0, knots: bool = True, unit: str = "ms", device: str = "onnxruntime-cpu-test") -> LatencyTable:
    """A random per-layer ms table for ``space`` (NaN where not allowed), optionally with a monotone correction."""
    rng = np.random.default_rng(seed)
    table = rng.uniform(0.02, 0.6, size=(space.n_layers, space.n_choices))
    table[~space.allowed_mask()] = np.nan
    kx = ky = None
    if knots:
        lo = float(np.nansum(np.nanmin(table, axis=1)))
        hi = float(np.nansum(np.nanmax(table, axis=1)))
        kx = np.linspace(lo, hi, 5)
        ky = 0.3 + kx * np.array([0.9, 0.95, 1.0, 1.1, 1.2])  # monotone, non-linear
    return LatencyTable(space=space.name, table=table, offset=0.3, knots_x=kx, knots_y=ky, unit=unit, device=device)


class CountingScorer:
    """Deterministic synthetic accuracy: grows with cost, plus a fixed per-arch jitter. Counts calls."""

    def __init__(self, table: LatencyTable, fail_after: int | None = None):
        self.table = table
        self.calls = 0
        self.fail_after = fail_after
        scale = float(np.nansum(np.nanmax(table.table, axis=1)))
        self.scale = scale

    def __call__(self, archs):
        out = []
        for a in archs:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("simulated interruption")
            self.calls += 1
            arr = np.asarray(a, dtype=np.int64)
            base = 1 - np.exp(-2.0 * self.table.block_sum(arr[None])[0] / self.scale)
            jitter = ((int(arr @ np.arange(1, len(arr) + 1)) * 2654435761) % 1000) / 1e5
            out.append(float(base + jitter))
        return np.array(out)
