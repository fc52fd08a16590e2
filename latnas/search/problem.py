"""The search problem as a pymoo ``Problem`` over a space's integer encoding.

Variable ``l`` is the choice index at searchable layer ``l`` (``xl``/``xu``
are the smallest/largest allowed index there, i.e. 0 and n_choices - 1 for an
unrestricted layer). A *mask* (n_layers, n_choices) of allowed choices can
restrict the space further (HourNAS fixes and shrinks layers, NSE grows
subsets); :class:`AllowedChoiceRepair` maps every value to the nearest allowed
choice, so operators may produce anything.

Objectives (both minimised): ``-score`` (accuracy estimate) and latency from
the :class:`LatencyTable` (ms, or MFLOPs for the proxy). With a budget the
latency also becomes the constraint ``G = latency - budget <= 0``; archs over
budget are not scored (score 0), so they cost no evaluations.

:class:`ArchEvaluator` owns the shared state of one search: the score cache,
the evaluation count (bounded by ``max_evals``) and the archive of scored archs
from which fronts are read.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from latnas.latency_table import LatencyTable
from latnas.spaces.base import Arch, SearchSpace

log = logging.getLogger(__name__)

Scorer = Callable[[Sequence[Arch]], np.ndarray]


# ------------------------------------------------------------------ masks
def full_mask(space: SearchSpace) -> np.ndarray:
    return space.allowed_mask()


def nearest_allowed_map(mask: np.ndarray) -> np.ndarray:
    """(n_layers, n_choices) int map: value ``v`` at layer ``l`` -> nearest allowed choice (ties: lower)."""
    mask = np.asarray(mask, dtype=bool)
    n_layers, n_choices = mask.shape
    out = np.zeros((n_layers, n_choices), dtype=np.int64)
    values = np.arange(n_choices)
    for layer in range(n_layers):
        allowed = np.flatnonzero(mask[layer])
        if allowed.size == 0:
            raise ValueError(f"layer {layer} has no allowed choice")
        dist = np.abs(values[:, None] - allowed[None, :])
        out[layer] = allowed[np.argmin(dist, axis=1)]
    return out


def repair_to_mask(x: np.ndarray, mask: np.ndarray, lookup: np.ndarray | None = None) -> np.ndarray:
    """Round, clip and move every value to the nearest allowed choice of its layer."""
    lookup = nearest_allowed_map(mask) if lookup is None else lookup
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    xi = np.clip(np.rint(x), 0, lookup.shape[1] - 1).astype(np.int64)
    return lookup[np.arange(lookup.shape[0])[None, :], xi]


class AllowedChoiceRepair(Repair):
    """pymoo repair: nearest allowed choice per layer (uses ``problem.lookup``)."""

    def _do(self, problem, X, **kwargs):
        return repair_to_mask(X, problem.mask, problem.lookup)


# -------------------------------------------------------------- evaluator
class ArchEvaluator:
    """Scores archs once each, within an evaluation budget, and keeps the archive.

    ``preloaded`` scores (from a checkpoint) are reused without calling the
    scorer but still count as evaluations when first requested, so a resumed
    seeded search replays exactly like an uninterrupted one.
    """

    def __init__(
        self,
        space: SearchSpace,
        table: LatencyTable,
        scorer: Scorer,
        budget: float | None = None,
        max_evals: int = 200,
        preloaded: dict[Arch, float] | None = None,
        on_eval: Callable[["ArchEvaluator"], None] | None = None,
    ):
        self.space = space
        self.table = table
        self.scorer = scorer
        self.budget = budget
        self.max_evals = int(max_evals)
        self.preloaded = dict(preloaded or {})
        self.cache: dict[Arch, float] = {}  # scored in this run, in order
        self.latency_of: dict[Arch, float] = {}
        self.on_eval = on_eval
        self.scorer_calls = 0

    @property
    def n_evals(self) -> int:
        return len(self.cache)

    @property
    def remaining(self) -> int:
        return max(0, self.max_evals - self.n_evals)

    @property
    def exhausted(self) -> bool:
        return self.n_evals >= self.max_evals

    def latency(self, archs: np.ndarray) -> np.ndarray:
        return self.table.predict(np.atleast_2d(np.asarray(archs, dtype=np.int64)))

    def feasible(self, latency: np.ndarray) -> np.ndarray:
        lat = np.asarray(latency, dtype=np.float64)
        ok = np.isfinite(lat)
        return ok if self.budget is None else ok & (lat <= self.budget)

    def evaluate(self, archs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (NaN where not scored: over budget or evaluations spent) and latency of each arch."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        lat = self.latency(archs)
        ok = self.feasible(lat)
        scores = np.full(len(archs), np.nan)
        todo: list[tuple[int, Arch]] = []
        for i, row in enumerate(archs):
            if not ok[i]:
                continue
            key = tuple(int(v) for v in row)
            if key in self.cache:
                scores[i] = self.cache[key]
            else:
                todo.append((i, key))
        # de-duplicate and respect the evaluation budget (checkpointed scores count too, in order)
        fresh: list[Arch] = []
        for _, key in todo:
            if key not in fresh and len(fresh) < self.remaining:
                fresh.append(key)
        to_score = [k for k in fresh if k not in self.preloaded]
        values = dict(zip(to_score, np.asarray(self.scorer(to_score), dtype=np.float64))) if to_score else {}
        self.scorer_calls += len(to_score)
        for key in fresh:
            self.cache[key] = float(values[key]) if key in values else float(self.preloaded[key])
        for i, key in todo:
            if key in self.cache:
                scores[i] = self.cache[key]
                self.latency_of[key] = float(lat[i])
        if fresh and self.on_eval is not None:
            self.on_eval(self)
        return scores, lat

    # ---------------------------------------------------------- archive
    def archive(self) -> tuple[list[Arch], np.ndarray, np.ndarray]:
        """Every scored arch (feasible by construction), its score and latency."""
        archs = list(self.cache)
        scores = np.array([self.cache[a] for a in archs], dtype=np.float64)
        lat = np.array([self.latency_of[a] for a in archs], dtype=np.float64)
        return archs, scores, lat

    def best(self) -> tuple[Arch | None, float]:
        if not self.cache:
            return None, float("nan")
        arch = max(self.cache, key=lambda a: (self.cache[a], -self.latency_of[a]))
        return arch, self.cache[arch]

    def front(self, restrict: np.ndarray | None = None) -> tuple[list[Arch], np.ndarray, np.ndarray]:
        """Non-dominated scored archs (max score, min latency), best score first.

        ``restrict`` (a mask) keeps only archs inside it.
        """
        archs, scores, lat = self.archive()
        if restrict is not None and archs:
            keep = [i for i, a in enumerate(archs) if restrict[np.arange(len(a)), list(a)].all()]
            archs = [archs[i] for i in keep]
            scores, lat = scores[keep], lat[keep]
        if not archs:
            return [], np.zeros(0), np.zeros(0)
        idx = pareto_indices(scores, lat)
        order = sorted(idx, key=lambda i: (-scores[i], lat[i]))
        return [archs[i] for i in order], scores[order], lat[order]


def pareto_indices(scores: np.ndarray, latency: np.ndarray) -> list[int]:
    """Indices of archs not dominated in (higher score, lower latency); duplicates kept once."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = np.column_stack([-np.asarray(scores, float), np.asarray(latency, float)])
    _, first = np.unique(F, axis=0, return_index=True)
    first = np.sort(first)
    nd = NonDominatedSorting().do(F[first], only_non_dominated_front=True)
    return sorted(int(first[i]) for i in nd)


