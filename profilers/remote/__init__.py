"""Remote profiling: a small authenticated HTTP/JSON agent and its client backend.

Run ``latnas agent serve`` on the machine whose latency you want (a phone
board, a GPU box); profile from anywhere with the ``remote`` backend. The block
is built and timed on the agent, so the recorded fingerprint is the agent's.

Modules, one job each:

- :mod:`~profilers.remote.wire`: limits, request dataclasses, strict request
  parsing, the backend option allowlists;
- :mod:`~profilers.remote.agent`: profiling a request with a local backend;
- :mod:`~profilers.remote.server`: the bounded HTTP server, handler, ``serve``;
- :mod:`~profilers.remote.client`: :class:`AgentClient` and its error mapping;
- :mod:`~profilers.remote.backend`: the ``remote`` backend (:class:`RemoteBackend`).

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

from profilers.remote.agent import (
    agent_info,
    backends_status,
    local_fingerprint,
    profile_models,
    profile_specs,
)
from profilers.remote.backend import RemoteBackend
from profilers.remote.client import AgentClient
from profilers.remote.server import (
    AgentHandler,
    AgentServer,
    is_loopback,
    make_server,
    prepare_serve,
    read_token_file,
    resolve_token,
    run_until_interrupted,
    serve,
    start_in_thread,
)
from profilers.remote.wire import (
    API_PREFIX,
    DEFAULT_AGENT_OPTIONS,
    DEFAULT_BACKEND,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MIN_TOKEN_CHARS,
    TOKEN_ENV,
    URL_ENV,
    AgentLimits,
    ModelRequest,
    ProfileRequest,
    allowed_options,
    check_backend_options,
    check_spec_limits,
    parse_config,
    parse_models,
    parse_options,
    parse_profile_request,
    stats_from_dict,
)

__all__ = [
    "API_PREFIX",
    "AgentClient",
    "AgentHandler",
    "AgentLimits",
    "AgentServer",
    "DEFAULT_AGENT_OPTIONS",
    "DEFAULT_BACKEND",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MIN_TOKEN_CHARS",
    "ModelRequest",
    "ProfileRequest",
    "RemoteBackend",
    "TOKEN_ENV",
    "URL_ENV",
    "agent_info",
    "allowed_options",
    "backends_status",
    "check_backend_options",
    "check_spec_limits",
    "is_loopback",
    "local_fingerprint",
    "make_server",
    "parse_config",
    "parse_models",
    "parse_options",
    "parse_profile_request",
    "prepare_serve",
    "profile_models",
    "profile_specs",
    "read_token_file",
    "resolve_token",
    "run_until_interrupted",
    "serve",
    "start_in_thread",
    "stats_from_dict",
]
