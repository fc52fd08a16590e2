"""The ``remote`` backend: blocks and models timed on a ``latnas agent`` over HTTP.

It has no ``prepare``: it overrides the measuring hooks of
:class:`~profilers.base.Backend` (``measure_spec``, ``measure_specs``,
``measure_model``) and ``device_info``, so the runner records the agent's
device in the fingerprint.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from latnas.schema.errors import BackendUnavailable, LatnasError
from latnas.schema.spec import BlockSpec
from profilers.base import Backend, LatencyStats, ProtocolConfig, register_backend
from profilers.remote.client import AgentClient
from profilers.remote.wire import DEFAULT_BACKEND, TOKEN_ENV, URL_ENV, ModelRequest, stats_from_dict


@register_backend("remote")
class RemoteBackend(Backend):
    """Profiles blocks on a ``latnas agent`` over HTTP; the fingerprint is the agent's.

    Options: ``url`` (else ``$LATNAS_AGENT_URL``), ``token`` (else
    ``$LATNAS_AGENT_TOKEN``), ``remote_backend`` (the agent's backend; default:
    the agent's default), ``remote_options`` (that backend's constructor
    options, e.g. ``{"precision": "fp16"}``; the agent accepts only its
    allowlist), ``timeout_s`` (connect and info timeout).

    ``measure_spec(spec, config)`` returns ``(LatencyStats, agent fingerprint
    dict)``; ``measure_specs`` does many blocks in one round trip.
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
        # What the agent's backend times with (part of the store key); updated from each reply.
        self.precision = str(self.remote_options.get("precision", "fp32"))
        self.layout = "channels_last" if self.remote_options.get("channels_last") else "contiguous"
        self._last_meta: dict[str, Any] = {}

    # --- connection
    def client(self) -> AgentClient:
        if not self.url:
            raise BackendUnavailable(f"no agent URL: pass url= or set {URL_ENV}")
        return AgentClient(self.url, self.token, self.timeout_s)

    def info(self, refresh: bool = False) -> dict[str, Any]:
        """The agent's ``/v1/info`` reply (cached)."""
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

    def measurement_meta(self) -> dict[str, Any]:
        """What the agent reported about how it timed the last measurement."""
        return dict(self._last_meta)

    def _note(self, item: dict[str, Any]) -> None:
        """Keep the agent's precision, layout and timing metadata of a reply item (newer agents send them)."""
        for name in ("precision", "layout"):
            if isinstance(item.get(name), str) and 0 < len(item[name]) <= 32:
                setattr(self, name, item[name])
        meta = item.get("meta")
        self._last_meta = dict(meta) if isinstance(meta, dict) else {}

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
            self._note(item)
            fp = item.get("fingerprint")
            out.append((stats_from_dict(item.get("stats")), fp if isinstance(fp, dict) else {}))
        return out

    def measure_spec(self, spec: BlockSpec, config: ProtocolConfig = ProtocolConfig()) -> tuple[LatencyStats, dict[str, Any]]:
        """Time one block on the agent: ``(LatencyStats, agent fingerprint dict)``."""
        return self.measure_specs([spec], config)[0]

    def measure_model(
        self, space_name: str, arch_string: str, batch: int = 1, config: ProtocolConfig = ProtocolConfig(), *, space=None
    ) -> LatencyStats:
        """Time ``arch_string`` of ``space_name`` on the agent (``space`` is ignored: the agent builds its own)."""
        req = ModelRequest(space_name, arch_string, int(batch))
        item = self.client().profile_models([req], config, self.target_backend(), self.remote_options)[0]
        if not isinstance(item, dict) or not str(item.get("key", "")).startswith(f"model:{space_name}:"):
            raise BackendUnavailable(f"agent at {self.url} answered for a different model than {arch_string}")
        self._note(item)
        return stats_from_dict(item.get("stats"))
