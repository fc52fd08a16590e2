"""Benchmark: how well each accuracy scorer ranks NAS-Bench-201 archs (issue 9 Q3).

N archs are drawn (seeded) from the shipped NAS-Bench-201 table; every scorer
of ``latnas.search.scorers`` scores them (seeded random weights; the default
digits data at 32x32 for the data-using scorers) and is compared with the
benchmark's CIFAR-10 test accuracy (``c10_test_acc``, 200 epochs) by Spearman
and Kendall rank correlation. Also printed: seconds per arch, and the *vote*:
the average rank over the three scorers with the best Spearman in this run
(so chosen on the same sample: slightly optimistic), and a fixed vote
(``--vote``, chosen beforehand).

Published anchors (Abdelfattah et al., ICLR 2021, all 15,625 archs): best
single zero-cost proxy (synflow) about 0.74 Spearman, a vote of three 0.82.

    .venv/bin/python benchmarks/scorers_nb201.py [--quick | --n 1000] [--scorers params,flops,synflow,naswot] [--json out.json]

``rwe`` is opt-in (``--scorers ...,rwe``): it runs 1,500 images through each
whole network, minutes per arch on a small CPU.
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
from scipy.stats import kendalltau, rankdata, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latnas.search.data import load_data  # noqa: E402
from latnas.search.scorers import ScorerConfig, make_scorer  # noqa: E402
from latnas.schema.spaces import get_space  # noqa: E402

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"
TARGET = "c10_test_acc"
log = logging.getLogger("scorers_nb201")


def sample_rows(path: Path, n: int, seed: int) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    idx = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(idx)]


def correlations(scores: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    return float(spearmanr(scores, target)[0]), float(kendalltau(scores, target)[0])


def vote(scores: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Average rank (higher = better) over ``names``."""
    return np.mean([rankdata(scores[n]) for n in names], axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--n", type=int, default=1000, help="archs sampled from the table")
    ap.add_argument("--quick", action="store_true", help="100 archs")
    ap.add_argument("--seed", type=int, default=0, help="sample, weight and data seed")
    ap.add_argument("--scorers", default="params,flops,synflow,naswot")
    ap.add_argument("--vote", default="synflow,naswot,params", help="the fixed vote of three")
    ap.add_argument("--naswot-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, help="write every score and figure here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    if not args.table.is_file():
        print(f"error: NAS-Bench-201 table {args.table} not found", file=sys.stderr)
        return 2
    n = 100 if args.quick else args.n
    space = get_space("nb201")
    rows = sample_rows(args.table, n, args.seed)
    archs = [space.parse_arch(r["arch_str"]) for r in rows]
    target = np.array([float(r[TARGET]) for r in rows])
    data = load_data(space=space, seed=args.seed)
    names = [s.strip() for s in args.scorers.split(",") if s.strip()]
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name in names:
        options = {"batch_size": args.naswot_batch} if name == "naswot" else {}
        t0 = time.perf_counter()
        scorer = make_scorer(name, ScorerConfig(space=space, data=data, seed=args.seed, options=options))
        out = []
        for i, a in enumerate(archs):
            out.append(float(scorer([a])[0]))
            if (i + 1) % 50 == 0:
                log.info("%s: %d/%d archs, %.2f s/arch", name, i + 1, len(archs), (time.perf_counter() - t0) / (i + 1))
        seconds[name] = (time.perf_counter() - t0) / len(archs)
        scores[name] = np.array(out)
    results = {name: (*correlations(scores[name], target), seconds[name]) for name in names}
    best3 = sorted(names, key=lambda k: -results[k][0])[:3]
    fixed = [s for s in args.vote.split(",") if s in scores]
    votes = {}
    if len(best3) >= 2:
        votes[f"vote(best: {'+'.join(best3)})"] = best3
    if len(fixed) >= 2 and fixed != best3:
        votes[f"vote(fixed: {'+'.join(fixed)})"] = fixed
    for label, members in votes.items():
        results[label] = (*correlations(vote(scores, members), target), sum(seconds[m] for m in members))

    print(f"NAS-Bench-201, {len(archs)} archs (seed {args.seed}), rank correlation with {TARGET}:")
    print(f"{'scorer':<44} {'spearman':>9} {'kendall':>8} {'s/arch':>8}")
    for label, (rho, tau, sec) in results.items():
        print(f"{label:<44} {rho:>9.3f} {tau:>8.3f} {sec:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "n": len(archs), "seed": args.seed, "target": TARGET,
            "archs": [space.format_arch(a) for a in archs], "target_values": target.tolist(),
            "scores": {k: v.tolist() for k, v in scores.items()},
            "results": {k: {"spearman": r, "kendall": t, "s_per_arch": s} for k, (r, t, s) in results.items()},
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
