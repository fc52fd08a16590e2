"""Budget-aware candidate generation: archs the latency model places within the bound, before any score is spent.

The latency model is a table lookup, so a whole space of up to
:data:`ENUMERATE_LIMIT` archs (NAS-Bench-201's 15,625) is enumerated and
filtered at once (:func:`feasible_pool`); larger spaces are sampled by
rejection (:func:`feasible_archs`). Every algorithm draws its random archs
here (initial populations, restarts), so no evaluation is spent on an arch
the (relaxed) budget rejects.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from latnas.search.problem import ArchEvaluator, uniform_archs
from latnas.spaces.base import Arch

ENUMERATE_LIMIT = 200_000


def space_size(mask: np.ndarray) -> int:
    return math.prod(int(r.sum()) for r in np.asarray(mask, dtype=bool))


def all_archs(mask: np.ndarray) -> np.ndarray:
    """Every arch the mask allows, ``(size, n_layers)``."""
    grids = np.meshgrid(*[np.flatnonzero(r) for r in np.asarray(mask, dtype=bool)], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def feasible_pool(evaluator: ArchEvaluator, mask: np.ndarray | None = None, limit: int = ENUMERATE_LIMIT) -> np.ndarray | None:
    """Every arch of ``mask`` within the bound in force, or None when the space is too large to enumerate."""
    mask = evaluator.space.allowed_mask() if mask is None else np.asarray(mask, dtype=bool)
    if space_size(mask) > limit:
        return None
    archs = all_archs(mask)
    return archs[evaluator.feasible(evaluator.latency(archs))]


def feasible_archs(evaluator: ArchEvaluator, mask: np.ndarray | None, n: int, rng: np.random.Generator,
                   exclude: Iterable[Arch] = (), tries: int = 50) -> list[Arch]:
    """Up to ``n`` distinct archs drawn uniformly among the feasible ones of ``mask`` (not in ``exclude``).

    When fewer feasible archs exist than asked for, the rest is drawn uniformly
    from the mask (an algorithm's population must be full; the evaluator scores
    none of them).
    """
    mask = evaluator.space.allowed_mask() if mask is None else np.asarray(mask, dtype=bool)
    seen = set(exclude)
    out: list[Arch] = []
    pool = feasible_pool(evaluator, mask)
    if pool is not None:
        for i in rng.permutation(len(pool)):
            if len(out) >= n:
                break
            key = tuple(int(v) for v in pool[i])
            if key not in seen:
                seen.add(key)
                out.append(key)
    else:
        allowed = [np.flatnonzero(r) for r in mask]
        for _ in range(tries):
            if len(out) >= n:
                break
            drawn = np.stack([rng.choice(a, size=max(64, 4 * n)) for a in allowed], axis=1)
            for row in drawn[evaluator.feasible(evaluator.latency(drawn))]:
                key = tuple(int(v) for v in row)
                if key not in seen and len(out) < n:
                    seen.add(key)
                    out.append(key)
    if len(out) < n:
        out += uniform_archs(mask, n - len(out), rng, exclude=seen)
    return out


def mutants(parents: list[Arch], allowed: list[np.ndarray], rng: np.random.Generator, per_parent: int,
            max_changes: int = 2) -> np.ndarray:
    """``per_parent`` random neighbours of each parent (1..max_changes layers changed)."""
    rows = []
    for parent in parents:
        base = np.asarray(parent, dtype=np.int64)
        for _ in range(per_parent):
            child = base.copy()
            for layer in rng.choice(len(base), size=int(rng.integers(1, max_changes + 1)), replace=False):
                child[layer] = int(rng.choice(allowed[layer]))
            rows.append(child)
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(allowed))
