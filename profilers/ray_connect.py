"""Connecting to Ray: one place for the Ray executor (``latnas.executors``) and the device fleet
(``profilers.fleet``). Ray is an optional extra; without it, a one-line error names ``latnas[ray]``."""
from __future__ import annotations

import logging
import os

from latnas.schema.errors import ExecutorUnavailable

log = logging.getLogger(__name__)

ADDRESS_ENV = "RAY_ADDRESS"
INSTALL_HINT = "pip install 'latnas[ray]'"


def import_ray():
    """The ``ray`` module, or a one-line error naming the extra."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(f"executor 'ray' needs Ray, which is not installed ({INSTALL_HINT})") from None
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None, resources: dict[str, float] | None = None) -> bool:
    """Connect to Ray if not yet connected; ``True`` when this call started a local Ray.

    ``address`` (else ``$RAY_ADDRESS``) joins an existing cluster; otherwise a
    local Ray starts with ``num_cpus`` and custom ``resources`` (e.g. one
    ``device:<name>`` per profiled device).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get(ADDRESS_ENV) or None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            return False
        ray.init(num_cpus=num_cpus, resources=resources or None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)
        return True
    except Exception as exc:  # connection refused, bad address, cannot start
        where = f"at {address}" if address else "locally"
        raise ExecutorUnavailable(f"cannot start or join Ray {where}: {' '.join(str(exc).split())[:300]}") from None
