"""Issue 14's bad inputs, one by one: each is ONE `error:` line, exit 2 (1: nothing succeeded), no traceback,
no stored byte changed, and no work started before the refusal."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latnas.cli.main import main
from latnas.schema.spaces import get_space
from predictors.synthetic import synthetic_arch_table, write_arch_csv


def folder_digest(folder: Path) -> dict[str, str]:
    """Name -> sha256 of every regular file under ``folder`` (what "stored bytes unchanged" compares)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A latency table, a trained predictor, a profile store and assorted bad files, in one folder."""
    from profilers.base import Measurement
    from profilers.protocol import summarize
    from profilers.store import ProfileStore

    root = tmp_path_factory.mktemp("cli_errors")
    space = get_space("fbnet")
    csv = write_arch_csv(synthetic_arch_table(space, n=40, seed=1, noise=0.01, devices={"toy_ms": 1.0}), root / "lat.csv")
    assert main(["train", "--table", str(csv), "--target", "toy_ms", "--model", "ridge", "-o", str(root / "model")]) == 0
    with ProfileStore(root / "profiles.db") as store:
        store.use_device("f00d", {"cpu": "test"})
        stats = summarize([1.0, 1.1, 0.9, 1.0], warmup_runs=2, stable=True)
        store.put(Measurement("conv_x", "block", "onnxruntime", "f00d", 1, stats, {"op": "conv"}, 1.0))
    lines = csv.read_text().splitlines()
    (root / "huge.csv").write_text("\n".join([lines[0]] + [l.rsplit(",", 1)[0] + ",1e308" for l in lines[1:]]) + "\n")
    (root / "empty.csv").write_text("")
    (root / "header_only.csv").write_text(lines[0] + "\n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "regular").write_text("a regular file\n")
    (root / "empty.db").write_bytes(b"")
    os.mkfifo(root / "fifo")
    return root


def run_bad(argv: list[str], capsys, folder: Path, code: int = 2) -> str:
    """Run ``argv``; assert one `error:` line, exit ``code``, no traceback, ``folder`` unchanged. Returns the line."""
    capsys.readouterr()
    before = folder_digest(folder)
    rc = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == code, (argv[:6], rc, captured.err[-500:])
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv[:6], captured.err[-500:])
    assert "Traceback" not in captured.err + captured.out
    assert len(lines[0]) <= 320  # truncated, never a 1 MB echo
    assert folder_digest(folder) == before, argv[:6]
    return lines[0]


ARCH = "0" * 22


def cases(d: Path):
    """(argv, expected message fragment) for every bad input the issue lists."""
    lat, model, store = str(d / "lat.csv"), str(d / "model"), str(d / "profiles.db")
    train = ["train", "--table", lat, "--target", "toy_ms", "--model", "ridge"]
    search = ["search", "--predictor", "flops", "--evals", "1"]
    return [
        (train + ["--seed", "-1", "-o", str(d / "o")], "--seed"),
        (["profile", "--batch", "1000000", "--store", store], "--batch"),
        (["profile", "--threads", str(10**5), "--store", store], "--threads"),
        (["profile", "--models", str(10**12), "--store", store], "--models"),
        (search + ["--budget", "1e999ms", "-o", str(d / "s")], "finite"),
        (["devices", "--threads", "0"], "--threads"),
        (["train", "--store", store, "--backend", "onnxruntime", "--correction", "nope", "-o", str(d / "o")], "--correction"),
        (["train", "--table", lat, "--target", "toy_ms", "--model", "nope", "-o", str(d / "o")], "unknown predictor"),
        (["train", "--store", store, "--backend", "onnxruntime", "--model", "xgb", "-o", str(d / "o")], "unknown predictor"),
        (train + ["--transfer-from", ",,,", "-o", str(d / "o")], "--transfer-from"),
        (train + ["-o", ""], "empty value"),
        (train + ["-o", str(d / "regular" / "sub")], "not a folder"),
        (train + ["-o", "/proc/latnas_out"], "not writable"),
        (search + ["--pop-size", "-1", "-o", str(d / "s")], "--pop-size"),
        (search + ["--option", "pop_size=-1", "-o", str(d / "s")], "pop_size"),
        (search + ["--resolution", "0", "-o", str(d / "s")], "--resolution"),
        (search + ["-o", str(d / "regular" / "s")], "not a folder"),
        (["predict", model, "--arch", "\u0663" * 22], "ASCII digits"),
        (["predict", model, "--arch", "\uff11" * 22], "ASCII digits"),
        (["predict", model, "--archs", str(d / "binary.txt")], "binary"),
        (["predict", model, "--archs", str(d / "fifo")], "not a regular file"),
        (["train", "--table", str(d / "empty.csv"), "--target", "toy_ms", "-o", str(d / "o")], "arch column"),
        (["train", "--table", str(d / "header_only.csv"), "--target", "toy_ms", "-o", str(d / "o")], "no rows"),
        (["train", "--table", str(d / "huge.csv"), "--target", "toy_ms", "--model", "ridge", "-o", str(d / "o")], "out of range"),
        (["export", "--arch", ARCH, "-o", str(d / "e"), "--batch", "1000000"], "--batch"),
        (["export", "--arch", ARCH, "-o", str(d / "regular" / "e")], "not a folder"),
        (["agent", "serve", "--port", "-1"], "--port"),
        (["agent", "serve", "--port", "70000"], "--port"),
        (["profiles", "summary", "--store", str(d / "fifo")], "not a regular file"),
        (["profiles", "summary", "--store", str(d / "empty.db")], "empty"),
        (["profiles", "export", "--store", str(d / "empty.db"), "-o", str(d / "x.csv")], "empty"),
        (["profiles", "export", "--store", store, "-o", str(d / "fifo")], "not a regular file"),
        (["train", "--store", str(d / "empty.db"), "--backend", "onnxruntime", "-o", str(d / "o")], "empty"),
        (["profile", "--seed", "x" * 1_000_000], "characters long"),
        (["profile", "--bogus-option"], "No such option"),
        (["nosuchcommand"], "No such command"),
        (["predict"], "Missing argument"),
    ]


def test_issue_cases_are_one_line_errors(data, capsys):
    for argv, fragment in cases(data):
        line = run_bad(argv, capsys, data)
        assert fragment in line, (argv[:6], line)
    assert not (data / "o").exists() and not (data / "s").exists() and not (data / "e").exists()
    assert not any(p.name.endswith(("-wal", "-shm")) for p in data.iterdir())


def _damaged_store(path: Path, sql: str) -> Path:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("sql, fragment", [
    ("UPDATE measurements SET spec = '{not json'", "spec"),
    ("ALTER TABLE measurements ADD COLUMN surprise TEXT", "does not match schema"),
    ("DROP TABLE fingerprints", "missing table"),
])
def test_damaged_store_is_one_line_and_untouched(data, tmp_path, capsys, sql, fragment):
    import shutil

    store = tmp_path / "p.db"
    shutil.copy(data / "profiles.db", store)
    _damaged_store(store, sql)
    for argv in (["profiles", "summary", "--store", str(store)],
                 ["profiles", "export", "--store", str(store), "-o", str(tmp_path / "x.csv")],
                 ["train", "--store", str(store), "--backend", "onnxruntime", "-o", str(tmp_path / "m")]):
        assert fragment in run_bad(argv, capsys, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.db"]  # no -wal/-shm, no CSV, no model


def test_read_only_commands_do_not_write(data, tmp_path, capsys):
    import shutil

    store = tmp_path / "p.db"
    shutil.copy(data / "profiles.db", store)
    before = store.read_bytes()
    assert main(["profiles", "summary", "--store", str(store)]) == 0
    assert main(["profiles", "export", "--store", str(store), "-o", str(tmp_path / "rows.csv")]) == 0
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.db", "rows.csv"]


def test_profile_where_every_block_fails_exits_1(data, tmp_path, capsys, monkeypatch):
    from profilers.backends.onnxruntime import OnnxRuntimeBackend

    def broken(self, spec, config):
        raise RuntimeError("export exploded")

    monkeypatch.setattr(OnnxRuntimeBackend, "measure_spec", broken)
    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))
    store = tmp_path / "p.db"
    capsys.readouterr()
    rc = main(["profile", "--store", str(store), "--limit", "2", "--quick", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip().splitlines()[-1].startswith("error: nothing was measured: all 2 items failed")
    assert "Traceback" not in err


HOLD_LOCK = """
import sys, time
from profilers.lock import profiling_lock
with profiling_lock():
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def _hold_lock(lock_dir: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "LATNAS_LOCK_DIR": str(lock_dir)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_profiling_run_refused_with_no_wait(tmp_path, capsys, monkeypatch):
    from profilers.lock import ProfilingBusy, profiling_lock

    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))
    proc = _hold_lock(tmp_path / "locks", 30)
    try:
        with pytest.raises(ProfilingBusy, match="another profiling run holds this machine"):
            with profiling_lock(wait=False):
                pass
        line = run_bad(["profile", "--store", str(tmp_path / "p.db"), "--limit", "1", "--quick", "--no-progress",
                        "--no-wait"], capsys, tmp_path / "locks")
        assert "another profiling run" in line and f"pid {proc.pid}" in line
    finally:
        proc.kill()
        proc.wait()
    with profiling_lock(wait=False):  # released when its holder died
        with profiling_lock(wait=False):  # re-entrant in one process
            pass


