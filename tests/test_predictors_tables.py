"""Arch tables with their own arch column (FBNet ``arch``, NAS-Bench-201 ``arch_str``, or named),
refusals in one line, and target columns with empty, zero or negative latencies."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from latnas.cli.main import main
from latnas.schema.errors import DataError
from latnas.schema.spaces import get_space
from predictors.data import load_arch_table
from predictors.synthetic import synthetic_arch_table
from predictors.train import train_arch_model

NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def table(space):
    return synthetic_arch_table(space, n=80, seed=6, noise=0.01, devices={"a_ms": 1.0, "b_ms": 2.0})


def _write(path, header, rows):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _csv(table, path, arch_col="arch", extra=True, a_values=None):
    a = table.columns["a_ms"] if a_values is None else a_values
    header = ["idx", arch_col, "note", "a_ms", "b_ms"] if extra else [arch_col, "a_ms", "b_ms"]
    rows = []
    for i, s in enumerate(table.arch_strings):
        cells = [s, "" if np.isnan(a[i]) else repr(float(a[i])), repr(float(table.columns["b_ms"][i]))]
        rows.append([i, cells[0], f"net {i}", *cells[1:]] if extra else cells)
    return _write(path, header, rows)


@pytest.mark.parametrize("col", ["arch", "arch_str"])
def test_arch_column_detected(table, space, tmp_path, col):
    tab = load_arch_table(_csv(table, tmp_path / "t.csv", col), space)
    np.testing.assert_array_equal(tab.archs, table.archs)
    assert set(tab.columns) == {"idx", "a_ms", "b_ms"}  # the text column "note" is ignored
    np.testing.assert_allclose(tab.column("a_ms"), table.columns["a_ms"])


def test_named_arch_column_and_refusals(table, space, tmp_path):
    path = _csv(table, tmp_path / "t.csv", "net")
    with pytest.raises(DataError, match="no arch column.*--arch-column"):
        load_arch_table(path, space)
    assert len(load_arch_table(path, space, arch_column="net")) == len(table)
    with pytest.raises(DataError, match="no column 'nope'"):
        load_arch_table(path, space, arch_column="nope")
    with pytest.raises(DataError, match="row 2"):  # the "note" text is not an arch of the space
        load_arch_table(path, space, arch_column="note")
    s = table.arch_strings
    dup = _write(tmp_path / "dup.csv", ["arch", "a_ms"], [[s[0], 1.0], [s[1], 2.0], [s[0], 3.0]])
    with pytest.raises(DataError, match="row 4.*repeats row 2"):
        load_arch_table(dup, space)


def test_target_with_empty_rows_skips_them_and_refuses_bad_latency(table, space, tmp_path):
    a = table.columns["a_ms"].copy()
    a[[3, 7, 11]] = np.nan
    tab = load_arch_table(_csv(table, tmp_path / "nan.csv", a_values=a), space)
    model, meta = train_arch_model(tab, "a_ms", model="ridge", n_train=40)
    assert meta["training"]["skipped_empty_rows"] == 3
    assert not {3, 7, 11} & set(meta["training"]["train_rows"]) and meta["metrics"]["heldout"]["n"] == 80 - 3 - 40
    for bad in (0.0, -2.0, float("inf")):
        b = table.columns["a_ms"].copy()
        b[5] = bad
        tab = load_arch_table(_csv(table, tmp_path / "bad.csv", a_values=b), space)
        with pytest.raises(DataError, match="target column 'a_ms' has 1 infinite, zero or negative"):
            train_arch_model(tab, "a_ms", model="ridge")
    empty = table.columns["a_ms"].copy()
    empty[:] = np.nan
    rows = [[s, "", 1.0] for s in table.arch_strings]
    tab = load_arch_table(_write(tmp_path / "empty.csv", ["arch", "a_ms", "b_ms"], rows), space)
    with pytest.raises(DataError, match="no column 'a_ms'|has no latency values"):
        train_arch_model(tab, "a_ms", model="ridge")
    tab.columns["a_ms"] = empty  # a numeric column with no value at all
    with pytest.raises(DataError, match="has no latency values"):
        train_arch_model(tab, "a_ms", model="ridge")


def test_cli_arch_column(table, tmp_path, capsys):
    path = _csv(table, tmp_path / "t.csv", "net")
    model = tmp_path / "m"
    assert main(["train", "--table", str(path), "--target", "a_ms", "--model", "ridge", "--n-train", "50",
                 "-o", str(model)]) == 2
    assert "--arch-column" in capsys.readouterr().err
    assert main(["train", "--table", str(path), "--arch-column", "net", "--target", "a_ms", "--model", "ridge",
                 "--n-train", "50", "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["eval", str(model), "--table", str(path), "--arch-column", "net", "--target", "a_ms", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(table)
    assert main(["predict", str(model), "--table", str(path), "--arch-column", "net"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(table) and lines[0].split("\t")[0] == table.arch_strings[0]
    assert float(lines[0].split("\t")[1]) > 0


@pytest.mark.skipif(not NB201_CSV.is_file(), reason="shared NAS-Bench-201 table not present")
def test_nb201_table_and_few_shot_transfer(tmp_path, capsys):
    try:
        nb = get_space("nb201")
    except Exception:
        pytest.skip("nb201 space not registered")
    with NB201_CSV.open() as fh:
        head = [next(fh) for _ in range(201)]  # header + 200 archs
    path = tmp_path / "nb201.csv"
    path.write_text("".join(head))
    tab = load_arch_table(path, nb)
    assert tab.arch_strings[0].startswith("|") and tab.archs.shape == (200, nb.n_layers)
    assert "silver_4114_ms" in tab.columns and "arch_index" in tab.columns
    np.testing.assert_array_equal(tab.archs[0], nb.parse_arch(nb.format_arch(tab.archs[0])))

    model = tmp_path / "m"
    assert main(["train", "--table", str(path), "--space", "nb201", "--target", "silver_4114_ms", "--n-train", "20",
                 "--transfer-from", "gold_6240_ms,1080ti_1_ms", "-o", str(model)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["predictor"] == "TransferPredictor"
    assert summary["heldout"]["n"] == 180 and summary["heldout"]["spearman"] > 0.9
    from predictors.persistence import load_latency_table, load_predictor

    est, _ = load_predictor(model, space="nb201")
    lut = load_latency_table(model, nb)
    got, want = lut.predict(tab.archs), est.predict(tab.archs)
    proj = lut.meta.get("additive_projection")
    if proj is None:  # the fit is additive in the cell's edges: the table is the model
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:  # a fit over live/dead pieces: the table is its least-squares additive projection (docs/transfer.md)
        from scipy.stats import spearmanr

        live = ~nb.cut_off(tab.archs)
        rel = np.abs(got[live] / want[live] - 1.0)
        assert np.median(rel) < 0.05 and spearmanr(got[live], want[live])[0] > 0.98, (np.median(rel), proj)
        assert proj["max_rel_diff"] >= proj["median_rel_diff"] > 0 and proj["archs"] > 0
