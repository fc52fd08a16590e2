"""Search algorithms as pymoo thinks of them: objects with declared options and ask/tell.

An algorithm is a registered class with an ``Options`` dataclass. The loop is
pymoo's::

    algorithm.setup(problem, Termination(n_evals=200))
    while algorithm.has_next():
        archs = algorithm.ask()            # archs that need an accuracy estimate
        algorithm.tell(archs, problem.score(archs))   # ... computed anywhere
    result = algorithm.result()

:func:`minimize` runs exactly that loop. Subclasses implement one generator,
``_steps()``, that yields lists of archs to score and receives their scores
(``scores = yield archs``), returning a :class:`SearchResult`; the base class
turns it into ``ask``/``tell``. The one termination rule is the number of
evaluations (archs scored); every algorithm honours it.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Generator, Sequence

import numpy as np

from latnas.schema.errors import DataError
from latnas.schema.registry import Registry
from latnas.search.base import SearchResult
from latnas.search.checkpoint import Checkpointer
from latnas.search.options import options_from
from latnas.search.problem import ArchEvaluator, SearchProblem
from latnas.schema.spaces.base import Arch, SearchSpace

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Termination:
    """Stop after ``n_evals`` archs have been scored (the only termination rule)."""

    n_evals: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.n_evals, bool) or int(self.n_evals) != self.n_evals or self.n_evals < 1:
            raise DataError(f"--evals must be an integer >= 1, got {self.n_evals!r}")


@dataclass
class NoOptions:
    """An algorithm without options."""


class Algorithm:
    """Base class: options, seed, checkpoint folder, progress callback; ask/tell over ``_steps``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    supports_resume: ClassVar[bool] = False

    def __init__(
        self,
        options: Any = None,
        *,
        seed: int = 0,
        workdir: str | Path | None = None,
        progress: Progress | None = None,
        resume: bool = False,
    ):
        self.options = options_from(self.Options, options, self.name or type(self).__name__)
        self.seed = int(seed)
        self.workdir = None if workdir is None else Path(workdir)
        self.progress = progress
        self.resume = bool(resume)
        if self.resume and not self.supports_resume:
            raise DataError(f"{self.name} cannot resume (it keeps no checkpoint of scores); rerun without --resume")
        self.problem: SearchProblem | None = None
        self.termination: Termination | None = None
        self._steps_it: Generator[list[Arch], np.ndarray, SearchResult] | None = None
        self._asked: list[Arch] | None = None
        self._result: SearchResult | None = None

    # ------------------------------------------------------------ pymoo API
    def setup(self, problem: SearchProblem, termination: Termination | int = Termination()) -> "Algorithm":
        """Bind the problem and the termination rule and run up to the first ``ask``."""
        self.problem = problem
        self.termination = termination if isinstance(termination, Termination) else Termination(int(termination))
        self._result = None
        self._steps_it = self._steps()
        self._advance(None, first=True)
        return self

    def has_next(self) -> bool:
        return self._steps_it is not None and self._result is None

    def ask(self) -> list[Arch]:
        """The archs whose accuracy estimate the algorithm needs next."""
        if not self.has_next() or self._asked is None:
            raise DataError(f"{self.name}: nothing to ask (call setup first, or the search has finished)")
        return list(self._asked)

    def tell(self, archs: Sequence[Arch], scores: Sequence[float] | np.ndarray) -> None:
        """Give the scores of the archs returned by the last :meth:`ask`, in the same order."""
        keys = [tuple(int(v) for v in a) for a in archs]
        if self._asked is None or keys != self._asked:
            raise DataError(f"{self.name}: tell() must answer the archs of the last ask(), in order")
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(values) != len(keys):
            raise DataError(f"{self.name}: {len(values)} scores told for {len(keys)} archs")
        self._advance(values)

    def result(self) -> SearchResult:
        if self._result is None:
            raise DataError(f"{self.name}: the search has not finished (has_next() is still true)")
        return self._result

    def run(self, problem: SearchProblem, termination: Termination | int = Termination()) -> SearchResult:
        """Setup and the whole ask/score/tell loop in process (:func:`minimize`)."""
        return minimize(problem, self, termination)

    # ------------------------------------------------------------ subclasses
    def _steps(self) -> Generator[list[Arch], np.ndarray, SearchResult]:
        """Yield archs to score, receive their scores, return the result."""
        raise NotImplementedError

    # ------------------------------------------------------------ helpers
    @property
    def n_evals(self) -> int:
        assert self.termination is not None
        return int(self.termination.n_evals)

    def run_state(self) -> tuple[SearchProblem, SearchSpace, Any, ArchEvaluator, Checkpointer | None]:
        """(problem, space, latency table, evaluator, checkpointer): what most ``_steps`` start from."""
        problem = self.problem
        assert problem is not None
        evaluator, ckpt = self.evaluator()
        return problem, problem.space, problem.latency_table, evaluator, ckpt

    def evaluator(self) -> tuple[ArchEvaluator, Checkpointer | None]:
        """A fresh run state for the problem, with stored scores preloaded when resuming."""
        problem = self.problem
        assert problem is not None
        ckpt = None
        preloaded: dict[Arch, float] = {}
        if self.workdir is not None:
            meta = {
                "algo": self.name,
                "space": problem.space.name,
                "scorer": problem.scorer_key,
                "seed": self.seed,
                "budget": None if problem.budget is None else str(problem.budget),
                "evals": self.n_evals,
                "latency_unit": problem.unit,
            }
            ckpt = Checkpointer(self.workdir, problem.space, meta)
            if self.resume:
                preloaded = ckpt.load_scores()
                if preloaded:
                    log.info("resuming: %d stored scores from %s", len(preloaded), ckpt.path)
        return ArchEvaluator(problem, max_evals=self.n_evals, preloaded=preloaded), ckpt

    def _advance(self, value: np.ndarray | None, first: bool = False) -> None:
        assert self._steps_it is not None
        try:
            while True:
                asked = next(self._steps_it) if first else self._steps_it.send(value)
                first = False
                asked = [tuple(int(v) for v in a) for a in asked]
                if asked:
                    self._asked = asked
                    return
                value = np.zeros(0)  # nothing to score: continue at once
        except StopIteration as stop:
            self._asked = None
            self._result = stop.value
            if self._result is None:
                raise RuntimeError(f"{self.name}: _steps() returned no SearchResult") from None


