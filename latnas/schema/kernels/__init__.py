"""Kernel detection: any model (an ONNX graph) -> the kernels a runtime executes.

A *kernel* is the unit a runtime runs after its own fusions (conv+bn+relu,
depthwise conv, pooling, fc, add, concat, SE multiply, hswish ...), as in
nn-Meter. :func:`detect_kernels` turns an ONNX file or ``ModelProto`` into
:class:`Kernel` records; the fusion rules are data per backend
(:mod:`latnas.schema.kernels.rules`). Schema level: imports nothing of latnas above
``latnas.schema.errors`` (a torch module is exported to ONNX by the caller).
"""
from __future__ import annotations

from latnas.schema.kernels.graph import detect_kernels, load_onnx
from latnas.schema.kernels.records import KERNEL_FEATURES, Kernel, kernel_features
from latnas.schema.kernels.rules import FUSION_RULES, FusionRules, rules_for

__all__ = ["FUSION_RULES", "FusionRules", "KERNEL_FEATURES", "Kernel", "detect_kernels", "kernel_features",
           "load_onnx", "rules_for"]
