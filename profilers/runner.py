"""Profile many blocks or whole models into a store, resumably.

``profile_blocks`` / ``profile_models`` skip what the store already holds for
this device fingerprint and backend and measure the rest in sessions
(:mod:`profilers.sessions`): ``config.sessions`` fresh sessions per item,
interleaved over the items (pass 1 over all, pass 2, ...), extra sessions for
noisy items at the end. Every session is committed at once (the store's
``pending_sessions``), every finished item too; an interrupted run resumes
with the missing sessions only. A progress bar shows sessions with ETA and
the run returns a :class:`RunSummary`. An item whose session fails is
reported in one line and marked failed (its stored sessions are kept); the
run goes on.

A run holds the machine's profiling lock (:mod:`profilers.lock`) while it
measures, so two runs never time each other; the second waits (or, with
``wait=False``, is refused). A measurement already stored is never silently
replaced: ``force=True`` re-measures and replaces on purpose, and a row that
appeared while we measured (another store writer) is kept and reported.

The runner calls the hooks declared on :class:`~profilers.base.Backend`
(``measure_spec``, ``measure_model``; their defaults build the module here and
``prepare`` + ``measure`` it); a backend that times elsewhere (a remote agent,
a GPU with CUDA events) overrides the hook it needs.
"""
from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from latnas.schema.errors import BackendUnavailable, LatnasError
from latnas.schema.spec import BlockSpec
from profilers.base import BACKENDS, EXAMPLE_SEED, Backend, LatencyStats, Measurement, ProtocolConfig, example_input  # noqa: F401
from profilers.fingerprint import device_fingerprint
from profilers.lock import profiling_lock
from profilers.items import measurement_of, model_spec, block_item, model_item, model_key  # noqa: F401 (model_key re-exported)
from profilers.protocol import check_config
from profilers.sessions import SessionHooks, SessionItem, run_sessions

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ backends
def available_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend name -> ``(available, reason)``."""
    import profilers.backends  # noqa: F401  (registers the built-in backends)

    out = {}
    for name in BACKENDS.names():
        try:
            out[name] = BACKENDS.get(name)().availability()
        except Exception as exc:  # a broken backend reports, never crashes the listing
            out[name] = (False, f"{type(exc).__name__}: {exc}")
    return out


def get_backend(name: str | Backend, **opts: Any) -> Backend:
    """A backend instance by registered name (options go to its constructor)."""
    import profilers.backends  # noqa: F401

    if isinstance(name, Backend):
        return name
    return BACKENDS.create(name, BackendUnavailable, **opts)


def require_available(backend: Backend) -> Backend:
    ok, reason = backend.availability()
    if not ok:
        raise BackendUnavailable(f"backend {backend.name!r} is not available here: {reason}")
    return backend


# ----------------------------------------------------------------- one item
def _fingerprint(backend: Backend, config: ProtocolConfig, fingerprint: str | None) -> str:
    return fingerprint or device_fingerprint(backend, config.threads)[0]


def _measure_one(item: SessionItem, config: ProtocolConfig) -> list[LatencyStats]:
    """All sessions of one item back to back (no store); re-raises a failing session's error."""
    errors: list[BaseException] = []
    run_sessions([item], config, SessionHooks(on_fail=lambda it, exc: errors.append(exc)))
    if errors:
        raise errors[0]
    return item.sessions


def profile_block(
    backend: str | Backend, spec: BlockSpec, config: ProtocolConfig = ProtocolConfig(), fingerprint: str | None = None
) -> Measurement:
    """Measure one block in ``config.sessions`` sessions; returns a :class:`Measurement` (not stored)."""
    backend = get_backend(backend)
    check_config(config)
    spec.validate()
    sessions = _measure_one(block_item(backend, spec, config), config)
    return measurement_of(backend, "block", spec.key, spec.batch, spec.to_dict(), sessions, config,
                        _fingerprint(backend, config, fingerprint))


