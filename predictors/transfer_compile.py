"""Compile a fitted :class:`~predictors.transfer.TransferPredictor` into a LatencyTable.

A LatencyTable is additive over layers with a monotone correction. The
transfer model is additive except for two things the table cannot hold
exactly: its floor (a positive minimum, held exactly by a flat first segment
of the correction knots) and, on cell spaces, live/dead views (whether an op
counts depends on the other edges). When the additive form reproduces the
model on every checked arch the table is exact; otherwise the table is the
relative-error least-squares additive fit to the model's predictions on the
space's archs (all of them when there are at most ``ENUMERATE_MAX``, else
``SAMPLE`` random ones), and ``meta["additive_projection"]`` records how far
it is (median and max relative difference): search then ranks by that table
and verified profiling (``--profile-top``) measures the winners.
"""
from __future__ import annotations

import itertools

import numpy as np

ENUMERATE_MAX = 200_000
SAMPLE = 20_000


def check_archs(space) -> np.ndarray:
    """Every arch of a small space, else a fixed random sample of archs."""
    if space.size() <= ENUMERATE_MAX:
        return np.array(list(itertools.product(*[slot.allowed for slot in space.layers])), dtype=np.int64)
    return np.array(space.random_archs(SAMPLE, 0, unique=False), dtype=np.int64)


def floored_table(space, table: np.ndarray, offset: float, floor: float, meta: dict):
    """``max(sum + offset, floor)`` as a LatencyTable: knots with a flat first segment."""
    from latnas.schema.latency_table import LatencyTable
    from predictors.compile import linear_table

    t = np.where(space.allowed_mask(), table, np.nan)
    lo, hi = float(np.nansum(np.nanmin(t, axis=1))), float(np.nansum(np.nanmax(t, axis=1)))
    x0, x2 = lo - 1.0, hi + 1.0
    x1 = floor - offset  # where sum + offset reaches the floor
    if x1 <= x0 or floor <= 0:
        return linear_table(space, table, offset, meta)
    if x1 >= x2:
        kx, ky = [x0, x2], [floor, floor]
    else:
        kx, ky = [x0, x1, x2], [floor, floor, x2 + offset]
    return LatencyTable(space=space.name, table=t, knots_x=np.array(kx), knots_y=np.array(ky),
                        meta={**meta, "table_values": "ms", "correction": f"floor at {floor:.6g} ms"})


def compile_transfer(model, space):
    """The model's LatencyTable (exact when additive, else its additive projection; see module docstring)."""
    from predictors.features import onehot
    from predictors.linear import relative_scale

    coef, b = model.effective_linear()
    floor = float(getattr(model, "floor_", 0.0)) if model.method == "robust" else 0.0
    meta = {"predictor": type(model).__name__}
    archs = check_archs(space)
    want = model.predict(archs)
    x = onehot(archs, space.n_layers, space.n_choices)
    got = np.maximum(x @ coef + b, floor) if floor > 0 else x @ coef + b
    scale = np.maximum(np.abs(want), 1e-12)
    if np.max(np.abs(got - want) / scale) > 1e-9:
        # relative least squares over the archs with a live path: a cut-off arch (its output a
        # constant, folded to µs by some runtimes) is no candidate of any search and must not decide it
        fit = ~space.cut_off(archs)
        w = 1.0 / relative_scale(want[fit])
        design = np.column_stack([x[fit], np.ones(int(fit.sum()))]) * w[:, None]
        sol, *_ = np.linalg.lstsq(design, want[fit] * w, rcond=None)
        coef, b = sol[:-1], float(sol[-1])
        got = np.maximum(x @ coef + b, floor) if floor > 0 else x @ coef + b
        rel = np.abs(got / scale - 1.0)[fit]
        meta["additive_projection"] = {"archs": int(fit.sum()), "median_rel_diff": float(np.median(rel)),
                                       "max_rel_diff": float(np.max(rel)), "cut_off_archs_left_out": int((~fit).sum())}
    table = coef.reshape(space.n_layers, space.n_choices)
    return floored_table(space, table, b, floor, meta)
