"""HourNAS shrink and search, NSE growth, checkpoint/resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from latnas.schema.errors import DataError
from latnas.search import Budget, SearchContext, run_algorithm
from latnas.search.checkpoint import CHECKPOINT_NAME
from latnas.search.hournas import cheapest_choices, shrink_mask
from latnas.search.nse import grow_subset, initial_subset
from latnas.schema.spaces import get_space

from search_helpers import CountingScorer, synthetic_table


@pytest.fixture(scope="module")
def fbnet():
    return get_space("fbnet")


def _completion(table, mask, layer, choice):
    arch = cheapest_choices(table, mask).copy()
    arch[layer] = choice
    return float(table.predict(arch[None])[0])


@pytest.mark.parametrize("space_name", ["fbnet", "proxyless"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shrink_keeps_exactly_the_completable_choices(space_name, seed):
    space = get_space(space_name)
    table = synthetic_table(space, seed=seed, knots=seed != 1)
    rng = np.random.default_rng(seed)
    mask = space.allowed_mask()
    for layer in space.vital:  # fix the vital layers at random allowed choices
        c = int(rng.choice(np.flatnonzero(mask[layer])))
        mask[layer] = False
        mask[layer, c] = True
    lo = float(table.predict(cheapest_choices(table, mask)[None])[0])
    for frac in (0.0, 0.05, 0.2, 0.6):
        budget = lo + frac * lo
        kept = shrink_mask(table, mask, budget)
        assert (kept <= mask).all()  # never adds a choice
        assert kept.any(axis=1).all()  # never empties a layer
        for layer in range(space.n_layers):
            for c in np.flatnonzero(mask[layer]):
                fits = _completion(table, mask, layer, c) <= budget + 1e-9
                if kept[layer, c] and mask[layer].sum() > 1 and c != cheapest_choices(table, mask)[layer]:
                    assert fits, (layer, c)  # every kept candidate can be completed within budget
                if fits:
                    assert kept[layer, c]  # ... and nothing completable is dropped
        if frac == 0.0:
            assert kept.sum() < mask.sum()  # a tight budget really shrinks the space


def test_shrink_never_empties_even_when_infeasible(fbnet):
    table = synthetic_table(fbnet)
    kept = shrink_mask(table, fbnet.allowed_mask(), budget=0.0)
    assert (kept.sum(axis=1) == 1).all()


@pytest.mark.parametrize("frac", [0.15, 0.5])
def test_hournas_meets_budget_and_reports_phases(fbnet, frac):
    table = synthetic_table(fbnet, seed=4)
    _, lo = table.min_arch()
    hi = float(table.predict(np.nanargmax(table.table, axis=1)[None])[0])
    budget = lo + frac * (hi - lo)
    scorer = CountingScorer(table)
    ctx = SearchContext(space=fbnet, latency=table, budget=Budget(budget, "ms"), evals=60, seed=0, scorer=scorer,
                        options={"pop_size": 10})
    res = run_algorithm("hournas", ctx)
    assert res.archs and np.all(np.asarray(res.predicted) <= budget)
    assert res.evals <= 60 and scorer.calls == res.evals
    phases = {h["phase"] for h in res.history}
    assert {"hournas-vital", "hournas-shrink", "hournas-rest"} <= phases
    # phase 2 keeps the vital choices of phase 1
    best = res.archs[0]
    assert all(best[l] == c for l, c in ((int(k), v) for k, v in res.extra["vital_choice"].items()))
    shrink = next(h for h in res.history if h["phase"] == "hournas-shrink")
    assert shrink["space_size"] <= shrink["space_size_before"]


def test_nse_subset_stays_bounded_drops_ops_and_best_never_decreases(fbnet):
    table = synthetic_table(fbnet, seed=5)
    _, lo = table.min_arch()
    budget = lo * 1.6
    ctx = SearchContext(space=fbnet, latency=table, budget=Budget(budget, "ms"), evals=80, seed=0, scorer=CountingScorer(table),
                        options={"rounds": 4, "init_size": 2, "keep": 2, "grow": 2, "pop_size": 10})
    res = run_algorithm("nse", ctx)
    rounds = res.extra["rounds"]
    assert len(rounds) == 4
    assert rounds[0]["subset_sizes"] == [2] * fbnet.n_layers
    for r in rounds[1:]:
        assert max(r["subset_sizes"]) <= 4  # keep + grow: the subset never drifts to the whole space
    assert all(r["added"] > 0 for r in rounds[:-1])  # unseen ops enter ...
    assert all(r["dropped"] > 0 for r in rounds[1:-1])  # ... and, once the subset is over keep, ops leave
    assert rounds[-1]["subset_total"] < fbnet.allowed_mask().sum()
    best = [r["best_score"] for r in rounds]
    pop_best = [r["population_best"] for r in rounds]
    assert all(b >= a for a, b in zip(best, best[1:]))
    assert all(b >= a for a, b in zip(pop_best, pop_best[1:]))  # the inherited population keeps the best
    assert rounds[1]["inherited"] > 0
    assert np.all(np.asarray(res.predicted) <= budget)


def test_nse_prune_keeps_best_and_most_important():
    from latnas.search.nse import op_importance, prune_subset

    subset = np.zeros((2, 4), dtype=bool)
    subset[:, :3] = True
    archs = [(0, 0), (1, 1), (2, 1), (1, 2)]
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    imp = op_importance(subset, archs, scores)
    assert imp[0, 1] == pytest.approx(0.8) and imp[1, 1] == pytest.approx(0.7) and imp[0, 3] == -np.inf
    pruned = prune_subset(subset, imp, best=(0, 0), keep=2)
    assert pruned[0].tolist() == [True, True, False, False]  # best's choice 0 + most important 1
    assert pruned[1].tolist() == [True, True, False, False]


def test_nse_grow_adds_cost_neighbours(fbnet):
    table = synthetic_table(fbnet, seed=6)
    allowed = fbnet.allowed_mask()
    sub = initial_subset(table, allowed, 2, np.random.default_rng(0))
    best = tuple(int(np.flatnonzero(r)[-1]) for r in sub)
    grown = grow_subset(table, allowed, sub, best, grow=1)
    assert (grown.sum(axis=1) == 3).all() and (grown >= sub).all()
    for l in range(fbnet.n_layers):
        new = int(np.flatnonzero(grown[l] & ~sub[l])[0])
        untried = np.flatnonzero(allowed[l] & ~sub[l])
        dist = np.abs(table.table[l, untried] - table.table[l, best[l]])
        assert abs(table.table[l, new] - table.table[l, best[l]]) == pytest.approx(dist.min())


def test_nse_works_on_the_multibranch_repnas_space():
    space = get_space("repnas")  # ships with latnas: no skip
    table = synthetic_table(space)
    res = run_algorithm("nse", SearchContext(space=space, latency=table, budget=None, evals=30, seed=0,
                                             scorer=CountingScorer(table), options={"rounds": 2}))
    assert res.archs and res.extra["rounds"][1]["subset_total"] > res.extra["rounds"][0]["subset_total"]


# ------------------------------------------------------------- resume
@pytest.mark.parametrize("algo", ["nsga2", "nse"])
def test_interrupted_search_resumes_to_the_same_result(fbnet, tmp_path, algo):
    table = synthetic_table(fbnet, seed=7)
    budget = table.min_arch()[1] * 1.8

    def ctx(scorer, workdir, resume=False):
        return SearchContext(space=fbnet, latency=table, budget=Budget(budget, "ms"), evals=50, seed=3, workdir=workdir,
                             scorer=scorer, scorer_key="synthetic", resume=resume, options={"pop_size": 10})

    full = run_algorithm(algo, ctx(CountingScorer(table), tmp_path / "full"))
    broken = CountingScorer(table, fail_after=27)
    with pytest.raises(KeyboardInterrupt):
        run_algorithm(algo, ctx(broken, tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / CHECKPOINT_NAME).read_text())
    assert 0 < len(saved["scores"]) <= 27 and "population" in saved["state"]
    again = CountingScorer(table)
    resumed = run_algorithm(algo, ctx(again, tmp_path / "run", resume=True))
    assert resumed.archs == full.archs and resumed.scores == full.scores
    assert again.calls == full.evals - len(saved["scores"])  # stored scores are not recomputed


def test_resume_refuses_checkpoint_with_other_scores(fbnet, tmp_path):
    table = synthetic_table(fbnet)
    run_algorithm("nsga2", SearchContext(space=fbnet, latency=table, evals=12, workdir=tmp_path,
                                         scorer=CountingScorer(table), scorer_key="a"))
    with pytest.raises(DataError, match="remove it"):
        run_algorithm("nsga2", SearchContext(space=fbnet, latency=table, evals=12, workdir=tmp_path,
                                             scorer=CountingScorer(table), scorer_key="b", resume=True))
