"""One contract, tested over every registered predictor (like sklearn's parametrize_with_checks):
fit/predict on valid archs, save/load round trip with equal predictions, compile parity or a
one-line refusal; and a user-registered estimator trained, saved, loaded and compiled."""
from __future__ import annotations

import numpy as np
import pytest

from latnas.schema.errors import LatnasError, PredictorFileError
from latnas.schema.spaces import get_space
from predictors.base import state_float
from predictors.block_models import BlockSumPredictor
from predictors.compile import compile_predictor, linear_table
from predictors.data import load_block_table
from predictors.features import block_features
from predictors.models import ArchPredictor
from predictors.persistence import load_latency_table, load_predictor, save_predictor
from predictors.registry import BLOCK_PREDICTORS, PREDICTORS
from predictors.synthetic import synthetic_arch_table, synthetic_block_records
from predictors.transfer import fit_source_models

#: quick hyper-parameters (the defaults are sized for real data)
FAST = {"xgb": {"n_estimators": 40, "early_stopping_rounds": 0, "learning_rate": 0.3, "target": "log"},
        "rf": {"n_estimators": 5}}
#: the built-in arch-level predictors are all additive over layers, so they must compile
COMPILABLE = {"xgb", "ridge", "flops", "params", "transfer", "blocksum"}


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def table(space):
    return synthetic_arch_table(space, n=160, seed=4, noise=0.01, devices={"a_ms": 1.0, "b_ms": 1.6})


@pytest.fixture(scope="module")
def blocks(space):
    return load_block_table(synthetic_block_records(space, n_models=12, model_scale=1.1), backend="toy")


def _fitted_block_model(name, blocks):
    cls = BLOCK_PREDICTORS.get(name)
    return cls(**FAST.get(name, {})).fit(block_features(blocks.specs), blocks.block_ms)


def _fitted_arch_model(name, table, blocks, space):
    """Fit a registered arch-level predictor; those needing fitted parts get them here."""
    cls = PREDICTORS.get(name)
    x, y = table.archs[:120], table.columns["a_ms"][:120]
    if name == "blocksum":
        archs = np.array([space.parse_arch(a) for a in blocks.model_archs])
        return cls(block_model=_fitted_block_model("rf", blocks), correction="isotonic").fit(archs, blocks.model_ms)
    if name == "transfer":
        return cls(source_models=fit_source_models(table, ["b_ms"])).fit(x[:20], y[:20])
    return cls(space="fbnet", **FAST.get(name, {})).fit(x, y)


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_arch_predictor_contract(name, table, blocks, space, tmp_path):
    model = _fitted_arch_model(name, table, blocks, space)
    archs = table.archs[120:]
    pred = model.predict(archs)
    assert pred.shape == (len(archs),) and np.all(np.isfinite(pred)) and np.all(pred > 0)

    folder = save_predictor(model, tmp_path / name, target="a_ms")
    loaded, meta = load_predictor(folder, space="fbnet")
    assert type(loaded) is type(model) and meta["predictor"] == name
    np.testing.assert_array_equal(loaded.predict(archs), pred)

    try:
        lt = compile_predictor(loaded)
    except LatnasError as exc:
        assert name not in COMPILABLE, f"{name} must compile: {exc}"
        assert "\n" not in str(exc)
        return
    np.testing.assert_allclose(lt.predict(archs), pred, rtol=1e-6)
    np.testing.assert_allclose(load_latency_table(folder, space).predict(archs), pred, rtol=1e-6)


@pytest.mark.parametrize("name", BLOCK_PREDICTORS.names())
def test_block_predictor_contract(name, blocks, space, tmp_path):
    model = _fitted_block_model(name, blocks)
    x = block_features(blocks.specs)
    pred = model.predict(x)
    assert pred.shape == (len(x),) and np.all(np.isfinite(pred)) and np.all(pred > 0)

    folder = save_predictor(model, tmp_path / name)
    loaded, meta = load_predictor(folder)
    assert meta["level"] == "block" and meta["predictor"] == name
    np.testing.assert_array_equal(loaded.predict(x), pred)

    # inside a block sum: save/load nested, and the compiled table equals predict
    archs = np.array([space.parse_arch(a) for a in blocks.model_archs])
    bs = BlockSumPredictor(block_model=model, correction="linear").fit(archs, blocks.model_ms)
    bs_loaded, _ = load_predictor(save_predictor(bs, tmp_path / f"sum_{name}"))
    np.testing.assert_array_equal(bs_loaded.predict(archs), bs.predict(archs))
    np.testing.assert_allclose(compile_predictor(bs_loaded).predict(archs), bs.predict(archs), rtol=1e-6)


def test_block_model_alone_does_not_compile(blocks):
    with pytest.raises(PredictorFileError, match="cannot compile"):
        compile_predictor(_fitted_block_model("lut", blocks))


def test_non_additive_model_refuses_in_one_line(table):
    from predictors.models import XGBLatencyPredictor

    deep = XGBLatencyPredictor(max_depth=2, linear_init=False, n_estimators=10, early_stopping_rounds=0)
    deep.fit(table.archs[:100], table.columns["a_ms"][:100])
    with pytest.raises(PredictorFileError, match="additive") as exc:
        compile_predictor(deep)
    assert "\n" not in str(exc.value)


class MeanPredictor(ArchPredictor):
    """A user's estimator: the mean latency for every arch (scale is a hyper-parameter)."""

    def __init__(self, space: str = "fbnet", scale: float = 1.0):
        self.space = space
        self.scale = scale

    def fit(self, X, y):
        self._archs(X)
        self.mean_ = float(np.mean(y)) * self.scale
        return self._restored()

    def predict(self, X):
        return np.full(len(self._archs(X)), self.mean_)

    def to_state(self):
        return {"mean": self.mean_}

    def set_state(self, state, files):
        self.mean_ = state_float(state, "mean")
        return self._restored()

    def to_latency_table(self, space):
        return linear_table(space, np.zeros((space.n_layers, space.n_choices)), self.mean_, {})


def test_user_registered_predictor_trains_saves_loads_compiles(table, space, tmp_path, monkeypatch):
    from predictors.train import train_arch_model

    monkeypatch.setitem(PREDICTORS._items, "mean_test", MeanPredictor)
    model, meta = train_arch_model(table, "a_ms", model="mean_test", n_train=100, params={"scale": 2.0})
    folder = save_predictor(model, tmp_path / "mean", **meta)
    loaded, meta2 = load_predictor(folder, space="fbnet", target="a_ms")
    assert isinstance(loaded, MeanPredictor) and loaded.scale == 2.0 and meta2["predictor"] == "mean_test"
    np.testing.assert_array_equal(loaded.predict(table.archs), model.predict(table.archs))
    assert loaded.predict(table.archs[:1])[0] == pytest.approx(2.0 * table.columns["a_ms"][meta["training"]["train_rows"]].mean())
    np.testing.assert_allclose(load_latency_table(folder, space).predict(table.archs), model.predict(table.archs))


def test_unregistered_class_cannot_be_saved(table, tmp_path):
    model = MeanPredictor().fit(table.archs[:10], table.columns["a_ms"][:10])
    with pytest.raises(PredictorFileError, match="register"):
        save_predictor(model, tmp_path / "x")
