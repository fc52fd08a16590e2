"""Hardening, second round: ``kill -9`` during ``train`` and ``search``.

``train`` is killed at several moments, among them while it writes the model
(its hidden ``.part-`` folder has appeared): the output folder must then be
absent, or be the previous model, and load either way; a rerun writes a model
that loads. ``search`` is killed once its checkpoint holds scores: the
checkpoint must be whole JSON, and ``--resume`` must finish with the same front
as an uninterrupted run with the same seed, without re-scoring what was stored.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latnas.schema.spaces import get_space
from predictors.synthetic import synthetic_arch_table, write_arch_csv

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ARCH = "0" * 22


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latnas.cli.main", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "latnas.cli.main", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(proc: subprocess.Popen, ready, deadline_s: float = 180) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False when it exited first."""
    end = time.time() + deadline_s
    try:
        while proc.poll() is None and time.time() < end:
            if ready():
                return True
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()


def _loads(model: Path) -> bool:
    return _cli("predict", str(model), "--arch", ARCH).returncode == 0


@pytest.mark.slow
def test_train_killed_at_any_moment_leaves_no_half_model(tmp_path):
    table = tmp_path / "lat.csv"
    write_arch_csv(synthetic_arch_table(get_space("fbnet"), n=600, seed=1, noise=0.02, devices={"toy_ms": 1.0}), table)
    out = tmp_path / "m"
    args = ("train", "--table", str(table), "--target", "toy_ms", "--model", "xgb", "-o", str(out))

    def parts() -> set[Path]:
        return {p for p in tmp_path.iterdir() if p.name.startswith(".m.part-")}

    def kill_in(stage: str) -> None:
        """Kill while the new model's files are written ("files") or once all are, while it is verified ("meta")."""
        old = parts()

        def ready() -> bool:
            new = parts() - old
            return bool(new) and (stage == "files" or any((p / "meta.json").exists() for p in new))

        for _ in range(4):  # the verify window is short: on a loaded host a run may finish first; that try is void
            if _kill_when(_start(*args), ready):
                return
            if stage_is_fresh:
                shutil.rmtree(out)
        raise AssertionError(f"train finished before the kill ({stage}), 4 times")

    stage_is_fresh = True
    for stage in ("files", "meta"):  # no model yet: none may appear
        kill_in(stage)
        assert not out.exists(), f"a train killed while writing ({stage}) left {out}"
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    before = (out / "state.json").read_bytes()
    stage_is_fresh = False
    for stage in ("files", "meta"):  # replacing a model: the previous one stays, whole
        kill_in(stage)
        assert (out / "state.json").read_bytes() == before and _loads(out)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["lat.csv", "m"]


def _front(folder: Path) -> list[str]:
    return (folder / "front.csv").read_text().splitlines()


@pytest.mark.slow
def test_search_killed_then_resumed_gives_the_uninterrupted_front(tmp_path):
    base = ("search", "--predictor", "flops", "--score", "params", "--evals", "400", "--pop-size", "20", "--seed", "5",
            "--quiet")
    full = _cli(*base, "-o", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    run = tmp_path / "run"
    ckpt = run / "checkpoint.json"

    def scored() -> bool:
        try:
            return len(json.loads(ckpt.read_text())["scores"]) >= 60
        except (OSError, ValueError, KeyError):
            return False

    assert _kill_when(_start(*base, "-o", str(run)), scored), "search finished before the kill"
    saved = json.loads(ckpt.read_text())  # whole JSON at any moment (written beside, renamed into place)
    assert 60 <= len(saved["scores"]) < 400
    assert not (run / "result.json").exists()
    again = _cli(*base, "-o", str(run), "--resume")
    assert again.returncode == 0, again.stderr
    assert _front(run) == _front(tmp_path / "full")
    result = json.loads((run / "result.json").read_text())
    assert result["evals"] == json.loads((tmp_path / "full" / "result.json").read_text())["evals"]
