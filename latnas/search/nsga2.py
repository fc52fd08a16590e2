"""NSGA-II search (algo ``"nsga2"``): pymoo's NSGA-II over the whole space.

Options (``ctx.options``): ``pop_size`` (default evals // 5, in [8, 50]),
``max_gen``. The result is the Pareto front (score vs predicted latency) of
every arch scored, best score first; with a budget every front arch meets it.
"""
from __future__ import annotations

import time

from latnas.search.base import SearchContext, SearchResult, register_algorithm
from latnas.search.evolution import evaluator_for, evolve, result_from


@register_algorithm("nsga2")
def run_nsga2(ctx: SearchContext) -> SearchResult:
    t0 = time.perf_counter()
    evaluator, ckpt = evaluator_for(ctx, "nsga2")
    history = evolve(ctx, evaluator, None, phase="nsga2", checkpoint=ckpt)
    return result_from("nsga2", ctx, evaluator, history, t0)
