"""Benchmarks of the gradient-based seed methods (issue 11, part 2): H-DAS on NB201, RepNAS masks, RWE heads.

Each prints a table; figures go in ``docs/methods/*.md``. Run from the repo root::

    .venv/bin/python benchmarks/seed_methods_grad.py hdas --seeds 0,1,2 [--option mode=gdas ...]
    .venv/bin/python benchmarks/seed_methods_grad.py repnas --seeds 0
    .venv/bin/python benchmarks/seed_methods_grad.py rwe --archs 100 [--resolution 8]

- ``hdas``: the derived NB201 cell's true CIFAR-10 accuracy (``c10_test_acc`` of
  the shipped table) per seed; anchors DARTS 54.30 (all skip), GDAS ~93.5, best
  94.37. Latency model: the FLOPs proxy of the nb201 space.
- ``repnas``: validation accuracy on the shipped data (digits) of the searched
  mask vs the fixed four-branch DBB and a plain conv net (kxk only), trained for
  the same number of epochs; all three fuse into the same plain conv chain, so
  their deploy latency is the same.
- ``rwe``: Kendall tau of RWE (ridge head and softmax head, same random-weight
  features) against NB201 ``c10_test_acc`` over random archs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latnas.schema.latency_table import flops_table  # noqa: E402
from latnas.schema.spaces import get_space  # noqa: E402

NB201_CSV = ROOT.parent / "shared" / "data" / "nb201" / "nb201_accuracy_latency.csv"


def _options(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        key, _, value = p.partition("=")
        out[key] = value
    return out


def _truth(space):
    from latnas.search.scorers.table import load_score_table

    if not NB201_CSV.is_file():
        raise SystemExit(f"needs {NB201_CSV}")
    return load_score_table(space, NB201_CSV, "c10_test_acc")


def bench_hdas(seeds: list[int], options: dict) -> list[dict]:
    from latnas.search import SearchProblem, Termination, minimize
    from latnas.search.hdas import HDAS

    space = get_space("nb201")
    acc = _truth(space)
    rows = []
    print(f"H-DAS on nb201, options {options}")
    print(f"{'seed':>4} {'cell':>8} {'c10_test_acc':>12} {'cells/stage':>11} {'skip w':>7} {'search val':>10} {'wall s':>7}  arch_str")
    for seed in seeds:
        t0 = time.perf_counter()
        problem = SearchProblem(space, flops_table(space), lambda a: np.array([acc[tuple(x)] for x in a]))
        res = minimize(problem, HDAS(options, seed=seed), Termination(1))
        ex = res.extra
        cell = space.parse_arch(ex["derived"])
        row = {"seed": seed, "cell": ex["derived"], "c10": acc[cell], "cells": ex["cells_per_stage"],
               "skip": res.history[-1]["skip_weight"], "val": ex["search_val_acc"], "wall": time.perf_counter() - t0,
               "arch_str": ex["arch_str"], "dag": ex["stage_dag"]}
        rows.append(row)
        print(f"{seed:>4} {row['cell']:>8} {row['c10']:>12.2f} {str(row['cells']):>11} {row['skip']:>7.3f} "
              f"{row['val']:>10.3f} {row['wall']:>7.0f}  {row['arch_str']}", flush=True)
    c10 = [r["c10"] for r in rows]
    print(f"mean c10_test_acc {np.mean(c10):.2f} (min {np.min(c10):.2f}); anchors: DARTS 54.30, GDAS ~93.5, best 94.37")
    return rows


def bench_repnas(seeds: list[int], options: dict) -> list[dict]:
    from latnas.search import SearchContext, run_algorithm
    from latnas.search.data import load_data
    from latnas.search.repnas import RepNAS, train_fixed_mask
    from latnas.search.options import options_from
    from latnas.schema.spaces.repnas import FOUR_BRANCH_DBB, KXK_ONLY

    space = get_space("repnas")
    opt = options_from(RepNAS.Options, options, "repnas")
    rows = []
    print(f"RepNAS on digits, options {options}; every arch fuses into the same plain conv chain (same deploy latency)")
    print(f"{'seed':>4} {'searched':>9} {'four-branch DBB':>16} {'plain conv':>11} {'search s':>9}  searched arch")
    for seed in seeds:
        data = load_data(space=space, seed=seed)
        t0 = time.perf_counter()
        res = run_algorithm("repnas", SearchContext(space, flops_table(space), data, evals=1, seed=seed, options=options))
        wall = time.perf_counter() - t0
        four = train_fixed_mask(space, data, [FOUR_BRANCH_DBB] * space.n_layers, opt, seed)
        plain = train_fixed_mask(space, data, [KXK_ONLY] * space.n_layers, opt, seed)
        row = {"seed": seed, "searched": res.extra["fused_val_acc"], "four": four["fused_val_acc"],
               "plain": plain["fused_val_acc"], "wall": wall, "arch": space.format_arch(res.archs[0]),
               "parity": max(res.extra["fused_parity_rel"], four["fused_parity_rel"], plain["fused_parity_rel"])}
        rows.append(row)
        print(f"{seed:>4} {row['searched']:>9.3f} {row['four']:>16.3f} {row['plain']:>11.3f} {wall:>9.0f}  {row['arch']}"
              f"  (parity {row['parity']:.1e})", flush=True)
    return rows


def bench_rwe(n_archs: int, seed: int, resolution: int = 8) -> dict:
    from scipy.stats import kendalltau

    from latnas.search.data import load_data
    from latnas.search.rwe import RWEConfig, extract_features, linear_probe_accuracy, softmax_probe_accuracy

    space = get_space("nb201", resolution=resolution)  # digits are 8x8 at source: 16x cheaper than 32
    acc = _truth(space)
    data = load_data(space=space, seed=seed)
    rng = np.random.default_rng(seed)
    archs = [tuple(int(v) for v in rng.integers(0, 5, size=6)) for _ in range(n_archs)]
    cfg = RWEConfig(seed=seed)
    ridge, soft, truth = [], [], []
    t_feat = t_ridge = t_soft = 0.0
    for a in archs:
        t0 = time.perf_counter()
        f_tr, f_va = extract_features(space, a, data, cfg)
        t1 = time.perf_counter()
        ridge.append(linear_probe_accuracy(f_tr, data.y_train.numpy(), f_va, data.y_val.numpy(), cfg.ridge))
        t2 = time.perf_counter()
        soft.append(softmax_probe_accuracy(f_tr, data.y_train.numpy(), f_va, data.y_val.numpy(), cfg.sgd_epochs,
                                           cfg.sgd_lr, cfg.sgd_weight_decay, seed=seed))
        t3 = time.perf_counter()
        truth.append(acc[a])
        t_feat, t_ridge, t_soft = t_feat + t1 - t0, t_ridge + t2 - t1, t_soft + t3 - t2
    out = {"n": n_archs, "tau_ridge": float(kendalltau(ridge, truth)[0]), "tau_softmax": float(kendalltau(soft, truth)[0]),
           "feat_s": t_feat / n_archs, "ridge_s": t_ridge / n_archs, "softmax_s": t_soft / n_archs}
    print(f"RWE on nb201 ({n_archs} random archs, digits at {resolution}px, seed {seed}): Kendall tau vs c10_test_acc")
    print(f"{'head':>8} {'tau':>6} {'s/arch (head only)':>19}")
    print(f"{'ridge':>8} {out['tau_ridge']:>6.3f} {out['ridge_s']:>19.4f}")
    print(f"{'softmax':>8} {out['tau_softmax']:>6.3f} {out['softmax_s']:>19.4f}")
    print(f"features: {out['feat_s']:.2f} s/arch (shared by both heads)")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["hdas", "repnas", "rwe"])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--archs", type=int, default=100)
    ap.add_argument("--option", action="append", default=[], help="KEY=VALUE of the algorithm's Options")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=8, help="rwe: input resolution of the nb201 networks")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.which == "hdas":
        bench_hdas(seeds, _options(args.option))
    elif args.which == "repnas":
        bench_repnas(seeds, _options(args.option))
    else:
        bench_rwe(args.archs, seeds[0], args.resolution)


if __name__ == "__main__":
    main()
