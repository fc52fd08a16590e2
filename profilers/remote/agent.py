"""The agent's work: profile a validated request with a local backend.

Runs on the device being measured. Blocks and models are built here from the
agent's own op and space registries and timed through the runner, so each
measurement carries exactly the fingerprint a local run would record.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from latnas.schema.errors import DataError
from latnas.schema.spec import BlockSpec
from profilers.base import BACKENDS, Backend, ProtocolConfig
from profilers.remote.wire import ModelRequest, check_backend_options

logger = logging.getLogger(__name__)


def load_backends() -> None:
    """Import the built-in backends so that they register themselves."""
    try:
        import profilers.backends  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the other modules
        logger.warning("could not import profilers.backends: %s", exc)


def local_fingerprint(backend: Backend | None = None, threads: int = 1) -> tuple[dict[str, Any], str]:
    """This machine's fingerprint dict and its short hash.

    With a backend this is exactly what a local run of that backend on the
    agent records (:func:`profilers.fingerprint.device_fingerprint`); it is
    returned with every measurement so clients can see where it was timed.
    """
    from profilers.fingerprint import device_fingerprint, fingerprint_hash, host_info

    if backend is None:
        info = host_info()
        return info, fingerprint_hash(info)
    digest, info = device_fingerprint(backend, threads)
    return info, digest


def backends_status() -> dict[str, dict[str, Any]]:
    """Availability of every registered local backend (remote ones excluded)."""
    load_backends()
    out: dict[str, dict[str, Any]] = {}
    for name in BACKENDS.names():
        if BACKENDS.get(name).remote:
            continue
        versions: dict[str, str] = {}
        try:
            backend = BACKENDS.get(name)()
            ok, reason = backend.availability()
            if ok:
                versions = {str(k): str(v) for k, v in (backend.versions() or {}).items()}
        except Exception as exc:  # a broken backend must not break /info
            ok, reason = False, " ".join(str(exc).split()) or type(exc).__name__
        out[name] = {"available": bool(ok), "reason": reason, "versions": versions}
    return out


def local_backend(backend_name: str, options: dict[str, Any] | None) -> Backend:
    """An available local backend built with client ``options`` (allowlisted first)."""
    from profilers.runner import require_available

    load_backends()
    cls = BACKENDS.get(backend_name)
    if cls.remote:
        raise DataError("the agent does not forward to another agent: name a local backend")
    check_backend_options(backend_name, options or {})
    try:
        backend = cls(**(options or {}))
    except (TypeError, ValueError) as exc:
        raise DataError(f"backend {backend_name!r}: bad options: {' '.join(str(exc).split())}") from None
    return require_available(backend)


def measurement_dict(m, fp: dict[str, Any], fp_hash: str) -> dict[str, Any]:
    """One measurement as it goes over the wire."""
    return {
        "key": m.key,
        "kind": m.kind,
        "backend": m.backend,
        "batch": m.batch,
        "spec": m.spec,
        "stats": m.stats.to_dict(),
        "fingerprint": fp,
        "fingerprint_hash": fp_hash,
        "created": m.created,
        # added after v1's first release; clients that do not know them ignore them
        "precision": m.precision,
        "layout": m.layout,
        "meta": m.meta,
        # the session protocol (profilers.sessions): every session's stats, their spread, how they were aggregated
        "sessions": [s.to_dict() for s in m.sessions],
        "spread": m.spread,
        "protocol": m.protocol,
    }


def profile_specs(
    backend_name: str,
    specs: Sequence[BlockSpec],
    config: ProtocolConfig,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Time ``specs`` with a local backend in interleaved sessions; return JSON-ready measurement dicts.

    The sessions of the request's blocks are interleaved as in a local run
    (pass 1 over all blocks, then pass 2, ...; :mod:`profilers.sessions`). A
    client that runs the protocol itself sends ``sessions=1`` per call.
    A block whose session fails fails the request with that error, as before.
    """
    from profilers.items import block_item, measurement_of
    from profilers.sessions import SessionHooks, run_sessions

    backend = local_backend(backend_name, options)
    fp, fp_hash = local_fingerprint(backend, config.threads)
    for spec in specs:
        spec.validate()
    items = [block_item(backend, spec, config) for spec in specs]
    errors: list[BaseException] = []
    run_sessions(items, config, SessionHooks(on_fail=lambda item, exc: errors.append(exc)))
    if errors:
        raise errors[0]
    return [measurement_dict(measurement_of(backend, "block", spec.key, spec.batch, spec.to_dict(), item.sessions, config,
                                            fp_hash), fp, fp_hash) for spec, item in zip(specs, items)]


def profile_models(
    backend_name: str,
    models: Sequence[ModelRequest],
    config: ProtocolConfig,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Time whole models with a local backend (via the runner); JSON-ready measurement dicts."""
    from latnas.schema.spaces import get_space
    from profilers.runner import profile_model

    backend = local_backend(backend_name, options)
    fp, fp_hash = local_fingerprint(backend, config.threads)
    out = []
    for req in models:
        m = profile_model(backend, get_space(req.space, batch=req.batch), req.arch, config, fingerprint=fp_hash)
        out.append(measurement_dict(m, fp, fp_hash))
    return out


def agent_info(default_backend: str) -> dict[str, Any]:
    """The ``GET /v1/info`` reply: version, default backend, backends, host fingerprint."""
    from latnas.schema import __version__

    fp, fp_hash = local_fingerprint(None)
    return {
        "agent": "latnas",
        "version": __version__,
        "default_backend": default_backend,
        "backends": backends_status(),
        "fingerprint": fp,
        "fingerprint_hash": fp_hash,
    }
