"""Registries of predictor names (users can register their own estimators)."""
from __future__ import annotations

from latnas.registry import Registry
from predictors.block_models import BlockSumPredictor, LookupTableSum, PerOpRandomForest
from predictors.models import FlopsLinear, OneHotRidge, ParamsLinear, XGBLatencyPredictor
from predictors.transfer import TransferPredictor

#: arch-level predictors: fit(archs, ms)
PREDICTORS: Registry[type] = Registry("predictor")
PREDICTORS.register("xgb", XGBLatencyPredictor)
PREDICTORS.register("ridge", OneHotRidge)
PREDICTORS.register("flops", FlopsLinear)
PREDICTORS.register("params", ParamsLinear)
PREDICTORS.register("transfer", TransferPredictor)  # needs fitted source_models
PREDICTORS.register("blocksum", BlockSumPredictor)  # needs a fitted block_model

#: block-level predictors: fit(block_features, block_ms)
BLOCK_PREDICTORS: Registry[type] = Registry("block predictor")
BLOCK_PREDICTORS.register("rf", PerOpRandomForest)
BLOCK_PREDICTORS.register("lut", LookupTableSum)

__all__ = ["PREDICTORS", "BLOCK_PREDICTORS", "BlockSumPredictor"]
