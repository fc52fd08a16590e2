"""Block-level predictors on our own profiles of the FBNet space (ONNX Runtime by default).

Profiles every unique block of the FBNet space and a set of random whole
models with one backend (``--backend``, default ``onnxruntime``; any
available backend, ``torch-cuda`` included), through profilers' public API
into a profile store, then trains block-level predictors from the store records and tests
them on held-out whole models:

* block sum alone (LookupTableSum of measured blocks; PerOpRandomForest)
* block sum + linear / isotonic correction fit on the training whole models
* FLOPs proxy and a one-hot ridge trained on the same training whole models

once with the median of each measurement and once with its minimum (the
minimum resists scheduling noise on a shared machine). The held-out models are
then profiled a second time (test-retest): the profiler's own disagreement with
itself is the floor a predictor can be compared with.

    .venv/bin/python benchmarks/predictor_ort.py [--quick] [--store PATH] [--backend NAME]
    PYTHONPATH=. python benchmarks/predictor_ort.py --quick --backend torch-cuda --models 20
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 whole models and the quick protocol")
    ap.add_argument("--store", type=Path, default=None, help="profile store to use/resume (default: a temp file)")
    ap.add_argument("--models", type=int, default=None, help="whole models to profile (default 40 quick / 200)")
    ap.add_argument("--backend", default="onnxruntime", help="profiler backend to profile with (default onnxruntime)")
    args = ap.parse_args(argv)
    name = args.backend

    import torch

    torch.set_num_threads(1)
    from latnas.schema.spaces import get_space
    from predictors.block_models import BlockSumPredictor, LookupTableSum, PerOpRandomForest
    from predictors.data import load_block_table
    from predictors.features import arch_totals, block_features
    from predictors.metrics import flops_baseline, latency_metrics
    from predictors.models import OneHotRidge
    from profilers import (ProfileStore, ProtocolConfig, available_backends, get_backend, profile_blocks,
                           profile_model, profile_models)
    from profilers.protocol import QUICK_CONFIG

    ok, reason = available_backends().get(name, (False, "not registered"))
    if not ok:
        print(f"{name} backend unavailable: {reason}")
        return 0
    backend = get_backend(name)
    space = get_space("fbnet")
    n_models = args.models or (40 if args.quick else 200)
    config = QUICK_CONFIG if args.quick else ProtocolConfig()
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory()
        args.store = Path(tmp.name) / "profiles.db"
    archs = [space.format_arch(a) for a in space.random_archs(n_models, 2024)]
    t0 = time.time()
    with ProfileStore(args.store) as store:
        sb = profile_blocks(backend, space.unique_blocks(), store, config, progress=False)
        sm = profile_models(backend, space, archs, store, config, progress=False)
        records = store.to_records(backend=name)
    t_prof = time.time() - t0
    print(f"profiled {sb.done} blocks (+{sb.skipped} stored), {sm.done} models (+{sm.skipped} stored) in {t_prof:.0f} s")
    noisy = [r for r in records if r["kind"] == "model" and str(r.get("noisy")).lower() in ("1", "true")]
    print(f"whole-model rows flagged noisy by the protocol: {len(noisy)} of {sum(r['kind'] == 'model' for r in records)}")
    # test-retest: the held-out models (the same split as below, drawn over the store's model order) measured
    # once more. (The split used to be drawn over ``archs``' order, which is not the store's: no held-out set
    # matched and the row never printed.)
    def split(n: int):
        perm = np.random.default_rng(0).permutation(n)
        return perm[: n // 2], perm[n // 2:]

    model_archs = load_block_table(records, backend=name, space="fbnet", stat="median_ms").model_archs
    retest_archs = [model_archs[i] for i in split(len(model_archs))[1]]
    t_rt = time.time()
    retest = {a: profile_model(backend, space, a, config).stats for a in retest_archs}
    print(f"re-profiled {len(retest)} held-out models in {time.time() - t_rt:.0f} s (test-retest)")
    for stat in ("median_ms", "min_ms"):
        data = load_block_table(records, backend=name, space="fbnet", stat=stat)
        a = np.array([space.parse_arch(s) for s in data.model_archs], dtype=np.int64)
        y = data.model_ms
        tr, te = split(len(y))
        x_blocks = block_features(data.specs)
        block_models = {"lut": LookupTableSum().fit(x_blocks, data.block_ms),
                        "rf": PerOpRandomForest(n_estimators=100).fit(x_blocks, data.block_ms)}
        rows = []
        for bname, bm in block_models.items():
            for corr in ("none", "linear", "isotonic"):
                model = BlockSumPredictor(block_model=bm, correction=corr).fit(a[tr], y[tr])
                rows.append((f"{bname} block sum" + ("" if corr == "none" else f" + {corr} correction"),
                             latency_metrics(y[te], model.predict(a[te]))))
        rows.append((f"one-hot ridge on {len(tr)} whole models",
                     latency_metrics(y[te], OneHotRidge().fit(a[tr], y[tr]).predict(a[te]))))
        fl = arch_totals(space, a)[:, 0]
        rows.append(("FLOPs (ranks; ±x% from FLOPs-linear fit)", flops_baseline(fl[tr], y[tr], fl[te], y[te])))
        te_archs = [data.model_archs[i] for i in te]
        missing = [a_ for a_ in te_archs if a_ not in retest]
        if missing:
            print(f"test-retest row left out: {len(missing)} held-out models were not re-profiled")
        else:
            second = np.array([getattr(retest[a_], stat) for a_ in te_archs])
            rows.append(("profiler test-retest (second measurement vs first)", latency_metrics(y[te], second)))

        print(f"\n## {name} ({backend.description}), FBNet space, statistic {stat}: test on {len(te)} held-out "
              f"whole models, corrections fit on {len(tr)}\n")
        print("| predictor | within ±5% | within ±10% | MAPE | Spearman | Kendall |")
        print("|---|---|---|---|---|---|")
        for label, m in rows:
            print(f"| {label} | {m['within_5pct']:.3f} | {m['within_10pct']:.3f} | {m['mape']:.3f} | {m['spearman']:.3f} | {m['kendall']:.3f} |")
        best = max(rows[:6], key=lambda r: r[1]["within_10pct"])
        flops_row = next(r for r in rows if r[0].startswith("FLOPs"))
        print(f"\nheadline ({stat}): best block-level ({best[0]}) within ±10% = {best[1]['within_10pct']:.3f} "
              f"vs FLOPs-linear {flops_row[1]['within_10pct']:.3f}")
        if rows[-1][0].startswith("profiler test-retest"):
            rt = rows[-1][1]
            print(f"test-retest within ±10% = {rt['within_10pct']:.3f}, MAPE {rt['mape']:.4f}; "
                  f"predictor MAPE / test-retest MAPE = {best[1]['mape'] / max(rt['mape'], 1e-12):.2f}x")
    print(f"total {time.time() - t0:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
