"""NSE as in the paper: supernet per round on a bounded subset, pruning, unseen ops added, weights inherited."""
from __future__ import annotations

import numpy as np
import pytest

from latnas.search import Budget, SearchProblem, Termination, minimize
from latnas.search.algorithm import ALGORITHMS
from latnas.schema.spaces import get_space

from search_helpers import synthetic_table
from test_search_hournas import FakeOneShot


def _problem(space, scorer_cls=FakeOneShot, seed=5, slack=1.8):
    table = synthetic_table(space, seed=seed)
    scorer = scorer_cls(table)
    return SearchProblem(space, table, scorer, budget=Budget(table.min_arch()[1] * slack, "ms")), scorer


def _subset_masks(problem, scorer):
    return [c["mask"] for c in scorer.fit_calls]


@pytest.mark.parametrize("branches", [1, 2])
def test_each_round_fits_the_supernet_on_its_subset_then_prunes_and_grows(branches):
    fb = get_space("fbnet")
    problem, scorer = _problem(fb)
    opts = {"rounds": 4, "init_size": 3, "keep": 2, "grow": 1, "pop_size": 8, "epochs": 2, "multi_branch": branches}
    res = minimize(problem, ALGORITHMS.get("nse")(opts, seed=0), Termination(80))
    rounds = res.extra["rounds"]
    masks = _subset_masks(problem, scorer)
    assert len(masks) == 4
    assert [c["drop"] for c in scorer.fit_calls] == [False, True, True, True]  # dropped ops lose their weights
    assert all(c["epochs"] == 2 and c["multi_branch"] == branches for c in scorer.fit_calls)
    for r, mask in zip(rounds, masks):
        assert mask.sum(axis=1).tolist() == r["subset_sizes"]
    seen = masks[0].copy()
    for before, after, info in zip(masks, masks[1:], rounds):
        assert (after.sum(axis=1) <= 3).all()  # keep + grow
        new = after & ~before
        assert not (new & seen).any()  # only ops never seen before are added
        assert info["dropped"] > 0 and info["added"] == int(new.sum())
        best = get_space("fbnet").parse_arch(info["round_best"])
        assert after[np.arange(fb.n_layers), list(best)].all()  # the round's best survives the pruning
        seen |= after
    if branches > 1:
        assert len(scorer.paths) == 4
        for path, mask in zip(scorer.paths, masks):
            assert all(1 <= len(p) <= branches and all(mask[l, c] for c in p) for l, p in enumerate(path))
        assert all("multi_branch_score" in r for r in rounds)
    # the result is read from the last round's supernet, inside the last subset
    for arch in res.archs:
        assert masks[-1][np.arange(fb.n_layers), list(arch)].all()


def test_nse_with_the_real_supernet_inherits_weights_across_rounds():
    from test_search_supernet import tiny_config, tiny_data

    from latnas.search.oneshot import SupernetScorer

    space = get_space("nb201")
    table = synthetic_table(space, seed=2)
    scorer = SupernetScorer(space, tiny_data(), tiny_config())
    problem = SearchProblem(space, table, scorer, budget=None)
    opts = {"rounds": 2, "init_size": 2, "keep": 1, "grow": 1, "pop_size": 4, "epochs": 1, "multi_branch": 2}
    res = minimize(problem, ALGORITHMS.get("nse")(opts, seed=0), Termination(12))
    fits = res.extra["supernet_fits"]
    assert len(fits) == 2 and fits[0]["choices"] == 12 and fits[1]["choices"] <= 12
    assert fits[0]["key"] != fits[1]["key"]  # round 2 continues from round 1's weights (chained key)
    assert all(0 <= s <= 1 for s in res.scores) and res.archs
    assert 0 <= res.extra["rounds"][0]["multi_branch_score"] <= 1
