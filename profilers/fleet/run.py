"""The driver side of a fleet run: probe, group by fingerprint, schedule one session per device (interleaved), write the store."""
from __future__ import annotations

import concurrent.futures as cf
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from latnas.schema.errors import BackendUnavailable, DataError
from latnas.schema.spec import BlockSpec
from profilers.base import Measurement, ProtocolConfig
from profilers.sessions import aggregate, needs_more, protocol_label, spread
from profilers.fleet.devices import FleetDevice, check_devices
from profilers.fleet.dispatch import RayDispatch, ThreadDispatch

DISPATCHES = ("ray", "threads")


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
    queue: deque  # of (key, batch, spec dict); an item needing another session goes back to the end
    sessions: dict = field(default_factory=dict)  # (key, batch) -> session stats so far (resumed ones first)


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
        self.runner = RayDispatch(self.devices, address, max_restarts=max_strikes) if dispatch == "ray" else ThreadDispatch(self.devices)

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
            groups[fp] = _Group(fp, res["backend"], [], deque(todo),
                                {k: list(v) for k, v in store.pending_sessions(res["backend"], fp).items()})
        groups[fp].devices.append(d)
        summary.groups.setdefault(fp, []).append(d.name)
    if not groups:
        reasons = "; ".join(f"{k}: {v}" for k, v in summary.unavailable.items())
        raise BackendUnavailable(f"no device of the fleet is available ({reasons})")
    return list(groups.values())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _one_session(m: Measurement, g: _Group, store, config: ProtocolConfig) -> Measurement | None:
    """Record one session of an item; the item's measurement once it needs no more sessions, else None."""
    done = g.sessions.setdefault((m.key, m.batch), [])
    done.append(m.stats)
    store.add_session(m.key, m.backend, m.batch, len(done) - 1, m.stats, m.fingerprint, m.precision, m.layout)
    if needs_more(done, config):
        return None
    del g.sessions[(m.key, m.batch)]
    return replace(m, stats=aggregate(done, config), sessions=tuple(done), spread=spread([s.median_ms for s in done]),
                   protocol=protocol_label(config))


def _schedule(runner, groups, store, config, retries, max_strikes, progress, on_result, summary: FleetSummary) -> None:
    """Sessions interleaved per group: one session per dispatch, the item re-queued at the end while it needs more."""
    one = replace(config, sessions=1, extra_sessions=0)
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
                    in_flight[runner.measure(d, item[2], one, g.fingerprint)] = (g, d, item)
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
                    m = _one_session(m, g, store, config)  # the driver alone writes: one commit per session
                    if m is None:
                        g.queue.append(item)  # its next session comes after the other items' (interleaved)
                        idle.append((g, d))
                        continue
                    store.put(m)
                    summary.measurements.append(m)
                    summary.done += 1
                    summary.per_device[d.name] = summary.per_device.get(d.name, 0) + 1
                    bar.advance(tasks[d.name])
                    if on_result is not None:
                        on_result(d.name, m)
                idle.append((g, d))
    summary.left = sum(len(g.queue) for g in groups)
