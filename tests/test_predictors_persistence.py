"""Save/load round trips (identical predictions) and refusal of bad model folders; compilation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from latnas.schema.errors import PredictorFileError
from latnas.schema.latency_table import LatencyTable
from latnas.schema.spaces import get_space
from predictors.block_models import BlockSumPredictor, PerOpRandomForest
from predictors.compile import compile_predictor
from predictors.data import load_block_table
from predictors.features import block_features
from predictors.models import FlopsLinear, OneHotRidge, ParamsLinear, XGBLatencyPredictor
from predictors.persistence import load_predictor, save_predictor
from predictors.synthetic import synthetic_arch_table, synthetic_block_records
from predictors.transfer import TransferPredictor, fit_source_models


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def table(space):
    return synthetic_arch_table(space, n=300, seed=2, noise=0.02, devices={"a_ms": 1.0, "b_ms": 1.7})


@pytest.fixture(scope="module")
def block_sum(space):
    data = load_block_table(synthetic_block_records(space, n_models=25, model_scale=1.15), backend="toy")
    rf = PerOpRandomForest(n_estimators=10).fit(block_features(data.specs), data.block_ms)
    archs = np.array([space.parse_arch(a) for a in data.model_archs])
    return BlockSumPredictor(block_model=rf, correction="isotonic").fit(archs, data.model_ms)


def _models(table):
    x, y = table.archs[:200], table.columns["a_ms"][:200]
    src = fit_source_models(table, ["b_ms"])
    return {
        "xgb_log_trees": XGBLatencyPredictor(target="log", linear_init=False, n_estimators=120, learning_rate=0.2).fit(x, y),
        "xgb_linear_trees": XGBLatencyPredictor(target="linear", n_estimators=80, early_stopping_rounds=0).fit(x, y),
        "xgb_default": XGBLatencyPredictor().fit(x, y),
        "ridge_log": OneHotRidge(target="log").fit(x, y),
        "ridge_linear": OneHotRidge(target="linear", prior="none").fit(x, y),
        "flops": FlopsLinear().fit(x, y),
        "params": ParamsLinear().fit(x, y),
        "transfer": TransferPredictor(source_models=src).fit(x[:20], y[:20]),
    }


@pytest.fixture(scope="module")
def models(table, block_sum):
    return {**_models(table), "blocksum": block_sum}


def test_round_trip_identical_predictions(models, table, tmp_path):
    for name, model in models.items():
        folder = save_predictor(model, tmp_path / name, target="a_ms")
        assert not list(folder.glob("*.pkl"))
        loaded, meta = load_predictor(folder, space="fbnet", target="a_ms")
        assert type(loaded) is type(model) and meta["predictor"]
        np.testing.assert_array_equal(loaded.predict(table.archs), model.predict(table.archs), err_msg=name)
    meta = json.loads((tmp_path / "xgb_log_trees" / "meta.json").read_text())
    assert meta["schema"] == "latnas.predictor/2" and "model.json" in meta["files"]
    assert {"xgboost", "scikit-learn", "numpy"} <= set(meta["libraries"])
    assert len(meta["feature_names"]) == 22 * 9


def test_compiled_equals_uncompiled(models, table, tmp_path):
    assert models["xgb_log_trees"].n_trees_ > 10 and models["xgb_log_trees"].log_target_
    assert models["xgb_linear_trees"].n_trees_ > 10
    for name, model in models.items():
        lt = compile_predictor(model, device="toy")
        np.testing.assert_allclose(lt.predict(table.archs), model.predict(table.archs), rtol=1e-6, err_msg=name)
        lt.save(tmp_path / f"{name}.json")
        back = LatencyTable.load(tmp_path / f"{name}.json")
        np.testing.assert_allclose(back.predict(table.archs), model.predict(table.archs), rtol=1e-6, err_msg=name)
        arch, ms = lt.min_arch()
        assert ms <= lt.predict(table.archs).min() + 1e-9


def test_non_additive_xgb_is_not_compiled(table):
    deep = XGBLatencyPredictor(max_depth=3, linear_init=False, n_estimators=30, early_stopping_rounds=0).fit(
        table.archs[:100], table.columns["a_ms"][:100])
    with pytest.raises(PredictorFileError, match="deeper|additive"):
        compile_predictor(deep)


@pytest.fixture
def saved(models, tmp_path):
    return save_predictor(models["xgb_log_trees"], tmp_path / "m", target="a_ms")


def test_refuses_corrupt_meta(saved):
    (saved / "meta.json").write_text("{not json")
    with pytest.raises(PredictorFileError, match="corrupt"):
        load_predictor(saved)


def test_refuses_tampered_file(saved):
    state = json.loads((saved / "state.json").read_text())
    state["linear_intercept"] = 0.0
    (saved / "state.json").write_text(json.dumps(state))
    with pytest.raises(PredictorFileError, match="sha256"):
        load_predictor(saved)
    (saved / "model.json").write_text("{}")
    with pytest.raises(PredictorFileError, match="sha256"):
        load_predictor(saved)


def test_refuses_wrong_schema_space_target_missing(saved, tmp_path):
    meta = json.loads((saved / "meta.json").read_text())
    with pytest.raises(PredictorFileError, match="space"):
        load_predictor(saved, space="proxyless")
    with pytest.raises(PredictorFileError, match="target"):
        load_predictor(saved, target="b_ms")
    (saved / "meta.json").write_text(json.dumps({**meta, "feature_names": meta["feature_names"][:-1]}))
    with pytest.raises(PredictorFileError, match="feature names"):
        load_predictor(saved)
    (saved / "meta.json").write_text(json.dumps({**meta, "schema": "latnas.predictor/0"}))
    with pytest.raises(PredictorFileError, match="schema"):
        load_predictor(saved)
    (saved / "meta.json").write_text(json.dumps(meta))
    (saved / "model.json").unlink()
    with pytest.raises(PredictorFileError, match="missing"):
        load_predictor(saved)
    with pytest.raises(PredictorFileError, match="does not exist"):
        load_predictor(tmp_path / "nothing")


def test_no_pickle_in_package():
    from pathlib import Path

    import predictors

    root = Path(predictors.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "joblib" not in text, path


def test_replacing_a_model_folder_swaps_atomically(tmp_path, monkeypatch):
    """An existing model is exchanged with the new one in one step (renameat2) where Linux allows it;
    elsewhere the old one is moved aside and the new one renamed in. Both paths end with only the new."""
    import predictors.atomic_dir as atomic

    for swap in (True, False):
        folder, tmp = tmp_path / f"m{swap}", tmp_path / f".m{swap}.part"
        folder.mkdir()
        (folder / "meta.json").write_text("old")
        tmp.mkdir()
        (tmp / "meta.json").write_text("new")
        if not swap:
            monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
        atomic.replace_dir(tmp, folder)
        assert (folder / "meta.json").read_text() == "new"
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".m{swap}")) == []
    assert atomic.exchange(tmp_path / "nope-a", tmp_path / "nope-b") is False  # missing paths: not swapped


def test_a_killed_writers_scratch_folder_is_swept_at_the_next_save(tmp_path):
    import subprocess
    import sys

    from predictors.atomic_dir import scratch_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".m.part-{int(dead.stdout)}-abc"
    stale.mkdir()
    live = tmp_path / f".m.part-{__import__('os').getpid()}-xyz"  # a writer still running keeps its folder
    live.mkdir()
    new = scratch_dir(tmp_path / "m")
    assert not stale.exists() and live.exists() and new.exists() and new.name.startswith(".m.part-")
