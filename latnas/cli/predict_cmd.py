"""`latnas train | eval | predict`: latency predictors from the command line.

    latnas train --table PATH --target COLUMN --space fbnet --n-train N --seed S -o MODEL
                 [--model xgb|ridge|flops|params|<registered>] [--transfer-from COL1,COL2,...] [--arch-column NAME]
    latnas train --store profiles.db --backend onnxruntime [--space fbnet] -o MODEL [--stat median_ms|min_ms]
    latnas eval MODEL --table PATH --target COLUMN [--exclude-train] [--json] [--plots DIR] [--arch-column NAME]
    latnas predict MODEL (--arch DIGITS | --archs FILE | --table PATH [--arch-column NAME])
    latnas train --store profiles.db --backend onnxruntime --kernels -o KP      (any model: docs/any_model.md)
    latnas predict KP --onnx model.onnx [--json] [--breakdown]
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from latnas.cli.validate import (MAX_ESTIMATORS, MAX_N_TRAIN, MAX_SEED, check_choice, check_input_file, check_output,
                                 read_text_lines, split_names)
from latnas.schema.errors import DataError, UnknownNameError


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


def _store_records(path: Path, backend: str, fingerprint: str | None) -> list[dict]:
    """Plain records from a profile store (the profilers' public export, the one read path)."""
    from profilers.store import ProfileStore

    with ProfileStore(path, fingerprint=fingerprint, read_only=True) as store:
        return store.to_records(backend=backend) if fingerprint else store.to_records(backend=backend, all_devices=True)


ARCH_COLUMN_HELP = "column holding the archs (default: 'arch', else 'arch_str')"


def train(
    output: Path = typer.Option(..., "-o", "--output", help="model folder to write"),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV with an arch column and <device>_ms columns"),
    arch_column: Optional[str] = typer.Option(None, "--arch-column", help=ARCH_COLUMN_HELP),
    target: Optional[str] = typer.Option(None, "--target", help="latency column to learn, e.g. raspi4_ms"),
    space: str = typer.Option("fbnet", "--space", help="search space of the archs"),
    n_train: Optional[int] = typer.Option(None, "--n-train", min=1, max=MAX_N_TRAIN, help="rows to train on (random, by --seed); default all"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="seed of the train-row choice"),
    model: Optional[str] = typer.Option(None, "--model", help="xgb (default) | ridge | flops | params | any registered (arch level); rf (default) | lut (with --store)"),
    transfer_from: Optional[str] = typer.Option(None, "--transfer-from", help="comma-separated source columns for few-shot transfer"),
    store: Optional[Path] = typer.Option(None, "--store", help="profile store (SQLite) to train a block-level model from"),
    backend: Optional[str] = typer.Option(None, "--backend", help="backend of the profiles to use (with --store)"),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="device fingerprint (with --store, if it holds several)"),
    correction: str = typer.Option("linear", "--correction", help="linear | isotonic | none: block-sum correction (with --store)"),
    stat: str = typer.Option("median_ms", "--stat", help="median_ms | min_ms: profile statistic to learn (with --store)"),
    n_estimators: Optional[int] = typer.Option(None, "--n-estimators", min=1, max=MAX_ESTIMATORS, help="max trees (xgb) / trees per forest (rf)"),
    kernels: bool = typer.Option(False, "--kernels", help="kernel-level predictor for any ONNX model (with --store; docs/any_model.md)"),
) -> None:
    """Train a latency predictor from a latency table or from a profile store."""
    from predictors.models import space_of
    from predictors.persistence import save_predictor
    from predictors.registry import BLOCK_PREDICTORS, PREDICTORS

    space_of(space)  # unknown space -> one-line error
    check_output(output, "-o", kind="dir")  # before any training
    if kernels:  # one model per kernel type (latnas/cli/kernels_cmd.py)
        from latnas.cli.kernels_cmd import train_kernels

        return train_kernels(store, backend, fingerprint, output, n_estimators, table)
    sources = split_names(transfer_from, "--transfer-from") if transfer_from is not None else None
    if store is not None:
        if table is not None:
            raise DataError("give either --table or --store, not both")
        if not backend:
            raise DataError("--store needs --backend (e.g. onnxruntime)")
        check_choice(stat, ("median_ms", "min_ms"), "--stat")
        check_choice(correction, ("linear", "isotonic", "none"), "--correction")
        if sources is not None:
            raise DataError("--transfer-from works with --table, not --store")
        check_input_file(store, "--store")
        from predictors.train import train_block_model

        block_model = model or "rf"
        if block_model not in BLOCK_PREDICTORS.names():
            raise UnknownNameError(f"unknown predictor {block_model!r} for --store (choose from {', '.join(BLOCK_PREDICTORS.names())})")
        params = {"n_estimators": n_estimators} if n_estimators and block_model == "rf" else None
        est, meta = train_block_model(_store_records(store, backend, fingerprint), backend, space, fingerprint,
                                      block_model=block_model, correction=correction, params=params, stat=stat)
    else:
        if table is None or target is None:
            raise DataError("train needs --table and --target (or --store and --backend)")
        from predictors.data import load_arch_table
        from predictors.train import train_arch_model

        model = model or "xgb"
        arch_models = [n for n in PREDICTORS.names() if n not in ("blocksum", "transfer")]
        if model not in arch_models:
            raise UnknownNameError(f"unknown predictor {model!r} for --model (choose from {', '.join(arch_models)})")
        check_input_file(table, "--table")
        tab = load_arch_table(table, space_of(space), arch_column)
        params = {"n_estimators": n_estimators} if n_estimators and model == "xgb" and not sources else None
        est, meta = train_arch_model(tab, target, model, n_train, seed, sources, params)
        meta["table"] = str(table)
    save_predictor(est, output, **meta)
    summary = {"model": str(output), "predictor": type(est).__name__, **{k: meta[k] for k in ("target", "device") if k in meta}}
    held = (meta.get("metrics") or {}).get("heldout")
    if held:
        summary["heldout"] = {k: held[k] for k in ("within_5pct", "within_10pct", "spearman", "n")}
    loo = ((meta.get("training") or {}).get("transfer") or {}).get("loo")
    if loo:
        from predictors.train import loo_warning

        summary["loo_on_train"] = loo
        if loo.get("large"):
            typer.echo(loo_warning(loo), err=True)
    for key in ("block_sum_in_sample", "corrected_in_sample"):
        if key in (meta.get("metrics") or {}):
            summary[key] = meta["metrics"][key]
    typer.echo(json.dumps(_clean(summary)))


