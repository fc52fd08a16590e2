"""TensorRT engines built from an ONNX file (TensorRT 10/11 Python API), with parity and per-layer times.

Precision follows TensorRT 11: networks are strongly typed, so the precision
lives in the ONNX graph. FP32: export the model as is. FP16: cast the model and
the input to half *before* the ONNX export and build the same way; there is no
FP16 builder flag (removed in TensorRT 11). TF32 is switched off for FP32 where
the flag still exists, so FP32 parity is true FP32.

``tensorrt`` is imported lazily; without it, or without a CUDA GPU,
:func:`tensorrt_available` says why and :func:`export_tensorrt` raises
:class:`~latnas.errors.BackendUnavailable` with that one-line reason.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latnas.errors import BackendUnavailable
from latnas.export.common import ExportError, ExportResult, Parity, reference_output, require_eval

log = logging.getLogger(__name__)

TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
WORKSPACE_BYTES = 1 << 30


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason): TensorRT importable and a CUDA GPU present."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:
        return False, f"TensorRT is not installed ({type(exc).__name__}); install the 'tensorrt' extra on a CUDA machine"
    if not torch.cuda.is_available():
        return False, "TensorRT needs a CUDA GPU and torch sees none"
    return True, ""


def _require_tensorrt():
    ok, reason = tensorrt_available()
    if not ok:
        raise BackendUnavailable(reason)
    import tensorrt as trt

    return trt


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    timing_cache: str | Path | None = None,
    workspace_bytes: int = WORKSPACE_BYTES,
) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network, build and save a serialized engine.

    ``timing_cache`` (a file) is read if present and written back after the
    build, so rebuilding similar engines is fast.
    """
    trt = _require_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # required on 10.x, ignored on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors[:200]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names for the profiler
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log)")
    data = bytes(serialized)
    Path(engine_path).write_bytes(data)
    if timing_cache is not None:
        Path(timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    return data


def _make_profiler(trt):
    class LayerTimes(trt.IProfiler):
        """Collects per-layer milliseconds reported by TensorRT."""

        def __init__(self):
            trt.IProfiler.__init__(self)
            self.times_ms: dict[str, list[float]] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times_ms.setdefault(layer_name, []).append(float(ms))

    return LayerTimes()


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    return table[dtype]


def run_engine(
    engine_bytes: bytes, example: torch.Tensor, profile_runs: int = 0
) -> tuple[torch.Tensor, dict[str, float], int]:
    """Run a serialized engine on ``example``.

    Returns the output (on the CPU), mean per-layer times in ms over
    ``profile_runs`` profiled runs (empty when 0) and the engine's layer count.
    """
    trt = _require_tensorrt()
    runtime = trt.Runtime(_logger(trt))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise ExportError("TensorRT could not deserialize the engine")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"expected an engine with one input and one output, got {len(inputs)} and {len(outputs)}")
    x = example.to("cuda", _torch_dtype(trt, engine.get_tensor_dtype(inputs[0]))).contiguous()
    if any(d < 0 for d in engine.get_tensor_shape(inputs[0])):  # dynamic input: fix its shape
        context.set_input_shape(inputs[0], tuple(x.shape))
    y = torch.empty(tuple(context.get_tensor_shape(outputs[0])), device="cuda",
                    dtype=_torch_dtype(trt, engine.get_tensor_dtype(outputs[0])))
    context.set_tensor_address(inputs[0], x.data_ptr())
    context.set_tensor_address(outputs[0], y.data_ptr())
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # x and y were made on the current stream
    if not context.execute_async_v3(stream.cuda_stream):
        raise ExportError("TensorRT execution failed")
    stream.synchronize()
    out = y.float().cpu()
    layer_ms: dict[str, float] = {}
    if profile_runs > 0:
        profiler = _make_profiler(trt)
        context.profiler = profiler
        for _ in range(profile_runs):
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
        layer_ms = {k: sum(v) / len(v) for k, v in profiler.times_ms.items()}
    return out, layer_ms, int(engine.num_layers)


def export_tensorrt(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    precision: str = "fp32",
    timing_cache: str | Path | None = None,
    onnx_path: str | Path | None = None,
    check_parity: bool = True,
    profile_runs: int = 10,
) -> ExportResult:
    """ONNX-export ``model`` (cast to half for ``fp16``), build a TensorRT engine, check parity, profile layers."""
    from latnas.export.onnx import _torch_export, DEFAULT_OPSET

    if precision not in TOLERANCE:
        raise ExportError(f"unknown TensorRT precision {precision!r} (use fp32 or fp16)")
    require_eval(model)
    _require_tensorrt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ref = reference_output(model, example)
    onnx_path = Path(onnx_path) if onnx_path else path.with_suffix(f".{precision}.onnx")
    if precision == "fp16":  # strongly typed: the graph itself carries FP16
        import copy

        half = copy.deepcopy(model).to("cuda").half().eval()
        _torch_export(half, example.to("cuda").half(), onnx_path, DEFAULT_OPSET)
    else:
        _torch_export(model, example, onnx_path, DEFAULT_OPSET)
    engine = build_engine(onnx_path, path, timing_cache=timing_cache)
    out, layer_ms, n_layers = run_engine(engine, example, profile_runs=profile_runs)
    parity = Parity.compare(out, ref, TOLERANCE[precision]) if check_parity else None
    details: dict[str, Any] = {
        "precision": precision,
        "onnx": str(onnx_path),
        "timing_cache": str(timing_cache) if timing_cache else None,
        "layer_ms": layer_ms,
        "device": torch.cuda.get_device_name(),
    }
    return ExportResult("tensorrt", path, parity, os.path.getsize(path), nodes=n_layers, details=details)
