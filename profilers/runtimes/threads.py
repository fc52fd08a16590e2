"""Thread pinning for every runtime: torch's intra-op pool and ExecuTorch's XNNPACK pool.

ONNX Runtime is pinned through its session options (``intra_op_num_threads``);
TensorRT and torch-cuda run on the GPU and need no pinning.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread count for the duration; restore it afterwards."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        yield
        return
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def set_executorch_threads(threads: int) -> None:
    """Resize ExecuTorch's (process-global) XNNPACK thread pool; best effort on older runtimes."""
    try:
        import executorch.extension.pybindings.portable_lib as portable

        if portable._threadpool_get_thread_count() != threads:
            portable._unsafe_reset_threadpool(int(threads))
    except (ImportError, AttributeError):  # older runtimes: leave the pool alone
        logger.debug("ExecuTorch thread pool size cannot be set")
