"""The on-disk cache folder shared by the runtimes (TensorRT timing caches, ExecuTorch programs)."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def default_cache_dir() -> Path:
    """``$LATNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/latnas``, else ``~/.cache/latnas``."""
    if os.environ.get("LATNAS_CACHE_DIR"):
        return Path(os.environ["LATNAS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "latnas"


def slug(text: str) -> str:
    """A file-name-safe, lower-case form of ``text``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def digest(*parts: str) -> str:
    """A short stable hash of ``parts`` (cache file names)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (no half files for readers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
