"""Hardening, second round: bad latency tables and bad predictor folders through every command that reads them.

Each case must exit 2 with one ``error:`` line, no traceback, and leave every
stored byte as it was; ``train`` must never write a model that ``predict``
then refuses.
"""
from __future__ import annotations

import json

from hardening_cases import TRAIN_ONLY, argv_cases, model_folders, run_all, run_case, table_files
from latnas.cli.main import main
from test_cli_fuzz import stored  # noqa: F401 - the shared fixture: a table, a trained model, a store



def test_bad_tables_refused_by_every_table_option(stored, env, capsys):  # noqa: F811
    bad = table_files(stored / "lat.csv", stored / "bad_tables")
    cases = list(argv_cases(("table",), bad, stored, env,
                            skip=lambda path, label: label in TRAIN_ONLY and path != ("train",)))
    n, failures = run_all(cases, capsys, stored)
    assert n >= 30
    assert not failures, f"{len(failures)}/{n} mishandled:\n" + "\n".join(failures)
    assert list(env.iterdir()) == [], "a refused train wrote a model"


def test_table_errors_name_row_and_column(stored, tmp_path, capsys):  # noqa: F811
    bad = table_files(stored / "lat.csv", tmp_path / "t")
    for label, needle in (("dup-target", "'toy_ms' appears twice"), ("underscore", "row 2 column 'toy_ms'"),
                          ("nul", "NUL byte"), ("huge-header", "header line is longer")):
        capsys.readouterr()
        assert main(["predict", str(stored / "model"), "--table", bad[label]]) == 2
        assert needle in capsys.readouterr().err, label


def test_bom_and_text_columns_still_read(stored, env, capsys):  # noqa: F811
    text = (stored / "lat.csv").read_text().splitlines()
    path = env.parent / "bom.csv"
    path.write_text("\ufeff" + text[0] + ",note\n" + "".join(f"{line},n/a\n" for line in text[1:]), encoding="utf-8")
    assert main(["train", "--table", str(path), "--target", "toy_ms", "--model", "ridge", "-o", str(env / "m")]) == 0
    assert main(["predict", str(env / "m"), "--table", str(path)]) == 0


def test_train_refuses_a_model_it_would_not_load(stored, env, capsys):  # noqa: F811
    """1e-300 ms latencies fit a model whose predictions are not positive: exit 2 at train, nothing written."""
    bad = table_files(stored / "lat.csv", env.parent / "t")
    problem = run_case(["train", "--table", bad["tiny-latency"], "--target", "toy_ms", "--model", "ridge",
                        "-o", str(env / "m")], capsys)
    assert problem is None, problem
    assert not (env / "m").exists() and list(env.iterdir()) == []


def test_bad_predictor_folders_refused_by_every_model_option(stored, env, capsys):  # noqa: F811
    bad = model_folders(stored / "model", stored / "bad_models")
    cases = list(argv_cases(("model_dir", "predictor"), bad, stored, env))
    n, failures = run_all(cases, capsys, stored)
    assert n >= 40
    assert not failures, f"{len(failures)}/{n} mishandled:\n" + "\n".join(failures)


def test_save_replaces_a_model_atomically_and_keeps_mode(stored, env, capsys):  # noqa: F811
    out = env / "m"
    argv = ["train", "--table", str(stored / "lat.csv"), "--target", "toy_ms", "--model", "ridge", "-o", str(out)]
    assert main(argv) == 0 and main(argv) == 0  # a second train replaces the first model
    assert sorted(p.name for p in env.iterdir()) == ["m"], "temporary folders left behind"
    assert (out.stat().st_mode & 0o777) != 0o700
    assert json.loads((out / "meta.json").read_text())["target"] == "toy_ms"
    (env / "other").mkdir()
    (env / "other" / "notes.txt").write_text("mine")
    assert run_case([*argv[:-1], str(env / "other")], capsys) is None  # a folder of other files is not overwritten
    assert (env / "other" / "notes.txt").read_text() == "mine"
