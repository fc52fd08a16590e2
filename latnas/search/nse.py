"""Neural Search-space Evolution (Ci et al., ICCV 2021) as an :class:`Algorithm` (algo ``"nse"``).

The search keeps a bounded *subset* of each layer's choices and evolves it:

1. start from ``init_size`` choices per layer (the cheapest plus random others);
2. each round: train the supernet on the current subset (with a one-shot
   scorer: weights of surviving ops inherited from the previous round, ops
   that were dropped re-initialised), then search the subset by evolution
   (NSGA-II), its population seeded with the best archs so far;
3. prune the subset to an optimised one (:func:`prune_subset`): per layer
   the round's best arch's choice plus the ``keep - 1`` choices whose archs
   scored best on average this round; every other op is dropped;
4. add ``grow`` ops per layer never seen before (:func:`grow_subset`, the
   unseen ops nearest in cost to the best arch's choice), so the subset
   holds at most ``keep + grow`` choices per layer in every round after the first.

``multi_branch = k > 1`` is NSE's multi-branch setting: the supernet trains
paths with up to ``k`` ops active per layer (outputs averaged), and each
round also scores the multi-branch net of each layer's top-``k`` ops
(``rounds[i]["multi_branch_score"]``). Archs of these spaces hold one op per
layer, so the searched result stays single-path. Resumable.
Options: :class:`NSE.Options`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from latnas.schema.latency_table import LatencyTable
from latnas.search.algorithm import Algorithm, register_algorithm
from latnas.search.evolution import evolve, result_from, space_size
from latnas.search.hournas import cheapest_choices, restricted_result
from latnas.schema.spaces.base import Arch


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
    """Add to each layer the ``grow`` allowed choices outside ``subset`` nearest in cost to ``best``'s choice there.

    Pass the choices ever seen as ``subset`` to add only unseen ones.
    """
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


def op_importance(subset: np.ndarray, archs: Sequence[Arch], scores: np.ndarray) -> np.ndarray:
    """(n_layers, n_choices): mean score of the archs that use each choice (-inf where none did)."""
    subset = np.asarray(subset, dtype=bool)
    total = np.zeros(subset.shape)
    count = np.zeros(subset.shape)
    rows = np.arange(subset.shape[0])
    for a, s in zip(archs, np.asarray(scores, dtype=np.float64)):
        total[rows, list(a)] += s
        count[rows, list(a)] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        imp = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
    return np.where(subset, imp, -np.inf)


def prune_subset(subset: np.ndarray, importance: np.ndarray, best: Arch, keep: int) -> np.ndarray:
    """Per layer: ``best``'s choice plus the ``keep - 1`` most important other choices of ``subset``."""
    subset = np.asarray(subset, dtype=bool)
    out = np.zeros_like(subset)
    for l in range(subset.shape[0]):
        out[l, best[l]] = True
        others = [c for c in np.flatnonzero(subset[l]) if c != best[l]]
        others.sort(key=lambda c: -importance[l, c])  # stable: ties keep index order
        out[l, others[: max(0, keep - 1)]] = True
    return out


def _elite(evaluator, n: int) -> list[Arch]:
    """The front first, then the best remaining scores: the population a new round inherits."""
    front, _, _ = evaluator.front()
    archs, scores, _ = evaluator.archive()
    rest = [archs[i] for i in np.argsort(-scores, kind="stable") if archs[i] not in front]
    return [*front, *rest][:n]


