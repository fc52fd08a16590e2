"""Neighbourhood-growing search (algo ``"nse"``), after NSE (Ci et al.).

Start from a small subset of candidate ops per layer (``init_size``, default
2: the cheapest choice plus random others), search it with NSGA-II, then grow
each layer's subset with the ``grow`` untried choices nearest in cost to the
best arch's choice there (its neighbourhood), and search again, seeding the
population with the best archs found so far so each round inherits what the
previous one learned. Subset sizes per round are recorded in ``history``.
Works on any space, multi-branch candidates included.

Options: :class:`NSE.Options`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from latnas.latency_table import LatencyTable
from latnas.search.algorithm import Algorithm, register_algorithm
from latnas.search.evolution import evolve, result_from, space_size
from latnas.search.hournas import cheapest_choices
from latnas.spaces.base import Arch


def initial_subset(table: LatencyTable, allowed: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Per layer: the cheapest allowed choice plus ``size - 1`` random allowed ones."""
    allowed = np.asarray(allowed, dtype=bool)
    subset = np.zeros_like(allowed)
    cheapest = cheapest_choices(table, allowed)
    for l in range(allowed.shape[0]):
        subset[l, cheapest[l]] = True
        others = [c for c in np.flatnonzero(allowed[l]) if c != cheapest[l]]
        take = min(max(0, size - 1), len(others))
        if take:
            subset[l, rng.choice(others, size=take, replace=False)] = True
    return subset


def grow_subset(table: LatencyTable, allowed: np.ndarray, subset: np.ndarray, best: Arch, grow: int) -> np.ndarray:
    """Add to each layer the ``grow`` untried allowed choices nearest in cost to ``best``'s choice there."""
    allowed = np.asarray(allowed, dtype=bool)
    out = np.asarray(subset, dtype=bool).copy()
    cost = np.where(np.isnan(table.table), np.inf, table.table)
    for l in range(allowed.shape[0]):
        untried = np.flatnonzero(allowed[l] & ~out[l])
        if untried.size == 0:
            continue
        ref = cost[l, best[l]]
        order = untried[np.argsort(np.abs(cost[l, untried] - ref), kind="stable")]
        out[l, order[:grow]] = True
    return out


def _elite(evaluator, n: int) -> list[Arch]:
    """The front first, then the best remaining scores: the population a new round inherits."""
    front, _, _ = evaluator.front()
    archs, scores, _ = evaluator.archive()
    rest = [archs[i] for i in np.argsort(-scores, kind="stable") if archs[i] not in front]
    return [*front, *rest][:n]


@register_algorithm("nse")
class NSE(Algorithm):
    """Rounds of NSGA-II in growing per-layer op subsets; resumable."""

    supports_resume = True

    @dataclass
    class Options:
        rounds: int = 4  # search rounds; the subsets grow between rounds
        init_size: int = 2  # choices per layer in the first round (cheapest + random)
        grow: int = 2  # choices added per layer after each round
        pop_size: int | None = None  # None: evals // (2 * rounds), clipped to [8, 50]

    def _steps(self):
        t0 = time.perf_counter()
        space, table = self.problem.space, self.problem.latency_table
        evaluator, ckpt = self.evaluator()
        opt = self.options
        rng = np.random.default_rng(self.seed)
        rounds = max(1, int(opt.rounds))
        grow = max(1, int(opt.grow))
        pop_size = int(opt.pop_size or max(8, min(50, self.n_evals // (2 * rounds))))
        allowed = space.allowed_mask()
        subset = initial_subset(table, allowed, int(opt.init_size), rng)
        history: list[dict[str, Any]] = []
        rounds_info: list[dict[str, Any]] = []
        inherited: list[Arch] = []
        for r in range(rounds):
            stop = int(round(self.n_evals * (r + 1) / rounds))
            gens = yield from evolve(
                self, evaluator, subset, stop_at=stop, pop_size=pop_size, initial=inherited,
                phase=f"nse-round{r}", checkpoint=ckpt, seed=self.seed + r,
            )
            history += gens
            best, best_score = evaluator.best()
            last = gens[-1] if gens else {}
            info = {
                "phase": f"nse-round{r}",
                "round": r,
                "evals": evaluator.n_evals,
                "subset_sizes": [int(v) for v in subset.sum(axis=1)],
                "subset_total": int(subset.sum()),
                "space_size": space_size(subset),
                "best_score": None if best is None else float(best_score),
                "population_best": last.get("population_best"),
                "inherited": len(inherited),
            }
            rounds_info.append(info)
            history.append(info)
            inherited = _elite(evaluator, pop_size)
            if best is None:  # nothing feasible scored yet: grow around the cheapest arch
                best = tuple(int(v) for v in cheapest_choices(table, subset))
            if r < rounds - 1:
                subset = grow_subset(table, allowed, subset, best, grow)
        return result_from(self.name, evaluator, history, t0, {"rounds": rounds_info})
