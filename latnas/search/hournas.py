"""HourNAS-style two-phase search (algo ``"hournas"``).

Vital layers (``space.vital``: the first layer of each stage, which every
path goes through) decide most of the accuracy. Phase 1 searches only them,
with every other layer fixed to its cheapest choice, under a share of the
budget's slack (``vital_share``, default 0.5: the vital layers may use at most
half of ``budget - min_latency``). The best phase-1 arch fixes the vital
layers. Phase 2 shrinks every other layer to the choices still affordable
(:func:`shrink_mask`) and searches the rest inside that smaller space,
starting from the phase-1 winner.

Options: ``vital_share`` (0.5), ``phase1_evals`` (share of evaluations for
phase 1, 0.3), ``pop_size``.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from latnas.latency_table import LatencyTable
from latnas.search.base import SearchContext, SearchResult, register_algorithm
from latnas.search.evolution import evaluator_for, evolve, result_from, space_size


def _masked_cost(table: LatencyTable, mask: np.ndarray) -> np.ndarray:
    """Table entries where ``mask`` allows them, +inf elsewhere (and where the table has no entry)."""
    cost = np.where(np.asarray(mask, dtype=bool), table.table, np.inf)
    return np.where(np.isnan(cost), np.inf, cost)


def cheapest_choices(table: LatencyTable, mask: np.ndarray) -> np.ndarray:
    """Per layer, the allowed choice with the smallest table entry."""
    return np.argmin(_masked_cost(table, mask), axis=1)


def completion_latency(table: LatencyTable, mask: np.ndarray) -> np.ndarray:
    """(n_layers, n_choices): latency of putting choice c at layer l and the cheapest allowed choice elsewhere.

    ``inf`` where the choice is not in ``mask``.
    """
    cost = _masked_cost(table, mask)
    layer_min = cost.min(axis=1)
    total_min = layer_min.sum()
    sums = total_min - layer_min[:, None] + cost  # block sum of each one-layer deviation
    out = np.full(cost.shape, np.inf)
    finite = np.isfinite(sums)
    out[finite] = table.correct(sums[finite])
    return out


def shrink_mask(table: LatencyTable, mask: np.ndarray, budget: float) -> np.ndarray:
    """Keep, at each layer, only the choices that can still be completed within ``budget``.

    A choice is affordable at a layer when the arch taking it there and the
    cheapest allowed choice at every other layer meets the budget (exact, since
    the table's correction is monotone). Layers with one allowed choice (fixed
    layers) keep it. The cheapest choice of every layer is always kept, so no
    layer is ever left empty (even when nothing in ``mask`` meets the budget).
    """
    mask = np.asarray(mask, dtype=bool)
    lat = completion_latency(table, mask)
    keep = mask & (lat <= budget * (1 + 1e-12) + 1e-12)
    cheapest = cheapest_choices(table, mask)
    keep[np.arange(mask.shape[0]), cheapest] = True
    return keep


@register_algorithm("hournas")
def run_hournas(ctx: SearchContext) -> SearchResult:
    t0 = time.perf_counter()
    space, table = ctx.space, ctx.latency
    evaluator, ckpt = evaluator_for(ctx, "hournas")
    full = space.allowed_mask()
    vital = sorted(set(space.vital)) or [0]
    nonvital = [l for l in range(space.n_layers) if l not in vital]
    cheapest = cheapest_choices(table, full)
    min_arch, min_lat = table.min_arch()
    budget = ctx.budget
    share = float(ctx.options.get("vital_share", 0.5))
    phase1_share = float(ctx.options.get("phase1_evals", 0.3))
    history: list[dict[str, Any]] = []

    # ---- phase 1: vital layers only, the rest at their cheapest choice
    mask1 = full.copy()
    for l in nonvital:
        mask1[l] = False
        mask1[l, cheapest[l]] = True
    vital_budget = None if budget is None else min_lat + share * (budget - min_lat)
    if vital_budget is not None:
        mask1 = shrink_mask(table, mask1, vital_budget)
    evaluator.budget = vital_budget
    stop1 = max(1, int(round(phase1_share * ctx.evals)))
    history += evolve(ctx, evaluator, mask1, stop_at=stop1, phase="hournas-vital", checkpoint=ckpt)
    evaluator.budget = budget
    archs, scores, lat = evaluator.archive()
    if archs:
        winner = archs[int(np.argmax(scores))]
    else:  # nothing scorable within the vital budget: fall back to the cheapest arch
        winner = tuple(int(v) for v in min_arch)
    vital_choice = {l: int(winner[l]) for l in vital}

    # ---- phase 2: fix the vital layers, shrink the rest to what the budget affords
    mask2 = full.copy()
    for l in vital:
        mask2[l] = False
        mask2[l, vital_choice[l]] = True
    size_before = space_size(mask2)
    if budget is not None:
        mask2 = shrink_mask(table, mask2, budget)
    kept = mask2.sum(axis=1)
    history.append(
        {
            "phase": "hournas-shrink",
            "evals": evaluator.n_evals,
            "vital_choice": {str(k): v for k, v in vital_choice.items()},
            "kept_per_layer": [int(k) for k in kept],
            "space_size_before": size_before,
            "space_size": space_size(mask2),
        }
    )
    history += evolve(ctx, evaluator, mask2, stop_at=ctx.evals, initial=[winner], phase="hournas-rest", checkpoint=ckpt, seed=ctx.seed + 1)
    extra = {
        "vital_layers": vital,
        "vital_choice": {str(k): v for k, v in vital_choice.items()},
        "vital_budget": vital_budget,
        "kept_per_layer": [int(k) for k in kept],
        "shrunk_space_size": space_size(mask2),
    }
    return result_from("hournas", ctx, evaluator, history, t0, extra)
