"""Remote profiling: a small authenticated HTTP/JSON agent and its client backend.

Run ``latnas agent serve`` on the machine whose latency you want (a phone
board, a GPU box); profile from anywhere with the ``remote`` backend. The block
is built and timed on the agent, so the recorded fingerprint is the agent's.

Modules, one job each:

- :mod:`~profilers.remote.wire`: limits, request dataclasses, strict request
  parsing, the backend option allowlists;
- :mod:`~profilers.remote.agent`: profiling a request with a local backend;
- :mod:`~profilers.remote.server`: the bounded HTTP server, handler, ``serve``;
- :mod:`~profilers.remote.auth`: the start-up token and host checks;
- :mod:`~profilers.remote.client`: :class:`AgentClient` and its error mapping;
- :mod:`~profilers.remote.backend`: the ``remote`` backend (:class:`RemoteBackend`).

Importing the package registers the ``remote`` backend; the other names are
re-exported lazily (module ``__getattr__``), so that imports neither
``http.server`` nor ``urllib``.

Wire protocol (JSON only, never pickle; docs/remote_and_gpu.md has examples):

- ``GET /v1/info`` -> ``{"agent": "latnas", "version", "default_backend",
  "backends": {name: {"available", "reason", "versions"}}, "fingerprint":
  {host description}, "fingerprint_hash"}``
- ``POST /v1/profile`` with ``{"specs": [BlockSpec.to_dict(), ...]}`` or
  ``{"models": [{"space", "arch", "batch"}, ...]}``, plus optional
  ``"backend"`` (default: the agent's), ``"config"`` (ProtocolConfig fields)
  and ``"options"`` (allowlisted backend constructor options) ->
  ``{"measurements": [{"key", "kind", "backend", "batch", "spec", "stats",
  "fingerprint", "fingerprint_hash", "created"}, ...]}`` in request order
  (newer agents add ``precision``, ``layout``, ``meta``). Errors are
  ``{"error": "<one line>"}`` with 400 (bad input), 401 (token), 404, 405,
  411, 413 (body too large), 415 (not JSON), 503 (backend unavailable, or
  the agent is busy) or 500.

Security model: every request carries ``Authorization: Bearer <token>``,
compared in constant time; anything else gets 401 and does nothing. The agent
binds to loopback unless a host is named explicitly (with a warning), bounds
the body's size and nesting, the number and size of blocks, the protocol's
time budget and the number of requests served at once, accepts only
allowlisted backend options (never a path), and runs one profiling request
at a time so timings do not disturb each other.
"""
from __future__ import annotations

from latnas.schema.lazy import lazy_exports

from profilers.remote.backend import RemoteBackend  # registers the ``remote`` backend, as importing this package always did

_EXPORTS = {
    "agent_info": "profilers.remote.agent",
    "backends_status": "profilers.remote.agent",
    "local_fingerprint": "profilers.remote.agent",
    "profile_models": "profilers.remote.agent",
    "profile_specs": "profilers.remote.agent",
    "AgentClient": "profilers.remote.client",
    "AgentHandler": "profilers.remote.server",
    "AgentServer": "profilers.remote.server",
    "is_loopback": "profilers.remote.auth",
    "make_server": "profilers.remote.server",
    "prepare_serve": "profilers.remote.server",
    "read_token_file": "profilers.remote.auth",
    "resolve_token": "profilers.remote.auth",
    "run_until_interrupted": "profilers.remote.server",
    "serve": "profilers.remote.server",
    "start_in_thread": "profilers.remote.server",
    "token_file_warning": "profilers.remote.auth",
    "API_PREFIX": "profilers.remote.wire",
    "DEFAULT_AGENT_OPTIONS": "profilers.remote.wire",
    "DEFAULT_BACKEND": "profilers.remote.wire",
    "DEFAULT_HOST": "profilers.remote.wire",
    "DEFAULT_PORT": "profilers.remote.wire",
    "MIN_TOKEN_CHARS": "profilers.remote.wire",
    "TOKEN_ENV": "profilers.remote.wire",
    "URL_ENV": "profilers.remote.wire",
    "AgentLimits": "profilers.remote.wire",
    "ModelRequest": "profilers.remote.wire",
    "ProfileRequest": "profilers.remote.wire",
    "allowed_options": "profilers.remote.wire",
    "check_backend_options": "profilers.remote.wire",
    "check_spec_limits": "profilers.remote.wire",
    "parse_config": "profilers.remote.wire",
    "parse_models": "profilers.remote.wire",
    "parse_options": "profilers.remote.wire",
    "parse_profile_request": "profilers.remote.wire",
    "stats_from_dict": "profilers.remote.wire",
}

__all__ = sorted([*_EXPORTS, "RemoteBackend"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
