"""One runtimes layer, used by the profiler backends *and* ``latnas.export``.

What is profiled is what ships: both sides export, lower and build through
the same functions with the same flags.

- :mod:`profilers.runtimes.onnx`: one ONNX exporter (explicit ``dynamo`` choice);
- :mod:`profilers.runtimes.executorch`: XNNPACK lowering, ``.pte`` disk cache, loading;
- :mod:`profilers.runtimes.tensorrt`: one engine builder (one flag set) and one runner;
- :mod:`profilers.runtimes.threads`: pinning torch's and ExecuTorch's thread pools;
- :mod:`profilers.runtimes.cuda` / :mod:`profilers.runtimes.gpu_timing`: CUDA events,
  graph capture and the GPU timing modes;
- :mod:`profilers.runtimes.cache`: the on-disk cache folder.

Runtimes (torch included) are imported inside functions, so importing this
package is cheap and never fails.
"""
from __future__ import annotations

from latnas.schema.errors import LatnasError

try:  # latnas.schema.errors is the home of ExportError; older trees define it here
    from latnas.schema.errors import ExportError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the latnas.schema.errors version

    class ExportError(LatnasError):  # type: ignore[no-redef]
        """A module that cannot be exported, lowered or built (one-line reason)."""


__all__ = ["ExportError"]
