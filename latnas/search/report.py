"""What a search writes: ``front.csv``, ``front.png``, profiling of the top archs, export.

Plain functions over rows (dicts), so the run (:mod:`latnas.search.loop`)
only decides what goes in them.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from latnas.search.base import SearchResult
from latnas.search.budget import Budget
from latnas.schema.spaces.base import SearchSpace

FRONT_COLUMNS = ("arch", "predicted_ms", "score")
PROXY_COLUMNS = ("mflops",)
PROFILE_COLUMNS = ("measured_ms", "meets_budget")


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


def plot_front(path: Path, result: SearchResult, unit: str, budget: Budget | None, title: str, score_name: str = "RWE") -> None:
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
    ax.set_ylabel(f"accuracy estimate ({score_name})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def profile_archs(space: SearchSpace, archs: list[str], backend: str, quick: bool = False,
                  options: dict[str, Any] | None = None) -> dict[str, float]:
    """Median measured latency (ms) of whole models with a profiler backend (``options``: its constructor's)."""
    import profilers

    b = profilers.require_available(profilers.get_backend(backend, **(options or {})))
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


def json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
