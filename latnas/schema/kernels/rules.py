"""Fusion rules as data, per backend: which op sequences a runtime runs as one kernel.

A conv-like op (Conv, ConvTranspose-free graphs) absorbs a following
``BatchNormalization``, then one activation of ``activations`` and, with
``fuse_add``, a residual ``Add`` (and an activation after it). Ops in ``free``
cost (next to) nothing at run time (views, shape arithmetic) and form no kernel.
Detected fusions (timing a pair against its parts, ``profilers.kernels``) can
be written back here for a new backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from latnas.schema.errors import UnknownNameError


@dataclass(frozen=True)
class FusionRules:
    """What one backend fuses into a conv / fc kernel, and which ops are free."""

    activations: dict[str, str] = field(default_factory=dict)  # ONNX op -> activation name fused into conv/fc
    fuse_bn: bool = True
    fuse_add: bool = True
    fuse_act_after_add: bool = True
    free: frozenset[str] = frozenset()


_ACTS = {"Relu": "relu", "Clip": "relu6", "HardSwish": "hswish", "HardSigmoid": "hsigmoid", "Sigmoid": "sigmoid",
         "Tanh": "tanh", "LeakyRelu": "leakyrelu", "Gelu": "gelu"}
_FREE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant", "Shape",
                   "Gather", "Cast", "ConstantOfShape", "Range", "Expand"})

FUSION_RULES: dict[str, FusionRules] = {
    # ORT CPU: BN folded into Conv at load; Conv+activation (FusedConv) and Conv+Add(+Relu) in NCHWc layout
    "onnxruntime": FusionRules(activations=dict(_ACTS), free=_FREE),
    # ExecuTorch XNNPACK: conv+bn folded, clamp-like activations fused; add is its own kernel
    "executorch": FusionRules(activations={"Relu": "relu", "Clip": "relu6"}, fuse_add=False, free=_FREE),
}


def rules_for(backend: str) -> FusionRules:
    """The fusion rules of ``backend``; one-line error for a backend without rules."""
    base = backend.split("-")[0] if backend not in FUSION_RULES else backend
    if base not in FUSION_RULES:
        raise UnknownNameError(f"no kernel fusion rules for backend {backend!r} (known: {', '.join(FUSION_RULES)})")
    return FUSION_RULES[base]
