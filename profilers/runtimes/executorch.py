"""ExecuTorch for profilers and export: XNNPACK lowering, an on-disk ``.pte`` cache, loading.

Lowering (``torch.export`` -> ``to_edge_transform_and_lower`` with the
XNNPACK partitioner -> ``to_executorch``) takes seconds per block and
dominates a profiling pass, so the profiler keeps lowered programs in
:class:`ProgramCache`: one ``.pte`` file per *module structure* (the module's
``repr``, parameter/buffer names, shapes and dtypes, the input's shape and
dtype: what a block key determines) and *toolchain* (executorch and torch
versions, delegate). Weight values are not part of the key: latency does not
depend on them, so a rerun with freshly initialised blocks lowers nothing.
``latnas export`` lowers afresh (it ships the real weights).
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from profilers.runtimes.cache import atomic_write, default_cache_dir, digest

logger = logging.getLogger(__name__)

DELEGATE = "xnnpack"
PTE_MAGIC_OFFSET = 4  # ExecuTorch flatbuffers carry the file identifier "ET" at bytes 4..8


@contextlib.contextmanager
def quiet():
    """Silence the lowering's warnings and prints."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def lower_to_xnnpack(module, example):
    """``(edge_manager, executorch_program)`` of an eval-mode ``module`` with XNNPACK delegation."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with quiet(), torch.no_grad():
        exported = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        return edge, edge.to_executorch()


def toolchain_versions() -> dict[str, str]:
    """Versions that decide what a lowering produces (part of every cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"delegate": DELEGATE}
    for name in ("executorch", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def structure_key(module, example) -> str:
    """A stable digest of what the lowering depends on, weight values excluded."""
    tensors = [
        f"{name}:{tuple(t.shape)}:{t.dtype}"
        for name, t in [*module.named_parameters(), *module.named_buffers()]
    ]
    shape = f"{tuple(example.shape)}:{example.dtype}"
    return digest(repr(module), "|".join(tensors), shape)


class ProgramCache:
    """Lowered ``.pte`` programs on disk, one file per (structure, toolchain) key.

    The folder is fixed by the caller's code (never by a remote option):
    ``<cache dir>/executorch/<toolchain>/``; see
    :func:`profilers.runtimes.cache.default_cache_dir`.
    """

    def __init__(self, folder: str | Path | None = None, versions: dict[str, str] | None = None):
        self.versions = versions or toolchain_versions()
        tag = digest(*(f"{k}={v}" for k, v in sorted(self.versions.items())))[:12]
        self.folder = Path(folder) if folder is not None else default_cache_dir() / "executorch" / tag
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pte"

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if data[PTE_MAGIC_OFFSET:PTE_MAGIC_OFFSET + 2] != b"ET":
            logger.warning("ignoring %s: not an ExecuTorch program", path)
            return None
        return data

    def put(self, key: str, pte: bytes) -> None:
        try:
            atomic_write(self.path(key), bytes(pte))
        except OSError as exc:  # a read-only cache folder costs speed, not correctness
            logger.warning("could not cache ExecuTorch program %s: %s", self.path(key), exc)

    def lowered(self, module, example) -> bytes:
        """``.pte`` bytes of ``module``: from the cache, or lowered now and cached."""
        key = structure_key(module, example)
        pte = self.get(key)
        if pte is not None:
            self.hits += 1
            return pte
        self.misses += 1
        pte = lower_to_xnnpack(module.eval(), example)[1].buffer
        self.put(key, pte)
        return pte


def load_method(pte: bytes | str | Path, method: str = "forward") -> Any:
    """Load ``method`` of a program (bytes or a ``.pte`` path) with the ExecuTorch Python runtime."""
    with quiet():
        from executorch.runtime import Runtime

        runtime = Runtime.get()
    if isinstance(pte, (str, Path)):
        program = runtime.load_program(Path(pte))
    else:
        with tempfile.TemporaryDirectory(prefix="latnas-et-") as tmp:
            path = Path(tmp) / "model.pte"
            path.write_bytes(pte)
            program = runtime.load_program(path.read_bytes())
    loaded = program.load_method(method)
    if loaded is None:
        from profilers.runtimes import ExportError

        raise ExportError(f"ExecuTorch program has no method {method!r}")
    loaded._latnas_program = program  # keep the program (and its data) alive
    return loaded
