"""Analytic features and latency lookup tables."""
from __future__ import annotations

import numpy as np
import pytest

from latnas import BlockSpec, LatencyTable, block_cost, flops_table, get_space
from latnas.schema.errors import PredictorFileError


def test_conv_cost_matches_hand_count():
    spec = BlockSpec("conv", 8, 16, 10, 10, stride=1, kernel=3)
    cost = block_cost(spec)
    macs = 16 * 10 * 10 * 8 * 3 * 3
    assert cost.macs == macs and cost.flops == 2 * macs
    assert cost.params == 16 * 8 * 9 + 2 * 16  # conv + BN affine
    assert cost.weight_bytes == 4 * cost.params
    assert cost.activation_bytes > 4 * (8 * 100 + 16 * 100) - 1
    assert cost.arithmetic_intensity == pytest.approx(cost.flops / (cost.weight_bytes + cost.activation_bytes))


def test_mbconv_cost_grows_with_expansion_and_kernel():
    base = dict(op="mbconv", cin=32, cout=32, h=16, w=16)
    e1, e6 = block_cost(BlockSpec(**base, expansion=1)), block_cost(BlockSpec(**base, expansion=6))
    k3, k5 = block_cost(BlockSpec(**base, expansion=3, kernel=3)), block_cost(BlockSpec(**base, expansion=3, kernel=5))
    assert e6.flops > 5 * e1.flops and k5.flops > k3.flops
    assert block_cost(BlockSpec("skip", 32, 32, 16, 16)).flops == 0


def test_flops_table_matches_whole_model_count():
    space = get_space("fbnet")
    table = flops_table(space)
    arch = space.random_arch(7)
    total = sum(block_cost(b).flops for b in space.blocks(arch)) / 1e6
    assert table.predict(np.array([arch]))[0] == pytest.approx(total)


def test_latency_table_correction_and_round_trip(tmp_path):
    t = LatencyTable(space="x", table=np.array([[1.0, 2.0], [3.0, np.nan]]), knots_x=[0, 10], knots_y=[1, 21])
    archs = np.array([[0, 0], [1, 0]])
    np.testing.assert_allclose(t.block_sum(archs), [4.0, 5.0])
    np.testing.assert_allclose(t.predict(archs), [9.0, 11.0])
    assert np.isinf(t.predict(np.array([[0, 1]]))[0])  # disallowed choice
    np.testing.assert_allclose(t.predict(np.array([[1, 0]]) * 0 + [[1, 0]]), [11.0])
    arch, best = t.min_arch()
    assert list(arch) == [0, 0] and best == pytest.approx(9.0)
    # extrapolation beyond the knots stays linear
    far = LatencyTable(space="x", table=np.array([[100.0]]), knots_x=[0, 10], knots_y=[1, 21])
    assert far.predict(np.array([[0]]))[0] == pytest.approx(201.0)
    path = tmp_path / "t.json"
    t.save(path)
    back = LatencyTable.load(path)
    np.testing.assert_allclose(back.predict(archs), t.predict(archs))
    path.write_text("{not json")
    with pytest.raises(PredictorFileError, match="not valid JSON"):
        LatencyTable.load(path)
    path.write_text('{"schema": "other"}')
    with pytest.raises(PredictorFileError, match="not a latnas latency table"):
        LatencyTable.load(path)