def test_waiting_run_proceeds_after_the_holder_ends(tmp_path, monkeypatch):
    from profilers.lock import profiling_lock

    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path))
    proc = _hold_lock(tmp_path, 1.0)
    told = []
    start = time.monotonic()
    with profiling_lock(wait=True, poll_s=0.05, notify=told.append):
        waited = time.monotonic() - start
    proc.wait()
    assert told and "waiting for another profiling run" in told[0]
    assert waited > 0  # it did wait (no timing bound asserted)


def test_native_noise_filtered_and_other_lines_kept(capfd):
    from latnas.cli.quiet import filtered_stderr

    with filtered_stderr():
        os.write(2, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
        os.write(2, b"[threadpool.cpp:66] Resetting threadpool to 1 threads.\n")
        os.write(2, b"error: a real message\n")
        print("warning: ours", file=sys.stderr)
    err = capfd.readouterr().err
    assert "cpuinfo" not in err and "threadpool" not in err
    assert "error: a real message" in err and "warning: ours" in err


def test_runner_keeps_a_row_written_meanwhile_and_force_replaces(tmp_path):
    """No silent overwrite: a row another writer stored while we measured is kept and reported; force replaces."""
    from dataclasses import replace as dc_replace

    from latnas.schema.spec import BlockSpec
    from profilers import ProfileStore, profile_blocks
    from profilers.backends.torch_cpu import TorchCPUBackend
    from profilers.base import Measurement, ProtocolConfig
    from profilers.fingerprint import device_fingerprint

    fast = ProtocolConfig(warmup_runs=1, warmup_seconds=0.0, min_repeats=5, max_repeats=6, max_seconds=0.2)
    spec = BlockSpec("conv", 3, 4, 8, 8, 1, 1)
    path = tmp_path / "p.db"
    fp = device_fingerprint(TorchCPUBackend(), fast.threads)[0]

    class Racing(TorchCPUBackend):
        """While measuring, another writer stores the same block (as a second profiling process would)."""

        def measure_spec(self, spec, config):
            stats = super().measure_spec(spec, config)
            stats = stats[0] if isinstance(stats, tuple) else stats
            with ProfileStore(path) as other:
                theirs = dc_replace(stats, median_ms=123.0)
                other.put(Measurement(spec.key, "block", self.name, fp, spec.batch, theirs, spec.to_dict(), 1.0))
            return stats

    with ProfileStore(path) as store:
        run = profile_blocks(Racing(), [spec], store, fast, progress=False)
        assert (run.done, run.kept, run.failed) == (0, [spec.key], 0)
        assert store.get(spec.key, "torch-cpu", fingerprint=fp).stats.median_ms == 123.0  # the other's row stays
        forced = profile_blocks(TorchCPUBackend(), [spec], store, fast, progress=False, force=True)
        assert (forced.done, forced.skipped) == (1, 0)
        assert store.get(spec.key, "torch-cpu", fingerprint=fp).stats.median_ms != 123.0  # replaced on purpose
        again = profile_blocks(TorchCPUBackend(), [spec], store, fast, progress=False)
        assert (again.done, again.skipped) == (0, 1)
