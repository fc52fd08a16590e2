"""`latnas profile --executor ray` / `--fleet FILE`: profile a table on many devices at once.

Kept apart from ``profile_cmd`` so that command stays a thin switch: without
``--executor ray`` and ``--fleet`` nothing here runs. ``--executor ray``
without a fleet file profiles on one device, the ``--backend`` given, as a
Ray actor holding ``device:<backend>``; with ``--fleet`` every device of the
file takes part (agents directly from driver threads with ``--executor
local``, through Ray actors with ``--executor ray``).
"""
from __future__ import annotations

from pathlib import Path

from latnas.schema.errors import NothingSucceeded


def fleet_devices(fleet: Path | None, backend: str):
    """The devices of ``fleet`` (a JSON file), or the one ``backend`` of this run."""
    from profilers.fleet import FleetDevice, load_fleet
    from profilers.runner import get_backend

    if fleet is not None:
        return load_fleet(fleet)
    remote = getattr(get_backend(backend), "remote", False)
    return [FleetDevice(backend.replace("_", "-"), backend, {}, num_cpus=0.0 if remote else 1.0)]


def run_fleet_profile(space, backend: str, store: Path, config, executor: str, address: str | None, fleet: Path | None,
                      specs, archs, progress: bool) -> None:
    """Profile ``specs`` (and whole models ``archs``) of ``space`` on the fleet; print a summary.

    The options were checked by :func:`latnas.cli.executor_options.check_executor_options`.
    """
    from rich.console import Console
    from rich.table import Table

    from profilers import ProfileStore
    from profilers.fleet import Fleet

    devices = fleet_devices(fleet, backend)
    dispatch = "ray" if executor == "ray" else "threads"
    with ProfileStore(store) as db, Fleet(devices, dispatch=dispatch, address=address) as lab:
        s = lab.profile(specs, db, config, progress=progress, models=(space, archs) if archs else None)
    console = Console()
    console.print(f"fleet of {len(devices)} device(s) via {dispatch}, {len(s.groups)} table(s), store {store}")
    table = Table("device", "table (fingerprint)", "measured")
    for fp, names in s.groups.items():
        for name in names:
            table.add_row(name, fp, str(s.per_device.get(name, 0)))
    console.print(table)
    console.print(f"total {s.total}, done {s.done}, skipped {s.skipped}, failed {s.failed}, retried {s.retried}, "
                  f"left for the next run {s.left}, wall {s.wall_s:.1f} s")
    for name, reason in s.unavailable.items():
        console.print(f"unavailable {name}: {reason}", markup=False, highlight=False)
    for name, key, reason in s.failures:
        console.print(f"failed {key} on {name}: {reason}", markup=False, highlight=False)
    if s.failed and not (s.done or s.skipped):
        raise NothingSucceeded(f"nothing was measured: all {s.failed} items failed on the fleet (first: {s.failures[0][2]})")