def _space(space):
    if isinstance(space, str):
        from latnas.schema.spaces import get_space

        return get_space(space)
    return space


def profile_model(
    backend: str | Backend, space, arch, config: ProtocolConfig = ProtocolConfig(), fingerprint: str | None = None
) -> Measurement:
    """Measure one whole model of ``space`` (a name or SearchSpace) in sessions; key ``model:<space>:<arch>``."""
    backend = get_backend(backend)
    check_config(config)
    space = _space(space)
    arch_str = space.format_arch(space.parse_arch(arch))
    sessions = _measure_one(model_item(backend, space, arch_str, config), config)
    return measurement_of(backend, "model", model_key(space.name, arch_str), space.batch, model_spec(space, arch_str),
                        sessions, config, _fingerprint(backend, config, fingerprint))


# ------------------------------------------------------------------- summary
@dataclass
class RunSummary:
    """What a profiling run did."""

    backend: str
    fingerprint: str
    kind: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # measured, but a row stored meanwhile was kept
    wall_s: float = 0.0
    sessions_run: int = 0  # sessions timed in this run
    extra: int = 0  # of which extra sessions for noisy items
    resumed: int = 0  # sessions of unfinished items found in the store (not re-timed)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def noisy(self) -> int:
        return sum(m.stats.noisy for m in self.measurements)

    @property
    def median_of_medians_ms(self) -> float:
        meds = [m.stats.median_ms for m in self.measurements]
        return statistics.median(meds) if meds else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "fingerprint": self.fingerprint,
            "kind": self.kind,
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "kept": len(self.kept),
            "noisy": self.noisy,
            "sessions_run": self.sessions_run,
            "extra_sessions": self.extra,
            "resumed_sessions": self.resumed,
            "median_of_medians_ms": self.median_of_medians_ms,
            "wall_s": self.wall_s,
            "failures": [list(f) for f in self.failures],
        }


# ------------------------------------------------------------------- runs
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[item]}"),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _measures_here(backend: Backend) -> bool:
    """False for backends that time on another machine (a remote agent holds its own lock)."""
    return not getattr(backend, "remote", False) and not backend.name.startswith("remote")


