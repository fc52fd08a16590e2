"""Latency profilers: the measurement protocol, backends, fingerprints and the store.

Public API::

    get_backend(name, **opts)         a backend instance ("torch-cpu", "onnxruntime", "executorch", ...)
    available_backends()              name -> (available, reason)
    measure(fn, config)               time a zero-argument callable -> LatencyStats
    profile_block(backend, spec, config)          -> Measurement
    profile_model(backend, space, arch, config)   -> Measurement
    profile_blocks / profile_models   resumable runs into a ProfileStore
    ProfileStore(path)                SQLite store keyed by device fingerprint
    device_fingerprint(backend)       (hash, info) of this device + runtime

The names are loaded on first use (module ``__getattr__``), and backends on
the first ``get_backend``/``available_backends``, so ``import profilers`` and
``import profilers.base`` import neither torch nor numpy nor any runtime.
"""
from __future__ import annotations

from latnas.schema.lazy import lazy_exports

_EXPORTS = {
    "BACKENDS": "profilers.base",
    "Backend": "profilers.base",
    "LatencyStats": "profilers.base",
    "Measurement": "profilers.base",
    "ProtocolConfig": "profilers.base",
    "register_backend": "profilers.base",
    "device_fingerprint": "profilers.fingerprint",
    "QUICK_CONFIG": "profilers.protocol",
    "measure": "profilers.protocol",
    "quick_config": "profilers.protocol",
    "summarize": "profilers.protocol",
    "RunSummary": "profilers.runner",
    "available_backends": "profilers.runner",
    "get_backend": "profilers.runner",
    "profile_block": "profilers.runner",
    "profile_blocks": "profilers.runner",
    "profile_model": "profilers.runner",
    "profile_models": "profilers.runner",
    "require_available": "profilers.runner",
    "ProfileStore": "profilers.store",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
