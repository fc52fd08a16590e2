"""The profiler backend interface and the plain records profilers produce.

A backend turns a ``torch.nn.Module`` plus an example input into something it
can run (an ONNX Runtime session, an ExecuTorch program, a TensorRT engine),
then times it with the shared measurement protocol. Results are
:class:`Measurement` records: plain data that the store saves and predictors
read, without either knowing the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from latnas.schema.registry import Registry
from profilers.config import LatencyStats, ProtocolConfig
from profilers.protocol import measure, pinned_threads

__all__ = ["BACKENDS", "Backend", "LatencyStats", "Measurement", "ProtocolConfig", "example_input", "register_backend"]

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
    sessions: tuple[LatencyStats, ...] = ()  # every session's statistics, in the order measured
    spread: float = 0.0  # between-session spread: (max - min) / min of the session medians
    protocol: str = ""  # how the sessions were aggregated ("sessions=3 estimator=min agree=0.03"; "legacy")

    @property
    def session_medians(self) -> list[float]:
        """The sessions' medians (a legacy single-session row: its own median)."""
        return [s.median_ms for s in self.sessions] or [self.stats.median_ms]


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
      a backend that measures elsewhere (``remote = True``) overrides these;
    - ``build(module, example, config)`` -> the item's artifact, made once
      (ONNX file, ``.pte``); ``open_session(artifact, config)`` -> a fresh
      session on it; ``measure_session``; ``release(artifact)``. The runner
      measures each item in several such sessions (:mod:`profilers.sessions`);
      a backend that overrides ``measure_spec`` / ``measure_model`` instead
      gets one call of it per session.

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
        return measure(fn, config)

    def measure_module(self, module, example, config: ProtocolConfig) -> LatencyStats:
        """Prepare ``module`` and time it with :meth:`measure`, threads pinned throughout."""
        with pinned_threads(config.threads):  # export/lowering also runs with the pinned count
            fn = self.prepare(module, example, config)
            try:
                return self.measure(fn, config)
            finally:
                del fn

    # --- sessions: the unit of repetition (profilers.sessions interleaves them over items)
    def build(self, module, example, config: ProtocolConfig) -> Any:
        """Export / lower ``module`` once per item; every session of the item opens the result.

        Default: the module and its input, which :meth:`open_session` prepares.
        """
        return (module, example)

    def open_session(self, artifact: Any, config: ProtocolConfig) -> Callable[[], Any]:
        """A fresh session on ``artifact`` (new ORT session, program load, CUDA graph); default: ``prepare``."""
        module, example = artifact
        return self.prepare(module, example, config)

    def measure_session(self, artifact: Any, config: ProtocolConfig) -> LatencyStats:
        """Open one fresh session on ``artifact`` and time it with :meth:`measure`, threads pinned."""
        with pinned_threads(config.threads):
            fn = self.open_session(artifact, config)
            try:
                return self.measure(fn, config)
            finally:
                del fn

    def release(self, artifact: Any) -> None:
        """Drop what :meth:`build` made (temporary files); called once the item is done or failed."""

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
            from latnas.schema.spaces import get_space

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
    return BACKENDS.named(name)
