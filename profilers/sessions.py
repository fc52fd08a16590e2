"""Sessions as the unit of repetition: S fresh sessions per item, interleaved in time.

On a shared host the noise is *between* sessions and in time (other tenants
load the core for seconds), not within one timing loop. So every item (a
block or a whole model) is measured in ``config.sessions`` fresh sessions
(a new ONNX Runtime session, a new ExecuTorch program load, a new CUDA
graph) on one export/lowering of the item, and the sessions of different
items are interleaved: pass 1 over all items, then pass 2, ..., so a slow
period of the host hits every item a little instead of a few items fully.

Aggregation (:func:`aggregate`): the stored latency is the :data:`ESTIMATOR`
over the sessions: ``min-p10``, the minimum of the sessions' within-session
p10 (the fast value recurs while slow runs and slow sessions come from
periods of contention; it reproduced best of first / median / min / p10 /
min-p10 in ``benchmarks/profiler_stability.py --two-runs``). Every session's
statistics are kept.

Flag (:func:`is_noisy`): an item is noisy when its two best (fastest)
sessions, by the estimator's values, differ by more than ``config.session_agree`` (relative). A
noisy item gets one more session per extra round, after the regular passes,
until its two best sessions agree or ``config.extra_sessions`` extra sessions
are spent; it stays flagged if they never agree. With one session there is
nothing to compare: the flag is the session's own IQR flag.

:func:`run_sessions` is the scheduler; it knows nothing of stores or
backends: items bring their own ``build`` / ``session`` / ``release``
callables and the caller's hooks commit each session and each finished item.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from profilers.config import LatencyStats, ProtocolConfig

ESTIMATORS = ("first", "median", "min", "p10", "min-p10")
ESTIMATOR = "min-p10"  # the default, chosen by measurement (docs/profiling.md): best in the two-run benchmark
_UNBUILT = object()


def session_values(sessions: Sequence[LatencyStats], how: str = ESTIMATOR) -> list[float]:
    """What an estimator aggregates: each session's p10 for ``min-p10``, else each session's median."""
    return [s.p10_ms for s in sessions] if how == "min-p10" else [s.median_ms for s in sessions]


def estimate(values: Sequence[float], how: str = ESTIMATOR) -> float:
    """One latency from per-session values (:func:`session_values`).

    ``first`` session, ``median``, ``min`` or ``p10`` of the session medians;
    ``min-p10``: the minimum of the sessions' within-session p10.
    """
    if not values:
        raise ValueError("no sessions to estimate from")
    if how == "first":
        return float(values[0])
    if how == "median":
        return float(np.median(values))
    if how in ("min", "min-p10"):
        return float(min(values))
    if how == "p10":
        return float(np.percentile(values, 10))
    raise ValueError(f"unknown estimator {how!r} (known: {', '.join(ESTIMATORS)})")


def best_two_gap(medians: Sequence[float]) -> float:
    """Relative gap between the two fastest session medians (``nan`` with fewer than two)."""
    if len(medians) < 2:
        return math.nan
    a, b = sorted(medians)[:2]
    return (b - a) / a if a > 0 else (0.0 if b == a else math.inf)


def spread(medians: Sequence[float]) -> float:
    """Between-session spread: (max - min) / min of the session medians (0 for one session)."""
    if len(medians) < 2:
        return 0.0
    lo, hi = min(medians), max(medians)
    return (hi - lo) / lo if lo > 0 else (0.0 if hi == lo else math.inf)


def is_noisy(sessions: Sequence[LatencyStats], agree: float, estimator: str = ESTIMATOR) -> bool:
    """The two best sessions (by the estimator's values) disagree by more than ``agree``; one session: its IQR flag."""
    if len(sessions) < 2:
        return bool(sessions and sessions[0].noisy)
    return bool(best_two_gap(session_values(sessions, estimator)) > agree)


def protocol_label(config: ProtocolConfig, estimator: str = ESTIMATOR) -> str:
    """How an item was aggregated, as stored with it."""
    return f"sessions={config.sessions} estimator={estimator} agree={config.session_agree:g} extra<={config.extra_sessions}"


def aggregate(sessions: Sequence[LatencyStats], config: ProtocolConfig, estimator: str = ESTIMATOR) -> LatencyStats:
    """The item's summary: ``median_ms`` is the estimator over session medians.

    The other percentiles come from the session nearest the estimate,
    ``min_ms`` is the minimum over all sessions, ``repeats`` and
    ``warmup_runs`` are totals, ``stable`` means every session settled and
    ``noisy`` is :func:`is_noisy`.
    """
    if not sessions:
        raise ValueError("no sessions to aggregate")
    values = session_values(sessions, estimator)
    value = estimate(values, estimator)
    nearest = sessions[min(range(len(values)), key=lambda i: abs(values[i] - value))]
    return replace(
        nearest,
        median_ms=value,
        min_ms=min(s.min_ms for s in sessions),
        repeats=sum(s.repeats for s in sessions),
        warmup_runs=sum(s.warmup_runs for s in sessions),
        stable=all(s.stable for s in sessions),
        noisy=is_noisy(sessions, config.session_agree, estimator),
    )


@dataclass
class SessionItem:
    """One block or model to measure in sessions.

    ``build()`` makes the artifact once (export / lowering), ``session(artifact)``
    times one fresh session on it, ``release(artifact)`` drops it. ``sessions``
    may start with sessions stored by an interrupted run (resume).
    """

    key: str
    build: Callable[[], Any]
    session: Callable[[Any], LatencyStats]
    release: Callable[[Any], None] = lambda artifact: None
    sessions: list[LatencyStats] = field(default_factory=list)
    failed: str | None = None
    done: bool = False
    artifact: Any = _UNBUILT

    def medians(self) -> list[float]:
        return [s.median_ms for s in self.sessions]


@dataclass
class SessionHooks:
    """What the scheduler tells its caller: a session finished, an item finished or failed."""

    on_session: Callable[[SessionItem, LatencyStats], None] = lambda item, stats: None
    on_done: Callable[[SessionItem], None] = lambda item: None
    on_fail: Callable[[SessionItem, BaseException], None] = lambda item, exc: None
    on_start: Callable[[SessionItem, int], None] = lambda item, index: None  # before session ``index`` (0-based)


def needs_more(sessions: Sequence[LatencyStats], config: ProtocolConfig) -> bool:
    """Another session is due: fewer than ``config.sessions``, or noisy with extra sessions left."""
    n = len(sessions)
    if n < config.sessions:
        return True
    return config.sessions > 1 and n < config.sessions + config.extra_sessions and is_noisy(sessions, config.session_agree)


def wants_more(item: SessionItem, config: ProtocolConfig) -> bool:
    """:func:`needs_more` for an item."""
    return needs_more(item.sessions, config)


def _finish(item: SessionItem, hooks: SessionHooks) -> None:
    item.done = True
    _drop(item)
    hooks.on_done(item)


def _drop(item: SessionItem) -> None:
    if item.artifact is not _UNBUILT:
        artifact, item.artifact = item.artifact, _UNBUILT
        item.release(artifact)


def _one_session(item: SessionItem, hooks: SessionHooks) -> bool:
    """Run one session of ``item``; False when it failed (the item is then marked failed)."""
    try:
        hooks.on_start(item, len(item.sessions))
        if item.artifact is _UNBUILT:
            item.artifact = item.build()
        stats = item.session(item.artifact)
    except Exception as exc:  # export, load or run failure: this item only
        item.failed = " ".join(str(exc).split()) or type(exc).__name__
        _drop(item)
        hooks.on_fail(item, exc)
        return False
    item.sessions.append(stats)
    hooks.on_session(item, stats)
    return True


def run_sessions(items: Sequence[SessionItem], config: ProtocolConfig, hooks: SessionHooks = SessionHooks()) -> None:
    """Measure ``items`` in interleaved passes, then extra rounds for noisy items.

    Pass ``p`` gives one session to every item that has fewer than ``p + 1``
    (so a resumed item only gets its missing sessions); an item is finished
    (``hooks.on_done``) as soon as it needs no more sessions. Then each extra
    round gives one session to every item still unfinished (noisy), until
    none is left or the cap is reached. A failing session marks its item
    failed and the run goes on; KeyboardInterrupt propagates (every finished
    session has been handed to ``hooks.on_session`` already).
    """
    try:
        for p in range(config.sessions):
            for item in items:
                if item.done or item.failed:
                    continue
                if len(item.sessions) <= p and not _one_session(item, hooks):
                    continue
                if len(item.sessions) >= config.sessions and not wants_more(item, config):
                    _finish(item, hooks)
        for _round in range(config.extra_sessions):
            pending = [it for it in items if not (it.done or it.failed)]
            if not pending:
                break
            for item in pending:
                if wants_more(item, config) and not _one_session(item, hooks):
                    continue
                if not wants_more(item, config):
                    _finish(item, hooks)
        for item in items:  # cap reached: finish, still flagged noisy
            if not (item.done or item.failed):
                _finish(item, hooks)
    finally:
        for item in items:
            _drop(item)
