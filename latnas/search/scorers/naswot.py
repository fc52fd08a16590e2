"""Scorer ``naswot``: neural architecture search without training (Mellor et al., ICML 2021).

One minibatch of ``config.data`` (default digits data) goes through the seeded
random network (train mode: BatchNorm uses batch statistics, as the paper's
code). At the input of every ReLU each sample gets a binary code (unit
active or not); the score is the log-determinant of the Hamming-similarity
kernel ``K = C C^T + (1 - C)(1 - C)^T`` summed over all ReLUs. Archs whose
samples all share codes (a singular ``K``, e.g. an NB201 cell cut off from its
input) get :data:`SINGULAR_SCORE`, below every real score.

Options: ``batch_size`` (default 64).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from latnas.schema.errors import DataError
from latnas.search.scorers.base import Scorer, ScorerConfig, register_scorer
from latnas.search.scorers.common import CachedScorer, data_or_default, seeded_build

SINGULAR_SCORE = -1e9  # finite so that search objectives stay finite


def hamming_kernel_logdet(model: nn.Module, x: torch.Tensor) -> float:
    """log det of the summed ReLU-code kernel of ``model`` on batch ``x``."""
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64)

    def hook(_module, inputs):
        codes = (inputs[0].detach().reshape(n, -1) > 0).to(torch.float32)
        f = codes.shape[1]
        active = codes.sum(dim=1, dtype=torch.float64)
        # C C^T + (1-C)(1-C)^T = 2 C C^T - a_i - a_j + F (exact integers in float64)
        kernel.add_(2.0 * (codes @ codes.T).double() - active[:, None] - active[None, :] + f)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = np.linalg.slogdet(kernel.numpy())
    return float(logdet) if sign > 0 and np.isfinite(logdet) else SINGULAR_SCORE


@register_scorer("naswot")
def naswot_scorer(config: ScorerConfig) -> Scorer:
    unknown = set(config.options) - {"batch_size"}
    if unknown:
        raise DataError(f"scorer naswot: unknown options {', '.join(sorted(unknown))} (known: batch_size)")
    batch_size = int(config.options.get("batch_size", 64))
    data = data_or_default(config)
    if batch_size < 2 or len(data.x_train) < 2:
        raise DataError(f"scorer naswot needs a batch of at least 2 images (batch_size={batch_size}, {len(data.x_train)} images)")
    idx = np.random.default_rng(config.seed).permutation(len(data.x_train))[:batch_size]
    x = data.x_train[torch.as_tensor(np.sort(idx))]
    space, seed = config.space, config.seed
    return CachedScorer(space, lambda arch: hamming_kernel_logdet(seeded_build(space, arch, seed), x), "naswot")
