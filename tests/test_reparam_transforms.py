"""Each re-parameterization transform alone against a torch reference, with random BN statistics."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latnas.schema.errors import ShapeError
from latnas.reparam import (
    add_branches,
    avgpool_kernel,
    fuse_conv_bn,
    identity_kernel,
    merge_1x1_kxk,
    pad_kernel,
)

torch.set_num_threads(1)


def random_bn(channels: int, gen: torch.Generator) -> nn.BatchNorm2d:
    """An eval-mode BN with randomised running stats and affine parameters (never fresh)."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) * 2 + 0.1)
        bn.weight.copy_(torch.randn(channels, generator=gen))
        bn.bias.copy_(torch.randn(channels, generator=gen))
    return bn.eval()


def bn_args(bn: nn.BatchNorm2d) -> dict:
    return dict(running_mean=bn.running_mean, running_var=bn.running_var, gamma=bn.weight, beta=bn.bias, eps=bn.eps)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    a, b = a.detach(), b.detach()
    scale = max(1.0, float(b.abs().max()))
    assert float((a - b).abs().max()) <= tol * scale, float((a - b).abs().max())


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.mark.parametrize("groups", [1, 2, 8])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fuse_conv_bn_matches_conv_then_bn(gen, groups, with_bias):
    conv = nn.Conv2d(8, 16 if groups != 8 else 8, 3, 2, 1, groups=groups, bias=with_bias)
    bn = random_bn(conv.out_channels, gen)
    x = torch.randn(2, 8, 9, 7, generator=gen)
    k, b = fuse_conv_bn(conv.weight, **bn_args(bn), conv_bias=conv.bias)
    close(F.conv2d(x, k, b, 2, 1, groups=groups), bn(conv(x)))


def test_fuse_conv_bn_without_affine(gen):
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(6, affine=False).eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 4, 5, 5, generator=gen)
    k, b = fuse_conv_bn(conv.weight, bn.running_mean, bn.running_var, eps=bn.eps)
    close(F.conv2d(x, k, b, padding=1), bn(conv(x)))


@pytest.mark.parametrize("groups,cin,mid,cout,k,stride", [(1, 4, 6, 5, 3, 1), (2, 4, 6, 8, 5, 2), (4, 4, 4, 4, 3, 2), (1, 3, 3, 3, 7, 1)])
def test_merge_1x1_kxk_with_bias_padding(gen, groups, cin, mid, cout, k, stride):
    """1x1 conv (+bias), padded with its bias, then an unpadded kxk conv == one padded kxk conv."""
    k1 = torch.randn(mid, cin // groups, 1, 1, generator=gen)
    b1 = torch.randn(mid, generator=gen)
    k2 = torch.randn(cout, mid // groups, k, k, generator=gen)
    b2 = torch.randn(cout, generator=gen)
    x = torch.randn(2, cin, 8, 11, generator=gen)
    p = k // 2
    y1 = F.conv2d(x, k1, b1, groups=groups)
    v = b1.reshape(1, -1, 1, 1)
    y1 = F.pad(y1 - v, [p] * 4) + v  # pad with the bias value
    ref = F.conv2d(y1, k2, b2, stride, groups=groups)
    km, bm = merge_1x1_kxk(k1, b1, k2, b2, groups=groups)
    close(F.conv2d(x, km, bm, stride, p, groups=groups), ref)


def test_merge_refuses_non_chaining_kernels():
    with pytest.raises(ShapeError):
        merge_1x1_kxk(torch.randn(4, 2, 1, 1), torch.zeros(4), torch.randn(3, 3, 3, 3), torch.zeros(3))
    with pytest.raises(ShapeError):
        merge_1x1_kxk(torch.randn(4, 2, 3, 3), torch.zeros(4), torch.randn(3, 4, 3, 3), torch.zeros(3))


@pytest.mark.parametrize("channels,groups,k,stride", [(6, 1, 3, 1), (6, 2, 5, 2), (6, 6, 3, 2), (4, 4, 7, 1)])
def test_avgpool_kernel_equals_avgpool(gen, channels, groups, k, stride):
    x = torch.randn(2, channels, 9, 10, generator=gen)
    p = k // 2
    ref = F.avg_pool2d(x, k, stride, p, count_include_pad=True)
    kern, bias = avgpool_kernel(channels, k, groups)
    close(F.conv2d(x, kern, bias, stride, p, groups=groups), ref)


@pytest.mark.parametrize("channels,groups,k", [(6, 1, 3), (6, 3, 5), (5, 5, 3), (4, 1, 1)])
def test_identity_kernel_is_identity(gen, channels, groups, k):
    x = torch.randn(2, channels, 7, 6, generator=gen)
    kern, bias = identity_kernel(channels, k, groups)
    close(F.conv2d(x, kern, bias, 1, k // 2, groups=groups), x)


def test_identity_kernel_rejects_even_kernel():
    with pytest.raises(ShapeError):
        identity_kernel(4, 2)


@pytest.mark.parametrize("shape,pad,k", [((1, 1), (0, 0), 3), ((1, 5), (0, 2), 5), ((7, 1), (3, 0), 7), ((3, 3), (1, 1), 7)])
@pytest.mark.parametrize("stride", [1, 2])
def test_pad_kernel_preserves_conv(gen, shape, pad, k, stride):
    small = torch.randn(5, 3, *shape, generator=gen)
    bias = torch.randn(5, generator=gen)
    x = torch.randn(1, 3, 9, 8, generator=gen)
    ref = F.conv2d(x, small, bias, stride, pad)
    big, b = pad_kernel(small, bias, k)
    assert big.shape[-2:] == (k, k)
    close(F.conv2d(x, big, b, stride, k // 2), ref)


def test_pad_kernel_rejects_uncentred_sizes():
    with pytest.raises(ShapeError):
        pad_kernel(torch.randn(2, 2, 2, 2), None, 3)
    with pytest.raises(ShapeError):
        pad_kernel(torch.randn(2, 2, 5, 5), None, 3)


def test_add_branches_sums_and_checks_shapes(gen):
    x = torch.randn(1, 4, 6, 6, generator=gen)
    pairs = [(torch.randn(3, 4, 3, 3, generator=gen), torch.randn(3, generator=gen)) for _ in range(3)]
    ref = sum(F.conv2d(x, k, b, padding=1) for k, b in pairs)
    k, b = add_branches(*pairs)
    close(F.conv2d(x, k, b, padding=1), ref)
    with pytest.raises(ShapeError):
        add_branches(pairs[0], (torch.randn(3, 4, 1, 1), torch.zeros(3)))
    with pytest.raises(ShapeError):
        add_branches()


def test_composed_branch_sum_conv_bn_plus_1x1_plus_identity(gen):
    """conv3x3+BN + conv1x1+BN + BN(x) composed from the transforms equals the eval-mode sum."""
    c = 6
    conv3, conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.Conv2d(c, c, 1, bias=False)
    bn3, bn1, bnid = random_bn(c, gen), random_bn(c, gen), random_bn(c, gen)
    x = torch.randn(2, c, 7, 9, generator=gen)
    ref = bn3(conv3(x)) + bn1(conv1(x)) + bnid(x)
    k, b = add_branches(
        fuse_conv_bn(conv3.weight, **bn_args(bn3)),
        pad_kernel(*fuse_conv_bn(conv1.weight, **bn_args(bn1)), 3),
        fuse_conv_bn(identity_kernel(c, 3)[0], **bn_args(bnid)),
    )
    close(F.conv2d(x, k, b, 1, 1), ref)
