"""Measurement protocol: statistics, warm-up minima and the stopping rule (fake clock, no real timing)."""
from __future__ import annotations

import gc
import itertools
import math

import numpy as np
import pytest

from profilers.base import ProtocolConfig
from profilers.protocol import QUICK_CONFIG, check_config, measure, median_settled, summarize, warm_up


class FakeClock:
    """A nanosecond clock that only moves when the fake workload runs."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def fake_fn(clock: FakeClock, durations_ms):
    it = iter(durations_ms)
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        clock.now += int(next(it) * 1e6)

    fn.calls = calls
    return fn


CFG = ProtocolConfig(warmup_runs=5, warmup_seconds=0.0, min_repeats=30, max_repeats=300, max_seconds=100.0,
                     rel_tolerance=0.01, stable_windows=3, window=10, noisy_retries=0)


def test_summary_statistics_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0.0, 0.3, size=101)
    s = summarize(x, warmup_runs=7, stable=True, noise_iqr_ratio=0.1)
    assert s.median_ms == pytest.approx(np.median(x))
    assert s.mean_ms == pytest.approx(x.mean())
    assert s.std_ms == pytest.approx(x.std(ddof=1))
    assert s.min_ms == pytest.approx(x.min())
    for q, v in zip((10, 25, 75, 90), (s.p10_ms, s.p25_ms, s.p75_ms, s.p90_ms)):
        assert v == pytest.approx(np.percentile(x, q))
    assert s.iqr_ms == pytest.approx(s.p75_ms - s.p25_ms)
    assert s.p10_ms <= s.p25_ms <= s.median_ms <= s.p75_ms <= s.p90_ms
    assert (s.repeats, s.warmup_runs, s.stable) == (101, 7, True)
    assert s.noisy == (s.iqr_ms / s.median_ms > 0.1)


def test_noise_flag_threshold():
    tight = summarize([1.0, 1.01, 0.99, 1.0, 1.02], noise_iqr_ratio=0.1)
    wide = summarize([1.0, 2.0, 0.5, 1.5, 3.0], noise_iqr_ratio=0.1)
    assert not tight.noisy and wide.noisy
    assert summarize([1.0]).std_ms == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_constant_workload_stops_after_min_repeats_plus_stable_windows():
    clock = FakeClock()
    fn = fake_fn(clock, itertools.repeat(2.0))
    s = measure(fn, CFG, clock=clock, pin_threads=False)
    # medians are checked at 30 (first comparison), 40, 50: three stable windows in a row
    assert s.stable and s.repeats == 50
    assert s.warmup_runs == 5 and fn.calls["n"] == 55
    assert s.median_ms == pytest.approx(2.0) and s.iqr_ms == 0 and not s.noisy


def test_drifting_workload_hits_max_repeats_unstable():
    clock = FakeClock()
    fn = fake_fn(clock, (1.0 + 0.1 * i for i in itertools.count()))  # median keeps rising
    s = measure(fn, CFG, clock=clock, pin_threads=False)
    assert not s.stable and s.repeats == CFG.max_repeats


def test_time_cap_stops_repeats():
    clock = FakeClock()
    fn = fake_fn(clock, (1.0 + 0.1 * i for i in itertools.count()))
    cfg = ProtocolConfig(warmup_runs=0, warmup_seconds=0.0, min_repeats=30, max_repeats=300, max_seconds=0.05)
    s = measure(fn, cfg, clock=clock, pin_threads=False)
    assert not s.stable
    assert 1 <= s.repeats < 40  # ~50 ms of 1..5 ms runs


def test_stability_resets_when_median_jumps():
    # 20 fast timed runs, then slow ones: running medians 1,1,1 | 3 | 5,5,5,5 at n=10..80;
    # the jumps at 40 and 50 reset the streak, so three stable windows end at n=80
    clock = FakeClock()
    durations = itertools.chain(itertools.repeat(1.0, 5 + 20), itertools.repeat(5.0))
    s = measure(fakefn := fake_fn(clock, durations), CFG, clock=clock, pin_threads=False)
    assert s.stable and s.repeats == 80 and s.median_ms == 5.0
    assert fakefn.calls["n"] == s.repeats + s.warmup_runs


def test_noisy_result_is_retimed_and_least_noisy_attempt_kept():
    clock = FakeClock()
    noisy = itertools.cycle([1.0, 2.0, 1.0, 3.0])  # IQR / median well above 0.1
    cfg = ProtocolConfig(warmup_runs=2, warmup_seconds=0.0, min_repeats=10, max_repeats=20, window=10,
                         stable_windows=1, noisy_retries=2)
    durations = itertools.chain(itertools.islice(noisy, 2 + 20), itertools.repeat(1.5))
    s = measure(fn := fake_fn(clock, durations), cfg, clock=clock, pin_threads=False)
    assert not s.noisy and s.median_ms == pytest.approx(1.5)
    assert fn.calls["n"] == 2 + 20 + 20  # warm-up, a noisy attempt, a clean one (no third)
    clock2 = FakeClock()
    always = fake_fn(clock2, itertools.cycle([1.0, 2.0, 1.0, 3.0]))
    s2 = measure(always, cfg, clock=clock2, pin_threads=False)
    assert s2.noisy and always.calls["n"] == 2 + 3 * 20  # gave up after 1 + 2 attempts


@pytest.mark.parametrize("runs,seconds,expected", [(10, 0.001, 10), (10, 0.05, 50), (0, 0.0, 0)])
def test_warm_up_needs_both_minima(runs, seconds, expected):
    clock = FakeClock()
    fn = fake_fn(clock, itertools.repeat(1.0))
    cfg = ProtocolConfig(warmup_runs=runs, warmup_seconds=seconds)
    assert warm_up(fn, cfg, clock) == expected


def test_warm_up_is_capped_by_max_seconds():
    clock = FakeClock()
    fn = fake_fn(clock, itertools.repeat(400.0))  # a 0.4 s "model"
    cfg = ProtocolConfig(warmup_runs=10, warmup_seconds=0.2, max_seconds=1.0)
    assert warm_up(fn, cfg, clock) == 3


def test_median_settled_rule():
    assert median_settled(1.0, 1.005, 0.01)
    assert not median_settled(1.0, 1.02, 0.01)
    assert median_settled(0.0, 0.0, 0.01) and not median_settled(0.0, 1.0, 0.01)


def test_gc_reenabled_after_error_and_threads_restored():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    seen = []

    def boom():
        seen.append((gc.isenabled(), torch.get_num_threads()))
        if len(seen) > 3:
            raise RuntimeError("workload failed")

    cfg = ProtocolConfig(warmup_runs=2, warmup_seconds=0.0, threads=target)
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        measure(boom, cfg)
    assert gc.isenabled()
    assert torch.get_num_threads() == before
    assert seen[0] == (True, target)  # warm-up: GC on, threads pinned
    assert seen[-1] == (False, target)  # timed: GC off


def test_measure_real_callable_gives_positive_finite_stats():
    s = measure(lambda: sum(range(200)), QUICK_CONFIG)
    assert math.isfinite(s.median_ms) and s.median_ms > 0 and s.repeats >= 1


@pytest.mark.parametrize("bad", [dict(threads=0), dict(min_repeats=0), dict(max_repeats=5, min_repeats=10),
                                 dict(window=0), dict(max_seconds=0), dict(rel_tolerance=0),
                                 dict(noisy_retries=-1)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        check_config(ProtocolConfig(**bad))


# ------------------------------------------------------------ CPU-time samples
def test_resolve_clock():
    from profilers.protocol import resolve_clock

    assert resolve_clock("auto", 1) == "cpu" and resolve_clock("auto", 2) == "wall"
    assert resolve_clock("wall", 1) == "wall" and resolve_clock("cpu", 4) == "cpu"
    with pytest.raises(ValueError, match="unknown clock"):
        resolve_clock("tsc", 1)


def _busy(ms: float):
    import time

    def fn():
        end = time.perf_counter_ns() + int(ms * 1e6)
        while time.perf_counter_ns() < end:
            pass

    return fn


FAST_CPU = ProtocolConfig(warmup_runs=1, warmup_seconds=0.0, min_repeats=5, max_repeats=10, max_seconds=0.5, window=5,
                          stable_windows=1)


def test_thread_cpu_call_times_work_on_this_thread_and_falls_back_when_it_sleeps():
    import time

    from profilers.protocol import ThreadCpuCall, measure_cpu

    stats, used = measure_cpu(ThreadCpuCall(_busy(2.0)), FAST_CPU)  # busy on this thread: CPU time ~ its wall time
    assert used == "cpu" and 0.5 < stats.median_ms < 4.0
    sleeper = ThreadCpuCall(lambda: time.sleep(0.002), calls=2)  # no CPU time here: the work "ran elsewhere"
    stats, used = measure_cpu(sleeper, FAST_CPU)
    assert used == "wall" and stats.median_ms >= 1.9 and len(sleeper.wall_ms) >= stats.repeats
    with pytest.raises(ValueError):
        ThreadCpuCall(lambda: None, calls=0)


def test_backends_refuse_an_unknown_clock_and_report_the_clock_used():
    pytest.importorskip("onnxruntime")
    from profilers.runner import get_backend
    from latnas.schema.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="unknown clock"):
        get_backend("onnxruntime", clock="tsc")
    be = get_backend("onnxruntime")
    be.measure(_busy(0.2), FAST_CPU)
    assert be.measurement_meta() == {"clock": "cpu"}
    be.measure(_busy(0.2), replace_threads(FAST_CPU, 2))
    assert be.measurement_meta() == {"clock": "wall"}


def replace_threads(config, threads):
    from dataclasses import replace

    return replace(config, threads=threads)
