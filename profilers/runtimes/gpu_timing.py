"""GPU timing modes as pure logic: which callable is timed, how many replays, what is recorded.

Eager CUDA events around one forward pass of a small block time the host's
kernel launches, not the GPU (every mbconv block reads ~0.18 ms on an H200).
So the default mode is ``graph``: ``R`` forward passes are captured in one
CUDA graph and each sample is the event-timed replay divided by ``R``, with
``R`` chosen so that one sample spans at least ``min_sample_ms`` of device
time (event resolution is ~0.5 µs). ``eager`` is kept and labelled
host-bound; ``cold`` flushes the L2 cache (writes a buffer larger than L2)
before every sample and times a single-pass graph.

Nothing here imports torch: the device is an object with five methods
(:class:`GpuDevice`), so the mode logic, fallbacks and metadata are tested on
a CPU with a fake device; :mod:`profilers.runtimes.cuda` is the real one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from profilers.config import LatencyStats, ProtocolConfig

TIMING_MODES = ("graph", "eager", "cold")
CLOCK_UNKNOWN = None


class GpuDevice(Protocol):
    """What the timing logic needs from a GPU (CUDA in production, a fake in tests)."""

    def time_ms(self, fn: Callable[[], Any]) -> float:
        """Device milliseconds of ``fn()`` (events recorded around it, then synchronised)."""

    def capture(self, work: Callable[[], Any], replays: int) -> Callable[[], Any]:
        """``replays`` calls of ``work`` captured in one graph; returns its replay. May raise."""

    def flush_l2(self) -> None:
        """Evict the L2 cache (write a buffer larger than it)."""

    def sm_clock_mhz(self) -> float | None:
        """The current SM clock, or None when unknown (no NVML)."""

    def warm_clocks(self, seconds: float) -> None:
        """Keep the GPU busy (a matmul loop) for ``seconds`` so its clocks ramp up."""


@dataclass(frozen=True)
class GpuTimingConfig:
    """How a GPU backend turns forward passes into samples."""

    mode: str = "graph"  # graph | eager | cold
    min_sample_ms: float = 1.0  # graph mode: replays R so one sample spans at least this device time
    max_replays: int = 1000  # cap on R
    probe_runs: int = 3  # eager runs used to estimate one pass before choosing R (minimum taken)
    warm_seconds: float = 2.0  # matmul warm-up before the first measurement of a backend
    rewarm_seconds: float = 0.2  # shorter top-up before every later measurement
    clock_tolerance: float = 0.05  # flag a measurement whose SM clock moved by more than this

    def __post_init__(self):
        if self.mode not in TIMING_MODES:
            raise ValueError(f"unknown timing mode {self.mode!r} (known: {', '.join(TIMING_MODES)})")
        if self.min_sample_ms <= 0 or self.max_replays < 1 or self.probe_runs < 1:
            raise ValueError("min_sample_ms must be > 0, max_replays and probe_runs >= 1")
        if self.warm_seconds < 0 or self.rewarm_seconds < 0 or self.clock_tolerance <= 0:
            raise ValueError("warm-up seconds must be >= 0 and clock_tolerance > 0")


def choose_replays(single_ms: float, min_sample_ms: float, max_replays: int) -> int:
    """Smallest ``R`` with ``R * single_ms >= min_sample_ms``, within ``1..max_replays``."""
    if not single_ms > 0 or not math.isfinite(single_ms):
        return max_replays
    return max(1, min(max_replays, math.ceil(min_sample_ms / single_ms)))


@dataclass
class Sampler:
    """A zero-argument callable returning device ms *per forward pass*, and how it was built."""

    fn: Callable[[], float]
    meta: dict[str, Any]

    def __call__(self) -> float:
        return self.fn()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def make_sampler(work: Callable[[], Any], device: GpuDevice, cfg: GpuTimingConfig) -> Sampler:
    """Build the per-sample callable for ``cfg.mode``; falls back to eager when capture fails.

    ``meta`` records ``mode`` (requested), ``mode_used``, ``replays``,
    ``host_bound`` (eager: the events mostly see launch overhead) and, after a
    fallback, ``fallback`` (the capture error in one line).
    """
    meta: dict[str, Any] = {"mode": cfg.mode, "mode_used": "eager", "replays": 1, "host_bound": True}

    def eager() -> float:
        return device.time_ms(work)

    if cfg.mode == "eager":
        return Sampler(eager, meta)
    replays = 1
    if cfg.mode == "graph":
        single = min(device.time_ms(work) for _ in range(cfg.probe_runs))
        replays = choose_replays(single, cfg.min_sample_ms, cfg.max_replays)
    try:
        graph = device.capture(work, replays)
    except Exception as exc:  # capture is not possible for every module (host syncs, CPU ops)
        meta["fallback"] = _first_line(exc)
        if cfg.mode == "cold":
            meta["mode_used"] = "cold-eager"

            def cold_eager() -> float:
                device.flush_l2()
                return device.time_ms(work)

            return Sampler(cold_eager, meta)
        return Sampler(eager, meta)
    meta.update(mode_used=cfg.mode, replays=replays, host_bound=False)
    if cfg.mode == "cold":

        def cold() -> float:
            device.flush_l2()
            return device.time_ms(graph)

        return Sampler(cold, meta)

    def replayed() -> float:
        return device.time_ms(graph) / replays

    return Sampler(replayed, meta)


def clock_moved(before: float | None, after: float | None, tolerance: float) -> bool | None:
    """True when the SM clock changed by more than ``tolerance`` (relative); None when unknown."""
    if before is None or after is None or before <= 0:
        return None
    return abs(after - before) / before > tolerance


class ClockGuard:
    """Warms the clocks before a measurement and records the SM clock around it."""

    def __init__(self, device: GpuDevice, cfg: GpuTimingConfig):
        self.device = device
        self.cfg = cfg
        self.warmed = False

    def measure(
        self, sampler: Sampler, config: ProtocolConfig, timed: Callable[[Callable[[], float], ProtocolConfig], LatencyStats]
    ) -> tuple[LatencyStats, dict[str, Any]]:
        """Warm up, read the clock, run ``timed(sampler, config)``, read the clock again."""
        seconds = self.cfg.rewarm_seconds if self.warmed else self.cfg.warm_seconds
        if seconds > 0:
            self.device.warm_clocks(seconds)
        self.warmed = True
        before = self.device.sm_clock_mhz()
        stats = timed(sampler, config)
        after = self.device.sm_clock_mhz()
        meta = dict(sampler.meta)
        meta.update(
            sm_clock_mhz_before=before if before is not None else "unknown",
            sm_clock_mhz_after=after if after is not None else "unknown",
            clock_moved=clock_moved(before, after, self.cfg.clock_tolerance),
        )
        return stats, meta