def _notify(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _no_lock():
    yield None


@dataclass
class _Todo:
    """One item of a run: its identity, its stored spec and how to make its :class:`SessionItem`."""

    key: str
    batch: int
    spec: dict[str, Any]
    item: Callable[[], SessionItem]


def _run(
    backend: Backend,
    store,
    config: ProtocolConfig,
    kind: str,
    items: list[_Todo],
    progress: bool,
    force: bool = False,
    wait: bool = True,
) -> RunSummary:
    check_config(config)
    require_available(backend)
    fp, info = device_fingerprint(backend, config.threads)
    store.use_device(fp, info)
    summary = RunSummary(backend=backend.name, fingerprint=fp, kind=kind, total=len(items))
    stored = set() if force else store.stored_keys(backend.name, fp)
    todo = [it for it in items if (it.key, it.batch) not in stored]
    start = time.perf_counter()
    lock = profiling_lock(wait=wait, notify=_notify) if _measures_here(backend) and todo else _no_lock()
    with lock:
        if todo and not force:  # a run we waited for may have stored some of them meanwhile
            stored = store.stored_keys(backend.name, fp)
            todo = [it for it in todo if (it.key, it.batch) not in stored]
        summary.skipped = len(items) - len(todo)
        _measure(backend, store, kind, todo, fp, summary, progress, force, config)
    summary.wall_s = time.perf_counter() - start
    return summary


def _measure(backend: Backend, store, kind: str, todo: list[_Todo], fp: str, summary: RunSummary, progress: bool,
             force: bool, config: ProtocolConfig) -> None:
    """Measure ``todo`` in interleaved sessions, committing every session and every finished item."""
    pending = {} if force else store.pending_sessions(backend.name, fp, backend.precision, backend.layout)
    by_key = {it.key: it for it in todo}
    items = []
    for it in todo:
        item = it.item()
        item.sessions = list(pending.get((it.key, it.batch), []))[: config.sessions + config.extra_sessions]
        summary.resumed += len(item.sessions)
        items.append(item)
    metas: dict[str, dict[str, Any]] = {}
    with _progress(progress) as bar:
        task = bar.add_task(f"{backend.name} {kind} sessions", total=len(todo) * config.sessions - summary.resumed, item="")
        say = lambda text: bar.console.print(text, markup=False, highlight=False)  # noqa: E731

        def on_start(item: SessionItem, index: int) -> None:
            bar.update(task, item=f"{item.key} (session {index + 1})")

        def on_session(item: SessionItem, stats: LatencyStats) -> None:
            t = by_key[item.key]
            metas[item.key] = backend.measurement_meta()
            store.add_session(t.key, backend.name, t.batch, len(item.sessions) - 1, stats, fp, backend.precision, backend.layout)
            summary.sessions_run += 1
            summary.extra += len(item.sessions) > config.sessions
            bar.advance(task)

        def on_done(item: SessionItem) -> None:
            t = by_key[item.key]
            m = measurement_of(backend, kind, t.key, t.batch, t.spec, item.sessions, config, fp, metas.get(item.key, {}))
            if store.put(m, replace=force):
                summary.measurements.append(m)
                summary.done += 1
            else:
                summary.kept.append(t.key)
                say(f"kept the stored measurement of {t.key} (written by another run meanwhile); use --force to re-measure")

        def on_fail(item: SessionItem, exc: BaseException) -> None:
            if isinstance(exc, LatnasError):
                summary.failures.append((item.key, str(exc)))
                say(f"skipped {item.key}: {exc}")
            else:  # export/lowering/runtime failure of one item
                summary.failures.append((item.key, _one_line(exc)))
                logger.debug("profiling %s failed", item.key, exc_info=(type(exc), exc, exc.__traceback__))
                say(f"failed {item.key}: {_one_line(exc)} ({len(item.sessions)} stored session(s) kept)")

        run_sessions(items, config, SessionHooks(on_session=on_session, on_done=on_done, on_fail=on_fail, on_start=on_start))


def profile_blocks(
    backend: str | Backend,
    specs: Iterable[BlockSpec],
    store,
    config: ProtocolConfig = ProtocolConfig(),
    progress: bool = True,
    force: bool = False,
    wait: bool = True,
) -> RunSummary:
    """Profile every block of ``specs`` not yet in ``store`` for this device and backend, in sessions.

    ``force`` re-measures stored blocks and replaces them; ``wait=False`` refuses
    at once when another profiling run holds this machine.
    """
    backend = get_backend(backend)
    unique: dict[tuple[str, int], BlockSpec] = {}
    for spec in specs:
        unique.setdefault((spec.key, spec.batch), spec)
    items = [_Todo(key, batch, spec.to_dict(), (lambda s=spec: block_item(backend, s, config)))
             for (key, batch), spec in unique.items()]
    return _run(backend, store, config, "block", items, progress, force=force, wait=wait)


def profile_models(
    backend: str | Backend,
    space,
    archs: Iterable,
    store,
    config: ProtocolConfig = ProtocolConfig(),
    progress: bool = True,
    force: bool = False,
    wait: bool = True,
) -> RunSummary:
    """Profile whole models (key ``model:<space>:<arch>``) not yet in ``store``, in sessions (``force``, ``wait``: as blocks)."""
    backend = get_backend(backend)
    space = _space(space)
    seen: dict[str, str] = {}
    for arch in archs:
        arch_str = space.format_arch(space.parse_arch(arch))
        seen.setdefault(model_key(space.name, arch_str), arch_str)
    items = [_Todo(key, space.batch, model_spec(space, a), (lambda a=a: model_item(backend, space, a, config)))
             for key, a in seen.items()]
    return _run(backend, store, config, "model", items, progress, force=force, wait=wait)
