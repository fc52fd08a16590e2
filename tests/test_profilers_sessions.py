"""The session protocol: interleaving, estimator, flag, extra sessions, resume, bad input, old stores.

Fake backends return scripted statistics, so everything here is fast and
deterministic (no timing).
"""
from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from latnas.schema.spaces import get_space
from profilers.base import Backend, LatencyStats, ProtocolConfig
from profilers.protocol import check_config, summarize
from profilers.runner import profile_blocks
from profilers.sessions import (
    SessionHooks,
    SessionItem,
    aggregate,
    best_two_gap,
    estimate,
    is_noisy,
    run_sessions,
    spread,
)
from profilers.store import ProfileStore

CFG = ProtocolConfig(sessions=3, session_agree=0.03, extra_sessions=2)


def stats(ms: float, noisy: bool = False) -> LatencyStats:
    return replace(summarize([ms] * 5), noisy=noisy)


def scripted(key: str, script: list[float], log: list[str]) -> SessionItem:
    """An item whose k-th session returns script[k] ms; appends ``key`` to ``log`` per session."""
    def session(_artifact):
        log.append(key)
        return stats(script[min(len([k for k in log if k == key]) - 1, len(script) - 1)])

    return SessionItem(key, build=lambda: key, session=session)


# ------------------------------------------------------------------ pure logic
def test_estimators_and_flag():
    meds = [1.30, 1.00, 1.02, 1.50]
    assert estimate(meds, "first") == 1.30
    assert estimate(meds, "min") == 1.00
    assert estimate(meds, "median") == pytest.approx(1.16)
    assert estimate(meds, "p10") == pytest.approx(1.006)
    with pytest.raises(ValueError):
        estimate(meds, "mean")
    assert best_two_gap(meds) == pytest.approx(0.02)
    assert spread(meds) == pytest.approx(0.5)
    assert not is_noisy([stats(m) for m in meds], 0.03)
    assert is_noisy([stats(1.0), stats(1.1)], 0.03)
    assert is_noisy([stats(1.0, noisy=True)], 0.03)  # one session: its own IQR flag
    agg = aggregate([stats(1.2), stats(1.0), stats(1.01)], CFG)
    assert agg.median_ms == 1.0 and agg.repeats == 15 and not agg.noisy


def test_min_of_within_session_p10():
    from profilers.sessions import session_values

    ss = [summarize([1.0, 1.1, 1.2, 1.3, 1.4]), summarize([0.9, 2.0, 2.1, 2.2, 2.3]), summarize([1.05, 1.1, 1.2, 1.2, 1.3])]
    p10s = session_values(ss, "min-p10")
    assert p10s == [s.p10_ms for s in ss] and session_values(ss, "min") == [s.median_ms for s in ss]
    assert estimate(p10s, "min-p10") == pytest.approx(min(p10s))
    agg = aggregate(ss, CFG, estimator="min-p10")
    assert agg.median_ms == pytest.approx(ss[0].p10_ms) and agg.p90_ms == ss[0].p90_ms  # percentiles of that session
    # the flag compares the estimator's values: medians 1.2 vs 1.2 agree, p10s 1.04 / 1.07 / 1.34 differ by ~3%
    assert not is_noisy(ss, 0.03, "min") and is_noisy(ss, 0.02, "min-p10")


def test_passes_are_interleaved_over_items():
    log: list[str] = []
    items = [scripted(k, [1.0], log) for k in "abc"]
    run_sessions(items, replace(CFG, extra_sessions=0))
    assert log == list("abcabcabc")
    assert all(it.done and len(it.sessions) == 3 for it in items)


def test_noisy_items_get_extra_sessions_until_they_agree_or_the_cap():
    log: list[str] = []
    calm = scripted("calm", [1.0, 1.01, 1.0], log)
    settles = scripted("settles", [1.0, 1.5, 1.2, 1.005], log)  # agrees after one extra session
    never = scripted("never", [1.0, 1.2, 1.4, 1.6, 1.8, 2.0], log)
    done: list[str] = []
    run_sessions([calm, settles, never], CFG, SessionHooks(on_done=lambda it: done.append(it.key)))
    assert [len(it.sessions) for it in (calm, settles, never)] == [3, 4, 5]  # cap: 3 + 2 extra
    assert log[:9] == ["calm", "settles", "never"] * 3 and log[9:] == ["settles", "never", "never"]
    assert not aggregate(settles.sessions, CFG).noisy and aggregate(never.sessions, CFG).noisy
    assert done == ["calm", "settles", "never"]


def test_crashing_session_marks_only_that_item_failed():
    log: list[str] = []
    released: list[str] = []

    def crash(_artifact):
        log.append("bad")
        if log.count("bad") == 2:
            raise RuntimeError("runtime fell over")
        return stats(1.0)

    bad = SessionItem("bad", build=lambda: "bad", session=crash, release=released.append)
    good = scripted("good", [1.0], log)
    failed: list[str] = []
    run_sessions([bad, good], CFG, SessionHooks(on_fail=lambda it, exc: failed.append(str(exc))))
    assert failed == ["runtime fell over"] and bad.failed and len(bad.sessions) == 1
    assert good.done and len(good.sessions) == 3
    assert released == ["bad"]  # the artifact of the failed item is dropped at once


def test_session_counts_are_validated():
    for bad in (dict(sessions=0), dict(sessions=10_000), dict(extra_sessions=-1), dict(session_agree=0.0)):
        with pytest.raises(ValueError):
            check_config(replace(CFG, **bad))


