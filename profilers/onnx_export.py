"""Export a ``torch.nn.Module`` to an ONNX file (shared by the ONNX Runtime and TensorRT backends).

The TorchScript-based exporter (``dynamo=False``) is tried first: for the
small static-shape blocks latnas profiles it is ~20x faster than the dynamo
exporter and gives the same graphs; the dynamo exporter (needs onnxscript) is
the fallback when the legacy one fails. Identity-like modules (FBNet ``skip``
with equal shapes) export to a graph whose output is the input; ONNX Runtime
runs that fine (a copy), so the latency recorded is the runtime's call overhead.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


class ExportError(RuntimeError):
    """The module could not be exported to ONNX (one-line reason)."""


def _export(module, example, path: Path, opset: int, dynamo: bool) -> None:
    import torch

    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset, dynamo=dynamo)
    if dynamo:
        kwargs["verbose"] = False
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), **kwargs)


def export_onnx(module, example, path: str | Path, *, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Path:
    """Write ``module`` (eval mode, static input shape of ``example``) to ``path``.

    ``exporter`` is ``"legacy"``, ``"dynamo"`` or ``"auto"`` (legacy, then dynamo).
    Raises :class:`ExportError` with a one-line reason if every exporter fails.
    """
    import torch

    if exporter not in ("auto", "legacy", "dynamo"):
        raise ValueError(f"unknown ONNX exporter {exporter!r} (auto, legacy, dynamo)")
    path = Path(path)
    module = module.eval()
    order = {"auto": (False, True), "legacy": (False,), "dynamo": (True,)}[exporter]
    errors = []
    with torch.inference_mode(False), torch.no_grad():
        for dynamo in order:
            try:
                _export(module, example, path, opset, dynamo)
                return path
            except Exception as exc:  # exporter internals raise many types
                name = "dynamo" if dynamo else "legacy"
                errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                logger.debug("ONNX %s export failed", name, exc_info=True)
    raise ExportError("ONNX export failed (" + "; ".join(errors) + ")")


@contextlib.contextmanager
def onnx_file(module, example, *, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Iterator[Path]:
    """Export into a temporary folder that is removed on exit; yields the file path."""
    with tempfile.TemporaryDirectory(prefix="latnas-onnx-") as tmp:
        yield export_onnx(module, example, Path(tmp) / "model.onnx", opset=opset, exporter=exporter)
