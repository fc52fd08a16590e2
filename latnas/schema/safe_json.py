"""JSON reading with bounds: every file or request body we parse goes through here.

``json.loads`` recurses once per nesting level, so a crafted ``[[[[...]]]]`` ends
in a RecursionError (a traceback, or a dropped connection in the agent). The
depth and size are checked on the raw text first, in linear time, and any
failure is one :class:`~latnas.schema.errors.DataError` line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from latnas.schema.errors import DataError

MAX_DEPTH = 64  # nesting levels of arrays/objects; our files use fewer than 10
MAX_BYTES = 256 * 1024 * 1024  # 256 MiB: the largest predictor state we write is a few MB


def nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of JSON ``text`` (brackets inside strings ignored)."""
    depth = best = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > best:
                best = depth
        elif ch in "]}":
            depth -= 1
    return best


def loads(text: str | bytes, what: str = "JSON", max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """Parse JSON ``text``; a one-line :class:`DataError` naming ``what`` on any problem."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            raise DataError(f"{what} is larger than {max_bytes} bytes; refused")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{what} is not UTF-8 text") from None
    if len(text) > max_bytes:
        raise DataError(f"{what} is larger than {max_bytes} bytes; refused")
    if nesting_depth(text) > max_depth:
        raise DataError(f"{what} nests deeper than {max_depth} levels; refused")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def load(path: str | Path, what: str | None = None, **limits: int) -> Any:
    """Read and parse a JSON file with :func:`loads`'s bounds."""
    path = Path(path)
    what = what or str(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise DataError(f"{what} is not a regular file")
        if size > limits.get("max_bytes", MAX_BYTES):
            raise DataError(f"{what} is larger than {limits.get('max_bytes', MAX_BYTES)} bytes; refused")
        text = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}") from None
    return loads(text, what, **limits)
