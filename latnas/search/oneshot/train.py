"""Training a one-shot supernet by uniform path sampling, and evaluating one path.

Training (SPOS, Guo et al. 2020; HourNAS and NSE train their supernets the
same way): each step draws one path uniformly from a choice *mask*
(``(n_layers, n_choices)`` booleans) and takes one SGD step on it, so every
choice's shared weights are trained as part of random paths. With
``multi_branch = k > 1`` each layer activates a uniformly drawn number
``1..k`` of distinct choices (NSE's multi-branch setting).

Evaluation: the BN statistics of the shared weights mix every path, so
before a path is evaluated they are re-estimated on a few training batches
through that path (BN recalibration), then the path's top-1 accuracy on the
validation split is its score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latnas.search.base import SearchData
from latnas.search.oneshot.net import Path
from latnas.search.training import accuracy, recalibrate_bn


@dataclass(frozen=True)
class TrainConfig:
    """How the shared weights are trained and a path is evaluated."""

    epochs: int = 100  # passes over the training split (per fit); NB201 tau: -0.21 at 30, +0.26 at 100
    batch_size: int = 64
    max_batches: int | None = None  # per epoch (None: the whole split); tests use a few
    lr: float = 0.1  # SGD, cosine decay over the fit
    momentum: float = 0.9
    weight_decay: float = 4e-5
    bn_batches: int = 4  # BN recalibration batches before evaluating a path
    bn_batch_size: int = 128


def sample_path(mask: np.ndarray, rng: np.random.Generator, multi_branch: int = 1) -> list[tuple[int, ...]]:
    """One path drawn uniformly from ``mask``: per layer 1 choice, or 1..``multi_branch`` distinct ones."""
    out = []
    for row in np.asarray(mask, dtype=bool):
        allowed = np.flatnonzero(row)
        k = 1 if multi_branch <= 1 else int(rng.integers(1, min(multi_branch, len(allowed)) + 1))
        out.append(tuple(sorted(int(c) for c in rng.choice(allowed, size=k, replace=False))))
    return out


def train_paths(net: nn.Module, data: SearchData, mask: np.ndarray, config: TrainConfig, seed: int,
                multi_branch: int = 1, epochs: int | None = None) -> int:
    """Train ``net`` on uniformly sampled paths of ``mask``; returns the number of SGD steps taken."""
    epochs = config.epochs if epochs is None else int(epochs)
    n = len(data.x_train)
    per_epoch = math.ceil(n / config.batch_size)
    if config.max_batches is not None:
        per_epoch = min(per_epoch, int(config.max_batches))
    total = max(0, epochs * per_epoch)
    if total == 0:
        return 0
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    net.train()
    steps = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = perm[b * config.batch_size:(b + 1) * config.batch_size]
            if len(idx) < 2:
                continue
            path = sample_path(mask, rng, multi_branch)
            loss = F.cross_entropy(net(data.x_train[idx], path), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            steps += 1
    return steps


def evaluate_path(net: nn.Module, data: SearchData, path: Path, config: TrainConfig, seed: int = 0) -> float:
    """Validation accuracy of ``path`` after BN recalibration on a few training batches through it."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        recalibrate_bn(net, lambda x: net(x, path), data.x_train, config.bn_batch_size, config.bn_batches, gen)
        net.eval()
        return accuracy(lambda x: net(x, path), data.x_val, data.y_val)
