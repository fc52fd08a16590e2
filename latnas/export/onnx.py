"""ONNX export: the runtimes layer's exporter (dynamo) -> ``onnx.checker`` -> ONNX Runtime parity.

The file is written by :func:`profilers.runtimes.onnx.export_onnx` (the same
function the profiler backends use) with ``dynamo=True``.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from latnas.export.common import ExportError, ExportResult, Parity, prepare_export, require_eval
from profilers.runtimes.onnx import DEFAULT_OPSET, export_onnx as runtime_export_onnx, onnx_node_count

log = logging.getLogger(__name__)

ONNX_TOLERANCE = 1e-4
SHIP_DYNAMO = True  # what `latnas export` ships: the dynamo exporter's graph

__all__ = ["DEFAULT_OPSET", "ONNX_TOLERANCE", "export_onnx", "model_node_count", "onnx_node_count", "run_onnxruntime"]


def _torch_export(model: nn.Module, example: torch.Tensor, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """The shipped export (kept for callers of the old helper)."""
    runtime_export_onnx(model, example, path, dynamo=SHIP_DYNAMO, opset=opset)


def model_node_count(model: nn.Module, example: torch.Tensor, opset: int = DEFAULT_OPSET) -> int:
    """ONNX node count of ``model`` (exported to a temporary file), e.g. before fusion."""
    require_eval(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        _torch_export(model, example, path, opset)
        return onnx_node_count(path)


def run_onnxruntime(path: str | Path, example: torch.Tensor, threads: int = 1):
    """Run an ONNX file on the CPU with ONNX Runtime; return the first output (numpy)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: example.detach().cpu().numpy()})[0]


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    check_parity: bool = True,
    tolerance: float = ONNX_TOLERANCE,
) -> ExportResult:
    """Export an eval-mode ``model`` to ONNX, validate it, and compare ONNX Runtime with torch."""
    import onnx

    path, ref = prepare_export(model, example, path)
    _torch_export(model, example, path, opset)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected {path}: {str(exc).strip().splitlines()[0][:200]}") from None
    parity = None
    if check_parity:
        parity = Parity.compare(run_onnxruntime(path, example), ref, tolerance)
    return ExportResult(
        format="onnx",
        path=path,
        parity=parity,
        size_bytes=os.path.getsize(path),
        nodes=onnx_node_count(path),
        details={"opset": opset},
    )
