"""Closing the loop: search with a predictor, check the winners on the real device, export.

``run_search(SearchJob(...))`` loads the latency objective (a predictor folder
compiled to a :class:`LatencyTable`, a table JSON, or the FLOPs proxy), checks
the budget against the cheapest reachable arch, runs a registered algorithm,
writes ``front.csv`` / ``front.png`` / ``result.json`` into the output folder,
optionally profiles the top-K archs with a real profiler backend (predicted vs
measured, meets budget or not) and exports the chosen arch.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latnas.errors import DataError, PredictorFileError
from latnas.latency_table import TABLE_SCHEMA, LatencyTable, flops_table
from latnas.search.base import ALGORITHMS, SearchContext, SearchResult
from latnas.spaces import SearchSpace, get_space

log = logging.getLogger(__name__)

FRONT_COLUMNS = ("arch", "predicted_ms", "score")
PROXY_COLUMNS = ("mflops",)
PROFILE_COLUMNS = ("measured_ms", "meets_budget")


# ------------------------------------------------------------------ budget
@dataclass(frozen=True)
class Budget:
    value: float
    unit: str  # "ms" or "MFLOPs"

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


_UNITS = {
    "": ("ms", 1.0), "ms": ("ms", 1.0), "s": ("ms", 1e3), "us": ("ms", 1e-3), "µs": ("ms", 1e-3),
    "mflops": ("MFLOPs", 1.0), "mflop": ("MFLOPs", 1.0), "m": ("MFLOPs", 1.0),
    "gflops": ("MFLOPs", 1e3), "gflop": ("MFLOPs", 1e3), "g": ("MFLOPs", 1e3),
    "flops": ("MFLOPs", 1e-6), "kflops": ("MFLOPs", 1e-3),
}


def parse_budget(text: str | float | None) -> Budget | None:
    """``"4.5ms"``, ``"4.5"`` (ms), ``"4500us"``, ``"300MFLOPs"``, ``"0.3GFLOPs"`` -> :class:`Budget`."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (int, float)):
        return Budget(float(text), "ms")
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise DataError(f"cannot read budget {text!r}: use e.g. 4.5ms, 4.5 (ms) or 300MFLOPs")
    unit, scale = _UNITS[m.group(2).lower()]
    value = float(m.group(1)) * scale
    if not value > 0:
        raise DataError(f"budget must be positive, got {text!r}")
    return Budget(value, unit)


def _unit_kind(unit: str) -> str:
    return "MFLOPs" if "flop" in unit.lower() else "ms"


def check_budget(table: LatencyTable, budget: Budget | None, space: SearchSpace) -> tuple[np.ndarray, float]:
    """Refuse a budget in the wrong unit or below the cheapest reachable arch; return that arch."""
    arch, min_lat = table.min_arch()
    if budget is None:
        return arch, min_lat
    if budget.unit != _unit_kind(table.unit):
        hint = "e.g. 300MFLOPs" if budget.unit == "ms" else "e.g. 4.5ms"
        raise DataError(f"budget {budget} does not match the latency objective's unit {table.unit} ({hint})")
    if budget.value < min_lat:
        raise DataError(
            f"budget {budget} is below the minimum reachable latency {min_lat:.4g} {table.unit} "
            f"(arch {space.format_arch(arch)}) of this predictor"
        )
    return arch, min_lat


# --------------------------------------------------------------- predictor
def _compile_predictor_folder(path: Path, space: SearchSpace) -> LatencyTable:
    """A saved predictor folder -> LatencyTable (``predictors.persistence`` + ``predictors.compile``)."""
    try:
        from predictors.compile import compile_predictor
        from predictors.persistence import load_predictor
    except ImportError as exc:
        raise PredictorFileError(f"{path} is a predictor folder but the predictors package cannot load it: {exc}") from None
    model, meta = load_predictor(path)
    if meta.get("space") not in (None, space.name):
        raise PredictorFileError(f"predictor was made for space {meta.get('space')!r}, not {space.name!r}; refused")
    parts = [str(meta.get(k)) for k in ("target", "device", "backend") if meta.get(k)]
    fp = meta.get("fingerprint")
    if isinstance(fp, str) and fp:
        parts.append(fp)
    table = compile_predictor(model, device=" ".join(dict.fromkeys(parts)))
    table.meta.setdefault("predictor_folder", str(path))
    return table


