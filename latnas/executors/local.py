"""The ``local`` executor: every batch in this process, one after the other."""
from __future__ import annotations

from typing import Any, Iterable

from latnas.executors.base import BatchFn, Executor, check_results, chunked, register_executor


@register_executor("local")
class LocalExecutor(Executor):
    """Runs batches in order in the calling process (the reference every other executor must match)."""

    def __init__(self, workers: int = 1):
        if int(workers) < 1:
            raise ValueError("workers must be >= 1")
        self.workers = 1  # one process: batches run one after the other whatever is asked

    def map_batches(self, fn: BatchFn, items: Iterable[Any], batch_size: int | None = None) -> list[Any]:
        items = list(items)
        if not items:
            return []
        out: list[Any] = []
        for batch in chunked(items, batch_size or len(items)):
            out.extend(check_results(batch, fn(batch)))
        return out
