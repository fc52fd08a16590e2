"""Budget-aware candidates: every arch drawn is within the bound, and every algorithm only spends scores on such archs."""
from __future__ import annotations

import numpy as np
import pytest

from latnas.search import ALGORITHMS, Budget, SearchProblem, Termination, minimize
from latnas.search.candidates import (
    all_archs, cheapest_arch, feasible_archs, feasible_pool, fill_archs, space_size,
)
from latnas.search.problem import ArchEvaluator
from latnas.schema.spaces import get_space

from search_helpers import CountingScorer, synthetic_table


class RecordingScorer(CountingScorer):
    """CountingScorer that keeps every arch it was asked to score."""

    def __init__(self, table):
        super().__init__(table)
        self.asked: list[tuple[int, ...]] = []

    def __call__(self, archs):
        self.asked += [tuple(int(v) for v in a) for a in archs]
        return super().__call__(archs)


def _evaluator(space_name: str, factor: float, seed: int = 0):
    space = get_space(space_name)
    table = synthetic_table(space, seed=seed)
    budget = Budget(round(table.min_arch()[1] * factor, 4), "ms")
    scorer = RecordingScorer(table)
    problem = SearchProblem(space, table, scorer, budget=budget)
    return ArchEvaluator(problem, max_evals=50), table, budget, scorer


def test_tight_budget_on_huge_space_draws_only_feasible_archs():
    # FBNet has 9^22 archs; at 1.2x the fastest, uniform draws essentially never meet the budget
    ev, table, budget, _ = _evaluator("fbnet", 1.2)
    assert feasible_pool(ev) is None
    rng = np.random.default_rng(0)
    uniform = np.stack([rng.choice(np.flatnonzero(r), size=2000) for r in ev.space.allowed_mask()], axis=1)
    assert ev.feasible(ev.latency(uniform)).mean() < 0.01
    archs = feasible_archs(ev, None, 20, np.random.default_rng(1))
    assert len(set(archs)) == 20
    assert np.all(table.predict(np.asarray(archs)) <= budget.value)


def test_fill_starts_at_the_cheapest_and_refuses_impossible_bounds():
    ev, table, _, _ = _evaluator("fbnet", 1.5)
    mask = ev.space.allowed_mask()
    np.testing.assert_array_equal(cheapest_arch(ev, mask), table.min_arch()[0])
    archs = fill_archs(ev, mask, 10, np.random.default_rng(0))
    assert len(archs) == 10 and ev.feasible(ev.latency(np.asarray(archs))).all()
    ev.limit = table.min_arch()[1] * 0.5  # tighter than the fastest arch: nothing is feasible
    assert fill_archs(ev, mask, 5, np.random.default_rng(0)) == []


def test_pool_is_exactly_the_feasible_set_of_a_small_space():
    ev, table, budget, _ = _evaluator("nb201", 2.0)
    mask = ev.space.allowed_mask()
    assert space_size(mask) == 15625
    every = all_archs(mask)
    pool = feasible_pool(ev)
    assert 0 < len(pool) < len(every)
    assert len(pool) == int((table.predict(every) <= budget.value).sum())
    drawn = feasible_archs(ev, None, 30, np.random.default_rng(0), exclude=[tuple(pool[0])])
    assert tuple(pool[0]) not in drawn and all(table.predict(np.asarray(drawn)) <= budget.value)


POOL_ALGOS = ["nsga2", "rea", "random", "bananas", "hournas", "nse"]


@pytest.mark.parametrize("algo", POOL_ALGOS)
@pytest.mark.parametrize("space_name,factor", [("fbnet", 1.3), ("nb201", 1.6)])
def test_no_algorithm_scores_an_infeasible_arch(algo, space_name, factor):
    space = get_space(space_name)
    table = synthetic_table(space, seed=3)
    budget = Budget(round(table.min_arch()[1] * factor, 4), "ms")
    scorer = RecordingScorer(table)
    problem = SearchProblem(space, table, scorer, budget=budget)
    options = {"n_estimators": 20, "ensemble": 2, "proxies": "none"} if algo == "bananas" else None
    result = minimize(problem, ALGORITHMS.get(algo)(options, seed=0), Termination(24))
    assert scorer.asked, f"{algo} scored nothing under a tight budget"
    assert len(scorer.asked) == len(set(scorer.asked)) <= 24  # each arch scored once, within the count
    assert np.all(table.predict(np.asarray(scorer.asked)) <= budget.value)
    assert result.evals == len(scorer.asked) and result.archs
    assert np.all(np.asarray(result.predicted) <= budget.value)
