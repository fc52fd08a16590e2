"""Profile store: round trip, WAL, per-device rows, refusing corrupt/foreign files untouched."""
from __future__ import annotations

import csv
import sqlite3
from dataclasses import replace

import pytest

from latnas.schema.errors import StoreError
from latnas.schema.spec import BlockSpec
from profilers.base import Measurement
from profilers.protocol import summarize
from profilers.store import ProfileStore, records_to_measurements


def make(key="mbconv_x", fp="aaaa", backend="onnxruntime", kind="block", median=1.0, batch=1, created=100.0):
    stats = summarize([median * f for f in (0.9, 1.0, 1.0, 1.1, 1.3)], warmup_runs=4, stable=True)
    spec = BlockSpec("conv", 3, 8, 8, 8).to_dict() if kind == "block" else {"space": "fbnet", "arch": "0" * 22}
    return Measurement(key, kind, backend, fp, batch, stats, spec, created)


def test_round_trip_and_filters(tmp_path):
    path = tmp_path / "p.db"
    with ProfileStore(path) as store:
        store.use_device("aaaa", {"cpu": "test"})
        a, b, c = make("k1"), make("k2", median=2.0), make("model:fbnet:00", kind="model", median=9.0)
        for m in (a, b, c):
            store.put(m)
        assert store.journal_mode() == "wal"
        assert store.has("k1", "onnxruntime") and not store.has("k1", "executorch") and not store.has("k1", "onnxruntime", batch=2)
        assert store.get("k2", "onnxruntime") == b
        assert store.get("nope", "onnxruntime") is None
        assert [m.key for m in store.query(kind="block")] == ["k1", "k2"]
        assert store.query(kind="model") == [c]
        assert store.query(backend="executorch") == []
    with ProfileStore(path, fingerprint="aaaa") as again:  # reopen: data and schema persist
        assert len(again) == 3 and again.get("k1", "onnxruntime") == a
        assert again.fingerprints() == {"aaaa": {"cpu": "test"}}


def test_put_keeps_existing_row_unless_replace(tmp_path):
    with ProfileStore(tmp_path / "p.db", fingerprint="aaaa") as store:
        assert store.put(make("k1", median=1.0)) is True
        assert store.put(make("k1", median=3.0, created=200.0)) is False  # no silent overwrite
        assert len(store) == 1 and store.get("k1", "onnxruntime").stats.median_ms == pytest.approx(1.0)
        assert store.put(make("k1", median=3.0, created=200.0), replace=True) is True  # explicit re-measure
        assert len(store) == 1 and store.get("k1", "onnxruntime").stats.median_ms == pytest.approx(3.0)


def test_devices_are_kept_apart(tmp_path):
    path = tmp_path / "p.db"
    with ProfileStore(path) as store:
        store.use_device("aaaa", {"cpu": "A"})
        store.put(make("k1", fp="aaaa", median=1.0))
    with ProfileStore(path) as store:
        store.use_device("bbbb", {"cpu": "B"})
        assert store.query() == []  # the new device sees none of the old rows
        assert not store.has("k1", "onnxruntime")
        store.put(make("k1", fp="bbbb", median=5.0))
        assert [m.stats.median_ms for m in store.query()] == pytest.approx([5.0])
        assert [m.stats.median_ms for m in store.query(fingerprint="aaaa")] == pytest.approx([1.0])
        assert len(store.query(all_devices=True)) == 2
        assert set(store.fingerprints()) == {"aaaa", "bbbb"}


def test_wrong_device_is_a_one_line_error(tmp_path):
    with ProfileStore(tmp_path / "p.db", fingerprint="aaaa") as store:
        store.put(make("k1"))
        with pytest.raises(StoreError, match="no profiles for device cccc") as exc:
            store.query(fingerprint="cccc")
        assert "\n" not in str(exc.value)
    with ProfileStore(tmp_path / "p.db") as plain:
        with pytest.raises(StoreError, match="no device fingerprint"):
            plain.has("k1", "onnxruntime")


