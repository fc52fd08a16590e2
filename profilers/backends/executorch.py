"""``executorch``: ExecuTorch with the XNNPACK delegate, run by its Python runtime.

Lowering and loading live in :mod:`profilers.runtimes.executorch` (shared with
``latnas export``). Lowered programs are cached on disk by module structure
and toolchain versions (:class:`~profilers.runtimes.executorch.ProgramCache`,
under ``~/.cache/latnas/executorch/`` or ``$LATNAS_CACHE_DIR``), so a rerun
lowers nothing; ``cache=False`` lowers every time.

Each item is lowered once (:meth:`ExecuTorchBackend.build`); each session
of it is a fresh program load of those bytes. The timed call is
``method.execute([x])``. Blocks run in microseconds, where
one call per sample is mostly timer resolution and call jitter; each sample
is therefore ``N`` back-to-back calls divided by ``N``
(:class:`profilers.protocol.AmortizedCall`), ``N`` chosen so a sample spans
>= ``min_sample_ms`` (``amortize=False``: one call per sample). The XNNPACK
thread pool is global to the process: it is reset to ``config.threads`` when
a block is prepared.

Clock: option ``clock`` as for ``onnxruntime`` (``auto``: the calling thread's
CPU time with one thread, where XNNPACK runs on the calling thread; else wall
time); the clock used is in each measurement's ``meta``.

Identity blocks lower to a program with no delegate and no kernels (the
output is the input); it still runs, so its latency is the runtime's call
overhead.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any, Callable

from profilers.base import Backend, LatencyStats, ProtocolConfig, option_flag, register_backend
from profilers.runtimes.executorch import ProgramCache, load_method, lower_to_xnnpack, toolchain_versions  # noqa: F401
from profilers.runtimes.threads import set_executorch_threads

logger = logging.getLogger(__name__)


@register_backend("executorch")
class ExecuTorchBackend(Backend):
    description = "ExecuTorch runtime with the XNNPACK delegate (CPU)"
    requires = "executorch (with its prebuilt pybindings)"

    def __init__(self, cache: bool = True, amortize: bool = True, min_sample_ms: float = 1.0, clock: str = "auto"):
        from profilers.protocol import resolve_clock

        if float(min_sample_ms) <= 0:
            raise ValueError(f"min_sample_ms must be > 0, got {min_sample_ms}")
        resolve_clock(clock, 1)  # a bad name is refused here
        self.clock = clock
        self.cache = option_flag(cache)
        self.amortize = option_flag(amortize)
        self.min_sample_ms = float(min_sample_ms)
        self._programs: ProgramCache | None = None
        self._last_meta: dict[str, Any] = {}

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("executorch") is None:
            return False, "python package 'executorch' is not installed"
        try:
            if importlib.util.find_spec("executorch.extension.pybindings._C") is None:
                return False, "executorch is installed without its prebuilt runtime (executorch.extension.pybindings._C)"
        except ImportError as exc:
            return False, f"executorch runtime cannot be imported: {exc}"
        return True, ""

    def versions(self) -> dict[str, str]:
        v = toolchain_versions()
        return {"executorch": v["executorch"], "delegate": v["delegate"]}

    def programs(self) -> ProgramCache:
        """The on-disk program cache (made on first use)."""
        if self._programs is None:
            self._programs = ProgramCache()
        return self._programs

    def lower(self, module, example) -> bytes:
        """``.pte`` bytes of ``module`` lowered to XNNPACK (from the cache when enabled)."""
        if self.cache:
            return self.programs().lowered(module, example)
        return lower_to_xnnpack(module.eval(), example)[1].buffer

    @staticmethod
    def set_threads(threads: int) -> None:
        set_executorch_threads(threads)

    def load(self, pte: bytes):
        """Load ``.pte`` bytes; returns the forward method."""
        return load_method(pte)

    def build(self, module, example, config: ProtocolConfig) -> tuple[bytes, Any]:
        """Lower once per item (from the program cache when enabled): ``(.pte bytes, input)``."""
        return self.lower(module, example), example

    def open_session(self, artifact: tuple[bytes, Any], config: ProtocolConfig) -> Callable[[], Any]:
        """A fresh program load of the item's ``.pte``."""
        pte, example = artifact
        return self._call(pte, example, config)

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], Any]:
        return self._call(self.lower(module, example), example, config)

    def _call(self, pte: bytes, example, config: ProtocolConfig) -> Callable[[], Any]:
        self.set_threads(config.threads)
        method = self.load(pte)
        inputs = [example.detach().cpu().contiguous()]
        execute = method.execute

        def call():
            return execute(inputs)

        return call

    def measure(self, fn: Callable[[], Any], config: ProtocolConfig) -> LatencyStats:
        """Amortised samples (N calls / N) under the shared protocol; N is in :meth:`measurement_meta`."""
        from profilers.protocol import AmortizedCall, ThreadCpuCall, amortized, measure, measure_cpu, resolve_clock

        cpu = resolve_clock(self.clock, config.threads) == "cpu"
        if not self.amortize:
            calls = 1
        else:
            for _ in range(max(1, config.warmup_runs)):  # first calls are slow (allocations): probe after them
                fn()
            calls = amortized(fn, self.min_sample_ms).calls
        if cpu:
            stats, used = measure_cpu(ThreadCpuCall(fn, calls), config)
        else:
            timed = AmortizedCall(fn, calls) if self.amortize else None
            stats, used = (measure(timed, config, self_timed=True) if timed else measure(fn, config)), "wall"
        self._last_meta = {"calls_per_sample": calls, "clock": used}
        return stats

    def measurement_meta(self) -> dict[str, Any]:
        return dict(self._last_meta)

