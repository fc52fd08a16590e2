"""Latency predictors: learn latency from measured archs or profiled blocks.

Imports only the latnas schema, never ``profilers``; data arrive as plain
records (:mod:`predictors.data`). Submodules are imported on demand to keep
``import predictors`` light:

* :mod:`predictors.base` the hooks every predictor implements (save, restore, compile)
* :mod:`predictors.validate` structural checks of loaded trees (before any use)
* :mod:`predictors.features` block and arch features
* :mod:`predictors.models` arch-level estimators (XGBoost, one-hot ridge, FLOPs/params lines)
* :mod:`predictors.block_models` block-level estimators and the block-sum predictor
* :mod:`predictors.transfer` few-shot transfer from other devices
* :mod:`predictors.compile` compilation into a :class:`latnas.schema.latency_table.LatencyTable`
* :mod:`predictors.persistence` JSON save/load (no pickle), verified loading, ``load_latency_table``
* :mod:`predictors.metrics`, :mod:`predictors.plots` evaluation
* :mod:`predictors.registry` the one table of predictor names
"""
