"""The one TensorRT engine builder and runner (profiler backend *and* ``latnas export``).

One flag set, so the engine that is profiled is the engine that ships:

1. the module (cast to half first for ``precision="fp16"``) is exported to
   ONNX on the GPU with :func:`profilers.runtimes.onnx.export_onnx`;
2. ``trt.Builder`` + ``create_network(flags)``: the network is *strongly
   typed* (the ONNX tensor types decide the precision, which is how TensorRT 11
   works since it removed the FP16 builder flag; on 10.x the
   ``STRONGLY_TYPED`` flag is set so both behave alike) + ``OnnxParser``;
3. ``BuilderConfig``: workspace memory-pool limit, TF32 off (FP32 means FP32),
   detailed profiling verbosity (layer names for :func:`layer_times`) and a
   timing cache loaded from / saved to the runtime's *own* file (one per
   TensorRT version and GPU model under the latnas cache folder; never a
   caller-supplied path: a remote client must not choose where the profiler
   writes), so rebuilding similar blocks skips kernel timing;
4. ``build_serialized_network`` -> ``Runtime.deserialize_cuda_engine`` ->
   ``create_execution_context``; I/O buffers are torch CUDA tensors bound with
   ``set_tensor_address``; one inference is ``execute_async_v3`` on a torch
   CUDA stream between two CUDA events (:class:`EngineRunner`).

``import tensorrt`` happens only when an engine is built or run.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latnas.schema.errors import BackendUnavailable
from profilers.runtimes import ExportError
from profilers.runtimes.cache import atomic_write, default_cache_dir, slug
from profilers.runtimes.cuda import CudaEventTimer, cuda_availability

logger = logging.getLogger(__name__)

TRT_MISSING_REASON = "tensorrt is not installed (pip install latnas[tensorrt])"
PRECISIONS = ("fp32", "fp16")

class EngineBuildError(ExportError):
    """TensorRT could not parse, build or load an engine (one-line reason)."""


# ------------------------------------------------------------------ import
def _import_trt():
    """The ``tensorrt`` module, or :class:`BackendUnavailable` with the reason."""
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailable(TRT_MISSING_REASON)
    try:
        import tensorrt as trt
    except Exception as exc:  # a broken install (missing libnvinfer, CUDA mismatch)
        raise BackendUnavailable(f"tensorrt failed to import: {' '.join(str(exc).split())}") from None
    return trt


def tensorrt_availability(device: int = 0) -> tuple[bool, str]:
    """``(True, "")`` or the one-line reason (TensorRT missing, no CUDA GPU)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, TRT_MISSING_REASON
    ok, reason = cuda_availability(device)
    if not ok:
        return False, reason
    try:
        _import_trt()
    except BackendUnavailable as exc:
        return False, str(exc)
    return True, ""


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


@functools.lru_cache(maxsize=1)
def _logger():
    trt = _import_trt()
    return trt.Logger(trt.Logger.WARNING)


