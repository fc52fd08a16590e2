"""The RepNAS branch-mask space (the authors' six searchable branches + id always on): choices, masks, fusion."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from latnas import get_space, reparameterize_model
from latnas.schema.blocks import DiverseBranchBlock
from latnas.schema.errors import LatnasError
from latnas.schema.spaces.repnas import FOUR_BRANCH_DBB, KXK_ONLY, SEARCHABLE_BRANCHES, branches_choice, choice_branches

torch.set_num_threads(1)


def test_choices_are_bitmasks_over_the_six_searchable_branches():
    space = get_space("repnas")
    assert SEARCHABLE_BRANCHES == ("1x1", "1x1_avg", "kxk", "1x1_kxk", "1xk", "kx1")
    assert space.n_choices == 2 ** 6
    assert choice_branches(KXK_ONLY) == "kxk"
    assert choice_branches(FOUR_BRANCH_DBB) == "kxk+1x1+1x1_kxk+1x1_avg"
    assert choice_branches(63) == "kxk+1x1+1xk+kx1+1x1_kxk+1x1_avg"
    for c in range(space.n_choices):
        assert branches_choice(choice_branches(c)) == c
        assert space.choices[c].op == "dbb"
    assert branches_choice("kxk+id") == KXK_ONLY  # id is not searched
    with pytest.raises(LatnasError):
        branches_choice("kxk+avg")


def test_id_is_always_on_where_the_shape_is_kept_and_never_elsewhere():
    space = get_space("repnas")
    for slot in space.layers:
        keeps = slot.stride == 1 and slot.cin == slot.cout
        for c in (KXK_ONLY, 63):
            assert ("id" in space.layer_block(slot.index, c).branches.split("+")) == keeps
        # choice 0 (no searchable branch) only where id keeps the block alive
        assert (0 in slot.allowed) == keeps
        assert len(slot.allowed) == (64 if keeps else 63)
        if keeps:
            assert space.layer_block(slot.index, 0).branches == "id"


def test_arch_strings_are_comma_separated_and_validated():
    space = get_space("repnas")
    arch = space.random_arch(0)
    text = space.format_arch(arch)
    assert "," in text and space.parse_arch(text) == arch
    bad = list(arch)
    bad[0] = 0  # no branch at a layer that changes channels
    with pytest.raises(LatnasError):
        space.parse_arch(bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_space_models_fuse_exactly(seed):
    space = get_space("repnas", num_classes=10)
    arch = list(space.random_arch(seed))
    if seed == 2:  # identity-only layers and full six-branch layers
        arch = [0 if 0 in slot.allowed else 63 for slot in space.layers]
    model = space.build(arch)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
    model.eval()
    x = torch.randn(2, *space.input_shape, generator=gen)
    with torch.no_grad():
        ref = model(x)
        fused = reparameterize_model(model)
        out = fused(x)
    dbbs = [m for m in fused.modules() if isinstance(m, DiverseBranchBlock)]
    assert len(dbbs) == 1 + space.n_layers and all(m.fused for m in dbbs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert float((out - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_layer_blocks_can_be_built_fused_for_profiling():
    space = get_space("repnas")
    spec = space.layer_block(1, FOUR_BRANCH_DBB)
    assert spec.op == "dbb" and spec.branches == "kxk+1x1+1x1_kxk+1x1_avg+id"
    block = spec.with_fused().build()
    assert block.fused
