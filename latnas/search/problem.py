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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from latnas.schema.errors import DataError
from latnas.schema.latency_table import LatencyTable
from latnas.search.budget import Budget
from latnas.schema.spaces.base import Arch, SearchSpace

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


# ---------------------------------------------------------------- problem
class SearchProblem:
    """What is searched: a space, its latency objective, an optional budget and the accuracy estimate.

    As in pymoo, the problem owns its bounds and constraints: the budget lives
    here, once, with its unit (checked against the latency table at
    construction), and :meth:`feasible` is the one place that decides whether
    an arch meets it. :meth:`score` runs the scorer (the slow part; between an
    algorithm's ``ask`` and ``tell`` it may run anywhere). ``data`` is the
    dataset the scorer and supernet-training algorithms use (None: each
    algorithm that needs one loads the default). ``scorer_key`` says what the
    scores depend on, so checkpoints are only reused with the same scores.
    """

    def __init__(
        self,
        space: SearchSpace,
        latency: LatencyTable,
        scorer: Scorer,
        budget: Budget | None = None,
        data: Any = None,
        scorer_key: str = "custom",
    ):
        if latency.table.shape != (space.n_layers, space.n_choices):
            raise DataError(f"latency table has shape {latency.table.shape}, space {space.name!r} needs "
                            f"{(space.n_layers, space.n_choices)}")
        if budget is not None:
            if not isinstance(budget, Budget):
                raise TypeError("budget must be a latnas.search.budget.Budget (parse text with Budget.parse)")
            budget.check(latency, space)
        self.space = space
        self.latency_table = latency
        self.scorer = scorer
        self.budget = budget
        self.data = data
        self.scorer_key = scorer_key

    @property
    def unit(self) -> str:
        return self.latency_table.unit

    def latency(self, archs: np.ndarray) -> np.ndarray:
        """Predicted latency (objective unit) of each arch."""
        return self.latency_table.predict(np.atleast_2d(np.asarray(archs, dtype=np.int64)))

    def feasible(self, latency: np.ndarray, limit: float | None = None) -> np.ndarray:
        """Elementwise: finite latency within the budget (and within ``limit``, a tighter bound an algorithm may set)."""
        lat = np.asarray(latency, dtype=np.float64)
        ok = np.isfinite(lat) if self.budget is None else self.budget.admits(lat)
        return ok if limit is None else ok & (lat <= limit)

    def bound(self, limit: float | None = None) -> float | None:
        """The latency bound in force: the budget, or ``limit`` when tighter."""
        values = [v for v in (None if self.budget is None else self.budget.value, limit) if v is not None]
        return min(values) if values else None

    def score(self, archs: Sequence[Arch]) -> np.ndarray:
        """Accuracy estimate of each arch (higher is better); archs over budget are refused."""
        archs = [tuple(int(v) for v in a) for a in archs]
        if not archs:
            return np.zeros(0)
        over = ~self.feasible(self.latency(np.asarray(archs)))
        if over.any():
            bad = archs[int(np.flatnonzero(over)[0])]
            raise DataError(f"arch {self.space.format_arch(bad)} is over the budget {self.budget}; not scored")
        scores = np.asarray(self.scorer(archs), dtype=np.float64).reshape(-1)
        if len(scores) != len(archs):
            raise DataError(f"scorer returned {len(scores)} scores for {len(archs)} archs")
        return scores


