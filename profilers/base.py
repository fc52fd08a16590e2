"""The profiler backend interface and the plain records profilers produce.

A backend turns a ``torch.nn.Module`` plus an example input into something it
can run (an ONNX Runtime session, an ExecuTorch program, a TensorRT engine),
then times it with the shared measurement protocol. Results are
:class:`Measurement` records: plain data that the store saves and predictors
read, without either knowing the other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from latnas.registry import Registry


@dataclass(frozen=True)
class ProtocolConfig:
    """How carefully to time one artifact (see the README's measurement protocol)."""

    warmup_runs: int = 10  # at least this many untimed runs ...
    warmup_seconds: float = 0.2  # ... and at least this long
    min_repeats: int = 30  # timed runs before stability is checked
    max_repeats: int = 300  # hard cap on timed runs
    max_seconds: float = 5.0  # stop adding repeats after this long
    rel_tolerance: float = 0.01  # stable when the running median moves less than this ...
    stable_windows: int = 3  # ... for this many consecutive windows
    window: int = 10  # repeats per stability window
    threads: int = 1  # intra-op threads (pinned while timing)
    noise_iqr_ratio: float = 0.10  # flag as noisy when IQR / median exceeds this
    noisy_retries: int = 2  # re-time a noisy result up to this many times; keep the least noisy attempt


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
    noisy: bool  # IQR / median above ProtocolConfig.noise_iqr_ratio

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Measurement:
    """One stored result: what was timed, where, how, and the statistics."""

    key: str  # BlockSpec.key, or "model:<space>:<arch>" for whole models
    kind: str  # "block" or "model"
    backend: str
    fingerprint: str  # short hash of the device fingerprint
    batch: int
    stats: LatencyStats
    spec: dict[str, Any] = field(default_factory=dict)  # BlockSpec.to_dict() or {"space", "arch"}
    created: float = 0.0  # unix time


class Backend:
    """A latency measurement backend. Subclass, set ``name``, register it.

    ``availability()`` returns ``(True, "")`` or ``(False, reason)`` where the
    reason says what is missing (a library, a GPU) in one line.
    ``prepare(module, example)`` returns a zero-argument callable that runs one
    inference and blocks until it is finished (GPU backends synchronise).
    """

    name = ""
    description = ""
    requires = ""  # what it needs, in words (shown by `latnas devices`)

    def availability(self) -> tuple[bool, str]:
        return True, ""

    def versions(self) -> dict[str, str]:
        """Runtime and library versions that belong in the device fingerprint."""
        return {}

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], Any]:
        raise NotImplementedError


BACKENDS: Registry[type] = Registry("backend")


def register_backend(name: str):
    """Class decorator registering a :class:`Backend` subclass under ``name``."""

    def deco(cls):
        cls.name = name
        BACKENDS.register(name, cls)
        return cls

    return deco
