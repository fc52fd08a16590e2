"""Devices of a lab: who they are, how to reach them, and the fleet file that lists them."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from latnas.schema.errors import BackendUnavailable, DataError
from profilers.base import Backend

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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

    from latnas.schema import safe_json

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
