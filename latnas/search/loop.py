"""Closing the loop: search with a predictor, check the winners on the real device, export.

``run_search(SearchJob(...))`` loads the latency objective
(:mod:`latnas.search.objective`), builds the accuracy estimate from the
scorer registry (:mod:`latnas.search.scorers`), the :class:`SearchProblem`
(which owns the budget) and the registered algorithm, runs
:func:`~latnas.search.algorithm.minimize`, writes ``front.csv`` /
``front.png`` / ``result.json`` (:mod:`latnas.search.report`), optionally
profiles the top-K archs with a real profiler backend (predicted vs measured,
meets budget or not) and exports the chosen arch.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latnas.schema.errors import DataError, LatnasError, PredictorFileError
from latnas.schema.latency_table import LatencyTable, flops_table
from latnas.search.algorithm import ALGORITHMS, Termination, minimize
from latnas.search.base import SearchResult
from latnas.search.budget import Budget, parse_budget, unit_kind
from latnas.search.objective import check_table, load_latency
from latnas.search.problem import SearchProblem
from latnas.search.report import export_arch, json_default, plot_front, profile_archs, write_front_csv
from latnas.schema.spaces import SearchSpace, get_space

log = logging.getLogger(__name__)

#: scorers that never look at images: no dataset is loaded for them
DATA_FREE_SCORERS = frozenset({"params", "flops", "table", "synflow", "vote"})

#: the scorer used when none is named: the best-ranking one on NAS-Bench-201
#: (benchmarks/scorers_nb201.py: Spearman 0.83 with trained CIFAR-10 accuracy over
#: 1,000 archs, vs synflow 0.80, params 0.77; RWE was not competitive in cost)
DEFAULT_SCORER = "vote"


@dataclass
class SearchJob:
    out_dir: Path
    space: str = "fbnet"
    predictor: str | None = None  # folder, table JSON, or "flops"
    budget: str | float | Budget | None = None
    algo: str = "bananas"  # the best on NAS-Bench-201 Q2 (docs/nb201.md)
    evals: int = 200
    seed: int = 0
    score: str | None = None  # scorer name (None: "table" with score_table, else DEFAULT_SCORER)
    score_table: str | None = None  # CSV of archs and accuracies (implies score="table")
    score_column: str | None = None  # which column of score_table
    arch_column: str | None = None  # arch column of score_table (default: detected by the scorer)
    score_model: str | None = None  # folder of a trained accuracy predictor (implies score="predictor")
    data: str | None = None
    n_train: int = 500
    n_val: int = 300
    resolution: int | None = None
    proxy: str | None = None  # "flops": search the FLOPs proxy (predictor, if given, only reports ms)
    margin: float = 0.0  # guard band: search under budget * (1 - margin) to absorb predictor error
    profile_top: int = 0
    profile_rounds: int = 3  # verify-and-refit rounds when no measured arch meets the budget (1: measure once)
    backend: str = "onnxruntime"
    device_table: str | None = None  # backend "table": CSV of archs and latency columns (an emulated device)
    device_column: str | None = None  # backend "table": which latency column is the device
    profile_quick: bool = False
    export: str | None = None  # comma-separated formats
    resume: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # the algorithm's options (strings are converted)
    progress: Callable[[int, int, str], None] | None = None
    executor: Any = "local"  # where scores run: "local" or a latnas.executors.Executor (e.g. Ray workers)


@dataclass
class SearchOutcome:
    result: SearchResult
    rows: list[dict[str, Any]]
    chosen: str | None
    files: dict[str, str]
    summary: dict[str, Any]


def score_name(job: SearchJob) -> str:
    """The scorer a job uses: ``--score``, or ``table`` when a score table is given, else ``rwe``."""
    if job.score_table:
        if job.score not in (None, "table"):
            raise DataError(f"--score-table implies --score table, got --score {job.score}")
        if not job.score_column:
            raise DataError("--score-table needs --score-column (which column holds the accuracy)")
        return "table"
    if job.score == "table":
        raise DataError("--score table needs --score-table CSV and --score-column COL")
    if job.score_model:
        if job.score not in (None, "predictor"):
            raise DataError(f"--score-model implies --score predictor, got --score {job.score}")
        return "predictor"
    if job.score == "predictor":
        raise DataError("--score predictor needs --score-model A (a folder written by `latnas train-accuracy -o A`)")
    return job.score or DEFAULT_SCORER


def backend_options(job: SearchJob) -> dict[str, Any]:
    """Constructor options of the profiling backend: the table and column of the emulated ``table`` device."""
    if job.backend == "table":
        if not job.device_table or not job.device_column:
            raise DataError("--backend table needs --device-table CSV and --device-column COL")
        return {"table": job.device_table, "column": job.device_column}
    if job.device_table or job.device_column:
        raise DataError(f"--device-table / --device-column go with --backend table, not --backend {job.backend}")
    return {}


def device_name(job: SearchJob) -> str:
    """What the predictor must have been made for: the backend, or the table's device column (``pixel3_ms``: pixel3)."""
    if job.backend == "table" and job.device_column:
        return job.device_column[:-3] if job.device_column.endswith("_ms") else job.device_column
    return job.backend


