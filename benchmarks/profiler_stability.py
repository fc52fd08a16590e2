"""Profiler stability: profile the FBNet block table twice per backend and compare the medians.

For each backend (ONNX Runtime CPU and ExecuTorch/XNNPACK, 1 thread by
default) the whole FBNet block table (``unique_blocks()``: 111 blocks with
stem and head) is profiled twice, one pass after the other, with the default
measurement protocol. Reported per backend: the share of blocks whose two
medians agree within +-5% and +-10%, the median relative difference, the
noisy-flag count, and the wall time of one pass split into preparing
(export/lowering) and timing. Goals: >= 98% within +-5%, <= 3 min per table.

    .venv/bin/python benchmarks/profiler_stability.py            # full table
    .venv/bin/python benchmarks/profiler_stability.py --quick    # every 8th block (~14)
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from latnas.spaces import get_space  # noqa: E402
from profilers import ProtocolConfig, available_backends, get_backend, measure  # noqa: E402
from profilers.protocol import pinned_threads  # noqa: E402
from profilers.runner import example_input  # noqa: E402


def one_pass(backend, specs, config):
    """Median per block key, plus seconds spent preparing and timing, and noisy count."""
    medians, prep_s, time_s, noisy, failed = {}, 0.0, 0.0, 0, []
    for spec in specs:
        module = spec.build().eval()
        x = example_input(spec.input_shape)
        try:
            with pinned_threads(config.threads):
                t0 = time.perf_counter()
                fn = backend.prepare(module, x, config)
                t1 = time.perf_counter()
                stats = measure(fn, config)
                t2 = time.perf_counter()
        except Exception as exc:  # report and go on
            failed.append(f"{spec.key}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        del fn
        prep_s += t1 - t0
        time_s += t2 - t1
        medians[spec.key] = stats.median_ms
        noisy += stats.noisy
    return medians, prep_s, time_s, noisy, failed


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
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    specs = get_space("fbnet").unique_blocks()
    if args.quick:
        specs = specs[::8]
    config = replace(ProtocolConfig(), threads=args.threads)
    avail = available_backends()
    console = Console(width=200)
    console.print(f"FBNet block table: {len(specs)} blocks, {args.threads} thread(s), protocol {config}")
    table = Table("backend", "blocks", "within ±5%", "within ±10%", "median |rel diff|", "worst block (rel diff)",
                  "noisy (p1/p2)", "pass wall s (prep + timing)", "failed")
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        ok, reason = avail.get(name, (False, "not registered"))
        if not ok:
            table.add_row(name, "-", "-", "-", "-", reason, "-", "-", "-")
            continue
        backend = get_backend(name)
        one_pass(backend, specs[:1], replace(config, max_seconds=0.2))  # import/initialise the runtime outside the timing
        passes = []
        for i in range(2):
            t0 = time.perf_counter()
            res = one_pass(backend, specs, config)
            passes.append((time.perf_counter() - t0, *res))
            console.print(f"{name} pass {i + 1}: {passes[-1][0]:.1f} s (prepare {res[1]:.1f} s, timing {res[2]:.1f} s)")
        c = compare(passes[0][1], passes[1][1])
        walls = [p[0] for p in passes]
        table.add_row(
            name,
            str(c["n"]),
            f"{100 * c['within5']:.1f}%",
            f"{100 * c['within10']:.1f}%",
            f"{100 * c['median_rel']:.2f}%",
            f"{c['worst']} ({100 * c['worst_rel']:.0f}%)",
            f"{passes[0][4]}/{passes[1][4]}",
            " / ".join(f"{w:.0f} ({p[2]:.0f} + {p[3]:.0f})" for w, p in zip(walls, passes)),
            str(len(passes[0][5]) + len(passes[1][5])),
        )
        for p in passes:
            for line in p[5]:
                console.print(f"failed {line}", markup=False)
    console.print(table)
    console.print("goals: >= 98% of blocks within ±5% between passes; <= 180 s per table per backend")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
