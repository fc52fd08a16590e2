"""H-DAS on the NB201 cell (algorithm ``hdas``): latency model, three-level derivation, fixes, tiny runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latnas.schema.errors import DataError
from latnas.schema.latency_table import LatencyTable, flops_table
from latnas.search import Budget, SearchContext, SearchData, run_algorithm
from latnas.search.hdas import fit_budget, gumbel_hard
from latnas.search.hdas_net import (
    N_EDGES,
    N_OPS,
    HDASArch,
    HDASNet,
    MixedEdge,
    StageLayout,
    hdas_expected_latency,
    window_inputs,
)
from latnas.schema.spaces import get_space

torch.set_num_threads(1)


def tiny_data(n_train=48, n_val=32, res=8, classes=4, seed=0) -> SearchData:
    g = torch.Generator().manual_seed(seed)
    y_tr = torch.randint(0, classes, (n_train,), generator=g)
    y_va = torch.randint(0, classes, (n_val,), generator=g)
    proto = torch.randn(classes, 3, res, res, generator=g)
    x_tr = proto[y_tr] + 0.5 * torch.randn(n_train, 3, res, res, generator=g)
    x_va = proto[y_va] + 0.5 * torch.randn(n_val, 3, res, res, generator=g)
    return SearchData(x_tr, y_tr, x_va, y_va, classes, "tiny")


TINY = dict(epochs=2, warmup_epochs=1, batch_size=16, max_batches=2, channels=(4, 4, 4), max_cells=2)


def knots_table(space) -> LatencyTable:
    t = flops_table(space)
    lo, hi = float(np.nansum(np.nanmin(t.table, axis=1))), float(np.nansum(np.nanmax(t.table, axis=1)))
    kx = np.linspace(lo, hi, 4)
    return LatencyTable(space.name, t.table, knots_x=kx, knots_y=1.0 + kx * np.array([1.0, 1.1, 1.3, 1.4]), unit="ms")


@pytest.mark.parametrize("knots", [False, True])
def test_expected_latency_one_hot_equals_the_table(knots):
    space = get_space("nb201")
    table = knots_table(space) if knots else flops_table(space)
    layout = StageLayout(5, 1, 3, 2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = tuple(int(v) for v in rng.integers(0, N_OPS, size=N_EDGES))
        op = F.one_hot(torch.tensor(arch), N_OPS).double()
        counts = F.one_hot(torch.full((3,), layout.counts.index(5)), len(layout.counts)).double()
        e = float(hdas_expected_latency(table, op, counts, layout.counts, 5))
        assert e == pytest.approx(float(table.predict(np.array([arch]))[0]), rel=1e-9)


def test_expected_latency_gradients_reach_cell_and_depth_parameters():
    space = get_space("nb201")
    layout = StageLayout(3, 1, 3, 2)
    arch = HDASArch(3, layout)
    e = hdas_expected_latency(flops_table(space), arch.op_probs(), arch.count_probs(), layout.counts, 5)
    e.backward()
    assert torch.isfinite(arch.alpha.grad).all() and (arch.alpha.grad.abs() > 0).all()
    assert torch.isfinite(arch.gamma.grad).all()
    # more cells per stage cost more (at uniform gamma the mean count has zero gradient)
    assert (arch.gamma.grad[:, -1] > 0).all() and (arch.gamma.grad[:, 0] < 0).all()


def test_window_and_top2_derivation():
    assert window_inputs(1, 3) == [0] and window_inputs(2, 3) == [0, 1] and window_inputs(5, 3) == [2, 3, 4]
    layout = StageLayout(5, 1, 3, 2)
    arch = HDASArch(2, layout)
    with torch.no_grad():
        arch.beta[4].copy_(torch.tensor([3.0, -1.0, 2.0]))  # stage 0, node 5 reads nodes 2, 3, 4
    dag = arch.derive_dag()
    assert dag[0][4] == [2, 4]
    for stage in dag:
        for j, ins in enumerate(stage, start=1):
            assert len(ins) == min(2, j) and set(ins) <= set(window_inputs(j, 3))


def test_cell_derivation_excludes_none_unless_asked():
    arch = HDASArch(3, StageLayout(2, 1, 3, 2))
    with torch.no_grad():
        arch.alpha.zero_()
        arch.alpha[:, 0] = 5.0
        arch.alpha[:, 3] = 1.0
    assert arch.derive_cell() == [3] * N_EDGES
    assert arch.derive_cell(allow_none=True) == [0] * N_EDGES


def test_auxiliary_skip_adds_beta_x_and_gdas_samples_one_op():
    torch.manual_seed(0)
    edge = MixedEdge(4)
    x = torch.randn(2, 4, 6, 6)
    w = torch.full((N_OPS,), 0.2)
    edge.eval()
    with torch.no_grad():
        assert torch.allclose(edge(x, w, 0.7) - edge(x, w, 0.0), 0.7 * x, atol=1e-6)
    logits = torch.nn.Parameter(torch.randn(N_EDGES, N_OPS))
    s = gumbel_hard(logits, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(s.detach().sum(1), torch.ones(N_EDGES)) and set(s.detach().unique().tolist()) == {0.0, 1.0}
    (s * torch.randn(N_EDGES, N_OPS)).sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad.abs() > 0).any()


def test_network_runs_relaxed_and_fixed():
    layout = StageLayout(3, 1, 3, 2)
    net = HDASNet((4, 8, 8), layout, 3, 5)
    arch = HDASArch(3, layout)
    x = torch.randn(2, 3, 8, 8)
    assert net(x, arch, arch.op_probs(), 1.0).shape == (2, 5)
    fixed = ([1, 2, 3], arch.derive_dag())
    one_hot = F.one_hot(torch.tensor([3, 3, 1, 3, 2, 4]), N_OPS).float()
    assert net(x, arch, one_hot, 0.0, fixed).shape == (2, 5)


def test_fit_budget_moves_edges_to_cheaper_ops():
    space = get_space("nb201")
    table = flops_table(space)
    alpha = torch.zeros(N_EDGES, N_OPS)
    big = (3,) * N_EDGES
    budget = float(table.predict(np.array([(3, 3, 3, 1, 1, 1)]))[0]) + 1e-6
    fitted = fit_budget(table, big, alpha, budget)
    assert float(table.predict(np.array([fitted]))[0]) <= budget
    assert 0 not in fitted  # "none" is the last resort


def test_tiny_run_derives_cell_stage_dag_and_counts():
    space = get_space("nb201")
    table = flops_table(space)
    res = run_algorithm("hdas", SearchContext(space, table, tiny_data(), evals=2, options=dict(TINY)))
    ex = res.extra
    cell = space.parse_arch(ex["derived"])
    assert 0 not in cell and len(cell) == N_EDGES
    assert ex["arch_str"] == space.arch_str(cell)
    assert all(1 <= c <= 2 for c in ex["cells_per_stage"]) and len(ex["stage_dag"]) == 3
    assert [h["phase"] for h in res.history] == ["warmup", "search"]
    assert 1 <= res.evals <= 2 and res.predicted[0] == pytest.approx(float(table.predict(np.array([res.archs[0]]))[0]))
    assert 0.0 <= ex["search_val_acc"] <= 1.0


def test_budget_is_met_and_pt_derivation_and_gdas_run():
    space = get_space("nb201")
    table = flops_table(space)
    budget = float(table.predict(np.array([(2, 2, 2, 1, 1, 1)]))[0])
    res = run_algorithm("hdas", SearchContext(space, table, tiny_data(seed=1), budget=Budget(budget, "MFLOPs"), evals=1,
                                              options=dict(TINY, derive="pt", pt_images=16, mode="gdas", lambda_lat=5.0)))
    assert res.predicted[0] <= budget + 1e-9
    assert 0 not in space.parse_arch(res.extra["derived"])


def test_bad_space_and_options_are_refused():
    fb = get_space("fbnet")
    with pytest.raises(DataError, match="nb201"):
        run_algorithm("hdas", SearchContext(fb, flops_table(fb), tiny_data(), evals=1))
    space = get_space("nb201")
    for bad in ({"mode": "enas"}, {"derive": "vote"}, {"min_cells": 4, "max_cells": 2}, {"w_optimizer": "lbfgs"}):
        with pytest.raises(DataError):
            run_algorithm("hdas", SearchContext(space, flops_table(space), tiny_data(), evals=1, options=bad))


def test_free_op_dropout_hits_only_skip_and_pool_while_training():
    torch.manual_seed(0)
    edge = MixedEdge(4)
    x = torch.randn(2, 4, 6, 6)
    for c, dropped in ((1, True), (4, True), (3, False)):
        w = F.one_hot(torch.tensor(c), N_OPS).float()
        edge.train()
        out = edge(x, w, 0.0, drop=1.0)
        assert bool((out == 0).all()) == dropped
        edge.eval()
        assert not bool((edge(x, w, 0.0, drop=1.0) == 0).all())  # no dropout at evaluation
