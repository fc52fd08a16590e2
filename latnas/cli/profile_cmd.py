"""`latnas devices`, `latnas profile` and `latnas profiles ...`: measure latency into a store.

``latnas profile`` profiles the space's unique blocks (the per-layer block
table plus stem and head) by default; ``--models N`` profiles N random whole
models *instead*, and ``--models N --blocks`` does both. Every result is
committed at once, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from latnas.cli.executor_options import check_executor_options
from latnas.cli.validate import (MAX_BATCH, MAX_LIMIT, MAX_MODELS, MAX_SEED, MAX_SESSIONS, MAX_THREADS, check_output,
                                 check_threads)
from latnas.schema.errors import DataError, NothingSucceeded, ShapeError, StoreError

profiles_app = typer.Typer(help="Inspect and export profile stores.", no_args_is_help=True)


def _config(quick: bool, threads: int, sessions: Optional[int] = None):
    from profilers.base import ProtocolConfig
    from profilers.config import MAX_SESSIONS
    from profilers.protocol import QUICK_CONFIG, check_config

    if threads < 1:
        raise ShapeError(f"--threads must be >= 1, got {threads}")
    if sessions is not None and not 1 <= sessions <= MAX_SESSIONS:
        raise DataError(f"--sessions must be between 1 and {MAX_SESSIONS}, got {sessions}")
    config = replace(QUICK_CONFIG if quick else ProtocolConfig(), threads=threads)
    if sessions is not None:
        config = replace(config, sessions=sessions, extra_sessions=config.extra_sessions if sessions > 1 else 0)
    try:
        return check_config(config)
    except ValueError as exc:
        raise DataError(f"bad protocol configuration: {exc}") from None


def _fmt_ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def devices(
    threads: int = typer.Option(1, "--threads", min=1, max=MAX_THREADS, help="Thread count that goes into each fingerprint."),
) -> None:
    """List profiler backends: available or why not, and this device's fingerprint for each."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from profilers import available_backends, device_fingerprint, get_backend
    from profilers.fingerprint import host_info

    host = host_info()
    console = Console()
    console.print(
        f"host: {host['cpu']} ({host['logical_cores']} logical / {host['physical_cores']} physical cores), "
        f"{host['os']}, python {host['python']}, torch {host['torch']}" + (f", GPU {host['gpu']}" if host["gpu"] else "")
    )
    table = Table("backend", "available", "fingerprint", "runtime / reason")
    for name, (ok, reason) in available_backends().items():
        fp, detail = "-", reason
        if ok:
            try:
                backend = get_backend(name)
                fp, info = device_fingerprint(backend, threads)
                detail = ", ".join(f"{k} {v}" for k, v in info["runtime"].items())
            except Exception as exc:  # a backend that breaks while describing itself
                ok, detail = False, f"{type(exc).__name__}: {exc}"
        table.add_row(name, "yes" if ok else "no", fp, escape(detail))
    console.print(table)


