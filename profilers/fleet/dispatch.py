"""Where a device's work runs: Ray actors (one per device, holding its resource) or driver threads.

Both dispatchers offer the same small interface to the scheduler: ``probe``,
``measure`` and ``recover`` return ``concurrent.futures.Future`` objects,
``lost(exc)`` says whether a failure lost the block with its worker/device
(re-queue it) rather than the block failing on its own, ``unwrap`` finds the
user-level exception inside a Ray error.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import time
from typing import Any, Sequence

from latnas.schema.errors import BackendUnavailable, DataError, LatnasError
from latnas.schema.spec import BlockSpec
from profilers.base import Backend, Measurement, ProtocolConfig
from profilers.fleet.devices import FleetDevice

logger = logging.getLogger(__name__)

RECOVER_TIMEOUT_S = 120.0  # how long a device's restarted Ray worker may take to answer again


_CACHE: dict[str, Backend] = {}  # per process (driver thread or Ray worker): one backend per device


def _backend(device: FleetDevice) -> Backend:
    key = f"{device.name}|{device.backend_name}|{json.dumps(device.options, sort_keys=True, default=str)}"
    if key not in _CACHE:
        _CACHE[key] = device.make_backend()
    return _CACHE[key]


def probe_device(device: FleetDevice, threads: int) -> dict[str, Any]:
    """Where the device runs: ``{"ok", "reason", "fingerprint", "info", "backend"}``."""
    from profilers.fingerprint import device_fingerprint

    try:
        backend = _backend(device)
        ok, reason = backend.availability()
        if not ok:
            return {"ok": False, "reason": reason}
        fp, info = device_fingerprint(backend, threads)
    except LatnasError as exc:
        return {"ok": False, "reason": str(exc)}
    return {"ok": True, "reason": "", "fingerprint": fp, "info": info, "backend": backend.name}


def measure_on_device(device: FleetDevice, item: dict[str, Any], config: ProtocolConfig, fingerprint: str) -> Measurement:
    """Time one item on ``device``: ``{"spec": BlockSpec.to_dict()}`` or ``{"model": {"space", "arch", "batch"}}``.

    The measurement carries the group's fingerprint (computed by the probe).
    """
    import contextlib

    from profilers.lock import profiling_lock
    from profilers.runner import profile_block, profile_model

    backend = _backend(device)
    # a backend timing on this host holds the machine's profiling lock (an agent takes its own)
    with contextlib.nullcontext() if backend.remote else profiling_lock(notify=logger.info):
        if "model" in item:
            from latnas.schema.spaces import get_space

            m = item["model"]
            space = get_space(m["space"], batch=int(m["batch"]))
            return profile_model(backend, space, m["arch"], config, fingerprint=fingerprint)
        return profile_block(backend, BlockSpec.from_dict(item["spec"]), config, fingerprint=fingerprint)


# ---------------------------------------------------------------- dispatch
class ThreadDispatch:
    """Devices reached directly from this process (remote agents): one thread each."""

    def __init__(self, devices: Sequence[FleetDevice]):
        for d in devices:
            if len(devices) > 1 and not getattr(d.make_backend(), "remote", False):
                raise DataError(f"device {d.name}: backend {d.backend_name!r} times on this host; "
                                "side by side from one process only remote agents can be profiled (use Ray: one node per device)")
        self.pool = cf.ThreadPoolExecutor(max_workers=max(1, len(devices)), thread_name_prefix="latnas-fleet")

    def probe(self, device: FleetDevice, threads: int) -> cf.Future:
        return self.pool.submit(probe_device, device, threads)

    def measure(self, device: FleetDevice, item: dict[str, Any], config: ProtocolConfig, fp: str) -> cf.Future:
        return self.pool.submit(measure_on_device, device, item, config, fp)

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, BackendUnavailable)

    def recover(self, device: FleetDevice) -> cf.Future:
        """A device reached directly is retried at once (its strikes bound the retries)."""
        done: cf.Future = cf.Future()
        done.set_result(True)
        return done

    def unwrap(self, exc: BaseException) -> BaseException:
        return exc

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class _DeviceActor:
    """One per device on Ray: holds the device's resource for its lifetime, one call at a time."""

    def __init__(self, device: FleetDevice):
        self.device = device

    def probe(self, threads: int) -> dict[str, Any]:
        return probe_device(self.device, threads)

    def ping(self) -> bool:
        return True

    def measure(self, item: dict[str, Any], config: ProtocolConfig, fp: str) -> Measurement:
        return measure_on_device(self.device, item, config, fp)


