"""Latency of any model: a torch module or an ONNX file, through a kernel predictor (``latnas train --kernels``).

    ms = latnas.predict_latency(model, example=torch.randn(1, 3, 224, 224), predictor="kp/")
    ms = latnas.predict_latency("model.onnx", predictor="kp/")

A module is exported to ONNX with the exporter the profiling backends use (so
the graph is the one that would be measured), split into kernels under the
predictor's backend's fusion rules, and each kernel is predicted and summed.
:func:`latency_fn` wraps this as the ``ms = latency(model)`` callable a
user's own search loop (Optuna, a supernet) needs, with a latency-table fast
path for archs of a registered space.
"""
from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from latnas.schema.errors import DataError, PredictorFileError, ShapeError


@lru_cache(maxsize=8)
def _load(folder: str):
    from predictors.kernel_model import KernelPredictor
    from predictors.persistence import load_predictor

    est, meta = load_predictor(folder)
    if not isinstance(est, KernelPredictor):
        raise PredictorFileError(f"model {folder} is a {meta.get('predictor')!r} predictor, not a kernel predictor "
                                 "(train one with `latnas train --store DB --backend B --kernels -o KP`)")
    return est, meta


def kernel_predictor(predictor: Any):
    """``(estimator, meta)`` of a kernel predictor folder (cached) or an already loaded estimator."""
    if isinstance(predictor, (str, Path)):
        return _load(str(predictor))
    if hasattr(predictor, "predict_model"):
        return predictor, {"backend": getattr(predictor, "backend", None)}
    raise DataError(f"predictor must be a kernel-predictor folder or estimator, not {type(predictor).__name__}")


def module_onnx(module: Any, example: Any, path: str | Path) -> Path:
    """Export a torch module at ``example``'s static shape to ``path`` (the profilers' exporter); one-line errors."""
    import torch

    from profilers.onnx_export import export_onnx

    if not isinstance(module, torch.nn.Module):
        raise DataError(f"expected a torch.nn.Module, an ONNX file or a ModelProto, not {type(module).__name__}")
    if example is None:
        raise DataError("a torch module needs example=<input tensor> (its static shape is exported)")
    if isinstance(example, (tuple, list)):
        if len(example) != 1:
            raise ShapeError(f"the module takes {len(example)} inputs; kernel prediction needs exactly one")
        example = example[0]
    if not isinstance(example, torch.Tensor) or example.dtype != torch.float32 or example.dim() < 2:
        raise ShapeError("example must be one float32 tensor with a batch dimension, e.g. torch.randn(1, 3, 224, 224)")
    with torch.no_grad():
        return export_onnx(module.eval(), example, path)


def model_kernels(model_or_path: Any, example=None, backend: str = "onnxruntime") -> list:
    """The kernels of an ONNX file (path / ``ModelProto``) or of a torch module at ``example``'s shape."""
    from latnas.schema.kernels import detect_kernels

    if isinstance(model_or_path, (str, Path, bytes)) or type(model_or_path).__name__ == "ModelProto":
        return detect_kernels(model_or_path, backend)
    with tempfile.TemporaryDirectory(prefix="latnas-any-model-") as tmp:
        return detect_kernels(module_onnx(model_or_path, example, Path(tmp) / "model.onnx"), backend)


def predict_latency(model_or_path: Any, example=None, predictor: Any = None, backend: str | None = None,
                    breakdown: bool = False) -> float | dict[str, Any]:
    """Predicted latency (ms) of a module or ONNX file; with ``breakdown`` a dict with every kernel's ms.

    ``backend``, when given, must be the backend the predictor was built on.
    """
    if predictor is None:
        raise DataError("predict_latency needs predictor=<folder written by `latnas train --kernels`>")
    est, meta = kernel_predictor(predictor)
    built_on = meta.get("backend") or getattr(est, "backend", None)
    if backend is not None and built_on != backend:
        raise PredictorFileError(f"the predictor was built on backend {built_on!r}, not {backend!r}")
    kernels = model_kernels(model_or_path, example, built_on or "onnxruntime")
    if not kernels:
        raise DataError("the model has no kernels (an empty graph)")
    per = est.predict(kernels)
    total = est.correct(float(per.sum()), len(kernels))
    if not breakdown:
        return total
    return {"predicted_ms": total, "kernel_sum_ms": float(per.sum()), "backend": built_on, "kernels": [
        {"op": k.op, **{f: getattr(k, f) for f in ("cin", "cout", "kernel", "stride", "groups", "h", "w", "act", "variant")},
         "ms": float(ms), "nodes": k.nodes[:6]} for k, ms in zip(kernels, per)]}


def latency_fn(predictor: Any, example=None, table_predictor: Any = None, space: Any = None) -> Callable[[Any], float]:
    """``ms = latency(model)`` for someone else's loop.

    An arch of a registered ``space`` (digits or a list of choices) goes
    through ``table_predictor``'s compiled latency table (the fast path: a sum
    of table entries); anything else (a torch module, an ONNX file) through
    the kernel predictor ``predictor`` at ``example``'s shape.
    """
    table = None
    if table_predictor is not None:
        from latnas.schema.spaces import get_space
        from predictors.persistence import load_latency_table

        space = get_space(space) if isinstance(space, str) else space
        if space is None:
            raise DataError("table_predictor needs space=<registered space>")
        table = load_latency_table(table_predictor, space)

    def latency(model: Any) -> float:
        if table is not None and isinstance(model, (str, list, tuple)) and not str(model).endswith(".onnx"):
            import numpy as np

            arch = space.parse_arch(model) if isinstance(model, str) else list(model)
            return float(table.predict(np.array([arch], dtype=np.int64))[0])
        return float(predict_latency(model, example=example, predictor=predictor))

    return latency