# ----------------------------------------------------------------- problem
class ArchProblem(Problem):
    """pymoo problem: minimise (-score, latency) s.t. latency <= budget, over ``mask``."""

    def __init__(self, evaluator: ArchEvaluator, mask: np.ndarray | None = None):
        space = evaluator.space
        base = space.allowed_mask()
        mask = base if mask is None else (np.asarray(mask, dtype=bool) & base)
        if not mask.any(axis=1).all():
            bad = int(np.flatnonzero(~mask.any(axis=1))[0])
            raise ValueError(f"mask leaves layer {bad} without an allowed choice")
        self.evaluator = evaluator
        self.mask = mask
        self.lookup = nearest_allowed_map(mask)
        xl = np.array([np.flatnonzero(row)[0] for row in mask])
        xu = np.array([np.flatnonzero(row)[-1] for row in mask])
        super().__init__(
            n_var=space.n_layers,
            n_obj=2,
            n_ieq_constr=0 if evaluator.budget is None else 1,
            xl=xl,
            xu=xu,
            vtype=int,
        )

    def _evaluate(self, X, out, *args, **kwargs):
        archs = repair_to_mask(X, self.mask, self.lookup)
        scores, lat = self.evaluator.evaluate(archs)
        finite_lat = np.where(np.isfinite(lat), lat, np.finfo(np.float64).max / 4)
        out["F"] = np.column_stack([-np.nan_to_num(scores, nan=0.0), finite_lat])
        if self.evaluator.budget is not None:
            out["G"] = (finite_lat - self.evaluator.budget)[:, None]


def uniform_archs(mask: np.ndarray, n: int, rng: np.random.Generator, exclude: Iterable[Arch] = ()) -> list[Arch]:
    """Up to ``n`` distinct archs drawn uniformly from the choices ``mask`` allows."""
    allowed = [np.flatnonzero(row) for row in np.asarray(mask, dtype=bool)]
    size = 1
    for a in allowed:
        size *= len(a)
        if size > 10**12:
            break
    seen = set(exclude)
    out: list[Arch] = []
    tries = 0
    while len(out) < n and len(seen) < size and tries < 50 * n + 100:
        tries += 1
        arch = tuple(int(rng.choice(a)) for a in allowed)
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out
