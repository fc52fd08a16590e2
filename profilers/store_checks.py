"""Checks run on a profile store file before :class:`~profilers.store.ProfileStore` opens it.

:mod:`profilers.store_schema` decides whether a file is ours (magic, app id,
version, column names). This module refuses, with one
:class:`~latnas.schema.errors.StoreError` line and without writing anything, what
those checks let through:

* a store path that is a symbolic link (writes would land wherever it points);
* a file SQLite itself finds damaged (``PRAGMA quick_check``: a truncated copy);
* objects the store never creates: foreign tables or indexes, and any trigger
  or view (a trigger runs SQL on our writes; a view can shadow nothing but is
  still not ours);
* our tables declared with other column types, nullability or keys than the
  schema's (compared with the schema built in memory), and stored values of
  the wrong type or NULL;
* opening for writing in a folder that cannot be written (SQLite needs its
  ``-wal`` and ``-shm`` files beside the store).
"""
from __future__ import annotations

import os
import re
import sqlite3
import stat
from functools import lru_cache
from pathlib import Path

from latnas.schema.errors import StoreError
from profilers.store_schema import _SCHEMA, APP_ID, SQLITE_MAGIC, _connect_ro

#: the value types SQLite may hold under each declared column type
VALUE_TYPES = {"TEXT": ("text",), "REAL": ("real", "integer"), "INTEGER": ("integer",)}


@lru_cache(maxsize=1)
def reference_schema() -> tuple[dict[str, str], dict[str, tuple[tuple, ...]]]:
    """``({object name: type}, {table: ((column, type, notnull, pk), ...)})`` of the current schema."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(_SCHEMA)
        objects = {name: kind for kind, name in con.execute("SELECT type, name FROM sqlite_master")}
        columns = {t: tuple((r[1], r[2].upper(), r[3], r[5]) for r in con.execute(f'PRAGMA table_info("{t}")'))
                   for t, kind in objects.items() if kind == "table"}
    finally:
        con.close()
    return objects, columns


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False  # store_schema reports unreadable files


def check_store_path(path: Path, read_only: bool) -> None:
    """Refuse a store path or file that must not be opened (see the module doc); creates nothing."""
    if path.is_symlink():
        raise StoreError(f"profile store {path} is a symbolic link; give the real file's path")
    if not read_only and not os.path.lexists(path) and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise StoreError(f"cannot create profile store {path}: folder {path.parent} is not writable")
    try:
        st = path.stat()
    except OSError:
        return  # missing: created (or refused) by the store itself
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or not _is_sqlite(path):
        return  # not regular, empty or not SQLite: store_schema's checks word these
    if not read_only and not os.access(path.parent, os.W_OK):
        raise StoreError(f"profile store {path}: folder {path.parent} is not writable (SQLite needs its journal beside it)")
    con = _connect_ro(path)
    try:
        _check_contents(con, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is corrupt or truncated ({exc}); refusing to touch it") from None
    finally:
        con.close()


def _check_contents(con: sqlite3.Connection, path: Path) -> None:
    problems = [r[0] for r in con.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreError(f"{path} is damaged (SQLite: {'; '.join(map(str, problems))[:200]}); refusing to touch it")
    objects, columns = reference_schema()
    found = con.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
    if not any(kind == "table" and name == "meta" for kind, name, _ in found):
        return  # empty (ours to initialise) or another application's file: store_schema words it
    if (APP_ID,) not in con.execute("SELECT value FROM meta WHERE key = 'app_id'").fetchall():
        return
    for kind, name, table in found:
        if kind in ("trigger", "view"):
            raise StoreError(f"{path} holds a {kind} {name[:60]!r}, which a profile store never has; refusing to touch it")
        if objects.get(name) != kind and not (kind == "index" and name.startswith("sqlite_autoindex_") and table in columns):
            raise StoreError(f"{path} holds a foreign {kind} {name[:60]!r}; refusing to touch it")
    for kind, name, _ in found:
        if kind == "table":
            _check_table(con, path, name, columns[name])


def _check_table(con: sqlite3.Connection, path: Path, table: str, want: tuple[tuple, ...]) -> None:
    """Declared columns agree with the schema where both have them; values have their declared type."""
    have = {r[1]: (r[1], r[2].upper(), r[3], r[5]) for r in con.execute(f'PRAGMA table_info("{table}")')}
    for col in want:
        if col[0] in have and have[col[0]] != col:
            _, kind, notnull, pk = have[col[0]]
            raise StoreError(f"{path}: column {table}.{col[0]} is declared {kind or 'untyped'}"
                             f"{' NOT NULL' if notnull else ''}{' (key)' if pk else ''}, the schema has {col[1]}"
                             f"{' NOT NULL' if col[2] else ''}; refusing to touch it")
    checks = [(name, VALUE_TYPES[kind]) for name, kind, _, _ in want if name in have and kind in VALUE_TYPES]
    if not checks:
        return
    if not re.fullmatch(r"\w+", table) or not all(re.fullmatch(r"\w+", n) for n, _ in checks):
        raise StoreError(f"{path}: unexpected names in table {table[:60]!r}")
    terms = ", ".join(f"SUM(typeof({n}) NOT IN ({', '.join(repr(t) for t in ok)}))" for n, ok in checks)
    counts = con.execute(f"SELECT {terms} FROM {table}").fetchone()
    for (name, ok), bad in zip(checks, counts):
        if bad:
            raise StoreError(f"{path}: {bad} rows of {table}.{name} hold NULL or a value that is not "
                             f"{' or '.join(ok)}; refusing to touch it")