class RayDispatch:
    """A Ray actor per device, each holding the device's resource (capacity 1) while the run lasts.

    A long-lived actor (rather than one task per block) keeps its worker
    process, backend and agent connection; since it holds ``device:<name>``,
    no other task or driver can measure on that device meanwhile. An actor
    whose process dies is restarted by Ray (the call in flight fails and its
    block is re-queued by the scheduler).
    """

    def __init__(self, devices: Sequence[FleetDevice], address: str | None, max_restarts: int = 3):
        from profilers.ray_connect import ensure_ray, import_ray

        self.ray = ray = import_ray()
        self.started = ensure_ray(address, resources={d.ray_resource: 1.0 for d in devices})
        have = ray.cluster_resources()
        for d in devices:
            if d.ray_resource not in have:
                if self.started:
                    ray.shutdown()
                raise BackendUnavailable(
                    f"device {d.name}: the Ray cluster has no resource {d.ray_resource!r} "
                    f"(start the node that reaches it with: ray start --resources='{{\"{d.ray_resource}\": 1}}')")
            if have[d.ray_resource] != 1:
                logger.warning("resource %s has capacity %s, not 1: measurements may share the device",
                               d.ray_resource, have[d.ray_resource])
        self._waiters = cf.ThreadPoolExecutor(max_workers=max(1, len(devices)), thread_name_prefix="latnas-fleet-recover")
        cls = ray.remote(_DeviceActor)
        self.actors = {
            d.name: cls.options(resources={d.ray_resource: 1.0}, num_cpus=d.num_cpus, max_concurrency=1,
                                max_restarts=max_restarts, max_task_retries=0).remote(d)
            for d in devices
        }

    def probe(self, device: FleetDevice, threads: int) -> cf.Future:
        return self.actors[device.name].probe.remote(threads).future()

    def measure(self, device: FleetDevice, item: dict[str, Any], config: ProtocolConfig, fp: str) -> cf.Future:
        return self.actors[device.name].measure.remote(item, config, fp).future()

    def recover(self, device: FleetDevice, timeout_s: float = RECOVER_TIMEOUT_S) -> cf.Future:
        """Resolves once the device's actor answers again (Ray restarts a dead one); fails if it is gone for good."""
        return self._waiters.submit(self._wait_alive, device.name, timeout_s)

    def _wait_alive(self, name: str, timeout_s: float) -> bool:
        errors = self.ray.exceptions
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return bool(self.ray.get(self.actors[name].ping.remote(), timeout=max(1.0, deadline - time.monotonic())))
            except errors.ActorDiedError:
                raise
            except (errors.ActorUnavailableError, errors.GetTimeoutError):
                if time.monotonic() >= deadline:
                    raise BackendUnavailable(f"device {name}: its worker did not come back within {timeout_s:.0f} s") from None
                time.sleep(0.5)

    def unwrap(self, exc: BaseException) -> BaseException:
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc

    def lost(self, exc: BaseException) -> bool:
        """A dead worker or node, or an unreachable device: the block goes back in the queue."""
        if isinstance(self.unwrap(exc), BackendUnavailable):
            return True
        return isinstance(exc, self.ray.exceptions.RayError) and not isinstance(exc, self.ray.exceptions.RayTaskError)

    def close(self) -> None:
        self._waiters.shutdown(wait=False, cancel_futures=True)
        for actor in self.actors.values():
            self.ray.kill(actor)
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
