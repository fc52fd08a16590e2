"""The agent's HTTP side: a bounded threading server, the request handler, ``serve``.

Every request must carry ``Authorization: Bearer <token>`` (constant-time
compare) before anything else is looked at. Bodies are parsed with
:func:`latnas.schema.safe_json.loads` (size and nesting bounded, so a nesting bomb
is a 400), validated by :mod:`profilers.remote.wire`, and profiled one at a
time. At most ``AgentLimits.max_connections`` requests are served at once;
a connection beyond that gets an immediate 503 and is closed.
"""
from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from latnas.schema.errors import BackendUnavailable, DataError, LatnasError, ShapeError, UnknownNameError
from profilers.base import BACKENDS
from profilers.lock import profiling_lock
from profilers.remote.agent import agent_info, load_backends, profile_models, profile_specs
from profilers.remote.auth import is_loopback, resolve_token, token_file_warning
from profilers.remote.framing import Deadline, decode_json, framing_problem, read_body
from profilers.remote.wire import (
    API_PREFIX,
    DEFAULT_BACKEND,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BODY_DEPTH,
    MIN_TOKEN_CHARS,
    TOKEN_ENV,
    AgentLimits,
    check_backend_options,
    parse_profile_request,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------- server
class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server: one thread per request, at most ``limits.max_connections`` at once."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # listen backlog: excess connections are accepted and refused, not left to SYN retries

    def __init__(self, address: tuple[str, int], token: str, default_backend: str, limits: AgentLimits):
        if not token or len(token) < MIN_TOKEN_CHARS:
            raise LatnasError(f"agent token too short: use at least {MIN_TOKEN_CHARS} characters")
        if limits.max_connections < 1:
            raise LatnasError("AgentLimits.max_connections must be >= 1")
        self.token = token
        self.default_backend = default_backend
        self.limits = limits
        self.profile_lock = threading.Lock()  # one profiling job at a time: timings must not overlap
        self.slots = threading.BoundedSemaphore(limits.max_connections)
        self.refused = 0  # connections turned away with 503 (for tests and logs)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
            address = (address[0].strip("[]"), address[1])
        super().__init__(address, AgentHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            _refuse_busy(request, self.limits.max_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        """A client that resets or vanishes mid-request: one log line, not a traceback on stderr."""
        logger.info("request from %s ended early", client_address[0] if client_address else "?", exc_info=False)


def _refuse_busy(sock: socket.socket, cap: int) -> None:
    """Answer 503 on the accepting thread without reading the request (bounded, never blocks long)."""
    body = json.dumps({"error": f"agent busy: {cap} requests in progress; retry later"}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        sock.settimeout(0.02)
        try:  # read what the client already sent, so closing does not reset the connection under our reply
            sock.recv(65536)
        except OSError:
            pass
        sock.sendall(head + body)
    except OSError:
        pass


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    server_version = "latnas-agent/1"

    def setup(self) -> None:
        self.timeout = self.server.limits.request_timeout_s  # a stalled client is cut off
        super().setup()

    def handle_one_request(self) -> None:
        """One request whose line, headers and body must all arrive within ``request_timeout_s`` in total."""
        self._deadline = Deadline(self.server.limits.request_timeout_s, self.connection)
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = framing_problem(self.headers, self.request_version)
        if problem is None:
            return True
        self.request_version = "HTTP/1.0"  # an HTTP/0.9 request still gets a status line
        self.close_connection = True
        self._error(*problem)
        return False

    def log_message(self, format: str, *args: Any) -> None:  # route access logs to logging
        logger.info("%s %s", self.address_string(), format % args)

    # --- plumbing
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, default=str).encode()
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
            read_body(self.rfile, n, self._deadline)
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

    def _read_json(self) -> Any:
        """The request body as JSON; sends the error reply and returns ``None`` when unusable."""
        limit = self.server.limits.max_body_bytes
        n = self._content_length()
        if n is None:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length header required")
            return None
        if n > limit:
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {limit} bytes")
            return None
        ctype = self.headers.get("Content-Type", "application/json").split(";", 1)[0].strip().lower()
        body = read_body(self.rfile, n, self._deadline)
        if body is None:  # the client stalled past the deadline or went away
            self.close_connection = True
            if self._deadline.expired:
                self._error(HTTPStatus.REQUEST_TIMEOUT, f"request not received within {self.server.limits.request_timeout_s:g} s")
            return None
        if ctype != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
            return None
        try:
            return decode_json(body, MAX_BODY_DEPTH, limit)
        except DataError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return None

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
        payload = self._read_json()
        if payload is None:
            return
        try:
            req = parse_profile_request(payload, self.server.default_backend, self.server.limits)
            load_backends()
            if BACKENDS.get(req.backend).remote:
                raise DataError("the agent does not forward to another agent: name a local backend")
            check_backend_options(req.backend, req.options)
        except (DataError, ShapeError, UnknownNameError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            with self.server.profile_lock, profiling_lock(notify=logger.info):  # this machine's one measuring run
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


# ---------------------------------------------------------------- serving
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
    token_file: str | Path | None = None,
    limits: AgentLimits = AgentLimits(),
) -> tuple[AgentServer, list[str]]:
    """Check everything and bind the agent; return it with the lines to print first.

    No token (argument, token file or ``$LATNAS_AGENT_TOKEN``) means a random
    one is generated and shown once; a non-loopback host adds a warning.
    """
    token, generated = resolve_token(token, token_file)
    load_backends()
    ok, reason = BACKENDS.get(default_backend)().availability()
    if not ok:
        raise BackendUnavailable(f"default backend {default_backend!r} is unavailable here: {reason}")
    lines = []
    warning = token_file_warning(token_file) if token_file is not None else None
    if warning:
        lines.append(warning)
    if not is_loopback(host):
        lines.append(
            f"warning: listening on non-loopback host {host}: anyone who can reach this port and knows the "
            "token can run profiling jobs here, over plain HTTP (prefer an SSH tunnel or a private network)"
        )
    server = make_server(host, port, token=token, default_backend=default_backend, limits=limits)
    lines.append(f"latnas agent listening on {server.url} (default backend {default_backend})")
    if generated:
        lines.append(f"generated token (shown once; give it to clients as --token-file or ${TOKEN_ENV}): {token}")
    return server, lines


def run_until_interrupted(server: AgentServer) -> None:
    """Serve until Ctrl-C (or ``server.shutdown()``), then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    default_backend: str = DEFAULT_BACKEND,
    echo: Callable[[str], None] = print,
    token_file: str | Path | None = None,
) -> None:
    """Run the agent until interrupted (what ``latnas agent serve`` does)."""
    server, lines = prepare_serve(host, port, token, default_backend, token_file)
    for line in lines:
        echo(line)
    run_until_interrupted(server)
