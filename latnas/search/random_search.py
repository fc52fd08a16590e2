"""Uniform random search (algo ``"random"``): the baseline every search should beat.

Draws distinct archs uniformly from the space's allowed choices, keeps those
within the budget, and scores them in batches until the evaluation count is
spent (or the space runs out). The result is the Pareto front of what was
scored. Archs over budget cost no evaluation, as in every algorithm.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from latnas.search.algorithm import Algorithm, register_algorithm, score_with
from latnas.search.evolution import result_from
from latnas.search.problem import uniform_archs


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
        mask = evaluator.space.allowed_mask()
        seen: set = set()
        draws = 0
        history = []
        while not evaluator.exhausted and draws < self.options.max_draws:
            want = min(max(1, self.options.batch_size), evaluator.remaining)
            batch = uniform_archs(mask, want, rng, exclude=seen)
            if not batch:
                break  # the whole space was drawn
            draws += len(batch)
            seen.update(batch)
            archs = np.asarray(batch, dtype=np.int64)
            yield from score_with(evaluator, archs[evaluator.feasible(evaluator.latency(archs))])
            arch, score = evaluator.best()
            history.append({"phase": "random", "draws": draws, "evals": evaluator.n_evals,
                            "best_score": None if arch is None else float(score)})
            if self.progress is not None:
                self.progress(evaluator.n_evals, evaluator.max_evals, f"random: {draws} drawn")
        return result_from(self.name, evaluator, history, t0, {"draws": draws})
