"""`latnas search` end to end on tiny settings, and its one-line refusals."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from latnas.cli.main import main
from latnas.search.budget import Budget, parse_budget
from latnas.schema.spaces import get_space
from latnas.schema.errors import DataError

from search_helpers import synthetic_table

TINY = ["--score", "rwe", "--evals", "6", "--resolution", "8", "--n-train", "100", "--n-val", "60", "--pop-size", "4", "--quiet"]


@pytest.fixture(scope="module")
def table_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("pred") / "table.json"
    table = synthetic_table(get_space("fbnet"), seed=0, device="onnxruntime cpu (synthetic)")
    table.save(path)
    return path, table


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_parse_budget():
    assert parse_budget("4.5ms") == Budget(4.5, "ms")
    assert parse_budget("4.5") == Budget(4.5, "ms")
    assert parse_budget("4500us") == Budget(4.5, "ms")
    assert parse_budget("300MFLOPs") == Budget(300.0, "MFLOPs")
    assert parse_budget("0.3GFLOPs") == Budget(300.0, "MFLOPs")
    assert parse_budget(None) is None
    for bad in ("fast", "4.5 parsecs", "-1ms", "0", "1e999ms", "1e999", "nan", "inf ms", "0us"):
        with pytest.raises(DataError):
            parse_budget(bad)
    for value, unit in ((float("inf"), "ms"), (float("nan"), "ms"), (-2.0, "ms"), (0.0, "MFLOPs"), (3.0, "parsecs")):
        with pytest.raises(DataError):
            Budget(value, unit)


def test_cli_search_writes_front_within_budget(table_json, tmp_path, capsys):
    path, table = table_json
    budget = round(table.min_arch()[1] * 1.5, 3)
    out = tmp_path / "run"
    rc = main(["search", "--space", "fbnet", "--predictor", str(path), "--budget", f"{budget}ms", "--algo", "nsga2", "-o", str(out), *TINY])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out / "front.csv")
    assert rows and list(rows[0]) == ["arch", "predicted_ms", "score"]
    space = get_space("fbnet")
    archs = np.array([space.parse_arch(r["arch"]) for r in rows])
    pred = np.array([float(r["predicted_ms"]) for r in rows])
    np.testing.assert_allclose(pred, table.predict(archs), rtol=1e-5)
    assert np.all(pred <= budget)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert (out / "front.png").stat().st_size > 1000
    result = json.loads((out / "result.json").read_text())
    assert result["chosen"] == rows[0]["arch"] and result["evals"] <= 6
    assert (out / "checkpoint.json").is_file()
    assert "chosen arch" in capsys.readouterr().out


def test_cli_resume_reuses_scores(table_json, tmp_path):
    path, table = table_json
    out = tmp_path / "run"
    args = ["search", "--predictor", str(path), "--algo", "hournas", "-o", str(out), *TINY]
    assert main(args) == 0
    first = (out / "front.csv").read_text()
    assert main([*args, "--resume"]) == 0
    assert (out / "front.csv").read_text() == first


def test_cli_impossible_budget_names_minimum(table_json, tmp_path, capsys):
    path, table = table_json
    rc = main(["search", "--predictor", str(path), "--budget", "0.01ms", "-o", str(tmp_path / "x"), *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and "minimum reachable latency" in err and f"{table.min_arch()[1]:.4g}" in err
    assert len(err.splitlines()) == 1


def test_cli_wrong_space_or_device_predictor_refused(tmp_path, capsys):
    other = synthetic_table(get_space("proxyless"))
    p = tmp_path / "proxyless.json"
    other.save(p)
    rc = main(["search", "--space", "fbnet", "--predictor", str(p), "--budget", "5ms", "-o", str(tmp_path / "x"), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "made for space 'proxyless'" in err and "refused" in err
    gpu = synthetic_table(get_space("fbnet"), device="tensorrt RTX 4090")
    q = tmp_path / "gpu.json"
    gpu.save(q)
    rc = main(["search", "--predictor", str(q), "--profile-top", "2", "--backend", "onnxruntime", "-o", str(tmp_path / "y"), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "not backend 'onnxruntime'" in err


def test_cli_bad_inputs_are_one_line_errors(table_json, tmp_path, capsys):
    path, _ = table_json
    cases = [
        (["--predictor", str(path), "--data", str(tmp_path / "missing")], "does not exist"),
        (["--predictor", str(tmp_path / "nope.json")], "does not exist"),
        (["--predictor", "flops", "--budget", "4ms"], "does not match"),
        (["--predictor", str(path), "--algo", "bogus"], "unknown search algorithm"),
        (["--predictor", str(path), "--budget", "soon"], "cannot read budget"),
    ]
    for extra, needle in cases:
        rc = main(["search", "-o", str(tmp_path / "z"), *extra, *TINY])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and len(err.splitlines()) == 1, (extra, err)


@pytest.mark.slow
def test_cli_flops_proxy_profile_and_export(table_json, tmp_path, capsys):
    """FLOPs proxy search, real ONNX Runtime profiling of the top archs, ONNX export of the chosen one."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "run"
    rc = main(["search", "--predictor", "flops", "--budget", "60MFLOPs", "--profile-top", "2", "--profile-quick",
               "--backend", "onnxruntime", "--export", "onnx", "-o", str(out), *TINY])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out / "front.csv")
    assert list(rows[0]) == ["arch", "predicted_ms", "score", "mflops", "measured_ms", "meets_budget"]
    assert all(float(r["mflops"]) <= 60 for r in rows)
    assert float(rows[0]["measured_ms"]) > 0
    result = json.loads((out / "result.json").read_text())
    assert result["export"]["artifacts"] and result["export"]["artifacts"][0].endswith(".onnx")


