"""The agent's wire schema: limits, request dataclasses and strict request parsing.

Everything a client sends is checked here before any work is done: the shape
of the JSON, the protocol config, the size of every block (channels, spatial
size, activations, weights), and the backend options, which must be on the
backend's allowlist (:func:`allowed_options`) so a client can never hand a
backend a filesystem path. Failures are one-line :class:`DataError` s (400).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any

from latnas.schema.errors import BackendUnavailable, DataError, LatnasError
from latnas.schema.spec import BlockSpec
from profilers.base import BACKENDS, LatencyStats, ProtocolConfig

API_PREFIX = "/v1"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_BACKEND = "onnxruntime"
TOKEN_ENV = "LATNAS_AGENT_TOKEN"
URL_ENV = "LATNAS_AGENT_URL"
MIN_TOKEN_CHARS = 16
MAX_BODY_DEPTH = 16  # JSON nesting of a request body; a valid one needs 4


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
    max_activation_elements: int = 1 << 26  # input + output elements of one block (64 M)
    max_hidden_elements: int = 1 << 27  # batch * cin * expansion * h * w (mbconv's widest tensor)
    max_weight_elements: int = 1 << 26  # rough upper bound of a block's parameters (256 MB in fp32)
    max_models: int = 64  # whole models per request
    max_model_batch: int = 64
    max_seconds: float = 60.0  # ProtocolConfig.max_seconds and warmup_seconds
    max_repeats: int = 100_000  # ProtocolConfig.max_repeats / min_repeats / warmup_runs
    max_connections: int = 8  # requests served at once; more get 503 at once
    request_timeout_s: float = 60.0  # total time to send one request (line, headers, body); slower clients are cut off
    max_request_seconds: float = 600.0  # worst-case timing budget of one request (items x per-item budget)


# Client-settable options of backends that do not declare ``Backend.agent_options``
# themselves. Deliberately absent: anything naming a file (tensorrt's
# ``timing_cache``) and anything that stretches the agent's time budget
# (torch-cuda's ``warm_seconds``, ``min_sample_ms``).
DEFAULT_AGENT_OPTIONS: dict[str, frozenset[str]] = {
    "torch-cuda": frozenset({"device", "precision", "cudnn_benchmark", "mode", "channels_last"}),
    "tensorrt": frozenset({"precision", "workspace_mb", "optimization_level", "opset", "exporter", "device"}),
    "executorch": frozenset({"cache", "amortize"}),
}


@dataclass(frozen=True)
class ModelRequest:
    """One whole model: a registered space, an arch string, a batch size."""

    space: str
    arch: str
    batch: int = 1


@dataclass(frozen=True)
class ProfileRequest:
    """A validated ``POST /v1/profile`` body."""

    backend: str
    specs: tuple[BlockSpec, ...]
    config: ProtocolConfig
    options: dict[str, Any]
    models: tuple[ModelRequest, ...] = ()


def allowed_options(backend_name: str) -> frozenset[str]:
    """Constructor options a client may set for ``backend_name`` through the agent."""
    declared = BACKENDS.get(backend_name).agent_options
    if declared is not None:
        return frozenset(declared)
    return DEFAULT_AGENT_OPTIONS.get(backend_name, frozenset())


def check_backend_options(backend_name: str, options: dict[str, Any]) -> None:
    """Refuse options not on the backend's allowlist, and any value that looks like a path."""
    allowed = allowed_options(backend_name)
    for name, value in options.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise DataError(f"backend {backend_name!r} does not take option {name!r} from a client (allowed: {known})")
        if isinstance(value, str) and ("/" in value or "\\" in value or value.startswith("~")):
            raise DataError(f"backend option {name!r}: paths are not accepted from a client")


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
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"backend option {name!r} must be finite")
    return dict(data)


