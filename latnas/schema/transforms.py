"""Re-parameterization transforms: small pure functions on tensors.

Each function takes conv kernels / biases / BN statistics as tensors and
returns a ``(kernel, bias)`` pair describing ONE equivalent convolution. They
compose: fuse each branch's conv with its BN, bring every kernel to the same
``k x k`` size, then add them. All of it is exact for eval-mode BN (running
statistics), which is why fusion is only valid in eval mode.

Shapes follow ``torch.nn.Conv2d``: a kernel is ``(out, in // groups, kh, kw)``
and a bias is ``(out,)``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from latnas.schema.errors import ShapeError

KernelBias = tuple[Tensor, Tensor]


def bn_affine(
    running_mean: Tensor,
    running_var: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor]:
    """An eval-mode BatchNorm as a per-channel affine map ``BN(x) = scale * x + shift``.

    ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale``;
    ``gamma``/``beta`` default to 1/0 (``affine=False``). ``shift`` is also
    what the BN outputs for a zero input (the DBB's padding value).
    """
    std = torch.sqrt(running_var + eps)
    scale = (torch.ones_like(std) if gamma is None else gamma) / std
    shift = (torch.zeros_like(std) if beta is None else beta) - running_mean * scale
    return scale, shift


def bn_kwargs(bn) -> dict:
    """A BatchNorm module's running statistics and affine parameters as keyword arguments of the transforms."""
    return dict(running_mean=bn.running_mean, running_var=bn.running_var, gamma=bn.weight, beta=bn.bias, eps=bn.eps)


def fuse_conv_bn(
    kernel: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    eps: float = 1e-5,
    conv_bias: Tensor | None = None,
) -> KernelBias:
    """Fold an eval-mode BatchNorm into the conv before it.

    ``BN(conv(x) + b) = scale * conv(x) + (shift + scale * b)`` with
    ``scale, shift`` from :func:`bn_affine`.
    """
    scale, shift = bn_affine(running_mean, running_var, gamma, beta, eps)
    bias = shift if conv_bias is None else shift + scale * conv_bias
    return kernel * scale.reshape(-1, 1, 1, 1), bias


def add_branches(*pairs: KernelBias) -> KernelBias:
    """Sum parallel branches that already share one kernel shape (convolution is linear)."""
    if not pairs:
        raise ShapeError("add_branches needs at least one (kernel, bias) pair")
    shape = pairs[0][0].shape
    for k, _ in pairs[1:]:
        if k.shape != shape:
            raise ShapeError(f"cannot add kernels of shapes {tuple(shape)} and {tuple(k.shape)}; pad them first")
    return sum(k for k, _ in pairs), sum(b for _, b in pairs)


def merge_1x1_kxk(k1: Tensor, b1: Tensor, k2: Tensor, b2: Tensor, groups: int = 1) -> KernelBias:
    """A 1x1 conv (``k1, b1``) followed by a kxk conv (``k2, b2``) as one kxk conv.

    Exact when the map between them is padded with ``b1`` (the value the 1x1
    conv gives a zero-padded input), not with zeros. Both convs use ``groups``.
    """
    if k1.shape[-2:] != (1, 1):
        raise ShapeError(f"merge_1x1_kxk: first kernel must be 1x1, got {tuple(k1.shape)}")
    mid, cin_g = k1.shape[0], k1.shape[1]
    cout = k2.shape[0]
    if k2.shape[1] * groups != mid or mid % groups or cout % groups:
        raise ShapeError(f"merge_1x1_kxk: kernels {tuple(k1.shape)} and {tuple(k2.shape)} do not chain with groups={groups}")
    mid_g, cout_g = mid // groups, cout // groups
    parts = []
    for g in range(groups):
        a = k1[g * mid_g:(g + 1) * mid_g, :, 0, 0]  # (mid_g, cin_g)
        b = k2[g * cout_g:(g + 1) * cout_g]  # (cout_g, mid_g, k, k)
        parts.append(torch.einsum("omhw,mi->oihw", b, a))
    kernel = torch.cat(parts, dim=0)
    bias = b2 + (k2.sum(dim=(2, 3)).reshape(groups, cout_g, mid_g) * b1.reshape(groups, 1, mid_g)).sum(-1).reshape(cout)
    assert kernel.shape == (cout, cin_g, *k2.shape[-2:])
    return kernel, bias


def _diag_kernel(channels: int, kernel_size: int, groups: int, value: float, full: bool, dtype, device) -> Tensor:
    if channels % groups:
        raise ShapeError(f"groups={groups} does not divide channels={channels}")
    per = channels // groups
    k = torch.zeros(channels, per, kernel_size, kernel_size, dtype=dtype, device=device)
    idx = torch.arange(channels, device=device)
    c = kernel_size // 2
    if full:
        k[idx, idx % per, :, :] = value
    else:
        k[idx, idx % per, c, c] = value
    return k


def avgpool_kernel(
    channels: int, kernel_size: int, groups: int = 1, dtype=torch.float32, device=None
) -> KernelBias:
    """Average pooling (``count_include_pad`` over an explicitly padded map) as a conv.

    Each output channel averages its own input channel: weight ``1/k^2`` on the
    channel's own slot of its group, zero elsewhere (so grouped and depthwise work).
    """
    k = _diag_kernel(channels, kernel_size, groups, 1.0 / kernel_size**2, True, dtype, device)
    return k, torch.zeros(channels, dtype=dtype, device=device)


def identity_kernel(
    channels: int, kernel_size: int = 1, groups: int = 1, dtype=torch.float32, device=None
) -> KernelBias:
    """The identity map as a (grouped) ``k x k`` conv: 1 at the centre of each channel's own slot."""
    if kernel_size % 2 == 0:
        raise ShapeError(f"identity_kernel needs an odd kernel, got {kernel_size}")
    k = _diag_kernel(channels, kernel_size, groups, 1.0, False, dtype, device)
    return k, torch.zeros(channels, dtype=dtype, device=device)


def pad_kernel(kernel: Tensor, bias: Tensor | None, kernel_size: int) -> KernelBias:
    """Zero-pad a smaller centred kernel (1x1, 1xk, kx1, ...) to ``kernel_size x kernel_size``.

    Exact when the small conv's padding is the big one's minus the size difference / 2
    (same-padding for both), which is how the branches are built.
    """
    kh, kw = kernel.shape[-2:]
    dh, dw = kernel_size - kh, kernel_size - kw
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ShapeError(f"cannot centre a {kh}x{kw} kernel in {kernel_size}x{kernel_size}")
    padded = torch.nn.functional.pad(kernel, [dw // 2, dw // 2, dh // 2, dh // 2])
    if bias is None:
        bias = torch.zeros(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
    return padded, bias


__all__ = [
    "KernelBias",
    "add_branches",
    "avgpool_kernel",
    "bn_affine",
    "bn_kwargs",
    "fuse_conv_bn",
    "identity_kernel",
    "merge_1x1_kxk",
    "pad_kernel",
]
