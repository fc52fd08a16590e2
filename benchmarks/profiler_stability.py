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

``--two-runs DIR`` is the reproducibility benchmark of the session protocol:
two *independent* runs of the whole ``latnas profile`` command per table
(separate processes and stores; the ORT block table, 60 whole models, the
ExecuTorch block table), each storing ``--sessions 5`` sessions per item.
Every (S, estimator) combination is then replayed from the first S stored
sessions of both runs (one pair of runs gives the whole side-by-side table),
and the default rule (S=3, extra sessions while the two best disagree by more
than x, cap 5) is replayed for several x, with the noise-flag recall: of the
items that disagree by more than 5% between the runs, the share flagged in at
least one run. Rerunning the command resumes (``DIR/runs.json``).

    .venv/bin/python benchmarks/profiler_stability.py --two-runs /tmp/two --cache-dir ~/.cache/latnas/executorch
    .venv/bin/python benchmarks/profiler_stability.py --two-runs /tmp/two --tables models --models 30 --clock wall

``--clock wall|cpu`` times with that backend clock instead of the default
(``auto``: the calling thread's CPU time with one thread); those runs go
through ``--one-run`` (the same profiling API `latnas profile` calls, since
the CLI has no backend options). Estimators: ``first``, ``median``, ``min``,
``p10`` of the session medians and ``min-p10`` (minimum of the sessions'
within-session p10).
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

from latnas.schema.spaces import get_space  # noqa: E402
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


# ------------------------------------------------------------ two independent runs
def tables(models: int = 60, et_limit: int | None = None) -> dict[str, list[str]]:
    """Table name -> `latnas profile` arguments (``et_limit``: only the first N blocks for ExecuTorch)."""
    et = ("executorch blocks", ["--backend", "executorch"]) if not et_limit else (
        f"executorch blocks (first {et_limit})", ["--backend", "executorch", "--limit", str(et_limit)])
    return {
        "onnxruntime blocks": ["--backend", "onnxruntime"],
        f"onnxruntime models ({models})": ["--backend", "onnxruntime", "--models", str(models)],
        et[0]: et[1],
    }


TABLES = tables()


def table_label(name: str, clock: str) -> str:
    return name if clock == "auto" else f"{name} clock={clock}"


def run_table(folder: Path, run: int, name: str, args: list[str], sessions: int, clock: str = "auto") -> dict:
    """One independent process into its own store; wall time and load average.

    ``clock=auto`` runs the `latnas profile` command itself (the backend's
    default clock); another clock runs the same profiling through this
    script's ``--one-run`` (the CLI has no backend options).
    """
    import subprocess

    label = table_label(name, clock)
    slug = "_".join("".join(c if c.isalnum() else " " for c in name).split())
    store = folder / f"run{run}_{slug}{'' if clock == 'auto' else '_' + clock}.db"
    if clock == "auto":
        cmd = [str(Path(sys.executable).parent / "latnas"), "profile", *args, "--store", str(store), "--no-progress",
               "--sessions", str(sessions)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one-run", str(store), "--clock", clock,
               "--sessions", str(sessions), "--", *args]
    before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return {"table": label, "run": run, "store": str(store), "wall_s": wall, "load_before": before,
            "load_after": os.getloadavg(), "cmd": " ".join(["latnas", *cmd[1:]] if clock == "auto" else cmd[1:])}


def one_run(store_path: str, clock: str, sessions: int, args: list[str]) -> int:
    """`latnas profile ARGS --sessions S` with backend option ``clock`` (for --two-runs --clock)."""
    from profilers import ProfileStore
    from profilers.runner import profile_blocks, profile_models

    opts = dict(zip(args[::2], args[1::2]))
    backend = get_backend(opts.get("--backend", "onnxruntime"), clock=clock)
    config = replace(ProtocolConfig(), sessions=sessions)
    space = get_space("fbnet")
    with ProfileStore(store_path) as store:
        if "--models" in opts:
            s = profile_models(backend, space, space.random_archs(int(opts["--models"]), rng=0), store, config, progress=False)
        else:
            specs = space.unique_blocks()[: int(opts["--limit"])] if "--limit" in opts else space.unique_blocks()
            s = profile_blocks(backend, specs, store, config, progress=False)
    print(json.dumps(s.to_dict()))
    return 1 if s.failed else 0


def _sessions(store_path: str) -> dict[str, list]:
    """Every item's stored sessions (LatencyStats, in the order measured)."""
    from profilers import ProfileStore

    with ProfileStore(store_path, read_only=True) as store:
        rows = store.query(all_devices=True)
    return {m.key: list(m.sessions) for m in rows}


def simulate(sessions: list, s: int, estimator: str, agree: float | None, cap: int) -> tuple[float, bool, int]:
    """The protocol replayed on stored sessions: first ``s`` sessions (+ extras up to ``cap`` while noisy)."""
    from profilers.sessions import best_two_gap, estimate, session_values

    values = session_values(sessions, estimator)
    used = values[:s]
    if agree is not None and s > 1:
        while len(used) < min(cap, len(values)) and best_two_gap(used) > agree:
            used = values[: len(used) + 1]
    noisy = agree is not None and s > 1 and best_two_gap(used) > agree
    return estimate(used, estimator), noisy, len(used)


def agreement(a: dict[str, float], b: dict[str, float]) -> dict:
    keys = sorted(set(a) & set(b))
    rel = {k: abs(b[k] - a[k]) / min(a[k], b[k]) for k in keys}
    worst = max(rel, key=rel.get)
    ratio = float(np.median([b[k] / a[k] for k in keys]))
    return {"n": len(keys), "within5": float(np.mean([r <= 0.05 for r in rel.values()])),
            "within10": float(np.mean([r <= 0.10 for r in rel.values()])), "ratio": ratio,
            "median_rel": float(np.median(list(rel.values()))), "worst": worst, "worst_rel": rel[worst], "rel": rel}


FLAG_ESTIMATORS = ("min", "min-p10")


def analyse(runs: list[dict], agree: float, cap: int, console, estimator: str | None = None) -> dict:
    """Per table: the S x estimator grid, then the default rule (S=3 + extras while the two best differ > x)."""
    from profilers.sessions import ESTIMATOR, ESTIMATORS

    out: dict = {}
    for name in dict.fromkeys(r["table"] for r in runs):
        pair = sorted((r for r in runs if r["table"] == name), key=lambda r: r["run"])
        if len(pair) != 2:
            continue
        m1, m2 = _sessions(pair[0]["store"]), _sessions(pair[1]["store"])
        grid = Table("estimator", "S=1", "S=2", "S=3", "S=5", "S=5 run2/run1 (median)",
                     title=f"{name}: within ±5% between the two runs (worst item)")
        for est in ESTIMATORS:
            cells = []
            for s_ in (1, 2, 3, 5):
                c = agreement(*({k: simulate(v, s_, est, None, s_)[0] for k, v in m.items()} for m in (m1, m2)))
                cells.append(f"{100 * c['within5']:.1f}% ({100 * c['worst_rel']:.0f}%)")
                out.setdefault(name, {}).setdefault("grid", {})[f"{est} S={s_}"] = c["within5"]
            grid.add_row(est, *cells, f"{c['ratio']:.3f}")
        console.print(grid)
        for fest in FLAG_ESTIMATORS:
            flags = Table("x", "within ±5%", "within ±10%", "median |diff|", "worst item", "noisy run1/run2", "disagreeing",
                          "flagged recall", "mean sessions",
                          title=f"{name}: {fest} of sessions, S=3 + extra sessions while the two best differ > x (cap {cap})")
            for x in sorted({0.01, 0.02, agree, 0.05}):
                sim = [{k: simulate(v, 3, fest, x, cap) for k, v in m.items()} for m in (m1, m2)]
                c = agreement({k: v[0] for k, v in sim[0].items()}, {k: v[0] for k, v in sim[1].items()})
                bad = [k for k, r in c["rel"].items() if r > 0.05]
                caught = [k for k in bad if sim[0][k][1] or sim[1][k][1]]
                n_sess = float(np.mean([v[2] for s_ in sim for v in s_.values()]))
                flags.add_row(f"{100 * x:g}%", f"{100 * c['within5']:.1f}%", f"{100 * c['within10']:.1f}%",
                              f"{100 * c['median_rel']:.2f}%", f"{c['worst'][:40]} ({100 * c['worst_rel']:.0f}%)",
                              f"{sum(v[1] for v in sim[0].values())}/{sum(v[1] for v in sim[1].values())}",
                              str(len(bad)), f"{len(caught)}/{len(bad)}" if bad else "-", f"{n_sess:.2f}")
                out[name].setdefault("rule", {})[f"{fest} x={x:g}"] = {
                    "within5": c["within5"], "worst": c["worst"], "worst_rel": c["worst_rel"],
                    "recall": [len(caught), len(bad)], "mean_sessions": n_sess}
            console.print(flags)
        default = out[name]["rule"].get(f"{estimator or ESTIMATOR} x={agree:g}")
        if default:
            console.print(f"{name}: default ({estimator or ESTIMATOR}, S=3, x={100 * agree:g}%, cap {cap}): "
                          f"{100 * default['within5']:.1f}% within ±5%, worst {default['worst']} "
                          f"({100 * default['worst_rel']:.0f}%), flag recall {default['recall'][0]}/{default['recall'][1]}")
    return out


def two_runs(args, console) -> int:
    """Two independent runs per table (separate processes and stores), then the tables."""
    folder = Path(args.two_runs)
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "runs.json"
    runs = json.loads(meta.read_text()) if meta.exists() else []
    all_tables = tables(args.models, args.et_limit)
    chosen = [t for t in all_tables if not args.tables or any(p in t for p in args.tables.split(","))]
    for run in (1, 2):
        for name in chosen:
            label = table_label(name, args.clock)
            if any(r["table"] == label and r["run"] == run for r in runs):
                continue
            r = run_table(folder, run, name, all_tables[name], args.sessions, args.clock)
            runs.append(r)
            meta.write_text(json.dumps(runs, indent=1))
            console.print(f"run {run} {label}: {r['wall_s']:.0f} s, load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}")
        if run == 1 and args.gap_s:
            time.sleep(args.gap_s)
    walls = Table("table", "run", "wall s", "load avg before -> after (1/5/15 min)", "command")
    for r in runs:
        walls.add_row(r["table"], str(r["run"]), f"{r['wall_s']:.0f}",
                      " -> ".join("/".join(f"{v:.2f}" for v in r[k]) for k in ("load_before", "load_after")), r["cmd"])
    console.print(walls)
    cfg = ProtocolConfig()
    result = analyse(runs, cfg.session_agree, cfg.sessions + cfg.extra_sessions, console)
    (folder / "analysis.json").write_text(json.dumps(result, indent=1))
    return 0


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
    ap.add_argument("--two-runs", default=None, metavar="DIR",
                    help="two independent `latnas profile` runs per table into DIR (resumes), then the S x estimator tables")
    ap.add_argument("--sessions", type=int, default=5, help="--two-runs: sessions stored per item (subsets give S=1..5)")
    ap.add_argument("--tables", default="", help="--two-runs: comma list of table name parts (default: all three)")
    ap.add_argument("--gap-s", type=float, default=0.0, help="--two-runs: extra pause between run 1 and run 2")
    ap.add_argument("--models", type=int, default=60, help="--two-runs: whole models in the models table")
    ap.add_argument("--et-limit", type=int, default=None, help="--two-runs: only the first N blocks for ExecuTorch")
    ap.add_argument("--clock", default="auto", choices=("auto", "wall", "cpu"),
                    help="--two-runs: backend clock (auto: `latnas profile` itself, the backend's default)")
    ap.add_argument("--one-run", default=None, metavar="STORE", help=argparse.SUPPRESS)  # internal: one run of --clock
    ap.add_argument("profile_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one_run:
        return one_run(args.one_run, args.clock, args.sessions, args.profile_args)
    tmp_cache = None
    if args.cache_dir:
        os.environ["LATNAS_CACHE_DIR"] = args.cache_dir
    else:
        tmp_cache = tempfile.TemporaryDirectory(prefix="latnas-stability-cache-")
        os.environ["LATNAS_CACHE_DIR"] = tmp_cache.name
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.two_runs:
        return two_runs(args, Console(width=200))

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
