"""The measurement protocol: how one runnable artifact is timed.

``measure(fn, config)`` runs ``fn`` (a zero-argument callable that performs one
inference and blocks until it is done) in three phases:

1. **Warm-up**: untimed runs until *both* ``config.warmup_runs`` runs and
   ``config.warmup_seconds`` have passed (caches, allocators, lazy kernel
   selection, CPU frequency ramp-up). Warm-up also stops once it has taken
   ``config.max_seconds`` (so that a huge model is not warmed for minutes).
2. **Timed repeats**: each run is timed on its own with
   ``time.perf_counter_ns`` while Python's garbage collector is disabled (and
   re-enabled afterwards, even on error, if it was enabled before).
3. **Stopping rule**: at every ``config.window`` repeats the running median is
   recomputed; once at least ``config.min_repeats`` runs are in, a window whose
   median moved less than ``config.rel_tolerance`` (relative) from the previous
   window's median counts as stable. ``config.stable_windows`` consecutive
   stable windows stop the loop (``stable=True``); otherwise it stops at
   ``config.max_repeats`` runs or after ``config.max_seconds`` of timed runs
   (``stable=False``).

The summary (:class:`~profilers.base.LatencyStats`, milliseconds) holds the
median, mean, std (sample), min, p10/p25/p75/p90 (linear interpolation), IQR
and ``noisy = IQR / median > config.noise_iqr_ratio``.

4. **Noisy retries**: a noisy result (usually another process stealing the
   core during those few milliseconds) is re-timed up to
   ``config.noisy_retries`` times (no new warm-up); the attempt with the
   smallest IQR / median is kept, so a transient disturbance does not end up
   in the store.

Torch's intra-op thread count is pinned to ``config.threads`` while timing and
restored afterwards; backends pin their own runtime (session options, thread
pools) in ``prepare`` (helpers in :mod:`profilers.runtimes.threads`).

5. **Self-timed samples**: with ``self_timed=True`` the callable returns its
   own sample in ms instead of being timed with the host clock: GPU backends
   return CUDA-event times, and :class:`AmortizedCall` returns the host time
   of ``N`` back-to-back calls divided by ``N`` (``N`` chosen so a sample
   spans >= ~1 ms), which keeps timer resolution and per-sample jitter small
   against µs-scale blocks.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from profilers.config import MAX_SESSIONS, LatencyStats, ProtocolConfig

logger = logging.getLogger(__name__)

Clock = Callable[[], int]  # returns nanoseconds

#: A light configuration for demos, smoke tests and ``latnas profile --quick``.
QUICK_CONFIG = ProtocolConfig(
    warmup_runs=3,
    warmup_seconds=0.02,
    min_repeats=10,
    max_repeats=60,
    max_seconds=0.5,
    rel_tolerance=0.02,
    stable_windows=2,
    window=5,
    noisy_retries=0,
    sessions=1,
    extra_sessions=0,
)


def quick_config(**overrides: Any) -> ProtocolConfig:
    """:data:`QUICK_CONFIG` with some fields replaced (e.g. ``threads``)."""
    return replace(QUICK_CONFIG, **overrides)


def check_config(config: ProtocolConfig) -> ProtocolConfig:
    """Raise ``ValueError`` with a one-line reason for an unusable configuration."""
    if config.threads < 1:
        raise ValueError(f"threads must be >= 1, got {config.threads}")
    if config.window < 1 or config.stable_windows < 1:
        raise ValueError("window and stable_windows must be >= 1")
    if config.min_repeats < 1 or config.max_repeats < config.min_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {config.min_repeats}, {config.max_repeats}")
    if config.warmup_runs < 0 or config.warmup_seconds < 0 or config.max_seconds <= 0:
        raise ValueError("warm-up counts/seconds must be >= 0 and max_seconds > 0")
    if config.noisy_retries < 0:
        raise ValueError(f"noisy_retries must be >= 0, got {config.noisy_retries}")
    if config.rel_tolerance <= 0 or config.noise_iqr_ratio <= 0:
        raise ValueError("rel_tolerance and noise_iqr_ratio must be > 0")
    if not 1 <= config.sessions <= MAX_SESSIONS:
        raise ValueError(f"sessions must be between 1 and {MAX_SESSIONS}, got {config.sessions}")
    if not 0 <= config.extra_sessions <= MAX_SESSIONS:
        raise ValueError(f"extra_sessions must be between 0 and {MAX_SESSIONS}, got {config.extra_sessions}")
    if not 0 < config.session_agree < 1:
        raise ValueError(f"session_agree must be between 0 and 1 (a relative gap), got {config.session_agree}")
    return config


# --------------------------------------------------------------------- stats
def summarize(
    samples_ms: Sequence[float],
    *,
    warmup_runs: int = 0,
    stable: bool = False,
    noise_iqr_ratio: float = ProtocolConfig.noise_iqr_ratio,
) -> LatencyStats:
    """Summary statistics of timed samples (milliseconds)."""
    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("no timed samples to summarize")
    p10, p25, p50, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    iqr = float(p75 - p25)
    median = float(p50)
    noisy = bool(iqr > noise_iqr_ratio * median) if median > 0 else bool(iqr > 0)
    return LatencyStats(
        median_ms=median,
        mean_ms=float(x.mean()),
        std_ms=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min_ms=float(x.min()),
        p10_ms=float(p10),
        p25_ms=float(p25),
        p75_ms=float(p75),
        p90_ms=float(p90),
        iqr_ms=iqr,
        repeats=int(x.size),
        warmup_runs=int(warmup_runs),
        stable=bool(stable),
        noisy=noisy,
    )


def median_settled(previous: float, current: float, rel_tolerance: float) -> bool:
    """True when the running median moved less than ``rel_tolerance`` (relative)."""
    if previous <= 0:
        return current == previous
    return abs(current - previous) / previous < rel_tolerance


# ------------------------------------------------------------------- threads
from profilers.runtimes.threads import pinned_threads  # noqa: E402,F401  (re-exported: one helper)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the garbage collector; re-enable it afterwards if it was enabled."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ------------------------------------------------------------------- measure
def warm_up(fn: Callable[[], Any], config: ProtocolConfig, clock: Clock = time.perf_counter_ns) -> int:
    """Untimed runs until both minima (count and seconds) are met; returns the run count."""
    start = clock()
    runs = 0
    min_ns = int(config.warmup_seconds * 1e9)
    cap_ns = int(config.max_seconds * 1e9)
    while True:
        elapsed = clock() - start
        if runs >= config.warmup_runs and elapsed >= min_ns:
            break
        if runs >= 1 and elapsed >= cap_ns:
            logger.debug("warm-up capped at %d runs after %.2f s", runs, elapsed / 1e9)
            break
        fn()
        runs += 1
    return runs


def repeat_until_stable(
    sample: Callable[[], float], config: ProtocolConfig, out_of_time: Callable[[], bool]
) -> tuple[list[float], bool]:
    """The stopping rule over samples in ms; returns (samples, stable).

    ``sample()`` produces one measurement; every ``config.window`` samples the
    running median is compared with the previous window's, and from
    ``config.min_repeats`` on, ``config.stable_windows`` settled windows in a
    row stop the loop. Otherwise it stops at ``config.max_repeats`` samples or
    when ``out_of_time()`` says the time cap is reached.
    """
    samples: list[float] = []
    prev_median: float | None = None
    streak = 0
    while True:
        samples.append(float(sample()))
        n = len(samples)
        if n % config.window == 0:
            median = float(np.median(samples))
            if n >= config.min_repeats and prev_median is not None:
                streak = streak + 1 if median_settled(prev_median, median, config.rel_tolerance) else 0
                if streak >= config.stable_windows:
                    return samples, True
            prev_median = median
        if n >= config.max_repeats or out_of_time():
            return samples, False


def timed_repeats(
    fn: Callable[[], Any], config: ProtocolConfig, clock: Clock = time.perf_counter_ns, self_timed: bool = False
) -> tuple[list[float], bool]:
    """Timed runs of ``fn`` under the stopping rule; returns (samples in ms, stable).

    The host clock times each call, unless ``self_timed``: then ``fn()``
    returns its own sample in ms (the clock still enforces ``max_seconds``).
    """
    cap_ns = int(config.max_seconds * 1e9)
    start = clock()
    last_end = [start]

    def sample() -> float:
        t0 = clock()
        own = fn()
        last_end[0] = clock()
        return float(own) if self_timed else (last_end[0] - t0) / 1e6

    return repeat_until_stable(sample, config, lambda: last_end[0] - start >= cap_ns)


def measure(
    fn: Callable[[], Any],
    config: ProtocolConfig = ProtocolConfig(),
    *,
    clock: Clock = time.perf_counter_ns,
    pin_threads: bool = True,
    self_timed: bool = False,
) -> LatencyStats:
    """Time ``fn`` with the protocol described in this module's docstring.

    ``self_timed``: ``fn()`` returns its own sample in ms (CUDA events, :class:`AmortizedCall`).
    """
    check_config(config)
    threads = pinned_threads(config.threads) if pin_threads else contextlib.nullcontext()
    with threads:
        warmups = warm_up(fn, config, clock)
        best: LatencyStats | None = None
        for _attempt in range(1 + config.noisy_retries):
            with gc_paused():
                samples, stable = timed_repeats(fn, config, clock, self_timed)
            stats = summarize(samples, warmup_runs=warmups, stable=stable, noise_iqr_ratio=config.noise_iqr_ratio)
            if best is None or _spread(stats) < _spread(best):
                best = stats
            if not stats.noisy:
                break
    assert best is not None
    return best


class AmortizedCall:
    """Calls ``fn`` ``calls`` times back to back; returns host ms per call (a self-timed sample)."""

    def __init__(self, fn: Callable[[], Any], calls: int, clock: Clock = time.perf_counter_ns):
        if calls < 1:
            raise ValueError(f"calls must be >= 1, got {calls}")
        self.fn = fn
        self.calls = int(calls)
        self.clock = clock

    def __call__(self) -> float:
        fn, clock = self.fn, self.clock
        t0 = clock()
        for _ in range(self.calls):
            fn()
        return (clock() - t0) / 1e6 / self.calls


def calls_per_sample(
    fn: Callable[[], Any], min_sample_ms: float = 1.0, max_calls: int = 1000, probes: int = 5,
    clock: Clock = time.perf_counter_ns,
) -> int:
    """How many back-to-back calls of ``fn`` make a sample of >= ``min_sample_ms`` (fastest of ``probes`` calls)."""
    fastest = math.inf
    for _ in range(max(1, probes)):
        t0 = clock()
        fn()
        fastest = min(fastest, (clock() - t0) / 1e6)
    if not fastest > 0:
        return max_calls
    return max(1, min(max_calls, math.ceil(min_sample_ms / fastest)))


def amortized(fn: Callable[[], Any], min_sample_ms: float = 1.0, max_calls: int = 1000,
              clock: Clock = time.perf_counter_ns) -> AmortizedCall:
    """An :class:`AmortizedCall` of ``fn`` with ``calls`` chosen by :func:`calls_per_sample`."""
    return AmortizedCall(fn, calls_per_sample(fn, min_sample_ms, max_calls, clock=clock), clock)


def _spread(stats: LatencyStats) -> float:
    return stats.iqr_ms / stats.median_ms if stats.median_ms > 0 else math.inf


# ------------------------------------------------------------ CPU-time samples
#: How one CPU backend's samples are clocked: ``wall`` (host clock), ``cpu`` (the calling thread's CPU
#: time) or ``auto`` (``cpu`` with one intra-op thread, else ``wall``); see :class:`ThreadCpuCall`.
CLOCKS = ("auto", "wall", "cpu")
OFFLOAD_RATIO = 0.7  # CPU-time median below this share of the fastest wall sample: the work ran on other threads


def resolve_clock(clock: str, threads: int) -> str:
    """``wall`` or ``cpu`` for a backend option ``clock`` (``auto``: ``cpu`` with one thread)."""
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r} (known: {', '.join(CLOCKS)})")
    if clock == "auto":
        return "cpu" if int(threads) == 1 else "wall"
    return clock


class ThreadCpuCall:
    """A self-timed sample: the *calling thread's* CPU time of ``calls`` back-to-back calls, per call (ms).

    On a shared host a single-threaded run that lasts longer than the
    scheduler's time slice (a whole model: milliseconds) is preempted in
    almost every run, so its wall time includes the other tenants' turns; a
    run's CPU time does not (cache and memory-bandwidth contention remain).
    Only valid when the work runs on the calling thread (one intra-op thread,
    sequential execution): the wall time of every sample is kept beside it
    and :func:`measure_cpu` falls back to it if the CPU time is implausibly low.
    """

    def __init__(self, fn: Callable[[], Any], calls: int = 1):
        if calls < 1:
            raise ValueError(f"calls must be >= 1, got {calls}")
        self.fn, self.calls = fn, int(calls)
        self.wall_ms: list[float] = []

    def __call__(self) -> float:
        fn, calls = self.fn, self.calls
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(calls):
            fn()
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        self.wall_ms.append((w1 - w0) / 1e6 / calls)
        return (c1 - c0) / 1e6 / calls


def measure_cpu(sample: ThreadCpuCall, config: ProtocolConfig) -> tuple[LatencyStats, str]:
    """Time ``sample`` (CPU-time samples) under the protocol; ``(stats, clock used)``.

    When the CPU-time median is below :data:`OFFLOAD_RATIO` of the fastest
    wall sample, the work did not run on this thread: the session's wall-clock
    samples are summarised instead (clock ``wall``).
    """
    stats = measure(sample, config, self_timed=True)
    wall = sample.wall_ms[-stats.repeats:]
    if wall and stats.median_ms < OFFLOAD_RATIO * min(wall):
        logger.debug("CPU time %.4f ms << wall %.4f ms: work ran on other threads, wall clock used",
                     stats.median_ms, min(wall))
        return summarize(wall, warmup_runs=stats.warmup_runs, stable=stats.stable,
                         noise_iqr_ratio=config.noise_iqr_ratio), "wall"
    return stats, "cpu"
