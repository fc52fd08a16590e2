"""`latnas demo`: the main job end to end on the embedded defaults.

Runs the same commands a user would, in order, into one folder:

1. ``latnas devices``: which runtimes are here and the device fingerprint;
2. ``latnas profile``: the FBNet block table and random whole models on ONNX
   Runtime CPU into an SQLite store, and a sample of blocks on ExecuTorch
   (XNNPACK, the mobile CPU path);
3. ``latnas train --store``: a block-level predictor with a learned
   whole-model correction, checked on held-out measured models;
4. ``latnas search``: NSGA-II with random-weight accuracy estimates under a
   latency budget, the top archs profiled for real, the chosen arch exported.

Every step resumes: rerunning the demo skips what the store already holds.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import typer
from rich.console import Console

from latnas.cli.validate import (MAX_EVALS, MAX_MODELS, MAX_RESOLUTION, MAX_SEED, MIN_RESOLUTION, check_output,
                                 check_search_resources)
from latnas.schema.errors import LatnasError

console = Console()


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


def _run(argv: list[str]) -> None:
    """Run one latnas command in-process, stopping the demo if it fails."""
    from latnas.cli.main import main

    console.print(f"[dim]$ latnas {' '.join(argv)}[/dim]")
    rc = main(argv)
    if rc:
        raise LatnasError(f"demo step `latnas {' '.join(argv)}` failed with exit code {rc}")


def _model_medians(store_path: Path, backend: str) -> dict[str, float]:
    from profilers.store import ProfileStore

    with ProfileStore(store_path) as store:
        rows = store.to_records(backend=backend, kind="model", all_devices=True)
    return {r["key"].split(":", 2)[2]: float(r["median_ms"]) for r in rows}


SUMMARY_KEYS = ("algo", "space", "budget", "evals", "chosen", "chosen_arch_str", "profile", "export", "search_wall_s")


def search_summary(result_json: Path) -> dict | None:
    """The headline of a search's ``result.json`` (None when the search wrote none), plus the top of its front."""
    from latnas.schema.safe_json import load

    if not result_json.is_file():
        return None
    result = load(result_json, "search result")
    if not isinstance(result, dict):
        raise LatnasError(f"{result_json} is not a search result (expected a JSON object)")
    out = {k: result.get(k) for k in SUMMARY_KEYS}
    out["front_top"] = (result.get("front") or [])[:3]
    return out


def demo(
    out: Path = typer.Option(Path("runs/demo"), "-o", "--out", help="Folder for the store, predictor, search results."),
    models: int = typer.Option(60, "--models", min=0, max=MAX_MODELS, help="Random whole models to profile (correction + hold-out check)."),
    evals: int = typer.Option(60, "--evals", min=1, max=MAX_EVALS, help="Archs whose accuracy is estimated during search."),
    resolution: int = typer.Option(16, "--resolution", min=MIN_RESOLUTION, max=MAX_RESOLUTION, help="Image side for the random-weight accuracy estimate."),
    executorch_blocks: int = typer.Option(12, "--executorch-blocks", min=0, max=10_000, help="Blocks to profile on ExecuTorch (0 = skip)."),
    quick: bool = typer.Option(False, "--quick", help="Light timing protocol and small sizes (smoke test)."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
) -> None:
    """Profile -> train -> search -> export on the FBNet space with CPU runtimes."""
    from latnas.cli.quiet import filtered_stderr, quiet_loggers

    check_output(out, "-o", kind="dir")
    check_search_resources(evals, 500, 300, resolution)  # the search step's images (its default --n-train/--n-val)
    quiet_loggers()  # third-party noise a user cannot act on (torchao, torch pytree, ExecuTorch runtime)
    with filtered_stderr():
        _demo(out, models, evals, resolution, executorch_blocks, quick, seed)


def _demo(out: Path, models: int, evals: int, resolution: int, executorch_blocks: int, quick: bool, seed: int) -> None:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store = out / "profiles.db"
    q = ["--quick"] if quick else []

    _step("1/4  runtimes on this machine")
    _run(["devices"])

    _step("2/4  profile: FBNet block table and whole models (ONNX Runtime CPU), sample on ExecuTorch")
    _run(["profile", "--space", "fbnet", "--backend", "onnxruntime", "--store", str(store), *q])
    _run(["profile", "--space", "fbnet", "--backend", "onnxruntime", "--store", str(store),
          "--models", str(models), "--seed", str(seed), *q])
    if executorch_blocks > 0:
        from profilers import available_backends

        ok, reason = available_backends().get("executorch", (False, "not registered"))
        if ok:
            _run(["profile", "--space", "fbnet", "--backend", "executorch", "--store", str(store),
                  "--limit", str(executorch_blocks), *q])
        else:
            console.print(f"[yellow]skipping ExecuTorch: {reason}")

    _step("3/4  train: block-level predictor + whole-model correction")
    predictor = out / "predictor"
    _run(["train", "--store", str(store), "--backend", "onnxruntime", "--space", "fbnet", "-o", str(predictor)])
    measured = _model_medians(store, "onnxruntime")
    budget = statistics.median(measured.values()) if measured else None

    _step("4/4  search under a latency budget, check the winners on the device, export")
    search_dir = out / "search"
    argv = ["search", "--space", "fbnet", "--predictor", str(predictor), "--algo", "nsga2",
            "--evals", str(evals), "--seed", str(seed), "--resolution", str(resolution), "-o", str(search_dir),
            "--profile-top", "3", "--backend", "onnxruntime", "--export", "onnx"]
    if budget is not None:
        argv += ["--budget", f"{budget:.3f}ms"]
    if quick:
        argv += ["--profile-quick", "--n-train", "200", "--n-val", "150"]
    _run(argv)

    summary = {"out": str(out), "wall_s": round(time.perf_counter() - t0, 1),
               "budget_ms": budget, "models_measured": len(measured)}
    summary["search"] = search_summary(search_dir / "result.json")
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    console.rule("[bold green]done")
    console.print(f"store {store}, predictor {predictor}, search results {search_dir}; "
                  f"total {summary['wall_s']} s. Rerun to resume; see README for each step.")


def register(app: typer.Typer) -> None:
    """Add ``latnas demo``."""
    app.command("demo")(demo)
