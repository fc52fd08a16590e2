"""The CLI's bad-input layer: numeric bounds and path checks run before any work.

Every command takes its numeric limits from here (``typer.Option(..., min=,
max=)``), so ``--batch 1000000`` or ``--seed -1`` is one ``error:`` line at
parse time, not an out-of-memory kill or a traceback twenty seconds later.
Output paths are checked before training, profiling or searching starts: a
path under a regular file, in a folder we cannot write, or naming the wrong
kind of thing is refused. Input files must be regular files (a FIFO as
``--store`` or ``--archs`` would block forever; a device is not data).
"""
from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path

from latnas.schema.errors import DataError

# ------------------------------------------------------------------ bounds
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_BATCH = 256  # a profiled / exported input batch; beyond it one block's activations exceed a host's memory
MAX_THREADS = 256
MAX_SESSIONS = 50  # profilers.config.MAX_SESSIONS (a test keeps them equal; the CLI does not import profilers at start-up)
MAX_MODELS = 5_000  # random whole models to profile in one run (each is seconds: more is days)
MAX_LIMIT = 1_000_000
MAX_EVALS = 20_000  # 100x the default search; one accuracy estimate takes seconds on a CPU
MAX_IMAGES = 1_000_000  # training / validation images of an accuracy estimate
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024
MAX_PROFILE_TOP = 1_000  # archs profiled after a search, seconds each: 1,000 is already about an hour
MAX_POP_SIZE = 100_000
MAX_ESTIMATORS = 10_000  # xgb stops early (default 1,500); a forest of more trees cannot be saved (64 MB files)
MAX_N_TRAIN = 10_000_000
MAX_MARGIN = 0.9
MAX_PORT = 65_535
MAX_TIMEOUT_S = 3600.0
MAX_INPUT_BYTES = 1 << 30  # an archs file / table larger than this is not an input we read
MAX_DATA_BYTES = 2 << 30  # the search's training + validation images in memory (float32, 3 channels)
MAX_IMAGE_EVALS = 100 * 200 * 800  # evals x images (at 32x32): 100x the default search
MAX_RAY_WORKERS = 1024  # scores in flight at once through Ray
DEFAULT_SEARCH_RESOLUTION = 32


def check_finite(value: float, option: str, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` if finite and within ``[lo, hi]``; else a one-line :class:`DataError`."""
    if not math.isfinite(value):
        raise DataError(f"{option} must be a finite number, got {value!r}")
    if lo is not None and value < lo:
        raise DataError(f"{option} must be >= {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise DataError(f"{option} must be <= {hi:g}, got {value:g}")
    return value


def check_choice(value: str, choices: tuple[str, ...] | list[str], option: str) -> str:
    """``value`` if it is one of ``choices``; else a one-line error naming them."""
    if value not in choices:
        raise DataError(f"{option} must be one of {', '.join(choices)}; got {value!r}")
    return value


def split_names(text: str, option: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty items (``",,,"``) are an error, not silently dropped."""
    items = [t.strip() for t in text.split(",")]
    if not items or any(not t for t in items):
        raise DataError(f"{option} must be comma-separated names without empty items, got {text!r}")
    return items


# ------------------------------------------------------------------- paths
def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _writable_dir(folder: Path) -> bool:
    """True when a file can really be created in ``folder`` (root ignores modes; read-only mounts do not)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".latnas-write-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_output(path: Path | str, option: str = "-o", kind: str = "dir") -> Path:
    """Refuse an output path that cannot work, before any work starts; creates nothing.

    ``kind`` is ``"dir"`` (a folder we will create or fill) or ``"file"``.
    """
    text = str(path)
    if not text.strip():
        raise DataError(f"{option} must not be empty")
    if "\x00" in text:
        raise DataError(f"{option} must not contain NUL bytes")
    path = Path(text).expanduser()
    if os.path.lexists(path):
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(f"{option} {path}: {exc.strerror or exc}") from None
        if kind == "dir" and not stat.S_ISDIR(st.st_mode):
            raise DataError(f"{option} {path} exists and is not a folder")
        if kind == "file" and not stat.S_ISREG(st.st_mode):
            raise DataError(f"{option} {path} exists and is not a regular file")
        target = path if kind == "dir" else path.parent
        if not _writable_dir(target if str(target) else Path(".")):
            raise DataError(f"{option} {path}: folder {target} is not writable")
        return path
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        raise DataError(f"{option} {path} is under {base}, which is not a folder")
    if not _writable_dir(base):
        raise DataError(f"{option} {path}: folder {base} is not writable")
    return path


def check_input_file(path: Path | str, option: str, max_bytes: int = MAX_INPUT_BYTES) -> Path:
    """An existing regular file of at most ``max_bytes``: FIFOs, devices and folders refused before opening."""
    text = str(path)
    if not text.strip():
        raise DataError(f"{option} must not be empty")
    from latnas.schema.files import regular_file

    path = Path(text)
    regular_file(path, option, max_bytes)
    return path


def read_text_lines(path: Path, option: str) -> list[str]:
    """Lines of a UTF-8 text input file; a binary file is one line of error, not a decode traceback."""
    data = check_input_file(path, option).read_bytes()
    if b"\x00" in data:
        raise DataError(f"{option} {path} is a binary file, not text")
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{option} {path} is not UTF-8 text (byte {exc.start})") from None


# ------------------------------------------------------------------ resources
def check_search_resources(evals: int, n_train: int, n_val: int, resolution: int | None,
                           workers: int | None = None) -> None:
    """Refuse, before any work, a search whose images would take GBs of memory or whose
    accuracy estimates would take days: each bound is far above the defaults."""
    res = resolution or DEFAULT_SEARCH_RESOLUTION
    images = n_train + n_val
    data_bytes = images * 3 * res * res * 4
    if data_bytes > MAX_DATA_BYTES:
        raise DataError(f"--n-train {n_train} + --n-val {n_val} images at --resolution {res} take "
                        f"{data_bytes / 2**30:.1f} GiB; the limit is {MAX_DATA_BYTES / 2**30:g} GiB")
    work = evals * images * (res / DEFAULT_SEARCH_RESOLUTION) ** 2
    if work > MAX_IMAGE_EVALS:
        raise DataError(f"--evals {evals} x {images} images at --resolution {res} is {work:.3g} image-evaluations "
                        f"(32x32 equivalent); the limit is {MAX_IMAGE_EVALS:.3g}: fewer evals or images")
    if workers is not None and workers > MAX_RAY_WORKERS:
        raise DataError(f"--workers must be <= {MAX_RAY_WORKERS}, got {workers}")


def check_threads(threads: int, backend: str) -> None:
    """Refuse timing with more intra-op threads than this machine has CPUs (the numbers would time the
    scheduler); a remote or emulated backend times elsewhere."""
    cpus = os.cpu_count() or 1
    if backend not in ("remote", "table") and threads > cpus:
        raise DataError(f"--threads {threads} exceeds this machine's {cpus} CPUs")
