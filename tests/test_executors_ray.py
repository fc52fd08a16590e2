"""Executors (local | ray), parallel scoring and fleet profiling on a local 2-CPU Ray.

One Ray session per module (``ray_session``); tests that need no Ray run
without it. Fake devices are either in-process agents (the ``remote`` path,
reached from Ray workers over loopback) or a local backend that kills its
worker process on a chosen block.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latnas.schema.errors import LatnasError
from latnas.executors import ExecutorUnavailable, LocalExecutor, ParallelScorer, chunked, get_executor
from latnas.schema.spec import BlockSpec
from profilers.base import BACKENDS, Backend, LatencyStats, ProtocolConfig, register_backend
from profilers.fleet import FleetDevice, load_fleet, profile_fleet
from profilers.store import ProfileStore

TOKEN = "fleet-test-token-0123456789"
FAST = ProtocolConfig(warmup_runs=1, warmup_seconds=0.0, min_repeats=3, max_repeats=6, max_seconds=0.2, window=3,
                      stable_windows=1)
SPECS = [BlockSpec("conv", cin=3, cout=c, h=8, w=8) for c in (4, 8, 12, 16, 20, 24, 28, 32)]


def _stats(ms: float) -> LatencyStats:
    return LatencyStats(median_ms=ms, mean_ms=ms, std_ms=0.0, min_ms=ms, p10_ms=ms, p25_ms=ms, p75_ms=ms, p90_ms=ms,
                        iqr_ms=0.0, repeats=3, warmup_runs=1, stable=True, noisy=False)


# ----------------------------------------------------------- fake devices
INTERVALS: list[tuple[str, float, float, str]] = []  # (tag, start, end, key) recorded by the agents' backend
_LOCK = threading.Lock()


class _SleepBackend(Backend):
    """Agent-side fake device: every block 'takes' ``delay_s``; records when it ran."""

    description = "test-only device with a fixed per-block delay"
    agent_options = frozenset({"tag", "delay_s"})

    def __init__(self, tag: str = "", delay_s: float = 0.15):
        self.tag, self.delay_s = tag, float(delay_s)

    def measure_spec(self, spec, config):
        t0 = time.monotonic()
        time.sleep(self.delay_s)
        with _LOCK:
            INTERVALS.append((self.tag, t0, time.monotonic(), spec.key))
        return _stats(self.delay_s * 1e3), None

    def measure_model(self, space_name, arch_string, batch=1, config=None, *, space=None):
        time.sleep(self.delay_s)
        return _stats(self.delay_s * 1e3)


class _DyingBackend(Backend):
    """Worker-side fake device: kills its own process on block ``die_key`` once (marker file)."""

    description = "test-only device whose worker dies on one block"

    def __init__(self, die_key: str = "", marker: str = ""):
        self.die_key, self.marker = die_key, marker

    def measure_spec(self, spec, config):
        if spec.key == self.die_key and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        time.sleep(0.02)
        return _stats(1.0), None


if "test-fleet-sleep" not in BACKENDS:
    register_backend("test-fleet-sleep")(_SleepBackend)
if "test-fleet-dying" not in BACKENDS:
    register_backend("test-fleet-dying")(_DyingBackend)


def seeded_score(archs):
    """Deterministic per-arch accuracy (what RWE guarantees: same arch, same score, in any process)."""
    out = []
    for a in archs:
        arr = np.asarray(a, dtype=np.int64)
        out.append(float(((int(arr @ np.arange(1, len(arr) + 1)) * 2654435761) % 10007) / 10007))
    return np.array(out)


def _double(batch):
    return [2 * x for x in batch]


# ----------------------------------------------------- no Ray needed
def test_local_executor_keeps_order_over_batches():
    ex = get_executor("local")
    assert isinstance(ex, LocalExecutor)
    assert ex.map_batches(_double, range(7), batch_size=3) == [0, 2, 4, 6, 8, 10, 12]
    assert ex.map(lambda x: x + 1, []) == []
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_batch_function_with_wrong_count_is_one_line_error():
    with pytest.raises(LatnasError, match="2 results for 3 items"):
        get_executor("local").map_batches(lambda b: b[:2], [1, 2, 3])


def test_unknown_executor_and_missing_ray_are_one_line(monkeypatch):
    with pytest.raises(LatnasError, match="unknown executor 'dask'"):
        get_executor("dask")
    _no_ray(monkeypatch)
    with pytest.raises(ExecutorUnavailable, match=r"latnas\[ray\]") as err:
        get_executor("ray")
    assert "\n" not in str(err.value)


def test_parallel_scorer_local_matches_plain_scorer():
    archs = [(i, i + 1, 2) for i in range(9)]
    np.testing.assert_array_equal(ParallelScorer(seeded_score, "local", batch_size=4)(archs), seeded_score(archs))


def test_fleet_file_is_validated(tmp_path, monkeypatch):
    path = tmp_path / "fleet.json"
    monkeypatch.setenv("PI_TOKEN", TOKEN)
    path.write_text(json.dumps({"devices": [{"name": "pi-1", "options": {"url": "http://127.0.0.1:1", "token_env": "PI_TOKEN"}}]}))
    (dev,) = load_fleet(path)
    assert dev.backend == "remote" and dev.options["token"] == TOKEN and dev.ray_resource == "device:pi-1"
    path.write_text(json.dumps({"devices": [{"name": "a"}, {"name": "a"}]}))
    with pytest.raises(LatnasError, match="appears twice"):
        load_fleet(path)
    path.write_text(json.dumps({"devices": [{"name": "bad name/../x"}]}))
    with pytest.raises(LatnasError, match="device name"):
        load_fleet(path)
    path.write_text("[" * 100)
    with pytest.raises(LatnasError):
        load_fleet(path)


# ------------------------------------------------------------ Ray session
@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    # Ray workers inherit the environment at ray.init: give them this session's profiling lock (conftest's)
    old_lock_dir = os.environ.get("LATNAS_LOCK_DIR")
    os.environ["LATNAS_LOCK_DIR"] = str(tmp_path_factory.getbasetemp() / "profiling-locks")
    import sys

    # workers cannot import this test module: ship its fakes and functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             resources={"device:a": 1, "device:b": 1, "device:k1": 1, "device:k2": 1})
    try:
        yield ray
    finally:
        ray.shutdown()
        if old_lock_dir is None:
            os.environ.pop("LATNAS_LOCK_DIR", None)
        else:
            os.environ["LATNAS_LOCK_DIR"] = old_lock_dir


@pytest.fixture
def agents(monkeypatch):
    import contextlib

    import profilers.remote.server as server_mod
    from profilers.remote import make_server
    from profilers.remote.server import start_in_thread

    # the two agents stand for two machines: each would hold its own machine's profiling lock, not one shared here
    monkeypatch.setattr(server_mod, "profiling_lock", lambda *a, **k: contextlib.nullcontext())

    from profilers.remote.agent import agent_info

    agent_info("test-fleet-sleep")  # the agent's first /v1/info imports every runtime: do it before timing anything
    servers = [make_server("127.0.0.1", 0, token=TOKEN, default_backend="test-fleet-sleep") for _ in range(2)]
    threads = [start_in_thread(s) for s in servers]
    INTERVALS.clear()
    try:
        yield servers
    finally:
        for s, t in zip(servers, threads):
            s.shutdown()
            s.server_close()
            t.join(timeout=5)


def test_ray_executor_keeps_order_and_reports_errors(ray_session):
    ex = get_executor("ray", workers=2)
    assert ex.workers == 2
    assert ex.map_batches(_double, list(range(11)), batch_size=2) == [2 * i for i in range(11)]

    def boom(batch):
        raise ValueError("bad batch\nsecond line")

    with pytest.raises(LatnasError, match="ValueError: bad batch second line"):
        ex.map_batches(boom, [1], batch_size=1)


def test_search_results_equal_on_local_and_1_or_2_ray_workers(ray_session):
    from latnas.schema.spaces import get_space
    from latnas.search import SearchContext, run_algorithm
    from search_helpers import synthetic_table

    space = get_space("fbnet")
    table = synthetic_table(space, seed=3)

    def run(executor):
        ctx = SearchContext(space=space, latency=table, evals=40, seed=5, scorer=ParallelScorer(seeded_score, executor),
                            scorer_key="seeded", options={"pop_size": 10})
        res = run_algorithm("nsga2", ctx)
        return res.archs, res.scores, res.predicted, res.evals

    local = run("local")
    one = run(get_executor("ray", workers=1))
    two = run(get_executor("ray", workers=2))
    assert local[3] == 40 and local[0]
    assert one == local
    assert two == local


def _agent_devices(servers):
    return [FleetDevice(tag, "remote", {"url": s.url, "token": TOKEN, "remote_options": {"tag": tag}, "timeout_s": 60})
            for tag, s in zip("ab", servers)]


@pytest.mark.slow  # 20-40 s on the shared 2-core VM (Ray worker start-up)
def test_two_devices_profile_concurrently_one_measurement_each_at_a_time(ray_session, agents, tmp_path):
    devices = _agent_devices(agents)
    warm = [BlockSpec("conv", cin=3, cout=c, h=4, w=4) for c in (2, 3, 5, 6)]
    with ProfileStore(tmp_path / "warm.db") as store:  # start the workers and their connections first
        assert profile_fleet(devices, warm, store, FAST, dispatch="ray", progress=False).done == len(warm)
    INTERVALS.clear()
    with ProfileStore(tmp_path / "p.db") as store:
        summary = profile_fleet(devices, SPECS, store, FAST, dispatch="ray", progress=False)
        assert summary.failed == 0 and summary.done == len(SPECS) and summary.left == 0
        assert len(summary.groups) == 1  # both agents run on this host: one table, shared
        assert set(summary.per_device) == {"a", "b"}
        rows = store.query(all_devices=True)
        assert len(rows) == len(SPECS)  # one row per block ...
        assert all(len(m.sessions) == FAST.sessions for m in rows)  # ... holding its S sessions
    # each block timed in exactly S sessions (one dispatch each, interleaved), never more
    assert sorted(k for _, _, _, k in INTERVALS) == sorted(s.key for s in SPECS for _ in range(FAST.sessions))
    by_device = {t: sorted((s, e) for tag, s, e, _ in INTERVALS if tag == t) for t in "ab"}
    for spans in by_device.values():  # never two measurements on one device at once
        assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))
    overlap = any(sa < eb and sb < ea for sa, ea in by_device["a"] for sb, eb in by_device["b"])
    assert overlap, "the two devices never measured at the same time"
    # a rerun resumes: nothing left to do
    with ProfileStore(tmp_path / "p.db") as store:
        again = profile_fleet(devices, SPECS, store, FAST, dispatch="ray", progress=False)
    assert again.done == 0 and again.skipped == len(SPECS)


def test_agents_reached_directly_from_threads_blocks_and_models(agents, tmp_path):
    from latnas.schema.spaces import get_space

    space = get_space("fbnet")
    archs = space.random_archs(3, rng=0)
    devices = _agent_devices(agents)
    with ProfileStore(tmp_path / "p.db") as store:
        summary = profile_fleet(devices, SPECS[:4], store, FAST, dispatch="threads", progress=False, models=(space, archs))
        assert summary.done == 7 and summary.failed == 0
        rows = store.query(all_devices=True)
        assert sorted(m.key for m in rows if m.kind == "model") == sorted(f"model:fbnet:{space.format_arch(a)}" for a in archs)
        assert sum(m.kind == "block" for m in rows) == 4


@pytest.mark.slow  # 20-40 s on the shared 2-core VM (Ray worker start-up)
def test_worker_killed_mid_table_loses_at_most_one_row_and_resume_completes(ray_session, tmp_path):
    die = SPECS[3].key
    dev = FleetDevice("k1", _DyingBackend, {"die_key": die, "marker": str(tmp_path / "died")})
    db = tmp_path / "p.db"
    with ProfileStore(db) as store:
        first = profile_fleet([dev], SPECS, store, FAST, dispatch="ray", retries=0, progress=False)
        assert (tmp_path / "died").exists()
        assert first.done == len(SPECS) - 1 and first.failed == 1 and first.failures[0][1] == die
        assert len(store.query(all_devices=True)) == len(SPECS) - 1  # the block in flight, and only it, is lost
    with ProfileStore(db) as store:
        again = profile_fleet([dev], SPECS, store, FAST, dispatch="ray", progress=False)
        assert again.done == 1 and again.skipped == len(SPECS) - 1
        assert {m.key for m in store.query(all_devices=True)} == {s.key for s in SPECS}


@pytest.mark.slow  # 20-40 s on the shared 2-core VM (Ray worker start-up)
def test_block_of_a_killed_worker_is_retried_on_another_device(ray_session, tmp_path):
    die = SPECS[2].key
    marker = str(tmp_path / "died")
    devices = [FleetDevice(n, _DyingBackend, {"die_key": die, "marker": marker}) for n in ("k1", "k2")]
    with ProfileStore(tmp_path / "p.db") as store:
        summary = profile_fleet(devices, SPECS, store, FAST, dispatch="ray", progress=False)
        assert summary.retried == 1 and summary.failed == 0 and summary.done == len(SPECS)
        assert {m.key for m in store.query(all_devices=True)} == {s.key for s in SPECS}


def test_missing_device_resource_is_one_line(ray_session, tmp_path):
    dev = FleetDevice("nowhere", _DyingBackend)
    with ProfileStore(tmp_path / "p.db") as store, pytest.raises(LatnasError, match="no resource 'device:nowhere'"):
        profile_fleet([dev], SPECS, store, FAST, dispatch="ray", progress=False)


def test_fleet_cli_helper_profiles_a_fleet_file_directly(agents, tmp_path, capsys):
    from latnas.cli.executor_options import check_executor_options
    from latnas.cli.fleet_cmd import run_fleet_profile
    from latnas.schema.spaces import get_space

    with pytest.raises(LatnasError, match="--executor must be one of local, ray; got 'spark'"):
        check_executor_options("spark")
    with pytest.raises(LatnasError, match="--workers needs --executor ray"):
        check_executor_options("local", workers=2)
    fleet = tmp_path / "lab.json"
    fleet.write_text(json.dumps({"devices": [
        {"name": f"agent-{i}", "options": {"url": s.url, "token": TOKEN, "timeout_s": 60}} for i, s in enumerate(agents)]}))
    store = tmp_path / "lab.db"
    run_fleet_profile(get_space("fbnet"), "remote", store, FAST, "local", None, fleet, SPECS[:4], [], progress=False)
    out = capsys.readouterr().out
    assert "fleet of 2 device(s) via threads, 1 table(s)" in out and "done 4" in out
    with ProfileStore(store) as db:
        assert len(db.query(all_devices=True)) == 4


# ------------------------------------------------------------------ CLI
CLI_TINY = ["--evals", "8", "--resolution", "8", "--n-train", "100", "--n-val", "60", "--pop-size", "4", "--quiet"]


def _no_ray(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)


def test_cli_executor_ray_without_ray_is_one_line(monkeypatch, tmp_path, capsys):
    from latnas.cli.main import main

    _no_ray(monkeypatch)
    for argv in (["profile", "--space", "fbnet", "--executor", "ray", "--store", str(tmp_path / "p.db"), "--limit", "2"],
                 ["search", "--predictor", "flops", "--executor", "ray", "-o", str(tmp_path / "s"), *CLI_TINY]):
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("error:") and "latnas[ray]" in err and len(err.splitlines()) == 1, (argv, err)
    assert not (tmp_path / "p.db").exists()


def test_cli_profile_fleet_file_of_agents(agents, tmp_path, capsys):
    from latnas.cli.main import main

    fleet = tmp_path / "lab.json"
    fleet.write_text(json.dumps({"devices": [
        {"name": f"agent-{i}", "options": {"url": s.url, "token": TOKEN, "timeout_s": 60}} for i, s in enumerate(agents)]}))
    store = tmp_path / "lab.db"
    rc = main(["profile", "--space", "fbnet", "--fleet", str(fleet), "--store", str(store), "--limit", "3", "--quick", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    with ProfileStore(store) as db:
        assert len(db.query(all_devices=True)) == 3


@pytest.mark.slow  # 20-40 s on the shared 2-core VM (Ray worker start-up)
def test_cli_search_same_front_on_local_and_ray(ray_session, tmp_path, capsys):
    from latnas.cli.main import main

    common = ["search", "--space", "fbnet", "--predictor", "flops", "--score", "params", "--seed", "3", *CLI_TINY]
    assert main([*common, "-o", str(tmp_path / "local")]) == 0, capsys.readouterr().err
    assert main([*common, "-o", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"]) == 0, capsys.readouterr().err
    local = (tmp_path / "local" / "front.csv").read_text()
    assert local.count("\n") >= 2 and (tmp_path / "ray" / "front.csv").read_text() == local