def _network_flags(trt) -> int:
    """Strongly typed on TensorRT 10 (where it is a choice); 11+ is always strongly typed."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is not None and trt_major(trt) < 11:
        return 1 << int(flag)
    return 0


# ---------------------------------------------------------------- options
def default_timing_cache_path(trt_version: str, gpu: str) -> Path:
    """One timing cache per TensorRT version and GPU model (caches are not portable)."""
    return default_cache_dir() / "tensorrt" / f"timing-{slug(f'{trt_version}-{gpu}')}.cache"


@dataclass(frozen=True)
class EngineOptions:
    """How to build an engine (the profile config an exported engine's sidecar names).

    ``timing_cache`` is on/off only: the file is always
    :func:`default_timing_cache_path` (the runtime's own), never a path from the caller.
    """

    precision: str = "fp32"  # fp32 | fp16 (fp16: the module is cast to half before export)
    workspace_mb: int = 1024  # builder workspace memory-pool limit
    timing_cache: bool = True  # persist kernel timings in the runtime's own cache file
    optimization_level: int | None = None  # builder_optimization_level 0..5 (TensorRT's default 3)
    opset: int | None = None  # ONNX opset (default: profilers.onnx_export.DEFAULT_OPSET)
    exporter: str = "auto"  # auto (legacy, dynamo fallback) | legacy | dynamo: see profilers.runtimes.onnx
    device: int = 0  # CUDA device index

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self):
        flag = self.timing_cache
        if isinstance(flag, str) and flag.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            object.__setattr__(self, "timing_cache", flag.lower() in ("true", "1", "yes", "on"))
        elif not isinstance(flag, bool):
            raise ValueError("timing_cache is on or off (true/false); its file is the runtime's own, not a caller's path")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r} (known: {', '.join(PRECISIONS)})")
        if int(self.workspace_mb) < 1:
            raise ValueError(f"workspace_mb must be >= 1, got {self.workspace_mb}")
        if self.optimization_level is not None and not 0 <= int(self.optimization_level) <= 5:
            raise ValueError(f"optimization_level must be in 0..5, got {self.optimization_level}")
        if int(self.device) < 0:
            raise ValueError(f"CUDA device index must be >= 0, got {self.device}")


# ------------------------------------------------------------------- build
def _load_timing_cache(config, path: Path | None):
    """Create the config's timing cache from ``path`` (or empty); a bad file starts afresh."""
    blob = b""
    if path is not None and path.is_file():
        blob = path.read_bytes()
    cache = config.create_timing_cache(blob)
    if cache is None and blob:
        logger.warning("TensorRT rejected timing cache %s; starting an empty one", path)
        cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        logger.warning("TensorRT timing cache could not be attached; building without one")
    return cache


def _save_timing_cache(config, path: Path) -> None:
    """Write the (merged) timing cache atomically so concurrent builds never see half a file."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    atomic_write(path, bytes(memoryview(cache.serialize())))


def build_serialized_engine(onnx_path: str | Path, options: EngineOptions = EngineOptions()) -> bytes:
    """Parse an ONNX file and build a serialized TensorRT engine (see the module docstring)."""
    trt = _import_trt()
    log = _logger()
    builder = trt.Builder(log)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT could not parse the ONNX model: {errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    builder_flags = getattr(trt, "BuilderFlag", None)
    if builder_flags is not None and hasattr(builder_flags, "TF32"):  # FP32 means FP32 (gone in 11.x)
        config.clear_flag(builder_flags.TF32)
    if options.optimization_level is not None:
        config.builder_optimization_level = int(options.optimization_level)
    cache_path = _timing_cache_path(trt, options)
    _load_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT failed to build an engine for this block (see the TensorRT log above)")
    if cache_path is not None:
        try:
            _save_timing_cache(config, cache_path)
        except OSError as exc:
            logger.warning("could not save TensorRT timing cache %s: %s", cache_path, exc)
    return bytes(memoryview(serialized))


def gpu_name(device: int = 0) -> str:
    import torch

    return torch.cuda.get_device_name(device)


def _timing_cache_path(trt, options: EngineOptions) -> Path | None:
    if not options.timing_cache:
        return None
    return default_timing_cache_path(str(trt.__version__), gpu_name(options.device))


def build_engine(module, example, options: EngineOptions = EngineOptions()) -> bytes:
    """Export ``module`` (at ``example``'s static shape and ``options.precision``) and build an engine.

    ``module`` is moved to the GPU (and cast for fp16) in place; pass a copy to keep the original.
    """
    import torch

    from profilers.runtimes.onnx import DEFAULT_OPSET, exporter_choice, onnx_file

    dev = torch.device("cuda", options.device)
    dtype = torch.float16 if options.precision == "fp16" else torch.float32
    module = module.eval().to(dev, dtype=dtype)
    example = example.to(dev, dtype=dtype)
    dynamo, fallback = exporter_choice(options.exporter)
    with onnx_file(module, example, dynamo=dynamo, opset=options.opset or DEFAULT_OPSET, fallback=fallback) as path:
        return build_serialized_engine(path, options)


# --------------------------------------------------------------------- run
def _torch_dtype(trt, trt_dtype):
    import torch

    table = {}
    for trt_name, torch_name in (
        ("float32", "float32"),
        ("float16", "float16"),
        ("bfloat16", "bfloat16"),
        ("int32", "int32"),
        ("int64", "int64"),
        ("int8", "int8"),
        ("uint8", "uint8"),
        ("bool", "bool"),
    ):
        if hasattr(trt, trt_name):
            table[getattr(trt, trt_name)] = getattr(torch, torch_name)
    try:
        return table[trt_dtype]
    except KeyError:
        raise EngineBuildError(f"unsupported TensorRT tensor type {trt_dtype}") from None


class EngineRunner:
    """A deserialized engine, its execution context and torch-allocated I/O buffers.

    Calling it runs one inference (``execute_async_v3`` on its own CUDA stream)
    and returns the device time in ms measured with CUDA events.
    """

    def __init__(self, engine_bytes: bytes, example, device: int = 0):
        import torch

        trt = _import_trt()
        self.runtime = trt.Runtime(_logger())
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise EngineBuildError("TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineBuildError("TensorRT could not create an execution context")
        dev = torch.device("cuda", device)
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.io_names = names
        input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(input_names) != 1:
            raise EngineBuildError(f"expected an engine with one input, got {len(input_names)}")
        for name in input_names:  # inputs first: output shapes may depend on them
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            if any(d < 0 for d in self.engine.get_tensor_shape(name)):
                self.context.set_input_shape(name, tuple(example.shape))
            buf = example.detach().to(dev, dtype=dtype).contiguous().clone()
            self.inputs[name] = buf
            self.context.set_tensor_address(name, buf.data_ptr())
        for name in names:
            if name in self.inputs:
                continue
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            buf = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=dev)
            self.outputs[name] = buf
            self.context.set_tensor_address(name, buf.data_ptr())
        self.stream = torch.cuda.Stream(dev)
        torch.cuda.synchronize(dev)  # input copies are done before the first run
        self._timer = CudaEventTimer(self._enqueue, self.stream)

    def buffer(self, name: str):
        """The torch CUDA tensor bound to I/O tensor ``name``."""
        return self.inputs[name] if name in self.inputs else self.outputs[name]

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def __call__(self) -> float:
        return self._timer()

    def run(self) -> dict[str, Any]:
        """Run once; return copies of the outputs (for correctness checks)."""
        self()
        return {name: buf.clone() for name, buf in self.outputs.items()}


# ------------------------------------------------------------- per layer
@functools.lru_cache(maxsize=1)
def _layer_profiler_class():
    trt = _import_trt()

    class LayerTimeProfiler(trt.IProfiler):
        """Accumulates TensorRT's per-layer times (ms) over runs."""

        def __init__(self):
            trt.IProfiler.__init__(self)
            self.total_ms: dict[str, float] = {}
            self.calls: dict[str, int] = {}

        def report_layer_time(self, layer_name, ms):
            self.total_ms[layer_name] = self.total_ms.get(layer_name, 0.0) + float(ms)
            self.calls[layer_name] = self.calls.get(layer_name, 0) + 1

        def mean_ms(self) -> dict[str, float]:
            return {name: total / self.calls[name] for name, total in self.total_ms.items()}

    return LayerTimeProfiler


def engine_layer_times(runner: EngineRunner, runs: int = 20, warmup: int = 5) -> dict[str, float]:
    """Mean time per engine layer (ms, engine order) over ``runs`` profiled runs."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for _ in range(warmup):
        runner()
    profiler = _layer_profiler_class()()
    runner.context.profiler = profiler
    for _ in range(runs):
        runner()
    if not profiler.calls and hasattr(runner.context, "execute_v2"):
        # Older releases report layer times only for synchronous execution.
        bindings = [runner.buffer(name).data_ptr() for name in runner.io_names]
        for _ in range(runs):
            runner.context.execute_v2(bindings)
    return profiler.mean_ms()


def layer_times(module, example, *, runs: int = 20, warmup: int = 5, **options: Any) -> dict[str, float]:
    """Build a TensorRT engine for ``module`` and return its mean per-layer times (ms).

    ``options`` are :class:`EngineOptions` fields (``precision="fp16"``, ...).
    Layer names are TensorRT's (fused layers show as one entry); profiling
    adds a little overhead per layer, so their sum exceeds the engine's
    end-to-end time slightly.
    """
    opts = EngineOptions(**options)
    ok, reason = tensorrt_availability(opts.device)
    if not ok:
        raise BackendUnavailable(f"backend 'tensorrt' is not available here: {reason}")
    runner = EngineRunner(build_engine(module, example, opts), example, opts.device)
    return engine_layer_times(runner, runs, warmup)


