"""HourNAS (Yang et al., CVPR 2021) as an :class:`Algorithm` (algo ``"hournas"``).

1. **Vital blocks first.** A block is *vital* when no shortcut runs around
   it (:func:`vital_layers`): in a chain space, the layers that change shape
   (stride 2 or a channel change: no residual is possible there); the
   fixed stem and head are vital too but not searched. They may not pick
   ``skip``. The other layers are fixed to their identity (``skip``) when
   they have one, else to their cheapest choice, which leaves the paper's
   small "vital-block" supernet; it is searched by evolution under a share of
   the budget's slack (``vital_share``). NAS-Bench-201 has no vital edge: in
   its cell every edge has a parallel path around it (node 3 sums edges from
   nodes 0, 1 and 2), so the only vital blocks are the fixed stem,
   reductions and classifier and this phase is skipped.
2. **Shrink the rest.** With the vital layers fixed to the winner's choices,
   the non-vital choices are pruned (:func:`shrink_to_share`): first those no
   completion can afford, then, greedily, the most expensive remaining
   choice of a layer (never the best arch's choice) until at least
   ``target_share`` (0.9) of archs drawn uniformly from the shrunk space meet
   the budget. The best arch found so far stays inside.
3. **Search the shrunk space**: evolution (NSGA-II) from the phase-1 winner.

With a one-shot scorer (``--score supernet``: any scorer with ``fit(mask)``)
the supernet is trained on the vital-block space before phase 1 and on the
shrunk space before phase 3 (weights carried over), and the result is the
front of the archs scored by the phase-3 supernet. Any other scorer scores
every phase directly. The problem owns the budget; phase 1's tighter bound is
a per-phase ``limit``. Resumable. Options: :class:`HourNAS.Options`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from latnas.schema.latency_table import LatencyTable
from latnas.search.algorithm import Algorithm, register_algorithm
from latnas.search.evolution import evolve, result_from, space_size
from latnas.search.supernet import identity_choice
from latnas.schema.spaces.base import Arch, SearchSpace

IDENTITY_OPS = ("skip", "zero")


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
    the table's correction is monotone). The cheapest choice of every layer is
    always kept, so no layer is ever left empty.
    """
    mask = np.asarray(mask, dtype=bool)
    lat = completion_latency(table, mask)
    keep = mask & (lat <= budget * (1 + 1e-12) + 1e-12)
    cheapest = cheapest_choices(table, mask)
    keep[np.arange(mask.shape[0]), cheapest] = True
    return keep


# ------------------------------------------------------------ vital blocks
def vital_layers(space: SearchSpace) -> list[int]:
    """Searchable layers with no shortcut around them (HourNAS's vital blocks); see the module docstring."""
    from latnas.schema.spaces.nb201 import NB201Space

    if isinstance(space, NB201Space):
        return []  # every cell edge has a parallel path: no searchable edge is vital
    return [s.index for s in space.layers if s.stride != 1 or s.cin != s.cout]


def vital_space_mask(space: SearchSpace, table: LatencyTable, vital: Sequence[int], identity: bool = True) -> np.ndarray:
    """Phase-1 mask: vital layers without identity-like ops, every other layer fixed (identity if ``identity``
    and the layer has one, else its cheapest choice)."""
    full = space.allowed_mask()
    mask = np.zeros_like(full)
    cheapest = cheapest_choices(table, full)
    for layer in range(space.n_layers):
        if layer in vital:
            row = full[layer].copy()
            for c in np.flatnonzero(row):
                if space.choices[c].op in IDENTITY_OPS:
                    row[c] = False
            mask[layer] = row if row.any() else full[layer]
        else:
            ident = identity_choice(space, layer)
            mask[layer, cheapest[layer] if ident is None or not identity else ident] = True
    return mask


def _min_latency(table: LatencyTable, mask: np.ndarray) -> float:
    return float(table.predict(cheapest_choices(table, mask)[None])[0])


