"""Few-shot transfer on the shared FBNet data: beats training on the k target rows alone."""
from __future__ import annotations

import numpy as np
import pytest

from latnas.schema.spaces import get_space
from predictors.data import find_fbnet_csv, load_arch_table
from predictors.metrics import latency_metrics
from predictors.models import OneHotRidge
from predictors.transfer import TransferPredictor, fit_source_models

CSV = find_fbnet_csv()
pytestmark = [pytest.mark.data, pytest.mark.skipif(CSV is None, reason="shared FBNet latency data not found (set LATNAS_FBNET_DATA)")]


@pytest.fixture(scope="module")
def table():
    return load_arch_table(CSV, get_space("fbnet"))


@pytest.fixture(scope="module")
def all_sources(table):
    """One additive model per device on all rows (the other devices' offline profiles)."""
    return fit_source_models(table, list(table.columns))


@pytest.mark.parametrize("target", ["raspi4_ms", "1080ti_1_ms"])
def test_transfer_beats_target_only_at_k20(table, all_sources, target):
    sources = {c: m for c, m in all_sources.items() if c != target}  # never the target's own model
    y = table.column(target)
    gain = {"spearman": [], "within_10pct": []}
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(len(table))
        tr, te = perm[:20], perm[20:]
        alone = latency_metrics(y[te], OneHotRidge().fit(table.archs[tr], y[tr]).predict(table.archs[te]))
        model = TransferPredictor(source_models=sources).fit(table.archs[tr], y[tr])
        moved = latency_metrics(y[te], model.predict(table.archs[te]))
        gain["spearman"].append(moved["spearman"] - alone["spearman"])
        gain["within_10pct"].append(moved["within_10pct"] - alone["within_10pct"])
        assert moved["spearman"] > 0.9
    assert np.mean(gain["spearman"]) > 0 and np.mean(gain["within_10pct"]) > 0, gain


def test_transfer_uses_only_archs_at_prediction(table, all_sources):
    """Predictions depend on the arch only: changing measured source latencies after fitting changes nothing."""
    sources = {c: all_sources[c] for c in ("fpga_ms", "gold_6226_ms")}
    y = table.column("raspi4_ms")
    model = TransferPredictor(source_models=sources).fit(table.archs[:20], y[:20])
    before = model.predict(table.archs[100:200])
    table.columns["fpga_ms"] = table.columns["fpga_ms"] * 3.0
    try:
        np.testing.assert_array_equal(model.predict(table.archs[100:200]), before)
    finally:
        table.columns["fpga_ms"] = table.columns["fpga_ms"] / 3.0