def load_latency(predictor: str | Path, space: SearchSpace) -> LatencyTable:
    """``"flops"``, a latency table JSON file, or a saved predictor folder -> LatencyTable for ``space``."""
    if str(predictor).lower() in ("flops", "mflops"):
        return flops_table(space)
    path = Path(predictor).expanduser()
    if not path.exists():
        raise PredictorFileError(f"predictor {path} does not exist (give a predictor folder, a latency table JSON or 'flops')")
    if path.is_dir():
        table_file = path / "latency_table.json"
        table = LatencyTable.load(table_file) if table_file.is_file() else _compile_predictor_folder(path, space)
    else:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PredictorFileError(f"predictor {path} is not a latency table JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != TABLE_SCHEMA:
            raise PredictorFileError(f"{path} is not a latnas latency table (schema {TABLE_SCHEMA}) nor a predictor folder")
        table = LatencyTable.from_dict(data)
    check_table(table, space)
    return table


def check_table(table: LatencyTable, space: SearchSpace, backend: str | None = None) -> None:
    """Refuse a table made for another space (or, when ``backend`` is given, another device)."""
    if table.space != space.name:
        raise PredictorFileError(f"predictor was made for space {table.space!r}, not {space.name!r}; refused")
    if table.table.shape != (space.n_layers, space.n_choices):
        raise PredictorFileError(
            f"predictor table has shape {table.table.shape}, space {space.name!r} needs {(space.n_layers, space.n_choices)}"
        )
    allowed = space.allowed_mask()
    if np.isnan(table.table[allowed]).any():
        raise PredictorFileError(f"predictor table has no entry for some allowed choices of space {space.name!r}")
    if backend and table.device and table.unit == "ms":
        described = f"{table.device} {table.meta.get('backend', '')}".lower()
        if backend.lower() not in described:
            raise PredictorFileError(
                f"predictor was made for device {table.device!r}, not backend {backend!r}; refused "
                "(profile and train a predictor for this backend)"
            )


# ------------------------------------------------------------------ job
@dataclass
class SearchJob:
    out_dir: Path
    space: str = "fbnet"
    predictor: str | None = None  # folder, table JSON, or "flops"
    budget: str | float | None = None
    algo: str = "nsga2"
    evals: int = 200
    seed: int = 0
    data: str | None = None
    n_train: int = 500
    n_val: int = 300
    resolution: int | None = None
    proxy: str | None = None  # "flops": search the FLOPs proxy (predictor, if given, only reports ms)
    margin: float = 0.0  # guard band: search under budget * (1 - margin) to absorb predictor error
    profile_top: int = 0
    backend: str = "onnxruntime"
    profile_quick: bool = False
    export: str | None = None  # comma-separated formats
    resume: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[int, int, str], None] | None = None


@dataclass
class SearchOutcome:
    result: SearchResult
    rows: list[dict[str, Any]]
    chosen: str | None
    files: dict[str, str]
    summary: dict[str, Any]


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else v


def write_front_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = list(FRONT_COLUMNS)
    if any("mflops" in r for r in rows):
        cols += list(PROXY_COLUMNS)
    if any("measured_ms" in r for r in rows):
        cols += list(PROFILE_COLUMNS)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: _fmt(r.get(c)) for c in cols})


