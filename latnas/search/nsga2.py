"""NSGA-II search (algo ``"nsga2"``): pymoo's NSGA-II over the whole space.

The result is the Pareto front (score vs predicted latency) of every arch
scored, best score first; with a budget every front arch meets it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from latnas.search.algorithm import Algorithm, register_algorithm
from latnas.search.evolution import evolve, result_from


@register_algorithm("nsga2")
class NSGA2Search(Algorithm):
    """NSGA-II with the evaluation count as its only stopping rule; resumable."""

    supports_resume = True

    @dataclass
    class Options:
        pop_size: int | None = None  # None: evals // 5, clipped to [8, 50]
        max_gen: int | None = None  # None: enough generations to spend every evaluation

    def _steps(self):
        t0 = time.perf_counter()
        evaluator, ckpt = self.evaluator()
        opt = self.options
        history = yield from evolve(self, evaluator, None, pop_size=opt.pop_size, max_gen=opt.max_gen,
                                    phase="nsga2", checkpoint=ckpt)
        return result_from(self.name, evaluator, history, t0)
