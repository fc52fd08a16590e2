"""Profiler stability: profile the FBNet block table twice per backend and compare the medians.

For each backend (ONNX Runtime CPU and ExecuTorch/XNNPACK, 1 thread by
default) the whole FBNet block table (``unique_blocks()``: 111 blocks with
stem and head) is profiled twice, one pass after the other, with the default
measurement protocol. Reported per backend: the share of blocks whose two
medians agree within +-5% and +-10%, the median relative difference, the
noisy-flag count, the agreement of ``min_ms`` for comparison, and the wall time of one pass split into preparing
(export/lowering) and timing. Goals: >= 98% within +-5%, <= 3 min per table.

Each backend times through its own ``measure`` hook (CUDA events for
torch-cuda, amortised samples for ExecuTorch). ExecuTorch lowers into a fresh
program cache (a temporary folder unless ``--cache-dir``), so pass 1 shows the
cost of lowering and pass 2 the cached rerun. ``--cuda-modes graph,eager``
profiles torch-cuda once per timing mode, side by side.

    .venv/bin/python benchmarks/profiler_stability.py            # full table
    .venv/bin/python benchmarks/profiler_stability.py --quick    # every 8th block (~14)
    PYTHONPATH=. python benchmarks/profiler_stability.py --quick --backends torch-cuda --cuda-modes graph,eager
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from latnas.spaces import get_space  # noqa: E402
from profilers import ProtocolConfig, available_backends, get_backend  # noqa: E402
from profilers.protocol import pinned_threads  # noqa: E402
from profilers.runner import example_input  # noqa: E402

MODES_USED: Counter = Counter()  # "<backend>/<mode_used>" -> blocks (GPU timing modes, fallbacks)


def one_pass(backend, specs, config, label=None):
    """Median per block key, plus seconds spent preparing and timing, and noisy count."""
    medians, mins, prep_s, time_s, noisy, failed = {}, {}, 0.0, 0.0, 0, []
    for spec in specs:
        module = spec.build().eval()
        x = example_input(spec.input_shape)
        try:
            with pinned_threads(config.threads):
                t0 = time.perf_counter()
                fn = backend.prepare(module, x, config)
                t1 = time.perf_counter()
                stats = backend.measure(fn, config)
                t2 = time.perf_counter()
            meta = backend.measurement_meta() if hasattr(backend, "measurement_meta") else {}
            if label and "mode_used" in meta:
                MODES_USED[f"{label}/{meta['mode_used']}"] += 1
        except Exception as exc:  # report and go on
            failed.append(f"{spec.key}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        del fn
        prep_s += t1 - t0
        time_s += t2 - t1
        medians[spec.key] = stats.median_ms
        mins[spec.key] = stats.min_ms
        noisy += stats.noisy
    return medians, prep_s, time_s, noisy, failed, mins


def compare(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    keys = sorted(set(a) & set(b))
    rel = np.array([abs(b[k] - a[k]) / a[k] for k in keys])
    return {
        "n": len(keys),
        "within5": float(np.mean(rel <= 0.05)) if len(keys) else float("nan"),
        "within10": float(np.mean(rel <= 0.10)) if len(keys) else float("nan"),
        "median_rel": float(np.median(rel)) if len(keys) else float("nan"),
        "worst": max(zip(rel, keys))[1] if len(keys) else "",
        "worst_rel": float(rel.max()) if len(keys) else float("nan"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every 8th block of the table (~14 blocks)")
    ap.add_argument("--backends", default="onnxruntime,executorch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--noisy-retries", default=None,
                    help="comma list of ProtocolConfig.noisy_retries values to compare (passes interleaved)")
    ap.add_argument("--json", default=None, help="write per-block medians of every pass to this JSON file")
    ap.add_argument("--cuda-modes", default="graph", help="torch-cuda timing modes to compare (graph,eager,cold)")
    ap.add_argument("--cache-dir", default=None, help="program cache folder (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    tmp_cache = None
    if args.cache_dir:
        os.environ["LATNAS_CACHE_DIR"] = args.cache_dir
    else:
        tmp_cache = tempfile.TemporaryDirectory(prefix="latnas-stability-cache-")
        os.environ["LATNAS_CACHE_DIR"] = tmp_cache.name
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    specs = get_space("fbnet").unique_blocks()
    if args.quick:
        specs = specs[::8]
    base = replace(ProtocolConfig(), threads=args.threads)
    variants = [base] if args.noisy_retries is None else [
        replace(base, noisy_retries=int(v)) for v in args.noisy_retries.split(",")
    ]
    avail = available_backends()
    console = Console(width=200)
    console.print(f"FBNet block table: {len(specs)} blocks, {args.threads} thread(s), protocol {base}")
    table = Table("backend", "noisy retries", "blocks", "within ±5%", "within ±10%", "median |rel diff|",
                  "worst block (rel diff)", "min_ms within ±5%", "noisy (p1/p2)", "pass wall s (prep + timing)", "failed")
    dump = {}
    runs = []
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if name == "torch-cuda":
            runs += [(f"torch-cuda/{m.strip()}", name, {"mode": m.strip()}) for m in args.cuda_modes.split(",") if m.strip()]
        else:
            runs.append((name, name, {}))
    for label, name, opts in runs:
        ok, reason = avail.get(name, (False, "not registered"))
        if not ok:
            table.add_row(label, "-", "-", "-", "-", "-", reason, "-", "-", "-", "-")
            continue
        backend = get_backend(name, **opts)
        warm = specs[-1:] if name == "executorch" else specs[:1]  # do not pre-fill the program cache for pass 1
        one_pass(backend, warm, replace(base, max_seconds=0.2))  # import/initialise the runtime outside the timing
        passes: dict[int, list] = {i: [] for i in range(len(variants))}
        for rnd in range(2):  # pass 1 of every variant, then pass 2 of every variant
            for i, config in enumerate(variants):
                t0 = time.perf_counter()
                res = one_pass(backend, specs, config, label=f"{label} pass {rnd + 1}")
                passes[i].append((time.perf_counter() - t0, *res))
                console.print(f"{label} noisy_retries={config.noisy_retries} pass {rnd + 1}: "
                              f"{passes[i][-1][0]:.1f} s (prepare {res[1]:.1f} s, timing {res[2]:.1f} s)")
        for i, config in enumerate(variants):
            ps = passes[i]
            dump[f"{label}/{config.noisy_retries}"] = [p[1] for p in ps]
            c = compare(ps[0][1], ps[1][1])
            table.add_row(
                label,
                str(config.noisy_retries),
                str(c["n"]),
                f"{100 * c['within5']:.1f}%",
                f"{100 * c['within10']:.1f}%",
                f"{100 * c['median_rel']:.2f}%",
                f"{c['worst']} ({100 * c['worst_rel']:.0f}%)",
                f"{100 * compare(ps[0][6], ps[1][6])['within5']:.1f}%",
                f"{ps[0][4]}/{ps[1][4]}",
                " / ".join(f"{p[0]:.0f} ({p[2]:.0f} + {p[3]:.0f})" for p in ps),
                str(len(ps[0][5]) + len(ps[1][5])),
            )
            for p in ps:
                for line in p[5]:
                    console.print(f"failed {line}", markup=False)
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1))
    console.print(table)
    if MODES_USED:
        console.print("GPU timing modes used (blocks): " + ", ".join(f"{k}: {v}" for k, v in sorted(MODES_USED.items())))
    if tmp_cache is not None:
        tmp_cache.cleanup()
    console.print("goals: >= 98% of blocks within ±5% between passes; <= 180 s per table per backend")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
