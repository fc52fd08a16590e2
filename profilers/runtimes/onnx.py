"""The one ONNX exporter (profilers and ``latnas.export`` both call :func:`export_onnx`).

``dynamo`` is an explicit choice: the TorchScript exporter (``dynamo=False``)
is ~20x faster on the small static-shape blocks latnas profiles and gives the
same graphs, so the profiler backends use it (with the dynamo exporter as a
fallback, ``fallback=True``); ``latnas export`` ships the dynamo export.
Either way the graph has one input ``input`` and one output ``output`` and all
weights inside the file (no external data).
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

from profilers.runtimes import ExportError

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _export(module, example, path: Path, opset: int, dynamo: bool) -> None:
    import torch

    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset, dynamo=dynamo)
    if dynamo:
        kwargs.update(verbose=False, external_data=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), **kwargs)


def export_onnx(
    module, example, path: str | Path, *, dynamo: bool, opset: int = DEFAULT_OPSET, fallback: bool = False
) -> Path:
    """Write eval-mode ``module`` at ``example``'s static shape to ``path``; returns the path.

    ``dynamo`` picks the exporter; ``fallback=True`` tries the other one when
    it fails. Raises :class:`~profilers.runtimes.ExportError` (one line naming
    each exporter's failure) when nothing worked.
    """
    import torch

    path = Path(path)
    module = module.eval()
    order = (dynamo, not dynamo) if fallback else (dynamo,)
    errors = []
    with torch.inference_mode(False), torch.no_grad():
        for use_dynamo in order:
            try:
                _export(module, example, path, opset, use_dynamo)
                return path
            except Exception as exc:  # exporter internals raise many types
                name = "dynamo" if use_dynamo else "legacy"
                errors.append(f"{name}: {_first_line(exc)}")
                logger.debug("ONNX %s export failed", name, exc_info=True)
    raise ExportError("ONNX export failed (" + "; ".join(errors) + ")")


@contextlib.contextmanager
def onnx_file(module, example, *, dynamo: bool = False, opset: int = DEFAULT_OPSET, fallback: bool = True) -> Iterator[Path]:
    """Export into a temporary folder that is removed on exit; yields the file path."""
    with tempfile.TemporaryDirectory(prefix="latnas-onnx-") as tmp:
        yield export_onnx(module, example, Path(tmp) / "model.onnx", dynamo=dynamo, opset=opset, fallback=fallback)


def exporter_choice(exporter: str) -> tuple[bool, bool]:
    """The profilers' ``exporter`` option (auto|legacy|dynamo) as ``(dynamo, fallback)``."""
    try:
        return {"auto": (False, True), "legacy": (False, False), "dynamo": (True, False)}[exporter]
    except KeyError:
        raise ValueError(f"unknown ONNX exporter {exporter!r} (auto, legacy, dynamo)") from None


def onnx_node_count(path: str | Path) -> int:
    """Top-level graph nodes of an ONNX file."""
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)
