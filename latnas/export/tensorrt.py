"""TensorRT engines for ``latnas export``, built by the profiler's own builder.

:func:`export_tensorrt` calls :func:`profilers.runtimes.tensorrt.build_engine`
with :class:`~profilers.runtimes.tensorrt.EngineOptions`: the same ONNX
exporter, network flags (strongly typed, TF32 off), workspace and timing
cache as the ``tensorrt`` profiler backend, so the engine that ships is the
engine that was profiled; the sidecar's ``profile_config`` names the backend
options to time it with. FP16 means the graph itself carries FP16 (the module
is cast to half before the ONNX export): there is no FP16 builder flag
(removed in TensorRT 11).

``tensorrt`` is imported lazily; without it, or without a CUDA GPU,
:func:`tensorrt_available` says why and :func:`export_tensorrt` raises
:class:`~latnas.schema.errors.BackendUnavailable` with that one-line reason.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latnas.schema.errors import BackendUnavailable
from latnas.export.common import ExportError, ExportResult, Parity, prepare_export, require_eval

log = logging.getLogger(__name__)

TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason): TensorRT importable and a CUDA GPU present."""
    from profilers.runtimes.tensorrt import tensorrt_availability

    ok, reason = tensorrt_availability()
    return (True, "") if ok else (False, f"TensorRT export unavailable: {reason}")


def profile_config(options) -> dict[str, Any]:
    """What to profile this engine with: the ``tensorrt`` backend and these options."""
    return {"backend": "tensorrt", "options": options.to_dict()}


def export_tensorrt(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    precision: str = "fp32",
    timing_cache: bool = True,
    check_parity: bool = True,
    profile_runs: int = 10,
) -> ExportResult:
    """Build ``model``'s engine with the profiler's builder, save it, check parity, profile layers.

    ``timing_cache`` switches the runtime's own timing-cache file on or off
    (its location is not the caller's to choose).
    """
    from profilers.runtimes.tensorrt import EngineOptions, EngineRunner, build_engine, engine_layer_times, gpu_name

    if precision not in TOLERANCE:
        raise ExportError(f"unknown TensorRT precision {precision!r} (use fp32 or fp16)")
    if not isinstance(timing_cache, bool):
        raise ExportError("timing_cache is on or off; the timing-cache file is the TensorRT runtime's own")
    require_eval(model)
    ok, reason = tensorrt_available()
    if not ok:
        raise BackendUnavailable(reason)
    options = EngineOptions(precision=precision, timing_cache=timing_cache)
    path, ref = prepare_export(model, example, path)
    engine = build_engine(copy.deepcopy(model), example, options)  # build_engine moves and casts its module
    path.write_bytes(engine)
    runner = EngineRunner(engine, example.half() if precision == "fp16" else example.float(), options.device)
    outputs = runner.run()
    if len(outputs) != 1:
        raise ExportError(f"expected an engine with one output, got {len(outputs)}")
    out = next(iter(outputs.values())).float().cpu()
    layer_ms = engine_layer_times(runner, runs=profile_runs) if profile_runs > 0 else {}
    parity = Parity.compare(out, ref, TOLERANCE[precision]) if check_parity else None
    details: dict[str, Any] = {
        "precision": precision,
        "layer_ms": layer_ms,
        "device": gpu_name(options.device),
        "profile_config": profile_config(options),
    }
    return ExportResult("tensorrt", path, parity, os.path.getsize(path), nodes=int(runner.engine.num_layers), details=details)
