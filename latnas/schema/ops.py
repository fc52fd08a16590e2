"""Built-in torch ops: how each block type validates, builds and shapes itself.

The registry itself (:class:`OpDef`, :data:`OPS`, :func:`register_op`,
:func:`get_op`) lives in the torch-free :mod:`latnas.schema.opdef` and is re-exported
here; importing this module registers the built-in ops (``get_op`` does so on
first use).

Built-in ops:

- ``conv``: kxk conv (groups) + BN + ReLU. The stem, and the head's 1x1 conv.
- ``mbconv``: the FBNet block: 1x1 conv (cin -> cin*e, groups g) + BN + ReLU,
  kxk depthwise conv (stride) + BN + ReLU, channel shuffle when g > 1,
  1x1 conv (-> cout, groups g) + BN, residual add when stride 1 and cin == cout.
- ``skip``: identity when shapes match, else 1x1 conv (stride) + BN + ReLU.
- ``classifier``: global average pool + linear (cin -> cout classes).
"""
from __future__ import annotations

import torch
from torch import nn

from latnas.schema.errors import ShapeError
from latnas.schema.opdef import OPS, OpDef, get_op, register_op
from latnas.schema.spec import BlockSpec, check_divides

__all__ = ["OPS", "OpDef", "get_op", "register_op", "conv_bn", "ChannelShuffle", "MBConv", "build_model"]


def conv_bn(
    cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    """Conv (same padding per side, no bias) + BN, optionally + ReLU; ``kernel`` may be ``(kh, kw)``."""
    padding = tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle (reshape-transpose-reshape, exportable everywhere)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.groups
        return x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)


class MBConv(nn.Module):
    """FBNet inverted-residual block (see module docstring)."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        mid = spec.cin * spec.expansion
        g = spec.groups
        self.expand = conv_bn(spec.cin, mid, 1, groups=g)
        self.depthwise = conv_bn(mid, mid, spec.kernel, spec.stride, groups=mid)
        self.shuffle = ChannelShuffle(g) if g > 1 else nn.Identity()
        self.project = conv_bn(mid, spec.cout, 1, groups=g, relu=False)
        self.residual = spec.stride == 1 and spec.cin == spec.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.shuffle(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


def _check_kernel(spec: BlockSpec) -> None:
    if spec.kernel % 2 == 0:
        raise ShapeError(f"{spec.key}: kernel must be odd for same padding, got {spec.kernel}")


@register_op("conv")
class ConvOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        _check_kernel(spec)
        check_divides(spec, "in channels", spec.cin, spec.groups)
        check_divides(spec, "out channels", spec.cout, spec.groups)

    def build(self, spec: BlockSpec) -> nn.Module:
        return conv_bn(spec.cin, spec.cout, spec.kernel, spec.stride, spec.groups)


@register_op("mbconv")
class MBConvOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        _check_kernel(spec)
        mid = spec.cin * spec.expansion
        check_divides(spec, "in channels", spec.cin, spec.groups)
        check_divides(spec, "expanded channels", mid, spec.groups)
        check_divides(spec, "out channels", spec.cout, spec.groups)

    def build(self, spec: BlockSpec) -> nn.Module:
        return MBConv(spec)


@register_op("skip")
class SkipOp(OpDef):
    def build(self, spec: BlockSpec) -> nn.Module:
        if spec.stride == 1 and spec.cin == spec.cout:
            return nn.Identity()
        return conv_bn(spec.cin, spec.cout, 1, spec.stride)


@register_op("classifier")
class ClassifierOp(OpDef):
    def build(self, spec: BlockSpec) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec.cin, spec.cout))

    def output_shape(self, spec: BlockSpec) -> tuple[int, ...]:
        return (spec.batch, spec.cout)


def build_model(specs: list[BlockSpec] | tuple[BlockSpec, ...]) -> nn.Sequential:
    """Chain blocks into one model, checking that consecutive shapes connect."""
    modules = []
    prev: tuple[int, ...] | None = None
    for spec in specs:
        if prev is not None and tuple(prev) != spec.input_shape:
            raise ShapeError(f"{spec.key}: expects input {spec.input_shape}, previous block gives {tuple(prev)}")
        modules.append(spec.build())
        prev = spec.output_shape
    return nn.Sequential(*modules)
