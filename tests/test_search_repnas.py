"""RepNAS branch search: global top-k mask, STE gradients, warm-up rate, fused parity, tiny run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latnas.errors import DataError
from latnas.latency_table import LatencyTable
from latnas.reparam import reparameterize_model
from latnas.search import Budget, SearchContext, SearchData, run_algorithm
from latnas.search.repnas import (
    MaskBound,
    RepNASNet,
    fused_parity,
    n_keep,
    ste_topk_mask,
    topk_mask,
    warmup_mask,
)
from latnas.spaces import get_space

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
    """A table that charges each optional branch a fixed cost (so the arch's latency depends on the mask)."""
    table = np.full((space.n_layers, space.n_choices), np.nan)
    for slot in space.layers:
        for c in slot.allowed:
            table[slot.index, c] = 1.0 + 0.25 * bin(c).count("1")
    return LatencyTable(space.name, table, offset=2.0)


TINY = dict(epochs=2, warmup_epochs=1, finetune_epochs=1, batch_size=16, max_batches=3, width_mult=0.125,
            resolution=16)


def test_n_keep_rounds_and_validates():
    assert n_keep(32, 0.34) == 11 and n_keep(32, 0.0) == 0 and n_keep(32, 1.0) == 32
    with pytest.raises(DataError):
        n_keep(10, 1.5)


@pytest.mark.parametrize("k", [0, 1, 5, 11, 32])
def test_topk_keeps_exactly_k_even_with_ties(k):
    tied = torch.zeros(32)
    assert int(topk_mask(tied, k).sum()) == k
    coarse = torch.tensor([1.0, 1.0, 0.0, 1.0] * 8)  # many equal values across the cut
    assert int(topk_mask(coarse, k).sum()) == k
    g = torch.Generator().manual_seed(0)
    for noise in (0.0, 1.0):
        for _ in range(20):
            m = ste_topk_mask(coarse, k, noise=noise, generator=g)
            assert int(m.detach().sum()) == k
            assert set(m.detach().unique().tolist()) <= {0.0, 1.0}


def test_topk_picks_the_largest_scores():
    s = torch.tensor([0.1, 3.0, -1.0, 2.0, 0.5])
    assert topk_mask(s, 2).tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert ste_topk_mask(s, 2, noise=0.0).detach().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_ste_passes_nonzero_gradient_to_every_score():
    scores = torch.nn.Parameter(torch.randn(20, generator=torch.Generator().manual_seed(1)))
    weights = torch.randn(20, generator=torch.Generator().manual_seed(2))
    mask = ste_topk_mask(scores, 7, tau=1.0, noise=1.0, generator=torch.Generator().manual_seed(3))
    (mask * weights).sum().backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad.abs() > 0).all()


