"""`latnas train-accuracy`: a few-shot accuracy predictor from the archs a user trained.

    latnas train-accuracy --table trained.csv --score-column c10_test_acc --space nb201 --n-train 50 -o ACC
                          [--proxies synflow,params,flops|none] [--mode auto|ridge|xgb|blend] [--arch-column arch_str]
    latnas search --space nb201 --predictor LAT --budget 5ms --score-model ACC    (--score predictor is implied)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latnas.cli.validate import MAX_SEED, check_choice, check_input_file, check_output

MIN_N_TRAIN = 5  # latnas.search.accuracy_train.MIN_TRAIN (kept here so --help imports nothing heavy)
MAX_N_TRAIN_ACC = 100_000  # latnas.search.accuracy_train.MAX_TRAIN / predictors.accuracy.MAX_ROWS
ACC_MODES = ("auto", "ridge", "xgb", "blend")  # predictors.accuracy.MODES


def train_accuracy(
    output: Path = typer.Option(..., "-o", "--output", help="Accuracy model folder to write (JSON, hashed)."),
    table: Path = typer.Option(..., "--table", help="CSV of the archs you trained and their accuracy."),
    score_column: str = typer.Option(..., "--score-column", help="Column holding the accuracy (0..100 or 0..1)."),
    space: str = typer.Option("nb201", "--space", help="Search space of the archs."),
    n_train: Optional[int] = typer.Option(None, "--n-train", min=MIN_N_TRAIN, max=MAX_N_TRAIN_ACC,
                                          help="Rows to fit on (default: all; the rest are held out and reported)."),
    arch_column: Optional[str] = typer.Option(None, "--arch-column", help="Arch column (default: arch, else arch_str)."),
    proxies: str = typer.Option("synflow,params,flops", "--proxies", help="Zero-cost proxies as features, or none."),
    mode: str = typer.Option("auto", "--mode", help="auto | ridge | xgb | blend."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
) -> None:
    """Fit an accuracy predictor on K trained archs; `latnas search --score-model` uses it."""
    from latnas.search.accuracy_train import train_accuracy as fit
    from latnas.search.scorers.proxies import parse_proxies
    from latnas.schema.spaces import get_space

    check_output(output, "-o", kind="dir")  # before any work: nothing is written on a refusal
    check_input_file(table, "--table")
    check_choice(mode, ACC_MODES, "--mode")
    names = parse_proxies(proxies)
    summary = fit(get_space(space), table, score_column, output, n_train=n_train, proxies=names, seed=seed,
                  arch_column=arch_column, mode=mode)
    line = (f"accuracy predictor ({summary['chosen']}, proxies {','.join(summary['proxies']) or 'none'}) fit on "
            f"{summary['rows']} of {summary['table_rows']} archs in {summary['fit_s']:.1f}s")
    if "held_out_spearman" in summary:
        line += f"; Spearman {summary['held_out_spearman']:.3f} on the {summary['held_out_rows']} held out"
    typer.echo(line)
    typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add ``latnas train-accuracy``."""
    app.command("train-accuracy")(train_accuracy)