def plot_front(path: Path, result: SearchResult, unit: str, budget: Budget | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    archive = result.extra.get("archive") or []
    if archive:
        ax.scatter([r[2] for r in archive], [r[1] for r in archive], s=8, c="0.75", label="evaluated")
    order = np.argsort(result.predicted)
    ax.plot(np.asarray(result.predicted)[order], np.asarray(result.scores)[order], "o-", c="C0", ms=4, label="Pareto front")
    if budget is not None:
        ax.axvline(budget.value, c="C3", ls="--", label=f"budget {budget}")
    ax.set_xlabel(f"predicted latency ({unit})")
    ax.set_ylabel("accuracy estimate (RWE)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def profile_archs(space: SearchSpace, archs: list[str], backend: str, quick: bool = False) -> dict[str, float]:
    """Median measured latency (ms) of whole models with a real profiler backend."""
    import profilers

    b = profilers.require_available(profilers.get_backend(backend))
    config = profilers.quick_config(threads=1) if quick else profilers.ProtocolConfig()
    out: dict[str, float] = {}
    for arch in archs:
        m = profilers.profile_model(b, space, arch, config)
        out[arch] = float(m.stats.median_ms)
    return out


def export_arch(space: SearchSpace, arch: str, out_dir: Path, formats: str, meta: dict[str, Any]) -> dict[str, Any]:
    import torch

    from latnas.export import export_model

    model = space.build(arch).eval()
    example = torch.randn(space.batch, *space.input_shape, generator=torch.Generator().manual_seed(0))
    report = export_model(model, example, out_dir, formats=formats, stem=f"{space.name}_{arch.replace(',', '-')}", meta=meta)
    return {
        "artifacts": [str(r.path) for r in report.results],
        "skipped": report.skipped,
        "parity_ok": report.ok,
    }


def run_search(job: SearchJob) -> SearchOutcome:
    """Run one search job end to end (see module docstring)."""
    from latnas.search.data import load_data

    t0 = time.perf_counter()
    space = get_space(job.space, batch=1)
    budget = parse_budget(job.budget)
    if job.proxy not in (None, "", "flops"):
        raise DataError(f"unknown proxy {job.proxy!r} (known: flops)")
    if job.predictor is None and job.proxy is None:
        raise PredictorFileError("give --predictor (a predictor folder, a latency table JSON, or 'flops') or --proxy flops")
    wants_flops = job.proxy == "flops" or str(job.predictor).lower() in ("flops", "mflops")
    if budget is not None and wants_flops and budget.unit != "MFLOPs":
        raise DataError(f"budget {budget} does not match the latency objective's unit MFLOPs (FLOPs proxy; e.g. 300MFLOPs)")
    ms_table = None
    if job.predictor is not None:
        ms_table = load_latency(job.predictor, space)
        if job.profile_top and ms_table.unit == "ms":
            check_table(ms_table, space, backend=job.backend)
    objective = flops_table(space) if job.proxy == "flops" or ms_table is None else ms_table
    if ms_table is not None and ms_table.unit != "ms":
        ms_table = None  # "flops" given as the predictor: no ms predictions
    if not 0.0 <= job.margin < 1.0:
        raise DataError(f"--margin must be in [0, 1), got {job.margin}")
    search_budget = None if budget is None else Budget(budget.value * (1.0 - job.margin), budget.unit)
    check_budget(objective, search_budget, space)
    if job.algo not in ALGORITHMS:
        ALGORITHMS.get(job.algo)  # one-line unknown-name error listing the known ones
    if job.evals < 1:
        raise DataError(f"--evals must be >= 1, got {job.evals}")
    data = load_data(job.data, space=space, n_train=job.n_train, n_val=job.n_val, seed=job.seed, resolution=job.resolution)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = SearchContext(
        space=space,
        latency=objective,
        data=data,
        budget=None if search_budget is None else search_budget.value,
        evals=job.evals,
        seed=job.seed,
        workdir=out,
        progress=job.progress,
        options={"resume": job.resume, **job.options},
    )
    result = ALGORITHMS.get(job.algo)(ctx)

    # rows of the front, best score first; never report an over-budget arch
    archs_int = np.asarray(result.archs, dtype=np.int64).reshape(len(result.archs), space.n_layers)
    objective_lat = objective.predict(archs_int) if len(archs_int) else np.zeros(0)
    ms_pred = ms_table.predict(archs_int) if (ms_table is not None and len(archs_int)) else np.full(len(archs_int), np.nan)
    proxy_used = _unit_kind(objective.unit) == "MFLOPs"
    rows = []
    for i, a in enumerate(result.archs):
        if budget is not None and objective_lat[i] > budget.value * (1 + 1e-9):
            log.warning("dropping %s: over budget", space.format_arch(a))
            continue
        row = {"arch": space.format_arch(a), "predicted_ms": float(ms_pred[i]), "score": float(result.scores[i])}
        if proxy_used:
            row["mflops"] = float(objective_lat[i])
        rows.append(row)

    profile: dict[str, Any] = {}
    if job.profile_top and rows:
        top = [r["arch"] for r in rows[: job.profile_top]]
        measured = profile_archs(space, top, job.backend, quick=job.profile_quick)
        for r in rows:
            if r["arch"] in measured:
                r["measured_ms"] = measured[r["arch"]]
                if budget is not None and budget.unit == "ms":
                    r["meets_budget"] = bool(measured[r["arch"]] <= budget.value)
        met = [r for r in rows if r.get("meets_budget")]
        profile = {
            "backend": job.backend,
            "profiled": len(measured),
            "meets_budget": sum(1 for r in rows if r.get("meets_budget")) if budget is not None and budget.unit == "ms" else None,
            "mean_abs_error_ms": float(np.mean([abs(r["measured_ms"] - r["predicted_ms"]) for r in rows if "measured_ms" in r and math.isfinite(r["predicted_ms"])]))
            if ms_table is not None else None,
        }
        chosen = met[0]["arch"] if met else rows[0]["arch"]
    else:
        chosen = rows[0]["arch"] if rows else None

    files = {"front_csv": str(out / "front.csv"), "front_png": str(out / "front.png"), "result_json": str(out / "result.json")}
    write_front_csv(out / "front.csv", rows)
    title = f"{job.algo} on {space.name}, {result.evals} evals" + (f", budget {budget}" if budget else "")
    plot_front(out / "front.png", result, objective.unit, budget, title)
    exported = None
    if job.export and chosen is not None:
        row = next(r for r in rows if r["arch"] == chosen)
        exported = export_arch(space, chosen, out / "export", job.export, {"space": space.name, "arch": chosen, **{k: row[k] for k in row}})
    summary = {
        "algo": job.algo,
        "space": space.name,
        "budget": None if budget is None else {"value": budget.value, "unit": budget.unit, "margin": job.margin,
                                               "searched_under": search_budget.value},
        "objective": {"unit": objective.unit, "device": objective.device, "proxy": job.proxy},
        "predictor": job.predictor,
        "data": data.name,
        "evals": result.evals,
        "seed": job.seed,
        "search_wall_s": result.wall_s,
        "total_wall_s": time.perf_counter() - t0,
        "chosen": chosen,
        "front": rows,
        "profile": profile,
        "export": exported,
        "history": result.history,
        "extra": {k: v for k, v in result.extra.items() if k != "archive"},
    }
    (out / "result.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    return SearchOutcome(result=result, rows=rows, chosen=chosen, files=files, summary=summary)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