# ------------------------------------------------------------ runner + store
class ScriptedBackend(Backend):
    """Times nothing: the k-th call for a block returns a scripted median (``fail``: raise instead)."""

    name = "scripted"

    def __init__(self, script=None, fail=None, interrupt_after=None):
        self.script = script or {}
        self.fail = fail or {}
        self.calls: list[str] = []
        self.interrupt_after = interrupt_after

    def measure_spec(self, spec, config):
        assert config.sessions == 1  # one session per call
        self.calls.append(spec.key)
        if self.interrupt_after is not None and len(self.calls) > self.interrupt_after:
            raise KeyboardInterrupt
        k = self.calls.count(spec.key) - 1
        if self.fail.get(spec.key) == k:
            raise RuntimeError("session crashed")
        seq = self.script.get(spec.key, [1.0])
        return stats(seq[min(k, len(seq) - 1)]), None


@pytest.fixture()
def specs():
    return get_space("fbnet").unique_blocks()[:3]


def test_runner_stores_every_session_and_resumes_only_missing_ones(tmp_path, specs):
    path = tmp_path / "p.db"
    with ProfileStore(path) as store:
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C after 4 of the 9 sessions
            profile_blocks(ScriptedBackend(interrupt_after=4), specs, store, CFG, progress=False)
    again = ScriptedBackend()
    with ProfileStore(path) as store:
        summary = profile_blocks(again, specs, store, CFG, progress=False)
        assert summary.resumed == 4 and summary.sessions_run == 5 and summary.done == 3
        assert len(again.calls) == 5
        rows = store.query(backend="scripted")
        assert sorted(len(m.sessions) for m in rows) == [3, 3, 3]
        assert all(m.protocol.startswith("sessions=3 estimator=min") for m in rows)
        assert store.pending_sessions("scripted") == {}


def test_runner_crashing_session_keeps_the_others(tmp_path, specs):
    bad = specs[1].key
    with ProfileStore(tmp_path / "p.db") as store:
        summary = profile_blocks(ScriptedBackend(fail={bad: 1}), specs, store, CFG, progress=False)
        assert summary.done == 2 and [k for k, _ in summary.failures] == [bad]
        assert {k for k, _ in store.stored_keys("scripted")} == {specs[0].key, specs[2].key}
        pending = store.pending_sessions("scripted")
        assert [len(v) for v in pending.values()] == [1]  # the crashed item's first session is not lost
        summary = profile_blocks(ScriptedBackend(), specs, store, CFG, progress=False)  # rerun finishes it
        assert summary.done == 1 and summary.resumed == 1 and summary.sessions_run == 2


def test_runner_noisy_flag_spread_and_estimator(tmp_path, specs):
    script = {specs[0].key: [1.3, 1.0, 1.01], specs[1].key: [1.0, 1.2, 1.4, 1.6, 1.8]}
    with ProfileStore(tmp_path / "p.db") as store:
        profile_blocks(ScriptedBackend(script), specs, store, CFG, progress=False)
        by_key = {m.key: m for m in store.query(backend="scripted")}
    a, b = by_key[specs[0].key], by_key[specs[1].key]
    assert a.stats.median_ms == 1.0 and not a.stats.noisy and a.spread == pytest.approx(0.3)
    assert b.stats.noisy and len(b.sessions) == 5 and b.stats.median_ms == 1.0


def test_old_store_reads_as_single_session_and_is_upgraded_in_place(tmp_path):
    from profilers.store_schema import _MEASUREMENTS, V2_FIELDS

    path = tmp_path / "old.db"
    s = stats(0.5)
    v2_table = "\n".join(line for line in _MEASUREMENTS.format(name="measurements").splitlines()
                          if not line.strip().startswith(("sessions ", "spread ", "protocol ")))
    con = sqlite3.connect(path)
    con.executescript(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('app_id', 'latnas-profile-store'), ('schema_version', '2');
        CREATE TABLE fingerprints (hash TEXT PRIMARY KEY, info TEXT NOT NULL, created REAL NOT NULL);
        INSERT INTO fingerprints VALUES ('fp', '{{}}', 0);
        {v2_table}
    """)
    row = {"fingerprint": "fp", "backend": "onnxruntime", "key": "k", "batch": 1, "precision": "fp32",
           "layout": "contiguous", "kind": "block", **s.to_dict(), "spec": "{}", "created": 1.0, "meta": "{}"}
    con.execute(f"INSERT INTO measurements VALUES ({','.join('?' * len(V2_FIELDS))})", [row[c] for c in V2_FIELDS])
    con.commit()
    con.close()
    with ProfileStore(path, read_only=True) as ro:  # read-only: read as legacy, file untouched
        (m,) = ro.query(all_devices=True)
        assert m.protocol == "legacy" and m.sessions == (m.stats,) and m.session_medians == [0.5]
    with ProfileStore(path) as store:  # writable: upgraded in place, the figures kept
        (m,) = store.query(all_devices=True)
        assert m.protocol == "legacy" and m.stats.median_ms == 0.5
        assert store._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"


def test_cli_sessions_bad_input_and_summary_spread(tmp_path, capsys, monkeypatch):
    from latnas.cli.main import main

    monkeypatch.setenv("COLUMNS", "250")
    for bad in ("0", "1000"):
        assert main(["profile", "--sessions", bad, "--store", str(tmp_path / "x.db")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("error: ") and "--sessions" in err
    assert not (tmp_path / "x.db").exists()
    with ProfileStore(tmp_path / "p.db") as store:
        profile_blocks(ScriptedBackend({}), get_space("fbnet").unique_blocks()[:2], store, CFG, progress=False)
    assert main(["profiles", "summary", "--store", str(tmp_path / "p.db")]) == 0
    out = capsys.readouterr().out
    assert "spread" in out and "0.0%/0%" in out
