"""Silence third-party noise a user cannot act on (used by ``latnas demo``).

Two kinds: Python log records and warnings from libraries we import (torchao's
"Failed to load ... .so" for kernels of GPUs we do not have, torch's pytree
deprecation notes, the ONNX exporter's "torchvision is not installed"), and
lines that native code writes straight to file descriptor 2 (the ExecuTorch
runtime's ``[cpuinfo_utils.cpp:..]`` and ``[threadpool.cpp:..]`` logging).
The first are turned down by logger and warning filters; the second by
routing fd 2 through a pipe whose reader drops exactly those lines and
forwards every other byte, so our own messages and real errors still show.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from typing import Iterator

NOISY_LOGGERS = (
    "torchao",  # "Failed to load .../_C_mxfp8...so": optional CUDA kernels
    "torch.utils._pytree",  # "is an Enum subclass and is now natively supported..."
    "torch.onnx._internal.exporter._registration",  # "torchvision is not installed. Skipping ..."
    "torch._export",
)
NATIVE_NOISE = re.compile(rb"^\[(cpuinfo_utils|threadpool|cpuinfo|XNNPACK)[\w.]*:\d+\] ")


def quiet_loggers() -> None:
    """Third-party loggers and warnings down to errors only."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"torchao(\.|$)")
    warnings.filterwarnings("ignore", message=r".*torchvision is not installed.*")


def _channel(saved: int) -> tuple[int, int]:
    """(read end, write end): a pseudo-terminal when stderr is a terminal (progress bars stay live), else a pipe."""
    if os.isatty(saved):
        try:
            import fcntl
            import termios
            import tty

            master, slave = os.openpty()
            tty.setraw(slave)  # no output post-processing: bytes pass through as written
            with contextlib.suppress(OSError):
                fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(saved, termios.TIOCGWINSZ, b"\0" * 8))
            return master, slave
        except (OSError, ImportError):
            pass
    return os.pipe()


def _pump(read_end: int, saved: int, pattern: re.Pattern[bytes]) -> None:
    """Forward bytes from ``read_end`` to ``saved``, dropping whole lines that match ``pattern``.

    Only text that could begin a noise line (``[``) waits for its newline; the
    rest (progress bars redrawn with ``\r``) is forwarded at once.
    """
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:  # a pty's master reads EIO once the last writer closed
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not pattern.match(line))
        if pending and not pending.startswith(b"["):
            out, pending = out + pending, b""
        if out:
            os.write(saved, out)
    if pending and not pattern.match(pending):
        os.write(saved, pending)
    os.close(read_end)


@contextlib.contextmanager
def filtered_stderr(pattern: re.Pattern[bytes] = NATIVE_NOISE) -> Iterator[None]:
    """Drop native stderr lines matching ``pattern`` for the ``with`` body; forward the rest."""
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, some test runners)
        yield
        return
    read_end, write_end = _channel(saved)
    thread = threading.Thread(target=_pump, args=(read_end, saved, pattern), name="latnas-stderr-filter", daemon=True)
    thread.start()
    sys.stderr.flush()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, fd)  # closes the channel's last writer: the reader sees EOF
        thread.join(timeout=5)
        os.close(saved)