def eval_(
    model_dir: Path = typer.Argument(..., metavar="MODEL", help="model folder written by `latnas train`"),
    table: Path = typer.Option(..., "--table", help="CSV with an arch column and the target column"),
    arch_column: Optional[str] = typer.Option(None, "--arch-column", help=ARCH_COLUMN_HELP),
    target: str = typer.Option(..., "--target", help="measured latency column to compare with"),
    space: Optional[str] = typer.Option(None, "--space", help="expected space (checked against the model)"),
    exclude_train: bool = typer.Option(False, "--exclude-train", help="leave out the archs the model was trained on"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON object on one line"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="folder for pred-vs-measured and error-histogram PNGs"),
) -> None:
    """Evaluate a saved model on a table: within_5pct, within_10pct, rmspe, mape, kendall, spearman, n (+ FLOPs proxy)."""
    from predictors.data import load_arch_table
    from predictors.models import space_of
    from predictors.persistence import load_predictor
    from predictors.train import eval_model

    check_input_file(table, "--table")
    if plots is not None:
        check_output(plots, "--plots", kind="dir")
    est, meta = load_predictor(model_dir, space=space)
    if meta.get("target") not in (None, target):
        from latnas.schema.errors import PredictorFileError

        raise PredictorFileError(f"model {model_dir} was trained for {meta.get('target')!r}, not {target!r}")
    tab = load_arch_table(table, space_of(meta["space"]), arch_column)
    metrics, rows, pred = eval_model(est, meta, tab, target, exclude_train)
    loo = ((meta.get("training") or {}).get("transfer") or {}).get("loo")
    if isinstance(loo, dict) and loo:
        metrics["loo_on_train"] = loo  # the fit's own leave-one-out error on its k samples, beside the held-out figures
    if plots is not None:
        from predictors.plots import accuracy_plots

        paths = accuracy_plots(tab.column(target)[rows], pred, plots, title=f"{meta.get('predictor')} on {target}")
        metrics["plots"] = [str(p) for p in paths]
    metrics = _clean(metrics)
    typer.echo(json.dumps(metrics) if as_json else json.dumps(metrics, indent=1))


def predict(
    model_dir: Path = typer.Argument(..., metavar="MODEL", help="model folder written by `latnas train`"),
    arch: Optional[str] = typer.Option(None, "--arch", help="one arch, e.g. 7818488874147327324245"),
    archs: Optional[Path] = typer.Option(None, "--archs", help="file with one arch per line"),
    table: Optional[Path] = typer.Option(None, "--table", help="CSV whose arch column to predict"),
    arch_column: Optional[str] = typer.Option(None, "--arch-column", help=ARCH_COLUMN_HELP),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="any ONNX model, with a kernel predictor (train --kernels)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="with --onnx: backend asked for (checked against the predictor)"),
    as_json: bool = typer.Option(False, "--json", help="with --onnx: one JSON object"),
    breakdown: bool = typer.Option(False, "--breakdown", help="with --onnx: every kernel's predicted ms"),
) -> None:
    """Predict latency (ms) of archs; prints `arch<TAB>ms` per arch (`--onnx`: of any ONNX model)."""
    import numpy as np

    from predictors.models import space_of
    from predictors.persistence import load_predictor

    if sum(x is not None for x in (arch, archs, table, onnx)) != 1:
        raise DataError("give exactly one of --arch, --archs, --table or --onnx")
    if onnx is not None:  # latnas/cli/kernels_cmd.py
        from latnas.cli.kernels_cmd import predict_onnx

        return predict_onnx(model_dir, onnx, backend, as_json, breakdown)
    est, meta = load_predictor(model_dir)
    if meta.get("level") == "kernel":
        raise DataError(f"{model_dir} is a kernel predictor (any model): predict an ONNX file with --onnx")
    sp = space_of(meta["space"])
    if table is not None:
        from predictors.data import load_arch_table

        check_input_file(table, "--table")
        tab = load_arch_table(table, sp, arch_column)
        for t, p in zip(tab.arch_strings, est.predict(tab.archs)):
            typer.echo(f"{t}\t{p:.4f}")
        return
    if arch is not None:
        texts = [arch.strip()]
    else:
        texts = [t.strip() for t in read_text_lines(archs, "--archs") if t.strip() and not t.startswith("#")]
        if not texts:
            raise DataError(f"arch file {archs} has no archs")
    parsed = []
    for i, t in enumerate(texts):
        try:
            parsed.append(sp.parse_arch(t))
        except DataError as exc:
            raise DataError(f"{archs}:{i + 1}: {exc}" if archs is not None else str(exc)) from None
    pred = est.predict(np.array(parsed, dtype=np.int64))
    for t, p in zip(texts, pred):
        typer.echo(f"{t}\t{p:.4f}")


def register(app: typer.Typer) -> None:
    """Add `train`, `eval` and `predict` to ``app``."""
    app.command("train")(train)
    app.command("eval")(eval_)
    app.command("predict")(predict)
