"""The per-source stage correction of the robust transfer fit (``source_stages``): a target that
follows one source in its early stages and another in its late ones is fit from k = 20 samples."""
from __future__ import annotations

import numpy as np
import pytest

from latnas.schema.spaces import get_space
from predictors.data import ArchTable
from predictors.metrics import latency_metrics
from predictors.transfer import TransferPredictor, fit_source_models


@pytest.fixture(scope="module")
def table():
    space = get_space("fbnet")
    rng = np.random.default_rng(0)
    archs = np.column_stack([rng.choice(np.asarray(s.allowed), size=600) for s in space.layers]).astype(np.int64)
    stages = np.array([s.stage for s in space.layers])
    early = stages <= np.median(stages)
    rows = np.arange(space.n_layers)
    tabs = {name: rng.uniform(0.2, 2.0, size=(space.n_layers, space.n_choices)) for name in ("a", "b", "c")}
    per = {name: t[rows, archs] for name, t in tabs.items()}
    cols = {f"{name}_ms": 1.0 + p.sum(axis=1) for name, p in per.items()}
    # the target: like source a in the early stages, like source b (3x) in the late ones
    cols["target_ms"] = 1.0 + per["a"][:, early].sum(axis=1) + 3.0 * per["b"][:, ~early].sum(axis=1)
    strings = [space.format_arch(a) for a in archs]
    return ArchTable(space="fbnet", archs=archs, arch_strings=strings, columns=cols)


@pytest.mark.parametrize("seed", [0, 1])
def test_source_stages_fit_a_stagewise_target(table, seed):
    sources = fit_source_models(table, ["a_ms", "b_ms", "c_ms"])
    y = table.column("target_ms")
    perm = np.random.default_rng(seed).permutation(len(y))
    tr, te = perm[:20], perm[20:]
    err = {}
    for on in (True, False):
        model = TransferPredictor(space="fbnet", source_models=sources, source_stages=on).fit(table.archs[tr], y[tr])
        pred = model.predict(table.archs[te])
        assert np.all(pred > 0)
        err[on] = latency_metrics(y[te], pred)["mape"]
        if on:  # the correction lives in the saved tables: a state round trip predicts the same
            clone = TransferPredictor(space="fbnet", source_models=sources).set_state(model.to_state(), {})
            np.testing.assert_allclose(clone.predict(table.archs[te]), pred, rtol=1e-9)
    assert err[True] < 0.85 * err[False], err  # measured: 0.051 vs 0.068 (seed 0)