def test_cli_accepts_saved_predictor_folder(tmp_path, capsys):
    """A predictor saved by ``predictors.persistence`` is compiled to a LatencyTable and searched."""
    pytest.importorskip("predictors.persistence")
    from predictors.models import OneHotRidge
    from predictors.persistence import save_predictor

    space = get_space("fbnet")
    archs = np.array(space.random_archs(80, rng=0))
    truth = synthetic_table(space, seed=1, knots=False)
    model = OneHotRidge(space="fbnet").fit(archs, truth.predict(archs))
    folder = tmp_path / "model"
    save_predictor(model, folder, target="onnxruntime_ms")
    budget = float(np.quantile(model.predict(archs), 0.3))
    out = tmp_path / "run"
    rc = main(["search", "--predictor", str(folder), "--budget", f"{budget:.4f}ms", "-o", str(out), *TINY])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out / "front.csv")
    pred = np.array([float(r["predicted_ms"]) for r in rows])
    np.testing.assert_allclose(pred, model.predict(np.array([space.parse_arch(r["arch"]) for r in rows])), rtol=1e-4)
    assert np.all(pred <= budget + 1e-4)


def test_option_pass_through_keeps_strings_and_validates():
    from latnas.cli.search_cmd import parse_options
    from latnas.schema.errors import DataError

    assert parse_options(["epochs=2", "tau=1.5", "hard=true", "name=abc"]) == {
        "epochs": "2", "tau": "1.5", "hard": "true", "name": "abc"}
    with pytest.raises(DataError, match="KEY=VALUE"):
        parse_options(["epochs"])


# ------------------------------------------------------------ scorers and result.json
def _fbnet_cli(table_json, tmp_path, *extra, budget_slack=1.5):
    path, table = table_json
    budget = round(table.min_arch()[1] * budget_slack, 3)
    out = tmp_path / "run"
    argv = ["search", "--space", "fbnet", "--predictor", str(path), "--budget", f"{budget}ms", "-o", str(out),
            "--evals", "8", "--quiet", *extra]
    return out, argv


def test_cli_score_picks_a_registered_scorer_without_loading_data(table_json, tmp_path, capsys, monkeypatch):
    import latnas.search.data as data_mod
    from latnas.search.scorers import ScorerConfig, make_scorer

    def no_data(*a, **k):
        raise AssertionError("a data-free scorer must not load images")

    monkeypatch.setattr(data_mod, "load_data", no_data)
    out, argv = _fbnet_cli(table_json, tmp_path, "--score", "params", budget_slack=50)
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["score"]["name"] == "params" and result["data"] is None and result["evals"] >= 1
    space = get_space("fbnet")
    params = make_scorer("params", ScorerConfig(space=space))
    rows = _rows(out / "front.csv")
    archs = [space.parse_arch(r["arch"]) for r in rows]
    np.testing.assert_allclose([float(r["score"]) for r in rows], params(archs), rtol=1e-5)


