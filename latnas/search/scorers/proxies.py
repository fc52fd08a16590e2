"""Zero-cost proxies as features (for accuracy predictors), with an on-disk cache for the slow ones.

``proxy_features(space, archs, ("synflow", "params", "flops"))`` -> ``(n, 3)``
raw proxy values from the registered scorers of the same names. ``params`` and
``flops`` are closed-form (microseconds per arch); ``synflow`` costs about 0.4 s
and ``naswot`` about 3 s per NAS-Bench-201 arch on one core, so their values are
kept in a JSON cache per (space, proxy, seed) under ``$LATNAS_CACHE`` (default
``~/.cache/latnas/zero_cost``), outside the repository, merged on every write
(several processes may share it) and renamed into place atomically. A cache
file is plain JSON ``{arch string: value}``; anything else is ignored and
rebuilt, never trusted.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from latnas.schema.errors import DataError
from latnas.search.scorers.base import ScorerConfig, make_scorer
from latnas.schema.spaces.base import SearchSpace

CHEAP = frozenset({"params", "flops"})  # closed form: never cached
KNOWN = ("synflow", "naswot", "params", "flops")
SAVE_EVERY = 50


def cache_dir() -> Path:
    return Path(os.environ.get("LATNAS_CACHE") or Path.home() / ".cache" / "latnas" / "zero_cost")


def parse_proxies(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"synflow,params"`` -> ``("synflow", "params")``; ``"none"`` / empty -> ``()``; unknown names refused."""
    if text is None:
        return ()
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n and n.strip()]
    if names in (["none"], []):
        return ()
    for name in names:
        if name not in KNOWN:
            raise DataError(f"unknown zero-cost proxy {name!r} (known: {', '.join(KNOWN)}, or none)")
    if len(set(names)) != len(names):
        raise DataError(f"zero-cost proxy listed twice in {','.join(names)}")
    return tuple(names)


class ProxyCache:
    """``{arch string: value}`` of one proxy, space and seed, kept in a JSON file."""

    def __init__(self, space: SearchSpace, proxy: str, seed: int = 0, folder: Path | None = None):
        self.path = (folder or cache_dir()) / f"{space.name}-{proxy}-seed{seed}.json"
        self.values: dict[str, float] = self._read()
        self.unsaved = 0

    def _read(self) -> dict[str, float]:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict):
            return {}
        return {k: float(v) for k, v in doc.items() if isinstance(k, str) and isinstance(v, (int, float))
                and math.isfinite(float(v))}

    def put(self, key: str, value: float) -> None:
        self.values[key] = float(value)
        self.unsaved += 1
        if self.unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        if not self.unsaved:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._read(), **self.values}
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump(merged, fh)
            os.replace(tmp, self.path)
            self.values, self.unsaved = merged, 0
        except OSError:  # a read-only home: the cache is only a speed-up
            self.unsaved = 0


def proxy_features(space: SearchSpace, archs: Sequence[Sequence[int]], proxies: Sequence[str], seed: int = 0,
                   data=None, cache: bool = True) -> np.ndarray:
    """Raw values of each proxy for each arch, ``(n, len(proxies))`` (slow proxies cached on disk)."""
    archs = [tuple(int(v) for v in a) for a in archs]
    out = np.empty((len(archs), len(proxies)), dtype=np.float64)
    for j, name in enumerate(proxies):
        scorer = make_scorer(name, ScorerConfig(space=space, data=data, seed=seed))
        if name in CHEAP or not cache:
            out[:, j] = scorer(archs) if archs else np.zeros(0)
            continue
        store = ProxyCache(space, name, seed)
        for i, arch in enumerate(archs):
            key = space.format_arch(arch)
            if key not in store.values:
                store.put(key, float(scorer([arch])[0]))
            out[i, j] = store.values[key]
        store.save()
    return out
