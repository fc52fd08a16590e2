"""Hardening, second round: bad profile stores through every ``--store`` option.

Each case exits 2 with one ``error:`` line, no traceback, and leaves the
file (and anything a link points to) byte-for-byte as it was.
"""
from __future__ import annotations

import os

import pytest

from hardening_cases import argv_cases, run_all, store_files
from test_cli_fuzz import stored  # noqa: F401 - the shared fixture


def test_bad_stores_refused_by_every_store_option(stored, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))
    work = tmp_path / "work"
    work.mkdir()
    bad = store_files(stored / "bad_stores")
    cases = list(argv_cases(("store",), bad, stored, work))
    n, failures = run_all(cases, capsys, stored)
    assert n >= 40
    assert not failures, f"{len(failures)}/{n} mishandled:\n" + "\n".join(failures)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_store_in_read_only_folder_refused(tmp_path, capsys):
    from hardening_cases import run_case

    ro = tmp_path / "ro"
    ro.mkdir()
    store_files(tmp_path / "s")
    (tmp_path / "s" / "good.db").rename(ro / "p.db")
    ro.chmod(0o555)
    try:
        assert run_case(["profile", "--store", str(ro / "p.db"), "--limit", "1", "--quick"], capsys) is None
    finally:
        ro.chmod(0o755)
