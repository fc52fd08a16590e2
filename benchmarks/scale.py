"""Beyond one machine: parallel scoring in search, and profiling a simulated device fleet.

Part 1, scoring-bound search: NSGA-II on FBNet whose accuracy estimate is RWE
at a resolution where one score takes over a second (digits, ``--resolution``,
``--n-train``/``--n-val`` images), with a synthetic latency table (the
predictor is not what is timed). The same seeded search runs with the local
executor, then on Ray with 1 and 2 workers (batch size 1: workers pull the
next candidate when free). Prints wall times, the speed-ups over local, and
checks that the three fronts are identical. Ray start-up and the first
scores on fresh workers (process start, importing torch) are outside the
timed region: they are paid once per search, not per evaluation.

Part 2, simulated fleet: N in-process agents on loopback, each a "device"
whose backend sleeps ``--delay-ms`` per block (no CPU used, so the 2-core
machine does not limit it), all with the same fingerprint (one table fanned
out over N devices). Profiles ``--blocks`` blocks with N = 1, 2, 4, 8 through
Ray workers, after a warm-up run per N, and prints the wall time and
``N x time / time(N=1)`` (1.0 = perfect 1/N scaling).

    .venv/bin/python benchmarks/scale.py [--quick] [--evals 12] [--resolution 8] [--blocks 48] [--delay-ms 100]
"""
from __future__ import annotations

import argparse
import json
import logging
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from profilers.base import Backend, LatencyStats, ProtocolConfig, register_backend


# ------------------------------------------------------------ part 1: search
def _search(space, table, scorer, executor, evals: int, pop: int, seed: int):
    from latnas.executors import ParallelScorer
    from latnas.search import SearchContext, run_algorithm

    ctx = SearchContext(space=space, latency=table, evals=evals, seed=seed, scorer=ParallelScorer(scorer, executor, batch_size=1),
                        scorer_key="rwe-bench", options={"pop_size": pop})
    t0 = time.perf_counter()
    res = run_algorithm("nsga2", ctx)
    return time.perf_counter() - t0, (res.archs, res.scores, res.evals)


def bench_search(args) -> dict:
    import sys

    sys.path.insert(0, "tests")
    from search_helpers import synthetic_table

    from latnas.executors import ParallelScorer, get_executor
    from latnas.search.data import load_data
    from latnas.search.rwe import RWEScorer
    from latnas.schema.spaces import get_space

    space = get_space("fbnet")
    table = synthetic_table(space, seed=3)
    data = load_data(space=space, resolution=args.resolution, n_train=args.n_train, n_val=args.n_val)
    scorer = RWEScorer(space, data)
    t0 = time.perf_counter()
    one = scorer([space.random_archs(1, rng=123)[0]])
    per_score = time.perf_counter() - t0
    print(f"one RWE score at {args.resolution}x{args.resolution}, {args.n_train}+{args.n_val} images: {per_score:.2f} s ({one[0]:.3f})")

    out = {"per_score_s": per_score, "evals": args.evals, "free_cores_before": free_cores()}
    print(f"cores free for this run (2 busy loops at once vs 1): {out['free_cores_before']:.2f} of 2")
    t_local, r_local = _search(space, table, RWEScorer(space, data), "local", args.evals, args.pop, args.seed)
    out["local_s"] = t_local
    print(f"local executor: {t_local:.1f} s")
    for workers in (1, 2):
        ex = get_executor("ray", workers=workers)
        # start the workers and load torch/latnas in them before timing (once per search in real use)
        ParallelScorer(RWEScorer(space, data), ex)(space.random_archs(2 * workers, rng=7))
        t, r = _search(space, table, RWEScorer(space, data), ex, args.evals, args.pop, args.seed)
        same = r == r_local
        out[f"ray{workers}_s"] = t
        out[f"ray{workers}_speedup"] = t_local / t
        out[f"ray{workers}_identical"] = same
        print(f"ray, {workers} worker(s): {t:.1f} s, {t_local / t:.2f}x local, front identical to local: {same}")
    out["free_cores_after"] = free_cores()
    print(f"cores free for this run, after: {out['free_cores_after']:.2f} of 2")
    return out


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    s = 0
    for i in range(n):
        s += i
    return time.perf_counter() - t0


