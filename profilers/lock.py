"""One measuring process per machine: an advisory ``flock`` around profiling runs.

Two profiling runs on one machine time each other: each sees the other's load
as noise and both store inflated medians. ``profiling_lock`` takes an
exclusive ``fcntl.flock`` on ``<lock dir>/profile-<name>.lock`` (``name`` is
the host, or a device such as ``cuda0``); a second process waits for it with a
message, or is refused at once with ``wait=False``. The lock is released when
the run ends or its process dies (the kernel drops it), so a ``kill -9`` never
leaves a stale lock. Re-entrant within one process.

The lock folder is ``$LATNAS_LOCK_DIR``, else ``$XDG_CACHE_HOME/latnas``, else
``~/.cache/latnas``.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from latnas.schema.errors import LatnasError

LOCK_DIR_ENV = "LATNAS_LOCK_DIR"


class ProfilingBusy(LatnasError):
    """Another profiling run holds this machine's lock (and we were told not to wait)."""


def lock_dir() -> Path:
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "latnas"


def lock_path(name: str | None = None) -> Path:
    """The lock file for device ``name`` (default: this host)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name or socket.gethostname() or "host")[:64]
    return lock_dir() / f"profile-{safe}.lock"


_held: dict[str, tuple[int, int]] = {}  # path -> (fd, depth) for re-entrancy
_guard = threading.Lock()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


@contextlib.contextmanager
def profiling_lock(
    name: str | None = None, wait: bool = True, poll_s: float = 0.5,
    notify: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the per-machine profiling lock for the ``with`` body.

    ``wait=False`` raises :class:`ProfilingBusy` at once when another process
    holds it; otherwise ``notify`` (default: nothing) is told once that we wait.
    """
    import fcntl

    path = lock_path(name)
    key = str(path)
    with _guard:
        reentered = key in _held
        if reentered:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
    if reentered:
        try:
            yield path
        finally:
            _release(key)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ProfilingBusy(f"cannot create the profiling lock {path}: {exc.strerror or exc}") from None
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise ProfilingBusy(
                        f"another profiling run holds this machine{_holder(fd)}; timings would disturb each other"
                        f" (lock {path}); wait for it or drop --no-wait"
                    ) from None
                if not told and notify is not None:
                    notify(f"waiting for another profiling run on this machine{_holder(fd)} (lock {path})")
                    told = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[key] = (fd, 1)
    try:
        yield path
    finally:
        _release(key)


def _release(key: str) -> None:
    """Leave the lock; whoever leaves last (owner or a thread that re-entered) unlocks and closes it."""
    import fcntl

    with _guard:
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        del _held[key]
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
