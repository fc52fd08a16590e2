"""NAS-Bench-201 building blocks as torch modules, registered as ops.

The ops a NAS-Bench-201 CIFAR network is made of (Dong & Yang, ICLR 2020),
each described by a :class:`~latnas.schema.spec.BlockSpec` so it can be profiled,
counted (FLOPs, params) and predicted like any other block:

- ``nb201_stem``: Conv kxk (no bias) + BN, no activation.
- ``nb201_conv``: the cell's ``nor_conv_kxk``: ReLU -> Conv kxk (no bias) -> BN
  (affine), stride 1, same padding.
- ``avgpool3``: ``avg_pool_3x3``, stride 1, padding 1, ``count_include_pad=False``.
- ``zero``: the ``none`` edge: outputs zeros of the input's shape.
- ``nb201_reduction``: the residual block between stages: ReLU-Conv3x3 s2-BN,
  ReLU-Conv3x3-BN, shortcut AvgPool2x2 + Conv1x1 (no BN), summed.
- ``nb201_lastact``: BN + ReLU before the classifier.
- ``nb201_cell``: a whole cell; ``branches`` holds its 6 edge op digits
  (``0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4 avg_pool_3x3``).

ReLUs are not in-place so activation hooks (NASWOT) see pre-activations.
"""
from __future__ import annotations

import torch
from torch import nn

from latnas.schema.errors import ShapeError
from latnas.schema.ops import OpDef, register_op
from latnas.schema.spec import BlockSpec

#: benchmark op names, in choice-index order
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the cell's edges as (to_node, from_node), in arch-string order
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def relu_conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """ReLU -> Conv (no bias, same padding) -> BN, as NAS-Bench-201's ``ReLUConvBN``."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape (``x * 0``, as the benchmark's code)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ResidualReduction(nn.Module):
    """Residual block halving the resolution between stages (see module docstring)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_a = relu_conv_bn(cin, cout, 3, stride=2)
        self.conv_b = relu_conv_bn(cout, cout, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, 0), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def edge_module(choice: int, channels: int) -> nn.Module:
    """The torch module of one cell edge for op index ``choice``."""
    if choice == 0:
        return Zero()
    if choice == 1:
        return nn.Identity()
    if choice in (2, 3):
        return relu_conv_bn(channels, channels, 1 if choice == 2 else 3)
    if choice == 4:
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    raise ShapeError(f"nb201 op index {choice} out of range 0..{len(NB201_OPS) - 1}")


def parse_cell_digits(text: str) -> tuple[int, ...]:
    """The 6 edge op indices of a cell from its digit string; ShapeError if malformed."""
    if len(text) != len(NB201_EDGES) or not text.isdigit() or any(int(ch) >= len(NB201_OPS) for ch in text):
        raise ShapeError(f"nb201 cell needs {len(NB201_EDGES)} op digits in 0..{len(NB201_OPS) - 1}, got {text!r}")
    return tuple(int(ch) for ch in text)


class NB201Cell(nn.Module):
    """A NAS-Bench-201 cell: node j sums one op over every earlier node; node 3 is the output.

    ``none`` edges are left out of the sums (they add zeros); a node with no
    incoming op outputs zeros, so a cell cut off from its input outputs zeros.
    """

    def __init__(self, ops: tuple[int, ...], channels: int):
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(edge_module(c, channels) for c in self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cell_output(x, lambda k, h: self.edges[k](h) if self.ops[k] != 0 else None)


def cell_output(x: torch.Tensor, edge_out) -> torch.Tensor:
    """Node 3 of an NB201 cell on input ``x``: node j sums ``edge_out(k, node_i)`` over its edges k = (j <- i).

    ``edge_out`` returns None for an edge that is off (``none``); a node with no
    edge on outputs zeros, so a cell cut off from its input outputs zeros.
    """
    nodes = [x]
    for j in (1, 2, 3):
        terms = [t for k, (to, i) in enumerate(NB201_EDGES) if to == j
                 for t in (edge_out(k, nodes[i]),) if t is not None]
        if not terms:
            nodes.append(x.mul(0.0))
            continue
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        nodes.append(total)
    return nodes[3]


def _same_shape(spec: BlockSpec) -> None:
    if spec.cin != spec.cout or spec.stride != 1:
        raise ShapeError(f"{spec.key}: {spec.op} keeps its shape (cin == cout, stride 1)")


@register_op("nb201_stem")
class NB201StemOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        if spec.kernel % 2 == 0:
            raise ShapeError(f"{spec.key}: kernel must be odd, got {spec.kernel}")

    def build(self, spec: BlockSpec) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(spec.cin, spec.cout, spec.kernel, spec.stride, spec.kernel // 2, bias=False),
            nn.BatchNorm2d(spec.cout),
        )


@register_op("nb201_conv")
class NB201ConvOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        if spec.kernel % 2 == 0:
            raise ShapeError(f"{spec.key}: kernel must be odd, got {spec.kernel}")

    def build(self, spec: BlockSpec) -> nn.Module:
        return relu_conv_bn(spec.cin, spec.cout, spec.kernel, spec.stride)


@register_op("avgpool3")
class AvgPool3Op(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        _same_shape(spec)

    def build(self, spec: BlockSpec) -> nn.Module:
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


@register_op("zero")
class ZeroOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        _same_shape(spec)

    def build(self, spec: BlockSpec) -> nn.Module:
        return Zero()


@register_op("nb201_reduction")
class NB201ReductionOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        if spec.stride != 2 or spec.kernel != 3:
            raise ShapeError(f"{spec.key}: nb201_reduction is a 3x3 stride-2 block")
        if spec.h % 2 or spec.w % 2:
            raise ShapeError(f"{spec.key}: nb201_reduction needs an even input size (2x2 average pool shortcut)")

    def build(self, spec: BlockSpec) -> nn.Module:
        return ResidualReduction(spec.cin, spec.cout)


@register_op("nb201_lastact")
class NB201LastActOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        _same_shape(spec)

    def build(self, spec: BlockSpec) -> nn.Module:
        return nn.Sequential(nn.BatchNorm2d(spec.cout), nn.ReLU(inplace=False))


@register_op("nb201_cell")
class NB201CellOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        _same_shape(spec)
        parse_cell_digits(spec.branches)

    def build(self, spec: BlockSpec) -> nn.Module:
        return NB201Cell(parse_cell_digits(spec.branches), spec.cout)
