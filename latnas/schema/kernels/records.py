"""The kernel record and its numeric features (what kernel predictors learn from)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: activations a kernel may carry fused (index = feature value)
ACTIVATIONS = ("none", "relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "gelu", "tanh", "leakyrelu")

#: op details (``Kernel.variant``), index = feature value: operand shapes, pool kind, an act kernel's activation
VARIANTS = ("", "same", "broadcast", "scalar", "max", "ave", "0231", "0312", "erf", "softmax", *ACTIVATIONS[1:])

#: numeric features of every kernel, in order
KERNEL_FEATURES = ("cin", "cout", "kernel", "stride", "groups", "h", "w", "ho", "wo", "act", "residual", "inputs",
                   "log_flops", "log_in", "log_out", "log_params", "variant")


@dataclass
class Kernel:
    """One runtime kernel: ``op`` is its type (conv, dwconv, fc, pool, gap, add, mul, act, concat, ...).

    ``h``/``w`` are the input's spatial size, ``ho``/``wo`` the output's (1 for
    vector ops); ``cin``/``cout`` channels (features for fc); ``inputs`` the
    number of tensor inputs (concat), ``residual`` 1 when an add is fused in;
    ``act`` a name from :data:`ACTIVATIONS`; ``nodes`` the ONNX node names.
    """

    op: str
    cin: int = 1
    cout: int = 1
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    h: int = 1
    w: int = 1
    ho: int = 1
    wo: int = 1
    act: str = "none"
    residual: int = 0
    inputs: int = 1
    variant: str = ""  # op detail: maxpool/avgpool, the activation of an act kernel, broadcast of a mul
    nodes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> float:
        """Multiply-accumulates (conv/fc) or element operations (everything else)."""
        if self.op in ("conv", "dwconv", "fc"):
            return float(self.ho * self.wo * self.cout * (self.cin // max(self.groups, 1)) * self.kernel ** 2)
        if self.op == "pool":
            return float(self.ho * self.wo * self.cout * self.kernel ** 2)
        return float(max(self.h * self.w * self.cin, self.ho * self.wo * self.cout) * max(self.inputs, 1))

    @property
    def params(self) -> float:
        if self.op in ("conv", "dwconv", "fc"):
            return float(self.cout * (self.cin // max(self.groups, 1)) * self.kernel ** 2 + self.cout)
        return float(2 * self.cin if self.op == "layernorm" else 0)

    def signature(self) -> str:
        """A stable key: everything but the node names."""
        d = self.to_dict()
        d.pop("nodes")
        return ":".join(f"{k}={d[k]}" for k in sorted(d))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Kernel":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def kernel_features(kernels: list[Kernel]) -> np.ndarray:
    """Rows of :data:`KERNEL_FEATURES` (float64), one per kernel."""
    rows = []
    for k in kernels:
        act = ACTIVATIONS.index(k.act) if k.act in ACTIVATIONS else len(ACTIVATIONS)
        variant = VARIANTS.index(k.variant) if k.variant in VARIANTS else len(VARIANTS)
        inp = float(k.h * k.w * k.cin * max(k.inputs, 1))
        out = float(k.ho * k.wo * k.cout)
        rows.append([k.cin, k.cout, k.kernel, k.stride, k.groups, k.h, k.w, k.ho, k.wo, act, k.residual, k.inputs,
                     np.log1p(k.flops), np.log1p(inp), np.log1p(out), np.log1p(k.params), variant])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(KERNEL_FEATURES))
