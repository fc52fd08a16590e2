"""How a profile store file is laid out, vetted and opened (the schema half of :mod:`profilers.store`).

Constants and DDL of schema version 3, the upgrades from versions 1 and 2, and the checks
run on an existing file before anything writes to it: a regular file (FIFOs
and devices refused unopened), the SQLite magic, our ``app_id``, a readable
schema version, the tables and exactly the declared columns. Checks open the
file read-only (``mode=ro``, ``immutable=1`` when no ``-wal`` exists), so a
refused file is left byte-for-byte as it was, with nothing created beside it.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import stat
from dataclasses import fields
from pathlib import Path

from latnas.schema.errors import StoreError
from profilers.config import LatencyStats

logger = logging.getLogger("profilers.store")

APP_ID = "latnas-profile-store"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # 1 and 2 are upgraded to 3 on open
DEFAULT_PRECISION = "fp32"
DEFAULT_LAYOUT = "contiguous"
SQLITE_MAGIC = b"SQLite format 3\x00"
STAT_FIELDS = tuple(f.name for f in fields(LatencyStats))
SESSION_FIELDS = ("sessions", "spread", "protocol")  # added in version 3
V2_FIELDS = ("fingerprint", "backend", "key", "batch", "precision", "layout", "kind", *STAT_FIELDS, "spec", "created", "meta")
RECORD_FIELDS = (*V2_FIELDS, *SESSION_FIELDS)
IDENTITY = ("fingerprint", "backend", "key", "batch", "precision", "layout")
LEGACY_PROTOCOL = "legacy"  # rows written before sessions: read as one session, flagged
V1_FIELDS = ("fingerprint", "backend", "key", "batch", "kind", *STAT_FIELDS, "spec", "created")

_MEASUREMENTS = """
CREATE TABLE IF NOT EXISTS {name} (
    fingerprint TEXT NOT NULL,
    backend TEXT NOT NULL,
    key TEXT NOT NULL,
    batch INTEGER NOT NULL,
    precision TEXT NOT NULL DEFAULT 'fp32',
    layout TEXT NOT NULL DEFAULT 'contiguous',
    kind TEXT NOT NULL,
    median_ms REAL NOT NULL, mean_ms REAL NOT NULL, std_ms REAL NOT NULL, min_ms REAL NOT NULL,
    p10_ms REAL NOT NULL, p25_ms REAL NOT NULL, p75_ms REAL NOT NULL, p90_ms REAL NOT NULL,
    iqr_ms REAL NOT NULL, repeats INTEGER NOT NULL, warmup_runs INTEGER NOT NULL,
    stable INTEGER NOT NULL, noisy INTEGER NOT NULL,
    spec TEXT NOT NULL, created REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}',
    sessions TEXT NOT NULL DEFAULT '[]',
    spread REAL NOT NULL DEFAULT 0,
    protocol TEXT NOT NULL DEFAULT 'legacy',
    PRIMARY KEY (fingerprint, backend, key, batch, precision, layout)
);
"""
# Sessions of items not finished yet (an interrupted run resumes from them); moved into
# ``measurements.sessions`` when the item is finished.
_PENDING = """
CREATE TABLE IF NOT EXISTS pending_sessions (
    fingerprint TEXT NOT NULL, backend TEXT NOT NULL, key TEXT NOT NULL, batch INTEGER NOT NULL,
    precision TEXT NOT NULL, layout TEXT NOT NULL, idx INTEGER NOT NULL,
    stats TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (fingerprint, backend, key, batch, precision, layout, idx)
);
"""
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fingerprints (hash TEXT PRIMARY KEY, info TEXT NOT NULL, created REAL NOT NULL);
"""
    + _MEASUREMENTS.format(name="measurements")
    + _PENDING
    + "CREATE INDEX IF NOT EXISTS measurements_by_backend ON measurements (backend, fingerprint, kind);\n"
)


