"""Resumable search state as JSON (never pickle).

A checkpoint holds every scored arch (score and predicted latency, in
evaluation order), the current population and a few notes (phase,
generation). Resuming re-runs the same seeded search with the stored scores
preloaded: the search replays identically without re-scoring, then continues
where it stopped. The scores are only reused when the settings they depend on
(space, data, weight seed) match; otherwise resuming is refused in one line.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from latnas.schema.errors import DataError
from latnas.schema.spaces.base import Arch, SearchSpace

CHECKPOINT_SCHEMA = "latnas.search_checkpoint/1"
CHECKPOINT_NAME = "checkpoint.json"
SCORE_KEYS = ("space", "scorer")  # settings the stored scores depend on


class Checkpointer:
    """Writes ``<workdir>/checkpoint.json`` atomically after each generation."""

    def __init__(self, workdir: str | Path, space: SearchSpace, meta: dict[str, Any]):
        self.path = Path(workdir) / CHECKPOINT_NAME
        self.space = space
        self.meta = dict(meta)

    def save(self, evaluator, state: dict[str, Any] | None = None) -> None:
        fmt = self.space.format_arch
        payload = {
            "schema": CHECKPOINT_SCHEMA,
            "meta": self.meta,
            "saved_unix": time.time(),
            "n_evals": evaluator.n_evals,
            "scores": [[fmt(a), s, evaluator.latency_of.get(a)] for a, s in evaluator.cache.items()],
            # scores read from an earlier checkpoint but not yet replayed: keep them
            "pending": [[fmt(a), s] for a, s in evaluator.preloaded.items() if a not in evaluator.cache],
            "state": _jsonable(state or {}),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.path)

    def load_scores(self) -> dict[Arch, float]:
        """Scores stored by an earlier run with the same score settings ({} when none)."""
        data = read_checkpoint(self.path)
        if data is None:
            return {}
        old = data.get("meta", {})
        for key in SCORE_KEYS:
            if old.get(key) != self.meta.get(key):
                raise DataError(
                    f"checkpoint {self.path} was made with {key}={old.get(key)!r}, this run uses "
                    f"{self.meta.get(key)!r}; remove it or choose another output folder"
                )
        scores: dict[Arch, float] = {}
        try:
            for row in [*data.get("scores", []), *data.get("pending", [])]:
                scores[self.space.parse_arch(str(row[0]))] = float(row[1])
        except (IndexError, TypeError, ValueError) as exc:
            raise DataError(f"checkpoint {self.path} is corrupt: {exc}") from None
        return scores


def read_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint JSON at ``path`` (None when absent); one-line error when unusable."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"checkpoint {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != CHECKPOINT_SCHEMA:
        raise DataError(f"{path} is not a latnas search checkpoint (expected schema {CHECKPOINT_SCHEMA})")
    return data


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj
