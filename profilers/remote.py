"""Remote profiling: a small authenticated HTTP/JSON agent and its client backend.

Run ``latnas agent serve`` on the machine whose latency you want (a phone
board, a GPU box); profile from anywhere with the ``remote`` backend. The block
is built and timed on the agent, so the recorded fingerprint is the agent's.

Wire protocol (JSON only, never pickle; docs/remote_and_gpu.md has examples):

- ``GET /v1/info`` -> ``{"agent": "latnas", "version", "default_backend",
  "backends": {name: {"available", "reason", "versions"}}, "fingerprint":
  {host description}, "fingerprint_hash"}``
- ``POST /v1/profile`` with ``{"specs": [BlockSpec.to_dict(), ...]}`` or
  ``{"models": [{"space", "arch", "batch"}, ...]}``, plus optional
  ``"backend"`` (default: the agent's), ``"config"`` (ProtocolConfig fields)
  and ``"options"`` (backend constructor options) -> ``{"measurements":
  [{"key", "kind", "backend", "batch", "spec", "stats", "fingerprint",
  "fingerprint_hash", "created"}, ...]}`` in request order. Errors are
  ``{"error": "<one line>"}`` with 400 (bad input), 401 (token), 404, 405,
  411, 413 (body too large), 415 (not JSON), 503 (backend unavailable on the
  agent) or 500.

Client side: the ``remote`` backend (:class:`RemoteBackend`) has no
``prepare``; it implements the runner's ``measure_spec`` / ``measure_model``
hooks and ``device_info()``, so the runner records the agent's device.

Security model: every request carries ``Authorization: Bearer <token>``,
compared in constant time; anything else gets 401 and does nothing. The agent
binds to loopback unless a host is named explicitly (with a warning), caps the
body size, the number and size of blocks and the protocol's time budget, and
runs one profiling request at a time so timings do not disturb each other.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

from latnas.errors import BackendUnavailable, DataError, LatnasError, ShapeError, UnknownNameError
from latnas.spec import BlockSpec
from profilers.base import BACKENDS, Backend, LatencyStats, ProtocolConfig, register_backend

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_BACKEND = "onnxruntime"
TOKEN_ENV = "LATNAS_AGENT_TOKEN"
URL_ENV = "LATNAS_AGENT_URL"
MIN_TOKEN_CHARS = 16


# --------------------------------------------------------------------- limits
@dataclass(frozen=True)
class AgentLimits:
    """What one request may ask of the agent (input validation, not policy)."""

    max_body_bytes: int = 1 << 20  # 1 MiB of JSON
    max_specs: int = 512  # blocks per request
    max_channels: int = 8192  # cin, cout
    max_hw: int = 2048  # h, w
    max_batch: int = 1024
    max_kernel: int = 15
    max_expansion: int = 16
    max_input_elements: int = 1 << 26  # batch * cin * h * w
    max_hidden_elements: int = 1 << 27  # batch * cin * expansion * h * w (mbconv's widest tensor)
    max_weight_elements: int = 1 << 26  # rough upper bound of a block's parameters (256 MB in fp32)
    max_models: int = 64  # whole models per request
    max_model_batch: int = 64
    max_seconds: float = 60.0  # ProtocolConfig.max_seconds and warmup_seconds
    max_repeats: int = 100_000  # ProtocolConfig.max_repeats / min_repeats / warmup_runs


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None) -> tuple[str, bool]:
    """The token to serve with and whether it was generated here.

    An explicit token (argument, else ``$LATNAS_AGENT_TOKEN``) must have at
    least :data:`MIN_TOKEN_CHARS` characters; with none, a random one is made
    with :func:`secrets.token_urlsafe` (the caller prints it once).
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        return secrets.token_urlsafe(32), True
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise LatnasError(f"agent token too short: use at least {MIN_TOKEN_CHARS} characters (or omit it to get a random one)")
    return token, False


# ------------------------------------------------------------ request parsing
@dataclass(frozen=True)
class ModelRequest:
    """One whole model: a registered space, an arch string, a batch size."""

    space: str
    arch: str
    batch: int = 1


@dataclass(frozen=True)
class ProfileRequest:
    backend: str
    specs: tuple[BlockSpec, ...]
    config: ProtocolConfig
    options: dict[str, Any]
    models: tuple[ModelRequest, ...] = ()


def parse_options(data: Any) -> dict[str, Any]:
    """Backend constructor options: a flat object of short names to scalars."""
    if data is None:
        return {}
    if not isinstance(data, dict) or len(data) > 16:
        raise DataError("'options' must be a JSON object of at most 16 backend options")
    for name, value in data.items():
        if not name.isidentifier() or name.startswith("_"):
            raise DataError(f"bad backend option name {name!r}")
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > 256):
            raise DataError(f"backend option {name!r} must be a string, number or boolean")
    return dict(data)


def parse_config(data: Any, limits: AgentLimits = AgentLimits()) -> ProtocolConfig:
    """Strictly convert a JSON object to :class:`ProtocolConfig` (DataError on anything odd)."""
    if data is None:
        return ProtocolConfig()
    if not isinstance(data, dict):
        raise DataError("'config' must be a JSON object of ProtocolConfig fields")
    types = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(ProtocolConfig)}
    unknown = set(data) - set(types)
    if unknown:
        raise DataError(f"unknown protocol config fields: {', '.join(sorted(map(str, unknown)))}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"protocol config field {name!r} must be a number, got {value!r}")
        if types[name] == "int":
            if not isinstance(value, int):
                raise DataError(f"protocol config field {name!r} must be an integer, got {value!r}")
        else:
            value = float(value)
            if not math.isfinite(value):
                raise DataError(f"protocol config field {name!r} must be finite")
        if value < 0:
            raise DataError(f"protocol config field {name!r} must be >= 0, got {value!r}")
        values[name] = value
    cfg = ProtocolConfig(**values)
    for name in ("max_seconds", "warmup_seconds"):
        if getattr(cfg, name) > limits.max_seconds:
            raise DataError(f"protocol config {name}={getattr(cfg, name)} exceeds the agent's limit of {limits.max_seconds} s")
    for name in ("max_repeats", "min_repeats", "warmup_runs"):
        if getattr(cfg, name) > limits.max_repeats:
            raise DataError(f"protocol config {name}={getattr(cfg, name)} exceeds the agent's limit of {limits.max_repeats}")
    if cfg.max_repeats < 1 or cfg.window < 1 or cfg.threads < 1:
        raise DataError("protocol config max_repeats, window and threads must be >= 1")
    if cfg.threads > (os.cpu_count() or 1):
        raise DataError(f"protocol config threads={cfg.threads} exceeds the agent's {os.cpu_count()} CPUs")
    return cfg


def check_spec_limits(spec: BlockSpec, limits: AgentLimits = AgentLimits()) -> None:
    """Reject blocks too large to build safely, before building them."""
    checks = (
        ("cin", spec.cin, limits.max_channels),
        ("cout", spec.cout, limits.max_channels),
        ("h", spec.h, limits.max_hw),
        ("w", spec.w, limits.max_hw),
        ("batch", spec.batch, limits.max_batch),
        ("kernel", spec.kernel, limits.max_kernel),
        ("expansion", spec.expansion, limits.max_expansion),
    )
    for name, value, cap in checks:
        if value > cap:
            raise DataError(f"{spec.key}: {name}={value} exceeds the agent's limit of {cap}")
    if spec.batch * spec.cin * spec.h * spec.w > limits.max_input_elements:
        raise DataError(f"{spec.key}: input tensor exceeds the agent's limit of {limits.max_input_elements} elements")
    if spec.batch * spec.cin * spec.expansion * spec.h * spec.w > limits.max_hidden_elements:
        raise DataError(f"{spec.key}: hidden tensor exceeds the agent's limit of {limits.max_hidden_elements} elements")
    hidden = spec.cin * spec.expansion
    weights = max(spec.cin * spec.cout * spec.kernel**2, hidden * (spec.cin + spec.cout + spec.kernel**2))
    if weights > limits.max_weight_elements:
        raise DataError(f"{spec.key}: weights exceed the agent's limit of about {limits.max_weight_elements} elements")


def parse_models(raw_models: Any, limits: AgentLimits = AgentLimits()) -> tuple[ModelRequest, ...]:
    """Validate ``models``: a list of ``{"space", "arch", "batch"}`` objects (space and arch checked)."""
    from latnas.spaces import get_space

    if not isinstance(raw_models, list) or not raw_models:
        raise DataError("'models' must be a non-empty list of {space, arch, batch} objects")
    if len(raw_models) > limits.max_models:
        raise DataError(f"too many models: {len(raw_models)} > the agent's limit of {limits.max_models} per request")
    out = []
    for i, raw in enumerate(raw_models):
        if not isinstance(raw, dict) or set(raw) - {"space", "arch", "batch"}:
            raise DataError(f"models[{i}] must be an object with fields space, arch and optional batch")
        space, arch, batch = raw.get("space"), raw.get("arch"), raw.get("batch", 1)
        if not isinstance(space, str) or not isinstance(arch, str) or len(arch) > 1024:
            raise DataError(f"models[{i}]: space and arch must be strings")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= limits.max_model_batch:
            raise DataError(f"models[{i}]: batch must be an integer in 1..{limits.max_model_batch}")
        try:
            the_space = get_space(space, batch=batch)
            arch = the_space.format_arch(the_space.parse_arch(arch))
        except LatnasError as exc:
            raise type(exc)(f"models[{i}]: {exc}") from None
        out.append(ModelRequest(space, arch, batch))
    return tuple(out)


def parse_profile_request(
    payload: Any, default_backend: str = DEFAULT_BACKEND, limits: AgentLimits = AgentLimits()
) -> ProfileRequest:
    """Validate a decoded ``POST /v1/profile`` body; raise a one-line LatnasError if bad."""
    if not isinstance(payload, dict):
        raise DataError("request body must be a JSON object with 'specs' or 'models' (and optional 'backend', 'config', 'options')")
    unknown = set(payload) - {"backend", "specs", "models", "config", "options"}
    if unknown:
        raise DataError(f"unknown request fields: {', '.join(sorted(map(str, unknown)))}")
    backend = payload.get("backend", default_backend)
    if not isinstance(backend, str) or not backend:
        raise DataError("'backend' must be a backend name")
    if backend == "remote":
        raise DataError("the agent does not forward to another agent: name a local backend")
    if ("specs" in payload) == ("models" in payload):
        raise DataError("give exactly one of 'specs' (a non-empty list of block spec objects) or 'models'")
    specs: list[BlockSpec] = []
    models: tuple[ModelRequest, ...] = ()
    if "models" in payload:
        models = parse_models(payload["models"], limits)
    else:
        raw_specs = payload["specs"]
        if not isinstance(raw_specs, list) or not raw_specs:
            raise DataError("'specs' must be a non-empty list of block spec objects")
        if len(raw_specs) > limits.max_specs:
            raise DataError(f"too many specs: {len(raw_specs)} > the agent's limit of {limits.max_specs} per request")
        for i, raw in enumerate(raw_specs):
            if not isinstance(raw, dict):
                raise DataError(f"specs[{i}] must be a JSON object")
            try:
                spec = BlockSpec.from_dict(raw)
                check_spec_limits(spec, limits)
                spec.validate()
            except LatnasError as exc:
                raise type(exc)(f"specs[{i}]: {exc}") from None
            specs.append(spec)
    return ProfileRequest(
        backend=backend,
        specs=tuple(specs),
        config=parse_config(payload.get("config"), limits),
        options=parse_options(payload.get("options")),
        models=models,
    )


# ------------------------------------------------------------ agent-side work
def _load_backends() -> None:
    """Import the built-in backends so that they register themselves."""
    try:
        import profilers.backends  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the other modules
        logger.warning("could not import profilers.backends: %s", exc)


def local_fingerprint(backend: Backend | None = None, threads: int = 1) -> tuple[dict[str, Any], str]:
    """This machine's fingerprint dict and its short hash.

    With a backend this is exactly what a local run of that backend on the
    agent records (:func:`profilers.fingerprint.device_fingerprint`); it is
    returned with every measurement so clients can see where it was timed.
    """
    from profilers.fingerprint import device_fingerprint, fingerprint_hash, host_info

    if backend is None:
        info = host_info()
        return info, fingerprint_hash(info)
    digest, info = device_fingerprint(backend, threads)
    return info, digest


def backends_status() -> dict[str, dict[str, Any]]:
    """Availability of every registered local backend (``remote`` excluded)."""
    _load_backends()
    out: dict[str, dict[str, Any]] = {}
    for name in BACKENDS.names():
        if name == "remote":
            continue
        versions: dict[str, str] = {}
        try:
            backend = BACKENDS.get(name)()
            ok, reason = backend.availability()
            if ok:
                versions = {str(k): str(v) for k, v in (backend.versions() or {}).items()}
        except Exception as exc:  # a broken backend must not break /info
            ok, reason = False, " ".join(str(exc).split()) or type(exc).__name__
        out[name] = {"available": bool(ok), "reason": reason, "versions": versions}
    return out


def _local_backend(backend_name: str, options: dict[str, Any] | None) -> Backend:
    from profilers.runner import require_available

    _load_backends()
    try:
        backend = BACKENDS.get(backend_name)(**(options or {}))
    except (TypeError, ValueError) as exc:
        raise DataError(f"backend {backend_name!r}: bad options: {' '.join(str(exc).split())}") from None
    if getattr(backend, "remote", False):
        raise DataError("the agent does not forward to another agent: name a local backend")
    return require_available(backend)


def _measurement_dict(m, fp: dict[str, Any], fp_hash: str) -> dict[str, Any]:
    return {
        "key": m.key,
        "kind": m.kind,
        "backend": m.backend,
        "batch": m.batch,
        "spec": m.spec,
        "stats": m.stats.to_dict(),
        "fingerprint": fp,
        "fingerprint_hash": fp_hash,
        "created": m.created,
    }


def profile_specs(
    backend_name: str,
    specs: Sequence[BlockSpec],
    config: ProtocolConfig,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Time ``specs`` with a local backend (via the runner); return JSON-ready measurement dicts."""
    from profilers.runner import profile_block

    backend = _local_backend(backend_name, options)
    fp, fp_hash = local_fingerprint(backend, config.threads)
    return [_measurement_dict(profile_block(backend, spec, config, fingerprint=fp_hash), fp, fp_hash) for spec in specs]


def profile_models(
    backend_name: str,
    models: Sequence[ModelRequest],
    config: ProtocolConfig,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Time whole models with a local backend (via the runner); JSON-ready measurement dicts."""
    from latnas.spaces import get_space
    from profilers.runner import profile_model

    backend = _local_backend(backend_name, options)
    fp, fp_hash = local_fingerprint(backend, config.threads)
    out = []
    for req in models:
        m = profile_model(backend, get_space(req.space, batch=req.batch), req.arch, config, fingerprint=fp_hash)
        out.append(_measurement_dict(m, fp, fp_hash))
    return out


def agent_info(default_backend: str) -> dict[str, Any]:
    import latnas

    fp, fp_hash = local_fingerprint(None)
    return {
        "agent": "latnas",
        "version": latnas.__version__,
        "default_backend": default_backend,
        "backends": backends_status(),
        "fingerprint": fp,
        "fingerprint_hash": fp_hash,
    }


# --------------------------------------------------------------------- server
class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server (one thread per request; profiling serialised)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], token: str, default_backend: str, limits: AgentLimits):
        if not token or len(token) < MIN_TOKEN_CHARS:
            raise LatnasError(f"agent token too short: use at least {MIN_TOKEN_CHARS} characters")
        self.token = token
        self.default_backend = default_backend
        self.limits = limits
        self.profile_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
            address = (address[0].strip("[]"), address[1])
        super().__init__(address, AgentHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    server_version = "latnas-agent/1"
    timeout = 60  # seconds a client may stall while sending a request (socket timeout)

    def log_message(self, format: str, *args: Any) -> None:  # route access logs to logging
        logger.info("%s %s", self.address_string(), format % args)

    # --- plumbing
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": " ".join(str(message).split())[:500]}, headers)

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        try:
            n = int(raw) if raw is not None else None
        except ValueError:
            return None
        return n if n is None or n >= 0 else None

    def _discard_body(self) -> None:
        """Read a small unread body so that the client sees our reply (not a reset)."""
        n = self._content_length()
        if n and 0 < n <= self.server.limits.max_body_bytes:
            self.rfile.read(n)
        elif n:
            self.close_connection = True

    def _authorized(self) -> bool:
        scheme, _, supplied = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            supplied = ""
        return hmac.compare_digest(supplied.strip().encode(), self.server.token.encode())

    def _guard(self) -> bool:
        if self._authorized():
            return True
        self._discard_body()
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="latnas-agent"'})
        return False

    @property
    def _route(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    # --- verbs
    def do_GET(self) -> None:
        if not self._guard():
            return
        if self._route == f"{API_PREFIX}/info":
            try:
                self._send_json(HTTPStatus.OK, agent_info(self.server.default_backend))
            except Exception as exc:
                logger.exception("info failed")
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"info failed: {type(exc).__name__}: {exc}")
            return
        self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {self._route or '/'}")

    def do_POST(self) -> None:
        if not self._guard():
            return
        if self._route != f"{API_PREFIX}/profile":
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {self._route or '/'}")
            return
        n = self._content_length()
        if n is None:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length header required")
            return
        if n > self.server.limits.max_body_bytes:
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {self.server.limits.max_body_bytes} bytes")
            return
        ctype = self.headers.get("Content-Type", "application/json").split(";", 1)[0].strip().lower()
        try:
            body = self.rfile.read(n)
        except OSError:  # the client stalled past `timeout` or went away
            self.close_connection = True
            return
        if ctype != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
            return
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}")
            return
        try:
            req = parse_profile_request(payload, self.server.default_backend, self.server.limits)
            _load_backends()
            BACKENDS.get(req.backend)
        except (DataError, ShapeError, UnknownNameError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            with self.server.profile_lock:
                if req.models:
                    results = profile_models(req.backend, req.models, req.config, req.options)
                else:
                    results = profile_specs(req.backend, req.specs, req.config, req.options)
        except BackendUnavailable as exc:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
            return
        except LatnasError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except Exception as exc:
            logger.exception("profiling failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"profiling failed: {type(exc).__name__}: {exc}")
            return
        self._send_json(HTTPStatus.OK, {"measurements": results})

    def _not_allowed(self) -> None:
        if not self._guard():
            return
        self._discard_body()
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed", {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = _not_allowed


def make_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    token: str,
    default_backend: str = DEFAULT_BACKEND,
    limits: AgentLimits = AgentLimits(),
) -> AgentServer:
    """Create (bind, not start) an agent; ``port=0`` picks a free port (see ``server.url``)."""
    try:
        return AgentServer((host, port), token, default_backend, limits)
    except OSError as exc:
        raise LatnasError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def start_in_thread(server: AgentServer, poll_interval_s: float = 0.05) -> threading.Thread:
    """Serve in a daemon thread (tests, notebooks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval_s}, name="latnas-agent", daemon=True)
    thread.start()
    return thread


def prepare_serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    default_backend: str = DEFAULT_BACKEND,
) -> tuple[AgentServer, list[str]]:
    """Check everything and bind the agent; return it with the lines to print first.

    No token (argument or ``$LATNAS_AGENT_TOKEN``) means a random one is
    generated and shown once; a non-loopback host adds a warning.
    """
    token, generated = resolve_token(token)
    _load_backends()
    ok, reason = BACKENDS.get(default_backend)().availability()
    if not ok:
        raise BackendUnavailable(f"default backend {default_backend!r} is unavailable here: {reason}")
    lines = []
    if not is_loopback(host):
        lines.append(
            f"warning: listening on non-loopback host {host}: anyone who can reach this port and knows the "
            "token can run profiling jobs here, over plain HTTP (prefer an SSH tunnel or a private network)"
        )
    server = make_server(host, port, token=token, default_backend=default_backend)
    lines.append(f"latnas agent listening on {server.url} (default backend {default_backend})")
    if generated:
        lines.append(f"generated token (shown once; give it to clients as --token or ${TOKEN_ENV}): {token}")
    return server, lines


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    default_backend: str = DEFAULT_BACKEND,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the agent until interrupted (what ``latnas agent serve`` calls)."""
    server, lines = prepare_serve(host, port, token, default_backend)
    for line in lines:
        echo(line)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --------------------------------------------------------------------- client
class AgentClient:
    """Talks to an agent over HTTP with the bearer token; errors are one-line LatnasErrors."""

    def __init__(self, url: str, token: str, timeout_s: float = 10.0):
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise BackendUnavailable(f"agent URL must start with http:// or https://, got {url!r}")
        if not token:
            raise BackendUnavailable(f"no agent token: pass token= or set {TOKEN_ENV}")
        self.url = url
        self.token = token
        self.timeout_s = timeout_s

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info", None, self.timeout_s)

    def profile(
        self,
        specs: Sequence[BlockSpec],
        config: ProtocolConfig,
        backend: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Time blocks on the agent; the raw measurement dicts in request order."""
        payload = {"specs": [s.to_dict() for s in specs]}
        # Generous: each block may take its warm-up and timing budget plus export/build time.
        budget_s = len(specs) * (config.max_seconds + config.warmup_seconds + 30.0)
        return self._profile(payload, len(specs), config, backend, options, budget_s)

    def profile_models(
        self,
        models: Sequence[ModelRequest],
        config: ProtocolConfig,
        backend: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Time whole models on the agent; the raw measurement dicts in request order."""
        payload = {"models": [{"space": m.space, "arch": m.arch, "batch": m.batch} for m in models]}
        budget_s = len(models) * (config.max_seconds + config.warmup_seconds + 120.0)
        return self._profile(payload, len(models), config, backend, options, budget_s)

    def _profile(
        self,
        payload: dict[str, Any],
        count: int,
        config: ProtocolConfig,
        backend: str | None,
        options: dict[str, Any] | None,
        budget_s: float,
    ) -> list[dict[str, Any]]:
        payload = {**payload, "config": _config_dict(config)}
        if backend:
            payload["backend"] = backend
        if options:
            payload["options"] = dict(options)
        reply = self._request("POST", "/profile", payload, self.timeout_s + budget_s)
        results = reply.get("measurements") if isinstance(reply, dict) else None
        if not isinstance(results, list) or len(results) != count:
            raise BackendUnavailable(f"agent at {self.url} sent a malformed profile reply")
        return results

    def _request(self, method: str, path: str, payload: Any, timeout: float) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + API_PREFIX + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(self.url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(exc, (socket.timeout, TimeoutError)):
                raise BackendUnavailable(f"agent at {self.url} did not answer within {timeout:.0f} s") from None
            raise BackendUnavailable(f"cannot reach agent at {self.url}: {reason}") from None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BackendUnavailable(f"agent at {self.url} sent a reply that is not JSON") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Agents never redirect; following one would send the token to another URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# Direct connections only (no $http_proxy: the token must not travel via a proxy), no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _config_dict(config: ProtocolConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(ProtocolConfig)}


def _http_error(url: str, exc: urllib.error.HTTPError) -> LatnasError:
    try:
        message = json.loads(exc.read().decode("utf-8")).get("error", "")
    except Exception:
        message = ""
    message = message or exc.reason or ""
    if exc.code == HTTPStatus.UNAUTHORIZED:
        return BackendUnavailable(f"agent at {url} rejected the token (401)")
    if exc.code in (HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE):
        return DataError(f"agent at {url} rejected the request: {message}")
    if exc.code == HTTPStatus.SERVICE_UNAVAILABLE:
        return BackendUnavailable(f"agent at {url}: {message}")
    return BackendUnavailable(f"agent at {url} failed ({exc.code}): {message}")


def stats_from_dict(data: Any) -> LatencyStats:
    """Strictly rebuild :class:`LatencyStats` from a reply (no extra or missing fields)."""
    names = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(LatencyStats)}
    if not isinstance(data, dict) or set(data) != set(names):
        raise BackendUnavailable("agent sent latency stats with unexpected fields")
    values = {}
    for name, kind in names.items():
        v = data[name]
        if kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        if not ok:
            raise BackendUnavailable(f"agent sent a bad latency stats field {name!r}: {v!r}")
        values[name] = v
    return LatencyStats(**values)


@register_backend("remote")
class RemoteBackend(Backend):
    """Profiles blocks on a ``latnas agent`` over HTTP; the fingerprint is the agent's.

    Options: ``url`` (else ``$LATNAS_AGENT_URL``), ``token`` (else
    ``$LATNAS_AGENT_TOKEN``), ``remote_backend`` (the agent's backend; default:
    the agent's default), ``remote_options`` (that backend's constructor
    options, e.g. ``{"precision": "fp16"}``), ``timeout_s`` (connect and info
    timeout).

    Runner hook: a backend with ``remote = True`` cannot ``prepare`` a local
    module; call ``measure_spec(spec, config) -> (LatencyStats, fingerprint
    dict)`` (or ``measure_specs`` for one round trip) instead of
    ``prepare`` + ``measure``, and record the returned fingerprint.
    """

    description = "blocks timed on a remote `latnas agent serve` over authenticated HTTP/JSON"
    requires = "a reachable latnas agent, its URL and token"
    remote = True

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        remote_backend: str | None = None,
        remote_options: dict[str, Any] | None = None,
        timeout_s: float = 10.0,
    ):
        if remote_options is not None and not isinstance(remote_options, dict):
            raise ValueError("remote_options must be a dict of backend options")
        self.remote_options = dict(remote_options or {})
        self.url = url or os.environ.get(URL_ENV) or ""
        self.token = token or os.environ.get(TOKEN_ENV) or ""
        self.remote_backend = remote_backend
        self.timeout_s = float(timeout_s)
        self._info: dict[str, Any] | None = None

    # --- connection
    def client(self) -> AgentClient:
        if not self.url:
            raise BackendUnavailable(f"no agent URL: pass url= or set {URL_ENV}")
        return AgentClient(self.url, self.token, self.timeout_s)

    def info(self, refresh: bool = False) -> dict[str, Any]:
        if self._info is None or refresh:
            info = self.client().info()
            if not isinstance(info, dict) or info.get("agent") != "latnas":
                raise BackendUnavailable(f"{self.url} is not a latnas agent")
            self._info = info
        return self._info

    def target_backend(self) -> str:
        return self.remote_backend or str(self.info().get("default_backend") or DEFAULT_BACKEND)

    def availability(self) -> tuple[bool, str]:
        try:
            info = self.info()
            name = self.target_backend()
        except LatnasError as exc:
            return False, str(exc)
        status = (info.get("backends") or {}).get(name)
        if not isinstance(status, dict):
            return False, f"agent at {self.url} has no backend {name!r}"
        if not status.get("available"):
            return False, f"backend {name!r} unavailable on agent at {self.url}: {status.get('reason', '')}"
        return True, ""

    def versions(self) -> dict[str, str]:
        """Runtime versions of the agent's backend (as the agent reports them)."""
        status = (self.info().get("backends") or {}).get(self.target_backend()) or {}
        versions = status.get("versions") if isinstance(status, dict) else None
        return {str(k): str(v) for k, v in (versions or {}).items()}

    def device_info(self) -> dict[str, Any]:
        """The agent machine's description (replaces the local host in fingerprints)."""
        fp = self.info().get("fingerprint")
        return dict(fp) if isinstance(fp, dict) else {}

    # --- measuring
    def prepare(self, module, example, config: ProtocolConfig):
        raise NotImplementedError(
            "the remote backend times blocks on the agent: call measure_spec(spec, config) instead of prepare()"
        )

    def measure_specs(
        self, specs: Sequence[BlockSpec], config: ProtocolConfig = ProtocolConfig()
    ) -> list[tuple[LatencyStats, dict[str, Any]]]:
        """Time ``specs`` on the agent in one request; (stats, agent fingerprint) per spec."""
        if not specs:
            return []
        results = self.client().profile(list(specs), config, self.target_backend(), self.remote_options)
        out = []
        for spec, item in zip(specs, results):
            if not isinstance(item, dict) or item.get("key") != spec.key:
                raise BackendUnavailable(f"agent at {self.url} answered for a different block than {spec.key}")
            fp = item.get("fingerprint")
            out.append((stats_from_dict(item.get("stats")), fp if isinstance(fp, dict) else {}))
        return out

    def measure_spec(self, spec: BlockSpec, config: ProtocolConfig = ProtocolConfig()) -> tuple[LatencyStats, dict[str, Any]]:
        """Time one block on the agent: ``(LatencyStats, agent fingerprint dict)``."""
        return self.measure_specs([spec], config)[0]

    def measure_model(
        self, space_name: str, arch_string: str, batch: int = 1, config: ProtocolConfig = ProtocolConfig()
    ) -> LatencyStats:
        """The runner's whole-model hook: time ``arch_string`` of ``space_name`` on the agent."""
        req = ModelRequest(space_name, arch_string, int(batch))
        item = self.client().profile_models([req], config, self.target_backend(), self.remote_options)[0]
        if not isinstance(item, dict) or not str(item.get("key", "")).startswith(f"model:{space_name}:"):
            raise BackendUnavailable(f"agent at {self.url} answered for a different model than {arch_string}")
        return stats_from_dict(item.get("stats"))
