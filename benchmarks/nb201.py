"""Search judged against ground truth nobody here produced: NAS-Bench-201.

Three questions a user asks, answered on the shipped table (15,625 archs,
trained accuracy, measured latency on 19 devices; ``../shared/data/nb201/``):

Q1  With k latency samples from my new device, how well does the predictor
    rank and place latency?  Every device in turn is the target; the other 18
    columns are transfer sources (``TransferPredictor``'s robust fit, live/dead
    source models fit on all rows of the other devices, the target contributes
    k random rows; old vs new fit and the ablation: ``benchmarks/transfer_loo.py``).
    ``family-out`` drops the target's own GPU at other batch sizes from the
    sources (a harder, fairer check). FLOPs: ranks from raw FLOPs, ±x% from a
    FLOPs-linear fit on the same k rows. ``ceiling``: the same additive model
    family fit on 12,000 rows of the target itself and tested on the rest
    (what no few-shot method of this family can beat).
Q2  Under my latency budget, does the searched arch meet it, and how much
    accuracy do I give up against the best arch that meets it (the oracle,
    by exhaustive lookup)?  See ``benchmarks/nb201_search.py``.
Q3  How good is the accuracy estimate the search runs on?  See
    ``benchmarks/scorers_nb201.py``.

    .venv/bin/python benchmarks/nb201.py [--quick] [--only q1,q2]

Prints each table and a summary line per question; ``--json FILE`` keeps
every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from latnas.schema.spaces import get_space  # noqa: E402
from predictors.data import load_arch_table  # noqa: E402
from predictors.features import arch_totals  # noqa: E402
from predictors.metrics import flops_baseline, latency_metrics  # noqa: E402
from predictors.models import OneHotRidge  # noqa: E402
from predictors.transfer import TransferPredictor, fit_source_models  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"
KEYS = ("spearman", "within_10pct", "within_5pct")
GPU_BATCH = re.compile(r"^(?P<family>1080ti|2080ti|titanx|titanxp)_(1|32|256)_ms$")


def family(column: str) -> str:
    """Hardware of a latency column: GPUs at batch 1/32/256 are one family."""
    m = GPU_BATCH.match(column)
    return m.group("family") if m else column


def load(path: Path = DATA):
    space = get_space("nb201")
    table = load_arch_table(path, space)
    devices = [c for c in table.columns if c.endswith("_ms")]
    return space, table, devices


def _mean(ms: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in ms])) for k in KEYS}


def q1(space, table, devices, ks=(10, 20, 100), seeds=range(5), log=print) -> list[dict]:
    """Few-shot transfer accuracy per device and k (see module docstring)."""
    t0 = time.perf_counter()
    sources = fit_source_models(table, devices)
    flops = arch_totals(space, table.archs)[:, 0]
    n = len(table)
    rows = []
    log(f"{'device':18s} {'k':>4s}  {'transfer sp/±10/±5':>22s}  {'family-out sp/±10/±5':>22s}  {'FLOPs sp/±10/±5':>22s}"
        f"  {'ceiling sp/±10/±5':>22s}")
    split = np.random.default_rng(12345).permutation(n)
    for dev in devices:
        y = table.column(dev)
        # additive ceiling: the same one-hot model family fit on 12,000 rows of the target itself
        ceil_model = OneHotRidge(space=space.name, target="linear").fit(table.archs[split[:12000]], y[split[:12000]])
        ceiling = _mean([latency_metrics(y[split[12000:]], ceil_model.predict(table.archs[split[12000:]]))])
        src = {c: m for c, m in sources.items() if c != dev}
        fam = {c: m for c, m in src.items() if family(c) != family(dev)}
        for k in ks:
            acc = {"transfer": [], "family_out": [], "flops": []}
            for seed in seeds:
                perm = np.random.default_rng(seed).permutation(n)
                tr, te = perm[:k], perm[k:]
                acc["transfer"].append(latency_metrics(y[te], TransferPredictor(space="nb201", source_models=src).fit(table.archs[tr], y[tr]).predict(table.archs[te])))
                acc["family_out"].append(latency_metrics(y[te], TransferPredictor(space="nb201", source_models=fam).fit(table.archs[tr], y[tr]).predict(table.archs[te])))
                acc["flops"].append(flops_baseline(flops[tr], y[tr], flops[te], y[te]))
            mean = {name: _mean(ms) for name, ms in acc.items()}
            mean["ceiling"] = ceiling
            rows.append({"device": dev, "k": k, **mean,
                         "transfer_spearman_seeds": [float(m["spearman"]) for m in acc["transfer"]]})
            log(f"{dev:18s} {k:4d}  " + "  ".join(f"{'/'.join(f'{mean[name][key]:.3f}' for key in KEYS):>22s}" for name in mean))
    for k in ks:
        sel = [r for r in rows if r["k"] == k]
        log(f"{'MEAN':18s} {k:4d}  " + "  ".join(
            f"{'/'.join(f'{np.mean([r[name][key] for r in sel]):.3f}' for key in KEYS):>22s}" for name in ("transfer", "family_out", "flops", "ceiling")))
    for k in ks:  # the worst case, not only means: the worst device (seed mean) and the worst (device, seed)
        sel = [r for r in rows if r["k"] == k]
        wd = min(sel, key=lambda r: r["transfer"]["spearman"])
        ws = min(((r["device"], i, v) for r in sel for i, v in enumerate(r["transfer_spearman_seeds"])), key=lambda t: t[2])
        log(f"{'WORST':18s} {k:4d}  transfer Spearman: device {wd['device']} {wd['transfer']['spearman']:.3f}; "
            f"(device, seed) {ws[0]} s{ws[1]} {ws[2]:.3f}")
    log(f"q1: {len(devices)} devices x {len(ks)} k x {len(list(seeds))} seeds in {time.perf_counter() - t0:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--quick", action="store_true", help="2 seeds, 6 devices for Q2")
    ap.add_argument("--only", default="q1,q2", help="comma-separated: q1,q2")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--evals", type=int, default=300)
    ap.add_argument("--algos", default="bananas:100,bananas,rea:100,rea,nsga2,hournas,nse,random,exhaustive",
                    help="name[/acquisition][:evals], comma-separated (exhaustive: every feasible arch, the reference)")
    ap.add_argument("--devices", default="", help="comma-separated latency columns (default: all; --quick: 6)")
    ap.add_argument("--score-column", default="c100_test_acc", help="true accuracy (regret; and the search's score with --score table)")
    ap.add_argument("--score", default="table", help="what the search scores with: table (the trained accuracy) or a scorer, e.g. vote")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"error: {args.data} not found (the shared NAS-Bench-201 table)", file=sys.stderr)
        return 2
    space, table, devices = load(args.data)
    seeds = range(args.seeds if args.seeds else (2 if args.quick else 5))
    only = {s.strip() for s in args.only.split(",")}
    out: dict = {"data": str(args.data), "seeds": len(seeds)}
    if "q1" in only:
        print("\n== Q1: latency predictor from k target samples (Spearman / within ±10% / within ±5%) ==")
        out["q1"] = q1(space, table, devices, seeds=seeds)
    if "q2" in only:
        from nb201_search import q2

        acc = table.column(args.score_column)
        lookup = {tuple(a): float(v) for a, v in zip(table.archs.tolist(), acc)}
        devs = devices if not args.quick else devices[:: max(1, len(devices) // 6)]
        if args.devices:
            devs = [d for d in devices if d in args.devices.split(",")]
        print(f"\n== Q2: search under a budget ({args.score_column} from the table, latency from k=10 transfer), "
              f"{args.evals} evaluations ==")
        score_lookup, label = None, f"{args.score_column} from the table"
        if args.score != "table":
            from nb201_search import ScoreLookup

            from latnas.search.scorers import ScorerConfig, make_scorer

            score_lookup = ScoreLookup(make_scorer(args.score, ScorerConfig(space=space, seed=0)))
            label = f"scorer {args.score!r}; regret in true {args.score_column}"
        print(f"   (search scores: {label})")
        out["q2"] = q2(space, table, devs, fit_source_models(table, devices), lookup, seeds, evals=args.evals,
                       algos=tuple(args.algos.split(",")), score_lookup=score_lookup,
                       partial=None if args.json is None else args.json.with_suffix(".partial.json"))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
