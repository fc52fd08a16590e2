"""Few-shot accuracy predictors on NAS-Bench-201: Spearman with trained accuracy from K trained archs.

For each K in {10, 20, 50, 100} and seed, K archs are drawn from a fixed pool
of the table ("trained by the user": their accuracy is read from the table),
an :class:`predictors.accuracy.AccuracyPredictor` is fit on them, and its
predictions are ranked against the true accuracy on ``--n-test`` other archs
of the table (a fixed random sample, never a training arch). Feature sets:

- ``encoding``: the per-layer one-hot only;
- ``enc+params,flops``: plus the closed-form proxies (free);
- ``enc+synflow,params,flops``: plus synflow (cached on disk, ~0.1-0.4 s/arch
  the first time: ``latnas.search.scorers.proxies``);
- ``vote`` (reference, no training): the default zero-cost scorer.

    nice -n 19 .venv/bin/python benchmarks/accuracy_predictor.py [--seeds 3] [--n-test 1000]
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

from latnas.search.scorers import ScorerConfig, make_scorer  # noqa: E402
from latnas.search.scorers.proxies import proxy_features  # noqa: E402
from latnas.schema.spaces import get_space  # noqa: E402
from predictors.accuracy import AccuracyPredictor  # noqa: E402
from predictors.data import load_arch_table  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"
POOL_SEED = 2026  # the fixed order of the table the train pool and the test sample come from
FEATURES = {"encoding": (), "enc+params,flops": ("params", "flops"), "enc+synflow,params,flops": ("synflow", "params", "flops")}


def split(n_rows: int, n_pool: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(POOL_SEED).permutation(n_rows)
    return order[n_test:n_test + n_pool], order[:n_test]


def features(space, archs: np.ndarray, proxies: tuple[str, ...], cache: dict) -> np.ndarray:
    cols = [archs.astype(np.float64)]
    for name in proxies:
        if name not in cache:
            cache[name] = {}
        todo = [a for a in map(tuple, archs.tolist()) if a not in cache[name]]
        if todo:
            for a, v in zip(todo, proxy_features(space, todo, (name,))[:, 0]):
                cache[name][a] = float(v)
        cols.append(np.array([[cache[name][a]] for a in map(tuple, archs.tolist())]))
    return np.hstack(cols)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--ks", default="10,20,50,100")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--n-pool", type=int, default=500)
    ap.add_argument("--columns", default="c10_test_acc,c100_test_acc")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"error: {args.data} not found (the shared NAS-Bench-201 table)", file=sys.stderr)
        return 2
    space = get_space("nb201")
    table = load_arch_table(args.data, space)
    pool, test = split(len(table), args.n_pool, args.n_test)
    ks = [int(k) for k in args.ks.split(",")]
    cache: dict = {}
    t0 = time.perf_counter()
    Xtest = {name: features(space, table.archs[test], px, cache) for name, px in FEATURES.items()}
    Xpool = {name: features(space, table.archs[pool], px, cache) for name, px in FEATURES.items()}
    print(f"proxy features for {len(test)} test + {len(pool)} pool archs: {time.perf_counter() - t0:.0f} s")
    vote = make_scorer("vote", ScorerConfig(space=space))(table.archs[test])
    rows = []
    print(f"{'column':14s} {'features':26s} " + " ".join(f"{'K=' + str(k):>17s}" for k in ks) + "   (Spearman mean / worst over seeds; fit s)")
    for column in args.columns.split(","):
        y = table.column(column)
        print(f"{column:14s} {'vote (no training)':26s} {spearmanr(vote, y[test])[0]:17.3f}")
        for name in FEATURES:
            cells = []
            for k in ks:
                sp, fit_s = [], []
                for seed in range(args.seeds):
                    idx = np.random.default_rng(seed).permutation(len(pool))[:k]
                    t1 = time.perf_counter()
                    model = AccuracyPredictor(space="nb201", proxies=FEATURES[name], random_state=seed)
                    model.fit(Xpool[name][idx], y[pool[idx]])
                    fit_s.append(time.perf_counter() - t1)
                    sp.append(float(spearmanr(model.predict(Xtest[name]), y[test])[0]))
                rows.append({"column": column, "features": name, "k": k, "spearman": sp, "fit_s": fit_s})
                cells.append(f"{np.mean(sp):.3f}/{min(sp):.3f} {np.mean(fit_s):4.1f}s")
            print(f"{column:14s} {name:26s} " + " ".join(f"{c:>17s}" for c in cells))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "n_test": len(test), "seeds": args.seeds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
