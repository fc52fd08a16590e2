"""Shared pieces of the exporters: results, parity, eval-mode and checkpoint checks."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from profilers.runtimes import ExportError  # noqa: F401  (one class: latnas.schema.errors.ExportError when present)

log = logging.getLogger(__name__)


@dataclass
class Parity:
    """How far a runtime's output is from the torch eval-mode output on the same input."""

    max_abs_diff: float
    rel_diff: float  # max_abs_diff / max(1, max |reference|)
    tolerance: float  # on rel_diff
    ok: bool

    @classmethod
    def compare(cls, output, reference, tolerance: float) -> "Parity":
        out = _to_numpy(output).astype(np.float64)
        ref = _to_numpy(reference).astype(np.float64)
        if out.shape != ref.shape:
            raise ExportError(f"runtime output shape {out.shape} differs from torch output shape {ref.shape}")
        diff = float(np.abs(out - ref).max()) if out.size else 0.0
        rel = diff / max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
        return cls(diff, rel, tolerance, bool(np.isfinite(diff) and rel <= tolerance))


@dataclass
class ExportResult:
    """One exported artifact and its checks."""

    format: str
    path: Path
    parity: Parity | None
    size_bytes: int
    nodes: int | None = None  # graph nodes (ONNX) / delegated + other ops (ExecuTorch) / layers (TensorRT)
    details: dict[str, Any] = field(default_factory=dict)
    sidecar: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["sidecar"] = str(self.sidecar) if self.sidecar else None
        return d


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        if len(x) != 1:
            raise ExportError(f"expected one output, got {len(x)}")
        x = x[0]
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def require_eval(model: nn.Module) -> None:
    """Refuse a model in training mode: BN/dropout behave differently and fusion is invalid there."""
    training = [name or "<root>" for name, m in model.named_modules() if m.training]
    if training:
        raise ExportError(
            f"model is in training mode (e.g. {training[0]}); call model.eval() before exporting"
        )


@torch.no_grad()
def reference_output(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    require_eval(model)
    return model(example)


def prepare_export(model: nn.Module, example: torch.Tensor, path: str | Path) -> tuple[Path, torch.Tensor]:
    """Every exporter's first step: refuse a training-mode model, create the folder, and take the torch
    eval-mode output that the runtime's parity is judged against."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, reference_output(model, example)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict safely (``weights_only=True``) into ``model``; one-line error if unusable.

    Accepts a plain state dict or a dict holding one under ``state_dict`` or
    ``model``. A checkpoint of a fused (deploy) model is loaded after fusing
    ``model``'s re-parameterizable blocks.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with forbidden globals, truncated file, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"checkpoint {path} cannot be loaded safely: {first[:200]}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ExportError(f"checkpoint {path} is not a state dict of tensors")
    if any(k.endswith("reparam.weight") for k in obj) and not any(k.endswith("reparam.weight") for k in model.state_dict()):
        from latnas.reparam import reparameterize_model

        model = reparameterize_model(model, inplace=True)
    _check_tensors(model, obj, path)
    try:
        model.load_state_dict(obj, strict=True)
    except RuntimeError as exc:
        missing, unexpected = _key_mismatch(model, obj)
        raise ExportError(
            f"checkpoint {path} does not match the model ({missing} missing, {unexpected} unexpected keys"
            f"{', shape mismatch' if not (missing or unexpected) else ''})"
        ) from None
    return model


def _check_tensors(model: nn.Module, state: dict, path: Path) -> None:
    """NaN/inf weights, or integer tensors where the model has floats (or the reverse), are refused before loading."""
    have = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ExportError(f"checkpoint {path}: tensor {key} holds NaN or inf")
        if key in have and value.is_floating_point() != have[key].is_floating_point():
            raise ExportError(f"checkpoint {path}: tensor {key} is {value.dtype}, the model's is {have[key].dtype}")


@torch.no_grad()
def check_finite_output(model: nn.Module, example: torch.Tensor, what: str) -> None:
    """Refuse, before anything is written, a model (e.g. with a checkpoint's huge weights) whose output is NaN/inf."""
    if not bool(torch.isfinite(model(example)).all()):
        raise ExportError(f"{what}: the model's output on the parity input is NaN or inf (weights too large?)")


def _key_mismatch(model: nn.Module, state: dict) -> tuple[int, int]:
    have = set(model.state_dict())
    return len(have - set(state)), len(set(state) - have)
