"""`latnas train --transfer-from` reports its own LOO error on the k samples and warns in one line when
it is large; `latnas eval` shows it beside the held-out figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from latnas.cli.main import main
from latnas.schema.spaces import get_space
from predictors.synthetic import synthetic_arch_table, write_arch_csv


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    table = synthetic_arch_table(get_space("fbnet"), n=200, seed=5, noise=0.01, devices={"toy_ms": 1.0, "big_ms": 3.0})
    # a device the source does not describe: latency unrelated to the arch
    table.columns["odd_ms"] = np.random.default_rng(0).lognormal(1.0, 0.8, size=len(table))
    return write_arch_csv(table, tmp_path_factory.mktemp("data") / "lat.csv")


def _train(csv_path, out, target, capsys):
    rc = main(["train", "--table", str(csv_path), "--target", target, "--n-train", "12", "--seed", "0",
               "-o", str(out), "--transfer-from", "big_ms"])
    assert rc == 0
    cap = capsys.readouterr()
    return json.loads(cap.out), cap.err


def test_good_transfer_reports_small_loo_and_no_warning(csv_path, tmp_path, capsys):
    summary, err = _train(csv_path, tmp_path / "good", "toy_ms", capsys)
    loo = summary["loo_on_train"]
    assert loo["n"] == 12 and loo["mape"] < 0.05 and loo["large"] is False
    assert "warning" not in err
    assert main(["eval", str(tmp_path / "good"), "--table", str(csv_path), "--target", "toy_ms", "--exclude-train",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["loo_on_train"]["mape"] == pytest.approx(loo["mape"]) and res["n"] == 188
    assert res["mape"] < 0.05  # held-out agrees with the self-check


def test_bad_transfer_warns_in_one_line(csv_path, tmp_path, capsys):
    summary, err = _train(csv_path, tmp_path / "bad", "odd_ms", capsys)
    loo = summary["loo_on_train"]
    assert loo["large"] is True and loo["mape"] > 0.2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: transfer misses its own 12 samples")
    meta = json.loads((tmp_path / "bad" / "meta.json").read_text())
    assert meta["training"]["transfer"]["loo"]["large"] is True


def test_too_few_samples_is_one_line_error(csv_path, tmp_path, capsys):
    rc = main(["train", "--table", str(csv_path), "--target", "toy_ms", "--n-train", "2", "-o", str(tmp_path / "x"),
               "--transfer-from", "big_ms"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err
