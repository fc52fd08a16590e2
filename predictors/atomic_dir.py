"""Put a finished folder in place of another in one step, so a kill at any moment leaves a reader
the old folder or the new one, never neither (and never half of one)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path

AT_FDCWD = -100
RENAME_EXCHANGE = 2  # linux/fs.h: swap two existing paths atomically (Linux 3.15+, glibc 2.28+)


def scratch_dir(folder: Path) -> Path:
    """A hidden folder beside ``folder`` to write into; leftovers of killed writers (their pid no longer
    runs) are swept first, so an interrupted save leaves no debris behind for long."""
    parent = folder.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f".{folder.name}.part-*-*"):
        pid = old.name[len(f".{folder.name}.part-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}.part-{os.getpid()}-", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically with renameat2(RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def replace_dir(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` folder to ``folder``; an existing non-empty ``folder`` is swapped out
    atomically where the system allows it (else moved aside for the instant of the second rename)."""
    if not os.path.lexists(folder) or (folder.is_dir() and not any(folder.iterdir())):
        os.replace(tmp, folder)  # rename(2) also replaces an empty folder
    elif exchange(tmp, folder):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous model
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    try:
        fd = os.open(folder.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