def profile(
    space: str = typer.Option("fbnet", "--space", help="Search space whose blocks (or models) to profile."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend name (see `latnas devices`)."),
    device_table: Optional[Path] = typer.Option(None, "--device-table", help="With --backend table: CSV of archs and latency columns (an emulated device)."),
    device_column: Optional[str] = typer.Option(None, "--device-column", help="With --backend table: the latency column to look up, e.g. pixel3_ms."),
    store: Path = typer.Option(Path("profiles.db"), "--store", help="SQLite profile store (created if absent)."),
    threads: int = typer.Option(1, "--threads", min=1, max=MAX_THREADS, help="Intra-op threads, pinned while timing."),
    batch: int = typer.Option(1, "--batch", min=1, max=MAX_BATCH, help="Batch size of the profiled inputs."),
    models: int = typer.Option(0, "--models", min=0, max=MAX_MODELS, help="Profile N random whole models instead of the block table."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed for the random models."),
    blocks: bool = typer.Option(False, "--blocks", help="With --models: profile the block table as well."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, max=MAX_LIMIT, help="Only the first N blocks of the table."),
    quick: bool = typer.Option(False, "--quick", help="Lighter protocol (one session, fewer warm-ups and repeats) for demos/tests."),
    sessions: Optional[int] = typer.Option(None, "--sessions", min=1, max=MAX_SESSIONS, help="Fresh sessions per item, interleaved (default 3; --quick: 1)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with ETA."),
    force: bool = typer.Option(False, "--force", help="Re-measure what the store already holds and replace it."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for another profiling run on this machine (default) or refuse at once."),
    executor: str = typer.Option("local", "--executor", help="local | ray: ray runs each device as a Ray actor (pip install 'latnas[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)."),
    fleet: Optional[Path] = typer.Option(None, "--fleet", help="JSON file of devices profiled at once (docs/scale.md)."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="Measure this whole ONNX file instead (kind `model`, key = file name)."),
) -> None:
    """Profile a space's unique blocks (default) or random whole models into a store; resumes.

    One profiling run per machine at a time (runs would time each other); exit 1
    when every block or model failed.
    """
    from rich.console import Console
    from rich.table import Table

    from latnas.schema.spaces import get_space
    from profilers import ProfileStore, get_backend, profile_blocks, profile_models, require_available

    if batch < 1:
        raise ShapeError(f"--batch must be >= 1, got {batch}")
    if models < 0:
        raise DataError(f"--models must be >= 0, got {models}")
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    check_output(store, "--store", kind="file")
    check_executor_options(executor, ray_address, fleet=fleet)
    config = _config(quick, threads, sessions)
    if onnx is not None:  # any model, not a space's (docs/any_model.md)
        from latnas.cli.kernels_cmd import profile_onnx

        return profile_onnx(onnx, backend, store, config, force, wait)
    if fleet is None and executor == "local":
        check_threads(threads, backend)  # before any work (validate.py)
    the_space = get_space(space, batch=batch)
    if executor == "ray" or fleet is not None:  # many devices at once, or one through Ray (docs/scale.md)
        from latnas.cli.fleet_cmd import run_fleet_profile

        if force:
            raise DataError("--force profiles one device: give a fleet a new --store to re-measure it")
        specs = the_space.unique_blocks()[:limit] if models == 0 or blocks else []
        archs = the_space.random_archs(models, rng=seed) if models else []
        return run_fleet_profile(the_space, backend, store, config, executor, ray_address, fleet, specs, archs, progress)
    bk = require_available(get_backend(backend, **_table_options(backend, device_table, device_column, models, blocks)))
    if backend == "table":
        bk.lookup(the_space)  # a bad column is one line now, before the store is opened
    summaries = []
    with ProfileStore(store) as db:
        if models == 0 or blocks:
            specs = the_space.unique_blocks()
            if limit is not None:
                specs = specs[:limit]
            for spec in specs:
                spec.validate()
            summaries.append(profile_blocks(bk, specs, db, config, progress=progress, force=force, wait=wait))
        if models:
            archs = the_space.random_archs(models, rng=seed)
            summaries.append(profile_models(bk, the_space, archs, db, config, progress=progress, force=force, wait=wait))
    console = Console()
    table = Table("kind", "count", "done", "skipped", "failed", "median of medians (ms)", "sessions (extra)", "noisy", "wall (s)")
    for s in summaries:
        table.add_row(s.kind, str(s.total), str(s.done), str(s.skipped), str(s.failed),
                      _fmt_ms(s.median_of_medians_ms), f"{s.sessions_run} ({s.extra})", str(s.noisy), f"{s.wall_s:.1f}")
    console.print(f"backend {bk.name}, device {summaries[0].fingerprint}, store {store}; {config.sessions} session(s) per item,"
                  f" noisy = two best sessions {100 * config.session_agree:g}% apart" + (" (one session: IQR flag)" if config.sessions == 1 else ""))
    console.print(table)
    for s in summaries:
        for key, reason in s.failures:
            console.print(f"failed {key}: {reason}", markup=False, highlight=False)
    failed = sum(s.failed for s in summaries)
    if failed and not any(s.done or s.skipped or s.kept for s in summaries):
        first = next(reason for s in summaries for _key, reason in s.failures)
        raise NothingSucceeded(f"nothing was measured: all {failed} items failed on {bk.name} (first: {first})")


def _table_options(backend: str, table: Optional[Path], column: Optional[str], models: int, blocks: bool) -> dict:
    """Options of the emulated ``table`` device; refused with one line elsewhere or without a table."""
    if backend != "table":
        if table is not None or column is not None:
            raise DataError(f"--device-table / --device-column go with --backend table, not --backend {backend}")
        return {}
    if table is None or column is None:
        raise DataError("--backend table needs --device-table CSV and --device-column COL")
    if models == 0 or blocks:
        raise DataError("the table backend holds whole-model latencies only: profile models (--models N), not blocks")
    return {"table": str(table), "column": column}


def _open_existing(store: Path):
    """Open a store for reading only: a missing, empty, foreign or damaged file is refused untouched."""
    from profilers import ProfileStore

    if not store.exists() and not store.is_symlink():
        raise StoreError(f"no profile store at {store}")
    return ProfileStore(store, read_only=True)


@profiles_app.command("export")
def export(
    store: Path = typer.Option(Path("profiles.db"), "--store", help="Profile store to read."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV file to write."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Only this backend's rows."),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="Only this device's rows (default: all devices)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Only 'block' or 'model' rows."),
) -> None:
    """Export measurements (one row each, all statistics) to CSV."""
    check_output(output, "-o", kind="file")
    if kind is not None and kind not in ("block", "model"):
        raise DataError(f"--kind must be block or model, not {kind!r}")
    with _open_existing(store) as db:
        n = db.export_csv(output, backend=backend, kind=kind, fingerprint=fingerprint, all_devices=fingerprint is None)
    typer.echo(f"wrote {n} rows to {output}")


@profiles_app.command("summary")
def summary(
    store: Path = typer.Option(Path("profiles.db"), "--store", help="Profile store to read."),
) -> None:
    """Rows per device fingerprint, backend and kind, with the between-session spread."""
    from latnas.cli.profiles_summary import print_summary

    with _open_existing(store) as db:
        print_summary(db.query(all_devices=True), db.fingerprints())


def register(app: typer.Typer) -> None:
    """Add `devices`, `profile` and the `profiles` group to ``app``."""
    app.command("devices")(devices)
    app.command("profile")(profile)
    app.add_typer(profiles_app, name="profiles")
