"""The remote profiling agent: auth, validation, the client backend and the CLI.

Each test starts a real agent on 127.0.0.1 with an ephemeral port in a
background thread and talks to it over HTTP.
"""
from __future__ import annotations

import inspect
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest
import torch

from latnas.schema.errors import BackendUnavailable, DataError, LatnasError
from latnas.schema.spec import BlockSpec
from profilers.base import BACKENDS, Backend, LatencyStats, ProtocolConfig, register_backend
from profilers.fingerprint import device_fingerprint, fingerprint_hash
from profilers.remote import (
    DEFAULT_HOST,
    MIN_TOKEN_CHARS,
    AgentLimits,
    RemoteBackend,
    is_loopback,
    make_server,
    parse_config,
    prepare_serve,
    resolve_token,
    start_in_thread,
)

TOKEN = "test-token-0123456789abcdef"
FAST = ProtocolConfig(
    warmup_runs=1, warmup_seconds=0.0, min_repeats=3, max_repeats=6, max_seconds=0.2, window=3, stable_windows=1,
    sessions=1, extra_sessions=0,  # one session per block: the counts below are sessions
)
SPECS = [
    BlockSpec("mbconv", cin=8, cout=8, h=8, w=8, kernel=3, expansion=3),
    BlockSpec("conv", cin=3, cout=8, h=16, w=16, stride=2),
]


class _EagerTestBackend(Backend):
    """Eager torch on the CPU; counts prepared modules so tests can see work done."""

    description = "test-only eager backend"
    prepared = 0

    def versions(self):
        return {"torch": torch.__version__}

    def prepare(self, module, example, config):
        type(self).prepared += 1

        def run():
            with torch.no_grad():
                return module(example)

        return run


class _MissingTestBackend(Backend):
    description = "test-only backend that is never available"

    def availability(self):
        return False, "test runtime is not installed"


class _BrokenTestBackend(Backend):
    description = "test-only backend whose runtime crashes"

    def prepare(self, module, example, config):
        raise RuntimeError("runtime exploded\nwith a second line")


class _MetaTestBackend(_EagerTestBackend):
    """Times in 'fp16' and says how it timed (as the GPU backends do)."""

    precision = "fp16"

    def measurement_meta(self):
        return {"mode": "fake-graph", "replays": 3}


for _name, _cls in (
    ("test-eager", _EagerTestBackend),
    ("test-meta", _MetaTestBackend),
    ("test-missing", _MissingTestBackend),
    ("test-broken", _BrokenTestBackend),
):
    if _name not in BACKENDS:
        register_backend(_name)(_cls)


@pytest.fixture
def agent():
    server = make_server("127.0.0.1", 0, token=TOKEN, default_backend="test-eager", limits=AgentLimits(max_body_bytes=64 * 1024))
    thread = start_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _request(url, method="GET", body=None, token=None, headers=None):
    """(status, decoded JSON) of a raw HTTP request."""
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _profile_body(specs=SPECS, backend="test-eager", config=FAST):
    return json.dumps(
        {"backend": backend, "specs": [s.to_dict() for s in specs], "config": {"min_repeats": config.min_repeats,
         "max_repeats": config.max_repeats, "max_seconds": config.max_seconds, "warmup_runs": config.warmup_runs,
         "warmup_seconds": config.warmup_seconds, "window": config.window, "stable_windows": config.stable_windows}}
    ).encode()


