"""CUDA pieces shared by the GPU backends (torch-cuda, TensorRT): availability,
versions, event timing, graph capture, L2 flush, clock warm-up and NVML clocks.

:class:`CudaDevice` implements :class:`profilers.runtimes.gpu_timing.GpuDevice`
with the documented ``torch.cuda`` API (``Event(enable_timing=True)``,
``CUDAGraph`` + ``torch.cuda.graph``, side-stream warm-up before capture).
The SM clock comes from NVML (``nvidia-ml-py``, imported lazily: without it the
clock is recorded as unknown). torch is imported inside functions only.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from profilers.config import LatencyStats, ProtocolConfig

logger = logging.getLogger(__name__)

NO_GPU_REASON = "no CUDA GPU visible to torch"
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
LAYOUTS = ("contiguous", "channels_last")
DEFAULT_L2_BYTES = 128 << 20  # used when torch does not report the L2 size


def cuda_availability(device: int = 0) -> tuple[bool, str]:
    """``(True, "")`` when torch sees CUDA device ``device``, else the reason in one line."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False, "torch is not installed"
    try:
        if not torch.cuda.is_available():
            return False, NO_GPU_REASON
        count = torch.cuda.device_count()
    except Exception as exc:  # driver problems surface here
        return False, f"{NO_GPU_REASON} ({' '.join(str(exc).split())})"
    if device >= count:
        return False, f"CUDA device {device} requested but torch sees {count} GPU(s)"
    return True, ""


def cuda_versions(device: int = 0) -> dict[str, str]:
    """torch/CUDA/cuDNN versions and the GPU's name and compute capability."""
    import torch

    out = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
    try:
        out["cudnn"] = str(torch.backends.cudnn.version())
    except Exception:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        out["gpu"] = props.name
        out["compute_capability"] = f"{props.major}.{props.minor}"
    return out


def torch_dtype(precision: str):
    """``fp32``/``fp16``/``bf16`` -> the torch dtype."""
    import torch

    try:
        return getattr(torch, DTYPES[precision])
    except KeyError:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(DTYPES)})") from None


def to_device(module, example, device: int, precision: str = "fp32", layout: str = "contiguous"):
    """``(module, example)`` on ``cuda:<device>`` in ``precision`` and memory ``layout`` (eval mode)."""
    import torch

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    dev = torch.device("cuda", device)
    dtype = torch_dtype(precision)
    module = module.eval().to(dev, dtype=dtype)
    example = example.to(dev, dtype=dtype)
    if layout == "channels_last" and example.dim() == 4:
        module = module.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    return module, example


# ------------------------------------------------------------- the protocol
def timed_self_repeats(fn: Callable[[], float], config: ProtocolConfig) -> tuple[list[float], bool]:
    """The protocol's stopping rule over samples that ``fn`` returns (ms) itself (host-time cap)."""
    from profilers.protocol import repeat_until_stable

    start = time.perf_counter()
    return repeat_until_stable(fn, config, lambda: time.perf_counter() - start >= config.max_seconds)


def measure_self_timed(fn: Callable[[], float], config: ProtocolConfig = ProtocolConfig()) -> LatencyStats:
    """Time a callable that returns its own elapsed ms (CUDA events), with the shared protocol."""
    from profilers.protocol import check_config, gc_paused, summarize, warm_up

    check_config(config)
    warmups = warm_up(fn, config)
    with gc_paused():
        samples, stable = timed_self_repeats(fn, config)
    return summarize(samples, warmup_runs=warmups, stable=stable, noise_iqr_ratio=config.noise_iqr_ratio)


class CudaEventTimer:
    """Records CUDA events around ``work()`` on ``stream``; calling returns device ms."""

    def __init__(self, work: Callable[[], Any], stream):
        import torch

        self.work = work
        self.stream = stream
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self) -> float:
        import torch

        with torch.cuda.stream(self.stream):
            self.start.record(self.stream)
            self.work()
            self.end.record(self.stream)
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


# ------------------------------------------------------------------ device
class CudaDevice:
    """:class:`~profilers.runtimes.gpu_timing.GpuDevice` on ``cuda:<index>`` with torch and NVML."""

    def __init__(self, index: int = 0):
        import torch

        self.index = int(index)
        self.dev = torch.device("cuda", self.index)
        self.stream = torch.cuda.Stream(self.dev)
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._flush_buf = None
        self._nvml = None
        self._graphs: list[Any] = []  # keep captured graphs (and their memory pools) alive

    def time_ms(self, fn: Callable[[], Any]) -> float:
        import torch

        with torch.cuda.stream(self.stream):
            self._start.record(self.stream)
            fn()
            self._end.record(self.stream)
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))

    def capture(self, work: Callable[[], Any], replays: int) -> Callable[[], Any]:
        """Warm ``work`` on a side stream (as ``torch.cuda.graph`` requires), then capture it ``replays`` times."""
        import torch

        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):
            for _ in range(3):
                work()
        torch.cuda.current_stream(self.dev).wait_stream(side)
        torch.cuda.synchronize(self.dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(int(replays)):
                work()
        torch.cuda.synchronize(self.dev)
        self._graphs.append(graph)
        return graph.replay

    def l2_bytes(self) -> int:
        import torch

        size = getattr(torch.cuda.get_device_properties(self.index), "L2_cache_size", 0) or 0
        return int(size) if size > 0 else DEFAULT_L2_BYTES

    def flush_l2(self) -> None:
        import torch

        if self._flush_buf is None:
            self._flush_buf = torch.empty(2 * self.l2_bytes(), dtype=torch.uint8, device=self.dev)
        with torch.cuda.stream(self.stream):
            self._flush_buf.fill_(1)  # a write larger than L2 evicts the block's weights and activations

    def warm_clocks(self, seconds: float) -> None:
        import torch

        a = torch.randn(4096, 4096, device=self.dev, dtype=torch.float16)
        end = time.perf_counter() + seconds
        with torch.cuda.stream(self.stream):
            while time.perf_counter() < end:
                for _ in range(8):
                    torch.mm(a, a)
                self.stream.synchronize()

    def sm_clock_mhz(self) -> float | None:
        """The SM clock via NVML; None when ``nvidia-ml-py`` is missing or NVML fails."""
        handle = self._nvml_handle()
        if handle is None:
            return None
        import pynvml

        try:
            return float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
        except Exception:
            return None

    def _nvml_handle(self):
        if self._nvml is not None:
            return self._nvml or None
        self._nvml = False
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            uuid = getattr(torch.cuda.get_device_properties(self.index), "uuid", None)
            try:  # CUDA and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES): match by UUID
                self._nvml = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}") if uuid else None
            except Exception:
                self._nvml = None
            if not self._nvml:
                self._nvml = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception as exc:  # ImportError or an NVML error: clocks are unknown
            logger.debug("NVML unavailable: %s", exc)
            self._nvml = False
        return self._nvml or None