def score_with(evaluator: ArchEvaluator, archs: np.ndarray) -> Generator[list[Arch], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Inside ``_steps``: ``scores, lat = yield from score_with(evaluator, archs)`` (asks only for new archs)."""
    todo = evaluator.request(archs)
    if todo:
        evaluator.record(todo, (yield todo))
    elif evaluator._pending:
        evaluator.record([], np.zeros(0))  # all checkpointed: replayed without scoring
    return evaluator.lookup(archs)


def minimize(problem: SearchProblem, algorithm: Algorithm, termination: Termination | int = Termination()) -> SearchResult:
    """pymoo's ``minimize``: setup, then ask / score / tell until the algorithm stops."""
    algorithm.setup(problem, termination)
    while algorithm.has_next():
        archs = algorithm.ask()
        algorithm.tell(archs, problem.score(archs))
    return algorithm.result()


ALGORITHMS: Registry[type[Algorithm]] = Registry("search algorithm")


def register_algorithm(name: str):
    """Class decorator registering an :class:`Algorithm` subclass under ``name``."""

    def deco(cls: type[Algorithm]) -> type[Algorithm]:
        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise TypeError(f"register_algorithm({name!r}) expects an Algorithm subclass")
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"{cls.__name__}.Options must be a dataclass")
        cls.name = name
        return ALGORITHMS.register(name, cls)

    return deco
