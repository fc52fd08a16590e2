"""HourNAS-style two-phase search (algo ``"hournas"``).

Vital layers (``space.vital``: the first layer of each stage, which every
path goes through) decide most of the accuracy. Phase 1 searches only them,
with every other layer fixed to its cheapest choice, under a share of the
budget's slack (``vital_share``, default 0.5: the vital layers may use at most
half of ``budget - min_latency``). The best phase-1 arch fixes the vital
layers. Phase 2 shrinks every other layer to the choices still affordable
(:func:`shrink_mask`) and searches the rest inside that smaller space,
starting from the phase-1 winner.

Phase 1's tighter bound is a per-phase ``limit`` on the run state (the
problem's budget is never changed). Options: :class:`HourNAS.Options`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from latnas.latency_table import LatencyTable
from latnas.search.algorithm import Algorithm, register_algorithm
from latnas.search.evolution import evolve, result_from, space_size


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
class HourNAS(Algorithm):
    """Vital layers first under a share of the slack, then the rest in a shrunk space; resumable."""

    supports_resume = True

    @dataclass
    class Options:
        vital_share: float = 0.5  # share of (budget - min latency) the vital layers may use in phase 1
        phase1_evals: float = 0.3  # share of the evaluations spent in phase 1
        pop_size: int | None = None

    def _steps(self):
        t0 = time.perf_counter()
        problem = self.problem
        space, table = problem.space, problem.latency_table
        evaluator, ckpt = self.evaluator()
        opt = self.options
        full = space.allowed_mask()
        vital = sorted(set(space.vital)) or [0]
        nonvital = [l for l in range(space.n_layers) if l not in vital]
        cheapest = cheapest_choices(table, full)
        min_arch, min_lat = table.min_arch()
        budget = None if problem.budget is None else problem.budget.value
        history: list[dict[str, Any]] = []

        # ---- phase 1: vital layers only, the rest at their cheapest choice
        mask1 = full.copy()
        for l in nonvital:
            mask1[l] = False
            mask1[l, cheapest[l]] = True
        vital_budget = None if budget is None else min_lat + float(opt.vital_share) * (budget - min_lat)
        if vital_budget is not None:
            mask1 = shrink_mask(table, mask1, vital_budget)
        evaluator.limit = vital_budget
        stop1 = max(1, int(round(float(opt.phase1_evals) * self.n_evals)))
        history += yield from evolve(self, evaluator, mask1, stop_at=stop1, pop_size=opt.pop_size,
                                     phase="hournas-vital", checkpoint=ckpt)
        evaluator.limit = None
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
        history += yield from evolve(self, evaluator, mask2, stop_at=self.n_evals, initial=[winner], pop_size=opt.pop_size,
                                     phase="hournas-rest", checkpoint=ckpt, seed=self.seed + 1)
        extra = {
            "vital_layers": vital,
            "vital_choice": {str(k): v for k, v in vital_choice.items()},
            "vital_budget": vital_budget,
            "kept_per_layer": [int(k) for k in kept],
            "shrunk_space_size": space_size(mask2),
        }
        return result_from(self.name, evaluator, history, t0, extra)
