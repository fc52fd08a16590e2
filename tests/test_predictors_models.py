"""Arch- and block-level predictors: fit/predict on synthetic data, sklearn API conventions, metrics."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from latnas.schema.errors import DataError
from latnas.schema.spaces import get_space
from predictors.block_models import BlockSumPredictor, LookupTableSum, PerOpRandomForest
from predictors.data import load_block_table
from predictors.features import BLOCK_FEATURE_NAMES, arch_feature_names, arch_features, block_features
from predictors.metrics import METRIC_KEYS, flops_baseline, latency_metrics, quantisation_bound
from predictors.models import FlopsLinear, OneHotRidge, ParamsLinear, XGBLatencyPredictor
from predictors.registry import BLOCK_PREDICTORS, PREDICTORS
from predictors.synthetic import synthetic_arch_table, synthetic_block_records


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def table(space):
    return synthetic_arch_table(space, n=400, seed=1, noise=0.01)


def _split(table, col="toy_ms", n=250):
    y = table.columns[col]
    return table.archs[:n], y[:n], table.archs[n:], y[n:]


def test_features_shapes_and_names(space, table):
    x = arch_features(space, table.archs[:5])
    assert x.shape == (5, space.n_layers * space.n_choices + 2)
    assert len(arch_feature_names(space)) == x.shape[1]
    assert np.all(x[:, :-2].sum(axis=1) == space.n_layers)  # one choice per layer
    assert np.all(x[:, -2] > 0)  # total MFLOPs
    b = block_features(space.decode(table.arch_strings[0]))
    assert b.shape == (space.n_layers, len(BLOCK_FEATURE_NAMES))


# the data are additive in per-block cost, so FLOPs explain them almost fully; params only partly
@pytest.mark.parametrize("cls,min_w5,min_r2", [(OneHotRidge, 0.95, 0.95), (XGBLatencyPredictor, 0.95, 0.95),
                                              (FlopsLinear, 0.95, 0.95), (ParamsLinear, 0.2, 0.2)])
def test_arch_models_fit_predict(table, cls, min_w5, min_r2):
    xtr, ytr, xte, yte = _split(table)
    model = cls(space="fbnet")
    assert model.fit(xtr, ytr) is model
    pred = model.predict(xte)
    assert pred.shape == yte.shape and np.all(np.isfinite(pred))
    m = latency_metrics(yte, pred)
    assert m["within_5pct"] >= min_w5
    assert m["spearman"] > 0.5
    assert min_r2 <= model.score(xte, yte) <= 1.0
    # better than predicting the training mean for every arch
    assert m["rmspe"] < latency_metrics(yte, np.full(len(yte), ytr.mean()))["rmspe"]


def test_xgb_trees_learn_without_linear_base(table):
    xtr, ytr, xte, yte = _split(table)
    model = XGBLatencyPredictor(linear_init=False, n_estimators=300, learning_rate=0.2, target="log").fit(xtr, ytr)
    assert model.n_trees_ > 10
    assert latency_metrics(yte, model.predict(xte))["spearman"] > 0.7


def test_onehot_ridge_beats_flops_on_additive_data(table):
    xtr, ytr, xte, yte = _split(table)
    ridge = latency_metrics(yte, OneHotRidge().fit(xtr, ytr).predict(xte))
    flops = latency_metrics(yte, FlopsLinear().fit(xtr, ytr).predict(xte))
    assert ridge["rmspe"] < flops["rmspe"]


@pytest.mark.parametrize("name", ["xgb", "ridge", "flops", "params"])
def test_sklearn_conventions(table, name):
    cls = PREDICTORS.get(name)
    model = cls()
    params = model.get_params()
    assert clone(model).get_params() == params
    assert not [k for k in vars(model) if k.endswith("_")]  # __init__ stores hyper-parameters only
    with pytest.raises(NotFittedError):
        model.predict(table.archs[:2])
    model.set_params(space="fbnet")
    if "n_estimators" in params:
        model.set_params(n_estimators=100)
        assert model.get_params()["n_estimators"] == 100
    xtr, ytr, _, _ = _split(table)
    model.fit(xtr, ytr)
    assert [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]


def test_bad_archs_are_one_line_errors(table):
    model = OneHotRidge().fit(*_split(table)[:2])
    with pytest.raises(DataError):
        model.predict(np.zeros((2, 21), dtype=int))
    with pytest.raises(DataError):
        model.predict(np.full((1, 22), 9))
    with pytest.raises(DataError):
        OneHotRidge().fit(table.archs[:5], -np.ones(5))


def test_registry_unknown_name():
    from latnas.schema.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="known"):
        PREDICTORS.get("nope")
    assert "rf" in BLOCK_PREDICTORS and "lut" in BLOCK_PREDICTORS


@pytest.fixture(scope="module")
def blocks(space):
    return load_block_table(synthetic_block_records(space, n_models=30, model_scale=1.2), backend="toy")


def test_per_op_random_forest(blocks):
    x, y = block_features(blocks.specs), blocks.block_ms
    rf = PerOpRandomForest(n_estimators=20).fit(x, y)
    pred = rf.predict(x)
    assert latency_metrics(y, pred)["spearman"] > 0.95
    assert {"*", "mbconv"} <= set(rf.forests_)
    # our exported-tree evaluation equals sklearn's own forest on the same data
    from sklearn.ensemble import RandomForestRegressor

    mask = x[:, 1] == 1  # op_mbconv
    sk = RandomForestRegressor(n_estimators=20, max_features=1.0, random_state=0, n_jobs=1).fit(x[mask], np.log(y[mask]))
    np.testing.assert_allclose(rf.predict(x[mask]), np.exp(sk.predict(x[mask])), rtol=1e-12)


def test_lookup_table_sum(blocks, space):
    x, y = block_features(blocks.specs), blocks.block_ms
    lut = LookupTableSum().fit(x, y)
    np.testing.assert_allclose(lut.predict(x), y)
    with pytest.raises(DataError, match="never measured"):
        lut.predict(x[:1] + 1000.0)


def test_block_sum_with_correction(blocks, space):
    lut = LookupTableSum().fit(block_features(blocks.specs), blocks.block_ms)
    archs = np.array([space.parse_arch(a) for a in blocks.model_archs])
    plain = BlockSumPredictor(block_model=lut, correction="none").fit(archs, blocks.model_ms)
    corrected = BlockSumPredictor(block_model=lut, correction="linear").fit(archs, blocks.model_ms)
    iso = BlockSumPredictor(block_model=lut, correction="isotonic").fit(archs, blocks.model_ms)
    m_plain = latency_metrics(blocks.model_ms, plain.predict(archs))
    m_corr = latency_metrics(blocks.model_ms, corrected.predict(archs))
    assert m_plain["within_10pct"] < 0.5  # model rows are 1.2x the block sum
    assert m_corr["within_5pct"] > 0.95
    assert latency_metrics(blocks.model_ms, iso.predict(archs))["within_5pct"] > 0.9
    np.testing.assert_allclose(corrected.predict_block_sum(archs), plain.predict(archs))


def test_block_table_refuses_mixed_devices(space):
    recs = synthetic_block_records(space, fingerprint="a", n_models=2) + synthetic_block_records(space, fingerprint="b", n_models=2)
    with pytest.raises(DataError, match="devices"):
        load_block_table(recs, backend="toy")
    assert load_block_table(recs, backend="toy", fingerprint="b").fingerprint == "b"
    with pytest.raises(DataError, match="no profile records"):
        load_block_table(recs, backend="other")


def test_metrics_values():
    y = np.array([10.0, 20.0, 30.0, 40.0])
    p = np.array([10.4, 21.5, 30.0, 30.0])  # 4%, 7.5%, 0%, 25%
    m = latency_metrics(y, p)
    assert set(METRIC_KEYS) <= set(m)
    assert m["within_5pct"] == 0.5 and m["within_10pct"] == 0.75 and m["n"] == 4
    assert m["mape"] == pytest.approx((0.04 + 0.075 + 0 + 0.25) / 4)
    assert m["rmspe"] == pytest.approx(np.sqrt((0.04**2 + 0.075**2 + 0.25**2) / 4))
    fb = flops_baseline([1, 2], [10, 20], [3, 4], [30, 40])
    assert fb["within_5pct"] == 1.0 and fb["spearman"] == pytest.approx(1.0)
    assert quantisation_bound([5.0, 20.0, 40.0]) == pytest.approx(1 / 3)