def free_cores(n: int = 4_000_000) -> float:
    """How many cores this run really gets: the same busy loop once, then twice at once in 2 processes."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # start both processes
        t0 = time.perf_counter()
        pool.map(_spin, [n])
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.map(_spin, [n, n], chunksize=1)
        two = time.perf_counter() - t0
    return 2 * one / two


# ------------------------------------------------------------- part 2: fleet
class SleepDevice(Backend):
    """A simulated device for the agents: every block takes ``delay_ms`` of wall time, no CPU."""

    description = "benchmark-only simulated device (fixed per-block delay)"
    agent_options = frozenset({"delay_ms"})

    def __init__(self, delay_ms: float = 100.0):
        self.delay_ms = float(delay_ms)

    def measure_spec(self, spec, config):
        time.sleep(self.delay_ms / 1e3)
        ms = self.delay_ms
        return LatencyStats(ms, ms, 0.0, ms, ms, ms, ms, ms, 0.0, 1, 0, True, False), None


def bench_fleet(args) -> dict:
    from latnas.schema.spec import BlockSpec
    from profilers.fleet import FleetDevice
    from profilers.remote import make_server, start_in_thread
    from profilers.remote.agent import agent_info

    register_backend("bench-sleep")(SleepDevice)
    import contextlib

    import profilers.remote.server as server_mod

    # the simulated agents stand for N machines and measure nothing real: each would hold its own
    # machine's profiling lock, so none of them takes this one (it would serialize them all)
    server_mod.profiling_lock = lambda *a, **k: contextlib.nullcontext()
    agent_info("bench-sleep")  # import every runtime once before timing (the agent's first /v1/info does)
    token = secrets.token_urlsafe(24)
    config = ProtocolConfig(warmup_runs=1, warmup_seconds=0.0, min_repeats=1, max_repeats=1, window=1, stable_windows=1)
    out: dict = {"blocks": args.blocks, "delay_ms": args.delay_ms, "runs": {}}
    base = None
    for n in args.fleet:
        servers = [make_server("127.0.0.1", 0, token=token, default_backend="bench-sleep") for _ in range(n)]
        for s in servers:
            start_in_thread(s)
        devices = [FleetDevice(f"sim{i}", "remote", {"url": s.url, "token": token, "timeout_s": 60,
                                                      "remote_options": {"delay_ms": args.delay_ms}}, resource=f"device:sim{i}")
                   for i, s in enumerate(servers)]
        specs = [BlockSpec("conv", cin=3, cout=c, h=8, w=8) for c in range(4, 4 + args.blocks)]
        summary, wall = timed_fleet(servers, devices, specs, config, args.dispatch)
        assert summary.done == args.blocks and summary.failed == 0, summary.to_dict()
        base = base or wall * n
        eff = base / (wall * n)
        out["runs"][n] = {"wall_s": wall, "per_device": summary.per_device, "efficiency": eff}
        ideal = args.blocks * args.delay_ms / 1e3 / n
        print(f"fleet of {n}: {wall:.2f} s for {args.blocks} blocks (ideal {ideal:.2f} s), "
              f"time x N / time(1) = {wall * n / (base):.2f}, per device {sorted(summary.per_device.values())}")
    if args.driver_blocks:
        out["driver"] = driver_rate(args, token, config)
    return out


def timed_fleet(servers, devices, specs, config, dispatch: str):
    """Profile ``specs`` over ``devices`` into a scratch store: (summary, wall seconds). A warm-up round
    (one small block per device slot) starts the device actors first and is not timed; the agents stop after."""
    from latnas.schema.spec import BlockSpec
    from profilers.fleet import Fleet
    from profilers.store import ProfileStore

    warm = [BlockSpec("conv", cin=3, cout=c, h=4, w=4) for c in range(2, 2 + 2 * len(devices))]
    try:
        with tempfile.TemporaryDirectory() as tmp, ProfileStore(Path(tmp) / "fleet.db") as store, \
                Fleet(devices, dispatch=dispatch) as fleet:
            fleet.profile(warm, store, config, progress=False)
            t0 = time.perf_counter()
            summary = fleet.profile(specs, store, config, progress=False)
            return summary, time.perf_counter() - t0
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def driver_rate(args, token: str, config) -> dict:
    """Blocks per second the driver commits when 8 zero-delay devices answer at once (its own limit, here)."""
    from latnas.schema.spec import BlockSpec
    from profilers.fleet import FleetDevice
    from profilers.remote import make_server, start_in_thread

    n = max(args.fleet)
    servers = [make_server("127.0.0.1", 0, token=token, default_backend="bench-sleep") for _ in range(n)]
    for s in servers:
        start_in_thread(s)
    devices = [FleetDevice(f"sim{i}", "remote", {"url": s.url, "token": token, "timeout_s": 60,
                                                  "remote_options": {"delay_ms": 0.0}}) for i, s in enumerate(servers)]
    specs = [BlockSpec("conv", cin=c, cout=8, h=8, w=8) for c in range(1, 1 + args.driver_blocks)]
    summary, wall = timed_fleet(servers, devices, specs, config, args.dispatch)
    rate = summary.done / wall
    print(f"driver with {n} zero-delay devices: {summary.done} blocks in {wall:.2f} s = {rate:.0f} blocks/s "
          f"({1e3 / rate:.1f} ms per block, HTTP agent + Ray call + one SQLite commit, all on this machine)")
    return {"blocks": summary.done, "wall_s": wall, "blocks_per_s": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 evals, 32 blocks at 100 ms")
    ap.add_argument("--evals", type=int, default=24)
    ap.add_argument("--pop", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=12)
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=64)
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--fleet", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4, 8])
    ap.add_argument("--dispatch", choices=("ray", "threads"), default="ray")
    ap.add_argument("--driver-blocks", type=int, default=200, help="zero-delay blocks for the driver-rate run (0: skip)")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.evals, args.blocks = 12, 32
    torch.set_num_threads(1)  # the local executor gets one core, as each Ray worker does
    logging.basicConfig(level=logging.WARNING)

    import ray

    t0 = time.perf_counter()
    resources = {f"device:sim{i}": 1.0 for i in range(max(args.fleet))}
    ray.init(num_cpus=2, resources=resources, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    print(f"ray started in {time.perf_counter() - t0:.1f} s (not counted below)")
    figures = {}
    try:
        if not args.skip_search:
            figures["search"] = bench_search(args)
        if not args.skip_fleet:
            figures["fleet"] = bench_fleet(args)
    finally:
        ray.shutdown()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
