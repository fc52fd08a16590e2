"""ExecuTorch export: ``torch.export`` -> XNNPACK-lowered edge program -> ``.pte``, run for parity."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from latnas.export.common import ExportError, ExportResult, Parity, prepare_export

EXECUTORCH_TOLERANCE = 1e-4


def lower_to_executorch(model: nn.Module, example: torch.Tensor):
    """The ExecuTorch program manager of ``model`` with every supported op delegated to XNNPACK."""
    from profilers.runtimes.executorch import lower_to_xnnpack

    try:
        return lower_to_xnnpack(model, example)
    except Exception as exc:
        raise ExportError(f"ExecuTorch lowering failed: {str(exc).strip().splitlines()[0][:200]}") from None


def set_executorch_threads(threads: int) -> None:
    """Resize the ExecuTorch (XNNPACK) thread pool; best effort (the runtimes layer's helper)."""
    from profilers.runtimes.threads import set_executorch_threads as pin

    pin(threads)


def load_executorch_method(path: str | Path, method: str = "forward"):
    """Load ``method`` of a ``.pte`` file with the ExecuTorch Python runtime (the runtimes layer's loader)."""
    from profilers.runtimes.executorch import load_method

    return load_method(Path(path), method)


def run_executorch(path: str | Path, example: torch.Tensor) -> torch.Tensor:
    return load_executorch_method(path).execute([example.contiguous()])[0]


def _graph_counts(edge) -> tuple[int, int]:
    """(delegate calls, other call_function nodes) of the lowered forward graph."""
    gm = edge.exported_program().graph_module
    delegates = others = 0
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if "executorch_call_delegate" in str(node.target):
            delegates += 1
        elif "getitem" not in str(node.target):
            others += 1
    return delegates, others


def export_executorch(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    check_parity: bool = True,
    tolerance: float = EXECUTORCH_TOLERANCE,
    threads: int = 1,
) -> ExportResult:
    """Export an eval-mode ``model`` to an XNNPACK-delegated ``.pte`` and check it against torch."""
    path, ref = prepare_export(model, example, path)
    edge, program = lower_to_executorch(model, example)
    path.write_bytes(program.buffer)
    delegates, others = _graph_counts(edge)
    parity = None
    if check_parity:
        set_executorch_threads(threads)
        parity = Parity.compare(run_executorch(path, example), ref, tolerance)
    return ExportResult(
        format="executorch",
        path=path,
        parity=parity,
        size_bytes=os.path.getsize(path),
        nodes=delegates + others,
        details={"backend": "xnnpack", "delegate_calls": delegates, "non_delegated_ops": others},
    )
