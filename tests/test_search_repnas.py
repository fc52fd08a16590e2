"""RepNAS with the authors' schedule: exactly-k warm-up, selected-only STE, global top-k, BN reset, fusion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latnas.schema.errors import DataError
from latnas.schema.latency_table import LatencyTable
from latnas.reparam import reparameterize_model
from latnas.search import Budget, SearchContext, SearchData, run_algorithm
from latnas.search.repnas import (
    MaskBound,
    RepNASNet,
    fused_parity,
    mask_to_arch,
    n_keep,
    random_k_mask,
    reset_bn,
    selected_ste_mask,
    topk_mask,
)
from latnas.schema.spaces import get_space
from latnas.schema.spaces.repnas import SEARCHABLE_BRANCHES

torch.set_num_threads(1)


def tiny_data(n_train=48, n_val=32, res=16, classes=10, seed=0) -> SearchData:
    g = torch.Generator().manual_seed(seed)
    y_tr = torch.randint(0, classes, (n_train,), generator=g)
    y_va = torch.randint(0, classes, (n_val,), generator=g)
    proto = torch.randn(classes, 3, res, res, generator=g)
    x_tr = proto[y_tr] + 0.5 * torch.randn(n_train, 3, res, res, generator=g)
    x_va = proto[y_va] + 0.5 * torch.randn(n_val, 3, res, res, generator=g)
    return SearchData(x_tr, y_tr, x_va, y_va, classes, "tiny")


def branch_table(space) -> LatencyTable:
    """A table that charges each searchable branch a fixed cost (so the arch's latency depends on the mask)."""
    table = np.full((space.n_layers, space.n_choices), np.nan)
    for slot in space.layers:
        for c in slot.allowed:
            table[slot.index, c] = 1.0 + 0.25 * bin(c).count("1")
    return LatencyTable(space.name, table, offset=2.0)


TINY = dict(epochs=2, warmup_epochs=1, retrain_epochs=1, batch_size=16, max_batches=3, width_mult=0.125,
            resolution=16)
N_LAYERS = 9
TOTAL = N_LAYERS * len(SEARCHABLE_BRANCHES)


def test_n_keep_rounds_and_validates():
    assert n_keep(54, 0.34) == 18 and n_keep(32, 0.0) == 0 and n_keep(32, 1.0) == 32
    with pytest.raises(DataError):
        n_keep(10, 1.5)


@pytest.mark.parametrize("k", [0, 1, 5, 18, 54])
def test_topk_keeps_exactly_k_even_with_ties(k):
    tied = torch.zeros(54)
    assert int(topk_mask(tied, k).sum()) == k
    coarse = torch.tensor([1.0, 1.0, 0.0] * 18)  # many equal values across the cut
    assert int(topk_mask(coarse, k).sum()) == k
    g = torch.Generator().manual_seed(0)
    for noise in (0.0, 1.0):
        for _ in range(10):
            m = selected_ste_mask(coarse, k, noise=noise, generator=g)
            assert int(m.detach().sum()) == k
            assert set(m.detach().unique().tolist()) <= {0.0, 1.0}


def test_topk_picks_the_largest_and_honours_required_layers():
    s = torch.tensor([0.1, 3.0, -1.0, 2.0, 0.5, -2.0, -3.0])
    assert topk_mask(s, 2).tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    # the last layer (positions 5, 6) has no id: it keeps its best branch, the rest is global
    m = topk_mask(s, 2, [slice(5, 7)])
    assert m.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert int(topk_mask(s, 0, [slice(5, 7)]).sum()) == 1  # a required layer is never empty


def test_ste_gradient_reaches_only_the_selected_scores():
    scores = torch.nn.Parameter(torch.randn(20, generator=torch.Generator().manual_seed(1)))
    weights = torch.randn(20, generator=torch.Generator().manual_seed(2))
    mask = selected_ste_mask(scores, 7, tau=1.0)
    assert torch.equal(mask.detach(), topk_mask(scores, 7))  # forward: exactly the hard top-k
    (mask * weights).sum().backward()
    on = mask.detach() > 0.5
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[on].abs() > 0).all() and (scores.grad[~on] == 0).all()


def test_ste_gradient_through_the_network():
    space = get_space("repnas")
    torch.manual_seed(0)
    net = RepNASNet(space, 3, 10, width_mult=0.125)
    assert net.n_searchable == TOTAL and len(net.required) == 4  # 4 layers change shape: no id there
    scores = torch.nn.Parameter(torch.randn(TOTAL, generator=torch.Generator().manual_seed(0)))
    k = n_keep(TOTAL, 0.34)
    mask = selected_ste_mask(scores, k, net.required)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    torch.nn.functional.cross_entropy(net(x, mask), y).backward()
    on = mask.detach() > 0.5
    assert int(on.sum()) == k
    assert (scores.grad[on].abs() > 0).all() and (scores.grad[~on] == 0).all()
    for sl in net.required:
        assert mask.detach()[sl].sum() >= 1


def test_warmup_draws_exactly_k_uniformly():
    g = torch.Generator().manual_seed(0)
    k = n_keep(TOTAL, 0.34)
    draws = torch.stack([random_k_mask(TOTAL, k, generator=g) for _ in range(600)])
    assert (draws.sum(1) == k).all()  # exactly k every step
    per_branch = draws.mean(0)  # every branch drawn at about k / n
    p = k / TOTAL
    assert float((per_branch - p).abs().max()) < 5 * np.sqrt(p * (1 - p) / 600)
    assert len({tuple(d.tolist()) for d in draws}) > 500  # different subsets