def test_records_and_csv_export(tmp_path):
    with ProfileStore(tmp_path / "p.db", fingerprint="aaaa") as store:
        ms = [make("k1"), make("k2", median=2.0, created=101.0)]
        for m in ms:
            store.put(m)
        recs = store.to_records()
        n = store.export_csv(tmp_path / "out.csv")
    assert n == 2 and [r["key"] for r in recs] == ["k1", "k2"]
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert records_to_measurements(rows) == ms


def _assert_refused(path, match, wal_mode=False):
    before = path.read_bytes()
    with pytest.raises(StoreError, match=match) as exc:
        ProfileStore(path)
    assert "\n" not in str(exc.value)
    assert path.read_bytes() == before
    if not wal_mode:  # (a read-only look at a WAL-mode file may leave SQLite's -wal/-shm side files)
        assert not (path.parent / (path.name + "-wal")).exists()


def test_non_sqlite_file_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 50)
    _assert_refused(path, "not an SQLite file")


def test_corrupt_sqlite_file_refused_untouched(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    _assert_refused(path, "corrupt|not a profile store")


def test_foreign_sqlite_file_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'x')")
    con.commit()
    con.close()
    _assert_refused(path, "another application")


def test_future_schema_version_refused(tmp_path):
    path = tmp_path / "p.db"
    ProfileStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    _assert_refused(path, "schema version", wal_mode=True)


