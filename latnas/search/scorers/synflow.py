"""Scorer ``synflow``: Synaptic Flow at initialisation (Tanaka et al., NeurIPS 2020).

As the zero-cost-proxies reference (Abdelfattah et al., ICLR 2021) scores NAS
benchmarks: the seeded random network with BatchNorm removed (``bn=False``),
every parameter replaced by its absolute value (a linearised, all-positive
network), in double precision, fed one all-ones input; the score is
``sum |theta * dR/dtheta|`` over conv and linear weights, ``R`` the summed
output. No data is needed. Option ``bn=True`` keeps BatchNorm (eval mode).
"""
from __future__ import annotations

import torch
from torch import nn

from latnas.schema.errors import DataError
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.search.scorers.common import CachedScorer, seeded_build


def strip_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer by an identity, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            strip_batchnorm(child)
    return module


def synflow(model: nn.Module, input_shape: tuple[int, ...], bn: bool = False) -> float:
    """SynFlow score of ``model`` (modified in place: abs weights, double, BN stripped)."""
    if not bn:
        strip_batchnorm(model)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
        for b in model.buffers():
            if b.is_floating_point():
                b.abs_()
    model.zero_grad(set_to_none=True)
    out = model(torch.ones((1, *input_shape), dtype=torch.float64))
    out.sum().backward()
    total = 0.0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
                total += float((m.weight * m.weight.grad).abs().sum())
    return total


@register_scorer("synflow")
def synflow_scorer(config: ScorerConfig) -> Scorer:
    unknown = set(config.options) - {"bn"}
    if unknown:
        raise DataError(f"scorer synflow: unknown options {', '.join(sorted(unknown))} (known: bn)")
    space, seed, bn = config.space, config.seed, bool(config.options.get("bn", False))
    return CachedScorer(space, lambda arch: synflow(seeded_build(space, arch, seed), space.input_shape, bn), "synflow")