def _randomize_bn(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_mask_fuses_exactly_with_random_bn(seed):
    space = get_space("repnas")
    torch.manual_seed(seed)
    net = RepNASNet(space, 3, 10, width_mult=0.25)
    _randomize_bn(net, seed + 1)
    k = n_keep(TOTAL, 0.34)
    mask = topk_mask(torch.randn(TOTAL, generator=torch.Generator().manual_seed(seed + 2)), k, net.required)
    id_layer = next(sl for sl in net.slices if sl not in net.required)
    mask[id_layer] = 0.0  # a layer reduced to its identity BN
    net.eval()
    fused = reparameterize_model(net.pruned(mask))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = net(x, mask)
        out = fused(x)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4
    assert fused_parity(MaskBound(net, mask), fused, x) < 1e-4
    assert all(not m.branch for m in fused.modules() if hasattr(m, "branch_names"))
    arch = mask_to_arch(space, net, mask)
    assert 0 in arch and torch.equal(net.mask_of_arch(arch), mask)
    other = mask.clone()  # only kept branches are copied: dropping one changes the model
    other[int(torch.nonzero(other)[0])] = 0.0
    with torch.no_grad():
        assert not torch.allclose(net(x, other), ref)


def test_bn_reset_restores_fresh_statistics():
    net = RepNASNet(get_space("repnas"), 3, 10, width_mult=0.125)
    _randomize_bn(net, 0)
    n = reset_bn(net)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert n == len(bns) > 0
    for m in bns:
        assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_tiny_run_schedule_and_fusion(tmp_path):
    space = get_space("repnas")
    table = branch_table(space)
    ctx = SearchContext(space, table, tiny_data(), seed=0, workdir=tmp_path, evals=1, options=dict(TINY))
    res = run_algorithm("repnas", ctx)
    ex = res.extra
    k = ex["k"]
    assert k == 18 and ex["total_searchable"] == TOTAL
    assert [h["phase"] for h in res.history] == ["warmup", "search", "retrain"]
    for h in res.history:  # exactly k branches on at every step, warm-up included
        assert h["kept_per_step"] and all(c == k for c in h["kept_per_step"])
    assert ex["kept_searchable"] == k and ex["bn_reset"] > 0
    kept = [b.split("+") for b in ex["kept_branches"]]
    assert sum(len([n for n in b if n and n != "id"]) for b in kept) == k
    for slot, b in zip(space.layers, kept):  # id always on exactly where the shape is kept
        assert ("id" in b) == (slot.stride == 1 and slot.cin == slot.cout)
    arch = res.archs[0]
    assert space.parse_arch(space.format_arch(arch)) == tuple(arch)
    assert res.predicted[0] == pytest.approx(float(table.predict(np.array([arch]))[0]))
    assert ex["fused_parity_rel"] < 1e-4
    assert ex["masked_val_acc"] == pytest.approx(ex["fused_val_acc"], abs=1.0 / 32 + 1e-9)
    assert (tmp_path / "repnas_model.pt").is_file()


def test_scores_are_frozen_during_warmup():
    space = get_space("repnas")
    res = run_algorithm("repnas", SearchContext(space, branch_table(space), tiny_data(), evals=1,
                                                options=dict(TINY, epochs=1, retrain_epochs=0)))
    assert res.extra["scores"] == [0.0] * TOTAL
    res = run_algorithm("repnas", SearchContext(space, branch_table(space), tiny_data(), evals=1,
                                                options=dict(TINY, retrain_epochs=0)))
    assert any(s != 0.0 for s in res.extra["scores"])  # the search phase moves them


def test_budget_drops_least_important_branches_and_other_spaces_are_refused():
    space = get_space("repnas")
    table = branch_table(space)
    cheapest = float(table.min_arch()[1])
    budget = cheapest + 0.25 * 3  # room for only three branches beyond the required ones
    scored = []

    def scorer(archs):
        scored.extend(archs)
        return np.array([0.01 * sum(a) for a in archs], dtype=float)

    res = run_algorithm("repnas", SearchContext(space, table, tiny_data(seed=1), budget=Budget(budget), evals=3,
                                                scorer=scorer, options=dict(TINY, epochs=1, retrain_epochs=0)))
    assert np.all(np.asarray(res.predicted) <= budget + 1e-9)
    assert res.extra["budget_fixes"]
    assert 1 <= res.evals == len(scored) <= 3
    assert np.all(table.predict(np.array(scored)) <= budget + 1e-9)
    with pytest.raises(DataError, match="DBB"):
        fb = get_space("fbnet")
        run_algorithm("repnas", SearchContext(fb, LatencyTable("fbnet", np.ones((fb.n_layers, fb.n_choices))),
                                              tiny_data(), evals=1))


@pytest.mark.slow
def test_search_learns_digits_and_fused_model_keeps_accuracy():
    from latnas.schema.latency_table import flops_table
    from latnas.search.data import load_data

    space = get_space("repnas")
    data = load_data(space=space, n_train=500, n_val=300, seed=0)
    opts = dict(epochs=3, warmup_epochs=1, retrain_epochs=1, width_mult=0.25, resolution=16)
    res = run_algorithm("repnas", SearchContext(space, flops_table(space), data, evals=1, options=opts))
    ex = res.extra
    assert ex["kept_searchable"] == ex["k"] == 18
    assert ex["fused_parity_rel"] < 1e-4
    assert ex["fused_val_acc"] > 0.5  # chance is 0.1
    assert ex["fused_val_acc"] == pytest.approx(ex["masked_val_acc"], abs=2.0 / 300)
