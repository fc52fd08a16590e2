"""The executor interface: map a function over items in batches, results in input order.

An executor is *where* independent, slow work runs (scoring candidate archs,
timing blocks): in this process (``local``) or on a Ray cluster (``ray``).
Callers never see the difference except in wall time: every executor returns
the results of ``fn`` in the order of the items it was given, so a seeded
search gives the same answer on one worker or many.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence, TypeVar

from latnas.schema.errors import ExecutorUnavailable, LatnasError  # noqa: F401  (ExecutorUnavailable re-exported)
from latnas.schema.registry import Registry

T = TypeVar("T")
R = TypeVar("R")

BatchFn = Callable[[list[Any]], Sequence[Any]]


def chunked(items: Sequence[T], batch_size: int) -> list[list[T]]:
    """``items`` cut into consecutive lists of at most ``batch_size`` (order kept)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def default_batch_size(n_items: int, workers: int) -> int:
    """One batch per worker: ``ceil(n / workers)`` (at least 1)."""
    return max(1, math.ceil(n_items / max(1, workers)))


class Executor:
    """Runs ``fn`` over batches of items; subclass, set ``name``, register it.

    ``map_batches(fn, items)`` calls ``fn(batch) -> sequence`` (one result per
    item of the batch) and returns the flat list of results in input order.
    ``map(fn, items)`` is the per-item convenience. ``workers`` is how many
    batches may run at once. Executors are context managers; ``close`` frees
    what they started (it never stops a cluster they only joined).
    """

    name = ""
    workers = 1

    def map_batches(self, fn: BatchFn, items: Iterable[Any], batch_size: int | None = None) -> list[Any]:
        raise NotImplementedError

    def map(self, fn: Callable[[Any], R], items: Iterable[Any], batch_size: int | None = None) -> list[R]:
        """``[fn(x) for x in items]``, run in batches."""
        return self.map_batches(_PerItem(fn), items, batch_size)

    def close(self) -> None:
        """Release resources (default: nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What ran the work (stored in search results)."""
        return {"executor": self.name, "workers": int(self.workers)}


class _PerItem:
    """A batch function from a per-item one (a class, not a closure, so it pickles by reference)."""

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn

    def __call__(self, batch: list[Any]) -> list[Any]:
        return [self.fn(x) for x in batch]


def check_results(batch: Sequence[Any], results: Sequence[Any]) -> list[Any]:
    """The results of one batch as a list; one-line error when the count is wrong."""
    out = list(results)
    if len(out) != len(batch):
        raise LatnasError(f"batch function returned {len(out)} results for {len(batch)} items")
    return out


EXECUTORS: Registry[type] = Registry("executor")
"""Registered executors; the members register themselves and ``latnas.executors`` (the package) imports them."""


def register_executor(name: str):
    """Class decorator registering an :class:`Executor` subclass under ``name``."""
    return EXECUTORS.named(name)


def get_executor(name: str | Executor = "local", **opts: Any) -> Executor:
    """An executor by registered name; options (``workers``, ``address``, ...) go to its constructor."""
    if isinstance(name, Executor):
        return name
    return EXECUTORS.create(name, ExecutorUnavailable, **opts)
