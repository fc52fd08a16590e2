"""Stored rows <-> :class:`~profilers.base.Measurement` (the record half of :mod:`profilers.store`).

One row (or one flat CSV record) per measurement: identity, the item's
summary statistics, spec / meta JSON, and the session columns (``sessions``:
a JSON list of every session's statistics; ``spread``; ``protocol``). Rows
written before sessions existed read as one session with protocol ``legacy``.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from typing import Any, Iterable

from latnas.schema import safe_json
from latnas.schema.errors import LatnasError, StoreError
from profilers.base import LatencyStats, Measurement
from profilers.store_schema import DEFAULT_LAYOUT, DEFAULT_PRECISION, LEGACY_PROTOCOL, STAT_FIELDS


def _json_object(text: Any, what: str) -> dict[str, Any]:
    value = safe_json.loads(text if isinstance(text, str) else "", what)
    if not isinstance(value, dict):
        raise StoreError(f"{what} is not a JSON object")
    return value


def _stats(data: Any, what: str) -> LatencyStats:
    """Strictly rebuild :class:`LatencyStats` from a JSON object."""
    if not isinstance(data, dict) or set(data) != set(STAT_FIELDS):
        raise StoreError(f"{what}: not a session's statistics")
    try:
        return LatencyStats(**{
            n: (bool(data[n]) if n in ("stable", "noisy") else int(data[n]) if n in ("repeats", "warmup_runs") else float(data[n]))
            for n in STAT_FIELDS
        })
    except (TypeError, ValueError, OverflowError) as exc:
        raise StoreError(f"{what}: {exc}") from None


def sessions_from_json(text: Any, what: str) -> tuple[LatencyStats, ...]:
    """The ``sessions`` column (a JSON list of statistics objects) as a tuple."""
    value = safe_json.loads(text if isinstance(text, str) and text else "[]", what)
    if not isinstance(value, list):
        raise StoreError(f"{what} is not a JSON list")
    return tuple(_stats(v, what) for v in value)


def sessions_to_json(sessions: Iterable[LatencyStats]) -> str:
    return json.dumps([s.to_dict() for s in sessions], sort_keys=True)


def _row_to_measurement(row: sqlite3.Row) -> Measurement:
    """One stored row as a :class:`Measurement`; a corrupt row is a one-line :class:`StoreError`."""
    names = row.keys()
    try:
        stats = LatencyStats(**{
            name: (bool(row[name]) if name in ("stable", "noisy") else
                   int(row[name]) if name in ("repeats", "warmup_runs") else float(row[name]))
            for name in STAT_FIELDS
        })
        return Measurement(
            key=str(row["key"]),
            kind=str(row["kind"]),
            backend=str(row["backend"]),
            fingerprint=str(row["fingerprint"]),
            batch=int(row["batch"]),
            stats=stats,
            spec=_json_object(row["spec"], f"spec of stored measurement {row['key']!r}"),
            created=float(row["created"]),
            precision=row["precision"] if "precision" in names else DEFAULT_PRECISION,
            layout=row["layout"] if "layout" in names else DEFAULT_LAYOUT,
            meta=_json_object(row["meta"] or "{}", f"meta of stored measurement {row['key']!r}") if "meta" in names else {},
            **_session_fields(row, names, stats),
        )
    except StoreError:
        raise
    except LatnasError as exc:
        raise StoreError(f"corrupt profile store row: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise StoreError(f"corrupt profile store row {row['key']!r}: {exc}") from None


def _session_fields(row: sqlite3.Row, names: list[str], stats: LatencyStats) -> dict[str, Any]:
    """``sessions`` / ``spread`` / ``protocol`` of a row; a pre-session row is one legacy session."""
    protocol = str(row["protocol"]) if "protocol" in names else LEGACY_PROTOCOL
    sessions = sessions_from_json(row["sessions"], f"sessions of stored measurement {row['key']!r}") if "sessions" in names else ()
    if protocol == LEGACY_PROTOCOL and not sessions:
        sessions = (stats,)  # written before sessions existed: one session, flagged by the protocol
    return {"sessions": sessions, "spread": float(row["spread"]) if "spread" in names else 0.0,
            "protocol": protocol}


def measurement_record(m: Measurement) -> dict[str, Any]:
    """A :class:`Measurement` as one flat dict (the CSV/record layout)."""
    rec: dict[str, Any] = {
        "fingerprint": m.fingerprint,
        "backend": m.backend,
        "key": m.key,
        "batch": m.batch,
        "precision": m.precision,
        "layout": m.layout,
        "kind": m.kind,
    }
    rec.update(asdict(m.stats))
    rec["spec"] = json.dumps(m.spec, sort_keys=True, default=str)
    rec["created"] = m.created
    rec["meta"] = json.dumps(m.meta or {}, sort_keys=True, default=str)
    rec["sessions"] = sessions_to_json(m.sessions)
    rec["spread"] = m.spread
    rec["protocol"] = m.protocol
    return rec


def records_to_measurements(records: Iterable[dict[str, Any]]) -> list[Measurement]:
    """Inverse of :func:`measurement_record` (e.g. rows read back from CSV)."""
    out = []
    for r in records:
        stats = LatencyStats(**{
            n: (str(r[n]).lower() in ("1", "true") if n in ("stable", "noisy") else (int(r[n]) if n in ("repeats", "warmup_runs") else float(r[n])))
            for n in STAT_FIELDS
        })
        spec = r["spec"] if isinstance(r["spec"], dict) else safe_json.loads(r["spec"] or "{}", "measurement spec")
        meta = r.get("meta") or {}
        meta = meta if isinstance(meta, dict) else safe_json.loads(meta, "measurement meta")
        sessions = r.get("sessions") or ()
        if isinstance(sessions, (list, tuple)):
            sessions = tuple(v if isinstance(v, LatencyStats) else _stats(v, "measurement sessions") for v in sessions)
        else:
            sessions = sessions_from_json(sessions, "measurement sessions")
        out.append(Measurement(
            r["key"], r["kind"], r["backend"], r["fingerprint"], int(r["batch"]), stats, spec, float(r["created"]),
            precision=r.get("precision") or DEFAULT_PRECISION, layout=r.get("layout") or DEFAULT_LAYOUT, meta=meta,
            sessions=sessions, spread=float(r.get("spread") or 0.0), protocol=r.get("protocol", LEGACY_PROTOCOL) or "",
        ))
    return out
