"""`latnas devices/profile/profiles`: bad inputs are one-line errors; kill -9 then resume."""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latnas.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def _run(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(rc, out, err, needle):
    assert rc == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    assert "Traceback" not in out + err


def test_devices_lists_backends(capsys):
    rc, out, err = _run(capsys, "devices")
    assert rc == 0
    for name in ("torch-cpu", "onnxruntime", "executorch", "onnxruntime-cuda"):
        assert name in out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--space", "nosuchspace"], "unknown space"),
        (["--backend", "nosuchbackend"], "unknown backend"),
        (["--backend", "onnxruntime-cuda"], "not available"),
        (["--batch", "0"], "--batch"),
        (["--threads", "0"], "--threads"),
        (["--models", "-1"], "--models"),
    ],
)
def test_profile_bad_inputs(capsys, tmp_path, args, needle):
    rc, out, err = _run(capsys, "profile", "--store", str(tmp_path / "p.db"), "--quick", "--no-progress", *args)
    _assert_one_line_error(rc, out, err, needle)


def test_profile_refuses_foreign_and_corrupt_stores(capsys, tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 20)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    for path, needle in ((text, "not an SQLite file"), (foreign, "another application")):
        before = path.read_bytes()
        rc, out, err = _run(capsys, "profile", "--backend", "torch-cpu", "--store", str(path), "--quick", "--limit", "1", "--no-progress")
        _assert_one_line_error(rc, out, err, needle)
        assert path.read_bytes() == before


def test_profile_models_and_summary(capsys, tmp_path):
    store = str(tmp_path / "p.db")
    rc, out, err = _run(capsys, "profile", "--backend", "torch-cpu", "--store", store, "--models", "2", "--seed", "3",
                        "--blocks", "--limit", "2", "--quick", "--no-progress")
    assert rc == 0, err
    assert re.search(r"block\W+2\W+2\W+0\W+0", out) and re.search(r"model\W+2\W+2\W+0\W+0", out), out
    rc, out, err = _run(capsys, "profiles", "summary", "--store", store)
    assert rc == 0 and "torch-cpu" in out and "model" in out and "block" in out


def test_export_missing_store(capsys, tmp_path):
    rc, out, err = _run(capsys, "profiles", "export", "--store", str(tmp_path / "none.db"), "-o", str(tmp_path / "o.csv"))
    _assert_one_line_error(rc, out, err, "no profile store")


def _rows(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(con.execute("SELECT key, created FROM measurements").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def test_kill_9_then_resume(capsys, tmp_path):
    store = tmp_path / "p.db"
    limit = 12
    args = ["profile", "--space", "fbnet", "--backend", "torch-cpu", "--store", str(store), "--limit", str(limit), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "latnas.cli.main", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while len(_rows(store)) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _rows(store)
    assert 3 <= len(before) < limit, f"killed too late or too early: {len(before)} rows"
    rc, out, err = _run(capsys, *args, "--quick")  # a lighter protocol is fine: same device fingerprint
    assert rc == 0, err
    after = _rows(store)
    assert len(after) == limit
    assert all(after[k] == created for k, created in before.items())  # not re-measured
    m = re.search(r"block\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)", out)  # count, done, skipped, failed
    assert m and [int(g) for g in m.groups()] == [limit, limit - len(before), len(before), 0], out
    rc, out, err = _run(capsys, "profiles", "export", "--store", str(store), "-o", str(tmp_path / "o.csv"))
    assert rc == 0 and (tmp_path / "o.csv").read_text().count("\n") == limit + 1


def test_summary_fits_80_columns_without_cutting_names():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from latnas.cli.profiles_summary import print_summary, summary_rows

    def row(fp, backend, kind, ms, spread, n):
        stats = SimpleNamespace(median_ms=ms, noisy=spread > 0.03)
        return SimpleNamespace(fingerprint=fp, backend=backend, kind=kind, stats=stats, spread=spread,
                               sessions=(stats,) * n, protocol="legacy" if n == 1 else "sessions=3")

    rows = [row("0123456789abcdef", "onnxruntime-cuda", "block", 0.5, 1.234, 3),
            row("0123456789abcdef", "onnxruntime-cuda", "block", 1.5, 0.01, 5),
            row("fedcba9876543210", "executorch", "model", 12.25, 0.0, 1)]
    out = io.StringIO()
    print_summary(rows, {"0123456789abcdef": {"cpu": "AMD EPYC", "threads": 1}}, Console(file=out, width=80))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for needle in ("onnxruntime-cuda", "executorch", "0123456789abcdef: AMD EPYC, 1 thr", "12.2500", "123%", "1 (1 old)"):
        assert needle in text, (needle, text)
    groups = summary_rows(rows)
    assert [g["rows"] for g in groups] == [2, 1] and groups[0]["noisy"] == 1 and groups[0]["sessions_per_row"] == 4.0
