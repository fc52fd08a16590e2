"""The weight-sharing one-shot supernet: shapes, shared weights, training, BN recalibration, stored weights, scorer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latnas.schema.errors import DataError
from latnas.search.base import SearchData
from latnas.search.oneshot import NetConfig, SupernetConfig, SupernetScorer, TrainConfig, build_supernet, sample_path
from latnas.search.oneshot.net import NB201Supernet, normalise_path
from latnas.search.oneshot.store import load_state
from latnas.search.oneshot.train import train_paths
from latnas.search.scorers import ScorerConfig, make_scorer
from latnas.schema.spaces import get_space

SPACES = ["fbnet", "nb201", "repnas"]
TINY_NET = NetConfig(width_mult=0.125, head_channels=16, cells_per_stage=1, nb201_channels=4)
TINY_TRAIN = TrainConfig(epochs=1, batch_size=16, max_batches=2, bn_batches=1, bn_batch_size=16)


def tiny_data(seed: int = 0, n: int = 48, classes: int = 4) -> SearchData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()  # class-dependent mean: learnable
    return SearchData(x[: n * 2 // 3], y[: n * 2 // 3], x[n * 2 // 3:], y[n * 2 // 3:], classes, f"tiny{seed}")


def tiny_config(tmp_path=None, **train) -> SupernetConfig:
    return SupernetConfig(net=TINY_NET, train=TrainConfig(**{**TINY_TRAIN.__dict__, **train}), resolution=8,
                          weights=str(tmp_path) if tmp_path is not None else "none")


@pytest.mark.parametrize("name", SPACES)
def test_every_choice_has_its_own_weights_and_a_path_runs_only_its_ops(name):
    space = get_space(name)
    torch.manual_seed(0)
    net = build_supernet(space, 4, TINY_NET)
    x = torch.randn(2, 3, 8, 8)
    arch = (3, 2, 3, 1, 3, 2) if name == "nb201" else space.random_arch(1)  # nb201: a connected cell
    assert net(x, arch).shape == (2, 4)
    # one SGD step on one path changes only that path's choice weights (and the shared stem/head)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x, arch), torch.tensor([0, 1])).backward()
    touched = {id(p) for l, c in enumerate(arch) for m in net.choice_modules(l, c) for p in m.parameters()}
    for l in range(space.n_layers):
        for c in space.layers[l].allowed:
            for m in net.choice_modules(l, c):
                for p in m.parameters():
                    if id(p) not in touched:
                        assert p.grad is None or not p.grad.any(), (l, c)
    on_path = [p for l, c in enumerate(arch) for m in net.choice_modules(l, c) for p in m.parameters()]
    assert any(p.grad is not None and p.grad.any() for p in on_path) or not on_path  # ... and they do learn
    assert set(before) == set(net.state_dict())


def test_nb201_supernet_is_the_macro_network_with_all_ops_on_every_edge():
    space = get_space("nb201")
    net = build_supernet(space, 10, NetConfig(nb201_channels=16, cells_per_stage=5))
    assert isinstance(net, NB201Supernet)
    cells = [b for stage in net.stages for b in stage if type(b).__name__ == "SupernetCell"]
    assert len(cells) == 15 and all(len(cell.edges) == 6 and len(cell.edges[0].ops) == 5 for cell in cells)
    # conv weights per edge: 1x1 and 3x3 at each stage's width, like the benchmark's network
    conv3 = net.choice_modules(0, 3)
    assert len(conv3) == 15 and conv3[0][1].weight.shape == (16, 16, 3, 3) and conv3[-1][1].weight.shape == (64, 64, 3, 3)
    # an all-"none" cell path outputs zeros into the head (as the benchmark's cut-off cells)
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    out = net(x, (0,) * 6)
    assert torch.allclose(out, out[0].expand_as(out))


def test_uniform_sampling_stays_in_the_mask_and_multi_branch_sizes():
    mask = np.zeros((3, 5), dtype=bool)
    mask[0, [1, 2]] = mask[1, [4]] = mask[2, [0, 1, 3]] = True
    rng = np.random.default_rng(0)
    seen = [set() for _ in range(3)]
    for _ in range(200):
        path = sample_path(mask, rng)
        assert all(len(p) == 1 and mask[l, p[0]] for l, p in enumerate(path))
        for l, p in enumerate(path):
            seen[l] |= set(p)
    assert seen == [{1, 2}, {4}, {0, 1, 3}]  # every allowed choice gets trained
    sizes = {len(sample_path(mask, rng, multi_branch=3)[2]) for _ in range(100)}
    assert sizes == {1, 2, 3}
    assert normalise_path([2, (3, 1)]) == ((2,), (1, 3))


def test_bn_recalibration_makes_a_score_independent_of_what_was_scored_before():
    space = get_space("nb201")
    data = tiny_data()
    a, b = space.random_archs(2, 3)
    one = SupernetScorer(space, data, tiny_config())
    two = SupernetScorer(space, data, tiny_config())
    s1 = one([a, b])
    s2 = two([b, a])
    assert s1[0] == s2[1] and s1[1] == s2[0]
    assert one.steps_trained == 2  # one epoch of max_batches=2 when first used


def test_stored_weights_are_reused_and_weights_only(tmp_path):
    space = get_space("nb201")
    data = tiny_data()
    archs = space.random_archs(3, 0)
    first = SupernetScorer(space, data, tiny_config(tmp_path))
    s1 = first(archs)
    assert first.steps_trained > 0 and len(list(tmp_path.glob("nb201-*.pt"))) == 1
    again = SupernetScorer(space, data, tiny_config(tmp_path))
    s2 = again(archs)
    assert again.steps_trained == 0 and again.fits[0].get("loaded")  # the second search trains nothing
    np.testing.assert_array_equal(s1, s2)
    state, meta = load_state(next(tmp_path.glob("nb201-*.pt")))
    assert meta["space"] == "nb201" and all(isinstance(v, torch.Tensor) for v in state.values())
    # another training config or other data: another key, trained again
    other = SupernetScorer(space, data, tiny_config(tmp_path, lr=0.01))
    other(archs[:1])
    assert other.steps_trained > 0 and len(list(tmp_path.glob("nb201-*.pt"))) == 2
    moved = SupernetScorer(space, tiny_data(seed=1), tiny_config(tmp_path))
    moved(archs[:1])
    assert moved.steps_trained > 0


def test_corrupt_weights_file_is_a_one_line_error(tmp_path):
    space = get_space("nb201")
    scorer = SupernetScorer(space, tiny_data(), tiny_config(tmp_path))
    scorer.fit()
    path = next(tmp_path.glob("nb201-*.pt"))
    path.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="cannot be read"):
        SupernetScorer(space, tiny_data(), tiny_config(tmp_path)).fit()


def test_fit_with_drop_resets_only_the_ops_outside_the_mask():
    space = get_space("fbnet")
    scorer = SupernetScorer(space, tiny_data(), tiny_config())
    scorer.fit()
    mask = space.allowed_mask()
    mask[3, 7] = False
    kept = [p.clone() for p in scorer.net.choice_modules(3, 6)[0].parameters()]
    dropped = [p.clone() for p in scorer.net.choice_modules(3, 7)[0].parameters()]
    scorer.fit(mask, epochs=0, drop=True)
    assert all(torch.equal(a, b) for a, b in zip(kept, scorer.net.choice_modules(3, 6)[0].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(dropped, scorer.net.choice_modules(3, 7)[0].parameters()))


def test_training_lowers_the_loss_of_sampled_paths():
    space = get_space("nb201")
    data = tiny_data(n=96)
    torch.manual_seed(0)
    net = build_supernet(space, 4, TINY_NET)
    mask = space.allowed_mask()
    rng = np.random.default_rng(0)
    paths = [sample_path(mask, rng) for _ in range(4)]

    def loss() -> float:
        net.train()
        with torch.no_grad():
            return float(np.mean([torch.nn.functional.cross_entropy(net(data.x_train, p), data.y_train) for p in paths]))

    before = loss()
    train_paths(net, data, mask, TrainConfig(epochs=8, batch_size=32, lr=0.05), seed=0)
    assert loss() < before


def test_scorer_registry_and_options():
    space = get_space("nb201")
    config = ScorerConfig(space=space, data=tiny_data(), options={"epochs": "1", "max_batches": "2", "batch_size": "16",
                                                                  "width_mult": "0.125", "head_channels": "16",
                                                                  "bn_batches": "1", "weights": "none", "resolution": "8"})
    scorer = make_scorer("supernet", config)
    scores = scorer(space.random_archs(2, 0))
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
    assert scorer.score_path([slot.allowed[:2] for slot in space.layers]) >= 0  # multi-branch paths score too
    with pytest.raises(DataError, match="unknown options bogus"):
        make_scorer("supernet", ScorerConfig(space=space, data=tiny_data(), options={"bogus": 1}))
    with pytest.raises(DataError, match="epochs='many' is not a valid int"):
        make_scorer("supernet", ScorerConfig(space=space, data=tiny_data(), options={"epochs": "many"}))
