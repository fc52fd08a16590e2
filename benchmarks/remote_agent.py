"""Remote agent vs local profiling: do the medians agree, and what does a round trip cost?

Starts an agent on 127.0.0.1 (ephemeral port) in this process, then profiles
the first N unique FBNet blocks twice with the same backend: locally through
the runner, and through the ``remote`` backend (one HTTP request per block,
as the runner does). Prints per-block medians, their ratio, and the wall time
per block of each path. Both paths time on the same CPU, so the ratio shows
what the agent adds to the *measurement* (nothing expected: timing happens on
the agent), and the wall-time difference what it adds to a *run*.

    .venv/bin/python benchmarks/remote_agent.py [--quick] [--backend torch-cpu] [--blocks 12]
    .venv/bin/python benchmarks/remote_agent.py --flood 64   # connection cap: 503s, then recovery

``--flood N`` skips the profiling comparison: it holds N idle connections
open against an agent with the default ``max_connections`` and reports how
many ``/v1/info`` requests were answered 503 (and how fast), then how long
the agent takes to answer 200 again once the idle connections close.
"""
from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import time
import urllib.error
import urllib.request

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 blocks, the quick protocol")
    ap.add_argument("--backend", default="torch-cpu")
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--flood", type=int, default=0, help="hold N idle connections and probe the connection cap")
    args = ap.parse_args()
    if args.flood:
        flood(args.flood)
        return
    torch.set_num_threads(1)

    import profilers.backends  # noqa: F401
    from latnas.schema.spaces import get_space
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


def _info_status(url: str, token: str) -> int:
    req = urllib.request.Request(url + "/v1/info", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return -1  # reset or refused


def flood(n: int) -> None:
    """Hold ``n`` idle connections; probe /v1/info while they are open and after they close."""
    from profilers.remote import AgentLimits, make_server, start_in_thread

    token = secrets.token_urlsafe(24)
    limits = AgentLimits()
    server = make_server("127.0.0.1", 0, token=token, default_backend="torch-cpu", limits=limits)
    start_in_thread(server)
    _info_status(server.url, token)  # the first /v1/info imports torch and checks every backend: not part of the figure
    t = time.perf_counter()
    _info_status(server.url, token)
    base_ms = (time.perf_counter() - t) * 1e3
    idle = [socket.create_connection(server.server_address[:2], timeout=5) for _ in range(n)]
    try:
        time.sleep(0.5)
        t0 = time.perf_counter()
        codes = [_info_status(server.url, token) for _ in range(20)]
        busy_ms = (time.perf_counter() - t0) / len(codes) * 1e3
        for sock in idle:
            sock.close()
        t1 = time.perf_counter()
        while _info_status(server.url, token) != 200 and time.perf_counter() - t1 < 30:
            time.sleep(0.01)
        recover_ms = (time.perf_counter() - t1) * 1e3
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()
    print(f"{n} idle connections, max_connections={limits.max_connections}: "
          f"20 probes -> {codes.count(503)} x 503, {codes.count(200)} x 200, {codes.count(-1)} resets; "
          f"{busy_ms:.1f} ms per probe; 200 again {recover_ms:.0f} ms after the idle connections closed "
          f"(a warm /v1/info alone: {base_ms:.0f} ms); "
          f"{server.refused} connections refused in all")


if __name__ == "__main__":
    main()
