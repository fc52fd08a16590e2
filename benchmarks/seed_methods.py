"""Benchmark: the one-shot seed methods on the shipped data and the NAS-Bench-201 table (issue 11, items 1-3).

Sections (``--only supernet,hournas,nse``):

- ``supernet``: Kendall tau / Spearman between a scorer and the benchmark's
  CIFAR-10 test accuracy (``c10_test_acc``) over ``--n`` (200) archs drawn
  (seeded) from the table: the weight-sharing supernet (trained on the
  default digits data), the zero-cost scorers (params, synflow, naswot) and
  RWE (on ``--rwe-n`` of the archs: it is slow on a CPU), with CPU seconds.
- ``hournas``: HourNAS with ``--score supernet`` on nb201 under a FLOPs
  budget at the ``--quantile`` (0.35) of uniformly sampled archs: share of
  archs drawn uniformly from the shrunk space that meet the budget (goal
  >= 0.9), size of the space left, true CIFAR-10 accuracy of the result. The
  same shrink on fbnet (FLOPs, with the ``params`` scorer: the shrink does not
  depend on the scorer).
- ``nse``: NSE with the supernet on nb201: subset size per round and the true
  accuracy of each round's best.

    .venv/bin/python benchmarks/seed_methods.py --only supernet,hournas,nse [--n 200] [--json out.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latnas.schema.latency_table import flops_table  # noqa: E402
from latnas.search import ALGORITHMS, Budget, SearchProblem, Termination, minimize  # noqa: E402
from latnas.search.data import load_data  # noqa: E402
from latnas.search.scorers import ScorerConfig, make_scorer  # noqa: E402
from latnas.schema.spaces import get_space  # noqa: E402

TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"
log = logging.getLogger("seed_methods")


def load_truth(path: Path) -> dict[tuple[int, ...], float]:
    space = get_space("nb201")
    with path.open(newline="") as f:
        return {space.parse_arch(r["arch_str"]): float(r["c10_test_acc"]) for r in csv.DictReader(f)}


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def supernet_options(args) -> dict:
    return {"epochs": args.epochs, "cells_per_stage": args.cells, "lr": args.lr, "resolution": args.resolution,
            "weights": args.weights}


def section_supernet(args, truth, data) -> dict:
    space = get_space("nb201")
    archs = list(truth)
    idx = np.random.default_rng(args.seed).choice(len(archs), size=min(args.n, len(archs)), replace=False)
    sample = [archs[i] for i in sorted(idx)]
    target = np.array([truth[a] for a in sample])
    out = {}
    for name in [s.strip() for s in args.scorers.split(",") if s.strip()]:
        opts = supernet_options(args) if name == "supernet" else {}
        cfg_data = data if name != "rwe" else load_data(space=space, seed=args.seed, n_train=args.rwe_train, n_val=200)
        these = sample if name != "rwe" else sample[: args.rwe_n]
        scorer = make_scorer(name, ScorerConfig(space=space, data=cfg_data, seed=args.seed, options=opts))
        fit_s = fit_cpu = 0.0
        if name == "supernet":
            _, fit_s, fit_cpu = timed(scorer.fit)
        scores, wall, cpu = timed(lambda: scorer(these))
        t = target[: len(these)]
        tau, rho = float(kendalltau(scores, t)[0]), float(spearmanr(scores, t)[0])
        out[name] = {"n": len(these), "kendall": tau, "spearman": rho, "train_cpu_min": fit_cpu / 60,
                     "score_cpu_min": cpu / 60, "wall_min": (wall + fit_s) / 60}
        if name == "supernet":
            out[name]["trained_steps"] = scorer.steps_trained
        log.info("%-8s n=%3d  tau %+.3f  rho %+.3f  cpu %.1f min (train %.1f)", name, len(these), tau, rho,
                 (cpu + fit_cpu) / 60, fit_cpu / 60)
    return out


def _flops_problem(space, scorer, quantile, seed, data=None):
    table = flops_table(space)
    lat = table.predict(np.asarray(space.random_archs(5000, seed)))
    budget = Budget(float(np.quantile(lat, quantile)), "MFLOPs")
    return SearchProblem(space, table, scorer, budget=budget, data=data, scorer_key="bench"), budget


def section_hournas(args, truth, data) -> dict:
    out = {}
    space = get_space("nb201")
    scorer = make_scorer("supernet", ScorerConfig(space=space, data=data, seed=args.seed, options=supernet_options(args)))
    problem, budget = _flops_problem(space, scorer, args.quantile, args.seed, data)
    algo = ALGORITHMS.get("hournas")({"pop_size": 10, "epochs": args.epochs}, seed=args.seed)
    res, wall, cpu = timed(lambda: minimize(problem, algo, Termination(args.evals)))
    shrink = next(h for h in res.history if h["phase"] == "hournas-shrink")
    best = res.archs[0]
    top = float(np.quantile([v for a, v in truth.items() if problem.feasible(problem.latency(np.array([a])))[0]], 1.0))
    out["nb201"] = {"budget": str(budget), "feasible_share_before": shrink["feasible_share_before"],
                    "feasible_share": shrink["feasible_share"], "space_size_before": shrink["space_size_before"],
                    "space_size": shrink["space_size"], "kept_per_layer": shrink["kept_per_layer"],
                    "result": space.arch_str(best), "result_c10": truth[best], "best_c10_within_budget": top,
                    "evals": res.evals, "cpu_min": cpu / 60, "wall_min": wall / 60}
    log.info("hournas nb201: %s", out["nb201"])
    fb = get_space("fbnet")
    problem, budget = _flops_problem(fb, make_scorer("params", ScorerConfig(space=fb)), args.quantile, args.seed)
    res = minimize(problem, ALGORITHMS.get("hournas")({"pop_size": 10}, seed=args.seed), Termination(60))
    shrink = next(h for h in res.history if h["phase"] == "hournas-shrink")
    out["fbnet"] = {"budget": str(budget), "vital_layers": res.extra["vital_layers"],
                    "feasible_share_before": shrink["feasible_share_before"], "feasible_share": shrink["feasible_share"],
                    "space_size_before": shrink["space_size_before"], "space_size": shrink["space_size"],
                    "kept_per_layer": shrink["kept_per_layer"]}
    log.info("hournas fbnet: %s", out["fbnet"])
    return out


def section_nse(args, truth, data) -> dict:
    space = get_space("nb201")
    scorer = make_scorer("supernet", ScorerConfig(space=space, data=data, seed=args.seed, options=supernet_options(args)))
    problem, budget = _flops_problem(space, scorer, args.quantile, args.seed, data)
    opts = {"rounds": 3, "init_size": 2, "keep": 2, "grow": 1, "pop_size": 8, "epochs": max(1, args.epochs // 2),
            "multi_branch": args.multi_branch}
    res, wall, cpu = timed(lambda: minimize(problem, ALGORITHMS.get("nse")(opts, seed=args.seed), Termination(args.evals)))
    rounds = []
    for r in res.extra["rounds"]:
        arch = space.parse_arch(r["round_best"])
        rounds.append({"round": r["round"], "subset_sizes": r["subset_sizes"], "subset_total": r["subset_total"],
                       "space_size": r["space_size"], "best": space.arch_str(arch), "supernet_acc": r["round_best_score"],
                       "c10": truth[arch], "multi_branch_score": r.get("multi_branch_score")})
        log.info("nse round %d: subset %s (%d archs), best c10 %.2f", r["round"], r["subset_sizes"], r["space_size"], truth[arch])
    return {"budget": str(budget), "rounds": rounds, "result_c10": truth[res.archs[0]], "cpu_min": cpu / 60,
            "wall_min": wall / 60, "options": opts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="supernet,hournas,nse")
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--n", type=int, default=200, help="archs for the ranking study")
    ap.add_argument("--scorers", default="supernet,params,synflow,naswot,rwe", help="scorers the ranking study compares")
    ap.add_argument("--rwe-n", type=int, default=20, help="archs RWE scores (slow on a CPU)")
    ap.add_argument("--rwe-train", type=int, default=300, help="training images RWE's probe uses")
    ap.add_argument("--epochs", type=int, default=100, help="supernet epochs")
    ap.add_argument("--cells", type=int, default=2, help="nb201 supernet cells per stage")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--resolution", type=int, default=8)
    ap.add_argument("--weights", default=None, help="supernet weights folder (default: the cache)")
    ap.add_argument("--evals", type=int, default=60, help="evaluations for hournas / nse")
    ap.add_argument("--quantile", type=float, default=0.35, help="budget: this FLOPs quantile of uniform archs")
    ap.add_argument("--multi-branch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("latnas").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    if not args.table.is_file():
        print(f"error: NAS-Bench-201 table {args.table} not found", file=sys.stderr)
        return 2
    truth = load_truth(args.table)
    data = load_data(space=get_space("nb201"), seed=args.seed)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    sections = {"supernet": section_supernet, "hournas": section_hournas, "nse": section_nse}
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        if name not in sections:
            print(f"error: unknown section {name!r} (known: {', '.join(sections)})", file=sys.stderr)
            return 2
        report[name] = sections[name](args, truth, data)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "args"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
