"""Crafted predictor folders are refused in one line before any native code or tree walk sees them:
bad XGBoost trees, bad random-forest arrays, unlisted files, state predicting NaN / inf / <= 0."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import xgboost as xgb

from latnas.schema.errors import PredictorFileError
from latnas.schema.spaces import get_space
from predictors.block_models import BlockSumPredictor, PerOpRandomForest
from predictors.data import load_block_table
from predictors.features import block_features
from predictors.models import FlopsLinear, OneHotRidge, XGBLatencyPredictor
from predictors.persistence import load_latency_table, load_predictor, save_predictor
from predictors.synthetic import synthetic_arch_table, synthetic_block_records
from predictors.validate import check_tree


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def table(space):
    return synthetic_arch_table(space, n=120, seed=5, noise=0.01, devices={"a_ms": 1.0})


@pytest.fixture(scope="module")
def xgb_model(table):
    m = XGBLatencyPredictor(target="log", n_estimators=20, early_stopping_rounds=0, learning_rate=0.3)
    return m.fit(table.archs, table.columns["a_ms"])


@pytest.fixture(scope="module")
def rf_sum(space):
    data = load_block_table(synthetic_block_records(space, n_models=6), backend="toy")
    rf = PerOpRandomForest(n_estimators=3).fit(block_features(data.specs), data.block_ms)
    return BlockSumPredictor(block_model=rf, correction="none").fit()


def _rehash(folder):
    """Make meta.json list the current bytes (so the structural checks, not the hashes, must refuse)."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in meta["files"]}
    (folder / "meta.json").write_text(json.dumps(meta))


def _refused(folder, match, **kw):
    with pytest.raises(PredictorFileError, match=match) as exc:
        load_predictor(folder, **kw)
    assert "\n" not in str(exc.value)


@pytest.fixture
def no_native_load(monkeypatch):
    """Fail the test if a crafted model.json ever reaches XGBoost's native loader."""
    def boom(self, *a, **k):
        raise AssertionError("Booster.load_model was called on a crafted file")

    monkeypatch.setattr(xgb.Booster, "load_model", boom)


def _edit_xgb_tree(folder, edit):
    doc = json.loads((folder / "model.json").read_text())
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    edit(tree)
    tree["tree_param"]["num_nodes"] = str(len(tree["left_children"]))
    (folder / "model.json").write_text(json.dumps(doc))
    _rehash(folder)


def _grow(tree, n):
    """Append ``n`` leaf nodes to an XGBoost tree (all parallel arrays)."""
    for key, fill in (("left_children", -1), ("right_children", -1), ("parents", 0), ("split_indices", 0),
                      ("split_conditions", 0.0), ("base_weights", 0.0), ("default_left", 0), ("split_type", 0),
                      ("loss_changes", 0.0), ("sum_hessian", 1.0)):
        tree[key] = tree[key] + [fill] * n


XGB_CASES = {
    "child_index_0": (lambda t: t["left_children"].__setitem__(0, 0), "child index out of range"),
    "child_index_huge": (lambda t: t["right_children"].__setitem__(0, 10**6), "child index out of range"),
    "child_negative": (lambda t: t["right_children"].__setitem__(0, -5), "exactly one child|out of range"),
    "shared_child": (lambda t: t["right_children"].__setitem__(0, t["left_children"][0]), "two nodes"),
    "feature_out_of_range": (lambda t: t["split_indices"].__setitem__(0, 10**5), "feature index out of range"),
    "nan_threshold": (lambda t: t["split_conditions"].__setitem__(0, float("nan")), "NaN"),
    "categorical": (lambda t: t["split_type"].__setitem__(0, 1), "numerical"),
    "short_arrays": (lambda t: t["base_weights"].pop(), "base_weights|value"),
}


def _cycle(t):
    # two extra nodes, each the other's child, unreachable from the root: a cycle
    _grow(t, 2)
    n = len(t["left_children"])
    t["left_children"][n - 2], t["right_children"][n - 2] = n - 1, n - 1
    t["left_children"][n - 1], t["right_children"][n - 1] = n - 2, n - 2


@pytest.mark.parametrize("case", [*XGB_CASES, "cycle"])
def test_crafted_xgb_model_json_refused_before_native_load(xgb_model, tmp_path, case, no_native_load):
    folder = save_predictor(xgb_model, tmp_path / "m", verify=False)  # verify would load natively
    edit, match = XGB_CASES.get(case, (_cycle, "two nodes|cycle|unreachable"))
    _edit_xgb_tree(folder, edit)
    _refused(folder, match)


def test_xgb_header_checks(xgb_model, tmp_path, no_native_load):
    folder = save_predictor(xgb_model, tmp_path / "m", verify=False)
    doc = json.loads((folder / "model.json").read_text())
    doc["learner"]["learner_model_param"]["num_feature"] = "3"
    (folder / "model.json").write_text(json.dumps(doc))
    _rehash(folder)
    _refused(folder, "features, expected")
    (folder / "model.json").write_text("[" * 5000 + "]" * 5000)
    _rehash(folder)
    _refused(folder, "nests deeper")