def load_objective(job: SearchJob, space: SearchSpace) -> tuple[LatencyTable, LatencyTable | None]:
    """The searched objective (predictor ms, or the FLOPs proxy) and the ms table for reporting (or None)."""
    if job.proxy not in (None, "", "flops"):
        raise DataError(f"unknown proxy {job.proxy!r} (known: flops)")
    if job.predictor is None and not job.proxy:
        raise PredictorFileError("give --predictor (a predictor folder, a latency table JSON, or 'flops') or --proxy flops")
    ms_table = None
    if job.predictor is not None:
        ms_table = load_latency(job.predictor, space)
        if job.profile_top and ms_table.unit == "ms":
            check_table(ms_table, space, backend=device_name(job))
    objective = flops_table(space) if job.proxy == "flops" or ms_table is None else ms_table
    if ms_table is not None and ms_table.unit != "ms":
        ms_table = None  # "flops" given as the predictor: no ms predictions
    return objective, ms_table


def build_problem(job: SearchJob, space: SearchSpace, objective: LatencyTable, budget: Budget | None) -> SearchProblem:
    """The problem of a job: its objective, budget and registered scorer (data loaded only if the scorer needs it)."""
    from latnas.search.scorers import ScorerConfig, make_scorer

    name = score_name(job)
    data = None
    if name not in DATA_FREE_SCORERS or job.data is not None:  # a given --data is read (and checked), never ignored
        from latnas.search.data import load_data

        data = load_data(job.data, space=space, n_train=job.n_train, n_val=job.n_val, seed=job.seed,
                         resolution=job.resolution)
    config = ScorerConfig(space=space, data=data, seed=job.seed, table=job.score_table, column=job.score_column,
                          arch_column=job.arch_column, options={"model": job.score_model} if job.score_model else {})
    scorer = make_scorer(name, config)
    if job.executor not in (None, "local"):  # batches between ask and tell go to the executor, scores in order
        from latnas.executors import ParallelScorer

        scorer = ParallelScorer(scorer, job.executor)
    if name == "table":
        key = f"table:{Path(str(job.score_table)).name}:{job.score_column}"
    elif name == "predictor":  # the model's own hash: another model's scores are never reused
        key = f"predictor:{_model_digest(job.score_model)}:seed={job.seed}"
    elif data is not None:
        shape = tuple(data.x_train.shape[1:])
        key = f"{name}:{data.name}:{len(data.x_train)}/{len(data.x_val)}:{shape}:seed={job.seed}"
    else:
        key = f"{name}:seed={job.seed}"
    return SearchProblem(space, objective, scorer, budget=budget, data=data, scorer_key=key)


