"""The block/space schema: FBNet macro-architecture, ProxylessNAS space, registries."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from latnas import BlockSpec, build_model, get_space
from latnas.schema.errors import DataError, ShapeError, UnknownNameError
from latnas.schema.spaces import SPACES


def _readme_table(readme: str) -> dict[str, list[int]]:
    """Parse the macro-architecture lists out of the shared data README."""
    text = " ".join(readme.split())
    def grab(label: str) -> list[int]:
        m = re.search(label + r"[^\[]*`?\[([0-9, ]+)\]", text)
        assert m, f"{label} not found in README"
        return [int(v) for v in m.group(1).split(",")]
    return {
        "depths": grab("layers per stage"),
        "channels": grab("output channels"),
        "strides": grab("stride of the first layer of each stage"),
    }


def test_fbnet_matches_shared_readme(fbnet_data):
    readme = (fbnet_data / "README.md").read_text()
    table = _readme_table(readme)
    space = get_space("fbnet")
    assert space.n_layers == sum(table["depths"]) == 22
    assert space.n_choices == 9
    # choice names in the README's order
    ops = re.findall(r"`(\d) (k\d_e\d(?:_g2)?|skip)`", readme)
    assert [name for _, name in sorted(ops)] == space.choice_names
    # per-layer channel / stride table
    expected = []
    for c, d, s in zip(table["channels"], table["depths"], table["strides"]):
        expected += [(c, s)] + [(c, 1)] * (d - 1)
    assert [(slot.cout, slot.stride) for slot in space.layers] == expected
    assert space.layers[0].cin == 16  # first layer takes the 16 stem channels


def test_fbnet_whole_model_shapes():
    space = get_space("fbnet")
    arch = "7818488874147327324245"
    model = space.build(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    # stem, 22 layers, head conv, classifier
    assert len(model) == 1 + 22 + 2
    # input sizes per layer: a stage's first layer sees the previous resolution
    hw = [slot.h for slot in space.layers]
    assert hw == [32] + [32] * 4 + [32] + [16] * 3 + [16] + [8] * 3 + [8] * 4 + [8] + [4] * 3 + [4]
    head_conv = space.head[0]
    assert (head_conv.cin, head_conv.cout, head_conv.kernel, head_conv.h) == (352, 1504, 1, 4)


def test_fbnet_block_semantics():
    space = get_space("fbnet")
    # k3_e6 at layer 1 (24 -> 24, stride 1): residual inverted bottleneck
    b = space.layer_block(2, 3)
    assert (b.op, b.kernel, b.expansion, b.groups, b.cin, b.cout) == ("mbconv", 3, 6, 1, 24, 24)
    m = b.build()
    assert m.residual and m.expand[0].out_channels == 144 and m.depthwise[0].groups == 144
    # grouped 1x1 convs with channel shuffle
    g = space.layer_block(2, 1).build()
    assert g.expand[0].groups == 2 and g.project[0].groups == 2
    # skip: identity when shapes match, else conv 1x1
    assert isinstance(space.layer_block(2, 8).build(), torch.nn.Identity)
    sk = space.layer_block(1, 8).build()  # 16 -> 24
    assert isinstance(sk[0], torch.nn.Conv2d) and sk[0].kernel_size == (1, 1)


def test_unique_blocks_cover_every_layer_choice():
    space = get_space("fbnet")
    keys = {b.key for b in space.unique_blocks()}
    for layer, choice, blocks in space.layer_table():
        assert all(spec.key in keys for spec in blocks)
    assert all(s.key in keys for s in (*space.stem, *space.head))
    # duplicates collapse: layers 2..4 of a stage share blocks
    assert len(keys) < space.n_layers * space.n_choices


def test_proxyless_space():
    space = get_space("proxyless")
    assert space.input_shape == (3, 224, 224) and space.n_layers == 21
    names = space.choice_names
    assert names[:6] == ["k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6"] and names[6] == "skip"
    mask = space.allowed_mask()
    for slot in space.layers:
        can_skip = slot.stride == 1 and slot.cin == slot.cout
        assert mask[slot.index, 6] == can_skip
    assert not mask[list(space.vital), 6].any()  # the first layer of each stage cannot be skipped
    arch = space.random_arch(3)
    assert space.build(arch).eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    with pytest.raises(ShapeError, match="not allowed"):
        space.parse_arch([6] * 21)


def test_arch_parsing_errors():
    space = get_space("fbnet")
    with pytest.raises(DataError, match="22"):
        space.parse_arch("123")
    with pytest.raises(DataError, match="choice indices"):
        space.parse_arch("x" * 22)
    with pytest.raises(DataError, match="out of range"):
        space.parse_arch([9] * 22)
    a = space.random_arch(0)
    assert space.parse_arch(space.format_arch(a)) == a


def test_random_archs_unique_and_seeded():
    space = get_space("fbnet")
    a = space.random_archs(50, rng=1)
    assert len(set(a)) == 50 and a == space.random_archs(50, rng=1)


def test_block_spec_key_and_dict_round_trip():
    spec = BlockSpec("mbconv", 16, 24, 32, 32, stride=2, kernel=5, expansion=3, groups=2, batch=4)
    assert spec.key == "mbconv_i16_o24_h32_w32_s2_k5_e3_g2_b4"
    assert BlockSpec.from_dict(spec.to_dict()) == spec
    assert hash(spec) == hash(BlockSpec.from_dict(spec.to_dict()))
    assert spec.with_fused().key.endswith("_fused")
    with pytest.raises(DataError, match="unknown block spec fields"):
        BlockSpec.from_dict({**spec.to_dict(), "evil": 1})
    with pytest.raises(DataError, match="must be int"):
        BlockSpec.from_dict({**spec.to_dict(), "cin": "16"})


@pytest.mark.parametrize(
    "spec, message",
    [
        (BlockSpec("mbconv", 15, 24, 8, 8, groups=2), "does not divide"),
        (BlockSpec("conv", 16, 16, 8, 8, kernel=4), "odd"),
        (BlockSpec("conv", 16, 16, 1, 1, stride=2), "no spatial positions"),
        (BlockSpec("conv", 0, 16, 8, 8), "cin must be >= 1"),
        (BlockSpec("conv", 16, 16, 0, 8), "h must be >= 1"),
    ],
)
def test_impossible_shapes_are_one_line_errors(spec, message):
    with pytest.raises(ShapeError, match=message) as info:
        spec.build()
    assert "\n" not in str(info.value)


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="unknown op 'nope'.*known:"):
        BlockSpec("nope", 8, 8, 8, 8).build()
    with pytest.raises(UnknownNameError, match="unknown space"):
        SPACES.get("nope")


def test_build_model_checks_connections():
    a = BlockSpec("conv", 3, 8, 16, 16, stride=2)
    b = BlockSpec("conv", 8, 8, 16, 16)  # wrong: previous output is 8x8
    with pytest.raises(ShapeError, match="expects input"):
        build_model([a, b])
    ok = build_model([a, BlockSpec("conv", 8, 8, 8, 8)])
    assert ok(torch.zeros(1, 3, 16, 16)).shape == (1, 8, 8, 8)


def test_output_shape_matches_module():
    space = get_space("fbnet", batch=2)
    for spec in space.unique_blocks()[:40]:
        out = spec.build().eval()(torch.zeros(spec.input_shape))
        assert tuple(out.shape) == tuple(spec.output_shape), spec.key


def test_cli_version_and_unknown_space_error(capsys):
    from latnas.cli.main import main

    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("latnas ") and "torch 2.13" in out
    rc = main(["profile", "--space", "nope", "--store", "/nonexistent-dir/x.db"])
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and "Traceback" not in err
