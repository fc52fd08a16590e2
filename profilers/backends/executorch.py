"""``executorch``: ExecuTorch with the XNNPACK delegate, run by its Python runtime.

Lowering: ``torch.export.export`` -> ``to_edge_transform_and_lower(...,
partitioner=[XnnpackPartitioner()])`` -> ``.to_executorch()``. The ``.pte``
bytes are written to a temporary folder (kept only while loading), loaded
with ``executorch.runtime.Runtime.get().load_program`` and the timed call is
``method.execute([x])``. The XNNPACK thread pool is global to the process: it
is reset to ``config.threads`` when a block is prepared.

Identity blocks lower to a program with no delegate and no kernels (the
output is the input); it still runs, so its latency is the runtime's call
overhead.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

from profilers.base import Backend, ProtocolConfig, register_backend

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def lower_to_xnnpack(module, example):
    """``(edge_manager, executorch_program)`` of an eval-mode ``module`` with XNNPACK delegation.

    Shared by this backend and :mod:`latnas.export.executorch`.
    """
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with _quiet(), torch.no_grad():
        exported = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        return edge, edge.to_executorch()


@register_backend("executorch")
class ExecuTorchBackend(Backend):
    description = "ExecuTorch runtime with the XNNPACK delegate (CPU)"
    requires = "executorch (with its prebuilt pybindings)"

    def __init__(self, **opts: Any):
        if opts:
            raise TypeError(f"executorch takes no options, got {', '.join(opts)}")

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("executorch") is None:
            return False, "python package 'executorch' is not installed"
        try:
            if importlib.util.find_spec("executorch.extension.pybindings._C") is None:
                return False, "executorch is installed without its prebuilt runtime (executorch.extension.pybindings._C)"
        except ImportError as exc:
            return False, f"executorch runtime cannot be imported: {exc}"
        return True, ""

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"executorch": version("executorch"), "delegate": "xnnpack"}
        except PackageNotFoundError:
            return {"executorch": "unknown", "delegate": "xnnpack"}

    def lower(self, module, example) -> bytes:
        """``.pte`` bytes of ``module`` lowered to XNNPACK."""
        return lower_to_xnnpack(module.eval(), example)[1].buffer

    @staticmethod
    def set_threads(threads: int) -> None:
        try:
            import executorch.extension.pybindings.portable_lib as portable

            if portable._threadpool_get_thread_count() != threads:
                portable._unsafe_reset_threadpool(int(threads))
        except (ImportError, AttributeError):  # older runtimes: leave the pool alone
            logger.debug("ExecuTorch thread pool size cannot be set")

    def load(self, pte: bytes):
        """Load ``.pte`` bytes via a file in a temporary folder; returns the forward method."""
        with _quiet():
            from executorch.runtime import Runtime

            runtime = Runtime.get()
        with tempfile.TemporaryDirectory(prefix="latnas-et-") as tmp:
            path = Path(tmp) / "model.pte"
            path.write_bytes(pte)
            program = runtime.load_program(path.read_bytes())
        method = program.load_method("forward")
        method._latnas_program = program  # keep the program (and its data) alive
        return method

    def prepare(self, module, example, config: ProtocolConfig) -> Callable[[], Any]:
        pte = self.lower(module, example)
        self.set_threads(config.threads)
        method = self.load(pte)
        inputs = [example.detach().cpu().contiguous()]
        execute = method.execute

        def call():
            return execute(inputs)

        return call
