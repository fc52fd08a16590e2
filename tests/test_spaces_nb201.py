"""The NAS-Bench-201 space: arch strings, the built network, cost tables, the shipped table."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from latnas.schema.errors import DataError, LatnasError
from latnas.schema.latency_table import flops_table
from latnas.schema.spaces import get_space
from predictors.features import arch_totals

REPO = Path(__file__).resolve().parents[1]


def nb201_csv() -> Path | None:
    env = os.environ.get("LATNAS_NB201_DATA")
    for d in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "nb201"]:
        if (d / "nb201_accuracy_latency.csv").is_file():
            return d / "nb201_accuracy_latency.csv"
    return None


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# Parameter counts of the whole CIFAR-10 network: the all-nor_conv_3x3 cell is
# NAS-Bench-201's largest model (1,531,546 params, the paper's "1.53 MB"); cells
# without convs leave only stem, reductions and head (0.073 MB, the smallest).
@pytest.mark.parametrize(
    "arch, params",
    [("333333", 1_531_546), ("000000", 73_306), ("111111", 73_306), ("444444", 73_306), ("222222", 241_306)],
)
def test_whole_network_params(space, arch, params):
    model = space.build(arch)
    assert _params(model) == params
    assert arch_totals(space, np.array([space.parse_arch(arch)]))[0, 1] == pytest.approx(params / 1e6)


def test_shapes_and_structure(space):
    assert space.n_layers == 6 and space.n_choices == 5 and space.size() == 15_625
    assert space.choice_names == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    model = space.build("321043").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    assert isinstance(model[-1][-1], torch.nn.Linear)  # RWE and training swap the last linear
    cells = [m for m in model.modules() if type(m).__name__ == "NB201Cell"]
    reductions = [m for m in model.modules() if type(m).__name__ == "ResidualReduction"]
    assert len(cells) == 15 and len(reductions) == 2
    pool = [m for m in model.modules() if isinstance(m, torch.nn.AvgPool2d) and m.kernel_size == 3]
    assert pool and all(not p.count_include_pad for p in pool)
    assert get_space("nb201", num_classes=100).build("333333")(torch.randn(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("arch", ["000000", "100000", "010030", "333000"])
def test_cell_cut_off_from_input_outputs_zeros(space, arch):
    # node 3 only receives "none" edges (or edges from nodes that do): every cell outputs zeros
    from latnas.schema.blocks.nb201 import NB201Cell

    cell = NB201Cell(space.parse_arch(arch), 16)
    out = cell(torch.randn(2, 16, 8, 8))
    assert out.shape == (2, 16, 8, 8) and torch.count_nonzero(out) == 0
    model = space.build(arch).eval()
    with torch.no_grad():
        y = model(torch.randn(3, 3, 32, 32))
    assert torch.isfinite(y).all() and torch.allclose(y, y[:1].expand_as(y))  # output ignores the input


def test_cell_sums_edges(space):
    # "skip_connect" on every edge: n1 = x, n2 = 2x, n3 = x + x + 2x = 4x
    from latnas.schema.blocks.nb201 import NB201Cell

    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(NB201Cell((1,) * 6, 16)(x), 4 * x)


def test_parse_round_trips(space):
    bench = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    a = space.parse_arch(bench)
    assert a == (3, 3, 4, 1, 3, 1)
    assert space.arch_str(a) == bench and space.format_arch(a) == "334131"
    assert space.parse_arch("334131") == a == space.parse_arch(list(a))
    for arch in space.random_archs(20, rng=0):
        assert space.parse_arch(space.arch_str(arch)) == arch
        assert space.parse_arch(space.format_arch(arch)) == arch


@pytest.mark.parametrize(
    "bad",
    ["33333", "333335", "|nor_conv_3x3~0|+|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "abcdef"],
)
def test_bad_archs_are_one_line_errors(space, bad):
    with pytest.raises(LatnasError) as exc:
        space.parse_arch(bad)
    assert "\n" not in str(exc.value)


def test_block_tables_cover_the_whole_network(space):
    arch = space.parse_arch("321043")
    conv3 = space.layer_blocks(0, 3)
    assert len(conv3) == 15 and {(b.cin, b.h) for b in conv3} == {(16, 32), (32, 16), (64, 8)}
    assert space.layer_blocks(0, 0) == ()
    assert space.layer_block(0, 3) == conv3[0]
    fixed = space.fixed_blocks()
    assert [b.op for b in fixed] == ["nb201_stem", "nb201_reduction", "nb201_reduction", "nb201_lastact", "classifier"]
    blocks = space.blocks(arch)
    assert len(blocks) == len(fixed) + 15 * sum(1 for c in arch if c)
    assert sorted(b.key for b in blocks) == sorted(b.key for b in [*fixed, *space.decode(arch)])
    unique = {b.key for b in space.unique_blocks()}
    assert {b.key for b in blocks} <= unique
    for spec in space.unique_blocks():
        spec.build()  # every profiled block builds through the op registry


@pytest.mark.parametrize("arch", ["333333", "321043", "000000", "421211"])
def test_flops_table_matches_counted_model(space, arch):
    model = space.build(arch).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 32, 32))
    a = np.array([space.parse_arch(arch)])
    mflops = counter.get_total_flops() / 1e6
    assert flops_table(space).predict(a)[0] == pytest.approx(mflops)
    assert arch_totals(space, a)[0, 0] == pytest.approx(mflops)
    assert arch_totals(space, a)[0, 1] == pytest.approx(_params(model) / 1e6)


def test_batch_and_resolution_options():
    sp = get_space("nb201", batch=4, resolution=16)
    assert all(b.batch == 4 for b in sp.blocks("333333"))
    assert sp.with_batch(2).fixed_blocks()[1].batch == 2
    assert sp.build("333333")(torch.randn(4, 3, 16, 16)).shape == (4, 10)
    with pytest.raises(DataError):
        get_space("nb201", resolution=30)


def test_arch_index_rows_map_to_the_same_arch(space):
    path = nb201_csv()
    if path is None:
        pytest.skip("shared NAS-Bench-201 table not found (set LATNAS_NB201_DATA or place ../shared/data/nb201)")
    rows = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["arch_index"])] = row
    assert len(rows) == 15_625
    archs = {space.parse_arch(r["arch_str"]) for r in rows.values()}
    assert len(archs) == 15_625  # every arch of the space, once
    for idx in (0, 1, 857, 6111, 9930, 15624):
        arch = space.parse_arch(rows[idx]["arch_str"])
        assert space.arch_str(arch) == rows[idx]["arch_str"]
    # README checks: best CIFAR-10 test accuracy 94.37 at index 6111; a cut-off cell scores chance
    assert float(rows[6111]["c10_test_acc"]) == pytest.approx(94.37, abs=0.01)
    cut = [r for r in rows.values() if space.parse_arch(r["arch_str"])[3:6] == (0, 0, 0)]
    assert cut and max(float(r["c10_test_acc"]) for r in cut) < 15


def test_profile_whole_model_with_onnxruntime(space):
    from profilers import available_backends, profile_model, quick_config

    ok, reason = available_backends().get("onnxruntime", (False, "not registered"))
    if not ok:
        pytest.skip(f"onnxruntime unavailable: {reason}")
    cfg = quick_config(min_repeats=3, max_repeats=5, max_seconds=0.2, warmup_runs=1)
    for arch in ("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|", "111111"):
        m = profile_model("onnxruntime", space, arch, cfg)
        assert m.kind == "model" and m.spec["space"] == "nb201"
        assert math.isfinite(m.stats.median_ms) and m.stats.median_ms > 0
