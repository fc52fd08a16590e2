"""The plain records under both the protocol and the backend interface.

:class:`ProtocolConfig` (how carefully to time one item) and
:class:`LatencyStats` (what one timed session gives) sit below
:mod:`profilers.protocol` and :mod:`profilers.base`, so that neither of those
imports the other back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MAX_SESSIONS = 50  # more sessions per item than this is a typo, not a protocol


@dataclass(frozen=True)
class ProtocolConfig:
    """How carefully to time one item (see the README's measurement protocol).

    The first block of fields governs one *session* (one fresh runtime
    session: warm-up, timed repeats, stopping rule); the last three govern how
    many sessions an item gets and when they are judged to agree.
    """

    warmup_runs: int = 10  # at least this many untimed runs ...
    warmup_seconds: float = 0.05  # ... and at least this long (per session)
    min_repeats: int = 30  # timed runs before stability is checked
    max_repeats: int = 300  # hard cap on timed runs
    max_seconds: float = 2.0  # stop adding repeats after this long
    rel_tolerance: float = 0.01  # stable when the running median moves less than this ...
    stable_windows: int = 3  # ... for this many consecutive windows
    window: int = 10  # repeats per stability window
    threads: int = 1  # intra-op threads (pinned while timing)
    noise_iqr_ratio: float = 0.10  # within-session flag: IQR / median above this
    noisy_retries: int = 0  # re-time a session whose IQR flag is set (sessions replace this; 0 = off)
    sessions: int = 3  # fresh sessions per item, interleaved in time with the other items
    session_agree: float = 0.01  # noisy when the two best sessions differ by more than this (relative; chosen by flag recall, docs/profiling.md)
    extra_sessions: int = 2  # at most this many extra sessions for a noisy item, later in the run (cap: 5 in all)


@dataclass(frozen=True)
class LatencyStats:
    """Summary statistics of one timed artifact, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p10_ms: float
    p25_ms: float
    p75_ms: float
    p90_ms: float
    iqr_ms: float
    repeats: int
    warmup_runs: int
    stable: bool  # the median settled before the cap
    noisy: bool  # one session: IQR / median above the ratio; an item: its two best sessions disagree

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
