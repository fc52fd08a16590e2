"""reparameterize_model: both block conventions (fuse in place / return the fused module)."""
from __future__ import annotations

import torch
from torch import nn

from latnas.schema.blocks import DiverseBranchBlock
from latnas.reparam import reparameterize_model

torch.set_num_threads(1)


def randomise_bn(module: nn.Module, seed: int) -> None:
    """Random running stats and affine parameters on every BN, so fusion is not a no-op."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.05)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))


class TimmConvBn(nn.Module):
    """timm/LeViT-style block: ``fuse()`` returns a new fused ``nn.Conv2d`` and leaves ``self`` alone."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        c, bn = self.c, self.bn
        w = bn.weight / (bn.running_var + bn.eps) ** 0.5
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=True)
        fused.weight.copy_(c.weight * w[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * w)
        return fused


class Residual(nn.Module):
    """A parent holding a timm-style block as a plain attribute (not in a Sequential)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = TimmConvBn(channels, channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.body(x))


def _model() -> nn.Module:
    model = nn.Sequential(
        TimmConvBn(3, 8, stride=2),
        nn.ReLU(),
        Residual(8),
        nn.ModuleList([TimmConvBn(8, 8)])[0],
        DiverseBranchBlock(8, 8, 3),  # in-place convention, mixed in
        TimmConvBn(8, 4, k=1),
    )
    randomise_bn(model, 3)
    return model.eval()


def test_returned_fused_modules_replace_the_blocks():
    model = _model()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)
        fused = reparameterize_model(model)
        out = fused(x)
    assert not any(isinstance(m, (nn.BatchNorm2d, TimmConvBn)) for m in fused.modules())
    assert isinstance(fused[0], nn.Conv2d) and isinstance(fused[2].body, nn.Conv2d)
    assert fused[4].fused
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the input is untouched


def test_inplace_returns_the_fused_tree_and_is_idempotent():
    model = _model()
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        ref = model(x)
        fused = reparameterize_model(model, inplace=True)
        again = reparameterize_model(fused, inplace=True)
        torch.testing.assert_close(again(x), ref, rtol=1e-4, atol=1e-4)
    assert fused is model and again is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_root_block_is_replaced_and_shared_blocks_stay_shared():
    root = TimmConvBn(3, 5)
    randomise_bn(root, 1)
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        ref = root.eval()(x)
        fused_root = reparameterize_model(root)
        torch.testing.assert_close(fused_root(x), ref, rtol=1e-4, atol=1e-4)
    assert type(fused_root) is nn.Conv2d

    shared = TimmConvBn(4, 4)
    randomise_bn(shared, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        ref = model(x)
        fused = reparameterize_model(model)
        torch.testing.assert_close(fused(x), ref, rtol=1e-4, atol=1e-4)
    assert fused[0] is fused[2] and isinstance(fused[0], nn.Conv2d)


def test_non_module_return_values_are_ignored():
    class ReturnsSelfAndFlag(nn.Module):
        def __init__(self):
            super().__init__()
            self.fused = False

        def reparameterize(self):
            self.fused = True
            return True  # not a module: the block stays where it is

    model = nn.Sequential(ReturnsSelfAndFlag(), nn.ReLU())
    fused = reparameterize_model(model, inplace=True)
    assert isinstance(fused[0], ReturnsSelfAndFlag) and fused[0].fused


def test_fold_conv_bn_matches_eval_forward_for_conv_options():
    from latnas.reparam.model import fold_conv_bn

    conv = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=True)
    for bn in (nn.BatchNorm2d(6), nn.BatchNorm2d(6, affine=False)):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 2.0)
        if bn.affine:
            randomise_bn(bn, 5)
        pair = nn.Sequential(conv, bn).eval()
        x = torch.randn(2, 4, 9, 9)
        with torch.no_grad():
            folded = fold_conv_bn(conv, bn)
            torch.testing.assert_close(folded(x), pair(x), rtol=1e-4, atol=1e-4)
        assert (folded.stride, folded.dilation, folded.groups) == ((2, 2), (2, 2), 2)
        assert folded.weight is not conv.weight


def test_bn_affine_is_the_eval_batchnorm():
    from latnas.reparam import bn_affine, bn_kwargs

    bn = nn.BatchNorm2d(5)
    randomise_bn(bn, 9)
    x = torch.randn(3, 5, 4, 4)
    scale, shift = bn_affine(**bn_kwargs(bn))
    with torch.no_grad():
        torch.testing.assert_close(bn.eval()(x), x * scale[:, None, None] + shift[:, None, None])
