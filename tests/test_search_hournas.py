"""HourNAS as in the paper: vital blocks by the shortcut rule, the 90%-share shrink, supernet phases."""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from latnas.schema.latency_table import flops_table
from latnas.search import Budget, SearchProblem, Termination, minimize
from latnas.search.algorithm import ALGORITHMS
from latnas.search.hournas import (feasible_share, identity_choice, shrink_mask, shrink_to_share, vital_layers,
                                   vital_space_mask)
from latnas.schema.spaces import get_space

from search_helpers import CountingScorer, synthetic_table

NB201_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"


class FakeOneShot(CountingScorer):
    """A cheap scorer with the one-shot hook: records every ``fit``."""

    def __init__(self, table):
        super().__init__(table)
        self.fit_calls: list[dict] = []
        self.paths: list = []

    def fit(self, mask=None, epochs=None, multi_branch=1, drop=False):
        self.fit_calls.append({"mask": np.array(mask), "epochs": epochs, "multi_branch": multi_branch, "drop": drop})
        return self

    def score_path(self, path):
        self.paths.append([tuple(p) for p in path])
        return 0.5


@lru_cache(maxsize=None)
def _flops(name: str):
    return flops_table(get_space(name))


def _flops_budget(space, quantile=0.35, seed=0):
    table = _flops(space.name)
    lat = table.predict(np.asarray(space.random_archs(3000, seed)))
    return table, float(np.quantile(lat, quantile))


def test_vital_blocks_are_the_blocks_without_a_shortcut():
    fb = get_space("fbnet")
    assert vital_layers(fb) == [1, 5, 9, 13, 17, 21]  # channel changes and stride 2; layer 0 (16->16) has a residual
    for slot in fb.layers:
        if slot.index not in vital_layers(fb):
            assert identity_choice(fb, slot.index) is not None  # every other block can be bypassed
    assert vital_layers(get_space("nb201")) == []  # every cell edge has a parallel path
    rep = get_space("repnas")
    assert vital_layers(rep) == [s.index for s in rep.layers if s.stride != 1 or s.cin != s.cout]


def test_vital_space_fixes_the_rest_to_identity_and_forbids_skip_on_vital_layers():
    fb = get_space("fbnet")
    mask = vital_space_mask(fb, _flops("fbnet"), vital_layers(fb))
    skip = fb.choice_names.index("skip")
    for layer in range(fb.n_layers):
        if layer in vital_layers(fb):
            assert not mask[layer, skip] and mask[layer].sum() == 8
        else:
            assert mask[layer].tolist() == [c == skip for c in range(fb.n_choices)]


@pytest.mark.parametrize("quantile", [0.2, 0.35, 0.6])
def test_shrink_reaches_the_share_keeps_the_best_arch_and_the_old_rule_did_not(quantile):
    fb = get_space("fbnet")
    table, budget = _flops_budget(fb, quantile)
    full = fb.allowed_mask()
    assert feasible_share(table, shrink_mask(table, full, budget), budget) < 0.9  # completion rule alone: too loose
    best = min(fb.random_archs(200, 1), key=lambda a: abs(table.predict(np.array([a]))[0] - 0.9 * budget))
    mask, steps = shrink_to_share(table, full, budget, keep=best, target=0.9, seed=3)
    assert (mask <= full).all() and mask.any(axis=1).all()
    assert mask[np.arange(fb.n_layers), list(best)].all()  # the best arch so far stays inside
    assert feasible_share(table, mask, budget, seed=99) >= 0.88  # on a fresh sample (2,000 used to shrink)
    assert steps and mask.sum() < full.sum()


def test_hournas_trains_the_vital_supernet_then_the_shrunk_one():
    fb = get_space("fbnet")
    table = synthetic_table(fb, seed=4)
    lo = table.min_arch()[1]
    hi = float(table.predict(np.nanargmax(table.table, axis=1)[None])[0])
    scorer = FakeOneShot(table)
    problem = SearchProblem(fb, table, scorer, budget=Budget(lo + 0.3 * (hi - lo), "ms"))
    res = minimize(problem, ALGORITHMS.get("hournas")({"pop_size": 8, "vital_epochs": 2, "epochs": 3}, seed=0),
                   Termination(50))
    assert len(scorer.fit_calls) == 2 and [c["epochs"] for c in scorer.fit_calls] == [2, 3]
    vital_mask, shrunk = scorer.fit_calls[0]["mask"], scorer.fit_calls[1]["mask"]
    non_vital = [l for l in range(fb.n_layers) if l not in vital_layers(fb)]
    assert (vital_mask[non_vital].sum(axis=1) == 1).all()  # the small supernet: only vital blocks searched
    shrink = next(h for h in res.history if h["phase"] == "hournas-shrink")
    assert shrunk.sum(axis=1).tolist() == shrink["kept_per_layer"] and shrink["feasible_share"] >= 0.85
    assert res.extra["one_shot"] and res.evals <= 50
    for arch in res.archs:  # the result comes from the shrunk-space supernet
        assert shrunk[np.arange(fb.n_layers), list(arch)].all()
        assert problem.feasible(problem.latency(np.array([arch])))[0]


def test_hournas_on_nb201_with_the_table_finds_a_good_cell():
    if not NB201_TABLE.is_file():
        pytest.skip("NAS-Bench-201 table not found in ../shared/data/nb201")
    from latnas.search.scorers import ScorerConfig, make_scorer

    space = get_space("nb201")
    table, budget = _flops_budget(space)
    scorer = make_scorer("table", ScorerConfig(space=space, table=str(NB201_TABLE), column="c10_test_acc",
                                               arch_column="arch_str"))
    problem = SearchProblem(space, table, scorer, budget=Budget(budget, "MFLOPs"))
    res = minimize(problem, ALGORITHMS.get("hournas")({"pop_size": 10}, seed=0), Termination(60))
    shrink = next(h for h in res.history if h["phase"] == "hournas-shrink")
    assert res.extra["vital_layers"] == [] and shrink["feasible_share"] >= 0.9
    assert shrink["space_size"] < 5 ** 6
    with NB201_TABLE.open(newline="") as f:
        accs = {space.parse_arch(r["arch_str"]): float(r["c10_test_acc"]) for r in csv.DictReader(f)}
    feasible = [v for a, v in accs.items() if problem.feasible(problem.latency(np.array([a])))[0]]
    assert res.scores[0] == accs[res.archs[0]] > np.quantile(feasible, 0.9)


def test_hournas_with_the_real_supernet_reuses_its_weights(tmp_path):
    from test_search_supernet import tiny_config, tiny_data

    from latnas.search.oneshot import SupernetScorer

    space = get_space("nb201")
    table, budget = _flops_budget(space)
    runs = []
    for _ in range(2):
        scorer = SupernetScorer(space, tiny_data(), tiny_config(tmp_path))
        problem = SearchProblem(space, table, scorer, budget=Budget(budget, "MFLOPs"))
        runs.append((minimize(problem, ALGORITHMS.get("hournas")({"pop_size": 4}, seed=0), Termination(8)), scorer))
    (first, s1), (second, s2) = runs
    assert s1.steps_trained > 0 and s2.steps_trained == 0  # the second search trains nothing
    assert first.archs == second.archs and first.scores == second.scores
    assert first.extra["supernet_fits"][0]["choices"] < 30  # trained on the shrunk space, not all 30 choices