def test_intact_xgb_model_loads(xgb_model, table, tmp_path):
    loaded, _ = load_predictor(save_predictor(xgb_model, tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(table.archs), xgb_model.predict(table.archs))


def _edit_rf_tree(folder, edit):
    doc = json.loads((folder / "state.json").read_text())
    tree = doc["nested"]["block_model"]["$predictor"]["state"]["forests"]["*"][0]
    edit(tree)
    (folder / "state.json").write_text(json.dumps(doc))
    _rehash(folder)


RF_CASES = {
    "child_index_0": (lambda t: t["left"].__setitem__(0, 0), "child index out of range"),
    "child_index_huge": (lambda t: t["right"].__setitem__(0, 10**6), "child index out of range"),
    "cycle": (lambda t: t["left"].__setitem__(t["left"][0], 1), "two nodes|cycle|unreachable|exactly one child"),
    "feature_out_of_range": (lambda t: t["feature"].__setitem__(0, 99), "feature index out of range"),
    "float_child": (lambda t: t["left"].__setitem__(0, 1.5), "integers|out of range"),
    "nan_value": (lambda t: t["value"].__setitem__(-1, float("nan")), "NaN"),
    "extra_key": (lambda t: t.__setitem__("evil", [1]), "exactly the keys"),
}


@pytest.mark.parametrize("case", RF_CASES)
def test_crafted_random_forest_state_refused(rf_sum, tmp_path, case):
    folder = save_predictor(rf_sum, tmp_path / "rf")
    edit, match = RF_CASES[case]
    _edit_rf_tree(folder, edit)
    _refused(folder, match)


def test_check_tree_accepts_sklearn_trees_and_refuses_cycles():
    check_tree([1, -1, -1], [2, -1, -1], [0, -2, -2], 1)
    with pytest.raises(PredictorFileError, match="integers"):
        check_tree([1.0, -1, -1], [2, -1, -1], [0, -2, -2], 1)
    with pytest.raises(PredictorFileError, match="integers"):
        check_tree([1, -1, -1], [2**70, -1, -1], [0, -2, -2], 1)
    with pytest.raises(PredictorFileError, match="cycle|two nodes|unreachable"):
        check_tree([1, 2, -1, 1], [3, 3, -1, 2], [0, 0, 0, 0], 1)  # 1 -> 3 -> 1
    with pytest.raises(PredictorFileError, match="unreachable"):
        check_tree([1, -1, -1, 4, -1, -1], [2, -1, -1, 5, -1, -1], [0] * 6, 1)


def test_unlisted_file_is_refused(table, space, tmp_path):
    model = OneHotRidge().fit(table.archs, table.columns["a_ms"])
    folder = save_predictor(model, tmp_path / "m")
    other = FlopsLinear().fit(table.archs, table.columns["a_ms"])
    from predictors.compile import compile_predictor

    compile_predictor(other).save(folder / "latency_table.json")  # a dropped-in table is not trusted
    _refused(folder, "latency_table.json.*does not list")
    with pytest.raises(PredictorFileError, match="does not list"):
        load_latency_table(folder, space)
    (folder / "latency_table.json").unlink()
    (folder / "sub").mkdir()
    _refused(folder, "sub.*does not list")
    (folder / "sub").rmdir()
    assert load_latency_table(folder, space).space == "fbnet"


def _edit_state(folder, **values):
    doc = json.loads((folder / "state.json").read_text())
    doc["state"].update(values)
    (folder / "state.json").write_text(json.dumps(doc))
    _rehash(folder)


def test_nan_inf_and_negative_predicting_states_refused(table, space, tmp_path):
    y = table.columns["a_ms"]
    ridge = save_predictor(OneHotRidge(target="log").fit(table.archs, y), tmp_path / "r")
    coef = json.loads((ridge / "state.json").read_text())["state"]["coef"]
    _edit_state(ridge, coef=[float("nan")] + coef[1:])
    _refused(ridge, "NaN")
    _edit_state(ridge, coef=coef, intercept=1e6)  # exp(1e6) = inf on every arch
    _refused(ridge, "non-finite or non-positive")
    flops = save_predictor(FlopsLinear().fit(table.archs, y), tmp_path / "f")
    _edit_state(flops, coef=-1.0)
    _refused(flops, "non-finite or non-positive")
    with pytest.raises(PredictorFileError, match="non-positive"):
        load_latency_table(flops, space)


def test_wrong_nested_and_param_documents_refused(table, tmp_path):
    folder = save_predictor(OneHotRidge().fit(table.archs, table.columns["a_ms"]), tmp_path / "r")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "params": {**meta["params"], "evil": 1}}))
    _refused(folder, "cannot be restored|unexpected")
    (folder / "meta.json").write_text(json.dumps({**meta, "predictor": "os.system"}))
    _refused(folder, "unknown")
    (folder / "meta.json").write_text(json.dumps(meta))
    doc = json.loads((folder / "state.json").read_text())
    doc["nested"] = {"space": {"$predictor": {}}}
    (folder / "state.json").write_text(json.dumps(doc))
    _rehash(folder)
    _refused(folder, "nested")


def test_cli_refuses_crafted_folder_in_one_line(table, tmp_path, capsys):
    from latnas.cli.main import main

    folder = save_predictor(OneHotRidge().fit(table.archs, table.columns["a_ms"]), tmp_path / "m")
    (folder / "latency_table.json").write_text("{}")
    assert main(["predict", str(folder), "--arch", table.arch_strings[0]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not list" in err and "\n" not in err
