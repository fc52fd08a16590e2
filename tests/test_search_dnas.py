"""Hierarchical differentiable search (dnas): latency model, derivation, budget, tiny runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latnas.schema.errors import DataError
from latnas.schema.latency_table import LatencyTable
from latnas.search import Budget, SearchContext, SearchData, run_algorithm
from latnas.search.dnas import DNAS
from latnas.search.options import options_from
from latnas.search.supernet import (
    ArchParams,
    build_layout,
    derive_arch,
    expected_latency,
    greedy_fit_budget,
)
from latnas.schema.spaces import get_space

torch.set_num_threads(1)


def random_table(space, seed=0, knots=False) -> LatencyTable:
    rng = np.random.default_rng(seed)
    table = rng.uniform(0.05, 2.0, size=(space.n_layers, space.n_choices))
    table[~space.allowed_mask()] = np.nan
    if knots:
        return LatencyTable(space.name, table, knots_x=np.array([0.0, 10.0, 30.0, 80.0]),
                            knots_y=np.array([1.0, 9.0, 35.0, 70.0]))
    return LatencyTable(space.name, table, offset=1.5)


def tiny_data(n_train=48, n_val=32, res=16, classes=10, seed=0) -> SearchData:
    g = torch.Generator().manual_seed(seed)
    y_tr = torch.randint(0, classes, (n_train,), generator=g)
    y_va = torch.randint(0, classes, (n_val,), generator=g)
    # class-dependent means so there is something to learn
    proto = torch.randn(classes, 3, res, res, generator=g)
    x_tr = proto[y_tr] + 0.5 * torch.randn(n_train, 3, res, res, generator=g)
    x_va = proto[y_va] + 0.5 * torch.randn(n_val, 3, res, res, generator=g)
    return SearchData(x_tr, y_tr, x_va, y_va, classes, "tiny")


def _sum_scorer(archs):
    """A deterministic stand-in for an accuracy estimate."""
    return np.array([0.01 * sum(a) for a in archs], dtype=float)


TINY = dict(epochs=1, warmup_epochs=0, batch_size=16, max_batches=2, width_mult=0.125, head_channels=16,
            resolution=8, bn_batches=1)


@pytest.mark.parametrize("space_name", ["fbnet", "proxyless"])
@pytest.mark.parametrize("knots", [False, True])
def test_expected_latency_gradient_reaches_every_arch_param(space_name, knots):
    space = get_space(space_name)
    layout = build_layout(space)
    table = random_table(space, knots=knots)
    arch = ArchParams(layout)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in arch.parameters():
            p.normal_(0.0, 0.5)
    lat = expected_latency(table, layout, *arch.probs())
    assert torch.isfinite(lat)
    lat.backward()
    params = arch.searched()
    assert len(params) >= space.n_layers  # every layer has several ops, plus stage depth/width
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert (p.grad.abs() > 0).all(), p.grad


def test_stage_choices_cover_fbnet_structure():
    space = get_space("fbnet")
    layout = build_layout(space)
    depths = [st.depths for st in layout.stages]
    assert depths == [(1,), (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4), (1,)]
    assert all(st.widths == (0.5, 0.75, 1.0) for st in layout.stages)
    # first layer of each stage is vital: never an identity candidate
    assert all(layout.layers[v].skip_choice is None for v in space.vital)
    # proxyless: stage 3 (stride 1, 80 -> 96) has no skip at its first layer, its other layers do
    lp = build_layout(get_space("proxyless"))
    assert lp.stages[3].depths == (1, 2, 3, 4)


@pytest.mark.parametrize("knots", [False, True])
def test_one_hot_distribution_equals_table_prediction(knots):
    space = get_space("fbnet")
    layout = build_layout(space)
    table = random_table(space, seed=3, knots=knots)
    arch = ArchParams(layout)
    full_d = [len(st.depths) - 1 for st in layout.stages]
    full_w = [len(st.widths) - 1 for st in layout.stages]
    for a in space.random_archs(5, rng=0):
        pos = [info.allowed.index(c) for info, c in zip(layout.layers, a)]
        lat = float(expected_latency(table, layout, *arch.one_hot(pos, full_d, full_w)))
        assert lat == pytest.approx(float(table.predict(np.array([a]))[0]), rel=1e-9)
    # stage depth one-hot: layers past the depth cost their skip entry, like derive_arch says
    depth = [0] * len(layout.stages)
    a = space.random_arch(1)
    pos = [info.allowed.index(c) for info, c in zip(layout.layers, a)]
    lat = float(expected_latency(table, layout, *arch.one_hot(pos, depth, full_w)))
    derived = derive_arch(layout, pos, depth)
    assert lat == pytest.approx(float(table.predict(np.array([derived]))[0]), rel=1e-9)


def test_width_scales_layer_costs_quadratically_and_linearly():
    space = get_space("fbnet")
    table = random_table(space, seed=4)
    a = space.random_arch(2)
    base = float(table.block_sum(np.array([a]))[0])
    for scaling, factor in (("quadratic", 0.25), ("linear", 0.5)):
        layout = build_layout(space, width_scaling=scaling)
        arch = ArchParams(layout)
        pos = [info.allowed.index(c) for info, c in zip(layout.layers, a)]
        full_d = [len(st.depths) - 1 for st in layout.stages]
        half = [0] * len(layout.stages)  # width 0.5 everywhere
        lat = float(expected_latency(table, layout, *arch.one_hot(pos, full_d, half)))
        # the stem feeds stage 0 at full width: its first layer scales by 1 x 0.5 in the quadratic model
        first = float(table.table[0, a[0]])
        expected = factor * base + table.offset + (0.25 * first if scaling == "quadratic" else 0.0)
        assert lat == pytest.approx(expected, rel=1e-9)


def test_greedy_budget_fix_meets_budget_with_minimal_moves():
    space = get_space("fbnet")
    table = random_table(space, seed=5)
    layout = build_layout(space)
    a = space.random_arch(7)
    lat = float(table.predict(np.array([a]))[0])
    _, lat_min = table.min_arch()
    budget = lat_min + 0.5 * (lat - lat_min)
    fixed, steps = greedy_fit_budget(table, layout, a, budget)
    assert float(table.predict(np.array([fixed]))[0]) <= budget
    assert steps and all(table.table[s["layer"], s["to"]] < table.table[s["layer"], s["from"]] for s in steps)
    assert space.parse_arch(fixed) == fixed
    same, none = greedy_fit_budget(table, layout, a, lat + 1.0)
    assert same == tuple(a) and none == []


def test_options_from_cli_strings_are_coerced():
    opt = options_from(DNAS.Options, {"hard": "false", "epochs": "2", "widths": "0.5,1", "max_batches": "none",
                                      "lambda_lat": "0.5", "resolution": 12}, "dnas")
    assert opt.hard is False and opt.epochs == 2 and opt.widths == (0.5, 1.0)
    assert opt.max_batches is None and opt.lambda_lat == 0.5 and opt.resolution == 12
    with pytest.raises(DataError, match="not a valid int"):
        options_from(DNAS.Options, {"epochs": "many"}, "dnas")
    with pytest.raises(DataError, match=r"dnas has no option 'bogus' \(known: epochs, warmup_epochs"):
        DNAS({"bogus": "1"})
    with pytest.raises(DataError, match="cannot resume"):
        DNAS(resume=True)


def test_tiny_run_returns_valid_arch(tmp_path):
    space = get_space("fbnet")
    table = random_table(space, seed=6)
    seen = []
    ctx = SearchContext(space, table, tiny_data(), seed=0, workdir=tmp_path, evals=1,
                        progress=lambda d, n, m: seen.append((d, n)), options=dict(TINY))
    res = run_algorithm("dnas", ctx)
    assert res.algo == "dnas" and len(res.archs) == 1
    arch = res.archs[0]
    assert space.parse_arch(space.format_arch(arch)) == tuple(arch)
    assert res.predicted[0] == pytest.approx(float(table.predict(np.array([arch]))[0]))
    assert 0.0 <= res.scores[0] <= 1.0
    assert len(res.history) == 1 and seen == [(1, 1)]
    ex = res.extra
    assert ex["width_representable"] is False
    assert len(ex["stage_width"]) == len(ex["stage_depth"]) == 7
    assert all(w in (0.5, 0.75, 1.0) for w in ex["stage_width"])
    assert (tmp_path / "dnas_arch.json").is_file() and (tmp_path / "dnas_supernet.pt").is_file()


def test_huge_lambda_derives_a_faster_arch_than_no_lambda():
    space = get_space("fbnet")
    table = random_table(space, seed=7)
    data = tiny_data(seed=1)
    lat = {}
    for lam in (0.0, 1000.0):
        opts = dict(TINY, lambda_lat=lam, max_batches=3, a_lr=0.05)
        res = run_algorithm("dnas", SearchContext(space, table, data, seed=0, evals=1, scorer=_sum_scorer, options=opts))
        lat[lam] = res.predicted[0]
        # the one candidate is the derived arch, scored by the problem's scorer (not by the supernet)
        assert res.extra["derived"] == space.format_arch(res.archs[0])
        assert res.scores == [float(_sum_scorer([res.archs[0]])[0])]
    mean_random = float(np.mean(table.predict(np.array(space.random_archs(200, rng=0)))))
    assert lat[1000.0] < lat[0.0]
    assert lat[1000.0] < mean_random


def test_budget_is_met_and_infeasible_budget_refused():
    space = get_space("fbnet")
    table = random_table(space, seed=8)
    _, lat_min = table.min_arch()
    data = tiny_data(seed=2)
    budget = lat_min * 1.05
    res = run_algorithm("dnas", SearchContext(space, table, data, budget=Budget(budget), evals=1,
                                              options=dict(TINY, lambda_lat=0.0)))
    assert res.predicted[0] <= budget and res.extra["budget_met"] is True
    assert res.extra["budget_fixes"]  # lambda alone cannot get this close in one tiny epoch
    with pytest.raises(DataError, match="below the minimum reachable"):
        run_algorithm("dnas", SearchContext(space, table, data, budget=Budget(lat_min * 0.5), options=dict(TINY)))


def test_evals_bound_the_scored_candidates_and_all_meet_the_budget():
    space = get_space("fbnet")
    table = random_table(space, seed=11)
    budget = table.min_arch()[1] * 1.3
    calls = []

    def scorer(archs):
        calls.extend(archs)
        return _sum_scorer(archs)

    res = run_algorithm("dnas", SearchContext(space, table, tiny_data(), budget=Budget(budget), evals=5, scorer=scorer,
                                              options=dict(TINY)))
    assert 1 <= res.evals == len(calls) <= 5 and len(set(calls)) == len(calls)
    assert space.parse_arch(res.extra["derived"]) == calls[0]  # the derived arch is always scored first
    assert np.all(np.asarray(res.predicted) <= budget)
    assert res.scores == sorted(res.scores, reverse=True)


def test_tiny_run_single_path_without_stage_search():
    space = get_space("proxyless")
    table = random_table(space, seed=9)
    opts = dict(TINY, hard="true", search_depth="false", widths="", resolution=16)
    res = run_algorithm("dnas", SearchContext(space, table, tiny_data(res=16), evals=1, options=opts))
    layout = build_layout(space)
    assert res.extra["stage_width"] == [1.0] * len(layout.stages)
    assert res.extra["stage_depth"] == [len(st.layers) for st in layout.stages]
    assert space.parse_arch(res.archs[0]) == tuple(res.archs[0])


@pytest.mark.slow
def test_supernet_learns_digits_and_latency_falls():
    from latnas.schema.latency_table import flops_table
    from latnas.search.data import load_data

    space = get_space("fbnet")
    data = load_data(space=space, n_train=500, n_val=300, seed=0)
    table = flops_table(space)
    res = run_algorithm("dnas", SearchContext(space, table, data, evals=1, options=dict(epochs=3, max_batches=10)))
    accs = [h["train_acc"] for h in res.history]
    assert max(accs[1:]) > 0.3  # chance is 0.1: the soft supernet trains in ~30 steps
    lats = [h["expected_latency"] for h in res.history]
    assert lats[-1] < lats[0]
    mean_random = float(np.mean(table.predict(np.array(space.random_archs(200, rng=0)))))
    assert res.predicted[0] < mean_random


def test_log_latency_stays_finite_for_tables_with_negative_entries():
    from latnas.search.dnas import latency_log_shift

    space = get_space("fbnet")
    table = random_table(space, seed=10)
    assert latency_log_shift(table) == 0.0
    table.table[:] = table.table - 1.5  # a learned additive table can go negative
    table = LatencyTable(space.name, table.table, offset=-3.0)
    shift = latency_log_shift(table)
    layout = build_layout(space)
    arch = ArchParams(layout)
    for pos in ([0] * space.n_layers, [int(np.nanargmin(r)) for r in table.table]):
        e = expected_latency(table, layout, *arch.one_hot(pos, [0] * 7, [0] * 7))
        assert float(e) + shift > 0
    res = run_algorithm("dnas", SearchContext(space, table, tiny_data(), evals=1, options=dict(TINY)))
    assert np.isfinite(res.history[-1]["expected_latency"]) and res.extra["log_shift"] == shift
    assert all(np.isfinite(p).all() for p in res.extra["op_probs"])
