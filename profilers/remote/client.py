"""The client side of the wire protocol: :class:`AgentClient` and its error mapping.

It connects directly (proxy variables are ignored) and never follows a
redirect, so the bearer token only ever goes to the URL it was given. Every
failure becomes a one-line LatnasError: 400/413 -> ``DataError``; 401, 503,
other statuses, connection errors, timeouts and malformed replies ->
``BackendUnavailable``.
"""
from __future__ import annotations

import functools
import json
import socket
from http import HTTPStatus
from typing import Any, Sequence

from latnas.schema import safe_json
from latnas.schema.errors import BackendUnavailable, DataError, LatnasError
from latnas.schema.spec import BlockSpec
from profilers.base import ProtocolConfig
from profilers.remote.wire import API_PREFIX, TOKEN_ENV, ModelRequest, config_dict

MAX_REPLY_BYTES = 64 << 20  # 512 measurements with fingerprints are well under 1 MiB
MAX_REPLY_DEPTH = 32


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
        """``GET /v1/info``: the agent's backends and host fingerprint."""
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
        payload = {**payload, "config": config_dict(config)}
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
        import urllib.error
        import urllib.request

        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + API_PREFIX + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with _opener().open(req, timeout=timeout) as resp:
                body = resp.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise http_error(self.url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(exc, (socket.timeout, TimeoutError)):
                raise BackendUnavailable(f"agent at {self.url} did not answer within {timeout:.0f} s") from None
            raise BackendUnavailable(f"cannot reach agent at {self.url}: {reason}") from None
        try:
            return safe_json.loads(body, "agent reply", max_depth=MAX_REPLY_DEPTH, max_bytes=MAX_REPLY_BYTES)
        except DataError:
            raise BackendUnavailable(f"agent at {self.url} sent a reply that is not JSON (or too large or deep)") from None


@functools.lru_cache(maxsize=1)
def _opener():
    """Direct connections only (no $http_proxy: the token must not travel via a proxy), no redirects."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """Agents never redirect; following one would send the token to another URL."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


def http_error(url: str, exc) -> LatnasError:
    """The one-line LatnasError for an agent's HTTP error reply (``exc``: a urllib ``HTTPError``)."""
    try:
        reply = safe_json.loads(exc.read(65536), "agent error reply", max_depth=4)
        message = str(reply.get("error", "")) if isinstance(reply, dict) else ""
    except Exception:
        message = ""
    message = " ".join((message or exc.reason or "").split())[:500]
    if exc.code == HTTPStatus.UNAUTHORIZED:
        return BackendUnavailable(f"agent at {url} rejected the token (401)")
    if exc.code in (HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE):
        return DataError(f"agent at {url} rejected the request: {message}")
    if exc.code == HTTPStatus.SERVICE_UNAVAILABLE:
        return BackendUnavailable(f"agent at {url}: {message}")
    return BackendUnavailable(f"agent at {url} failed ({exc.code}): {message}")