def _model_digest(folder: str | None) -> str:
    """sha256 of a model folder's meta.json (it holds the hash of every other file)."""
    import hashlib

    try:
        return hashlib.sha256((Path(str(folder)) / "meta.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return "unreadable"


def _check_backend(job: SearchJob) -> None:
    options = backend_options(job)
    if job.backend == "table":
        import profilers

        backend = profilers.get_backend("table", **options).check()
        backend.lookup(get_space(job.space, batch=1))  # reads and validates the column now


def front_rows(space: SearchSpace, result, objective: LatencyTable, ms_table: LatencyTable | None) -> list[dict[str, Any]]:
    """Rows of the front, best score first (every arch meets the searched budget: the problem scores no other)."""
    archs_int = np.asarray(result.archs, dtype=np.int64).reshape(len(result.archs), space.n_layers)
    objective_lat = objective.predict(archs_int) if len(archs_int) else np.zeros(0)
    ms_pred = ms_table.predict(archs_int) if (ms_table is not None and len(archs_int)) else np.full(len(archs_int), np.nan)
    proxy_used = unit_kind(objective.unit) == "MFLOPs"
    rows = []
    for i, a in enumerate(result.archs):
        row = {"arch": space.format_arch(a), "predicted_ms": float(ms_pred[i]), "score": float(result.scores[i])}
        if proxy_used:
            row["mflops"] = float(objective_lat[i])
        rows.append(row)
    return rows


def verify_and_refit(job: SearchJob, space: SearchSpace, budget: Budget | None, rows, result, objective, ms_table):
    """Measure the top ``profile_top`` archs on the device; while none meets the budget, calibrate the
    predictor by the worst measured/predicted ratio so far and verify the best front archs that the
    calibrated prediction keeps within budget, searching again under ``budget / ratio`` when the front
    has none (at most ``profile_rounds`` rounds). Returns (rows, profile summary, result)."""
    ms_budget = budget is not None and budget.unit == "ms"
    measured: dict[str, float] = {}
    rounds: list[dict[str, Any]] = []
    ratio = 1.0
    for rnd in range(max(1, int(job.profile_rounds))):
        cands = [r for r in rows if r["arch"] not in measured and
                 (rnd == 0 or not math.isfinite(r["predicted_ms"]) or r["predicted_ms"] * ratio <= budget.value)]
        if not cands and rnd > 0:  # the front holds nothing the calibration keeps: search under the calibrated budget
            try:
                problem = build_problem(job, space, objective, Budget(budget.value / ratio, budget.unit))
            except LatnasError:  # below the cheapest arch: the device cannot meet the budget this way
                break
            algorithm = ALGORITHMS.get(job.algo)(dict(job.options), seed=job.seed + rnd, workdir=None, progress=job.progress)
            result = minimize(problem, algorithm, Termination(job.evals))
            rows = front_rows(space, result, objective, ms_table)
            cands = [r for r in rows if r["arch"] not in measured]
        top = [r["arch"] for r in cands[: job.profile_top]]
        if not top:
            break
        measured.update(profile_archs(space, top, job.backend, quick=job.profile_quick, options=backend_options(job)))
        for r in rows:
            if r["arch"] in measured:
                r["measured_ms"] = measured[r["arch"]]
                if ms_budget:
                    r["meets_budget"] = bool(measured[r["arch"]] <= budget.value)
        met = sum(bool(r.get("meets_budget")) for r in rows)
        rounds.append({"round": rnd + 1, "calibration": ratio, "profiled": len(top), "meets_budget": met})
        seen = [(measured[r["arch"]], r["predicted_ms"]) for r in rows if r["arch"] in measured and r["predicted_ms"] > 0]
        ratio = max([ratio] + [m / p for m, p in seen])
        if met or not ms_budget or ratio <= 1.0:
            break
    errors = [abs(r["measured_ms"] - r["predicted_ms"]) for r in rows if "measured_ms" in r and math.isfinite(r["predicted_ms"])]
    profile = {
        "backend": job.backend,
        "device_table": job.device_table,
        "device_column": job.device_column,
        "profiled": len(measured),
        "meets_budget": sum(bool(r.get("meets_budget")) for r in rows) if ms_budget else None,
        "mean_abs_error_ms": float(np.mean(errors)) if errors else None,
        "rounds": rounds,
    }
    return rows, profile, result


def run_search(job: SearchJob) -> SearchOutcome:
    """Run one search job end to end (see module docstring)."""
    t0 = time.perf_counter()
    space = get_space(job.space, batch=1)
    budget = parse_budget(job.budget)
    if job.profile_top or job.device_table or job.device_column:
        _check_backend(job)  # a missing table or bad column: one line before any search work
    objective, ms_table = load_objective(job, space)
    search_budget = None if budget is None else budget.with_margin(job.margin)
    algorithm = ALGORITHMS.get(job.algo)(dict(job.options), seed=job.seed, workdir=Path(job.out_dir),
                                         progress=job.progress, resume=job.resume)
    termination = Termination(job.evals)
    problem = build_problem(job, space, objective, search_budget)  # checks the budget against the objective
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = minimize(problem, algorithm, termination)
    rows = front_rows(space, result, objective, ms_table)

    profile: dict[str, Any] = {}
    if job.profile_top and rows:
        rows, profile, result = verify_and_refit(job, space, budget, rows, result, objective, ms_table)
        met = [r for r in rows if r.get("meets_budget")]
        chosen = met[0]["arch"] if met else rows[0]["arch"]
    else:
        chosen = rows[0]["arch"] if rows else None

    files = {"front_csv": str(out / "front.csv"), "front_png": str(out / "front.png"), "result_json": str(out / "result.json")}
    write_front_csv(out / "front.csv", rows)
    title = f"{job.algo} on {space.name}, {result.evals} evals" + (f", budget {budget}" if budget else "")
    plot_front(out / "front.png", result, objective.unit, search_budget, title, score_name=score_name(job))
    exported = None
    if job.export and chosen is not None:
        row = next(r for r in rows if r["arch"] == chosen)
        exported = export_arch(space, chosen, out / "export", job.export, {"space": space.name, "arch": chosen, **row})
    arch_str = getattr(space, "arch_str", None)  # benchmark spaces (nb201) name archs their own way
    summary = {
        "algo": job.algo,
        "space": space.name,
        "budget": None if budget is None else {"value": budget.value, "unit": budget.unit, "margin": job.margin,
                                               "searched_under": search_budget.value},
        "objective": {"unit": objective.unit, "device": objective.device, "proxy": job.proxy},
        "predictor": job.predictor,
        "score": {"name": score_name(job), "table": job.score_table, "column": job.score_column, "key": problem.scorer_key},
        "data": None if problem.data is None else problem.data.name,
        "options": {k: v for k, v in vars(algorithm.options).items()},
        "evals": result.evals,
        "seed": job.seed,
        "search_wall_s": result.wall_s,
        "total_wall_s": time.perf_counter() - t0,
        "chosen": chosen,
        "chosen_arch_str": arch_str(space.parse_arch(chosen)) if (chosen is not None and callable(arch_str)) else None,
        "front": rows,
        "profile": profile,
        "export": exported,
        "history": result.history,
        "extra": {k: v for k, v in result.extra.items() if k != "archive"},
    }
    (out / "result.json").write_text(json.dumps(summary, indent=1, default=json_default))
    return SearchOutcome(result=result, rows=rows, chosen=chosen, files=files, summary=summary)
