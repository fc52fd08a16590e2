"""``torch-cuda``: eager PyTorch on a CUDA GPU, timed on the device with CUDA events.

Host timers see kernel launch and synchronisation overhead; CUDA events
recorded on the stream around the forward pass measure what the GPU spent.
The prepared callable therefore records a start and an end event around one
forward pass, waits for the end event and *returns the elapsed milliseconds*;
the backend's :meth:`TorchCUDABackend.measure` (the runner's ``measure`` hook)
feeds those numbers to the shared stopping rule via :func:`measure_self_timed`.

:func:`measure_self_timed` is also used by the TensorRT backend. It reuses
the public pieces of :mod:`profilers.protocol` (config check, warm-up,
stability test, summary); only the timed loop is local, because
``protocol.timed_repeats`` times ``fn`` with a host clock.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from latnas.errors import BackendUnavailable
from profilers.base import Backend, LatencyStats, ProtocolConfig, register_backend

NO_GPU_REASON = "no CUDA GPU visible to torch"
PRECISIONS = ("fp32", "fp16")


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


# ------------------------------------------------------------- the protocol
def timed_self_repeats(fn: Callable[[], float], config: ProtocolConfig) -> tuple[list[float], bool]:
    """The protocol's stopping rule over samples that ``fn`` returns (ms) itself.

    Same rule as :func:`profilers.protocol.timed_repeats`
    (:func:`profilers.protocol.repeat_until_stable`); the ``config.max_seconds``
    cap is on host wall time.
    """
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


# ---------------------------------------------------------------- backend
@register_backend("torch-cuda")
class TorchCUDABackend(Backend):
    """Eager PyTorch on ``cuda:<device>`` (eval, inference mode), timed with CUDA events.

    Options: ``device`` (CUDA index, default 0), ``precision`` (``fp32`` or
    ``fp16``: module and input cast to half), ``cudnn_benchmark`` (let cuDNN
    pick the fastest conv algorithm during warm-up; default True).
    """

    description = "eager PyTorch on a CUDA GPU, timed with CUDA events"
    requires = "torch built with CUDA and an NVIDIA GPU"
    self_timed = True  # the prepared callable returns device milliseconds

    def __init__(self, device: int = 0, precision: str = "fp32", cudnn_benchmark: bool = True):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        if int(device) < 0:
            raise ValueError(f"CUDA device index must be >= 0, got {device}")
        self.device = int(device)
        self.precision = precision
        self.cudnn_benchmark = bool(cudnn_benchmark)

    def availability(self) -> tuple[bool, str]:
        return cuda_availability(self.device)

    def versions(self) -> dict[str, str]:
        return {**cuda_versions(self.device), "precision": self.precision}

    def _require(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailable(f"backend 'torch-cuda' is not available here: {reason}")

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], float]:
        """Move to the GPU; return a callable running one forward pass and returning its device ms."""
        import torch

        self._require()
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        dev = torch.device("cuda", self.device)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        module = module.eval().to(dev, dtype=dtype)
        example = example.to(dev, dtype=dtype)
        stream = torch.cuda.Stream(dev)
        torch.cuda.synchronize(dev)  # weights and input copies are done before the first timed run

        def forward() -> None:
            with torch.inference_mode():
                module(example)

        return CudaEventTimer(forward, stream)

    def measure(self, fn: Callable[[], float], config: ProtocolConfig) -> LatencyStats:
        """The runner's ``measure`` hook: device-timed samples under the shared stopping rule."""
        return measure_self_timed(fn, config)
