"""Compatibility wrapper: the profilers' ``exporter`` option over :mod:`profilers.runtimes.onnx`.

``exporter`` is ``"auto"`` (legacy TorchScript exporter, dynamo as fallback:
~20x faster on blocks), ``"legacy"`` or ``"dynamo"``. New code calls
:func:`profilers.runtimes.onnx.export_onnx` with an explicit ``dynamo`` choice.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from profilers.runtimes import ExportError
from profilers.runtimes.onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, exporter_choice
from profilers.runtimes.onnx import export_onnx as _export_onnx
from profilers.runtimes.onnx import onnx_file as _onnx_file

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME", "ExportError", "export_onnx", "onnx_file"]


def export_onnx(module, example, path: str | Path, *, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Path:
    """Write ``module`` to ``path`` with the exporter named by ``exporter`` (auto|legacy|dynamo)."""
    dynamo, fallback = exporter_choice(exporter)
    return _export_onnx(module, example, path, dynamo=dynamo, opset=opset, fallback=fallback)


@contextlib.contextmanager
def onnx_file(module, example, *, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Iterator[Path]:
    """Export into a temporary folder that is removed on exit; yields the file path."""
    dynamo, fallback = exporter_choice(exporter)
    with _onnx_file(module, example, dynamo=dynamo, opset=opset, fallback=fallback) as path:
        yield path
