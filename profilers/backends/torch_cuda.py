"""``torch-cuda``: PyTorch on a CUDA GPU, timed on the device with CUDA events.

Timing modes (option ``mode``, see :mod:`profilers.runtimes.gpu_timing`):

- ``graph`` (default): ``R`` forward passes captured in one CUDA graph, each
  sample is the event-timed replay / ``R``, ``R`` chosen so a sample spans
  >= ``min_sample_ms`` of device time. Falls back to eager per block when
  capture fails (recorded as ``fallback`` in the measurement's metadata).
- ``eager``: events around one eager forward pass; on small blocks this
  times the host's kernel launches (recorded ``host_bound: true``).
- ``cold``: the L2 cache is flushed before every sample; one pass per sample.

Before each measurement the clocks are warmed by a matmul loop (2 s the
first time, a short top-up after) and the SM clock is read via NVML before
and after; ``clock_moved`` flags a change of more than 5%. The prepared
callable returns device ms per forward pass; after :meth:`TorchCUDABackend.measure`,
:meth:`~TorchCUDABackend.measurement_meta` says how (stored with the measurement).

Other options: ``device``, ``precision`` (fp32|fp16|bf16), ``channels_last``,
``cudnn_benchmark``. Batch size is the block's own (``BlockSpec.batch``).
"""
from __future__ import annotations

from typing import Any, Callable

from latnas.schema.errors import BackendUnavailable
from profilers.base import Backend, LatencyStats, ProtocolConfig, option_flag, register_backend
from profilers.runtimes.cuda import (  # noqa: F401  (re-exported: older imports use this module)
    NO_GPU_REASON,
    CudaEventTimer,
    cuda_availability,
    cuda_versions,
    measure_self_timed,
    timed_self_repeats,
)
from profilers.runtimes.gpu_timing import TIMING_MODES, ClockGuard, GpuTimingConfig, Sampler, make_sampler

PRECISIONS = ("fp32", "fp16", "bf16")


@register_backend("torch-cuda")
class TorchCUDABackend(Backend):
    """PyTorch on ``cuda:<device>`` (eval, inference mode), timed with CUDA events (graph replay by default)."""

    description = "PyTorch on a CUDA GPU, CUDA-graph replay timed with CUDA events (mode=graph|eager|cold)"
    requires = "torch built with CUDA and an NVIDIA GPU (nvidia-ml-py for clock readings)"
    self_timed = True  # the prepared callable returns device milliseconds

    def __init__(
        self,
        device: int = 0,
        precision: str = "fp32",
        cudnn_benchmark: bool = True,
        mode: str = "graph",
        channels_last: bool = False,
        min_sample_ms: float = 1.0,
        warm_seconds: float = 2.0,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        if int(device) < 0:
            raise ValueError(f"CUDA device index must be >= 0, got {device}")
        self.device = int(device)
        self.precision = precision
        self.layout = "channels_last" if option_flag(channels_last) else "contiguous"
        self.cudnn_benchmark = option_flag(cudnn_benchmark)
        self.timing = GpuTimingConfig(mode=mode, min_sample_ms=float(min_sample_ms), warm_seconds=float(warm_seconds))
        self._gpu = None  # CudaDevice, made on first prepare
        self._guard: ClockGuard | None = None
        self._last_meta: dict[str, Any] = {}

    @property
    def mode(self) -> str:
        return self.timing.mode

    def availability(self) -> tuple[bool, str]:
        return cuda_availability(self.device)

    def versions(self) -> dict[str, str]:
        # precision, layout and mode change what a number means: they belong in the fingerprint
        return {**cuda_versions(self.device), "precision": self.precision, "layout": self.layout, "mode": self.mode}

    def _require(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(f"backend 'torch-cuda' is not available here: {reason}")

    def gpu(self):
        """The :class:`~profilers.runtimes.cuda.CudaDevice` this backend times on."""
        if self._gpu is None:
            from profilers.runtimes.cuda import CudaDevice

            self._gpu = CudaDevice(self.device)
            self._guard = ClockGuard(self._gpu, self.timing)
        return self._gpu

    def prepare(self, module, example, config: ProtocolConfig) -> Sampler:
        """Move to the GPU; return a sampler returning device ms per forward pass (``.meta``: how)."""
        import torch

        from profilers.runtimes.cuda import to_device

        self._require()
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        module, example = to_device(module, example, self.device, self.precision, self.layout)
        gpu = self.gpu()
        torch.cuda.synchronize(gpu.dev)  # weights and input copies are done before the first timed run

        def forward() -> None:
            with torch.inference_mode():
                module(example)

        sampler = make_sampler(forward, gpu, self.timing)
        sampler.meta.update(precision=self.precision, layout=self.layout, batch=int(example.shape[0]))
        return sampler

    def measure(self, fn: Callable[[], float], config: ProtocolConfig) -> LatencyStats:
        """Warmed clocks, device-timed samples under the shared stopping rule; see :meth:`measurement_meta`."""
        if self._guard is None or not isinstance(fn, Sampler):
            self._last_meta = {"mode_used": "eager", "host_bound": True}
            return measure_self_timed(fn, config)
        stats, self._last_meta = self._guard.measure(fn, config, measure_self_timed)
        return stats

    def measurement_meta(self) -> dict[str, Any]:
        """Timing mode used, replays, fallback reason, SM clock before/after, ``clock_moved``."""
        return dict(self._last_meta)



__all__ = ["PRECISIONS", "TIMING_MODES", "TorchCUDABackend", "measure_self_timed", "CudaEventTimer"]
