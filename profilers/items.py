"""Blocks and whole models as session items, and the measurement an item's sessions make.

:func:`block_item` / :func:`model_item` wrap one item for
:func:`profilers.sessions.run_sessions`: a backend that times through
``build`` / ``open_session`` exports or lowers the item once and opens a fresh
session per pass; a backend that overrides ``measure_spec`` / ``measure_model``
(a remote agent, a lookup table) gets one call of that hook per session.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from latnas.schema.spec import BlockSpec
from profilers.base import Backend, LatencyStats, Measurement, ProtocolConfig, example_input
from profilers.protocol import pinned_threads
from profilers.sessions import SessionItem, aggregate, protocol_label, spread


def _one_session_config(config: ProtocolConfig) -> ProtocolConfig:
    return replace(config, sessions=1, extra_sessions=0)


def _bare_stats(result) -> LatencyStats:
    return result[0] if isinstance(result, tuple) else result  # tolerate overrides returning bare stats


def _native(backend: Backend, hook: str) -> bool:
    """True when the backend times through build/open_session (it does not override ``hook``)."""
    return not backend.remote and getattr(type(backend), hook) is getattr(Backend, hook)


def _built(backend: Backend, config: ProtocolConfig, make: Callable[[], tuple[Any, Any]]) -> Any:
    with pinned_threads(config.threads):  # export/lowering also runs with the pinned count
        module, example = make()
        return backend.build(module, example, config)


def block_item(backend: Backend, spec: BlockSpec, config: ProtocolConfig) -> SessionItem:
    """One block as a :class:`SessionItem`: one export, a fresh session per call of ``session``."""
    if _native(backend, "measure_spec"):
        return SessionItem(spec.key, lambda: _built(backend, config, lambda: (spec.build(), example_input(spec.input_shape))),
                           lambda art: backend.measure_session(art, config), backend.release)
    one = _one_session_config(config)  # remote agents, lookup tables: one call of their hook per session
    return SessionItem(spec.key, lambda: spec, lambda s: _bare_stats(backend.measure_spec(s, one)))


def model_item(backend: Backend, space, arch_str: str, config: ProtocolConfig) -> SessionItem:
    """One whole model of ``space`` as a :class:`SessionItem`."""
    key = model_key(space.name, arch_str)
    if _native(backend, "measure_model"):
        make = lambda: (space.build(arch_str), example_input((space.batch, *space.input_shape)))  # noqa: E731
        return SessionItem(key, lambda: _built(backend, config, make), lambda art: backend.measure_session(art, config),
                           backend.release)
    one = _one_session_config(config)
    return SessionItem(key, lambda: arch_str,
                       lambda a: _bare_stats(backend.measure_model(space.name, a, space.batch, one, space=space)))


def measurement_of(backend: Backend, kind: str, key: str, batch: int, spec: dict[str, Any], sessions, config: ProtocolConfig,
                 fingerprint: str, meta: dict[str, Any] | None = None) -> Measurement:
    medians = [s.median_ms for s in sessions]
    return Measurement(
        key=key, kind=kind, backend=backend.name, fingerprint=fingerprint, batch=batch,
        stats=aggregate(sessions, config), spec=spec, created=time.time(),
        precision=backend.precision, layout=backend.layout,
        meta=backend.measurement_meta() if meta is None else meta,
        sessions=tuple(sessions), spread=spread(medians), protocol=protocol_label(config),
    )


def model_key(space_name: str, arch: str) -> str:
    return f"model:{space_name}:{arch}"


def model_spec(space, arch_str: str) -> dict[str, Any]:
    return {"space": space.name, "arch": arch_str, "batch": space.batch}
