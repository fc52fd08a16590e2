"""Algorithm options as dataclasses: strings from a CLI converted by the field types.

``options_from(Options, {"epochs": "2", "hard": "true"}, "dnas")`` returns an
``Options`` instance; an unknown key or a value that does not convert is one
:class:`~latnas.schema.errors.DataError` line naming the known options.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from latnas.schema.errors import DataError

_NONE_WORDS = ("none", "null", "all")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _as_floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        return tuple(float(t) for t in value.replace("+", ",").split(",") if t.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    return tuple(_as_float(t) for t in value)


def convert(value: Any, hint: Any) -> Any:
    """``value`` (often a string) as the type ``hint`` (bool, int, float, str, tuple[float, ...], X | None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        return convert(value, args[0])
    if origin is tuple:
        return _as_floats(value)
    if hint is bool:
        return _as_bool(value)
    if hint is int:
        return _as_int(value)
    if hint is float:
        return _as_float(value)
    if hint is str:
        return str(value)
    return value


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def options_from(cls: type, values: Any = None, algo: str = "algorithm") -> Any:
    """An instance of the options dataclass ``cls`` from ``values`` (an instance, a mapping or None)."""
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise DataError(f"{algo} options must be a mapping, got {type(values).__name__}")
    known = option_names(cls)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            listing = ", ".join(known) or "none"
            raise DataError(f"{algo} has no option {key!r} (known: {listing})")
        try:
            kwargs[key] = convert(value, hints[key])
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{algo} option {key}={str(value)[:40]!r} is not a valid {_type_name(hints[key])}") from None
        _check_range(algo, key, kwargs[key])
    return cls(**kwargs)


MAX_INT_OPTION = 10**9


def _check_range(algo: str, key: str, value: Any) -> None:
    """Counts (every int option) are 0..1e9 and reals are finite: ``pop_size=-1`` or ``lr=inf`` is an error, not a run."""
    import math

    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int) and not 0 <= v <= MAX_INT_OPTION:
            raise DataError(f"{algo} option {key}={v} is out of range (0..{MAX_INT_OPTION})")
        if isinstance(v, float) and not math.isfinite(v):
            raise DataError(f"{algo} option {key}={v} must be finite")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
