"""DiverseBranchBlock: branch-vs-fused parity over random configs and random BN stats."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import latnas
from latnas.schema.blocks import BRANCH_NAMES, DiverseBranchBlock
from latnas.schema.errors import LatnasError, ShapeError, UnknownNameError
from latnas.reparam import reparameterize_model
from latnas.schema.spec import BlockSpec

torch.set_num_threads(1)


def randomise_bn(module: nn.Module, seed: int) -> None:
    """Random running stats and affine parameters on every BN (never fresh BN)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.05)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


@st.composite
def dbb_configs(draw):
    kernel = draw(st.sampled_from([1, 3, 5, 7]))
    stride = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        groups = draw(st.integers(1, 6))
        cin = cout = groups
    elif kind == "grouped":
        groups = draw(st.sampled_from([2, 3]))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    else:
        groups = 1
        cin, cout = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if draw(st.booleans()) and stride == 1:
        cout = cin  # make the id branch possible more often
    fits = [b for b in BRANCH_NAMES if b != "id" or (cin == cout and stride == 1)]
    mask = draw(st.lists(st.sampled_from(fits), min_size=1, max_size=len(fits), unique=True))
    branches = None if draw(st.integers(0, 5)) == 0 else mask
    h = draw(st.integers(max(stride, 1), 11))
    w = draw(st.integers(max(stride, 1), 11))
    seed = draw(st.integers(0, 2**16))
    act = draw(st.booleans())
    return dict(cin=cin, cout=cout, kernel=kernel, stride=stride, groups=groups, branches=branches, h=h, w=w, seed=seed, act=act)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=dbb_configs())
def test_dbb_fused_matches_branches(cfg):
    block = DiverseBranchBlock(cfg["cin"], cfg["cout"], cfg["kernel"], cfg["stride"], cfg["groups"],
                               branches=cfg["branches"], act=cfg["act"])
    randomise_bn(block, cfg["seed"])
    block.eval()
    x = torch.randn(2, cfg["cin"], cfg["h"], cfg["w"], generator=torch.Generator().manual_seed(cfg["seed"]))
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        out = block(x)
    assert block.fused and block.deploy
    assert len(list(block.branch)) == 0
    assert out.shape == ref.shape
    assert max_rel_diff(out, ref) <= 1e-5


def test_default_branches_are_every_branch_that_fits():
    assert DiverseBranchBlock(4, 4, 3).branch_names == BRANCH_NAMES
    assert "id" not in DiverseBranchBlock(4, 4, 3, stride=2).branch_names
    assert "id" not in DiverseBranchBlock(4, 8, 3).branch_names
    assert DiverseBranchBlock(4, 4, 3, branches="1x1_avg+kxk").branch_names == ("kxk", "1x1_avg")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, branches="kxk+id"),
        dict(in_channels=4, out_channels=8, kernel_size=3, branches="id"),
        dict(in_channels=6, out_channels=6, kernel_size=3, groups=4),
        dict(in_channels=4, out_channels=4, kernel_size=4),
        dict(in_channels=4, out_channels=4, kernel_size=3, padding=0),
        dict(in_channels=0, out_channels=4, kernel_size=3),
    ],
)
def test_unfusable_configs_are_refused_with_one_line(kwargs):
    with pytest.raises(ShapeError) as err:
        DiverseBranchBlock(**kwargs)
    assert "\n" not in str(err.value)


def test_unknown_branch_name():
    with pytest.raises(UnknownNameError, match="1x3"):
        DiverseBranchBlock(4, 4, 3, branches="kxk+1x3")


def test_reparameterize_is_idempotent_and_keeps_output():
    block = DiverseBranchBlock(4, 4, 3)
    randomise_bn(block, 3)
    block.eval()
    x = torch.randn(1, 4, 6, 6)
    ref = block(x)
    block.reparameterize()
    weight = block.reparam.weight.clone()
    assert block.reparameterize() is block
    assert torch.equal(block.reparam.weight, weight)
    assert max_rel_diff(block(x), ref) <= 1e-5


def test_fused_block_state_dict_has_only_the_conv():
    block = DiverseBranchBlock(4, 8, 3, stride=2).reparameterize()
    assert set(block.state_dict()) == {"reparam.weight", "reparam.bias"}


def test_reparameterize_model_walks_nested_modules_and_is_idempotent():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(DiverseBranchBlock(8, 8, 3), DiverseBranchBlock(8, 8, 5, groups=8)),
        DiverseBranchBlock(8, 16, 3, stride=2),
    )
    randomise_bn(model, 7)
    model.train()
    x = torch.randn(2, 3, 9, 9)
    ref = model.eval()(x)
    model.train()
    fused = reparameterize_model(model)
    assert not fused.training
    assert model.training and not model[3][0].fused  # a copy by default
    assert all(m.fused for m in fused.modules() if isinstance(m, DiverseBranchBlock))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())  # conv-BN folded too
    assert max_rel_diff(fused(x), ref) <= 1e-5
    again = reparameterize_model(fused, inplace=True)
    assert again is fused
    assert max_rel_diff(again(x), ref) <= 1e-5


def test_reparameterize_model_calls_timm_style_names():
    calls = []

    class Deployable(nn.Module):
        def switch_to_deploy(self):
            calls.append("switch_to_deploy")

    class Fusable(nn.Module):
        def fuse(self):
            calls.append("fuse")

    class VAEish(nn.Module):
        def reparameterize(self, mu, logvar):  # same name, different meaning: must not be called
            calls.append("vae")

    reparameterize_model(nn.Sequential(Deployable(), Fusable(), VAEish()), inplace=True)
    assert sorted(calls) == ["fuse", "switch_to_deploy"]


def test_top_level_exports():
    assert latnas.DiverseBranchBlock is DiverseBranchBlock
    assert latnas.reparameterize_model is reparameterize_model


def test_blockspec_dbb_builds_multi_branch_or_fused():
    spec = BlockSpec(op="dbb", cin=8, cout=8, h=8, w=8, kernel=3, branches="kxk+1x1+1x1_kxk+1x1_avg+id")
    multi = spec.build()
    fused = spec.with_fused().build()
    assert isinstance(multi, DiverseBranchBlock) and not multi.fused
    assert multi.branch_names == ("kxk", "1x1", "1x1_kxk", "1x1_avg", "id")
    assert fused.fused
    assert fused(torch.randn(*spec.input_shape)).shape == spec.output_shape
    assert multi(torch.randn(*spec.input_shape)).shape == spec.output_shape


def test_blockspec_dbb_validation_is_one_line():
    with pytest.raises(LatnasError) as err:
        BlockSpec(op="dbb", cin=8, cout=16, h=8, w=8, branches="kxk+id").validate()
    assert "id" in str(err.value) and "\n" not in str(err.value)
