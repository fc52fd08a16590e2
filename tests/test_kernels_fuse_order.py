"""reparameterize_model walks top-down like timm: a parent whose fuse() calls its child's is fused whole."""
from __future__ import annotations

import torch
from torch import nn

from latnas.reparam import reparameterize_model

torch.set_num_threads(1)


class ConvBN(nn.Sequential):
    """RepViT's ``Conv2d_BN``: ``fuse()`` returns a new fused conv."""

    def __init__(self, cin: int, cout: int, k: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))
        with torch.no_grad():
            self[1].running_mean.uniform_(-1, 1)
            self[1].running_var.uniform_(0.5, 2)
            self[1].weight.uniform_(0.5, 2)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        c, bn = self[0], self[1]
        w = bn.weight / (bn.running_var + bn.eps) ** 0.5
        out = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups)
        out.weight.copy_(c.weight * w[:, None, None, None])
        out.bias.copy_(bn.bias - bn.running_mean * w)
        return out


class RepDW(nn.Module):
    """RepViT's ``RepVGGDW``: its ``fuse()`` calls its children's ``fuse()``."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = ConvBN(ch, ch, 3, groups=ch)
        self.conv1 = ConvBN(ch, ch, 1, groups=ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        a, b = self.conv.fuse(), self.conv1.fuse()  # fails if the children were fused first
        w = a.weight + nn.functional.pad(b.weight, [1, 1, 1, 1])
        ident = nn.functional.pad(torch.ones(w.shape[0], 1, 1, 1), [1, 1, 1, 1])
        a.weight.copy_(w + ident)
        a.bias.copy_(a.bias + b.bias)
        return a


class Residual(nn.Module):
    """RepViT's ``Residual``: fuses its ``m`` child through ``m.fuse()``."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        if isinstance(self.m, ConvBN):
            m = self.m.fuse()
            m.weight.add_(nn.functional.pad(torch.ones(m.weight.shape[0], 1, 1, 1), [1, 1, 1, 1]))
            return m
        return self


def test_parent_calling_child_fuse_is_fused_top_down():
    torch.manual_seed(0)
    model = nn.Sequential(ConvBN(3, 8, 3), nn.ReLU(), RepDW(8), Residual(ConvBN(8, 8, 3, groups=8)),
                          nn.Sequential(RepDW(8))).eval()
    x = torch.randn(2, 3, 12, 12)
    ref = model(x)
    fused = reparameterize_model(model)
    assert not any(isinstance(m, (ConvBN, RepDW, Residual, nn.BatchNorm2d)) for m in fused.modules())
    assert torch.allclose(fused(x), ref, atol=1e-5)
    again = reparameterize_model(fused)  # idempotent
    assert torch.allclose(again(x), ref, atol=1e-5)
