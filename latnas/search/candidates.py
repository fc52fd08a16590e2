"""Budget-aware candidate generation: archs the latency model places within the bound, before any score is spent.

The latency model is a table lookup, so a whole space of up to
:data:`ENUMERATE_LIMIT` archs (NAS-Bench-201's 15,625) is enumerated and
filtered at once (:func:`feasible_pool`); larger spaces are sampled by
rejection and, when the budget is so tight that uniform draws almost never
meet it (a budget near the fastest arch of FBNet's 9^22), by a constructive
fill (:func:`fill_archs`): start at the cheapest arch and set layers, in a
random order, to a random choice that keeps the arch within the bound. Every
algorithm draws its random archs here (initial populations, restarts), so no
evaluation is spent on an arch the (relaxed) budget rejects.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from latnas.search.problem import ArchEvaluator, uniform_archs
from latnas.schema.spaces.base import Arch

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
    if len(out) < n and pool is None:
        for key in fill_archs(evaluator, mask, n - len(out), rng, exclude=seen):
            seen.add(key)
            out.append(key)
    if len(out) < n:
        out += uniform_archs(mask, n - len(out), rng, exclude=seen)
    return out


def cheapest_arch(evaluator: ArchEvaluator, mask: np.ndarray) -> np.ndarray:
    """The per-layer argmin of the latency table inside ``mask`` (the fastest arch: the correction is monotone)."""
    table = np.where(np.asarray(mask, dtype=bool), evaluator.problem.latency_table.table, np.inf)
    return np.argmin(np.nan_to_num(table, nan=np.inf), axis=1).astype(np.int64)


def fill_archs(evaluator: ArchEvaluator, mask: np.ndarray, n: int, rng: np.random.Generator,
               exclude: Iterable[Arch] = (), tries: int = 4) -> list[Arch]:
    """Up to ``n`` distinct feasible archs built from the cheapest one, one layer at a time.

    Each arch visits the layers in its own random order; each layer takes a
    uniform choice among those that keep the whole arch within the bound (the
    other layers as they are). Vectorised over the archs of a batch. Every
    arch returned is feasible; none when even the cheapest is not.
    """
    mask = np.asarray(mask, dtype=bool)
    base = cheapest_arch(evaluator, mask)
    if n <= 0 or not bool(evaluator.feasible(evaluator.latency(base[None, :]))[0]):
        return []
    n_layers, n_choices = mask.shape
    seen = set(exclude)
    out: list[Arch] = []
    for _ in range(max(1, tries)):
        want = n - len(out)
        if want <= 0:
            break
        batch = max(want, 8)
        archs = np.repeat(base[None, :], batch, axis=0)
        orders = np.argsort(rng.random((batch, n_layers)), axis=1)
        rows = np.arange(batch)
        for step in range(n_layers):
            layer = orders[:, step]
            options = np.repeat(archs, n_choices, axis=0)
            options[np.arange(batch * n_choices), np.repeat(layer, n_choices)] = np.tile(np.arange(n_choices), batch)
            ok = (evaluator.feasible(evaluator.latency(options)).reshape(batch, n_choices) & mask[layer])
            pick = np.argmax(rng.random((batch, n_choices)) * ok, axis=1)  # a uniform feasible choice
            has = ok.any(axis=1)
            archs[rows[has], layer[has]] = pick[has]
        for row in archs:
            key = tuple(int(v) for v in row)
            if key not in seen and len(out) < n:
                seen.add(key)
                out.append(key)
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
