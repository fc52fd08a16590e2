"""``tensorrt``: a TensorRT engine built from the block's ONNX export, timed with CUDA events.

Building and running live in :mod:`profilers.runtimes.tensorrt`, the one
builder and runner that ``latnas export`` uses too (same flags, so the engine
profiled is the engine shipped). This module is the backend and re-exports
the runtime's names for older imports.
"""
from __future__ import annotations

from typing import Any, Callable

from latnas.schema.errors import BackendUnavailable
from profilers.base import Backend, LatencyStats, ProtocolConfig, register_backend
from profilers.runtimes.cuda import cuda_versions, measure_self_timed
from profilers.runtimes.tensorrt import (  # noqa: F401  (re-exported)
    PRECISIONS,
    TRT_MISSING_REASON,
    EngineBuildError,
    EngineOptions,
    EngineRunner,
    _import_trt,
    _logger,
    build_engine,
    build_serialized_engine,
    default_timing_cache_path,
    engine_layer_times,
    layer_times,
    tensorrt_availability,
)


# ---------------------------------------------------------------- backend
@register_backend("tensorrt")
class TensorRTBackend(Backend):
    """A TensorRT engine per block, timed on the GPU with CUDA events.

    Options are :class:`EngineOptions` fields: ``precision`` (fp32|fp16),
    ``workspace_mb``, ``timing_cache`` (on/off: the file is the runtime's
    own), ``optimization_level``, ``opset``, ``exporter``, ``device``.
    """

    description = "TensorRT engine from the ONNX export, timed with CUDA events (option precision=fp32|fp16)"
    requires = "tensorrt>=10 (pip install latnas[tensorrt]) and an NVIDIA GPU"
    self_timed = True  # the prepared callable returns device milliseconds

    def __init__(self, **options: Any):
        self.options = EngineOptions(**options)
        self.precision = self.options.precision

    def availability(self) -> tuple[bool, str]:
        return tensorrt_availability(self.options.device)

    def versions(self) -> dict[str, str]:
        trt = _import_trt()
        return {
            "tensorrt": str(trt.__version__),
            **cuda_versions(self.options.device),
            "precision": self.options.precision,
        }

    def build(self, module, example, config: ProtocolConfig) -> tuple[Any, Any]:
        """Build the engine once per item: ``(engine, input)``; each session is a new runner on it."""
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(f"backend 'tensorrt' is not available here: {reason}")
        engine = build_engine(module, example, self.options)
        return engine, (example.half() if self.options.precision == "fp16" else example.float())

    def open_session(self, artifact: tuple[Any, Any], config: ProtocolConfig) -> Callable[[], float]:
        """A fresh execution context (:class:`EngineRunner`) on the item's engine."""
        engine, dtype_example = artifact
        return EngineRunner(engine, dtype_example, self.options.device)

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], float]:
        return self.open_session(self.build(module, example, config), config)

    def measure(self, fn: Callable[[], float], config: ProtocolConfig) -> LatencyStats:
        """The runner's ``measure`` hook: device-timed samples under the shared stopping rule."""
        return measure_self_timed(fn, config)
