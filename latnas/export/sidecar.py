"""JSON sidecars: ``<artifact>.json`` describing what an exported file is and how it was checked."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from latnas.export.common import ExportError

LIBRARIES = ("latnas", "torch", "onnx", "onnxruntime", "onnxscript", "executorch", "tensorrt", "numpy")


def library_versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions (from package metadata: nothing is imported); None when absent."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in libraries:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sidecar(artifact: str | Path, record: dict[str, Any]) -> Path:
    """Write ``<artifact>.json``: ``record`` plus file name, size, sha256, versions and a UTC time."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ExportError(f"cannot describe {artifact}: it does not exist")
    data = {
        "artifact": artifact.name,
        "size_bytes": artifact.stat().st_size,
        "sha256": file_sha256(artifact),
        **record,
        "versions": record.get("versions") or library_versions(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = sidecar_path(artifact)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_sidecar(artifact: str | Path) -> dict[str, Any]:
    path = sidecar_path(artifact)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"sidecar {path} is unreadable: {exc}") from None
