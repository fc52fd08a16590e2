"""Few-shot accuracy predictors: fit on K rows of a user's CSV, predict archs it lacks, saved as hashed JSON; the CLI."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from latnas.cli.main import main
from latnas.schema.errors import PredictorFileError
from latnas.search.accuracy_train import read_accuracy_table, train_accuracy
from latnas.search.scorers import ScorerConfig, make_scorer
from latnas.search.scorers.predictor import PredictorScorer
from latnas.schema.spaces import get_space
from predictors.accuracy import AccuracyPredictor
from predictors.accuracy_io import load_accuracy_predictor, save_accuracy_predictor

from search_helpers import synthetic_table

PROXIES = ("params", "flops")  # closed form: fast


def true_acc(arch) -> float:
    """A synthetic accuracy with structure an encoding can learn: convs help, 'none' hurts, an interaction."""
    a = np.asarray(arch)
    return float(50 + 6 * np.sum(a == 3) + 3 * np.sum(a == 2) - 5 * np.sum(a == 0) + 4 * (a[0] == 3) * (a[5] == 3))


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


def write_csv(path, space, archs, values, column="acc"):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", column])
        for a, v in zip(archs, values):
            w.writerow([space.format_arch(tuple(a)) if not isinstance(a, str) else a, v])
    return path


@pytest.fixture(scope="module")
def trained_csv(nb201, tmp_path_factory):
    archs = nb201.random_archs(60, rng=1)
    return write_csv(tmp_path_factory.mktemp("acc") / "trained.csv", nb201, archs, [true_acc(a) for a in archs]), archs


def test_fit_on_k_rows_predicts_archs_not_in_the_csv(nb201, trained_csv, tmp_path):
    path, archs = trained_csv
    summary = train_accuracy(nb201, path, "acc", tmp_path / "A", n_train=40, proxies=PROXIES, seed=0, mode="ridge")
    assert summary["rows"] == 40 and summary["table_rows"] == 60 and summary["held_out_rows"] == 20
    model, meta = load_accuracy_predictor(tmp_path / "A", space="nb201")
    assert meta["training"]["rows"] == 40 and len(meta["training"]["train_archs"]) == 40
    others = [a for a in nb201.random_archs(300, rng=7) if a not in set(archs)]
    pred = PredictorScorer(nb201, model)(others)
    assert np.all(np.isfinite(pred)) and len(pred) == len(others)
    assert spearmanr(pred, [true_acc(a) for a in others])[0] > 0.8


def test_saved_as_hashed_json_without_pickles_and_round_trips(nb201, tmp_path):
    archs = np.array(nb201.random_archs(40, rng=3))
    y = np.array([true_acc(a) for a in archs])
    scorer = PredictorScorer(nb201, AccuracyPredictor(space="nb201", proxies=PROXIES, mode="xgb", ensemble=3,
                                                      n_estimators=40))
    scorer.model.fit(scorer.features(archs), y)
    folder = save_accuracy_predictor(scorer.model, tmp_path / "M")
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["meta.json", "state.json", "xgb_0.json", "xgb_1.json", "xgb_2.json"]
    for p in folder.iterdir():
        json.loads(p.read_bytes())  # every file is JSON: nothing pickled
        assert not p.read_bytes().startswith(b"\x80")
    meta = json.loads((folder / "meta.json").read_text())
    import hashlib
    assert set(meta["files"]) == set(files) - {"meta.json"}
    for name, digest in meta["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    loaded, _ = load_accuracy_predictor(folder)
    test = nb201.random_archs(50, rng=9)
    np.testing.assert_allclose(PredictorScorer(nb201, loaded)(test), scorer(test), rtol=1e-6)
    m0, s0 = scorer.model.predict_std(scorer.features(test))
    assert np.all(s0 >= 0) and s0.max() > 0  # the ensemble's spread: the surrogate's uncertainty
    # a modified file is refused, in one line
    state = folder / "xgb_1.json"
    state.write_bytes(state.read_bytes().replace(b"0", b"1", 1))
    with pytest.raises(PredictorFileError, match="sha256"):
        load_accuracy_predictor(folder)


def test_a_latency_model_is_not_an_accuracy_model(nb201, tmp_path):
    from predictors.models import OneHotRidge
    from predictors.persistence import save_predictor

    archs = np.array(nb201.random_archs(30, rng=0))
    save_predictor(OneHotRidge(space="nb201").fit(archs, 1 + archs.sum(axis=1)), tmp_path / "lat")
    with pytest.raises(PredictorFileError, match="not an accuracy predictor"):
        load_accuracy_predictor(tmp_path / "lat")


def _err(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def test_cli_train_accuracy_then_search_with_it(nb201, trained_csv, tmp_path, capsys):
    path, archs = trained_csv
    acc = tmp_path / "acc"
    rc = main(["train-accuracy", "--table", str(path), "--score-column", "acc", "--space", "nb201",
               "--n-train", "30", "--proxies", "params,flops", "--mode", "ridge", "-o", str(acc)])
    assert rc == 0, capsys.readouterr().err
    assert "fit on 30 of 60 archs" in capsys.readouterr().out
    lat = tmp_path / "lat.json"
    table = synthetic_table(nb201, seed=0)
    table.save(lat)
    budget = round(table.min_arch()[1] * 2.0, 3)
    out = tmp_path / "run"
    rc = main(["search", "--space", "nb201", "--predictor", str(lat), "--budget", f"{budget}ms", "--algo", "bananas",
               "--evals", "20", "--score-model", str(acc), "--option", "n_estimators=20", "--option", "ensemble=2", "--quiet", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["score"]["name"] == "predictor" and result["score"]["key"].startswith("predictor:")
    assert result["evals"] == 20  # archs the CSV lacks are predicted, not refused
    with open(out / "front.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(float(r["predicted_ms"]) <= budget for r in rows)


@pytest.mark.parametrize("case", ["duplicate", "nan", "range", "space", "k", "column"])
def test_cli_bad_accuracy_csv_is_one_line_and_writes_nothing(nb201, tmp_path, capsys, case):
    archs = nb201.random_archs(12, rng=5)
    values = [true_acc(a) for a in archs]
    cells = [nb201.format_arch(a) for a in archs]
    k, column = "10", "acc"
    if case == "duplicate":
        cells[3] = cells[1]
    elif case == "nan":
        values[2] = float("nan")
    elif case == "range":
        values[4] = 140.0
    elif case == "space":
        cells[0] = "7542200017584586545827"  # an FBNet arch
    elif case == "k":
        k = "13"
    elif case == "column":
        column = "c10"
    path = write_csv(tmp_path / "bad.csv", nb201, cells, values)
    out = tmp_path / "A"
    rc = main(["train-accuracy", "--table", str(path), "--score-column", column, "--space", "nb201", "--n-train", k,
               "--proxies", "params", "-o", str(out)])
    assert rc == 2
    _err(capsys)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_score_predictor_without_a_model_is_refused(nb201, tmp_path, capsys):
    lat = tmp_path / "lat.json"
    synthetic_table(nb201, seed=0).save(lat)
    out = tmp_path / "run"
    assert main(["search", "--space", "nb201", "--predictor", str(lat), "--score", "predictor", "--evals", "5",
                 "--quiet", "-o", str(out)]) == 2
    assert "--score-model" in _err(capsys) and not out.exists()
    assert main(["search", "--space", "nb201", "--predictor", str(lat), "--score-model", str(tmp_path / "nope"),
                 "--evals", "5", "--quiet", "-o", str(out)]) == 2
    assert "does not exist" in _err(capsys) and not out.exists()
    with pytest.raises(Exception, match="score-model"):
        make_scorer("predictor", ScorerConfig(space=nb201))


def test_read_accuracy_table_accepts_fractions(nb201, tmp_path):
    archs = nb201.random_archs(6, rng=2)
    path = write_csv(tmp_path / "f.csv", nb201, archs, [0.5 + 0.01 * i for i in range(6)])
    got, y = read_accuracy_table(nb201, path, "acc")
    assert got.shape == (6, 6) and np.all((y > 0.4) & (y < 0.6))
