"""The RepNAS branch-mask space: choices, allowed masks, and fusing whole models."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from latnas import get_space, reparameterize_model
from latnas.blocks import DiverseBranchBlock
from latnas.errors import LatnasError
from latnas.spaces.repnas import OPTIONAL_BRANCHES, branches_choice, choice_branches

torch.set_num_threads(1)


def test_choices_are_branch_bitmasks():
    space = get_space("repnas")
    assert space.n_choices == 2 ** len(OPTIONAL_BRANCHES)
    assert choice_branches(0) == "kxk"
    assert choice_branches(7) == "kxk+1x1+1x1_kxk+1x1_avg"
    for c in range(space.n_choices):
        assert branches_choice(choice_branches(c)) == c
        assert space.choices[c].op == "dbb"
        assert "kxk" in space.choices[c].branches.split("+")


def test_id_allowed_only_where_shape_is_kept():
    space = get_space("repnas")
    id_bit = 1 << OPTIONAL_BRANCHES.index("id")
    for slot in space.layers:
        keeps = slot.stride == 1 and slot.cin == slot.cout
        assert any(c & id_bit for c in slot.allowed) == keeps
        assert len(slot.allowed) == (16 if keeps else 8)


def test_arch_strings_are_comma_separated_and_validated():
    space = get_space("repnas")
    arch = space.random_arch(0)
    text = space.format_arch(arch)
    assert "," in text and space.parse_arch(text) == arch
    bad = list(arch)
    bad[0] = 15  # id on a layer that changes channels
    with pytest.raises(LatnasError):
        space.parse_arch(bad)


@pytest.mark.parametrize("seed", [0, 1])
def test_space_models_fuse_exactly(seed):
    space = get_space("repnas", num_classes=10)
    arch = space.random_arch(seed)
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
    spec = space.layer_block(1, 15)
    assert spec.op == "dbb" and spec.branches == "kxk+1x1+1x1_kxk+1x1_avg+id"
    block = spec.with_fused().build()
    assert block.fused
