"""Few-shot transfer on devices nobody tuned for: leave-one-device-out, old vs new fit, ablation.

Every public device in turn is the target (it contributes k random rows, the
rest of its column is the test set); the other devices of the same table are
the sources (fit on all their rows, offline profiles). 5 seeds. For each fit
variant: mean over devices and the **worst device** (of its seed-mean), and
the worst (device, seed) Spearman, of Spearman, within ±10% and MAPE; the
share of negative predictions; and, with ``--self-check``, how well the
fit's own LOO error on its k samples (``loo_``, what ``latnas train``
reports) tracks the held-out MAPE (Spearman over devices x seeds).

    .venv/bin/python benchmarks/transfer_loo.py --data nb201 --k 10      # NAS-Bench-201, 19 devices
    .venv/bin/python benchmarks/transfer_loo.py --data fbnet --k 20      # FBNet, 9 devices
    ... --variants old,new,new-stage,...  --devices pixel3_ms,...  --seeds 5  --json out.json

Variants: ``old`` (the earlier recipe: NNLS with a signed intercept over
every source, 60 stage columns, 30 one-hot residual columns, one-hot
sources), ``new`` (the default :class:`TransferPredictor`), and ablations
of ``new`` (``-stage``, ``-resid``: corrections off; ``+stage``, ``+resid``:
on; ``-live``: one-hot sources and views; ``-shrink``: best single source
only; ``-trim``: untrimmed LOO; ``top5``; ``-srcstage``: no per-source
stage correction; ``+stages``: the ``stages`` view as a shrinkage target), and of ``old`` (``old-stage``,
``old-resid``, ``old-both``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from latnas.schema.spaces import get_space  # noqa: E402
from predictors.data import find_fbnet_csv, load_arch_table  # noqa: E402
from predictors.metrics import latency_metrics  # noqa: E402
from predictors.transfer import TransferPredictor, fit_source_models  # noqa: E402

NB201 = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"
KEYS = ("spearman", "within_10pct", "mape")

#: variant -> (liveness sources?, TransferPredictor parameters)
VARIANTS = {
    "old": (False, {"method": "nnls", "stage_features": True, "residual": True}),
    "old-stage": (False, {"method": "nnls", "stage_features": False, "residual": True}),
    "old-resid": (False, {"method": "nnls", "stage_features": True, "residual": False}),
    "old-both": (False, {"method": "nnls", "stage_features": False, "residual": False}),
    "new": (True, {}),
    "new+stage": (True, {"stage_features": True}),
    "new+resid": (True, {"residual": True}),
    "new+corr": (True, {"stage_features": True, "residual": True}),
    "new-live": (False, {"liveness": False}),
    "new-shrink": (True, {"top": 1}),
    "new-trim": (True, {"trim": 0}),
    "new-top5": (True, {"top": 5}),
    "new+both": (True, {"views": ("run", "fold", "both", "affine")}),
    "new-fold": (True, {"views": ("run", "affine")}),
    "new+stages": (True, {"views": ("run", "fold", "affine", "stages")}),
    "new-affine": (True, {"affine": False}),
    "new-srcstage": (True, {"source_stages": False}),
    "new+cutfold": (True, {"cut_unseen": "fold"}),
}


def load(which: str):
    if which == "nb201":
        space = get_space("nb201")
        table = load_arch_table(NB201, space) if NB201.is_file() else None
    else:
        space = get_space("fbnet")
        path = find_fbnet_csv()
        table = load_arch_table(path, space) if path else None
    if table is None:
        return space, None, []
    return space, table, [c for c in table.columns if c.endswith("_ms")]


def run(table, devices, targets, variants, k: int, seeds, self_check: bool, log=print) -> dict:
    """Per variant and target device: the seed-mean metrics, the per-seed Spearman, negatives, LOO pairs."""
    t0 = time.perf_counter()
    kinds = {VARIANTS[v][0] for v in variants}
    sources = {live: fit_source_models(table, devices, liveness=live) for live in kinds}
    log(f"# sources fit in {time.perf_counter() - t0:.0f} s; k={k}, seeds={list(seeds)}")
    n = len(table)
    out: dict = {v: {} for v in variants}
    for dev in targets:
        y = table.column(dev)
        for v in variants:
            live, params = VARIANTS[v]
            src = {c: m for c, m in sources[live].items() if c != dev}
            per_seed, neg, loo = [], 0, []
            for seed in seeds:
                perm = np.random.default_rng(seed).permutation(n)
                tr, te = perm[:k], perm[k:]
                model = TransferPredictor(space=table.space, source_models=src,
                                          **{**params, "self_check": self_check and not v.startswith("old")})
                pred = model.fit(table.archs[tr], y[tr]).predict(table.archs[te])
                m = latency_metrics(y[te], pred)
                per_seed.append(m)
                neg += int(np.sum(pred <= 0))
                if getattr(model, "loo_", None):
                    loo.append((model.loo_["mape"], m["mape"]))
            mean = {key: float(np.mean([m[key] for m in per_seed])) for key in KEYS}
            out[v][dev] = {**mean, "spearman_seeds": [float(m["spearman"]) for m in per_seed], "negative": neg,
                           "loo_vs_heldout_mape": loo}
        log(f"{dev:18s} " + "  ".join(f"{v} {out[v][dev]['spearman']:.3f}/{out[v][dev]['within_10pct']:.3f}/"
                                      f"{out[v][dev]['mape']:.3f}" for v in variants), flush=True)
    log(f"# {len(targets)} targets x {len(variants)} variants x {len(list(seeds))} seeds in {time.perf_counter() - t0:.0f} s")
    return out


def summary(out: dict, log=print) -> dict:
    """Mean and worst device per variant (worst = lowest Spearman / ±10%, highest MAPE)."""
    log("\n| variant | Spearman mean | worst device | worst (device, seed) | ±10% mean | worst | MAPE mean | worst | negative |")
    log("|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for v, devs in out.items():
        sp = {d: r["spearman"] for d, r in devs.items()}
        w10 = {d: r["within_10pct"] for d, r in devs.items()}
        mape = {d: r["mape"] for d, r in devs.items()}
        seed_worst = min(((d, i, s) for d, r in devs.items() for i, s in enumerate(r["spearman_seeds"])), key=lambda t: t[2])
        wd, w1, wm = min(sp, key=sp.get), min(w10, key=w10.get), max(mape, key=mape.get)
        rows[v] = {"spearman_mean": float(np.mean(list(sp.values()))), "spearman_worst": [wd, sp[wd]],
                   "spearman_worst_seed": list(seed_worst), "within_10pct_mean": float(np.mean(list(w10.values()))),
                   "within_10pct_worst": [w1, w10[w1]], "mape_mean": float(np.mean(list(mape.values()))),
                   "mape_worst": [wm, mape[wm]], "negative": int(sum(r["negative"] for r in devs.values()))}
        r = rows[v]
        log(f"| {v} | {r['spearman_mean']:.3f} | {sp[wd]:.3f} {wd} | {seed_worst[2]:.3f} {seed_worst[0]} s{seed_worst[1]} | "
            f"{r['within_10pct_mean']:.3f} | {w10[w1]:.3f} {w1} | {r['mape_mean']:.3f} | {mape[wm]:.3f} {wm} | {r['negative']} |")
        pairs = [p for d in devs.values() for p in d["loo_vs_heldout_mape"]]
        if len(pairs) >= 5:
            rho = float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs])[0])
            r["loo_mape_vs_heldout_spearman"] = rho
            log(f"|  | self-check: LOO MAPE on the k samples vs held-out MAPE, Spearman over {len(pairs)} fits: {rho:.2f} | | | | | | | |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("nb201", "fbnet"), default="nb201")
    ap.add_argument("--k", type=int, default=None, help="target samples (default: 10 nb201, 20 fbnet)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--variants", default="old,new")
    ap.add_argument("--devices", default="", help="comma-separated targets (default: every device)")
    ap.add_argument("--self-check", action="store_true", help="also compute each fit's own LOO error (slower)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    space, table, devices = load(args.data)
    if table is None:
        print(f"shared {args.data} data not found; nothing to do")
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"error: unknown variants {bad} (choose from {', '.join(VARIANTS)})", file=sys.stderr)
        return 2
    targets = [d for d in devices if not args.devices or d in args.devices.split(",")]
    k = args.k or (10 if args.data == "nb201" else 20)
    out = run(table, devices, targets, variants, k, range(args.seeds), args.self_check)
    rows = summary(out)
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "k": k, "seeds": args.seeds, "per_device": out,
                                         "summary": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