# --------------------------------------------------------------------- auth
def test_default_host_is_loopback():
    assert DEFAULT_HOST == "127.0.0.1"
    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    from latnas.cli.agent_cmd import serve_cmd

    assert inspect.signature(serve_cmd).parameters["host"].default.default == "127.0.0.1"
    server = make_server(port=0, token=TOKEN)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_requests_without_or_with_wrong_token_get_401(agent):
    info_url = agent.url + "/v1/info"
    status, body = _request(info_url)
    assert status == 401 and "token" in body["error"]
    status, _ = _request(info_url, token="wrong-token-0123456789abcdef")
    assert status == 401
    status, _ = _request(info_url, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    status, _ = _request(agent.url + "/nowhere")
    assert status == 401  # unknown paths reveal nothing without the token


def test_unauthenticated_profile_does_nothing(agent):
    before = _EagerTestBackend.prepared
    status, _ = _request(agent.url + "/v1/profile", "POST", _profile_body(), token="wrong-token-0123456789abcdef")
    assert status == 401
    status, _ = _request(agent.url + "/v1/profile", "POST", _profile_body())
    assert status == 401
    assert _EagerTestBackend.prepared == before


def test_info_with_right_token(agent):
    status, info = _request(agent.url + "/v1/info", token=TOKEN)
    assert status == 200
    assert info["agent"] == "latnas" and info["default_backend"] == "test-eager"
    assert info["backends"]["test-eager"]["available"] is True
    assert info["backends"]["test-missing"] == {"available": False, "reason": "test runtime is not installed", "versions": {}}
    assert "remote" not in info["backends"]
    assert info["fingerprint_hash"] == fingerprint_hash(info["fingerprint"])


# ------------------------------------------------------------------ profile
def test_profile_two_blocks_through_remote_backend(agent):
    backend = RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-eager")
    assert backend.remote is True
    assert backend.availability() == (True, "")
    before = _EagerTestBackend.prepared
    results = backend.measure_specs(SPECS, FAST)
    assert _EagerTestBackend.prepared == before + 2
    assert len(results) == 2
    for stats, fp in results:
        assert isinstance(stats, LatencyStats)
        assert stats.median_ms > 0 and stats.min_ms <= stats.median_ms <= stats.p90_ms
        assert FAST.min_repeats <= stats.repeats <= FAST.max_repeats
        # The fingerprint is the agent's own one for its local backend.
        expected_hash, expected = device_fingerprint(_EagerTestBackend(), FAST.threads)
        expected["backend"] = "test-eager"
        assert fp["backend"] == "test-eager"
        assert fingerprint_hash(fp) == fingerprint_hash(expected)
    one, fp_one = backend.measure_spec(SPECS[0], FAST)
    assert one.median_ms > 0 and fp_one == results[0][1]
    assert backend.versions() == {"torch": torch.__version__}
    assert backend.device_info()["torch"] == torch.__version__


def test_remote_backend_defaults_to_agent_default(agent):
    backend = RemoteBackend(url=agent.url, token=TOKEN)
    assert backend.target_backend() == "test-eager"
    stats, _ = backend.measure_spec(SPECS[1], FAST)
    assert stats.median_ms > 0


def test_prepare_is_not_the_remote_path(agent):
    with pytest.raises(NotImplementedError, match="measure_spec"):
        RemoteBackend(url=agent.url, token=TOKEN).prepare(torch.nn.Identity(), torch.zeros(1), FAST)


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"specs": [{"op": "conv", "cin": "three", "cout": 8, "h": 8, "w": 8}]}).encode(), "cin"),
        (json.dumps({"specs": [{"op": "conv", "cin": 3, "cout": 8, "h": 8, "w": 8, "evil": 1}]}).encode(), "evil"),
        (json.dumps({"specs": [{"op": "conv", "cin": 3, "cout": 8, "h": 2, "w": 2, "stride": 4}]}).encode(), "stride"),
        (json.dumps({"specs": [{"op": "nope", "cin": 3, "cout": 8, "h": 8, "w": 8}]}).encode(), "nope"),
        (json.dumps({"specs": []}).encode(), "non-empty"),
        (json.dumps([1, 2]).encode(), "JSON object"),
        (json.dumps({"specs": [SPECS[0].to_dict()], "pickle": "x"}).encode(), "pickle"),
        (json.dumps({"specs": [SPECS[0].to_dict()], "backend": "no-such-backend"}).encode(), "no-such-backend"),
        (json.dumps({"specs": [SPECS[0].to_dict()], "config": {"max_seconds": 1e9}}).encode(), "max_seconds"),
        (json.dumps({"specs": [SPECS[0].to_dict()], "config": {"threads": True}}).encode(), "threads"),
        (json.dumps({"specs": [dict(SPECS[0].to_dict(), cin=100000)]}).encode(), "limit"),
        (json.dumps({"specs": [{"op": "conv", "cin": 8192, "cout": 8192, "h": 1, "w": 1}]}).encode(), "weights exceed"),
        (json.dumps({"specs": [SPECS[0].to_dict()], "models": []}).encode(), "exactly one"),
        (b'{"specs": [' + json.dumps(SPECS[0].to_dict()).encode() + b'], "options": {"opset": Infinity}}', "finite"),
        (b'{"specs": [{"op": "conv", "cin": 1' + b"0" * 5000 + b', "cout": 8, "h": 8, "w": 8}]}', "not valid JSON"),
    ],
)
def test_bad_requests_get_400_with_one_line_message(agent, body, needle):
    before = _EagerTestBackend.prepared
    status, reply = _request(agent.url + "/v1/profile", "POST", body, token=TOKEN)
    assert status == 400
    assert needle in reply["error"] and "\n" not in reply["error"]
    assert _EagerTestBackend.prepared == before