def test_missing_folder_and_directory_paths(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ProfileStore(tmp_path / "nope" / "p.db")
    with pytest.raises(StoreError, match="directory"):
        ProfileStore(tmp_path)


def test_empty_file_is_initialised(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with ProfileStore(path, fingerprint="aaaa") as store:
        store.put(make("k1"))
        assert len(store) == 1


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fingerprints (hash TEXT PRIMARY KEY, info TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE measurements (
    fingerprint TEXT NOT NULL, backend TEXT NOT NULL, key TEXT NOT NULL, batch INTEGER NOT NULL, kind TEXT NOT NULL,
    median_ms REAL NOT NULL, mean_ms REAL NOT NULL, std_ms REAL NOT NULL, min_ms REAL NOT NULL,
    p10_ms REAL NOT NULL, p25_ms REAL NOT NULL, p75_ms REAL NOT NULL, p90_ms REAL NOT NULL,
    iqr_ms REAL NOT NULL, repeats INTEGER NOT NULL, warmup_runs INTEGER NOT NULL,
    stable INTEGER NOT NULL, noisy INTEGER NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (fingerprint, backend, key, batch)
);
"""


def test_version_1_store_is_upgraded_and_reads_as_fp32_contiguous(tmp_path):
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('app_id', 'latnas-profile-store'), ('schema_version', '1')")
    con.execute("INSERT INTO fingerprints VALUES ('aaaa', '{}', 1.0)")
    con.execute(
        "INSERT INTO measurements VALUES ('aaaa','onnxruntime','k1',1,'block',2.0,2.0,0.1,1.9,1.9,1.95,2.05,2.1,0.1,30,10,1,0,'{}',5.0)"
    )
    con.commit()
    con.close()
    with ProfileStore(path, fingerprint="aaaa") as store:
        m = store.get("k1", "onnxruntime")
        assert m is not None and m.stats.median_ms == 2.0
        assert (m.precision, m.layout, m.meta) == ("fp32", "contiguous", {})
        # the key now tells precisions and layouts apart
        store.put(replace(make("k1", fp="aaaa", median=1.0), precision="fp16", meta={"mode_used": "graph", "replays": 40}))
        store.put(replace(make("k1", fp="aaaa", median=3.0), layout="channels_last"))
        assert len(store) == 3
        half = store.get("k1", "onnxruntime", precision="fp16")
        assert half.stats.median_ms == 1.0 and half.meta == {"mode_used": "graph", "replays": 40}
        assert store.get("k1", "onnxruntime", layout="channels_last").stats.median_ms == 3.0
        assert store.get("k1", "onnxruntime").stats.median_ms == 2.0
        assert [m.precision for m in store.query(precision="fp16")] == ["fp16"]
        assert store.stored_keys("onnxruntime", precision="bf16") == set()
        assert store.stored_keys("onnxruntime") == {("k1", 1)}
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"  # v1 -> v3 in one step
    raw.close()


def test_records_round_trip_keeps_precision_layout_and_meta(tmp_path):
    with ProfileStore(tmp_path / "p.db") as store:
        store.use_device("aaaa", {})
        m = replace(make("k1"), precision="bf16", layout="channels_last", meta={"mode_used": "eager", "host_bound": True})
        store.put(m)
        out = tmp_path / "p.csv"
        assert store.export_csv(out) == 1
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    (back,) = records_to_measurements(rows)
    assert (back.precision, back.layout, back.meta) == ("bf16", "channels_last", {"mode_used": "eager", "host_bound": True})


# ---------------------------------------------------------------- read-only opens
def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _filled(path):
    with ProfileStore(path) as store:
        store.use_device("aaaa", {"cpu": "test"})
        store.put(make("k1"))
        store.put(make("k2", median=2.0))
    return path


def test_read_only_reads_and_creates_nothing(tmp_path):
    path = _filled(tmp_path / "p.db")
    before = _snapshot(tmp_path)
    with ProfileStore(path, read_only=True) as store:
        assert len(store) == 2 and store.fingerprints() == {"aaaa": {"cpu": "test"}}
        assert [m.key for m in store.query(all_devices=True)] == ["k1", "k2"]
        with pytest.raises(StoreError, match="read-only"):
            store.put(make("k3"))
    assert _snapshot(tmp_path) == before  # no -wal/-shm, no journal switch, same bytes


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"not sqlite at all, just text" * 10), "not an SQLite file"),
])
def test_read_only_refuses_missing_empty_foreign(tmp_path, setup, message):
    path = tmp_path / "p.db"
    setup(path)
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match=message):
        ProfileStore(path, read_only=True)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("damage, message", [
    ("DROP TABLE measurements", "missing table measurements"),
    ("ALTER TABLE measurements RENAME COLUMN spec TO spek", "does not match schema"),
    ("ALTER TABLE measurements ADD COLUMN extra TEXT", "unexpected extra"),
])
def test_damaged_store_refused_and_not_repaired(tmp_path, damage, message):
    path = _filled(tmp_path / "p.db")
    con = sqlite3.connect(path)
    con.execute(damage)
    con.commit()
    con.close()
    before = _snapshot(tmp_path)
    for read_only in (True, False):
        with pytest.raises(StoreError, match=message):
            ProfileStore(path, read_only=read_only)
    assert _snapshot(tmp_path) == before  # dropped tables are not re-created


@pytest.mark.parametrize("column, value", [("spec", "{not json"), ("spec", "[1, 2]"), ("meta", "nul"),
                                           ("median_ms", "fast")])
def test_corrupt_row_is_a_store_error(tmp_path, column, value):
    path = _filled(tmp_path / "p.db")
    con = sqlite3.connect(path)
    con.execute(f"UPDATE measurements SET {column} = ? WHERE key = 'k1'", (value,))
    con.commit()
    con.close()
    with pytest.raises(StoreError):  # at open (a value of the wrong type: store_checks) or at the query
        with ProfileStore(path, read_only=True) as store:
            store.query(all_devices=True)


def test_fifo_and_device_refused_without_opening(tmp_path):
    import os

    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/null"):
        for read_only in (True, False):
            with pytest.raises(StoreError, match="not a regular file"):
                ProfileStore(path, read_only=read_only)


def test_profiling_lock_shared_by_threads_is_released_by_the_last_one(tmp_path, monkeypatch):
    """A thread that enters while another holds the lock may leave after it: no KeyError, lock freed at the end."""
    import threading

    from profilers import lock

    monkeypatch.setenv(lock.LOCK_DIR_ENV, str(tmp_path))
    inside, owner_left, errors = threading.Event(), threading.Event(), []

    def second():
        try:
            inside.wait(5)
            with lock.profiling_lock("t"):
                owner_left.wait(5)  # stay inside after the owner has left
        except Exception as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    t = threading.Thread(target=second)
    t.start()
    with lock.profiling_lock("t"):
        inside.set()
        import time as _time

        for _ in range(100):  # wait until the second thread is inside
            if lock._held[str(lock.lock_path("t"))][1] == 2:
                break
            _time.sleep(0.01)
    owner_left.set()
    t.join(5)
    assert not errors and not lock._held
    with lock.profiling_lock("t", wait=False):  # free again
        pass