# ------------------------------------------------------------------ shrink
def _uniform_from(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Archs from uniform numbers ``u`` (n, n_layers) in [0, 1): each layer's allowed choice at ``floor(u * k)``."""
    out = np.empty(u.shape, dtype=np.int64)
    for layer, row in enumerate(np.asarray(mask, dtype=bool)):
        allowed = np.flatnonzero(row)
        out[:, layer] = allowed[np.minimum((u[:, layer] * len(allowed)).astype(np.int64), len(allowed) - 1)]
    return out


def feasible_share(table: LatencyTable, mask: np.ndarray, budget: float, n: int = 10000, seed: int = 0) -> float:
    """Share of ``n`` archs drawn uniformly from ``mask`` whose latency meets ``budget``."""
    u = np.random.default_rng(seed).random((int(n), mask.shape[0]))
    return float(np.mean(table.predict(_uniform_from(mask, u)) <= budget))


def shrink_to_share(table: LatencyTable, mask: np.ndarray, budget: float, keep: Arch | None = None,
                    target: float = 0.9, n_samples: int = 2000, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Shrink ``mask`` until ``target`` of its uniform samples meet ``budget``, never dropping ``keep``'s choices.

    Unaffordable choices go first (:func:`shrink_mask`); then each step drops,
    from the layer where it stands furthest above the layer's mean kept cost,
    the most expensive kept choice. Common random numbers make the share
    estimate of successive masks comparable. Returns the mask and the steps.
    """
    mask = shrink_mask(table, mask, budget)
    rows = np.arange(mask.shape[0])
    if keep is not None:
        mask[rows, list(keep)] = True
    cost = np.where(np.isnan(table.table), np.inf, table.table)
    u = np.random.default_rng(seed).random((int(n_samples), mask.shape[0]))
    steps: list[dict] = []
    while True:
        share = float(np.mean(table.predict(_uniform_from(mask, u)) <= budget))
        if share >= target:
            break
        best = None
        for layer in range(mask.shape[0]):
            kept = np.flatnonzero(mask[layer])
            if len(kept) < 2:
                continue
            cand = [c for c in kept if keep is None or c != keep[layer]]
            if not cand:
                continue
            c = max(cand, key=lambda k: cost[layer, k])
            excess = cost[layer, c] - float(np.mean(cost[layer, kept]))
            if best is None or excess > best[0]:
                best = (excess, layer, int(c))
        if best is None:
            break
        _, layer, c = best
        mask[layer, c] = False
        steps.append({"layer": layer, "dropped": c, "share_before": share})
    return mask, steps


@register_algorithm("hournas")
class HourNAS(Algorithm):
    """Vital blocks first, then the rest in a space shrunk to what the budget affords; resumable."""

    supports_resume = True

    @dataclass
    class Options:
        vital_share: float = 0.5  # share of (budget - min latency) the vital layers may use in phase 1
        phase1_evals: float = 0.3  # share of the evaluations spent in phase 1
        pop_size: int | None = None
        target_share: float = 0.9  # share of uniform samples of the shrunk space that must meet the budget
        shrink_samples: int = 2000  # uniform samples estimating that share while shrinking
        vital_epochs: int | None = None  # one-shot scorer: epochs on the vital-block supernet (None: its default)
        epochs: int | None = None  # one-shot scorer: epochs on the shrunk space (None: its default)

    def _steps(self):
        from latnas.search.oneshot.scorer import is_supernet

        t0 = time.perf_counter()
        problem, space, table, evaluator, ckpt = self.run_state()
        opt = self.options
        oneshot = is_supernet(problem.scorer)
        full = space.allowed_mask()
        vital = vital_layers(space)
        min_arch, min_lat = table.min_arch()
        budget = None if problem.budget is None else problem.budget.value
        history: list[dict[str, Any]] = []

        # ---- phase 1: the vital blocks, the rest fixed (identity where it exists)
        winner: Arch | None = None
        vital_budget = None if budget is None else min_lat + float(opt.vital_share) * (budget - min_lat)
        if vital:
            mask1 = vital_space_mask(space, table, vital)
            if vital_budget is not None and _min_latency(table, mask1) > vital_budget:
                mask1 = vital_space_mask(space, table, vital, identity=False)  # identities too slow on this table
            if vital_budget is not None:
                mask1 = shrink_mask(table, mask1, vital_budget)
            if oneshot:
                problem.scorer.fit(mask1, epochs=opt.vital_epochs)
            evaluator.limit = vital_budget
            stop1 = max(1, int(round(float(opt.phase1_evals) * self.n_evals)))
            history += yield from evolve(self, evaluator, mask1, stop_at=stop1, pop_size=opt.pop_size,
                                         phase="hournas-vital", checkpoint=ckpt)
            evaluator.limit = None
            winner, _ = evaluator.best()
            if winner is None:  # nothing scorable within the vital budget: the cheapest arch of that space
                winner = tuple(int(v) for v in cheapest_choices(table, mask1))
                if budget is not None and _min_latency(table, full) <= budget < table.predict(np.array([winner]))[0]:
                    winner = tuple(int(v) for v in min_arch)
        else:
            history.append({"phase": "hournas-vital", "evals": 0, "skipped": "no searchable vital layer"})
        phase1 = set(evaluator.cache)
        vital_choice = {l: int(winner[l]) for l in vital} if winner is not None else {}

        # ---- phase 2: fix the vital layers, shrink the rest until the budget is met by target_share
        mask2 = full.copy()
        for l, c in vital_choice.items():
            mask2[l] = False
            mask2[l, c] = True
        size_before = space_size(mask2)
        share_before = share = None
        if budget is not None:
            share_before = feasible_share(table, mask2, budget, seed=self.seed + 101)
            mask2, _ = shrink_to_share(table, mask2, budget, keep=winner, target=float(opt.target_share),
                                       n_samples=int(opt.shrink_samples), seed=self.seed)
            share = feasible_share(table, mask2, budget, seed=self.seed + 101)  # fresh sample, not the one shrunk on
        kept = mask2.sum(axis=1)
        shrink = {
            "phase": "hournas-shrink",
            "evals": evaluator.n_evals,
            "vital_choice": {str(k): v for k, v in vital_choice.items()},
            "kept_per_layer": [int(k) for k in kept],
            "space_size_before": size_before,
            "space_size": space_size(mask2),
            "feasible_share_before": share_before,
            "feasible_share": share,
        }
        history.append(shrink)

        # ---- phase 3: (train the supernet on the shrunk space and) search it
        if oneshot:
            problem.scorer.fit(mask2, epochs=opt.epochs)
        history += yield from evolve(self, evaluator, mask2, stop_at=self.n_evals,
                                     initial=[winner] if winner is not None else [], pop_size=opt.pop_size,
                                     phase="hournas-rest", checkpoint=ckpt, seed=self.seed + 1)
        extra = {
            "vital_layers": vital,
            "vital_choice": {str(k): v for k, v in vital_choice.items()},
            "vital_budget": vital_budget,
            "kept_per_layer": [int(k) for k in kept],
            "shrunk_space_size": space_size(mask2),
            "feasible_share": share,
            "one_shot": oneshot,
        }
        if oneshot:
            extra["supernet_fits"] = list(getattr(problem.scorer, "fits", []))
        result = result_from(self.name, evaluator, history, t0, extra)
        return restricted_result(result, evaluator, mask2, exclude=phase1 if oneshot else set())


def restricted_result(result: Any, evaluator: Any, mask: np.ndarray, exclude: set) -> Any:
    """The result's front taken over the archs inside ``mask`` (and not in ``exclude``, when any remain)."""
    archs, scores, lat = evaluator.archive()
    keep = [i for i, a in enumerate(archs) if mask[np.arange(len(a)), list(a)].all() and a not in exclude]
    if not keep:
        return result
    from latnas.search.problem import pareto_indices

    idx = [keep[i] for i in pareto_indices(scores[keep], lat[keep])]
    idx.sort(key=lambda i: (-scores[i], lat[i]))
    return dataclasses.replace(result, archs=[archs[i] for i in idx], scores=[float(scores[i]) for i in idx],
                               predicted=[float(lat[i]) for i in idx])
