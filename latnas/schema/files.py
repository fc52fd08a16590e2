"""One check for a file latnas is about to read: it exists, is a regular file (no FIFO, device or
folder that would block or never end), and is not larger than the reader's bound."""
from __future__ import annotations

import stat
from pathlib import Path

from latnas.schema.errors import DataError


def regular_file(path: Path, what: str, max_bytes: int) -> int:
    """The size of ``path``; a one-line :class:`DataError` naming ``what`` (e.g. ``--table``) otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"{what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what} {path} is not a regular file")
    if st.st_size > max_bytes:
        raise DataError(f"{what} {path} is {st.st_size} bytes; the limit is {max_bytes}")
    return st.st_size
