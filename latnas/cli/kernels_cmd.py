"""`latnas kernels profile | detect`: kernel-level profiles for predicting any model.

    latnas kernels profile --backend onnxruntime --store kernels.db [--scale 1.0] [--types conv,dwconv] [--no-adaptive]
    latnas kernels detect model.onnx [--backend onnxruntime] [--json]
    latnas kernels fusions [--backend onnxruntime] [--quick]      (time pairs against their parts)

Also the kernel halves of `latnas train --kernels`, `latnas predict --onnx` and
`latnas profile --onnx` (those commands call :func:`train_kernels`,
:func:`predict_onnx` and :func:`profile_onnx`). docs/any_model.md.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from latnas.cli.validate import MAX_SEED, MAX_THREADS, check_input_file, check_output, check_threads, split_names
from latnas.schema.errors import DataError, NothingSucceeded

kernels_app = typer.Typer(help="Kernel-level profiles: latency of any model (nn-Meter style).", no_args_is_help=True)


@kernels_app.command("profile")
def profile(
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime backend to time kernels on."),
    store: Path = typer.Option(Path("kernels.db"), "--store", help="SQLite profile store (created if absent)."),
    scale: float = typer.Option(1.0, "--scale", min=0.05, max=10.0, help="Multiply the configs sampled per kernel type."),
    types: Optional[str] = typer.Option(None, "--types", help="Comma-separated kernel types (default: all)."),
    adaptive: bool = typer.Option(True, "--adaptive/--no-adaptive", help="Second round near the worst-predicted configs."),
    threads: int = typer.Option(1, "--threads", min=1, max=MAX_THREADS, help="Intra-op threads, pinned while timing."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the sampled configs."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for another profiling run on this machine or refuse."),
    quick: bool = typer.Option(False, "--quick", help="One short session per kernel (smoke tests, a first look)."),
) -> None:
    """Sample kernel configs per kernel type, time them and store them (kind `kernel`); resumes."""
    from profilers.kernels import KERNEL_CONFIG, QUICK_KERNEL_CONFIG, SAMPLES, profile_kernels, require_onnx_backend
    from profilers.runner import get_backend
    from profilers.store import ProfileStore

    check_output(store, "--store", kind="file")
    check_threads(threads, backend)  # more threads than CPUs would time the scheduler (validate.py)
    ops = split_names(types, "--types") if types else None
    unknown = sorted(set(ops or ()) - set(SAMPLES))
    if unknown:
        raise DataError(f"unknown kernel type(s) {', '.join(unknown)} (known: {', '.join(SAMPLES)})")
    bk = require_onnx_backend(get_backend(backend))
    say = lambda text: typer.echo(text, err=True)  # noqa: E731
    with ProfileStore(store) as db:
        runs = profile_kernels(bk, db, replace(QUICK_KERNEL_CONFIG if quick else KERNEL_CONFIG, threads=threads), scale=scale, ops=ops,
                               adaptive=adaptive, seed=seed, wait=wait, say=say)
    done, skipped = sum(r.done for r in runs), sum(r.skipped for r in runs)
    failures = [f for r in runs for f in r.failures]
    for key, reason in failures[:10]:
        typer.echo(f"failed {key}: {reason}", err=True)
    summary = {"backend": bk.name, "store": str(store), "fingerprint": runs[0].fingerprint if runs else None,
               "measured": done, "skipped": skipped, "failed": len(failures),
               "wall_s": round(sum(r.wall_s for r in runs), 1)}
    typer.echo(json.dumps(summary))
    if failures and not (done or skipped):
        raise NothingSucceeded(f"nothing was measured: all {len(failures)} kernels failed (first: {failures[0][1]})")


@kernels_app.command("detect")
def detect(
    model: Path = typer.Argument(..., metavar="MODEL.onnx", help="ONNX file with one static input."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend whose fusion rules apply."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per kernel."),
) -> None:
    """List the kernels a runtime would execute for an ONNX model."""
    from latnas.schema.kernels import detect_kernels

    check_input_file(model, "MODEL")
    for k in detect_kernels(model, backend):
        d = k.to_dict()
        if as_json:
            typer.echo(json.dumps(d))
        else:
            typer.echo(f"{k.op:10s} cin={k.cin} cout={k.cout} k={k.kernel} s={k.stride} g={k.groups} "
                       f"{k.h}x{k.w}->{k.ho}x{k.wo} act={k.act}{' +res' if k.residual else ''} {k.variant}".rstrip())


@kernels_app.command("fusions")
def fusions(
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime backend to time on."),
    threads: int = typer.Option(1, "--threads", min=1, max=MAX_THREADS, help="Intra-op threads, pinned while timing."),
    quick: bool = typer.Option(False, "--quick", help="One short session per graph."),
) -> None:
    """Detect which ops the backend fuses into a conv: time each pair against its parts (JSON)."""
    from profilers.kernel_fusion import detect_fusions
    from profilers.kernels import KERNEL_CONFIG, QUICK_KERNEL_CONFIG, require_onnx_backend
    from profilers.lock import profiling_lock
    from profilers.runner import get_backend

    check_threads(threads, backend)  # before any timing (validate.py)
    bk = require_onnx_backend(get_backend(backend))
    say = lambda text: typer.echo(text, err=True)  # noqa: E731
    with profiling_lock(wait=True, notify=say):
        rep = detect_fusions(bk, replace(QUICK_KERNEL_CONFIG if quick else KERNEL_CONFIG, threads=threads), say=say)
    r = rep.rules
    typer.echo(json.dumps({"backend": bk.name, "rules": {"activations": r.activations, "fuse_bn": r.fuse_bn,
                                                         "fuse_add": r.fuse_add, "fuse_act_after_add": r.fuse_act_after_add},
                           "fused": rep.verdicts, "medians_ms": {k: round(v, 5) for k, v in rep.medians.items()}}))


def register(app: typer.Typer) -> None:
    """Add the `kernels` group to ``app``."""
    app.add_typer(kernels_app, name="kernels")


def profile_onnx(onnx: Path, backend: str, store: Path, config, force: bool, wait: bool) -> None:
    """`latnas profile --onnx FILE`: time a whole ONNX file into the store (kind `model`)."""
    from profilers.kernels import profile_onnx_file, require_onnx_backend
    from profilers.runner import get_backend
    from profilers.store import ProfileStore

    from latnas.schema.kernels.graph import load_onnx, model_input_shape

    check_input_file(onnx, "--onnx", max_bytes=2 << 30)
    model_input_shape(load_onnx(onnx))  # a bad file is refused before the store is created
    bk = require_onnx_backend(get_backend(backend))
    with ProfileStore(store) as db:
        run = profile_onnx_file(bk, onnx, db, config, force=force, wait=wait, say=lambda t: typer.echo(t, err=True))
    if run.failures:
        raise NothingSucceeded(f"measuring {onnx} failed: {run.failures[0][1]}")
    key = next(iter(run.medians), None) or (onnx.name[:-5] if onnx.name.endswith(".onnx") else onnx.name)
    out = {"key": key, "kind": "model", "backend": bk.name, "fingerprint": run.fingerprint, "store": str(store),
           "median_ms": run.medians.get(key), "measured": run.done, "skipped": run.skipped}
    typer.echo(json.dumps(out))


def _kernel_records(store: Path, backend: str, fingerprint: Optional[str]) -> tuple[list[dict], Optional[str]]:
    """A store's kernel and model rows of ``backend`` on one device (the only one, or ``fingerprint``)."""
    from profilers.store import ProfileStore

    with ProfileStore(store, fingerprint=fingerprint, read_only=True) as db:
        rows = [r for r in db.to_records(backend=backend, all_devices=fingerprint is None) if r["kind"] in ("kernel", "model")]
    fps = sorted({r["fingerprint"] for r in rows if r["kind"] == "kernel"})
    if len(fps) > 1:
        raise DataError(f"{store} holds kernel profiles of {len(fps)} devices for {backend!r} ({', '.join(fps)[:80]}); "
                        "pick one with --fingerprint")
    fp = fingerprint or (fps[0] if fps else None)
    return [r for r in rows if r["fingerprint"] == fp], fp


