"""Profile many blocks or whole models into a store, resumably.

``profile_blocks`` / ``profile_models`` skip what the store already holds for
this device fingerprint and backend, profile the rest one by one (each result
committed at once), show a progress bar with ETA, and return a
:class:`RunSummary`. A block that fails to export or run is reported in one
line and skipped; the run goes on.

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

from latnas.errors import BackendUnavailable, LatnasError
from latnas.spec import BlockSpec
from profilers.base import BACKENDS, EXAMPLE_SEED, Backend, Measurement, ProtocolConfig, example_input  # noqa: F401 (re-exported)
from profilers.fingerprint import device_fingerprint
from profilers.lock import profiling_lock
from profilers.protocol import check_config

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
    cls = BACKENDS.get(name)
    try:
        return cls(**opts)
    except (TypeError, ValueError) as exc:
        raise BackendUnavailable(f"backend {name!r}: bad options: {exc}") from None


def require_available(backend: Backend) -> Backend:
    ok, reason = backend.availability()
    if not ok:
        raise BackendUnavailable(f"backend {backend.name!r} is not available here: {reason}")
    return backend


# ----------------------------------------------------------------- one item
def _fingerprint(backend: Backend, config: ProtocolConfig, fingerprint: str | None) -> str:
    return fingerprint or device_fingerprint(backend, config.threads)[0]


def profile_block(
    backend: str | Backend, spec: BlockSpec, config: ProtocolConfig = ProtocolConfig(), fingerprint: str | None = None
) -> Measurement:
    """Measure one block; returns a :class:`Measurement` (not stored)."""
    backend = get_backend(backend)
    check_config(config)
    spec.validate()
    result = backend.measure_spec(spec, config)
    stats = result[0] if isinstance(result, tuple) else result  # tolerate overrides returning bare stats
    return Measurement(
        key=spec.key,
        kind="block",
        backend=backend.name,
        fingerprint=_fingerprint(backend, config, fingerprint),
        batch=spec.batch,
        stats=stats,
        spec=spec.to_dict(),
        created=time.time(),
        precision=backend.precision,
        layout=backend.layout,
        meta=backend.measurement_meta(),
    )


def _space(space):
    if isinstance(space, str):
        from latnas.spaces import get_space

        return get_space(space)
    return space


def model_key(space_name: str, arch: str) -> str:
    return f"model:{space_name}:{arch}"


def profile_model(
    backend: str | Backend, space, arch, config: ProtocolConfig = ProtocolConfig(), fingerprint: str | None = None
) -> Measurement:
    """Measure one whole model of ``space`` (a name or SearchSpace); key ``model:<space>:<arch>``."""
    backend = get_backend(backend)
    check_config(config)
    space = _space(space)
    arch_str = space.format_arch(space.parse_arch(arch))
    stats = backend.measure_model(space.name, arch_str, space.batch, config, space=space)
    return Measurement(
        key=model_key(space.name, arch_str),
        kind="model",
        backend=backend.name,
        fingerprint=_fingerprint(backend, config, fingerprint),
        batch=space.batch,
        stats=stats,
        spec={"space": space.name, "arch": arch_str, "batch": space.batch},
        created=time.time(),
        precision=backend.precision,
        layout=backend.layout,
        meta=backend.measurement_meta(),
    )


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


def _run(
    backend: Backend,
    store,
    config: ProtocolConfig,
    kind: str,
    items: list[tuple[str, int, Callable[[str], Measurement]]],
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
    todo = [it for it in items if (it[0], it[1]) not in stored]
    start = time.perf_counter()
    lock = profiling_lock(wait=wait, notify=_notify) if _measures_here(backend) and todo else _no_lock()
    with lock:
        if todo and not force:  # a run we waited for may have stored some of them meanwhile
            stored = store.stored_keys(backend.name, fp)
            todo = [it for it in todo if (it[0], it[1]) not in stored]
        summary.skipped = len(items) - len(todo)
        _measure(backend, store, kind, todo, fp, summary, progress, force)
    summary.wall_s = time.perf_counter() - start
    return summary


def _measure(backend: Backend, store, kind: str, todo: list, fp: str, summary: RunSummary, progress: bool,
             force: bool) -> None:
    """Measure ``todo`` one by one, committing each result (the body of a locked run)."""
    with _progress(progress) as bar:
        task = bar.add_task(f"{backend.name} {kind}s", total=len(todo), item="")
        for key, _batch, run in todo:
            bar.update(task, item=key)
            try:
                m = run(fp)
            except LatnasError as exc:
                summary.failures.append((key, str(exc)))
                bar.console.print(f"skipped {key}: {exc}", markup=False, highlight=False)
            except Exception as exc:  # export/lowering/runtime failure of one item
                summary.failures.append((key, _one_line(exc)))
                logger.debug("profiling %s failed", key, exc_info=True)
                bar.console.print(f"failed {key}: {_one_line(exc)}", markup=False, highlight=False)
            else:
                if store.put(m, replace=force):
                    summary.measurements.append(m)
                    summary.done += 1
                else:
                    summary.kept.append(key)
                    bar.console.print(f"kept the stored measurement of {key} (written by another run meanwhile);"
                                      " use --force to re-measure", markup=False, highlight=False)
            bar.advance(task)


def profile_blocks(
    backend: str | Backend,
    specs: Iterable[BlockSpec],
    store,
    config: ProtocolConfig = ProtocolConfig(),
    progress: bool = True,
    force: bool = False,
    wait: bool = True,
) -> RunSummary:
    """Profile every block of ``specs`` not yet in ``store`` for this device and backend.

    ``force`` re-measures stored blocks and replaces them; ``wait=False`` refuses
    at once when another profiling run holds this machine.
    """
    backend = get_backend(backend)
    unique: dict[tuple[str, int], BlockSpec] = {}
    for spec in specs:
        unique.setdefault((spec.key, spec.batch), spec)
    items = [
        (key, batch, (lambda fp, s=spec: profile_block(backend, s, config, fingerprint=fp)))
        for (key, batch), spec in unique.items()
    ]
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
    """Profile whole models (key ``model:<space>:<arch>``) not yet in ``store`` (``force``, ``wait``: as blocks)."""
    backend = get_backend(backend)
    space = _space(space)
    seen: dict[str, str] = {}
    for arch in archs:
        arch_str = space.format_arch(space.parse_arch(arch))
        seen.setdefault(model_key(space.name, arch_str), arch_str)
    items = [
        (key, space.batch, (lambda fp, a=arch_str: profile_model(backend, space, a, config, fingerprint=fp)))
        for key, arch_str in seen.items()
    ]
    return _run(backend, store, config, "model", items, progress, force=force, wait=wait)
