"""Supernet weights on disk: torch's weights-only format, one file per training state.

A training state is named by a key chaining everything its weights depend
on: the space, the net and training configs, the data (a fingerprint of the
tensors), the seed, and every fit so far (its mask, epochs, multi-branch
setting). Same key, same weights: a second search with the same config loads
them and trains nothing. Files are written with ``torch.save(state_dict)``
and read back with ``torch.load(weights_only=True)`` (never unpickled code).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latnas.schema.errors import DataError

STORE_VERSION = 1


def default_weights_dir() -> Path:
    """``$LATNAS_CACHE/supernet``, else ``~/.cache/latnas/supernet``."""
    root = os.environ.get("LATNAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "latnas")
    return Path(root) / "supernet"


def data_fingerprint(data: Any) -> str:
    """Short hash of a :class:`SearchData`'s tensors (so weights trained on other data are never reused)."""
    h = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_val, data.y_val):
        a = t.detach().cpu().contiguous().numpy()
        h.update(str((a.shape, str(a.dtype))).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def mask_digest(mask: np.ndarray) -> str:
    m = np.asarray(mask, dtype=bool)
    return f"{m.shape[0]}x{m.shape[1]}:{np.packbits(m.ravel()).tobytes().hex()}"


def chain_key(parent: str, **fields: Any) -> str:
    """The key of a state derived from ``parent`` by the step described in ``fields``."""
    text = json.dumps({"v": STORE_VERSION, "parent": parent, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def save_state(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a state written by :func:`save_state`; one-line DataError if unusable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the same user error)
        raise DataError(f"supernet weights {path} cannot be read ({type(exc).__name__}); delete the file to retrain") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise DataError(f"supernet weights {path} are not a latnas supernet state; delete the file to retrain")
    return blob["state_dict"], dict(blob.get("meta") or {})
