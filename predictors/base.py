"""The contract every registered predictor follows to own its state.

A predictor is a scikit-learn estimator that also mixes in :class:`SavedState`:

* ``to_state()`` -> a JSON-able dict of its learned attributes (lists, floats);
* ``to_files()`` -> extra files it writes in its own format (XGBoost's
  ``model.json``), ``{file name: bytes}``; empty by default;
* ``set_state(state, files)`` -> restores the learned attributes on an
  instance built from the saved hyper-parameters, **validating** everything
  first (shapes, finiteness, tree structure) and raising a one-line
  :class:`~latnas.schema.errors.PredictorFileError`;
* ``to_latency_table(space)`` -> its exact :class:`LatencyTable`, or a
  one-line refusal when the model is not additive over layers.

:mod:`predictors.persistence` and :mod:`predictors.compile` only call these
hooks; :mod:`predictors.registry` is the only table of names. Hyper-parameters
that are themselves predictors (a block-sum's block model, a transfer model's
source models) are saved and restored by the persistence layer, nested.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from latnas.schema.errors import PredictorFileError


@lru_cache(maxsize=16)
def space_of(name: str):
    """The registered search space ``name`` (cached)."""
    from latnas.schema.spaces import get_space

    return get_space(name)


class SavedState:
    """Mixin: save / restore / compile hooks of a registered predictor."""

    #: "arch" (fit on archs of a space) or "block" (fit on block features)
    level: str = "arch"
    #: False for predictors that are not trained from an arch table (block sums)
    table_trainable: bool = True

    def to_state(self) -> dict[str, Any]:
        """Learned attributes as a JSON-able dict."""
        raise PredictorFileError(f"{type(self).__name__} does not declare how to save its state")

    def to_files(self) -> dict[str, bytes]:
        """Extra files in the model's own format (name -> bytes), listed and hashed in meta.json."""
        return {}

    def set_state(self, state: dict[str, Any], files: dict[str, bytes]) -> "SavedState":
        """Restore learned attributes (validated) on an instance made from saved hyper-parameters."""
        raise PredictorFileError(f"{type(self).__name__} does not declare how to restore its state")

    def to_latency_table(self, space):
        """The exact LatencyTable of this fitted predictor (refused when not additive)."""
        raise PredictorFileError(f"a {type(self).__name__} cannot be compiled into a latency table")


# ------------------------------------------------------------------ state checks
def state_vector(state: dict[str, Any], key: str, size: int | None = None, allow_none: bool = False) -> np.ndarray | None:
    """``state[key]`` as a finite float vector (of ``size`` when given); one-line error otherwise."""
    value = state.get(key) if isinstance(state, dict) else None
    if value is None:
        if allow_none and isinstance(state, dict) and key in state:
            return None
        raise PredictorFileError(f"predictor state has no {key!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PredictorFileError(f"predictor state {key!r} is not a list of numbers") from None
    if arr.ndim != 1 or (size is not None and arr.size != size):
        raise PredictorFileError(f"predictor state {key!r} has shape {arr.shape}, expected ({size},)")
    if not np.all(np.isfinite(arr)):
        raise PredictorFileError(f"predictor state {key!r} holds NaN or infinite values")
    return arr


def state_float(state: dict[str, Any], key: str) -> float:
    """``state[key]`` as a finite float; one-line error otherwise."""
    value = state.get(key) if isinstance(state, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise PredictorFileError(f"predictor state {key!r} must be a finite number, got {str(value)[:40]!r}")
    return float(value)


def state_int(state: dict[str, Any], key: str, lo: int = 0, hi: int = 10**7) -> int:
    value = state.get(key) if isinstance(state, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PredictorFileError(f"predictor state {key!r} must be an integer in {lo}..{hi}")
    return value


def state_bool(state: dict[str, Any], key: str) -> bool:
    value = state.get(key) if isinstance(state, dict) else None
    if not isinstance(value, bool):
        raise PredictorFileError(f"predictor state {key!r} must be true or false")
    return value


def as_list(a) -> list | None:
    """A float array as a plain list (None stays None)."""
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()
