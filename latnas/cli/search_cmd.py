"""`latnas search`: latency-constrained architecture search, closing the loop on a real device."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latnas.cli.executor_options import MAX_WORKERS, check_executor_options
from latnas.cli.validate import (MAX_EVALS, MAX_IMAGES, MAX_MARGIN, MAX_POP_SIZE, MAX_PROFILE_TOP, MAX_RESOLUTION, MAX_SEED,
                                 MIN_RESOLUTION, check_finite, check_output, check_search_resources)


def search(
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (front.csv, front.png, result.json, checkpoint.json)."),
    space: str = typer.Option("fbnet", "--space", help="Search space name."),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="Predictor folder, latency table JSON, or 'flops'."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Latency budget: 4.5ms, 4.5 (ms), or 300MFLOPs with the FLOPs proxy."),
    algo: str = typer.Option("bananas", "--algo", help="bananas (surrogate-assisted, the default: best on NAS-Bench-201 Q2) | rea | nsga2 | hournas | nse | random | dnas | repnas (docs/search.md)."),
    evals: int = typer.Option(200, "--evals", max=MAX_EVALS, help="Archs whose accuracy is estimated (the one termination rule)."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    score: Optional[str] = typer.Option(None, "--score", help="Accuracy estimate: vote (default: synflow + params), rwe, params, flops, synflow, naswot, supernet, table, predictor."),
    score_table: Optional[str] = typer.Option(None, "--score-table", help="CSV of archs and accuracies (implies --score table)."),
    score_column: Optional[str] = typer.Option(None, "--score-column", help="Column of --score-table holding the accuracy."),
    arch_column: Optional[str] = typer.Option(None, "--arch-column", help="Arch column of --score-table (default: arch or arch_str)."),
    score_model: Optional[str] = typer.Option(None, "--score-model", help="Accuracy predictor folder from `latnas train-accuracy` (implies --score predictor)."),
    data: Optional[str] = typer.Option(None, "--data", help="ImageFolder or CIFAR binary directory (default: sklearn digits)."),
    n_train: int = typer.Option(500, "--n-train", min=1, max=MAX_IMAGES, help="Training images for the accuracy estimate."),
    n_val: int = typer.Option(300, "--n-val", min=1, max=MAX_IMAGES, help="Validation images for the accuracy estimate."),
    resolution: Optional[int] = typer.Option(None, "--resolution", min=MIN_RESOLUTION, max=MAX_RESOLUTION, help="Image side for accuracy estimates (default: the space's input, <= 32)."),
    margin: float = typer.Option(0.0, "--margin", help="Guard band: search under budget*(1-margin) to absorb predictor error (e.g. 0.05)."),
    proxy: Optional[str] = typer.Option(None, "--proxy", help="'flops': search the FLOPs proxy instead of the predictor."),
    profile_top: int = typer.Option(0, "--profile-top", min=0, max=MAX_PROFILE_TOP, help="Profile the top K archs on the real device."),
    profile_rounds: int = typer.Option(3, "--profile-rounds", min=1, max=20, help="With --profile-top: while no measured arch meets the budget, calibrate by the measured/predicted ratio and verify again (search again if needed), up to this many rounds."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Profiler backend for --profile-top (table: an emulated device, see --device-table)."),
    device_table: Optional[str] = typer.Option(None, "--device-table", help="With --backend table: CSV of archs and latency columns (e.g. the NAS-Bench-201 table)."),
    device_column: Optional[str] = typer.Option(None, "--device-column", help="With --backend table: the latency column that is the device, e.g. pixel3_ms."),
    profile_quick: bool = typer.Option(False, "--profile-quick", help="Shorter timing protocol for --profile-top."),
    export: Optional[str] = typer.Option(None, "--export", help="Export the chosen arch: onnx, executorch, tensorrt (comma-separated)."),
    resume: bool = typer.Option(False, "--resume", help="Reuse the scores stored in OUT/checkpoint.json (bananas, nsga2, hournas, nse)."),
    pop_size: Optional[int] = typer.Option(None, "--pop-size", min=2, max=MAX_POP_SIZE, help="Population size (same as --option pop_size=N)."),
    option: Optional[list[str]] = typer.Option(
        None, "--option", help="Algorithm option KEY=VALUE, repeatable (e.g. epochs=2, lambda_lat=0.5); unknown keys are refused."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    executor: str = typer.Option("local", "--executor", help="local | ray: where accuracy estimates run (pip install 'latnas[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=MAX_WORKERS, help="With --executor ray: scores at once (default: the cluster's CPUs)."),
) -> None:
    """Search SPACE for the most accurate archs within a latency budget."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from latnas.search.budget import parse_budget
    from latnas.search.loop import SearchJob, run_search

    check_output(out, "-o", kind="dir")  # before any search work
    check_finite(margin, "--margin", 0.0, MAX_MARGIN)
    check_search_resources(evals, n_train, n_val, resolution, workers)  # GBs or days of work: refused now
    parse_budget(budget)  # a bad budget is an error now, not after the predictor loads
    if evals < 1:
        from latnas.schema.errors import DataError

        raise DataError(f"--evals must be an integer >= 1, got {evals}")
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
        console=console, disable=quiet,
    )
    options = parse_options(option or [])
    if pop_size is not None:
        options["pop_size"] = str(pop_size)
    _check_algo_options(algo, options)  # unknown or out-of-range options: one line before any progress output
    check_executor_options(executor, ray_address, workers)
    runner = None  # where scores run (same front as local for the same seed: docs/scale.md)
    if executor == "ray":
        from latnas.executors import get_executor

        runner = get_executor("ray", workers=workers, address=ray_address)
    task = progress.add_task(f"{algo} evals", total=evals, note="")
    shown = []  # the bar starts at the first report: a refused predictor or --data is one error line, no bar

    def report(done: int, total: int, message: str) -> None:
        if not shown:
            shown.append(progress.start())
        progress.update(task, completed=done, total=total, note=message)

    try:
        job = SearchJob(
            out_dir=out, space=space, predictor=predictor, budget=budget, algo=algo, evals=evals, seed=seed,
            score=score, score_table=score_table, score_column=score_column, arch_column=arch_column, score_model=score_model,
            data=data, n_train=n_train, n_val=n_val, resolution=resolution, proxy=proxy, margin=margin,
            profile_top=profile_top, profile_rounds=profile_rounds, backend=backend, device_table=device_table, device_column=device_column, profile_quick=profile_quick, export=export,
            resume=resume, options=options, progress=report, executor=runner or "local",
        )
        try:
            outcome = run_search(job)
        finally:
            if runner is not None:
                runner.close()
    finally:
        progress.stop()
    _print_summary(outcome)


def register(app: typer.Typer) -> None:
    """Add ``latnas search``."""
    app.command("search")(search)


def _check_algo_options(algo: str, options: dict[str, str]) -> None:
    from latnas.search.algorithm import ALGORITHMS
    from latnas.search.options import options_from

    if algo in ALGORITHMS.names():  # an unknown name is reported by the search itself, with the known ones
        options_from(ALGORITHMS.get(algo).Options, options, algo)


def parse_options(items: list[str]) -> dict[str, str]:
    """``["epochs=2", "hard=true"]`` -> ``{"epochs": "2", "hard": "true"}``.

    Values stay strings: each algorithm converts them by its Options dataclass's field types.
    """
    from latnas.schema.errors import DataError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--option {item!r} must look like KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _print_summary(outcome) -> None:
    from rich.console import Console
    from rich.table import Table

    s = outcome.summary
    rows = outcome.rows
    console = Console()
    budget = s["budget"]
    title = f"{s['algo']} on {s['space']}: {len(rows)} archs on the front, {s['evals']} evaluated in {s['search_wall_s']:.1f}s"
    if budget:
        title += f", budget {budget['value']:g} {budget['unit']}"
    t = Table(title=title)
    cols = ["arch", "score", "predicted_ms"] + (["mflops"] if any("mflops" in r for r in rows) else []) + (["measured_ms", "meets_budget"] if any("measured_ms" in r for r in rows) else [])
    for c in cols:
        t.add_column(c, justify="left" if c == "arch" else "right")
    for r in rows[:15]:
        t.add_row(*[_cell(r.get(c)) for c in cols])
    console.print(t)
    if len(rows) > 15:
        console.print(f"... {len(rows) - 15} more in {outcome.files['front_csv']}")
    prof = s.get("profile") or {}
    if prof:
        line = f"profiled {prof['profiled']} on {prof['backend']}"
        if prof.get("meets_budget") is not None:
            line += f": {prof['meets_budget']}/{prof['profiled']} meet the budget when measured"
        if prof.get("mean_abs_error_ms") is not None:
            line += f", mean |predicted - measured| {prof['mean_abs_error_ms']:.3f} ms"
        if len(prof.get("rounds") or []) > 1:
            line += f", {len(prof['rounds'])} verify rounds (calibration x{prof['rounds'][-1]['calibration']:.2f})"
        console.print(line)
        if prof.get("meets_budget") == 0:
            import sys

            print("warning: no measured arch meets the budget; the chosen arch is the best predicted one, unverified "
                  "(a larger --profile-rounds or --margin, or a predictor with more samples of this device)", file=sys.stderr)
    if outcome.chosen:
        named = s.get("chosen_arch_str")
        console.print(f"chosen arch: {outcome.chosen}" + (f" ({named})" if named else ""))
    if s.get("export"):
        console.print(f"exported: {', '.join(s['export']['artifacts'])}")
    console.print(f"wrote {outcome.files['front_csv']}, {outcome.files['front_png']}, {outcome.files['result_json']}")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return "" if v != v else f"{v:.4g}"
    return str(v)
