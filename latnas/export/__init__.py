"""Export fused (or multi-branch) models to ONNX, ExecuTorch and TensorRT, each with a JSON sidecar.

Runtimes are imported lazily inside each exporter, so importing this package
stays cheap. ``export_model`` is the one-call entry used by ``latnas export``.
"""
from __future__ import annotations

from latnas.export.common import ExportError, ExportResult, Parity, load_checkpoint, require_eval
from latnas.export.pipeline import FORMATS, export_model
from latnas.export.sidecar import library_versions, read_sidecar, sidecar_path, write_sidecar

__all__ = [
    "ExportError",
    "ExportResult",
    "FORMATS",
    "Parity",
    "export_model",
    "library_versions",
    "load_checkpoint",
    "read_sidecar",
    "require_eval",
    "sidecar_path",
    "write_sidecar",
]
