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

Backends are imported lazily (on first ``get_backend``/``available_backends``)
so ``import profilers`` stays light.
"""
from __future__ import annotations

from profilers.base import BACKENDS, Backend, LatencyStats, Measurement, ProtocolConfig, register_backend
from profilers.fingerprint import device_fingerprint
from profilers.protocol import QUICK_CONFIG, measure, quick_config, summarize
from profilers.runner import (
    RunSummary,
    available_backends,
    get_backend,
    profile_block,
    profile_blocks,
    profile_model,
    profile_models,
    require_available,
)
from profilers.store import ProfileStore

__all__ = [
    "BACKENDS",
    "Backend",
    "LatencyStats",
    "Measurement",
    "ProtocolConfig",
    "QUICK_CONFIG",
    "ProfileStore",
    "RunSummary",
    "available_backends",
    "device_fingerprint",
    "get_backend",
    "measure",
    "profile_block",
    "profile_blocks",
    "profile_model",
    "profile_models",
    "quick_config",
    "register_backend",
    "require_available",
    "summarize",
]
