"""The evolutionary engine shared by NSGA-II, HourNAS and NSE.

``evolve(algo, evaluator, mask, ...)`` is a generator for an algorithm's
``_steps``: it runs pymoo's NSGA-II with ask/tell inside a choice mask,
yields the archs of each generation that need a score (``yield from``), and
stops once the evaluator holds ``stop_at`` scores; it checkpoints and reports
progress each generation. ``result_from(...)`` turns the evaluator's archive
into a :class:`SearchResult`.
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Generator, Iterable

import numpy as np

from latnas.search.base import SearchResult
from latnas.search.checkpoint import Checkpointer
from latnas.search.candidates import all_archs as _all_archs
from latnas.search.candidates import feasible_archs, space_size
from latnas.search.problem import ArchEvaluator, ArchProblem, repair_to_mask
from latnas.schema.spaces.base import Arch

if TYPE_CHECKING:
    from latnas.search.algorithm import Algorithm

log = logging.getLogger(__name__)

Steps = Generator[list[Arch], np.ndarray, list[dict[str, Any]]]




def evolve(
    algo: "Algorithm",
    evaluator: ArchEvaluator,
    mask: np.ndarray | None = None,
    *,
    stop_at: int | None = None,
    pop_size: int | None = None,
    seed: int | None = None,
    initial: Iterable[Arch] = (),
    max_gen: int | None = None,
    phase: str = "",
    checkpoint: Checkpointer | None = None,
) -> Steps:
    """Run NSGA-II inside ``mask`` until ``evaluator.n_evals`` reaches ``stop_at`` (a generator).

    ``initial`` archs (repaired into the mask) seed the first population; the
    rest is drawn uniformly from the mask. A mask whose whole space fits in the
    remaining evaluations is enumerated instead. Returns per-generation notes.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair

    from latnas.search.algorithm import score_with
    from latnas.search.problem import AllowedChoiceRepair

    problem = ArchProblem(evaluator, mask)
    mask = problem.mask
    stop_at = evaluator.max_evals if stop_at is None else min(int(stop_at), evaluator.max_evals)
    seed = algo.seed if seed is None else seed
    space, unit = evaluator.space, evaluator.problem.unit
    history: list[dict[str, Any]] = []

    def note(gen: int, population: np.ndarray) -> None:
        arch, score = evaluator.best()
        lat = evaluator.latency(population) if len(population) else np.zeros(0)
        feas = float(np.mean(evaluator.feasible(lat))) if len(lat) else 0.0
        pop_scores = [evaluator.cache[a] for a in map(tuple, population.tolist()) if a in evaluator.cache]
        row = {
            "phase": phase,
            "generation": gen,
            "evals": evaluator.n_evals,
            "best_score": None if arch is None else float(score),
            "best_latency": None if arch is None else float(evaluator.latency_of[arch]),
            "feasible_share": feas,
            "population_best": max(pop_scores) if pop_scores else None,
            "space_size": space_size(mask),
        }
        history.append(row)
        if checkpoint is not None:
            checkpoint.save(evaluator, {"phase": phase, "generation": gen, "population": [space.format_arch(a) for a in population]})
        if algo.progress is not None:
            best = "-" if arch is None else f"{score:.3f} @ {row['best_latency']:.3g} {unit}"
            algo.progress(evaluator.n_evals, evaluator.max_evals, f"{phase or 'search'} gen {gen}: best {best}")

    if evaluator.n_evals >= stop_at:
        return history
    budget_here = stop_at - evaluator.n_evals
    size = space_size(mask)
    if size <= max(budget_here, 1) and size <= 4096:
        everything = _all_archs(mask)
        yield from score_with(evaluator, everything)
        note(0, everything)
        return history

    rng = np.random.default_rng(seed)
    pop_size = int(pop_size or max(8, min(50, evaluator.max_evals // 5)))
    pop_size = max(4, min(pop_size, budget_here, size))
    seeds: list[Arch] = []
    initial = list(initial)
    if initial:
        fixed = repair_to_mask(np.asarray(list(initial), dtype=np.int64), mask, problem.lookup)
        for row in fixed:
            a = tuple(int(v) for v in row)
            if a not in seeds:
                seeds.append(a)
        seeds = seeds[:pop_size]
    seeds += feasible_archs(evaluator, mask, pop_size - len(seeds), rng, exclude=seeds)  # budget-aware start
    X0 = np.asarray(seeds, dtype=np.int64)

    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=X0,
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()),
        repair=AllowedChoiceRepair(),
        eliminate_duplicates=True,
    )
    if max_gen is None:
        max_gen = 20 + 10 * math.ceil(budget_here / pop_size)
    algorithm.setup(problem, termination=("n_gen", max_gen), seed=int(seed), verbose=False)
    gen = 0
    while algorithm.has_next() and evaluator.n_evals < stop_at:
        if gen > 0:
            algorithm.n_offsprings = max(1, min(pop_size, stop_at - evaluator.n_evals))
        pop = algorithm.ask()
        if pop is None or len(pop) == 0:
            break
        yield from score_with(evaluator, repair_to_mask(pop.get("X"), mask, problem.lookup))
        algorithm.evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
        population = repair_to_mask(algorithm.pop.get("X"), mask, problem.lookup)
        note(gen, population)
        gen += 1
    return history


def result_from(
    algo: str,
    evaluator: ArchEvaluator,
    history: list[dict[str, Any]],
    t0: float,
    extra: dict[str, Any] | None = None,
) -> SearchResult:
    """The Pareto front of every scored arch, best score first."""
    archs, scores, lat = evaluator.front()
    every, every_scores, every_lat = evaluator.archive()
    archive = [[evaluator.space.format_arch(a), float(s), float(l)] for a, s, l in zip(every, every_scores, every_lat)]
    return SearchResult(
        algo=algo,
        archs=[tuple(int(v) for v in a) for a in archs],
        predicted=[float(v) for v in lat],
        scores=[float(v) for v in scores],
        evals=evaluator.n_evals,
        wall_s=time.perf_counter() - t0,
        history=history,
        extra={"scorer_calls": evaluator.scorer_calls, "archive": archive, **(extra or {})},
    )
