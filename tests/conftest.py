"""Shared test helpers: single-threaded torch, location of the shared FBNet data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def fbnet_data_dir() -> Path | None:
    env = os.environ.get("LATNAS_FBNET_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "fbnet-latency")
    for c in candidates:
        if (c / "fbnet_cifar100_latency.csv").is_file():
            return c
    return None


@pytest.fixture
def fbnet_data() -> Path:
    d = fbnet_data_dir()
    if d is None:
        pytest.skip("shared FBNet latency data not found (set LATNAS_FBNET_DATA or place ../shared/data/fbnet-latency)")
    return d


@pytest.fixture(autouse=True)
def _session_profiling_lock(tmp_path_factory, monkeypatch):
    """Profiling in tests takes a lock of this test session, not the host's: a real run elsewhere never blocks CI."""
    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path_factory.getbasetemp() / "profiling-locks"))


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A CLI case's working folder (``tmp_path/work``, empty) with the cwd and the profiling lock in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LATNAS_LOCK_DIR", str(tmp_path / "locks"))
    work = tmp_path / "work"
    work.mkdir()
    return work
