"""The ``ray`` executor: batches run as Ray tasks, at most ``workers`` at once.

Joins the cluster at ``address`` (or ``$RAY_ADDRESS``); without either it
starts a local Ray on demand (and stops it on :meth:`RayExecutor.close`).
Ray is an optional extra: without it, constructing the executor is a
one-line :class:`~latnas.executors.base.ExecutorUnavailable` naming
``latnas[ray]``.

Results come back in input order whatever finishes first, so a seeded search
is identical on 1 or N workers. The batch function is put in Ray's object
store once per function object (a scorer and its dataset are shipped once,
not once per batch). A task whose worker dies is retried by Ray
(``max_retries``); a Python exception inside ``fn`` is raised here with its
one-line message.

Ray moves objects between its own processes with (cloud)pickle; that is
Ray's transport inside one trusted cluster, not a file latnas reads.
"""
from __future__ import annotations

from typing import Any, Iterable

from latnas.schema.errors import LatnasError
from latnas.executors.base import BatchFn, Executor, ExecutorUnavailable, check_results, chunked, default_batch_size, register_executor
from profilers.ray_connect import ensure_ray, import_ray

def ray_error_message(exc: BaseException) -> str:
    """One line for a Ray failure: the user's exception inside a task, or Ray's own."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _run_batch(fn: BatchFn, batch: list[Any]) -> list[Any]:
    return list(fn(batch))


@register_executor("ray")
class RayExecutor(Executor):
    """Batches as Ray tasks (``num_cpus`` each), at most ``workers`` in flight, results in input order.

    ``workers`` defaults to the CPUs the cluster has. ``max_retries`` is how
    often Ray reruns a batch whose worker process died.
    """

    def __init__(self, workers: int | None = None, address: str | None = None, num_cpus: float = 1.0, max_retries: int = 2):
        if workers is not None and int(workers) < 1:
            raise ValueError("workers must be >= 1")
        if num_cpus < 0:
            raise ValueError("num_cpus must be >= 0")
        self.ray = import_ray()
        self._started = ensure_ray(address, num_cpus=None)
        self.num_cpus = float(num_cpus)
        self.max_retries = int(max_retries)
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = int(workers) if workers is not None else max(1, cpus)
        self._remote = self.ray.remote(_run_batch).options(num_cpus=self.num_cpus, max_retries=self.max_retries)
        self._fn_cache: tuple[Any, Any] | None = None  # (fn, its object ref): one upload per function

    def _fn_ref(self, fn: BatchFn):
        if self._fn_cache is None or self._fn_cache[0] is not fn:
            self._fn_cache = (fn, self.ray.put(fn))
        return self._fn_cache[1]

    def map_batches(self, fn: BatchFn, items: Iterable[Any], batch_size: int | None = None) -> list[Any]:
        items = list(items)
        if not items:
            return []
        batches = chunked(items, batch_size or default_batch_size(len(items), self.workers))
        fn_ref = self._fn_ref(fn)
        results: list[list[Any] | None] = [None] * len(batches)
        pending: dict[Any, int] = {}
        next_batch = 0
        ray = self.ray
        try:
            while next_batch < len(batches) or pending:
                while next_batch < len(batches) and len(pending) < self.workers:
                    pending[self._remote.remote(fn_ref, batches[next_batch])] = next_batch
                    next_batch += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    results[i] = check_results(batches[i], ray.get(ref))
        except LatnasError:
            raise
        except Exception as exc:
            for ref in pending:
                ray.cancel(ref, force=False)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, LatnasError):
                raise type(cause)(str(cause)) from None
            raise LatnasError(f"a batch failed on Ray: {ray_error_message(exc)}") from None
        return [r for batch in results for r in batch]  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop the local Ray this executor started (a joined cluster is left alone)."""
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": int(self.workers), "num_cpus_per_batch": self.num_cpus}
