"""Diverse Branch Block: parallel conv branches that fuse into one conv.

Training-time form: several branches read the same input, each ends in a
BatchNorm, and their outputs are summed (then an optional ReLU). Every
branch is linear in eval mode, so :meth:`DiverseBranchBlock.reparameterize`
folds the whole sum into ONE ``k x k`` convolution with bias (the deploy form).

Branch names (``branches`` is an iterable of these or a ``"+"``-joined string):

- ``kxk``: k x k conv -> BN.
- ``1x1``: 1x1 conv -> BN.
- ``1xk`` / ``kx1``: asymmetric convs (padded on their long side) -> BN.
- ``1x1_kxk``: 1x1 conv -> BN -> pad with the BN's zero-input value ->
  k x k conv (no padding) -> BN. Padding with that value (not zero) makes the
  merged conv exact at the borders.
- ``1x1_avg``: 1x1 conv -> BN -> pad with the BN's zero-input value ->
  k x k average pool (no padding, so every window averages k*k values) -> BN.
- ``id``: BN of the input (only when in == out channels and stride 1).

All branches use the block's stride and groups (depthwise included:
``groups == in == out``). Configurations that cannot be fused exactly are
refused at construction with a one-line :class:`~latnas.schema.errors.ShapeError`.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latnas.schema.branches import fitting_branches, format_branches, parse_branches
from latnas.schema.errors import ShapeError
from latnas.schema.ops import conv_bn
from latnas.schema.transforms import (
    KernelBias,
    add_branches,
    avgpool_kernel,
    bn_affine,
    bn_kwargs,
    fuse_conv_bn,
    identity_kernel,
    merge_1x1_kxk,
    pad_kernel,
)


def check_dbb_config(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    branches: str | Iterable[str] | None = None,
    padding: int | None = None,
) -> tuple[str, ...]:
    """Validate a DBB configuration; return its branches or raise a one-line ShapeError."""
    where = f"DBB {in_channels}->{out_channels} k{kernel_size} s{stride} g{groups}"
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("kernel_size", kernel_size),
                    ("stride", stride), ("groups", groups)):
        if int(v) < 1:
            raise ShapeError(f"{where}: {name} must be >= 1, got {v}")
    if kernel_size % 2 == 0:
        raise ShapeError(f"{where}: kernel must be odd so every branch shares one centre, got {kernel_size}")
    if padding is not None and padding != kernel_size // 2:
        raise ShapeError(f"{where}: padding must be kernel//2={kernel_size // 2} for exact fusion, got {padding}")
    if in_channels % groups or out_channels % groups:
        raise ShapeError(f"{where}: groups={groups} must divide in and out channels")
    names = parse_branches(branches)
    if names is None:
        return fitting_branches(in_channels, out_channels, stride)
    if "id" in names and (in_channels != out_channels or stride != 1):
        raise ShapeError(f"{where}: the id branch needs in == out channels and stride 1")
    return names


class BNAndPad(nn.Module):
    """BatchNorm, then pad by ``pad`` pixels with the BN's output for a zero input.

    That value is the BN's ``shift`` (:func:`~latnas.schema.transforms.bn_affine`), i.e.
    what conv->BN would give on zero padding, so a following unpadded conv sees
    the same map as if the conv->BN had run on a zero-padded input.
    """

    def __init__(self, channels: int, pad: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.pad = pad

    def pad_values(self) -> Tensor:
        return bn_affine(**bn_kwargs(self.bn))[1].detach()

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(x)
        if self.pad == 0:
            return y
        v = self.pad_values().reshape(1, -1, 1, 1)
        return F.pad(y - v, [self.pad] * 4) + v  # pad with v, written with exportable ops


class DiverseBranchBlock(nn.Module):
    """Multi-branch conv block that re-parameterizes into one ``k x k`` conv (+ bias).

    Args:
        in_channels, out_channels, kernel_size, stride, groups: as ``nn.Conv2d``
            (padding is always ``kernel_size // 2``).
        branches: iterable of branch names or a ``"+"``-joined string (see module
            docstring); None means every branch that fits the shape.
        padding: must be None or ``kernel_size // 2`` (other paddings do not fuse exactly).
        act: apply ReLU after the branch sum (fusion covers everything before it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        branches: str | Iterable[str] | None = None,
        padding: int | None = None,
        act: bool = True,
    ):
        super().__init__()
        names = check_dbb_config(in_channels, out_channels, kernel_size, stride, groups, branches, padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.padding = kernel_size // 2
        self.branch_names: tuple[str, ...] = names
        self.deploy = False
        k, p, s, g = kernel_size, kernel_size // 2, stride, groups
        branch = nn.ModuleDict()
        for name in names:
            if name == "kxk":
                branch[name] = conv_bn(in_channels, out_channels, (k, k), s, g, relu=False)
            elif name == "1x1":
                branch[name] = conv_bn(in_channels, out_channels, (1, 1), s, g, relu=False)
            elif name == "1xk":
                branch[name] = conv_bn(in_channels, out_channels, (1, k), s, g, relu=False)
            elif name == "kx1":
                branch[name] = conv_bn(in_channels, out_channels, (k, 1), s, g, relu=False)
            elif name == "1x1_kxk":
                branch[name] = nn.Sequential(
                    nn.Conv2d(in_channels, in_channels, 1, 1, 0, groups=g, bias=False),
                    BNAndPad(in_channels, p),
                    nn.Conv2d(in_channels, out_channels, k, s, 0, groups=g, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            elif name == "1x1_avg":
                branch[name] = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, 1, 0, groups=g, bias=False),
                    BNAndPad(out_channels, p),
                    nn.AvgPool2d(k, s, 0),
                    nn.BatchNorm2d(out_channels),
                )
            elif name == "id":
                branch[name] = nn.BatchNorm2d(in_channels)
        self.branch = branch
        self.reparam: nn.Conv2d | None = None
        self.act = nn.ReLU(inplace=False) if act else nn.Identity()

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        if self.reparam is not None:
            return self.act(self.reparam(x))
        out = None
        for module in self.branch.values():
            y = module(x)
            out = y if out is None else out + y
        return self.act(out)

    # ----------------------------------------------------------------- fusion
    def _branch_kernel(self, name: str) -> KernelBias:
        m = self.branch[name]
        k, g = self.kernel_size, self.groups
        if name == "id":
            ik, _ = identity_kernel(self.in_channels, k, g, dtype=m.weight.dtype, device=m.weight.device)
            return fuse_conv_bn(ik, **bn_kwargs(m))
        if name in ("kxk", "1x1", "1xk", "kx1"):
            kern, bias = fuse_conv_bn(m[0].weight, **bn_kwargs(m[1]))
            return pad_kernel(kern, bias, k)
        k1, b1 = fuse_conv_bn(m[0].weight, **bn_kwargs(m[1].bn))
        if name == "1x1_kxk":
            k2 = m[2].weight
        else:  # 1x1_avg
            k2, _ = avgpool_kernel(self.out_channels, k, g, dtype=k1.dtype, device=k1.device)
        merged, mb = merge_1x1_kxk(k1, b1, k2, torch.zeros_like(k2[:, 0, 0, 0]), groups=g)
        return fuse_conv_bn(merged, **bn_kwargs(m[3]), conv_bias=mb)

    @torch.no_grad()
    def fused_kernel(self) -> KernelBias:
        """The ``(kernel, bias)`` of the single conv equivalent to the eval-mode branch sum."""
        if self.reparam is not None:
            return self.reparam.weight.detach().clone(), self.reparam.bias.detach().clone()
        return add_branches(*(self._branch_kernel(n) for n in self.branch_names))

    @torch.no_grad()
    def reparameterize(self) -> "DiverseBranchBlock":
        """Replace the branches by one conv with bias (deploy form); no-op if already fused."""
        if self.reparam is not None:
            return self
        kernel, bias = self.fused_kernel()
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
            groups=self.groups, bias=True,
        ).to(device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.reparam = conv
        del self.branch
        self.branch = nn.ModuleDict()
        self.deploy = True
        return self

    @property
    def fused(self) -> bool:
        return self.reparam is not None

    def extra_repr(self) -> str:
        state = "fused" if self.fused else format_branches(self.branch_names)
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, s={self.stride}, "
                f"g={self.groups}, branches={state}")