def test_cli_score_table_missing_arch_is_a_one_line_error(table_json, tmp_path, capsys):
    space = get_space("fbnet")
    csv_path = tmp_path / "acc.csv"
    archs = space.random_archs(3, rng=0)
    csv_path.write_text("arch,acc\n" + "".join(f"{space.format_arch(a)},{50 + i}\n" for i, a in enumerate(archs)))
    out, argv = _fbnet_cli(table_json, tmp_path, "--score-table", str(csv_path), "--score-column", "acc", budget_slack=50)
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert "score table" in err and "arch" in err
    assert not (out / "result.json").exists()  # nothing reported as if it had scored zero


def test_cli_score_flag_combinations_are_checked(table_json, tmp_path, capsys):
    cases = [
        (["--score-table", "x.csv"], "--score-column"),
        (["--score", "table"], "--score-table"),
        (["--score-table", "x.csv", "--score-column", "a", "--score", "rwe"], "implies --score table"),
        (["--score", "bogus"], "unknown scorer 'bogus'"),
        (["--option", "bogus=1"], "bananas has no option 'bogus' (known: init, pop_size,"),
        (["--algo", "nsga2", "--option", "bogus=1"], "nsga2 has no option 'bogus' (known: pop_size, max_gen)"),
        (["--algo", "dnas", "--pop-size", "4"], "dnas has no option 'pop_size'"),
        (["--algo", "random", "--resume"], "random cannot resume"),
        (["--evals", "0"], "--evals must be"),
    ]
    for extra, needle in cases:
        out, argv = _fbnet_cli(table_json, tmp_path, *extra)
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and len(err.splitlines()) == 1, (extra, err)


def test_result_json_names_chosen_arch_and_benchmark_string(table_json, tmp_path, capsys, monkeypatch):
    space_cls = type(get_space("fbnet"))
    monkeypatch.setattr(space_cls, "arch_str", lambda self, arch: "bench:" + "".join(map(str, arch)), raising=False)
    out, argv = _fbnet_cli(table_json, tmp_path, "--score", "params", "--algo", "random", budget_slack=50)
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    chosen = result["chosen"]
    assert chosen == result["front"][0]["arch"]
    assert result["chosen_arch_str"] == "bench:" + "".join(map(str, get_space("fbnet").parse_arch(chosen)))
    assert f"chosen arch: {chosen} (bench:" in capsys.readouterr().out


def test_demo_summary_reads_what_the_search_writes(table_json, tmp_path, capsys):
    from latnas.cli.demo_cmd import search_summary

    assert search_summary(tmp_path / "missing.json") is None
    out, argv = _fbnet_cli(table_json, tmp_path, "--score", "params", budget_slack=50)
    assert main(argv) == 0, capsys.readouterr().err
    summary = search_summary(out / "result.json")
    result = json.loads((out / "result.json").read_text())
    assert summary["chosen"] == result["chosen"] is not None
    assert summary["algo"] == "bananas" and summary["evals"] == result["evals"] >= 1  # the default --algo
    assert summary["budget"]["unit"] == "ms" and summary["front_top"] == result["front"][:3]


def test_default_algo_is_the_benchmarked_bananas():
    """Without --algo the search uses bananas (the best mean regret on NAS-Bench-201 Q2, docs/nb201.md)."""
    from latnas.cli.search_cmd import search
    from latnas.search.loop import SearchJob
    import inspect

    assert SearchJob(out_dir=Path("x")).algo == "bananas"
    assert inspect.signature(search).parameters["algo"].default.default == "bananas"


def test_default_scorer_is_the_benchmarked_vote():
    """With no --score and no --score-table the search uses the vote (the best on NAS-Bench-201)."""
    from latnas.search.loop import DEFAULT_SCORER, SearchJob, score_name

    assert score_name(SearchJob(out_dir=Path("x"))) == DEFAULT_SCORER == "vote"
    assert score_name(SearchJob(out_dir=Path("x"), score="rwe")) == "rwe"
    assert score_name(SearchJob(out_dir=Path("x"), score_table="t.csv", score_column="acc")) == "table"
