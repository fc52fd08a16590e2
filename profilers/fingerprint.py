"""Device fingerprints: what a latency number was measured on.

A fingerprint is a plain dict (CPU model, core counts, OS, Python/torch/numpy
versions, the backend's runtime versions, the thread count, the GPU name if
any) plus a short stable hash of it: the first 16 hex digits of the SHA-256 of
its canonical JSON (sorted keys, no spaces). The profile store keys every row
by that hash, so numbers from different machines, runtimes or thread counts
never mix.

A backend that measures somewhere else (a remote agent) describes that
device itself through :meth:`profilers.base.Backend.device_info` (``None``,
the default, means this host); it then replaces the local host description.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform

from typing import Any

HASH_CHARS = 16


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux) or platform."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unsupported platform
        return None


def gpu_name() -> str:
    """Name of CUDA device 0, or "" when there is none (never initialises CUDA needlessly)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    return ""


def host_info() -> dict[str, Any]:
    """Description of this machine and its Python stack."""
    import numpy
    import torch

    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "gpu": gpu_name(),
    }


def fingerprint_hash(info: dict[str, Any]) -> str:
    """Short stable hash: sha256 of canonical JSON, first 16 hex digits."""
    text = json.dumps(info, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def device_fingerprint(backend, threads: int = 1) -> tuple[str, dict[str, Any]]:
    """``(hash, info)`` for measurements made by ``backend`` with ``threads`` threads."""
    remote = backend.device_info()
    info = dict(remote) if remote is not None else host_info()
    info["backend"] = backend.name
    info["runtime"] = {str(k): str(v) for k, v in (backend.versions() or {}).items()}
    info["threads"] = int(threads)
    return fingerprint_hash(info), info


__all__ = ["cpu_model", "host_info", "fingerprint_hash", "device_fingerprint", "gpu_name", "physical_cores"]
