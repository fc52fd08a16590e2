"""Kernel-sum prediction of models nobody here wrote: timm families, random weights, ONNX Runtime CPU.

Phases (each resumes from the store, so a rerun only measures what is missing):

1. build and export: every (timm model, resolution) of ``timm_models.FAMILIES``
   (random weights, no download, deploy-fused by latnas) -> ``OUT/onnx/*.onnx``;
   kernel detection; a model with an op outside the kernel set is listed, not fatal;
2. kernel profiles: ``profile_kernels`` (CNN-shaped prior + adaptive round),
   ``--scale`` times the default counts, a lighter protocol (``BENCH_KERNELS``);
3. whole models: every ONNX file timed with the profiling protocol (kind ``model``);
4. predictions: a kernel predictor trained on the kernel rows only (no whole
   model seen) -> ``raw``; ``corrected``: the whole-model correction refitted
   leaving the model's family out; FLOPs-linear (leave-family-out) beside them.

Reported overall and per family: share within +-10% / +-5%, MAPE, Spearman,
worst model, with the load average at each phase. timm comes from
``pip install --no-deps timm`` (``--pythonpath`` for a private target folder).

    PYTHONPATH=/tmp/timm .venv/bin/python benchmarks/any_model.py --out /tmp/any --scale 0.25 --retest --model-sessions 5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profilers.config import ProtocolConfig  # noqa: E402
from profilers.kernels import KERNEL_CONFIG  # noqa: E402

BENCH_KERNELS = replace(KERNEL_CONFIG, sessions=2, extra_sessions=1, min_repeats=10, max_seconds=0.2)
BENCH_MODELS = ProtocolConfig(warmup_runs=5, warmup_seconds=0.1, min_repeats=15, max_repeats=200, max_seconds=1.0,
                              sessions=2, extra_sessions=1, session_agree=0.03)


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def export_all(out: Path, families: dict, say) -> list[dict]:
    import torch

    from latnas.schema.kernels import detect_kernels
    from latnas.schema.errors import LatnasError
    from profilers.onnx_export import export_onnx
    from timm_models import build

    rows = []
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for fam, entries in families.items():
        for name, res in entries:
            path = out / "onnx" / f"{name}_{res}.onnx"
            row = {"family": fam, "model": f"{name}_{res}", "path": str(path)}
            try:
                if not path.is_file():
                    export_onnx(build(name), torch.randn(1, 3, res, res), path)
                ks = detect_kernels(path, "onnxruntime")
                row.update(kernels=len(ks), flops=sum(k.flops for k in ks if k.op in ("conv", "dwconv", "fc")))
            except LatnasError as exc:
                row["error"] = str(exc)
            except Exception as exc:  # a third-party model that does not build/export here: listed
                row["error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
            say(f"  {row['model']}: {row.get('kernels', row.get('error'))}")
            rows.append(row)
    return rows


def metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    err = pred / true - 1
    rho = float(spearmanr(pred, true)[0]) if len(true) > 2 else float("nan")
    return {"n": int(len(true)), "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
            "within_5pct": float(np.mean(np.abs(err) <= 0.05)), "mape": float(np.mean(np.abs(err))), "spearman": rho}


def leave_family_out(rows: list[dict], fit_predict) -> np.ndarray:
    out = np.empty(len(rows))
    fams = np.array([r["family"] for r in rows])
    for fam in set(fams):
        m = fams == fam
        out[m] = fit_predict(~m, m)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/any_model"))
    ap.add_argument("--scale", type=float, default=0.3, help="kernel configs per type, times the default counts")
    ap.add_argument("--families", default="", help="comma-separated subset of timm_models.FAMILIES")
    ap.add_argument("--no-adaptive", action="store_true")
    ap.add_argument("--skip-kernels", action="store_true", help="use the kernel rows already in the store")
    ap.add_argument("--model-sessions", type=int, default=BENCH_MODELS.sessions,
                    help="sessions per whole model (min of their medians; more ride out a loaded machine)")
    ap.add_argument("--force-models", action="store_true", help="re-measure the whole models (replace stored rows)")
    ap.add_argument("--retest", action="store_true", help="measure the whole models a second time (OUT/retest.db): "
                    "the profiler's own test-retest agreement, the floor of any predictor")
    args = ap.parse_args()
    models_config = replace(BENCH_MODELS, sessions=args.model_sessions, max_seconds=min(BENCH_MODELS.max_seconds,
                                                                                       2.0 / args.model_sessions))

    from timm_models import FAMILIES, import_timm

    from latnas.schema.kernels import detect_kernels
    from predictors.kernel_model import train_kernel_model
    from profilers.kernels import measure_onnx_items, onnx_file_item, profile_kernels
    from profilers.runner import get_backend
    from profilers.store import ProfileStore

    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if import_timm() is None:
        raise SystemExit("timm is not importable: pip install --no-deps timm (into a folder on PYTHONPATH)")
    fams = {f: FAMILIES[f] for f in (args.families.split(",") if args.families else FAMILIES)}
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"load": {"start": load()}, "scale": args.scale}
    t0 = time.time()
    rows = export_all(args.out, fams, say)
    report["export_s"], report["load"]["export"] = round(time.time() - t0, 1), load()
    ok = [r for r in rows if "error" not in r]
    report["failed_models"] = {r["model"]: r["error"] for r in rows if "error" in r}
    bk = get_backend("onnxruntime")
    with ProfileStore(args.out / "bench.db") as store:
        if not args.skip_kernels:
            t0 = time.time()
            runs = profile_kernels(bk, store, BENCH_KERNELS, scale=args.scale, adaptive=not args.no_adaptive, say=say)
            report["kernel_profile_s"] = round(time.time() - t0, 1)
            report["kernels_measured"] = sum(r.done for r in runs)
            report["load"]["kernels"] = load()
        t0 = time.time()
        items = [onnx_file_item(bk.name, r["path"]) for r in ok]  # one run: sessions interleaved over all models
        run = measure_onnx_items(bk, items, store, models_config, "model", force=args.force_models, say=say)
        say(f"  measured {run.done} models, {run.skipped} stored, {len(run.failures)} failed")
        report["model_profile_s"], report["load"]["models"] = round(time.time() - t0, 1), load()
        records = [rec for rec in store.to_records(backend="onnxruntime")]
    retest = {}
    if args.retest:
        with ProfileStore(args.out / "retest.db") as store2:
            retest = measure_onnx_items(bk, items, store2, models_config, "model", force=True, say=say).medians
        report["load"]["retest"] = load()
    kernel_rows = [rec for rec in records if rec["kind"] == "kernel"]
    measured = {rec["key"]: float(rec["median_ms"]) for rec in records if rec["kind"] == "model"}
    est, meta = train_kernel_model(kernel_rows, "onnxruntime")
    report["kernels_in_store"] = meta["metrics"]["kernels"]
    ok = [r for r in ok if r["model"] in measured]
    true = np.array([measured[r["model"]] for r in ok])
    raw, nk, flops = [], [], []
    for r in ok:
        ks = detect_kernels(r["path"], "onnxruntime")
        raw.append(float(est.predict(ks).sum()))
        nk.append(len(ks))
        flops.append(r["flops"])
    raw, nk, flops = map(np.asarray, (raw, nk, flops))

    def corrected(train, test):
        c = type(est)().fit_correction(raw[train], nk[train], true[train]).correction_ or [1.0, 0.0, 0.0]
        return np.maximum(c[0] * raw[test] + c[1] * nk[test] + c[2], 0.25 * raw[test])

    def flops_linear(train, test):
        a = np.polyfit(flops[train], true[train], 1)
        return np.maximum(np.polyval(a, flops[test]), 1e-3)

    preds = {"kernel_sum": raw, "kernel_sum_corrected_lofo": leave_family_out(ok, corrected),
             "flops_linear_lofo": leave_family_out(ok, flops_linear)}
    if retest:
        preds["retest"] = np.array([retest.get(r["model"], np.nan) for r in ok])
    report["overall"] = {k: metrics(p, true) for k, p in preds.items()}
    report["per_family"] = {}
    for fam in fams:
        m = np.array([r["family"] == fam for r in ok])
        if m.any():
            report["per_family"][fam] = {k: metrics(p[m], true[m]) for k, p in preds.items()}
    report["models"] = [{"model": r["model"], "family": r["family"], "measured_ms": round(t, 3), "kernels": int(n),
                         **{k: round(float(p[i]), 3) for k, p in preds.items()}}
                        for i, (r, t, n) in enumerate(zip(ok, true, nk))]
    worst = int(np.argmax(np.abs(raw / true - 1)))
    report["worst_kernel_sum"] = report["models"][worst]
    report["load"]["end"] = load()
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"{'family':14s} {'n':>3s} | {'±10% raw':>8s} {'±10% cor':>8s} {'±10% flops':>10s} {'±10% retest':>11s} | "
          f"{'MAPE raw':>8s} {'MAPE cor':>8s} {'MAPE flops':>10s} {'MAPE retest':>11s} | {'rho raw':>7s} {'rho cor':>7s}")
    for fam, m in [*report["per_family"].items(), ("ALL", report["overall"])]:
        a, b, c = m["kernel_sum"], m["kernel_sum_corrected_lofo"], m["flops_linear_lofo"]
        t = m.get("retest", {"within_10pct": float("nan"), "mape": float("nan")})
        print(f"{fam:14s} {a['n']:3d} | {a['within_10pct']:8.0%} {b['within_10pct']:8.0%} {c['within_10pct']:10.0%} "
              f"{t['within_10pct']:11.0%} | {a['mape']:8.1%} {b['mape']:8.1%} {c['mape']:10.1%} {t['mape']:11.1%} | "
              f"{a['spearman']:7.3f} {b['spearman']:7.3f}")
    print(json.dumps({k: report[k] for k in ("load", "worst_kernel_sum", "failed_models")}))
    print(f"timings: export {report['export_s']} s, kernels {report.get('kernel_profile_s')} s, "
          f"models {report['model_profile_s']} s")


if __name__ == "__main__":
    main()