def test_body_size_limit_and_content_type(agent):
    status, reply = _request(agent.url + "/v1/profile", "POST", b" " * (64 * 1024 + 1), token=TOKEN)
    assert status == 413
    status, reply = _request(
        agent.url + "/v1/profile", "POST", _profile_body(), token=TOKEN, headers={"Content-Type": "application/x-pickle"}
    )
    assert status == 415


def test_client_maps_errors_to_one_line_latnas_errors(agent):
    bad = BlockSpec("conv", cin=3, cout=8, h=2, w=2, stride=4)
    with pytest.raises(DataError, match="rejected the request.*stride"):
        RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-eager").measure_spec(bad, FAST)
    wrong = RemoteBackend(url=agent.url, token="wrong-token-0123456789abcdef")
    ok, reason = wrong.availability()
    assert not ok and "rejected the token" in reason
    with pytest.raises(BackendUnavailable, match="rejected the token"):
        wrong.measure_spec(SPECS[0], FAST)
    missing = RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-missing")
    ok, reason = missing.availability()
    assert not ok and "test runtime is not installed" in reason
    with pytest.raises(BackendUnavailable, match="test runtime is not installed"):
        missing.measure_spec(SPECS[0], FAST)


def test_runtime_failure_on_agent_is_one_line_error(agent):
    backend = RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-broken")
    with pytest.raises(BackendUnavailable, match=r"failed \(500\): profiling failed: RuntimeError: runtime exploded with") as info:
        backend.measure_spec(SPECS[0], FAST)
    assert "\n" not in str(info.value)


