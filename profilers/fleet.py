"""Profile one block table on a fleet of devices at once, the driver alone writing the store.

A device lab is several machines, each reached through a backend: usually a
``latnas agent serve`` behind the ``remote`` backend, or a Ray node that owns
a device and runs a local backend. :func:`profile_fleet`

1. probes every device where it runs (its fingerprint is computed there);
2. groups devices by fingerprint: identical devices share one table, and the
   blocks of that table not yet stored fan out over them;
3. keeps **at most one block in flight per device** (two measurements on one
   device at once corrupt each other's timings). On Ray each device is also a
   custom resource ``device:<name>`` of capacity 1, held by the device's actor
   (one per device, one call at a time) for the whole run, so even two
   drivers on one cluster never share a device;
4. writes every result from the driver, one commit per block, through
   :class:`profilers.store.ProfileStore` (its durability and resume
   guarantees stay as they are: workers never touch SQLite);
5. re-queues the block of a worker or device that died (to another device
   of the group, or the same once it is back) up to ``retries`` times; a
   device that fails ``max_strikes`` times in a row is retired. Whatever is
   left is profiled by the next run (resume).

``dispatch="ray"`` runs measurements on Ray actors (``RAY_ADDRESS`` or
``address`` joins a cluster; otherwise a local Ray starts with one
``device:<name>`` resource per device). ``dispatch="threads"`` reaches remote
agents directly from driver threads, without Ray.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from latnas.errors import BackendUnavailable, DataError, LatnasError
from latnas.spec import BlockSpec
from profilers.base import Backend, Measurement, ProtocolConfig

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DISPATCHES = ("ray", "threads")
RECOVER_TIMEOUT_S = 120.0  # how long a device's restarted Ray worker may take to answer again


# ------------------------------------------------------------------ devices
@dataclass(frozen=True, eq=False)
class FleetDevice:
    """One device of the lab and how to reach it."""

    name: str  # unique id: letters, digits, ``._-``
    backend: str | type = "remote"  # registered backend name (or a Backend subclass)
    options: dict[str, Any] = field(default_factory=dict)  # backend constructor options (url, token, ...)
    resource: str | None = None  # Ray resource the device is; default ``device:<name>``
    num_cpus: float = 0.0  # CPUs a measurement holds on its Ray node (use 1 for a local CPU backend)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DataError(f"device name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(self.options, dict):
            raise DataError(f"device {self.name}: options must be an object")
        if self.num_cpus < 0:
            raise DataError(f"device {self.name}: num_cpus must be >= 0")

    @property
    def ray_resource(self) -> str:
        return self.resource or f"device:{self.name}"

    @property
    def backend_name(self) -> str:
        return self.backend if isinstance(self.backend, str) else getattr(self.backend, "name", "") or self.backend.__name__

    def make_backend(self) -> Backend:
        if isinstance(self.backend, type):
            try:
                return self.backend(**self.options)
            except (TypeError, ValueError) as exc:
                raise BackendUnavailable(f"device {self.name}: bad options: {exc}") from None
        from profilers.runner import get_backend

        return get_backend(self.backend, **self.options)


def load_fleet(path: str | Path) -> list[FleetDevice]:
    """Devices from a JSON file ``{"devices": [{"name", "backend", "options", "resource", "num_cpus"}]}``.

    An option ``"token_env": "VAR"`` is replaced by ``"token"`` read from that
    environment variable, so tokens need not sit in the file.
    """
    import os

    from latnas import safe_json

    data = safe_json.load(path, what="fleet file")
    items = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise DataError(f"fleet file {path}: expected {{\"devices\": [...]}} with at least one device")
    devices: list[FleetDevice] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DataError(f"fleet file {path}: device {i} needs a \"name\"")
        unknown = set(item) - {"name", "backend", "options", "resource", "num_cpus"}
        if unknown:
            raise DataError(f"fleet file {path}: device {item['name']}: unknown field {sorted(unknown)[0]!r}")
        options = dict(item.get("options") or {})
        var = options.pop("token_env", None)
        if var is not None:
            if not isinstance(var, str) or var not in os.environ:
                raise DataError(f"device {item['name']}: token_env {var!r} is not set in the environment")
            options["token"] = os.environ[var]
        try:
            num_cpus = float(item.get("num_cpus", 0.0))
        except (TypeError, ValueError):
            raise DataError(f"device {item['name']}: num_cpus must be a number") from None
        devices.append(FleetDevice(item["name"], str(item.get("backend", "remote")), options,
                                   item.get("resource"), num_cpus))
    check_devices(devices)
    return devices


def check_devices(devices: Sequence[FleetDevice]) -> None:
    names = [d.name for d in devices]
    if not devices:
        raise DataError("a fleet needs at least one device")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise DataError(f"device name {dup!r} appears twice in the fleet")
    res = [d.ray_resource for d in devices]
    dup = next((r for r in res if res.count(r) > 1), None)
    if dup:
        raise DataError(f"Ray resource {dup!r} is given to two devices (one resource per device)")


# --------------------------------------------------- work run on a device
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
    from profilers.runner import profile_block, profile_model

    if "model" in item:
        from latnas.spaces import get_space

        m = item["model"]
        space = get_space(m["space"], batch=int(m["batch"]))
        return profile_model(_backend(device), space, m["arch"], config, fingerprint=fingerprint)
    return profile_block(_backend(device), BlockSpec.from_dict(item["spec"]), config, fingerprint=fingerprint)


# ---------------------------------------------------------------- dispatch
class _Threads:
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


class _Ray:
    """A Ray actor per device, each holding the device's resource (capacity 1) while the run lasts.

    A long-lived actor (rather than one task per block) keeps its worker
    process, backend and agent connection; since it holds ``device:<name>``,
    no other task or driver can measure on that device meanwhile. An actor
    whose process dies is restarted by Ray (the call in flight fails and its
    block is re-queued by the scheduler).
    """

    def __init__(self, devices: Sequence[FleetDevice], address: str | None, max_restarts: int = 3):
        from latnas.executors.ray_executor import ensure_ray, import_ray

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


# ------------------------------------------------------------------ summary
@dataclass
class FleetSummary:
    """What a fleet run did, per fingerprint group and per device."""

    groups: dict[str, list[str]] = field(default_factory=dict)  # fingerprint -> device names
    total: int = 0  # blocks x groups
    skipped: int = 0  # already stored
    done: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (device, key, one line)
    retried: int = 0  # blocks put back in the queue after a lost worker/device
    left: int = 0  # not profiled: every device of their group retired (the next run resumes)
    per_device: dict[str, int] = field(default_factory=dict)  # device -> blocks measured
    unavailable: dict[str, str] = field(default_factory=dict)  # device -> reason it was not used
    retired: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("groups", "total", "skipped", "done", "retried", "left",
                                               "per_device", "unavailable", "retired", "wall_s")} | {
            "failed": self.failed, "failures": [list(f) for f in self.failures]}


# -------------------------------------------------------------------- run
def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[item]}"), console=Console(stderr=True), disable=not enabled)


@dataclass
class _Group:
    fingerprint: str
    backend: str
    devices: list[FleetDevice]
    queue: deque  # of (key, batch, spec dict)


def _unique(specs: Iterable[BlockSpec]) -> list[tuple[str, int, dict[str, Any]]]:
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for spec in specs:
        spec.validate()
        seen.setdefault((spec.key, spec.batch), {"spec": spec.to_dict()})
    return [(k, b, d) for (k, b), d in seen.items()]


def model_items(space, archs: Iterable) -> list[tuple[str, int, dict[str, Any]]]:
    """Whole models of ``space`` (a SearchSpace) as fleet items, keyed ``model:<space>:<arch>`` like the runner."""
    from profilers.runner import model_key

    seen: dict[str, dict[str, Any]] = {}
    for arch in archs:
        arch_str = space.format_arch(space.parse_arch(arch))
        seen.setdefault(model_key(space.name, arch_str), {"model": {"space": space.name, "arch": arch_str, "batch": space.batch}})
    return [(k, space.batch, d) for k, d in seen.items()]


class Fleet:
    """The devices of a lab, connected once (Ray actors or driver threads) for one or more runs.

    ``with Fleet(devices, dispatch="ray") as fleet: fleet.profile(specs, store, config)``.
    Reusing a fleet across runs (blocks, then models of another table) keeps
    the device workers and their connections; :func:`profile_fleet` is the
    one-run shortcut. ``max_strikes``: consecutive losses after which a device
    is retired for the rest of the run.
    """

    def __init__(self, devices: Sequence[FleetDevice], dispatch: str = "ray", address: str | None = None, max_strikes: int = 3):
        check_devices(devices)
        if dispatch not in DISPATCHES:
            raise DataError(f"unknown fleet dispatch {dispatch!r} (known: {', '.join(DISPATCHES)})")
        if max_strikes < 1:
            raise DataError("max_strikes must be >= 1")
        self.devices = list(devices)
        self.dispatch = dispatch
        self.max_strikes = int(max_strikes)
        self.runner = _Ray(self.devices, address, max_restarts=max_strikes) if dispatch == "ray" else _Threads(self.devices)

    def profile(
        self,
        specs: Iterable[BlockSpec],
        store,
        config: ProtocolConfig = ProtocolConfig(),
        retries: int = 2,
        progress: bool = True,
        on_result: Callable[[str, Measurement], None] | None = None,
        models: tuple[Any, Iterable] | None = None,
    ) -> FleetSummary:
        """Profile the blocks of ``specs`` missing from ``store`` on every fingerprint group.

        ``models=(space, archs)`` adds whole models (key ``model:<space>:<arch>``).
        ``retries``: times a block lost with its worker/device is re-queued.
        ``on_result(device, measurement)`` is called on the driver after each commit.
        """
        from profilers.protocol import check_config

        check_config(config)
        if retries < 0:
            raise DataError("retries must be >= 0")
        items = _unique(specs) + (model_items(*models) if models is not None else [])
        start = time.perf_counter()
        summary = FleetSummary()
        groups = _probe_all(self.runner, self.devices, store, config, items, summary)
        _schedule(self.runner, groups, store, config, retries, self.max_strikes, progress, on_result, summary)
        summary.wall_s = time.perf_counter() - start
        return summary

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def profile_fleet(
    devices: Sequence[FleetDevice],
    specs: Iterable[BlockSpec],
    store,
    config: ProtocolConfig = ProtocolConfig(),
    dispatch: str = "ray",
    address: str | None = None,
    retries: int = 2,
    max_strikes: int = 3,
    progress: bool = True,
    on_result: Callable[[str, Measurement], None] | None = None,
    models: tuple[Any, Iterable] | None = None,
) -> FleetSummary:
    """One run of :class:`Fleet`: connect, :meth:`Fleet.profile`, disconnect."""
    with Fleet(devices, dispatch, address, max_strikes) as fleet:
        return fleet.profile(specs, store, config, retries, progress, on_result, models)


def _probe_all(runner, devices, store, config, items, summary: FleetSummary) -> list[_Group]:
    futures = {d.name: runner.probe(d, config.threads) for d in devices}
    groups: dict[str, _Group] = {}
    for d in devices:
        try:
            res = futures[d.name].result()
        except Exception as exc:  # the probe task itself died
            res = {"ok": False, "reason": _one_line(runner.unwrap(exc))}
        if not res.get("ok"):
            summary.unavailable[d.name] = str(res.get("reason", ""))
            continue
        fp = res["fingerprint"]
        if fp not in groups:
            store.add_fingerprint(fp, res["info"])
            stored = store.stored_keys(res["backend"], fp)
            todo = [it for it in items if (it[0], it[1]) not in stored]
            summary.total += len(items)
            summary.skipped += len(items) - len(todo)
            groups[fp] = _Group(fp, res["backend"], [], deque(todo))
        groups[fp].devices.append(d)
        summary.groups.setdefault(fp, []).append(d.name)
    if not groups:
        reasons = "; ".join(f"{k}: {v}" for k, v in summary.unavailable.items())
        raise BackendUnavailable(f"no device of the fleet is available ({reasons})")
    return list(groups.values())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _schedule(runner, groups, store, config, retries, max_strikes, progress, on_result, summary: FleetSummary) -> None:
    attempts: dict[tuple[str, str, int], int] = {}
    strikes: dict[str, int] = {}
    in_flight: dict[cf.Future, tuple[_Group, FleetDevice, tuple[str, int, dict[str, Any]] | None]] = {}
    idle: list[tuple[_Group, FleetDevice]] = [(g, d) for g in groups for d in g.devices]
    with _progress(progress) as bar:
        tasks = {d.name: bar.add_task(f"{d.name} ({g.fingerprint[:8]})", total=len(g.queue), item="")
                 for g in groups for d in g.devices}
        while True:
            still_idle = []
            for g, d in idle:
                if g.queue:
                    item = g.queue.popleft()
                    bar.update(tasks[d.name], item=item[0])
                    in_flight[runner.measure(d, item[2], config, g.fingerprint)] = (g, d, item)
                else:
                    still_idle.append((g, d))
            idle = still_idle
            if not in_flight:
                break
            done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                g, d, item = in_flight.pop(fut)
                if item is None:  # a device coming back after a loss
                    try:
                        fut.result()
                    except Exception as exc:
                        summary.retired.append(d.name)
                        bar.update(tasks[d.name], item="retired")
                        bar.console.print(f"{d.name}: retired ({_one_line(runner.unwrap(exc))})", markup=False, highlight=False)
                    else:
                        idle.append((g, d))
                    continue
                key = (g.fingerprint, item[0], item[1])
                try:
                    m = fut.result()
                except Exception as exc:
                    if runner.lost(exc):
                        strikes[d.name] = strikes.get(d.name, 0) + 1
                        attempts[key] = attempts.get(key, 0) + 1
                        why = _one_line(runner.unwrap(exc))
                        if attempts[key] > retries:
                            summary.failures.append((d.name, item[0], f"lost {attempts[key]} times: {why}"))
                        else:
                            g.queue.appendleft(item)  # another device of the group (or this one) takes it next
                            summary.retried += 1
                        bar.console.print(f"{d.name}: lost {item[0]} ({why})", markup=False, highlight=False)
                        if strikes[d.name] >= max_strikes:
                            summary.retired.append(d.name)
                            bar.update(tasks[d.name], item="retired")
                        else:  # next block only once the device (its restarted worker) answers again
                            in_flight[runner.recover(d)] = (g, d, None)
                        continue
                    else:
                        strikes[d.name] = 0
                        why = _one_line(runner.unwrap(exc))
                        summary.failures.append((d.name, item[0], why))
                        bar.console.print(f"{d.name}: failed {item[0]}: {why}", markup=False, highlight=False)
                        bar.advance(tasks[d.name])
                else:
                    strikes[d.name] = 0
                    store.put(m)  # the driver alone writes: one commit per block
                    summary.measurements.append(m)
                    summary.done += 1
                    summary.per_device[d.name] = summary.per_device.get(d.name, 0) + 1
                    bar.advance(tasks[d.name])
                    if on_result is not None:
                        on_result(d.name, m)
                idle.append((g, d))
    summary.left = sum(len(g.queue) for g in groups)


__all__ = ["Fleet", "FleetDevice", "FleetSummary", "check_devices", "load_fleet", "measure_on_device", "model_items", "probe_device", "profile_fleet"]
