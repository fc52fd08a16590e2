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


@contextlib.contextmanager
def filtered_stderr(pattern: re.Pattern[bytes] = NATIVE_NOISE) -> Iterator[None]:
    """Drop native stderr lines matching ``pattern`` for the ``with`` body; forward the rest."""
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, some test runners)
        yield
        return
    read_end, write_end = os.pipe()

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as src:
            pending = b""
            while True:
                chunk = src.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not pattern.match(line))
                if out:
                    os.write(saved, out)
            if pending and not pattern.match(pending):
                os.write(saved, pending)

    thread = threading.Thread(target=pump, name="latnas-stderr-filter", daemon=True)
    thread.start()
    sys.stderr.flush()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, fd)  # closes the pipe's last writer: the reader sees EOF
        thread.join(timeout=5)
        os.close(saved)
