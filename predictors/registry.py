"""The one table of predictor names (users register their own estimators here).

A registered class is a scikit-learn estimator mixing in
:class:`predictors.base.SavedState`; with one ``PREDICTORS.register(name, cls)``
call it can be trained (``latnas train --model name``), saved, loaded and
compiled, because persistence and compilation only call its hooks.
"""
from __future__ import annotations

from latnas.schema.errors import PredictorFileError
from latnas.schema.registry import Registry
from predictors.block_models import BlockSumPredictor, LookupTableSum, PerOpRandomForest
from predictors.kernel_model import KernelPredictor
from predictors.liveness import LiveDeadRidge
from predictors.models import FlopsLinear, OneHotRidge, ParamsLinear, XGBLatencyPredictor
from predictors.transfer import TransferPredictor

#: arch-level predictors: fit(archs, ms)
PREDICTORS: Registry[type] = Registry("predictor")
PREDICTORS.register("xgb", XGBLatencyPredictor)
PREDICTORS.register("ridge", OneHotRidge)
PREDICTORS.register("flops", FlopsLinear)
PREDICTORS.register("params", ParamsLinear)
PREDICTORS.register("transfer", TransferPredictor)  # needs fitted source_models
PREDICTORS.register("ridge_live", LiveDeadRidge)  # live / dead op costs (the transfer sources)
PREDICTORS.register("blocksum", BlockSumPredictor)  # needs a fitted block_model

#: block-level predictors: fit(block_features, block_ms)
BLOCK_PREDICTORS: Registry[type] = Registry("block predictor")
BLOCK_PREDICTORS.register("rf", PerOpRandomForest)
BLOCK_PREDICTORS.register("lut", LookupTableSum)

#: kernel-level predictors: fit(kernels, kernel_ms), any ONNX model (`latnas train --kernels`)
KERNEL_PREDICTORS: Registry[type] = Registry("kernel predictor")
KERNEL_PREDICTORS.register("kernels", KernelPredictor)


def registered_name(model) -> tuple[str, str]:
    """``(level, name)`` under which ``type(model)`` is registered ("arch" or "block")."""
    for level, reg in (("arch", PREDICTORS), ("block", BLOCK_PREDICTORS), ("kernel", KERNEL_PREDICTORS)):
        for name in reg.names():
            if reg.get(name) is type(model):
                return level, name
    raise PredictorFileError(f"cannot save a {type(model).__name__}: register it in predictors.registry first")


def predictor_class(level: str, name: object) -> type:
    """The class registered as ``name`` at ``level``; one-line error for unknown names."""
    reg = {"arch": PREDICTORS, "block": BLOCK_PREDICTORS, "kernel": KERNEL_PREDICTORS}.get(str(level))
    if reg is None or not isinstance(name, str) or name not in reg:
        raise PredictorFileError(f"unknown {level} predictor type {str(name)[:60]!r}")
    return reg.get(name)


__all__ = ["PREDICTORS", "BLOCK_PREDICTORS", "KERNEL_PREDICTORS", "BlockSumPredictor", "registered_name", "predictor_class"]
