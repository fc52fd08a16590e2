"""`--executor local|ray`, `--ray-address`, `--workers`, `--fleet`: checked before any work.

Shared by ``latnas profile`` and ``latnas search``. Every bad combination is
a one-line error: an unknown executor, Ray options without ``--executor ray``,
a fleet file that is not a regular file, or ``--executor ray`` without Ray
installed (the message names ``latnas[ray]``).
"""
from __future__ import annotations

from pathlib import Path

from latnas.cli.validate import check_choice, check_input_file
from latnas.schema.errors import DataError

EXECUTORS = ("local", "ray")
MAX_WORKERS = 100_000
MAX_FLEET_BYTES = 16 << 20  # a fleet file lists devices: far below this


def check_executor_options(executor: str, ray_address: str | None = None, workers: int | None = None,
                           fleet: Path | None = None) -> None:
    """Refuse what cannot work; with ``--executor ray`` also check that Ray is importable."""
    check_choice(executor, EXECUTORS, "--executor")
    if executor != "ray":
        for name, value in (("--ray-address", ray_address), ("--workers", workers)):
            if value is not None:
                raise DataError(f"{name} needs --executor ray")
    if ray_address is not None and (not ray_address.strip() or any(c.isspace() for c in ray_address)):
        raise DataError(f"--ray-address must be a Ray address such as 10.0.0.1:6379 or ray://host:10001, got {ray_address!r}")
    if workers is not None and workers < 1:
        raise DataError(f"--workers must be >= 1, got {workers}")
    if fleet is not None:
        check_input_file(fleet, "--fleet", max_bytes=MAX_FLEET_BYTES)
    if executor == "ray":
        from latnas.executors.ray_executor import import_ray

        import_ray()
