"""Latency-constrained architecture search.

Algorithms register themselves in :data:`ALGORITHMS` (``nsga2``, ``hournas``,
``nse`` here; ``dnas`` and ``repnas`` when their modules are present). Run one
with ``ALGORITHMS.get(name)(ctx)`` or :func:`run_algorithm`.
"""
from __future__ import annotations

from latnas.search.base import ALGORITHMS, SearchContext, SearchData, SearchResult, register_algorithm
from latnas.search import nsga2 as _nsga2  # noqa: F401  (registers "nsga2")

try:
    from latnas.search import hournas as _hournas  # noqa: F401  (registers "hournas")
except ImportError:  # pragma: no cover - during development
    pass
try:
    from latnas.search import nse as _nse  # noqa: F401  (registers "nse")
except ImportError:  # pragma: no cover
    pass
try:
    from latnas.search import dnas as _dnas  # noqa: F401  (registers "dnas")
except ImportError:
    pass
try:
    from latnas.search import repnas as _repnas  # noqa: F401  (registers "repnas")
except ImportError:
    pass


def run_algorithm(name: str, ctx: SearchContext) -> SearchResult:
    """Run the registered algorithm ``name`` on ``ctx``."""
    return ALGORITHMS.get(name)(ctx)


__all__ = ["ALGORITHMS", "SearchContext", "SearchData", "SearchResult", "register_algorithm", "run_algorithm"]
