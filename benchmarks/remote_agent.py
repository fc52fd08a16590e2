"""Remote agent vs local profiling: do the medians agree, and what does a round trip cost?

Starts an agent on 127.0.0.1 (ephemeral port) in this process, then profiles
the first N unique FBNet blocks twice with the same backend: locally through
the runner, and through the ``remote`` backend (one HTTP request per block,
as the runner does). Prints per-block medians, their ratio, and the wall time
per block of each path. Both paths time on the same CPU, so the ratio shows
what the agent adds to the *measurement* (nothing expected: timing happens on
the agent), and the wall-time difference what it adds to a *run*.

    .venv/bin/python benchmarks/remote_agent.py [--quick] [--backend torch-cpu] [--blocks 12]
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 blocks, the quick protocol")
    ap.add_argument("--backend", default="torch-cpu")
    ap.add_argument("--blocks", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)

    import profilers.backends  # noqa: F401
    from latnas.spaces import get_space
    from profilers.base import ProtocolConfig
    from profilers.protocol import QUICK_CONFIG
    from profilers.remote import RemoteBackend, make_server, start_in_thread
    from profilers.runner import profile_block

    config = QUICK_CONFIG if args.quick else ProtocolConfig()
    n = 8 if args.quick else args.blocks
    specs = get_space("fbnet").unique_blocks()[:n]
    token = secrets.token_urlsafe(24)
    server = make_server("127.0.0.1", 0, token=token, default_backend=args.backend)
    start_in_thread(server)
    remote = RemoteBackend(url=server.url, token=token, remote_backend=args.backend)
    try:
        rows = []
        wall = {"local": 0.0, "remote": 0.0}
        for spec in specs:
            t0 = time.perf_counter()
            local = profile_block(args.backend, spec, config).stats.median_ms
            t1 = time.perf_counter()
            far = profile_block(remote, spec, config).stats.median_ms
            t2 = time.perf_counter()
            wall["local"] += t1 - t0
            wall["remote"] += t2 - t1
            rows.append((spec.key, local, far))
    finally:
        server.shutdown()
        server.server_close()

    print(f"backend {args.backend}, {len(specs)} FBNet blocks, protocol {'quick' if args.quick else 'default'}")
    print(f"{'block':<44} {'local ms':>9} {'agent ms':>9} {'agent/local':>11}")
    for key, local, far in rows:
        print(f"{key:<44} {local:9.4f} {far:9.4f} {far / local:11.3f}")
    ratios = [far / local for _, local, far in rows]
    print(f"median agent/local ratio of medians: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
    per_local = wall["local"] / len(specs)
    per_remote = wall["remote"] / len(specs)
    print(f"wall per block: local {per_local * 1e3:.0f} ms, via agent {per_remote * 1e3:.0f} ms "
          f"(+{(per_remote - per_local) * 1e3:.0f} ms per block for HTTP, JSON, build on the agent)")


if __name__ == "__main__":
    main()
