"""Latency-predictor accuracy on the shared FBNet data (9 devices), and compiled speed.

For each device, k in {20, 100, 900} training archs and 5 seeds (test on the
other 5000 - k archs): Spearman, within ±10% and ±5% of

* xgb       XGBLatencyPredictor (default: ridge base + depth-1 boosting, auto log/linear target)
* transfer  TransferPredictor from the other eight devices (source models fit on all 5000 rows
            of those devices, i.e. offline profiles that include the target's test archs; at
            prediction time only the arch is used)
* strict    the same, but source models fit only on a disjoint half of the archs and the target
            trained/tested on the other half (no test arch was seen by any source model)
* ridge     OneHotRidge (FLOPs prior)
* flops     FLOPs proxy (ranks from raw FLOPs; ±x% from a FLOPs-linear fit on the k rows)

plus noise ceilings (ridge trained on 4,000 archs, tested on the other 1,000) and
the integer-ms quantisation bound, and predictions/s of the default model
compiled into a LatencyTable vs uncompiled (one core).

    .venv/bin/python benchmarks/predictor_fbnet.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from latnas.schema.spaces import get_space  # noqa: E402
from predictors.compile import compile_predictor  # noqa: E402
from predictors.data import find_fbnet_csv, load_arch_table  # noqa: E402
from predictors.features import arch_totals  # noqa: E402
from predictors.metrics import flops_baseline, latency_metrics, quantisation_bound  # noqa: E402
from predictors.models import OneHotRidge, XGBLatencyPredictor  # noqa: E402
from predictors.transfer import TransferPredictor, fit_source_models  # noqa: E402

KEYS = ("spearman", "within_10pct", "within_5pct")


def _fmt(m: dict) -> str:
    return "/".join(f"{m[k]:.3f}" for k in KEYS)


def accuracy(table, devices, ks, seeds, xgb_params):
    archs = table.archs
    flops = arch_totals(get_space("fbnet"), archs)[:, 0]
    n = len(table)
    all_sources = fit_source_models(table, list(table.columns))
    half = np.random.default_rng(12345).permutation(n)
    half_a, half_b = half[: n // 2], half[n // 2:]
    strict_sources = fit_source_models(table, list(table.columns), rows=half_a)
    rows = []
    for dev in devices:
        y = table.column(dev)
        src = {c: m for c, m in all_sources.items() if c != dev}
        ssrc = {c: m for c, m in strict_sources.items() if c != dev}
        for k in ks:
            acc: dict[str, list] = {name: [] for name in ("xgb", "transfer", "strict", "ridge", "flops")}
            for seed in seeds:
                perm = np.random.default_rng(seed).permutation(n)
                tr, te = perm[:k], perm[k:]
                acc["xgb"].append(latency_metrics(y[te], XGBLatencyPredictor(random_state=seed, **xgb_params).fit(archs[tr], y[tr]).predict(archs[te])))
                acc["transfer"].append(latency_metrics(y[te], TransferPredictor(source_models=src).fit(archs[tr], y[tr]).predict(archs[te])))
                acc["ridge"].append(latency_metrics(y[te], OneHotRidge().fit(archs[tr], y[tr]).predict(archs[te])))
                acc["flops"].append(flops_baseline(flops[tr], y[tr], flops[te], y[te]))
                pb = np.random.default_rng(seed).permutation(half_b)
                str_, ste = pb[:k], pb[k:]
                acc["strict"].append(latency_metrics(y[ste], TransferPredictor(source_models=ssrc).fit(archs[str_], y[str_]).predict(archs[ste])))
            mean = {name: {key: float(np.mean([m[key] for m in ms])) for key in KEYS} for name, ms in acc.items()}
            rows.append((dev, k, mean))
            print(f"{dev:16s} k={k:4d}  " + "  ".join(f"{name} {_fmt(m)}" for name, m in mean.items()), flush=True)
    return rows


def ceilings(table, devices):
    """Best additive fit with 4,000 training archs (held-out 1,000) and the integer-ms quantisation bound."""
    out = {}
    perm = np.random.default_rng(0).permutation(len(table))
    tr, te = perm[:4000], perm[4000:]
    for dev in devices:
        y = table.column(dev)
        m = latency_metrics(y[te], OneHotRidge().fit(table.archs[tr], y[tr]).predict(table.archs[te]))
        integer = bool(np.all(y == np.round(y)))
        out[dev] = (m, quantisation_bound(y) if integer else None)
    return out


def speed(table, n_archs: int):
    space = get_space("fbnet")
    y = table.column("raspi4_ms")
    model = XGBLatencyPredictor(target="log", linear_init=False, n_estimators=400, learning_rate=0.1,
                                early_stopping_rounds=0).fit(table.archs[:900], y[:900])
    lt = compile_predictor(model)
    archs = np.array(space.random_archs(n_archs, 7, unique=False), dtype=np.int64)
    t = time.perf_counter()
    ref = model.predict(archs)
    t_model = time.perf_counter() - t
    lt.predict(archs)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        out = lt.predict(archs)
        best = min(best, time.perf_counter() - t)
    err = float(np.max(np.abs(out / ref - 1)))
    return model.n_trees_, n_archs / t_model, n_archs / best, err


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="k in {20, 900}, 1 seed, capped trees (about a minute)")
    args = ap.parse_args(argv)
    csv_path = find_fbnet_csv()
    if csv_path is None:
        print("shared FBNet data not found (set LATNAS_FBNET_DATA); nothing to do")
        return 0
    table = load_arch_table(csv_path, get_space("fbnet"))
    devices = list(table.columns)
    ks = (20, 900) if args.quick else (20, 100, 900)
    seeds = (0,) if args.quick else tuple(range(5))
    xgb_params = {"n_estimators": 300} if args.quick else {}
    t0 = time.time()
    print(f"# accuracy: mean over seeds {seeds}; each cell spearman/within_10pct/within_5pct")
    rows = accuracy(table, devices, ks, seeds, xgb_params)

    print("\n## Spearman (mean over seeds)\n")
    print("| device | k | xgb | transfer | strict transfer | ridge | FLOPs |")
    print("|---|---|---|---|---|---|---|")
    for dev, k, m in rows:
        print(f"| {dev} | {k} | " + " | ".join(f"{m[n]['spearman']:.3f}" for n in ("xgb", "transfer", "strict", "ridge", "flops")) + " |")
    print("\n## within ±10% / ±5% (mean over seeds)\n")
    print("| device | k | xgb | transfer | strict transfer | ridge | FLOPs-linear |")
    print("|---|---|---|---|---|---|---|")
    for dev, k, m in rows:
        print(f"| {dev} | {k} | " + " | ".join(f"{m[n]['within_10pct']:.3f} / {m[n]['within_5pct']:.3f}" for n in ("xgb", "transfer", "strict", "ridge", "flops")) + " |")

    print("\n## noise ceilings: ridge on 4,000 archs, tested on the other 1,000\n")
    print("| device | spearman | within ±10% | within ±5% | integer-ms rounding alone > 5% |")
    print("|---|---|---|---|---|")
    for dev, (m, q) in ceilings(table, devices).items():
        print(f"| {dev} | {m['spearman']:.3f} | {m['within_10pct']:.3f} | {m['within_5pct']:.3f} | {'-' if q is None else f'{q:.3f}'} |")

    n_trees, unc, comp, err = speed(table, 100_000 if args.quick else 1_000_000)
    print("\n## predictions/s, one core (log-target XGBoost, depth 1, %d trees)\n" % n_trees)
    print("| path | predictions/s |")
    print("|---|---|")
    print(f"| uncompiled (XGBoost predict) | {unc:,.0f} |")
    print(f"| compiled LatencyTable | {comp:,.0f} |")
    print(f"\nheadline: compiled / uncompiled = {comp / unc:.1f}x (max relative difference {err:.1e}); total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
