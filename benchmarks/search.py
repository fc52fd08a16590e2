"""Latency-constrained search on ONNX Runtime CPU: FLOPs proxy vs a measured-latency table.

What it does (one run, side by side):

1. profiles every FBNet block (per-layer table) and some whole random models
   with ONNX Runtime on this CPU (resumable store, so reruns are fast);
2. builds the search's LatencyTable directly from the per-block medians
   (block sum + a linear correction fitted on whole models: the predictors
   package has no compile-to-table entry point yet), and a FLOPs->ms linear
   fit for converting ms budgets into FLOPs budgets for the proxy;
3. for three budgets (quantiles of predicted latency over random archs), runs
   NSGA-II with the FLOPs proxy and with the latency table (same seed, same
   evaluation count, shared RWE scorer), profiles the top archs of each front
   and reports the share that meets the MEASURED budget, their RWE score and
   the search wall time;
4. runs every registered algorithm at the middle budget (wall time, best score);
5. optionally the RWE rank-correlation study (Kendall tau vs briefly trained);
6. writes a Pareto plot to docs/search_pareto.png.

    .venv/bin/python benchmarks/search.py --quick     # about 5-10 min on a busy 2-core box
    .venv/bin/python benchmarks/search.py             # full
    .venv/bin/python benchmarks/search.py --only rank # just the RWE rank study
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latnas.schema.latency_table import LatencyTable, flops_table  # noqa: E402
from latnas.search import ALGORITHMS, Budget, SearchProblem, Termination, flops_budget_from_samples, minimize  # noqa: E402
from latnas.search.budget import unit_kind  # noqa: E402
from latnas.search.data import load_data  # noqa: E402
from latnas.search.rwe import RWEConfig, RWEScorer, rank_correlation_study  # noqa: E402
from latnas.schema.spaces import get_space  # noqa: E402


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------- predictor
def build_table(space, store_path: Path, n_models: int, backend_name: str = "onnxruntime", careful: bool = False,
                stat: str = "median_ms"):
    """Per-block ORT medians -> LatencyTable with a linear correction fitted on whole models."""
    import profilers

    backend = profilers.require_available(profilers.get_backend(backend_name))
    config = profilers.quick_config(threads=1) if not careful else profilers.ProtocolConfig(max_seconds=2.0)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store = profilers.ProfileStore(store_path)
    t0 = time.perf_counter()
    summary = profilers.profile_blocks(backend, space.unique_blocks(include_fixed=True), store, config, progress=False)
    log(f"  blocks: {summary.done} profiled, {summary.skipped} from store, {summary.failed} failed ({time.perf_counter() - t0:.0f}s)")
    fp = summary.fingerprint

    def block_ms(spec) -> float:
        m = store.get(spec.key, backend.name, spec.batch, fingerprint=fp)
        if m is None:
            raise RuntimeError(f"block {spec.key} missing from the store")
        return float(getattr(m.stats, stat))

    table = np.full((space.n_layers, space.n_choices), np.nan)
    for layer, choice, blocks in space.layer_table():
        table[layer, choice] = sum(block_ms(s) for s in blocks)
    fixed = sum(block_ms(s) for s in space.fixed_blocks())
    # calibration models: uniform random archs (the budgets are quantiles of the same distribution)
    archs = space.random_archs(n_models, rng=12345)
    t0 = time.perf_counter()
    msum = profilers.profile_models(backend, space, [space.format_arch(a) for a in archs], store, config, progress=False)
    log(f"  models: {msum.done} profiled, {msum.skipped} from store ({time.perf_counter() - t0:.0f}s)")
    measured = np.array([
        getattr(store.get(f"model:{space.name}:{space.format_arch(a)}", backend.name, 1, fingerprint=fp).stats, stat) for a in archs
    ])
    raw = LatencyTable(space=space.name, table=table, offset=fixed, unit="ms")
    total = raw.predict(np.asarray(archs))  # block sum incl. stem/head
    fl = flops_table(space).predict(np.asarray(archs))
    fit, held = np.arange(len(archs)) % 2 == 0, np.arange(len(archs)) % 2 == 1
    # held-out error of each correction (fit on even rows, test on odd rows)
    a, b = np.polyfit(total[fit], measured[fit], 1)
    rel = np.abs(a * total[held] + b - measured[held]) / measured[held]
    fa, fb = np.polyfit(fl[fit], measured[fit], 1)
    flops_rel = np.abs(fa * fl[held] + fb - measured[held]) / measured[held]
    # final corrections use every model
    a, b = np.polyfit(total, measured, 1)
    fa, fb = np.polyfit(fl, measured, 1)
    lo, hi = float(raw.min_arch()[1]), float(raw.predict(np.nanargmax(table, axis=1)[None])[0])
    kx = np.array([lo - fixed, hi - fixed])  # knots act on the uncorrected per-layer sum
    ky = a * (kx + fixed) + b
    device = f"{backend.name} cpu {fp}"
    lat = LatencyTable(space=space.name, table=table, knots_x=kx, knots_y=ky, unit="ms", device=device,
                       meta={"backend": backend.name, "fingerprint": fp, "fit": [float(a), float(b)]})
    held = rel
    stats = {
        "n_blocks": len(space.unique_blocks()),
        "n_models": len(archs),
        "heldout_mape": float(held.mean()),
        "heldout_p90": float(np.quantile(held, 0.9)),
        "flops_fit_heldout_mape": float(flops_rel.mean()),
        "flops_fit_heldout_p90": float(np.quantile(flops_rel, 0.9)),
        "flops_to_ms": [float(fa), float(fb)],
        "models_ms": [float(measured.min()), float(measured.max())],
    }
    store.close()
    return lat, stats, (list(archs), [float(v) for v in measured])


def refit(lat: LatencyTable, archs: list, measured: list[float], budget: float, margin_cap: float = 0.2):
    """Close the loop: refit the linear correction on every measured arch near the budget.

    Uses calibration models plus the top archs already profiled, keeping those
    measured below 2x the budget (the region the search works in). Returns the
    refitted table and a guard band: the 90th percentile of the positive
    relative under-prediction on those points (capped).
    """
    arr = np.asarray(archs)
    y = np.asarray(measured)
    keep = y <= 2.0 * budget
    if keep.sum() < 3:
        keep = np.argsort(y)[: max(3, len(y) // 2)]
    s = lat.block_sum(arr[keep])
    a, b = np.polyfit(s, y[keep], 1)
    if a <= 0:
        a, b = 1.0, float(np.mean(y[keep] - s))
    kx = np.asarray(lat.knots_x)
    new = LatencyTable(space=lat.space, table=lat.table, knots_x=kx, knots_y=a * kx + b, unit=lat.unit,
                       device=lat.device, meta={**lat.meta, "refit": [float(a), float(b)], "refit_points": int(np.size(s))})
    under = (y[keep] - new.predict(arr[keep])) / y[keep]
    margin = float(min(margin_cap, max(0.0, np.quantile(under, 0.9))))
    return new, margin


def measure(space, archs: list[str], cache: dict[str, float], backend_name: str = "onnxruntime",
            stat: str = "median_ms") -> list[float]:
    import profilers

    backend = profilers.get_backend(backend_name)
    config = profilers.ProtocolConfig(min_repeats=20, max_seconds=1.5, warmup_seconds=0.1)
    out = []
    for a in archs:
        if a not in cache:
            cache[a] = float(getattr(profilers.profile_model(backend, space, a, config).stats, stat))
        out.append(cache[a])
    return out


# ------------------------------------------------------------------ search
def search(space, table, budget, evals, seed, scorer, algo="nsga2", pop_size=None):
    """One search (problem + algorithm + termination); returns the result, wall time and new RWE scorings."""
    opts = {"pop_size": pop_size} if pop_size else {}
    problem = SearchProblem(space, table, scorer, budget=Budget(budget, unit_kind(table.unit)), data=scorer.data,
                            scorer_key=f"rwe:seed={seed}")
    t0 = time.perf_counter()
    calls0 = len(scorer.cache)
    res = minimize(problem, ALGORITHMS.get(algo)(opts, seed=seed), Termination(evals))
    return res, time.perf_counter() - t0, len(scorer.cache) - calls0


def _refit_plan(lat, archs, ms, budget):
    table, margin = refit(lat, archs, ms, budget)
    log(f"    refit on {table.meta['refit_points']} measured archs near the budget; guard band {margin:.1%}")
    return table, budget * (1 - margin)


def rank_study(space, n_archs: int, epochs: int, n_train: int, resolution: int, seed: int = 0) -> dict:
    data = load_data(space=space, n_train=n_train, n_val=300, seed=seed, resolution=resolution)
    archs = space.random_archs(n_archs, rng=seed + 99)
    t0 = time.perf_counter()
    out = rank_correlation_study(space, archs, data, epochs=epochs, seed=seed,
                                 progress=lambda i, n, m: log(f"  rank study {i}/{n}: {m}"))
    out["wall_s"] = time.perf_counter() - t0
    out["n_train"], out["resolution"] = n_train, resolution
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["all", "search", "rank"], default="all")
    ap.add_argument("--store", type=Path, default=Path("/tmp/latnas-search-bench/ort_profiles.sqlite"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures as JSON here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stat", choices=["median_ms", "p10_ms", "min_ms"], default="median_ms",
                    help="latency statistic for the table and the measured check (p10/min resist a busy machine)")
    ap.add_argument("--rank-archs", type=int, default=None, help="archs in the RWE rank study (quick 8, full 20)")
    ap.add_argument("--rank-epochs", type=int, default=None, help="training epochs per arch (quick 3, full 8)")
    ap.add_argument("--rank-resolution", type=int, default=8)
    ap.add_argument("--rank-train", type=int, default=600)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = get_space("fbnet")
    q = args.quick
    evals = 30 if q else 60
    top_k = 3 if q else 5
    res_px = 8 if q else 16
    report: dict = {"quick": q}

    if args.only in ("all", "search"):
        log("== latency table from ONNX Runtime block profiles")
        store = args.store.with_name(args.store.stem + ("_quick" if q else "_full") + args.store.suffix)
        lat, tstats, (cal_archs, cal_ms) = build_table(space, store, n_models=12 if q else 24, careful=not q, stat=args.stat)
        report["stat"] = args.stat
        report["table"] = tstats
        log(f"  held-out whole-model error: MAPE {tstats['heldout_mape']:.1%}, p90 {tstats['heldout_p90']:.1%}; "
            f"FLOPs linear fit MAPE {tstats['flops_fit_heldout_mape']:.1%}")
        flops = flops_table(space)
        rand = np.asarray(space.random_archs(2000, rng=7))
        budgets = [float(np.quantile(lat.predict(rand), p)) for p in (0.15, 0.35, 0.6)]
        data = load_data(space=space, n_train=200 if q else 300, n_val=150 if q else 200, seed=args.seed, resolution=res_px)
        scorer = RWEScorer(space, data, RWEConfig(seed=args.seed))
        measured: dict[str, float] = {}
        known_archs, known_ms = list(cal_archs), list(cal_ms)  # every arch measured so far
        rows = []
        fronts = {}
        for budget in budgets:
            # the proxy gets the same information a predictor gets: a FLOPs->ms fit on the same measured models
            flops_budget = flops_budget_from_samples(space, cal_archs, cal_ms, budget, flops=flops)
            margin = min(0.2, tstats["heldout_p90"])
            plans = [("flops-proxy", lambda: (flops, flops_budget)), ("latency-table", lambda: (lat, budget)),
                     (f"latency-table, margin {margin:.0%}", lambda: (lat, budget * (1 - margin))),
                     ("latency-table, refit on measured + margin", lambda: _refit_plan(lat, known_archs, known_ms, budget))]
            for name, plan in plans:
                table, b = plan()
                res, wall, calls = search(space, table, b, evals, args.seed, scorer)
                top = [space.format_arch(a) for a in res.archs[:top_k]]
                ms = measure(space, top, measured, stat=args.stat)
                meets = [m <= budget for m in ms]
                pred_ms = table.predict(np.asarray(res.archs[:top_k])) if table.unit == "ms" else lat.predict(np.asarray(res.archs[:top_k]))
                rows.append({
                    "budget_ms": budget, "objective": name, "objective_budget": b, "front": len(res.archs),
                    "top": len(top), "meets": int(sum(meets)), "share": float(np.mean(meets)) if top else float("nan"),
                    "rwe_top_mean": float(np.mean(res.scores[:top_k])) if top else float("nan"),
                    "rwe_best": float(res.scores[0]) if top else float("nan"),
                    "top_archs": top, "pred_ms_top": [float(v) for v in pred_ms], "measured_ms_top": ms,
                    "search_s": wall, "new_rwe_evals": calls,
                })
                fronts[(round(budget, 4), name)] = (res, ms)
                known_archs += [space.parse_arch(a) for a in top]
                known_ms += ms
                r = rows[-1]
                log(f"  budget {budget:.3f} ms | {name:13s} ({b:.4g}) | top {r['meets']}/{r['top']} meet measured budget | "
                    f"RWE top-mean {r['rwe_top_mean']:.3f} | search {wall:.1f}s")
        report["budgets"] = rows
        # overall share
        report["shares"] = {}
        for name in dict.fromkeys(r["objective"] for r in rows):
            sel = [r for r in rows if r["objective"] == name]
            report["shares"][name] = sum(r["meets"] for r in sel) / max(1, sum(r["top"] for r in sel))

        log("== every algorithm at the middle budget")
        algo_rows = []
        mid = budgets[1]
        for algo in ALGORITHMS.names():
            fresh = RWEScorer(space, data, RWEConfig(seed=args.seed))  # no shared cache: honest wall times
            try:
                res, wall, calls = search(space, lat, mid, evals, args.seed, fresh, algo=algo)
            except Exception as exc:  # an algorithm that cannot run on this space/setting: report, go on
                algo_rows.append({"algo": algo, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
                log(f"  {algo:8s} failed: {exc}")
                continue
            ok = bool(res.archs) and max(res.predicted) <= mid + 1e-9
            algo_rows.append({"algo": algo, "wall_s": wall, "best_rwe": float(res.scores[0]) if res.scores else None,
                              "front": len(res.archs), "evals": res.evals, "new_rwe_evals": calls, "within_budget": ok})
            log(f"  {algo:8s} best RWE {algo_rows[-1]['best_rwe']} | front {len(res.archs)} | evals {res.evals} | {wall:.1f}s")
        report["algorithms"] = algo_rows
        plot(args.out / "search_pareto.png", fronts, mid, lat)
        print_tables(report)

    if args.only in ("all", "rank"):
        log("== RWE rank correlation (Kendall tau vs briefly trained)")
        rs = rank_study(space, n_archs=args.rank_archs or (8 if q else 20), epochs=args.rank_epochs or (3 if q else 8),
                        n_train=args.rank_train, resolution=args.rank_resolution)
        report["rank"] = {k: v for k, v in rs.items()}
        log(f"  Kendall tau {rs['kendall_tau']:.3f} (p={rs['kendall_p']:.3f}), Spearman {rs['spearman_rho']:.3f} over {len(rs['rwe'])} archs; "
            f"RWE {rs['rwe_s_per_arch']:.1f}s/arch vs training {rs['train_s_per_arch']:.1f}s/arch")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))


def print_tables(report: dict) -> None:
    t = report["table"]
    print()
    print(f"Latency table ({report['stat']}): {t['n_blocks']} ORT-profiled blocks + linear correction on {t['n_models']} models; "
          f"held-out MAPE (fit on half, test on the other half) {t['heldout_mape']:.1%} "
          f"(FLOPs linear fit: {t['flops_fit_heldout_mape']:.1%})")
    print()
    print("| budget (ms) | objective (searched budget) | top archs meeting measured budget | mean RWE of top | best RWE | search wall (s) |")
    print("|---|---|---|---|---|---|")
    for r in report["budgets"]:
        print(f"| {r['budget_ms']:.3f} | {r['objective']} ({r['objective_budget']:.4g}) | {r['meets']}/{r['top']} | {r['rwe_top_mean']:.3f} | "
              f"{r['rwe_best']:.3f} | {r['search_s']:.1f} |")
    print()
    print("Share of top archs meeting the measured budget: "
          + "; ".join(f"{k} {v:.0%}" for k, v in report["shares"].items()))
    print()
    print("| algorithm | best RWE | front size | evals | wall (s) | within budget |")
    print("|---|---|---|---|---|---|")
    for r in report["algorithms"]:
        if "error" in r:
            print(f"| {r['algo']} | failed: {r['error']} | | | | |")
        else:
            print(f"| {r['algo']} | {r['best_rwe']:.3f} | {r['front']} | {r['evals']} | {r['wall_s']:.1f} | {r['within_budget']} |")


def plot(path: Path, fronts: dict, budget: float, lat: LatencyTable) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    colours = ["C1", "C0", "C2", "C4", "C5"]
    names = list(dict.fromkeys(name for _, name in fronts))
    for (b, name), (res, ms) in fronts.items():
        if abs(b - budget) > 1e-3 or not res.archs:
            continue
        c = colours[names.index(name) % len(colours)]
        pred = lat.predict(np.asarray(res.archs))
        order = np.argsort(pred)
        ax.plot(pred[order], np.asarray(res.scores)[order], "o-", c=c, ms=3, alpha=0.8, lw=1.2,
                label=f"{name}: front (predicted ms)")
        ax.scatter(ms, res.scores[: len(ms)], marker="x", c=c, s=45, label=f"{name}: top {len(ms)} measured")
    ax.axvline(budget, c="C3", ls="--", label=f"budget {budget:.2f} ms")
    ax.set_xlabel("latency on ONNX Runtime CPU (ms)")
    ax.set_ylabel("RWE accuracy estimate (digits)")
    ax.set_title(f"NSGA-II fronts at budget {budget:.2f} ms (dots: block-table prediction; x: measured)", fontsize=8)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
