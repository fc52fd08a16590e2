"""Uniform random search (algo ``"random"``): the baseline every search should beat.

A space small enough to enumerate (NAS-Bench-201) is filtered by the budget
first and sampled uniformly among its feasible archs. A larger one is drawn
uniformly from the allowed choices (vectorised, in chunks), keeping the
distinct archs within the budget (rejection sampling), scored in batches until
the evaluation count is spent, the space runs out or ``max_draws`` archs were
drawn; when the budget is so tight that rejection finds nothing, the rest is
filled from the cheapest arch (:func:`latnas.search.candidates.fill_archs`). The result is the Pareto front of what was
scored. Archs over budget cost no evaluation, as in every algorithm.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from latnas.search.algorithm import Algorithm, register_algorithm, score_with
from latnas.search.candidates import feasible_pool, fill_archs
from latnas.search.evolution import result_from


@register_algorithm("random")
class RandomSearch(Algorithm):
    """Uniform random sampling with the same evaluation count as the other algorithms."""

    @dataclass
    class Options:
        batch_size: int = 50  # archs asked for at once
        max_draws: int = 100_000  # give up after this many draws (tiny budgets reject most archs)

    def _steps(self):
        t0 = time.perf_counter()
        evaluator, _ = self.evaluator()
        rng = np.random.default_rng(self.seed)
        allowed = [np.flatnonzero(row) for row in evaluator.space.allowed_mask()]
        seen: set = set()
        draws = 0
        history = []
        pool = feasible_pool(evaluator)
        if pool is not None:  # small space: uniform over exactly the feasible archs
            order = rng.permutation(len(pool))
            want = max(1, self.options.batch_size)
            for start in range(0, len(order), want):
                if evaluator.exhausted:
                    break
                take = pool[order[start:start + min(want, evaluator.remaining)]]
                draws += len(take)
                yield from score_with(evaluator, take)
            arch, score = evaluator.best()
            history.append({"phase": "random", "draws": draws, "evals": evaluator.n_evals,
                            "best_score": None if arch is None else float(score), "feasible_pool": len(pool)})
            return result_from(self.name, evaluator, history, t0, {"draws": draws})
        while not evaluator.exhausted and draws < self.options.max_draws:
            chunk = min(1024, self.options.max_draws - draws)
            drawn = np.stack([rng.choice(a, size=chunk) for a in allowed], axis=1)
            draws += chunk
            ok = evaluator.feasible(evaluator.latency(drawn))
            batch: list = []
            for row in drawn[ok]:
                key = tuple(int(v) for v in row)
                if key not in seen:
                    seen.add(key)
                    batch.append(key)
            want = max(1, self.options.batch_size)
            while batch and not evaluator.exhausted:
                take, batch = batch[: min(want, evaluator.remaining)], batch[min(want, evaluator.remaining):]
                yield from score_with(evaluator, np.asarray(take, dtype=np.int64))
            arch, score = evaluator.best()
            history.append({"phase": "random", "draws": draws, "evals": evaluator.n_evals,
                            "best_score": None if arch is None else float(score)})
            if self.progress is not None:
                self.progress(evaluator.n_evals, evaluator.max_evals, f"random: {draws} drawn")
            if len(seen) >= _space_size(allowed):
                break  # every arch was drawn
            if draws >= 8 * 1024 and evaluator.n_evals == 0:
                break  # uniform draws never meet this budget: fill from the cheapest arch below
        if not evaluator.exhausted:
            extra = fill_archs(evaluator, evaluator.space.allowed_mask(), evaluator.remaining, rng, exclude=seen)
            if extra:
                yield from score_with(evaluator, np.asarray(extra, dtype=np.int64))
                arch, score = evaluator.best()
                history.append({"phase": "random-fill", "draws": draws, "evals": evaluator.n_evals,
                                "best_score": None if arch is None else float(score)})
        return result_from(self.name, evaluator, history, t0, {"draws": draws})


def _space_size(allowed: list[np.ndarray]) -> int:
    size = 1
    for a in allowed:
        size *= len(a)
    return size