def _check_file(path: Path) -> bool:
    """True when ``path`` holds data that must be validated (exists, non-empty); refuses non-regular files."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if os.path.lexists(path):
            raise StoreError(f"{path} is a broken symbolic link, not a profile store") from None
        return False
    except OSError as exc:
        raise StoreError(f"cannot read profile store {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is a directory, not a profile store")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is not a regular file (a FIFO, socket or device); refusing to open it")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read profile store {path}: {exc.strerror or exc}") from None
    if not head:
        return False
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a latnas profile store (not an SQLite file); refusing to touch it")
    return True


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection that creates nothing beside the file.

    ``immutable=1`` (no locking, no ``-shm``) is used only when no ``-wal`` file
    exists, i.e. every committed row is in the main file; otherwise plain
    ``mode=ro`` reads the WAL a live writer keeps (that writer owns the ``-shm``).
    """
    uri = path.resolve().as_uri() + "?mode=ro"
    if not os.path.lexists(f"{path}-wal"):
        uri += "&immutable=1"
    try:
        return sqlite3.connect(uri, uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open profile store {path}: {exc}") from None


def _check_columns(con: sqlite3.Connection, path: Path, version: int) -> None:
    """The measurements table must have the columns its schema version declares."""
    cols = {r[1] for r in con.execute("PRAGMA table_info(measurements)")}
    want = set({1: V1_FIELDS, 2: V2_FIELDS}.get(version, RECORD_FIELDS))
    if cols != want:
        missing, extra = sorted(want - cols), sorted(cols - want)
        raise StoreError(
            f"{path}: measurements table does not match schema version {version}"
            + (f" (missing {', '.join(missing)})" if missing else "") + (f" (unexpected {', '.join(extra)})" if extra else "")
        )


def _validate_existing(path: Path, require_tables: bool = False) -> int:
    """Read-only check that an existing SQLite file is ours and of a known version; returns the version."""
    con = _connect_ro(path)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and not require_tables:
            return SCHEMA_VERSION  # an empty SQLite database: ours to initialise
        if "meta" not in tables:
            raise StoreError(f"{path} is an SQLite file of another application (no latnas meta table); refusing to touch it")
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("app_id") == APP_ID:
            missing = {"fingerprints", "measurements"} - tables
            if missing:
                raise StoreError(f"{path} is a damaged profile store (missing table {', '.join(sorted(missing))})")
            try:
                version = int(meta.get("schema_version", "0"))
            except ValueError:
                version = -1
            if version in READABLE_VERSIONS:
                _check_columns(con, path, version)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is corrupt or not a profile store ({exc})") from None
    finally:
        con.close()
    if meta.get("app_id") != APP_ID:
        raise StoreError(f"{path} is an SQLite file of another application (app_id {meta.get('app_id')!r}); refusing to touch it")
    try:
        version = int(meta.get("schema_version", "0"))
    except ValueError:
        version = -1
    if version not in READABLE_VERSIONS:
        raise StoreError(
            f"{path} has profile store schema version {meta.get('schema_version')!r}; this latnas reads versions"
            f" {', '.join(map(str, READABLE_VERSIONS))}"
        )
    return version


def _upgrade_v1(con: sqlite3.Connection) -> None:
    """Rebuild a version-1 ``measurements`` table with precision/layout in the key (one transaction).

    Its rows read as ``fp32`` / ``contiguous``, one legacy session each.
    """
    cols = ",".join(V1_FIELDS)
    with con:
        con.execute("DROP INDEX IF EXISTS measurements_by_backend")
        con.execute("ALTER TABLE measurements RENAME TO measurements_v1")
        con.execute(_MEASUREMENTS.format(name="measurements"))
        con.execute(f"INSERT INTO measurements ({cols}) SELECT {cols} FROM measurements_v1")
        con.execute("DROP TABLE measurements_v1")
        con.execute("CREATE INDEX IF NOT EXISTS measurements_by_backend ON measurements (backend, fingerprint, kind)")
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    logger.info("upgraded profile store to schema version %d", SCHEMA_VERSION)


def _upgrade_v2(con: sqlite3.Connection) -> None:
    """Add the session columns to a version-2 store in place (one transaction).

    Existing rows keep every figure; they read as one session with protocol ``legacy``.
    """
    with con:
        con.execute("ALTER TABLE measurements ADD COLUMN sessions TEXT NOT NULL DEFAULT '[]'")
        con.execute("ALTER TABLE measurements ADD COLUMN spread REAL NOT NULL DEFAULT 0")
        con.execute(f"ALTER TABLE measurements ADD COLUMN protocol TEXT NOT NULL DEFAULT '{LEGACY_PROTOCOL}'")
        con.execute(_PENDING)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    logger.info("upgraded profile store to schema version %d", SCHEMA_VERSION)
