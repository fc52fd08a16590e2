"""Regularized (aging) evolution under a latency budget (algo ``"rea"``).

Real et al., "Regularized Evolution for Image Classifier Architecture Search"
(AAAI 2019): a population of ``population`` archs; each step draws
``sample_size`` of them at random, mutates the best one (one layer changes
its choice) and the child replaces the *oldest* member. Ageing keeps the
search exploring instead of converging on one lucky arch; it is the strongest
simple baseline on NAS-Bench-201 in its authors' comparison.

Made latency-aware the cheap way: latency is a table lookup, so the initial
archs and restarts are drawn among the budget-feasible ones
(:mod:`latnas.search.candidates`) and children the budget rejects are redrawn
before any score is spent on them; every evaluation goes to a feasible,
unseen arch.
The result is the Pareto front (score vs predicted latency) of every arch
scored, best score first.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from latnas.search.algorithm import Algorithm, register_algorithm, score_with
from latnas.search.candidates import feasible_archs
from latnas.search.evolution import result_from
from latnas.schema.spaces.base import Arch


@register_algorithm("rea")
class RegularizedEvolution(Algorithm):
    """Aging evolution with budget-feasible candidates only."""

    @dataclass
    class Options:
        population: int = 50  # archs alive at once (the paper: 100)
        sample_size: int = 10  # tournament size (the paper: 25)
        batch_size: int = 1  # children asked for at once (>1 lets a pool score them in parallel)
        max_draws: int = 200  # redraws per candidate before giving up on feasibility/novelty

    def _feasible_unseen(self, evaluator, candidates: list[Arch], seen: set[Arch]) -> list[Arch]:
        fresh = [a for a in dict.fromkeys(candidates) if a not in seen]
        if not fresh:
            return []
        arr = np.asarray(fresh, dtype=np.int64)
        ok = evaluator.feasible(evaluator.latency(arr))
        return [a for a, good in zip(fresh, ok) if good]

    def _random_feasible(self, evaluator, rng, allowed, seen: set[Arch], n: int) -> list[Arch]:
        """Up to ``n`` unseen archs drawn among the budget-feasible ones (:mod:`latnas.search.candidates`)."""
        drawn = feasible_archs(evaluator, None, n, rng, exclude=seen)
        return self._feasible_unseen(evaluator, drawn, seen)

    def _mutant(self, evaluator, rng, allowed, parent: Arch, seen: set[Arch]) -> Arch | None:
        for _ in range(self.options.max_draws):
            child = list(parent)
            layer = int(rng.integers(len(child)))
            choices = [c for c in allowed[layer] if c != child[layer]]
            if not choices:
                continue
            child[layer] = int(rng.choice(choices))
            ok = self._feasible_unseen(evaluator, [tuple(child)], seen)
            if ok:
                return ok[0]
        return None

    def _steps(self):
        t0 = time.perf_counter()
        opt = self.options
        evaluator, _ = self.evaluator()
        rng = np.random.default_rng(self.seed)
        allowed = [np.flatnonzero(row) for row in evaluator.space.allowed_mask()]
        seen: set[Arch] = set()
        population: deque[tuple[Arch, float]] = deque()
        history = []
        init = self._random_feasible(evaluator, rng, allowed, seen, min(opt.population, evaluator.remaining))
        seen.update(init)
        if init:
            scores, _ = yield from score_with(evaluator, np.asarray(init, dtype=np.int64))
            population.extend(zip(init, scores.tolist()))
        while not evaluator.exhausted and population:
            children: list[Arch] = []
            for _ in range(min(max(1, opt.batch_size), evaluator.remaining)):
                idx = rng.choice(len(population), size=min(opt.sample_size, len(population)), replace=False)
                parent = max((population[i] for i in idx), key=lambda p: p[1])[0]
                child = self._mutant(evaluator, rng, allowed, parent, seen)
                if child is None:  # the parent's neighbourhood is spent: jump somewhere new
                    fresh = self._random_feasible(evaluator, rng, allowed, seen, 1)
                    child = fresh[0] if fresh else None
                if child is not None:
                    seen.add(child)
                    children.append(child)
            if not children:
                break  # nothing feasible and unseen is left
            scores, _ = yield from score_with(evaluator, np.asarray(children, dtype=np.int64))
            for child, s in zip(children, scores.tolist()):
                population.append((child, s))
                if len(population) > opt.population:
                    population.popleft()  # ageing: the oldest dies, not the worst
            arch, best = evaluator.best()
            history.append({"phase": "rea", "evals": evaluator.n_evals, "best_score": None if arch is None else float(best)})
            if self.progress is not None:
                self.progress(evaluator.n_evals, evaluator.max_evals, f"rea: best {best:.4g}")
        return result_from(self.name, evaluator, history, t0, {"population": opt.population})