# -------------------------------------------------------------- evaluator
class ArchEvaluator:
    """The run state of one search: scores once per arch, an evaluation bound, the archive.

    Evaluation is split for ask/tell: :meth:`request` names the archs that need
    a score now (feasible, unscored, within the remaining evaluations),
    :meth:`record` stores their scores, :meth:`lookup` reads scores back
    (NaN where unscored). :meth:`evaluate` does all three with the problem's
    scorer. ``preloaded`` scores (from a checkpoint) are reused without scoring
    but still count as evaluations when first requested, so a resumed seeded
    search replays exactly like an uninterrupted one. ``limit`` is a tighter
    latency bound than the budget for one phase of an algorithm (HourNAS).
    """

    def __init__(self, problem: SearchProblem, max_evals: int = 200, preloaded: dict[Arch, float] | None = None):
        self.problem = problem
        self.space = problem.space
        self.max_evals = int(max_evals)
        self.preloaded = dict(preloaded or {})
        self.limit: float | None = None
        self.cache: dict[Arch, float] = {}  # scored in this run, in order
        self.latency_of: dict[Arch, float] = {}
        self.scorer_calls = 0
        self._pending: list[Arch] = []

    @property
    def n_evals(self) -> int:
        return len(self.cache)

    @property
    def remaining(self) -> int:
        return max(0, self.max_evals - self.n_evals)

    @property
    def exhausted(self) -> bool:
        return self.n_evals >= self.max_evals

    @property
    def bound(self) -> float | None:
        return self.problem.bound(self.limit)

    def latency(self, archs: np.ndarray) -> np.ndarray:
        return self.problem.latency(archs)

    def feasible(self, latency: np.ndarray) -> np.ndarray:
        return self.problem.feasible(latency, self.limit)

    def request(self, archs: np.ndarray) -> list[Arch]:
        """The archs of ``archs`` whose score must be computed now (checkpointed ones are taken as stored)."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        if archs.size == 0:
            return []
        ok = self.feasible(self.latency(archs))
        fresh: list[Arch] = []
        for i, row in enumerate(archs):
            key = tuple(int(v) for v in row)
            if ok[i] and key not in self.cache and key not in fresh and len(fresh) < self.remaining:
                fresh.append(key)
        self._pending = fresh
        return [k for k in fresh if k not in self.preloaded]

    def record(self, archs: Sequence[Arch], scores: np.ndarray) -> None:
        """Store the scores of the archs :meth:`request` asked for (in request order)."""
        keys = [tuple(int(v) for v in a) for a in archs]
        values = dict(zip(keys, np.asarray(scores, dtype=np.float64).reshape(-1)))
        self.scorer_calls += len(keys)
        fresh, self._pending = self._pending, []
        if not fresh:
            fresh = keys
        lat = self.latency(np.asarray(fresh)) if fresh else np.zeros(0)
        for key, l in zip(fresh, lat):
            if key in values:
                self.cache[key] = float(values[key])
            elif key in self.preloaded:
                self.cache[key] = float(self.preloaded[key])
            else:
                raise DataError(f"no score was told for arch {self.space.format_arch(key)}")
            self.latency_of[key] = float(l)

    def lookup(self, archs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (NaN where not scored) and latency of each arch."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        if archs.size == 0:
            return np.zeros(0), np.zeros(0)
        lat = self.latency(archs)
        scores = np.array([self.cache.get(tuple(int(v) for v in row), np.nan) for row in archs], dtype=np.float64)
        return scores, lat

    def evaluate(self, archs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`request`, score with the problem's scorer, :meth:`record`, :meth:`lookup`."""
        todo = self.request(archs)
        if self._pending:
            self.record(todo, self.problem.score(todo) if todo else np.zeros(0))
        return self.lookup(archs)

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


# ------------------------------------------------------------ pymoo problem
class ArchProblem(Problem):
    """pymoo problem: minimise (-score, latency) s.t. latency <= bound, over ``mask``.

    Evaluation only reads the scores the evaluator already holds: the search
    loop scores requested archs first (ask/tell), then lets pymoo evaluate.
    """

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
            n_ieq_constr=0 if evaluator.bound is None else 1,
            xl=xl,
            xu=xu,
            vtype=int,
        )

    def _evaluate(self, X, out, *args, **kwargs):
        archs = repair_to_mask(X, self.mask, self.lookup)
        scores, lat = self.evaluator.lookup(archs)
        finite_lat = np.where(np.isfinite(lat), lat, np.finfo(np.float64).max / 4)
        out["F"] = np.column_stack([-np.nan_to_num(scores, nan=0.0), finite_lat])
        bound = self.evaluator.bound
        if bound is not None:
            out["G"] = (finite_lat - bound)[:, None]


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
