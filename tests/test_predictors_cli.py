"""`latnas train | eval | predict` in-process on small synthetic tables and profile stores."""
from __future__ import annotations

import json

import pytest

from latnas.cli.main import main
from latnas.schema.spaces import get_space
from predictors.synthetic import synthetic_arch_table, synthetic_block_records, write_arch_csv

KEYS = ("within_5pct", "within_10pct", "rmspe", "mape", "kendall", "spearman", "n")


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    table = synthetic_arch_table(get_space("fbnet"), n=240, seed=3, noise=0.01, devices={"toy_ms": 1.0, "big_ms": 3.0})
    return write_arch_csv(table, tmp_path_factory.mktemp("data") / "lat.csv")


def test_train_eval_predict(csv_path, tmp_path, capsys):
    model = tmp_path / "m"
    rc = main(["train", "--table", str(csv_path), "--target", "toy_ms", "--space", "fbnet", "--n-train", "120",
               "--seed", "1", "-o", str(model), "--n-estimators", "50"])
    assert rc == 0
    capsys.readouterr()
    meta = json.loads((model / "meta.json").read_text())
    assert len(meta["training"]["train_archs"]) == 120 and meta["target"] == "toy_ms"

    assert main(["eval", str(model), "--table", str(csv_path), "--target", "toy_ms", "--exclude-train", "--json",
                 "--plots", str(tmp_path / "plots")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res)[:7] == list(KEYS)
    assert res["n"] == 120 and res["within_10pct"] > 0.9 and res["spearman"] > 0.8
    assert set(KEYS) <= set(res["flops"])
    assert (tmp_path / "plots" / "pred_vs_measured.png").stat().st_size > 1000

    assert main(["eval", str(model), "--table", str(csv_path), "--target", "toy_ms", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 240

    arch = csv_path.read_text().splitlines()[1].split(",")[0]
    assert main(["predict", str(model), "--arch", arch]) == 0
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[0] == arch and float(line.split("\t")[1]) > 0
    archs_file = tmp_path / "archs.txt"
    archs_file.write_text("\n".join(l.split(",")[0] for l in csv_path.read_text().splitlines()[1:6]) + "\n")
    assert main(["predict", str(model), "--archs", str(archs_file)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 5


@pytest.mark.parametrize("model_name", ["ridge", "flops"])
def test_train_other_models_and_transfer(csv_path, tmp_path, capsys, model_name):
    assert main(["train", "--table", str(csv_path), "--target", "toy_ms", "--n-train", "30", "--seed", "0",
                 "-o", str(tmp_path / model_name), "--model", model_name]) == 0
    assert main(["train", "--table", str(csv_path), "--target", "toy_ms", "--n-train", "10", "--seed", "0",
                 "-o", str(tmp_path / "t"), "--transfer-from", "big_ms"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "t"), "--table", str(csv_path), "--target", "toy_ms", "--exclude-train", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["within_5pct"] > 0.9  # big_ms is 3x toy_ms: transfer from it is near exact
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert meta["training"]["transfer"]["sources"] == ["big_ms"]


def test_bad_inputs_are_one_line_errors(csv_path, tmp_path, capsys):
    model = tmp_path / "m"
    assert main(["train", "--table", str(csv_path), "--target", "toy_ms", "--n-train", "30", "-o", str(model), "--model", "ridge"]) == 0
    capsys.readouterr()
    cases = [
        (["train", "--table", str(csv_path), "--target", "nope_ms", "--n-train", "10", "-o", str(tmp_path / "x")], "no column"),
        (["train", "--table", str(tmp_path / "missing.csv"), "--target", "toy_ms", "-o", str(tmp_path / "x")], "does not exist"),
        (["train", "--table", str(csv_path), "--target", "toy_ms", "--n-train", "100000", "-o", str(tmp_path / "x")], "n-train"),
        (["train", "--table", str(csv_path), "--target", "toy_ms", "--model", "nope", "-o", str(tmp_path / "x")], "unknown predictor"),
        (["predict", str(model), "--arch", "123"], "layers"),
        (["predict", str(model), "--arch", "12345678901234567890ab"], "choice indices"),
        (["eval", str(model), "--table", str(csv_path), "--target", "big_ms"], "trained for"),
        (["eval", str(model), "--table", str(csv_path), "--target", "toy_ms", "--space", "proxyless"], "space"),
        (["eval", str(tmp_path / "nothing"), "--table", str(csv_path), "--target", "toy_ms"], "does not exist"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and "\n" not in err, (argv, err)
    (model / "state.json").write_text("[]")
    assert main(["predict", str(model), "--arch", "0" * 22]) == 2
    assert "sha256" in capsys.readouterr().err


def test_train_from_profile_store(tmp_path, capsys):
    store_mod = pytest.importorskip("profilers.store")
    from profilers.base import LatencyStats, Measurement

    space = get_space("fbnet")
    db = tmp_path / "profiles.db"
    with store_mod.ProfileStore(db, fingerprint="f00d") as store:
        store.use_device("f00d", {"cpu": "toy"})
        for r in synthetic_block_records(space, backend="onnxruntime", fingerprint="f00d", n_models=12, model_scale=1.3):
            ms = r["median_ms"]
            stats = LatencyStats(**{f: ms for f in ("median_ms", "mean_ms", "min_ms", "p10_ms", "p25_ms", "p75_ms", "p90_ms")},
                                 std_ms=0.0, iqr_ms=0.0, repeats=10, warmup_runs=2, stable=True, noisy=False)
            store.put(Measurement(r["key"], r["kind"], r["backend"], r["fingerprint"], r["batch"], stats, r["spec"], 1.0))
    out = tmp_path / "bm"
    assert main(["train", "--store", str(db), "--backend", "onnxruntime", "--space", "fbnet", "-o", str(out), "--n-estimators", "10"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["block_sum_in_sample"]["within_10pct"] < 0.5  # whole models are 1.3x the block sum
    assert summary["corrected_in_sample"]["within_10pct"] > 0.9
    assert main(["predict", str(out), "--arch", "0" * 22]) == 0
    assert float(capsys.readouterr().out.split("\t")[1]) > 0
    assert main(["train", "--store", str(db), "--backend", "tensorrt", "-o", str(tmp_path / "x")]) == 2
    assert "no profile records" in capsys.readouterr().err