def parse_config(data: Any, limits: AgentLimits = AgentLimits()) -> ProtocolConfig:
    """Strictly convert a JSON object to :class:`ProtocolConfig` (DataError on anything odd)."""
    from profilers.protocol import check_config

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
    for name in ("max_repeats", "min_repeats", "warmup_runs", "window", "stable_windows", "noisy_retries"):
        if getattr(cfg, name) > limits.max_repeats:
            raise DataError(f"protocol config {name}={getattr(cfg, name)} exceeds the agent's limit of {limits.max_repeats}")
    if cfg.max_repeats < 1 or cfg.window < 1 or cfg.threads < 1:
        raise DataError("protocol config max_repeats, window and threads must be >= 1")
    if cfg.threads > (os.cpu_count() or 1):
        raise DataError(f"protocol config threads={cfg.threads} exceeds the agent's {os.cpu_count()} CPUs")
    try:
        check_config(cfg)  # the protocol's own consistency rules (e.g. min_repeats <= max_repeats)
    except ValueError as exc:
        raise DataError(f"inconsistent protocol config: {exc}") from None
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
    inputs = spec.batch * spec.cin * spec.h * spec.w
    if inputs > limits.max_input_elements:
        raise DataError(f"{spec.key}: input tensor exceeds the agent's limit of {limits.max_input_elements} elements")
    stride = max(spec.stride, 1)
    outputs = spec.batch * spec.cout * -(-spec.h // stride) * -(-spec.w // stride)  # upper bound for every op
    if inputs + outputs > limits.max_activation_elements:
        raise DataError(
            f"{spec.key}: input + output activations ({inputs + outputs} elements) exceed the agent's limit of "
            f"{limits.max_activation_elements}"
        )
    if spec.batch * spec.cin * spec.expansion * spec.h * spec.w > limits.max_hidden_elements:
        raise DataError(f"{spec.key}: hidden tensor exceeds the agent's limit of {limits.max_hidden_elements} elements")
    hidden = spec.cin * spec.expansion
    weights = max(spec.cin * spec.cout * spec.kernel**2, hidden * (spec.cin + spec.cout + spec.kernel**2))
    if weights > limits.max_weight_elements:
        raise DataError(f"{spec.key}: weights exceed the agent's limit of about {limits.max_weight_elements} elements")


def parse_models(raw_models: Any, limits: AgentLimits = AgentLimits()) -> tuple[ModelRequest, ...]:
    """Validate ``models``: a list of ``{"space", "arch", "batch"}`` objects (space and arch checked)."""
    from latnas.schema.spaces import get_space

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


def _parse_specs(raw_specs: Any, limits: AgentLimits) -> tuple[BlockSpec, ...]:
    if not isinstance(raw_specs, list) or not raw_specs:
        raise DataError("'specs' must be a non-empty list of block spec objects")
    if len(raw_specs) > limits.max_specs:
        raise DataError(f"too many specs: {len(raw_specs)} > the agent's limit of {limits.max_specs} per request")
    specs = []
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
    return tuple(specs)


def item_budget_s(cfg: ProtocolConfig) -> float:
    """Worst-case seconds the protocol may spend timing one item under ``cfg`` (warm-up and timed runs, every
    session and retry; each phase stops at its own cap)."""
    sessions = max(1, int(getattr(cfg, "sessions", 1))) + max(0, int(getattr(cfg, "extra_sessions", 0)))
    return sessions * (cfg.warmup_seconds + (1 + cfg.noisy_retries) * cfg.max_seconds)


def check_request_budget(n_items: int, cfg: ProtocolConfig, limits: AgentLimits = AgentLimits()) -> None:
    """Refuse a request whose items could take longer than ``limits.max_request_seconds`` in total."""
    total = n_items * item_budget_s(cfg)
    if total > limits.max_request_seconds:
        raise DataError(
            f"request could take {total:.0f} s ({n_items} items x {item_budget_s(cfg):.3g} s each); the agent's limit is "
            f"{limits.max_request_seconds:g} s per request: send fewer items or a shorter config"
        )


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
    models = parse_models(payload["models"], limits) if "models" in payload else ()
    specs = _parse_specs(payload["specs"], limits) if "specs" in payload else ()
    config = parse_config(payload.get("config"), limits)
    check_request_budget(len(specs) or len(models), config, limits)
    return ProfileRequest(
        backend=backend,
        specs=specs,
        config=config,
        options=parse_options(payload.get("options")),
        models=models,
    )


# ------------------------------------------------------------- replies
def config_dict(config: ProtocolConfig) -> dict[str, Any]:
    """``ProtocolConfig`` as the JSON object a request carries."""
    return {f.name: getattr(config, f.name) for f in fields(ProtocolConfig)}


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
