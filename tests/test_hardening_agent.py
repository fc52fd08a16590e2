"""The agent against malformed HTTP and JSON: every case is a 4xx reply (or a one-line start-up error), nothing profiled.

Raw sockets, so that framing the standard client would never send (both
``Content-Length`` and ``Transfer-Encoding``, HTTP/0.9, a body trickled one
byte at a time) reaches the server as written.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from latnas.schema.spec import BlockSpec
from profilers.base import BACKENDS, Backend, register_backend
from profilers.remote import AgentLimits, make_server, start_in_thread

TOKEN = "hardening-token-0123456789"
SPEC = BlockSpec("conv", cin=3, cout=4, h=4, w=4).to_dict()
FAST = {"warmup_runs": 0, "warmup_seconds": 0.0, "min_repeats": 1, "max_repeats": 1, "window": 1, "stable_windows": 1}


class _CountingBackend(Backend):
    """Counts prepared modules: a refused request must prepare none."""

    description = "test-only counting backend"
    prepared = 0

    def prepare(self, module, example, config):
        type(self).prepared += 1
        return lambda: None


if "test-hardening-count" not in BACKENDS:
    register_backend("test-hardening-count")(_CountingBackend)


@pytest.fixture(scope="module")
def agent():
    server = make_server("127.0.0.1", 0, token=TOKEN, default_backend="test-hardening-count",
                         limits=AgentLimits(request_timeout_s=1.5))
    thread = start_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _head(method: str, headers: dict[str, str] | list[tuple[str, str]], version: str = "HTTP/1.1") -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} /v1/{'info' if method == 'GET' else 'profile'} {version}".rstrip(), f"Authorization: Bearer {TOKEN}"]
    lines += [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _post(body: bytes, extra=()) -> bytes:
    return _head("POST", [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]) + body


def send_raw(server, data: bytes, trickle_s: float = 0.0, wait_s: float = 6.0) -> int | None:
    """Status code of the reply to ``data`` (sent at once, or one byte every ``trickle_s``); None if none came."""
    with socket.create_connection(server.server_address[:2], timeout=wait_s) as s:
        start = time.monotonic()
        try:
            if trickle_s:
                for i in range(len(data)):
                    s.sendall(data[i:i + 1])
                    time.sleep(trickle_s)
                    if time.monotonic() - start > wait_s:
                        break
            else:
                s.sendall(data)
        except OSError:  # the server shut the connection while we were still sending: read its reply
            pass
        s.settimeout(max(0.5, wait_s - (time.monotonic() - start)))
        try:
            reply = s.recv(4096)
        except OSError:
            return None
    if not reply.startswith(b"HTTP/1."):
        return None
    return int(reply.split()[1])


def _body(**fields) -> bytes:
    return json.dumps({"specs": [SPEC], "config": FAST, **fields}).encode()


def _spec_text(value: str) -> bytes:
    return b'{"specs": [{"op": "conv", "cin": ' + value.encode() + b', "cout": 4, "h": 4, "w": 4}]}'


CASES = {
    "cl+te": _post(_body(), [("Transfer-Encoding", "chunked")]),
    "te-chunked": _head("POST", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    + b"%x\r\n" % len(_body()) + _body() + b"\r\n0\r\n\r\n",
    "te-gzip-chunked": _head("POST", {"Transfer-Encoding": "gzip, chunked"}) + b"0\r\n\r\n",
    "two-content-lengths": _head("POST", [("Content-Length", "2"), ("Content-Length", str(len(_body())))]) + _body(),
    "content-length-plus": _head("POST", {"Content-Length": "+" + str(len(_body()))}) + _body(),
    "content-length-arabic": _head("POST", {"Content-Length": "\u0665"}) + b"{}{}{",
    "http/1.0-no-length": _head("POST", {"Content-Type": "application/json"}, "HTTP/1.0") + _body(),
    "http/0.9": b"GET /v1/info\r\n",
    "json-1e400-spec": _post(_spec_text("1e400")),
    "json-1e400-config": _post(b'{"specs": [' + json.dumps(SPEC).encode() + b'], "config": {"max_seconds": 1e400}}'),
    "json-1000-digit-int": _post(_spec_text("1" * 1000)),
    "json-1000-digit-batch": _post(b'{"models": [{"space": "fbnet", "arch": "' + b"0" * 22 + b'", "batch": 1'
                                   + b"0" * 999 + b"}]}"),
    "json-duplicate-key": _post(b'{"specs": [' + json.dumps(SPEC).encode() + b'], "config": ' + json.dumps(FAST).encode()
                                + b', "specs": [' + json.dumps(SPEC).encode() + b"]}"),
    "json-duplicate-nested-key": _post(_spec_text("3").replace(b'"cout": 4', b'"cout": 4, "cout": 8')),
    "json-nan": _post(b'{"specs": [' + json.dumps(SPEC).encode() + b'], "config": {"max_seconds": NaN}}'),
    "request-cost-512x60s": _post(json.dumps({"specs": [dict(SPEC, cout=4 + i % 8) for i in range(512)],
                                             "config": {**FAST, "max_seconds": 60.0, "max_repeats": 1}}).encode()),
}


def test_malformed_requests_get_4xx_and_profile_nothing(agent):
    failures = []
    for name, data in CASES.items():
        before = _CountingBackend.prepared
        status = send_raw(agent, data)
        if status is None or not 400 <= status < 500 or _CountingBackend.prepared != before:
            failures.append(f"{name}: status {status}, prepared {_CountingBackend.prepared - before}")
    assert not failures, f"{len(failures)}/{len(CASES)} mishandled:\n" + "\n".join(failures)


def test_http10_request_is_served(agent):
    assert send_raw(agent, _head("GET", {}, "HTTP/1.0")) == 200


@pytest.mark.parametrize("part", ["body", "headers"])
def test_trickled_request_is_cut_off_by_the_total_deadline(agent, part):
    """One byte every 0.2 s never trips a per-read timeout (1.5 s); the total deadline must end it."""
    data = _post(_body()) if part == "body" else _head("GET", {"X-Pad": "x" * 60})
    start = time.monotonic()
    status = send_raw(agent, data, trickle_s=0.2, wait_s=8.0)
    elapsed = time.monotonic() - start
    assert elapsed < 6.0, f"connection held {elapsed:.1f} s (deadline 1.5 s)"
    assert status is None or 400 <= status < 500


def _serve(*args: str, env_token: str | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "LATNAS_AGENT_TOKEN"}
    if env_token is not None:
        env["LATNAS_AGENT_TOKEN"] = env_token
    code = "import sys; from latnas.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "agent", "serve", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def _one_error(proc: subprocess.CompletedProcess) -> bool:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def test_short_tokens_and_busy_port_are_one_line_errors(tmp_path):
    short = tmp_path / "short.tok"
    short.write_text("tooshort\n")
    short.chmod(0o600)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        cases = {
            "--token short": _serve("--port", "0", "--token", "abc123"),
            "--token-file short": _serve("--port", "0", "--token-file", str(short)),
            "$LATNAS_AGENT_TOKEN short": _serve("--port", "0", env_token="abc123"),
            "port in use": _serve("--port", port, "--token-file", str(_long_token(tmp_path))),
        }
    bad = {k: (p.returncode, p.stderr[-300:]) for k, p in cases.items() if not _one_error(p)}
    assert not bad, bad


def _long_token(tmp_path):
    path = tmp_path / "long.tok"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path