@register_algorithm("nse")
class NSE(Algorithm):
    """Rounds of supernet training and evolution in a pruned-and-grown op subset; resumable."""

    supports_resume = True

    @dataclass
    class Options:
        rounds: int = 4  # search rounds
        init_size: int = 2  # choices per layer in the first round (cheapest + random)
        keep: int = 2  # choices per layer that survive a round's pruning (the best arch's included)
        grow: int = 2  # unseen choices added per layer after each round
        pop_size: int | None = None  # None: evals // (2 * rounds), clipped to [8, 50]
        multi_branch: int = 1  # >1: up to this many ops active per layer in the supernet (NSE's multi-branch)
        epochs: int | None = None  # one-shot scorer: supernet epochs per round (None: its default)

    def _steps(self):
        from latnas.search.oneshot.scorer import is_supernet

        t0 = time.perf_counter()
        problem, space, table, evaluator, ckpt = self.run_state()
        opt = self.options
        oneshot = is_supernet(problem.scorer)
        rng = np.random.default_rng(self.seed)
        rounds = max(1, int(opt.rounds))
        keep, grow, branches = max(1, int(opt.keep)), max(1, int(opt.grow)), max(1, int(opt.multi_branch))
        pop_size = int(opt.pop_size or max(8, min(50, self.n_evals // (2 * rounds))))
        allowed = space.allowed_mask()
        subset = initial_subset(table, allowed, int(opt.init_size), rng)
        seen = subset.copy()
        history: list[dict[str, Any]] = []
        rounds_info: list[dict[str, Any]] = []
        inherited: list[Arch] = []
        before_last: set = set()
        for r in range(rounds):
            if oneshot:
                problem.scorer.fit(subset, epochs=opt.epochs, multi_branch=branches, drop=r > 0)
            before = set(evaluator.cache)
            stop = int(round(self.n_evals * (r + 1) / rounds))
            gens = yield from evolve(
                self, evaluator, subset, stop_at=stop, pop_size=pop_size, initial=inherited,
                phase=f"nse-round{r}", checkpoint=ckpt, seed=self.seed + r,
            )
            history += gens
            before_last = before
            best, best_score = evaluator.best()
            fresh = [a for a in evaluator.cache if a not in before]
            pool = fresh or [a for a in evaluator.cache if subset[np.arange(len(a)), list(a)].all()]
            pool_scores = np.array([evaluator.cache[a] for a in pool])
            round_best = pool[int(np.argmax(pool_scores))] if pool else best
            last = gens[-1] if gens else {}
            info = {
                "phase": f"nse-round{r}",
                "round": r,
                "evals": evaluator.n_evals,
                "subset_sizes": [int(v) for v in subset.sum(axis=1)],
                "subset_total": int(subset.sum()),
                "space_size": space_size(subset),
                "best_score": None if best is None else float(best_score),
                "round_best": None if round_best is None else space.format_arch(round_best),
                "round_best_score": None if not pool else float(pool_scores.max()),
                "population_best": last.get("population_best"),
                "inherited": len(inherited),
            }
            if not oneshot and best is not None:
                round_best = best  # comparable scores across rounds: keep the overall best inside
            if round_best is None:  # nothing feasible scored yet: work around the cheapest arch
                round_best = tuple(int(v) for v in cheapest_choices(table, subset))
            importance = op_importance(subset, pool, pool_scores)
            if oneshot and branches > 1:
                path = [tuple(sorted({int(round_best[l]), *[int(c) for c in np.argsort(-importance[l])[:branches]
                                                           if subset[l, c] and np.isfinite(importance[l, c])]}))[:branches]
                        for l in range(space.n_layers)]
                info["multi_branch_path"] = [list(p) for p in path]
                info["multi_branch_score"] = float(problem.scorer.score_path(path))
            if r < rounds - 1:
                pruned = prune_subset(subset, importance, round_best, keep)
                added = grow_subset(table, allowed, seen, round_best, grow) & ~seen
                info["dropped"] = int((subset & ~pruned).sum())
                info["added"] = int(added.sum())
                subset = pruned | added
                seen |= added
            rounds_info.append(info)
            history.append(info)
            inherited = _elite(evaluator, pop_size)
        extra = {"rounds": rounds_info, "one_shot": oneshot}
        if oneshot:
            extra["supernet_fits"] = list(getattr(problem.scorer, "fits", []))
        result = result_from(self.name, evaluator, history, t0, extra)
        if not oneshot:
            return result
        return restricted_result(result, evaluator, subset, exclude=before_last)
