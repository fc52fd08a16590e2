"""The profile store: measured latencies in one SQLite file.

Schema (version 3)::

    meta(key TEXT PRIMARY KEY, value TEXT)          app_id, schema_version
    fingerprints(hash TEXT PRIMARY KEY, info TEXT, created REAL)
    measurements(fingerprint, backend, key, batch, precision, layout,  -- primary key
                 kind, median_ms, mean_ms, std_ms, min_ms, p10_ms, p25_ms,
                 p75_ms, p90_ms, iqr_ms, repeats, warmup_runs, stable, noisy,
                 spec TEXT (JSON), created REAL,
                 meta TEXT (JSON: how it was timed, e.g. the GPU timing mode),
                 sessions TEXT (JSON list: every session's statistics),
                 spread REAL (between-session spread), protocol TEXT)
    pending_sessions(<identity>, idx, stats TEXT (JSON), created)
                 -- sessions of items not finished yet (resume)

The statistics columns summarise the item (``median_ms`` is the session
estimator, see :mod:`profilers.sessions`); ``sessions`` keeps each session.

Older files are upgraded in place on open, in one transaction: version 1
(no precision/layout/meta) rows read as ``fp32`` / ``contiguous``; version 1
and 2 rows read as one session with protocol ``legacy`` (flagged
single-session; ``latnas profiles summary`` counts them).

The file runs in WAL mode with ``synchronous=NORMAL`` and every ``put`` and
``add_session`` commits on its own, so killing a profiling run (even
``kill -9``) loses at most the session in flight; rerunning skips what is
stored and finishes only the missing sessions of unfinished items.

Commands that only read open the file with ``read_only=True``: an SQLite
``mode=ro`` URI (plus ``immutable=1`` when no ``-wal`` file exists, so not even
a ``-shm`` is created), nothing initialised, upgraded or switched; a missing,
empty or foreign file is refused and left byte-for-byte as it was. FIFOs,
devices and folders are refused before anything opens them (a FIFO would
block). A measurement already stored is kept unless ``put(m, replace=True)``.

Rows are keyed by device fingerprint: one file can hold several devices and
runtimes side by side. A store opened for a device (``fingerprint=``) answers
queries for that device by default. A file that is not SQLite, is corrupt, or
is SQLite written by something else is refused with a one-line
:class:`~latnas.schema.errors.StoreError` and left untouched.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from latnas.schema import safe_json
from latnas.schema.errors import LatnasError, StoreError
from profilers.base import LatencyStats, Measurement
from profilers.store_records import (  # noqa: F401 (re-exported: the store's public names)
    _json_object,
    _row_to_measurement,
    _stats,
    measurement_record,
    records_to_measurements,
    sessions_from_json,
    sessions_to_json,
)
from profilers.store_checks import check_store_path
from profilers.store_schema import (  # noqa: F401 (constants re-exported: the store's public names)
    _SCHEMA,
    APP_ID,
    DEFAULT_LAYOUT,
    DEFAULT_PRECISION,
    IDENTITY,
    LEGACY_PROTOCOL,
    READABLE_VERSIONS,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    SQLITE_MAGIC,
    STAT_FIELDS,
    V1_FIELDS,
    _check_file,
    _connect_ro,
    _upgrade_v1,
    _upgrade_v2,
    _validate_existing,
)

logger = logging.getLogger(__name__)


class ProfileStore:
    """Measured latencies keyed by (fingerprint, backend, key, batch, precision, layout) in SQLite.

    ``fingerprint`` (a hash from :func:`profilers.fingerprint.device_fingerprint`)
    is the current device; queries use it unless told otherwise. Call
    :meth:`use_device` to set it and record the fingerprint's description.
    """

    def __init__(self, path: str | Path, fingerprint: str | None = None, read_only: bool = False):
        self.path = Path(path)
        check_store_path(self.path, read_only)  # links, damage, foreign objects, wrong column types (store_checks)
        self.read_only = read_only
        self.fingerprint = fingerprint
        if read_only:
            self._con = self._open_read_only()
            return
        version = SCHEMA_VERSION
        if _check_file(self.path):
            version = _validate_existing(self.path)
        elif not self.path.parent.exists():
            raise StoreError(f"cannot create profile store {self.path}: folder {self.path.parent} does not exist")
        try:
            self._con = sqlite3.connect(str(self.path), timeout=30)
            self._con.row_factory = sqlite3.Row
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            if version == 1:
                _upgrade_v1(self._con)
            elif version == 2:
                _upgrade_v2(self._con)
            with self._con:
                self._con.executescript(_SCHEMA)
                self._con.execute("INSERT OR IGNORE INTO meta VALUES ('app_id', ?)", (APP_ID,))
                self._con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open profile store {self.path}: {exc}") from None

    def _open_read_only(self) -> sqlite3.Connection:
        """Open an existing store for reading: nothing created, upgraded or switched."""
        if not _check_file(self.path):
            state = "is empty" if os.path.lexists(self.path) else "does not exist"
            raise StoreError(f"profile store {self.path} {state}")
        _validate_existing(self.path, require_tables=True)
        con = _connect_ro(self.path)
        con.row_factory = sqlite3.Row
        return con

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def journal_mode(self) -> str:
        return str(self._con.execute("PRAGMA journal_mode").fetchone()[0])

    # --------------------------------------------------------- fingerprints
    def use_device(self, fingerprint: str, info: dict[str, Any] | None = None) -> None:
        """Make ``fingerprint`` the current device, recording its description."""
        self.add_fingerprint(fingerprint, info or {})
        self.fingerprint = fingerprint

    def add_fingerprint(self, fingerprint: str, info: dict[str, Any]) -> None:
        with self._con:
            self._con.execute(
                "INSERT OR IGNORE INTO fingerprints VALUES (?, ?, ?)",
                (fingerprint, json.dumps(info, sort_keys=True, default=str), time.time()),
            )
            if info:  # fill in a placeholder left by a put() before use_device()
                self._con.execute(
                    "UPDATE fingerprints SET info = ? WHERE hash = ? AND info = '{}'",
                    (json.dumps(info, sort_keys=True, default=str), fingerprint),
                )

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """Every device fingerprint in the store: hash -> description."""
        try:
            rows = self._con.execute("SELECT hash, info FROM fingerprints ORDER BY created").fetchall()
            return {str(r["hash"]): _json_object(r["info"], f"description of device {r['hash']!r}") for r in rows}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is corrupt ({exc})") from None
        except LatnasError as exc:
            raise StoreError(f"corrupt profile store {self.path}: {exc}") from None

    def _resolve(self, fingerprint: str | None) -> str:
        fp = fingerprint or self.fingerprint
        if fp is None:
            raise StoreError("no device fingerprint given and the store has no current device")
        return fp

    def require_fingerprint(self, fingerprint: str) -> None:
        """One-line error when the store holds nothing for ``fingerprint`` (wrong-device use)."""
        known = self.fingerprints()
        if fingerprint not in known:
            names = ", ".join(known) or "none"
            raise StoreError(f"store {self.path} has no profiles for device {fingerprint} (devices in it: {names})")

    # ---------------------------------------------------------- measurements
    def has(
        self, key: str, backend: str, batch: int = 1, fingerprint: str | None = None,
        precision: str = DEFAULT_PRECISION, layout: str = DEFAULT_LAYOUT,
    ) -> bool:
        fp = self._resolve(fingerprint)
        row = self._con.execute(
            "SELECT 1 FROM measurements WHERE fingerprint=? AND backend=? AND key=? AND batch=? AND precision=? AND layout=?",
            (fp, backend, key, int(batch), precision, layout),
        ).fetchone()
        return row is not None

    def stored_keys(
        self, backend: str, fingerprint: str | None = None,
        precision: str | None = None, layout: str | None = None,
    ) -> set[tuple[str, int]]:
        """``(key, batch)`` pairs stored for ``backend`` on a device (fast resume checks).

        ``precision`` / ``layout`` narrow it to one configuration (``None``: any).
        """
        fp = self._resolve(fingerprint)
        sql, args = "SELECT key, batch FROM measurements WHERE fingerprint=? AND backend=?", [fp, backend]
        for col, val in (("precision", precision), ("layout", layout)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        return {(r[0], int(r[1])) for r in self._con.execute(sql, args)}

    def put(self, m: Measurement, replace: bool = False) -> bool:
        """Store one measurement and commit it at once; returns whether it was written.

        An existing row with the same identity is kept (returns False) unless
        ``replace``: re-measuring is explicit, never a silent overwrite.
        """
        if self.read_only:
            raise StoreError(f"profile store {self.path} was opened read-only")
        s = m.stats
        values = (
            m.fingerprint, m.backend, m.key, int(m.batch), m.precision or DEFAULT_PRECISION, m.layout or DEFAULT_LAYOUT, m.kind,
            *(int(getattr(s, n)) if n in ("stable", "noisy", "repeats", "warmup_runs") else float(getattr(s, n)) for n in STAT_FIELDS),
            json.dumps(m.spec, sort_keys=True, default=str), float(m.created or time.time()),
            json.dumps(m.meta or {}, sort_keys=True, default=str),
            sessions_to_json(m.sessions), float(m.spread), m.protocol,
        )
        marks = ",".join("?" * len(RECORD_FIELDS))
        try:
            with self._con:
                self._con.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, '{}', ?)", (m.fingerprint, time.time()))
                verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
                cur = self._con.execute(f"{verb} INTO measurements ({','.join(RECORD_FIELDS)}) VALUES ({marks})", values)
                if cur.rowcount:  # the item is finished: its pending sessions are now in the row
                    self._con.execute(f"DELETE FROM pending_sessions WHERE {' AND '.join(f'{c}=?' for c in IDENTITY)}",
                                      values[:len(IDENTITY)])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to profile store {self.path}: {exc}") from None
        if cur.rowcount == 0:
            logger.warning("kept the stored measurement of %s on %s (re-measure explicitly to replace it)", m.key, m.backend)
        return cur.rowcount > 0

    # -------------------------------------------------------------- sessions
    def add_session(
        self, key: str, backend: str, batch: int, index: int, stats: LatencyStats, fingerprint: str | None = None,
        precision: str = DEFAULT_PRECISION, layout: str = DEFAULT_LAYOUT,
    ) -> None:
        """Commit session ``index`` of an unfinished item at once; kept until :meth:`put` stores the item."""
        if self.read_only:
            raise StoreError(f"profile store {self.path} was opened read-only")
        ident = (self._resolve(fingerprint), backend, key, int(batch), precision or DEFAULT_PRECISION, layout or DEFAULT_LAYOUT)
        try:
            with self._con:
                self._con.execute("INSERT OR REPLACE INTO pending_sessions VALUES (?,?,?,?,?,?,?,?,?)",
                                  (*ident, int(index), json.dumps(stats.to_dict(), sort_keys=True), time.time()))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to profile store {self.path}: {exc}") from None

    def pending_sessions(
        self, backend: str, fingerprint: str | None = None,
        precision: str = DEFAULT_PRECISION, layout: str = DEFAULT_LAYOUT,
    ) -> dict[tuple[str, int], list[LatencyStats]]:
        """Sessions of unfinished items, ``(key, batch)`` -> statistics in session order (resume)."""
        fp = self._resolve(fingerprint)
        try:
            rows = self._con.execute(
                "SELECT key, batch, stats FROM pending_sessions WHERE fingerprint=? AND backend=? AND precision=? AND layout=?"
                " ORDER BY key, batch, idx", (fp, backend, precision, layout)).fetchall()
        except sqlite3.OperationalError:  # a read-only pre-session store has no such table
            return {}
        out: dict[tuple[str, int], list[LatencyStats]] = {}
        for key, batch, text in rows:
            data = safe_json.loads(text, f"pending session of {key!r}")
            out.setdefault((str(key), int(batch)), []).append(_stats(data, f"pending session of {key!r}"))
        return out

    def get(
        self, key: str, backend: str, batch: int = 1, fingerprint: str | None = None,
        precision: str = DEFAULT_PRECISION, layout: str = DEFAULT_LAYOUT,
    ) -> Measurement | None:
        fp = self._resolve(fingerprint)
        row = self._con.execute(
            "SELECT * FROM measurements WHERE fingerprint=? AND backend=? AND key=? AND batch=? AND precision=? AND layout=?",
            (fp, backend, key, int(batch), precision, layout),
        ).fetchone()
        return _row_to_measurement(row) if row is not None else None

    def query(
        self,
        backend: str | None = None,
        fingerprint: str | None = None,
        kind: str | None = None,
        batch: int | None = None,
        all_devices: bool = False,
        precision: str | None = None,
        layout: str | None = None,
    ) -> list[Measurement]:
        """Stored measurements, filtered; the current device unless ``all_devices``.

        Asking for a fingerprint the store does not hold is a one-line
        :class:`StoreError` (measurements of another device are never
        silently substituted).
        """
        where, args = [], []
        if not all_devices:
            fp = self._resolve(fingerprint)
            self.require_fingerprint(fp)
            where.append("fingerprint = ?")
            args.append(fp)
        for col, val in (("backend", backend), ("kind", kind), ("batch", batch), ("precision", precision), ("layout", layout)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, key"
        try:
            rows = self._con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is corrupt ({exc})") from None
        return [_row_to_measurement(r) for r in rows]

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    # -------------------------------------------------------------- exports
    def to_records(self, **filters: Any) -> list[dict[str, Any]]:
        """Flat dicts (one per measurement: identity, statistics, spec JSON, created).

        Defaults to the current device when the store has one, else to every
        device in the file.
        """
        filters.setdefault("all_devices", filters.get("fingerprint") is None and self.fingerprint is None)
        return [measurement_record(m) for m in self.query(**filters)]

    def export_csv(self, path: str | Path, **filters: Any) -> int:
        """Write :meth:`to_records` as CSV; returns the number of rows."""
        records = self.to_records(**filters)
        try:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(RECORD_FIELDS))
                writer.writeheader()
                writer.writerows(records)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
        return len(records)
