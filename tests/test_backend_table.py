"""The emulated ``table`` device backend: lookup, fingerprint (table sha256 + column), one-line errors,
and ``latnas profile --backend table`` through the CLI main()."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from latnas.cli.main import main
from latnas.schema.errors import DataError
from latnas.schema.spaces import get_space
from predictors.synthetic import synthetic_arch_table, write_arch_csv
from profilers.fingerprint import device_fingerprint
from profilers.runner import get_backend


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet")


@pytest.fixture(scope="module")
def table(space):
    return synthetic_arch_table(space, n=40, seed=9, noise=0.0, devices={"dev_a_ms": 1.0, "dev_b_ms": 2.0})


@pytest.fixture(scope="module")
def csv_path(table, tmp_path_factory):
    return write_arch_csv(table, tmp_path_factory.mktemp("dev") / "devices.csv")


def test_lookup_returns_the_table_value(space, table, csv_path):
    bk = get_backend("table", table=str(csv_path), column="dev_b_ms")
    for i in (0, 7, 39):
        got = bk.measure_model(space.name, table.arch_strings[i], space=space)
        assert got.median_ms == pytest.approx(round(float(table.columns["dev_b_ms"][i]), 6))
        assert got.min_ms == got.median_ms and got.repeats == 1


def test_fingerprint_names_table_hash_and_column(csv_path):
    sha = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    a = get_backend("table", table=str(csv_path), column="dev_a_ms")
    b = get_backend("table", table=str(csv_path), column="dev_b_ms")
    info = a.device_info()
    assert info["table_sha256"] == sha and info["column"] == "dev_a_ms" and info["emulated"] == "table"
    fa, fb = device_fingerprint(a)[0], device_fingerprint(b)[0]
    assert fa != fb  # another column is another device
    assert device_fingerprint(get_backend("table", table=str(csv_path), column="dev_a_ms"))[0] == fa  # stable
    host = device_fingerprint(a)[1]
    assert "cpu" not in json.dumps(host).lower() or host.get("emulated") == "table"


def test_missing_arch_is_a_one_line_error(space, table, csv_path):
    bk = get_backend("table", table=str(csv_path), column="dev_a_ms")
    known = {tuple(a) for a in table.archs.tolist()}
    missing = next(a for a in space.random_archs(200, 123) if tuple(a) not in known)
    with pytest.raises(DataError) as exc:
        bk.measure_model(space.name, space.format_arch(missing), space=space)
    assert "not in device table" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("column, match", [("nope_ms", "no numeric column"), ("dev_const_ms", "constant")])
def test_bad_columns_are_one_line_errors(space, table, tmp_path, column, match):
    t = synthetic_arch_table(space, n=10, seed=1, noise=0.0, devices={"dev_a_ms": 1.0})
    t.columns["dev_const_ms"] = np.full(len(t), 3.0)
    path = write_arch_csv(t, tmp_path / "t.csv")
    with pytest.raises(DataError, match=match) as exc:
        get_backend("table", table=str(path), column=column).lookup(space)
    assert "\n" not in str(exc.value)


def test_cli_profile_backend_table(space, table, csv_path, tmp_path, capsys):
    """`latnas profile --backend table --models N` stores the table's values for archs the table holds."""
    from profilers.store import ProfileStore

    # --models draws random archs of the space: give the table every one it will draw
    archs = space.random_archs(5, 0)
    t = synthetic_arch_table(space, n=1, seed=0, noise=0.0, devices={"dev_a_ms": 1.0})
    rows = np.array(archs, dtype=np.int64)
    t.archs, t.arch_strings = rows, [space.format_arch(a) for a in archs]
    t.columns = {"dev_a_ms": 1.0 + rows.sum(axis=1) * 0.01}
    path = write_arch_csv(t, tmp_path / "five.csv")
    store = tmp_path / "p.db"
    rc = main(["profile", "--space", "fbnet", "--backend", "table", "--device-table", str(path),
               "--device-column", "dev_a_ms", "--store", str(store), "--models", "5", "--seed", "0", "--quick"])
    capsys.readouterr()
    assert rc == 0
    with ProfileStore(store, read_only=True) as db:
        recs = [r for r in db.to_records(all_devices=True) if r["kind"] == "model"]
    got = {json.loads(r["spec"])["arch"]: r["median_ms"] for r in recs}
    assert {r["backend"] for r in recs} == {"table"}
    want = {a: float(v) for a, v in zip(t.arch_strings, t.columns["dev_a_ms"])}
    assert len(got) == 5 and all(got[a] == pytest.approx(want[a], rel=1e-5) for a in want)


def test_cli_profile_backend_table_needs_table(tmp_path, capsys):
    rc = main(["profile", "--space", "fbnet", "--backend", "table", "--store", str(tmp_path / "p.db"), "--models", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "--device-table" in err and "\n" not in err


def test_search_verify_and_refit_calibrates_an_optimistic_predictor(tmp_path, capsys):
    """The device runs every arch 2x slower than the predictor thinks: one round of --profile-top finds no
    arch within budget; further rounds calibrate by the measured/predicted ratio and verify archs that meet it."""
    import itertools

    nb = get_space("nb201")
    archs = np.array(list(itertools.product(range(nb.n_choices), repeat=nb.n_layers)), dtype=np.int64)
    cost = np.random.default_rng(0).uniform(0.5, 2.0, size=(nb.n_layers, nb.n_choices))
    fast = 1.0 + cost[np.arange(nb.n_layers), archs].sum(axis=1)
    t = synthetic_arch_table(nb, n=1, seed=0, noise=0.0, devices={"a_ms": 1.0})
    t.archs, t.arch_strings = archs, [nb.format_arch(a) for a in archs]
    t.columns = {"dev_ms": fast}  # what the predictor learns
    train_csv = write_arch_csv(t, tmp_path / "train.csv")
    t.columns = {"dev_ms": 2.0 * fast, "acc": 40.0 + 3.0 * fast}  # what the device does; slower archs score higher
    csv = write_arch_csv(t, tmp_path / "dev.csv")
    assert main(["train", "--table", str(train_csv), "--space", "nb201", "--target", "dev_ms", "--model", "ridge",
                 "-o", str(tmp_path / "m")]) == 0
    budget = float(np.median(2.0 * fast))

    def run(rounds: int) -> dict:
        out = tmp_path / f"s{rounds}"
        rc = main(["search", "--space", "nb201", "--predictor", str(tmp_path / "m"), "--budget", f"{budget:.3f}ms",
                   "--algo", "rea", "--evals", "60", "--score-table", str(csv), "--score-column", "acc",
                   "--profile-top", "3", "--profile-rounds", str(rounds), "--backend", "table",
                   "--device-table", str(csv), "--device-column", "dev_ms", "-o", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        return json.loads((out / "result.json").read_text())

    once = run(1)
    assert once["profile"]["meets_budget"] == 0 and len(once["profile"]["rounds"]) == 1
    refit = run(3)
    rounds = refit["profile"]["rounds"]
    assert refit["profile"]["meets_budget"] >= 1 and len(rounds) >= 2
    assert rounds[1]["calibration"] == pytest.approx(2.0, rel=0.1)
    chosen = t.arch_strings.index(refit["chosen"])
    assert t.columns["dev_ms"][chosen] <= budget  # the chosen arch is a verified one