def train_kernels(store: Optional[Path], backend: Optional[str], fingerprint: Optional[str], output: Path,
                  n_estimators: Optional[int], table: Optional[Path] = None) -> None:
    """`latnas train --store DB --backend B --kernels -o KP`: one model per kernel type (+ whole-model correction)."""
    from predictors.kernel_model import train_kernel_model
    from predictors.persistence import save_predictor

    if table is not None or store is None or not backend:
        raise DataError("--kernels trains from a profile store: give --store DB and --backend B (no --table)")
    check_input_file(store, "--store")
    records, fp = _kernel_records(store, backend, fingerprint)
    est, meta = train_kernel_model(records, backend, fp, n_estimators=n_estimators)
    meta["store"] = str(store)
    save_predictor(est, output, **meta)
    metrics = meta["metrics"]
    typer.echo(json.dumps({"model": str(output), "predictor": type(est).__name__, "target": "kernels", "backend": backend,
                           "fingerprint": fp, "kernels": metrics["kernels"], "types": metrics["types"],
                           "correction_models": metrics.get("correction_models", 0)}))


def predict_onnx(model_dir: Path, onnx: Path, backend: Optional[str], as_json: bool, breakdown: bool) -> None:
    """`latnas predict KP --onnx model.onnx [--json] [--breakdown]`: predicted ms of any ONNX model."""
    from latnas.any_model import predict_latency

    check_input_file(onnx, "--onnx", max_bytes=2 << 30)
    out = predict_latency(onnx, predictor=model_dir, backend=backend, breakdown=True)
    if as_json:
        if not breakdown:
            out = {k: v for k, v in out.items() if k != "kernels"}
        typer.echo(json.dumps({"model": str(onnx), **out}))
        return
    typer.echo(f"{onnx}\t{out['predicted_ms']:.4f}")
    if breakdown:
        for k in out["kernels"]:
            typer.echo(f"  {k['op']:10s} {k['ms']:9.4f} ms  cin={k['cin']} cout={k['cout']} k={k['kernel']} "
                       f"s={k['stride']} {k['h']}x{k['w']} act={k['act']} {k['variant']}".rstrip())