def test_client_ignores_proxies_and_never_follows_redirects(agent, monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # a proxy would see the token
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert RemoteBackend(url=agent.url, token=TOKEN).availability() == (True, "")
    seen = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", agent.url + "/v1/info")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=evil.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        ok, reason = RemoteBackend(url=f"http://127.0.0.1:{evil.server_address[1]}", token=TOKEN).availability()
    finally:
        evil.shutdown()
        evil.server_close()
    assert not ok and "(302)" in reason and len(seen) == 1


def test_bad_content_length_is_refused(agent):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", agent.server_address[1], timeout=5)
    conn.putrequest("POST", "/v1/profile")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", "-5")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411
    conn.close()


def test_connection_errors_and_timeouts_are_backend_unavailable(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = RemoteBackend(url=f"http://127.0.0.1:{port}", token=TOKEN, timeout_s=2)
    ok, reason = backend.availability()
    assert not ok and reason.startswith("cannot reach agent") and "\n" not in reason
    with pytest.raises(BackendUnavailable, match="cannot reach agent"):
        backend.measure_spec(SPECS[0], FAST)

    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        slow = RemoteBackend(url=f"http://127.0.0.1:{silent.getsockname()[1]}", token=TOKEN, timeout_s=0.3)
        with pytest.raises(BackendUnavailable, match="did not answer"):
            slow.info()
    finally:
        silent.close()

    monkeypatch.delenv("LATNAS_AGENT_URL", raising=False)
    ok, reason = RemoteBackend(url="", token=TOKEN).availability()
    assert not ok and "no agent URL" in reason


# ------------------------------------------------------------ token policy
def test_serving_without_token_generates_one_and_prints_it(monkeypatch):
    monkeypatch.delenv("LATNAS_AGENT_TOKEN", raising=False)
    token, generated = resolve_token(None)
    assert generated and len(token) >= MIN_TOKEN_CHARS
    assert resolve_token(None)[0] != token  # random each time
    server, lines = prepare_serve("127.0.0.1", 0, None, "test-eager")
    try:
        assert server.token in lines[-1] and "generated token" in lines[-1]
        assert not any(line.startswith("warning") for line in lines)
    finally:
        server.server_close()
    monkeypatch.setenv("LATNAS_AGENT_TOKEN", TOKEN)
    assert resolve_token(None) == (TOKEN, False)
    server, lines = prepare_serve("127.0.0.1", 0, None, "test-eager")
    try:
        assert server.token == TOKEN and not any(TOKEN in line for line in lines)
    finally:
        server.server_close()


def test_short_or_empty_tokens_are_refused():
    with pytest.raises(LatnasError, match="too short"):
        resolve_token("short")
    with pytest.raises(LatnasError, match="too short"):
        make_server("127.0.0.1", 0, token="")


def test_non_loopback_host_warns():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    server, lines = prepare_serve("0.0.0.0", 0, TOKEN, "test-eager")
    try:
        assert lines[0].startswith("warning: listening on non-loopback host 0.0.0.0")
    finally:
        server.server_close()


def test_ipv6_loopback_agent():
    try:
        server = make_server("::1", 0, token=TOKEN, default_backend="test-eager")
    except LatnasError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    thread = start_in_thread(server)
    try:
        assert server.url.startswith("http://[::1]:")
        assert RemoteBackend(url=server.url, token=TOKEN).availability() == (True, "")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_serve_refuses_unavailable_default_backend():
    with pytest.raises(BackendUnavailable, match="test runtime is not installed"):
        prepare_serve("127.0.0.1", 0, TOKEN, "test-missing")


def test_parse_config_is_strict():
    assert parse_config({"min_repeats": 5, "max_repeats": 7, "max_seconds": 1}) == ProtocolConfig(
        min_repeats=5, max_repeats=7, max_seconds=1.0
    )
    for bad in ({"max_repeats": 1.5}, {"max_seconds": "1"}, {"nope": 1}, {"max_seconds": float("nan")}, {"window": -1}):
        with pytest.raises(DataError):
            parse_config(bad)


# --------------------------------------------------------------------- CLI
def test_cli_agent_info(agent, capsys):
    from latnas.cli.main import main

    rc = main(["agent", "info", "--url", agent.url, "--token", TOKEN])
    out = capsys.readouterr().out
    assert rc == 0 and "test-eager" in out and "default backend test-eager" in out
    rc = main(["agent", "info", "--url", agent.url, "--token", TOKEN, "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["agent"] == "latnas"
    rc = main(["agent", "info", "--url", agent.url, "--token", "wrong-token-0123456789abcdef"])
    err = capsys.readouterr().err
    assert rc == 2 and err.splitlines()[-1].startswith("error: agent at") and "rejected the token" in err
    assert "visible to other users in `ps`" in err  # --token on a command line is readable by everyone


def test_cli_agent_serve_runs_and_answers(monkeypatch):
    """`latnas agent serve` in a thread with port 0; interrupt it via the server handle."""
    import profilers.remote as remote
    from latnas.cli.main import main

    started = {}
    real = remote.prepare_serve

    def spy(*args, **kwargs):
        server, lines = real(*args, **kwargs)
        started["server"] = server
        return server, lines

    monkeypatch.setattr(remote, "prepare_serve", spy)
    thread = threading.Thread(
        target=main, args=(["agent", "serve", "--port", "0", "--token", TOKEN, "--backend", "test-eager"],), daemon=True
    )
    thread.start()
    for _ in range(200):
        if "server" in started:
            break
        threading.Event().wait(0.02)
    server = started["server"]
    try:
        assert server.server_address[0] == "127.0.0.1"
        status, info = _request(server.url + "/v1/info", token=TOKEN)
        assert status == 200 and info["default_backend"] == "test-eager"
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert not thread.is_alive()


# ------------------------------------------------------- runner integration
def test_runner_profiles_through_remote_backend_into_store(agent, tmp_path):
    """The runner's measure_spec hook: remote blocks land in a store under the agent's device."""
    from profilers.runner import profile_blocks
    from profilers.store import ProfileStore

    backend = RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-eager")
    fp_hash, fp_info = device_fingerprint(backend, FAST.threads)
    assert fp_info["backend"] == "remote" and fp_info["runtime"] == {"torch": torch.__version__}
    with ProfileStore(tmp_path / "remote.sqlite") as store:
        summary = profile_blocks(backend, SPECS, store, FAST, progress=False)
        assert summary.done == 2 and summary.failed == 0 and summary.fingerprint == fp_hash
        rows = store.query(backend="remote")
        assert sorted(m.key for m in rows) == sorted(s.key for s in SPECS)
        assert all(m.stats.median_ms > 0 and m.fingerprint == fp_hash for m in rows)
        again = profile_blocks(backend, SPECS, store, FAST, progress=False)
        assert again.skipped == 2 and again.done == 0


@pytest.mark.parametrize("name", ["torch-cpu", "onnxruntime"])
def test_real_backends_on_the_agent(agent, name):
    import profilers.backends  # noqa: F401

    if name not in BACKENDS or not BACKENDS.get(name)().availability()[0]:
        pytest.skip(f"{name} backend not available here")
    stats, fp = RemoteBackend(url=agent.url, token=TOKEN, remote_backend=name).measure_spec(SPECS[0], FAST)
    assert stats.median_ms > 0 and fp["backend"] == name


def test_backend_options_are_passed_and_checked(agent):
    import profilers.backends  # noqa: F401

    if "onnxruntime" not in BACKENDS:
        pytest.skip("onnxruntime backend not registered")
    bad = RemoteBackend(url=agent.url, token=TOKEN, remote_backend="onnxruntime", remote_options={"provider": "abacus"})
    with pytest.raises(DataError, match="bad options.*abacus"):
        bad.measure_spec(SPECS[0], FAST)
    status, reply = _request(
        agent.url + "/v1/profile", "POST",
        json.dumps({"specs": [SPECS[0].to_dict()], "options": {"__class__": "x"}}).encode(), token=TOKEN,
    )
    assert status == 400 and "option name" in reply["error"]


def test_whole_models_through_remote_backend(agent, tmp_path):
    from latnas.schema.spaces import get_space
    from profilers.runner import model_key, profile_models
    from profilers.store import ProfileStore

    space = get_space("fbnet")
    archs = [space.format_arch(a) for a in space.random_archs(2, rng=0)]
    backend = RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-eager")
    with ProfileStore(tmp_path / "models.sqlite") as store:
        summary = profile_models(backend, space, archs, store, FAST, progress=False)
        assert summary.done == 2 and summary.failed == 0
        rows = store.query(backend="remote", kind="model")
        assert sorted(m.key for m in rows) == sorted(model_key("fbnet", a) for a in archs)
        assert all(m.stats.median_ms > 0 for m in rows)


@pytest.mark.parametrize(
    "models, needle",
    [
        ([{"space": "nope", "arch": "0"}], "nope"),
        ([{"space": "fbnet", "arch": "0123"}], "layers"),
        ([{"space": "fbnet", "arch": "0" * 22, "batch": 0}], "batch"),
        ([{"space": "fbnet", "arch": "0" * 22, "extra": 1}], "fields"),
        ([], "non-empty"),
    ],
)
def test_bad_model_requests_get_400(agent, models, needle):
    status, reply = _request(agent.url + "/v1/profile", "POST", json.dumps({"models": models}).encode(), token=TOKEN)
    assert status == 400 and needle in reply["error"]


def test_cli_profile_through_agent(agent, tmp_path, monkeypatch, capsys):
    """`latnas profile --backend remote` with the agent's URL and token in the environment."""
    from latnas.cli.main import main
    from profilers.store import ProfileStore

    monkeypatch.setenv("LATNAS_AGENT_URL", agent.url)
    monkeypatch.setenv("LATNAS_AGENT_TOKEN", TOKEN)
    db = tmp_path / "cli.db"
    rc = main(["profile", "--backend", "remote", "--store", str(db), "--limit", "2", "--quick", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "backend remote" in out
    with ProfileStore(db) as store:
        (fp,) = store.fingerprints()
        assert fp == device_fingerprint(RemoteBackend(url=agent.url, token=TOKEN), 1)[0]
        rows = store.query(backend="remote", fingerprint=fp)
        assert len(rows) == 2 and all(m.stats.median_ms > 0 for m in rows)
    monkeypatch.setenv("LATNAS_AGENT_TOKEN", "wrong-token-0123456789abcdef")
    rc = main(["profile", "--backend", "remote", "--store", str(db), "--limit", "3", "--quick", "--no-progress"])
    assert rc == 2 and "rejected the token" in capsys.readouterr().err


# ------------------------------------------------------------- hardening
def _alive(server):
    status, info = _request(server.url + "/v1/info", token=TOKEN)
    return status == 200 and info["agent"] == "latnas"


@pytest.mark.parametrize("bomb", [b"[" * 50_000, b'{"specs": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_nesting_bomb_is_400_and_agent_stays_up(agent, bomb):
    status, reply = _request(agent.url + "/v1/profile", "POST", bomb, token=TOKEN)
    assert status == 400 and "nests deeper" in reply["error"]
    assert _alive(agent)


def test_activation_cap_is_400(agent):
    # input 16*2048*2048 = 2^26 elements passes the input cap; input + output does not.
    big = BlockSpec("conv", cin=16, cout=16, h=2048, w=2048, kernel=1)
    status, reply = _request(agent.url + "/v1/profile", "POST", json.dumps({"specs": [big.to_dict()]}).encode(), token=TOKEN)
    assert status == 400 and "activations" in reply["error"]
    from profilers.remote import check_spec_limits

    check_spec_limits(BlockSpec("conv", cin=16, cout=16, h=1024, w=1024, kernel=1))  # a quarter of it is fine
    assert _alive(agent)


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"min_repeats": 50, "max_repeats": 10}, "min_repeats <= max_repeats"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"stable_windows": 0}, "stable_windows"),
    ],
)
def test_inconsistent_config_is_400(agent, config, needle):
    before = _EagerTestBackend.prepared
    body = json.dumps({"specs": [SPECS[0].to_dict()], "config": config}).encode()
    status, reply = _request(agent.url + "/v1/profile", "POST", body, token=TOKEN)
    assert status == 400 and needle in reply["error"] and "inconsistent" in reply["error"]
    assert _EagerTestBackend.prepared == before and _alive(agent)


def test_backend_options_are_an_allowlist_without_paths(agent, tmp_path):
    import profilers.backends  # noqa: F401
    from profilers.remote import allowed_options

    target = tmp_path / "written-by-client"
    if "tensorrt" in BACKENDS:
        assert "timing_cache" not in allowed_options("tensorrt") and "precision" in allowed_options("tensorrt")
    for backend in ("tensorrt", "test-eager"):
        body = {"backend": backend, "specs": [SPECS[0].to_dict()], "options": {"timing_cache": str(target)}}
        status, reply = _request(agent.url + "/v1/profile", "POST", json.dumps(body).encode(), token=TOKEN)
        assert status == 400, reply
        if backend in BACKENDS:
            assert "does not take option 'timing_cache'" in reply["error"]
    assert not target.exists()
    assert allowed_options("test-eager") == frozenset()  # undeclared, unknown to the table: nothing
    if "onnxruntime" in BACKENDS:  # an allowlisted option still may not carry a path
        body = {"backend": "onnxruntime", "specs": [SPECS[0].to_dict()], "options": {"exporter": "/etc/passwd"}}
        status, reply = _request(agent.url + "/v1/profile", "POST", json.dumps(body).encode(), token=TOKEN)
        assert status == 400 and "paths are not accepted" in reply["error"]
    assert _alive(agent)


def test_connections_beyond_the_cap_get_503_and_agent_recovers():
    server = make_server("127.0.0.1", 0, token=TOKEN, default_backend="test-eager", limits=AgentLimits(max_connections=2))
    thread = start_in_thread(server)
    idle = []
    try:
        for _ in range(2):  # connect and send nothing: each holds a worker slot
            idle.append(socket.create_connection(server.server_address[:2], timeout=5))
        for _ in range(200):
            if server.slots._value == 0:
                break
            threading.Event().wait(0.01)
        assert server.slots._value == 0
        with socket.create_connection(server.server_address[:2], timeout=5) as extra:
            extra.sendall(f"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            reply = b""
            while chunk := extra.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 503") and b"agent busy" in reply
        assert server.refused == 1
        for sock in idle:
            sock.close()
        for _ in range(200):  # the idle handlers see EOF and free their slots
            if server.slots._value == 2:
                break
            threading.Event().wait(0.01)
        assert _alive(server)
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_token_from_file_env_or_flag(tmp_path, monkeypatch):
    from profilers.remote import read_token_file

    monkeypatch.delenv("LATNAS_AGENT_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token_file(path) == TOKEN
    assert resolve_token(None, path) == (TOKEN, False)
    with pytest.raises(LatnasError, match="not both"):
        resolve_token(TOKEN, path)
    with pytest.raises(LatnasError, match="does not exist"):
        resolve_token(None, tmp_path / "missing")
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(LatnasError, match="too short"):
        resolve_token(None, tmp_path / "short")
    path.chmod(0o600)
    server, lines = prepare_serve("127.0.0.1", 0, None, "test-eager", token_file=path)
    try:
        assert server.token == TOKEN and not any(TOKEN in line for line in lines)
        assert not any("readable by other users" in line for line in lines)
    finally:
        server.server_close()
    path.chmod(0o644)
    server, lines = prepare_serve("127.0.0.1", 0, None, "test-eager", token_file=path)
    server.server_close()
    assert lines[0].startswith(f"warning: token file {path} is readable by other users")


def test_cli_token_flag_warns_about_ps(tmp_path, monkeypatch, capsys):
    import profilers.remote as remote
    from latnas.cli.agent_cmd import PS_WARNING
    from latnas.cli.main import main

    monkeypatch.setattr(remote, "run_until_interrupted", lambda server: server.server_close())
    path = tmp_path / "token"
    path.write_text(TOKEN)
    assert main(["agent", "serve", "--port", "0", "--token-file", str(path), "--backend", "test-eager"]) == 0
    err = capsys.readouterr().err
    assert "listening on" in err and PS_WARNING not in err and TOKEN not in err
    assert main(["agent", "serve", "--port", "0", "--token", TOKEN, "--backend", "test-eager"]) == 0
    assert PS_WARNING in capsys.readouterr().err


def test_agent_precision_and_timing_meta_reach_the_client(agent):
    from profilers.runner import profile_block

    m = profile_block(RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-meta"), SPECS[0], FAST)
    assert m.precision == "fp16" and m.meta == {"mode": "fake-graph", "replays": 3}
    plain = profile_block(RemoteBackend(url=agent.url, token=TOKEN, remote_backend="test-eager"), SPECS[0], FAST)
    assert plain.precision == "fp32" and plain.meta == {}
