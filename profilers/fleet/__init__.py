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

from profilers.fleet.devices import FleetDevice, check_devices, load_fleet
from profilers.fleet.dispatch import RECOVER_TIMEOUT_S, measure_on_device, probe_device
from profilers.fleet.run import DISPATCHES, Fleet, FleetSummary, model_items, profile_fleet

__all__ = ["DISPATCHES", "RECOVER_TIMEOUT_S", "Fleet", "FleetDevice", "FleetSummary", "check_devices", "load_fleet",
           "measure_on_device", "model_items", "probe_device", "profile_fleet"]
