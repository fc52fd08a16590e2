"""Latency-constrained architecture search, as pymoo thinks of it.

A :class:`SearchProblem` (space, latency objective, :class:`Budget`, scorer)
is solved by a registered :class:`Algorithm` (``bananas``, ``nsga2``, ``hournas``, ``nse``,
``random``, ``rea``, ``dnas``, ``repnas``) until a :class:`Termination` (number of
evaluations)::

    result = minimize(problem, ALGORITHMS.get("nsga2")({"pop_size": 20}, seed=0), Termination(200))

or, for slow/remote scoring, ``setup`` / ``ask`` / ``tell`` / ``result`` by
hand. :func:`run_algorithm` runs one from a :class:`SearchContext`.
"""
from __future__ import annotations

from latnas.search import bananas as _bananas  # noqa: F401  (registers "bananas")
from latnas.search import dnas as _dnas  # noqa: F401  (registers "dnas")
from latnas.search import hdas as _hdas  # noqa: F401  (registers "hdas")
from latnas.search import hournas as _hournas  # noqa: F401  (registers "hournas")
from latnas.search import nse as _nse  # noqa: F401  (registers "nse")
from latnas.search import nsga2 as _nsga2  # noqa: F401  (registers "nsga2")
from latnas.search import random_search as _random  # noqa: F401  (registers "random")
from latnas.search import rea as _rea  # noqa: F401  (registers "rea")
from latnas.search import repnas as _repnas  # noqa: F401  (registers "repnas")
from latnas.search.algorithm import ALGORITHMS, Algorithm, Termination, minimize, register_algorithm
from latnas.search.base import SearchContext, SearchData, SearchResult
from latnas.search.budget import Budget, parse_budget
from latnas.search.objective import flops_budget_from_samples
from latnas.search.problem import SearchProblem


def problem_from(ctx: SearchContext) -> SearchProblem:
    """The :class:`SearchProblem` of a context (RWE on ``ctx.data`` unless ``ctx.scorer`` is given)."""
    scorer, key = ctx.scorer, ctx.scorer_key
    data = ctx.data
    if scorer is None:
        from latnas.search.rwe import RWEConfig, RWEScorer, rwe_key

        if data is None:
            from latnas.search.data import load_data

            data = load_data(space=ctx.space, seed=ctx.seed)
        scorer = RWEScorer(ctx.space, data, RWEConfig(seed=ctx.seed))
        key = key or rwe_key(data, ctx.seed)
    return SearchProblem(ctx.space, ctx.latency, scorer, budget=ctx.budget, data=data, scorer_key=key or "custom")


def run_algorithm(name: str, ctx: SearchContext) -> SearchResult:
    """Run the registered algorithm ``name`` on ``ctx`` in process (:func:`minimize`)."""
    algo = ALGORITHMS.get(name)(ctx.options, seed=ctx.seed, workdir=ctx.workdir, progress=ctx.progress, resume=ctx.resume)
    return minimize(problem_from(ctx), algo, Termination(ctx.evals))


__all__ = [
    "ALGORITHMS", "Algorithm", "Budget", "SearchContext", "SearchData", "SearchProblem", "SearchResult", "Termination",
    "flops_budget_from_samples", "minimize", "parse_budget", "problem_from", "register_algorithm", "run_algorithm",
]
