"""Hardening, second round: resource options at absurd values are refused up front (exit 2, one line, no work).

Cases come from each command's own options: every option named in
:data:`ABSURD` gets that value (each was inside the declared range before this
round), and the search's image options are tried together; each must be
refused before any profiling, training or searching starts (the runner's
alarm fails a case that started work).
"""
from __future__ import annotations

import os

from hardening_cases import argv_cases, run_all
from test_cli_fuzz import commands, stored  # noqa: F401 - the shared fixture

#: hours of work or GBs of memory (with the command's other defaults)
ABSURD = {"evals": 1_000_000, "models": 100_000, "threads": 256, "n_train": 1_000_000, "n_val": 1_000_000,
          "resolution": 1024, "workers": 100_000, "profile_top": 10_000, "n_estimators": 100_000}
#: bounded by the input itself (the table's rows; a fingerprint's thread count times nothing), or, for search's
#: resolution beside the fuzz base's 20 + 20 images, 480 MB and one eval: allowed (the combined cases below are not)
HARMLESS = {("train", "n_train"), ("devices", "threads"), ("search", "resolution")}


def _cases(d, w):
    for path, cmd in commands():
        for param in cmd.params:
            value = ABSURD.get(param.name)
            if value is None or (path[0], param.name) in HARMLESS:
                continue
            if param.name == "threads" and value <= (os.cpu_count() or 1):
                continue
            extra = ["--executor", "ray"] if param.name == "workers" else []
            for case_id, argv in argv_cases((param.name,), {f"={value}": str(value)}, d, w,
                                            skip=lambda p, label, path=path: p != path):
                yield case_id, [*argv, *extra]
    base = ["search", "-o", str(w / "s"), "--predictor", "flops"]
    yield "search n_train+resolution", [*base, "--evals", "1", "--n-train", "100000", "--resolution", "1024"]
    yield "search evals x images", [*base, "--evals", "20000", "--n-train", "5000", "--n-val", "5000"]
    yield "demo resolution", ["demo", "-o", str(w / "demo"), "--resolution", "1024", "--quick"]


def test_absurd_resource_values_refused_up_front(stored, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))
    work = tmp_path / "work"
    work.mkdir()
    cases = list(_cases(stored, work))
    n, failures = run_all(cases, capsys, stored)
    assert n >= 10
    assert not failures, f"{len(failures)}/{n} mishandled:\n" + "\n".join(failures)
    assert list(work.iterdir()) == []