def test_ste_gradient_through_the_network_reaches_every_branch_score():
    space = get_space("repnas")
    torch.manual_seed(0)
    net = RepNASNet(space, 3, 10, width_mult=0.125)
    scores = torch.nn.Parameter(torch.zeros(net.n_optional))
    k = n_keep(net.n_optional, 0.34)
    mask = ste_topk_mask(scores, k, generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    torch.nn.functional.cross_entropy(net(x, mask), y).backward()
    assert int(mask.detach().sum()) == k
    assert torch.isfinite(scores.grad).all() and (scores.grad.abs() > 0).all()


def test_warmup_samples_branches_at_the_fraction_rate():
    g = torch.Generator().manual_seed(0)
    scores = torch.zeros(32)
    draws = torch.stack([warmup_mask(scores, 0.34, generator=g).detach() for _ in range(500)])
    n = draws.numel()
    rate = float(draws.mean())
    assert abs(rate - 0.34) < 4 * np.sqrt(0.34 * 0.66 / n)
    per_branch = draws.mean(0)  # every branch gets drawn, at about the same rate
    assert float(per_branch.min()) > 0.2 and float(per_branch.max()) < 0.5
    assert float(draws.sum(1).std()) > 0  # warm-up does NOT fix the count (independent draws)
    high = torch.stack([warmup_mask(scores, 0.8, generator=g).detach() for _ in range(200)])
    assert abs(float(high.mean()) - 0.8) < 4 * np.sqrt(0.8 * 0.2 / high.numel())


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


def test_fused_model_matches_masked_multibranch_model():
    space = get_space("repnas")
    torch.manual_seed(0)
    net = RepNASNet(space, 3, 10, width_mult=0.25)
    _randomize_bn(net, 1)
    k = n_keep(net.n_optional, 0.34)
    mask = topk_mask(torch.randn(net.n_optional, generator=torch.Generator().manual_seed(2)), k)
    net.eval()
    fused = reparameterize_model(net.pruned(mask))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = net(x, mask)
        out = fused(x)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4
    assert fused_parity(MaskBound(net, mask), fused, x) < 1e-4
    # the fused model is plain convs: no multi-branch block left
    assert all(not m.branch for m in fused.modules() if hasattr(m, "branch_names"))
    # only kept branches are copied: dropping a branch changes the model
    other = mask.clone()
    on = int(torch.nonzero(other)[0])
    other[on] = 0.0
    with torch.no_grad():
        assert not torch.allclose(net(x, other), ref)


def test_tiny_run_keeps_exactly_k_after_warmup_and_fuses(tmp_path):
    space = get_space("repnas")
    table = branch_table(space)
    ctx = SearchContext(space, table, tiny_data(), seed=0, workdir=tmp_path, evals=1, options=dict(TINY))
    res = run_algorithm("repnas", ctx)
    ex = res.extra
    k = ex["k"]
    assert k == n_keep(ex["total_optional"], 0.34) and ex["total_optional"] == 32
    phases = [h["phase"] for h in res.history]
    assert phases == ["warmup", "search", "finetune"]
    for h in res.history[1:]:
        assert h["kept_per_step"] and all(c == k for c in h["kept_per_step"])
    assert ex["kept_optional"] == k
    assert sum(len(b.split("+")) - 1 for b in ex["kept_branches"]) == k
    arch = res.archs[0]
    assert space.parse_arch(space.format_arch(arch)) == tuple(arch)
    assert res.predicted[0] == pytest.approx(float(table.predict(np.array([arch]))[0]))
    assert ex["fused_parity_rel"] < 1e-4
    assert ex["masked_val_acc"] == pytest.approx(ex["fused_val_acc"], abs=1.0 / 32 + 1e-9)
    assert (tmp_path / "repnas_model.pt").is_file()


def test_budget_drops_least_important_branches_and_other_spaces_are_refused():
    space = get_space("repnas")
    table = branch_table(space)
    cheapest = float(table.predict(np.zeros((1, space.n_layers), dtype=int))[0])
    budget = cheapest + 0.25 * 3  # room for only three optional branches
    scored = []

    def scorer(archs):
        scored.extend(archs)
        return np.array([0.01 * sum(a) for a in archs], dtype=float)

    res = run_algorithm("repnas", SearchContext(space, table, tiny_data(seed=1), budget=Budget(budget), evals=3,
                                                scorer=scorer, options=dict(TINY, epochs=1, finetune_epochs=0)))
    assert np.all(np.asarray(res.predicted) <= budget + 1e-9)
    assert res.extra["budget_fixes"] and res.extra["kept_optional"] <= 3
    assert 1 <= res.evals == len(scored) <= 3  # the final mask and noisy top-k alternatives, each within budget
    assert np.all(table.predict(np.array(scored)) <= budget + 1e-9)
    with pytest.raises(DataError, match="DBB"):
        fb = get_space("fbnet")
        run_algorithm("repnas", SearchContext(fb, LatencyTable("fbnet", np.ones((fb.n_layers, fb.n_choices))),
                                              tiny_data(), evals=1))


@pytest.mark.slow
def test_search_learns_digits_and_fused_model_keeps_accuracy():
    from latnas.latency_table import flops_table
    from latnas.search.data import load_data

    space = get_space("repnas")
    data = load_data(space=space, n_train=500, n_val=300, seed=0)
    opts = dict(epochs=3, warmup_epochs=1, finetune_epochs=1, width_mult=0.25, resolution=16)
    res = run_algorithm("repnas", SearchContext(space, flops_table(space), data, evals=1, options=opts))
    ex = res.extra
    assert ex["kept_optional"] == ex["k"] == 11
    assert ex["fused_parity_rel"] < 1e-4
    assert ex["fused_val_acc"] > 0.5  # chance is 0.1
    assert ex["fused_val_acc"] == pytest.approx(ex["masked_val_acc"], abs=2.0 / 300)
