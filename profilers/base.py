"""The profiler backend interface and the plain records profilers produce.

A backend turns a ``torch.nn.Module`` plus an example input into something it
can run (an ONNX Runtime session, an ExecuTorch program, a TensorRT engine),
then times it with the shared measurement protocol. Results are
:class:`Measurement` records: plain data that the store saves and predictors
read, without either knowing the other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from latnas.registry import Registry

EXAMPLE_SEED = 0  # seed of the example input every backend is timed on



def option_flag(value: Any) -> bool:
    """A boolean backend option; options may arrive as strings from the CLI (``channels_last=true``)."""
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    return bool(value)

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
    precision: str = "fp32"  # fp32 | fp16 | bf16 (part of the store key)
    layout: str = "contiguous"  # contiguous | channels_last (part of the store key)
    meta: dict[str, Any] = field(default_factory=dict)  # how it was timed (GPU timing mode, replays, clocks)


class Backend:
    """A latency measurement backend. Subclass, set ``name``, register it.

    Required: ``prepare(module, example, config)`` returns a zero-argument
    callable that runs one inference and blocks until it is finished (GPU
    backends synchronise). Everything else has a default that a backend may
    override; the runner, the fingerprint and the agent call these hooks
    directly (no probing with ``getattr``):

    - ``availability()`` -> ``(True, "")`` or ``(False, reason)`` in one line;
    - ``versions()`` -> runtime versions for the device fingerprint;
    - ``device_info()`` -> the measured device's description, ``None`` = this host;
    - ``measure(fn, config)`` -> times a prepared callable (GPU backends time
      with device events instead of the host clock);
    - ``measure_module`` / ``measure_spec`` / ``measure_specs`` /
      ``measure_model`` -> prepare-and-measure one module, block or model;
      a backend that measures elsewhere (``remote = True``) overrides these.

    ``agent_options`` names the constructor options a remote client may set
    through ``latnas agent`` (an allowlist; never a filesystem path).
    """

    name = ""
    description = ""
    requires = ""  # what it needs, in words (shown by `latnas devices`)
    precision = "fp32"  # numeric precision of what it times (stored with every measurement)
    layout = "contiguous"  # memory layout of the input (stored with every measurement)
    remote = False  # True: measures on another machine; ``prepare`` is not the path
    agent_options: frozenset[str] | None = None  # None: the agent's built-in table decides (see profilers.remote.wire)

    def availability(self) -> tuple[bool, str]:
        return True, ""

    def versions(self) -> dict[str, str]:
        """Runtime and library versions that belong in the device fingerprint."""
        return {}

    def measurement_meta(self) -> dict[str, Any]:
        """How the last measurement was taken (GPU timing mode, replays, clocks); stored with it."""
        return {}

    def device_info(self) -> dict[str, Any] | None:
        """Description of the device measured on; ``None`` means this host (the default)."""
        return None

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], Any]:
        raise NotImplementedError(f"backend {self.name!r} does not implement prepare()")

    def measure(self, fn: Callable[[], Any], config: ProtocolConfig) -> LatencyStats:
        """Time a prepared callable with the shared protocol (host clock)."""
        from profilers.protocol import measure

        return measure(fn, config)

    def measure_module(self, module, example, config: ProtocolConfig) -> LatencyStats:
        """Prepare ``module`` and time it with :meth:`measure`, threads pinned throughout."""
        from profilers.protocol import pinned_threads

        with pinned_threads(config.threads):  # export/lowering also runs with the pinned count
            fn = self.prepare(module, example, config)
            try:
                return self.measure(fn, config)
            finally:
                del fn

    def measure_spec(self, spec, config: ProtocolConfig) -> tuple[LatencyStats, dict[str, Any] | None]:
        """Time one ``BlockSpec``: ``(stats, device info)``; info ``None`` means this host."""
        stats = self.measure_module(spec.build(), example_input(spec.input_shape), config)
        return stats, None

    def measure_specs(self, specs: Sequence[Any], config: ProtocolConfig) -> list[tuple[LatencyStats, dict[str, Any] | None]]:
        """Time several blocks (one round trip for remote backends); one result per spec, in order."""
        return [self.measure_spec(spec, config) for spec in specs]

    def measure_model(
        self, space_name: str, arch_string: str, batch: int = 1, config: ProtocolConfig = ProtocolConfig(), *, space=None
    ) -> LatencyStats:
        """Time a whole model; ``space`` (a SearchSpace) saves looking ``space_name`` up."""
        if space is None:
            from latnas.spaces import get_space

            space = get_space(space_name, batch=batch)
        module = space.build(arch_string)
        return self.measure_module(module, example_input((space.batch, *space.input_shape)), config)


def example_input(shape: Sequence[int], seed: int = EXAMPLE_SEED):
    """A fixed random input tensor of ``shape`` (same numbers on every run)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen)


BACKENDS: Registry[type] = Registry("backend")


def register_backend(name: str):
    """Class decorator registering a :class:`Backend` subclass under ``name``."""

    def deco(cls):
        cls.name = name
        BACKENDS.register(name, cls)
        return cls

    return deco
