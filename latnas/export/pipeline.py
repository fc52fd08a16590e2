"""One call that fuses a model, exports it to several formats, checks parity and writes sidecars."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from latnas.schema.errors import BackendUnavailable, UnknownNameError
from latnas.export.common import ExportResult, Parity, reference_output, require_eval
from latnas.export.sidecar import library_versions, write_sidecar

log = logging.getLogger(__name__)

FORMATS = ("onnx", "executorch", "tensorrt")
EXTENSIONS = {"onnx": ".onnx", "executorch": ".pte", "tensorrt": ".engine"}
FUSION_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """Everything ``export_model`` did: artifacts, skipped formats and the fusion check."""

    results: list[ExportResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # format -> one-line reason
    fused: bool = False
    fusion_parity: Parity | None = None
    nodes_unfused: int | None = None  # ONNX node count before fusion

    @property
    def ok(self) -> bool:
        checks = [r.parity for r in self.results if r.parity is not None]
        if self.fusion_parity is not None:
            checks.append(self.fusion_parity)
        return all(p.ok for p in checks)


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    names = [n for n in names if n]
    if not names:
        raise UnknownNameError(f"no export format given (known: {', '.join(FORMATS)})")
    for n in names:
        if n not in FORMATS:
            raise UnknownNameError(f"unknown export format {n!r} (known: {', '.join(FORMATS)})")
    return tuple(dict.fromkeys(names))


def export_model(
    model: nn.Module,
    example: torch.Tensor,
    out_dir: str | Path,
    formats: str | Iterable[str] = ("onnx",),
    fuse: bool = True,
    stem: str = "model",
    meta: dict[str, Any] | None = None,
    precision: str = "fp32",
    threads: int = 1,
) -> ExportReport:
    """Fuse ``model`` (unless ``fuse=False``), export it to each format and write ``<artifact>.json`` sidecars.

    ``model`` must be in eval mode. TensorRT, when requested but unavailable,
    is skipped with its reason in ``report.skipped``; when it is the only
    format, :class:`~latnas.schema.errors.BackendUnavailable` is raised instead.
    """
    from latnas.reparam import reparameterize_model

    names = parse_formats(formats)
    require_eval(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(fused=fuse)
    if "tensorrt" in names:
        from latnas.export.tensorrt import tensorrt_available

        ok, reason = tensorrt_available()
        if not ok:
            if names == ("tensorrt",):
                raise BackendUnavailable(reason)
            log.info("skipping tensorrt: %s", reason)
            report.skipped["tensorrt"] = reason
            names = tuple(n for n in names if n != "tensorrt")
    deploy = model
    if fuse:
        deploy = reparameterize_model(model)
        report.fusion_parity = Parity.compare(reference_output(deploy, example), reference_output(model, example),
                                              FUSION_TOLERANCE)
        if "onnx" in names:
            from latnas.export.onnx import model_node_count

            report.nodes_unfused = model_node_count(model, example)
    base = {
        **(meta or {}),
        "input_shape": list(example.shape),
        "fused": fuse,
        "fusion_parity": _parity_dict(report.fusion_parity),
    }
    versions = library_versions()
    for name in names:
        path = out_dir / f"{stem}{EXTENSIONS[name]}"
        if name == "onnx":
            from latnas.export.onnx import export_onnx

            result = export_onnx(deploy, example, path)
            result.details["nodes_unfused"] = report.nodes_unfused if fuse else result.nodes
        elif name == "executorch":
            from latnas.export.executorch import export_executorch

            result = export_executorch(deploy, example, path, threads=threads)
        else:
            from latnas.export.tensorrt import export_tensorrt

            result = export_tensorrt(deploy, example, path, precision=precision)
        record = {
            **base,
            "format": name,
            "profile_config": profile_config(name, result, threads),
            "parity": _parity_dict(result.parity),
            "nodes": result.nodes,
            "details": result.details,
            "versions": versions,
        }
        result.sidecar = write_sidecar(path, record)
        report.results.append(result)
    return report


def profile_config(fmt: str, result: ExportResult, threads: int = 1) -> dict[str, Any]:
    """The profiler backend and options that time this artifact (the runtimes layer builds both)."""
    if fmt == "tensorrt":
        return result.details["profile_config"]
    if fmt == "executorch":
        from profilers.runtimes.executorch import toolchain_versions

        return {"backend": "executorch", "options": {}, "threads": threads, "toolchain": toolchain_versions()}
    from latnas.export.onnx import SHIP_DYNAMO

    return {"backend": "onnxruntime", "options": {"exporter": "dynamo" if SHIP_DYNAMO else "legacy"}, "threads": threads}


def _parity_dict(p: Parity | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"max_abs_diff": p.max_abs_diff, "rel_diff": p.rel_diff, "tolerance": p.tolerance, "ok": p.ok}
