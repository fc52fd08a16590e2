"""Training helpers shared by the supernet searches (``dnas``, ``repnas``).

The dataset an algorithm trains on (:func:`training_data`, never stored back
into the problem), downsampling for CPU speed (:func:`at_resolution`),
seeded mini-batches, BN recalibration, accuracy, and a context manager for
torch's thread count.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from latnas.search.base import SearchData


def training_data(problem: Any, seed: int) -> SearchData:
    """The problem's dataset, or the default one (digits) for its space; the problem is not changed."""
    if problem.data is not None:
        return problem.data
    from latnas.search.data import load_data

    return load_data(space=problem.space, seed=seed)


def at_resolution(data: SearchData, resolution: int | None) -> SearchData:
    """Downsample (never upsample) the images so a supernet trains fast on a CPU."""
    if not resolution or min(data.x_train.shape[-2:]) <= int(resolution):
        return data
    size = (int(resolution), int(resolution))

    def rs(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    return SearchData(rs(data.x_train), data.y_train, rs(data.x_val), data.y_val, data.num_classes,
                      f"{data.name}->{resolution}px")


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, gen: torch.Generator,
            limit: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded shuffled mini-batches, at most ``limit`` of them (None: all)."""
    perm = torch.randperm(len(x), generator=gen)
    n = math.ceil(len(x) / batch_size)
    if limit is not None:
        n = min(n, int(limit))
    for i in range(n):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        yield x[idx], y[idx]


def endless_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, gen: torch.Generator
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded shuffled mini-batches forever: a new shuffle each time the data runs out (the arch steps
    of a differentiable search draw validation batches until the epoch's training batches end)."""
    while True:
        yield from batches(x, y, batch_size, gen, None)


def weight_step(out: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, sched, params,
                clip: float = 5.0) -> tuple[float, int]:
    """One supernet weight update on the cross-entropy of ``out``; returns (summed loss, correct)
    for the epoch's running train loss / accuracy."""
    loss = F.cross_entropy(out, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    return float(loss.detach()) * len(y), int((out.argmax(1) == y).sum())


@torch.no_grad()
def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``fn`` (a model or closure) on ``(x, y)``."""
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((fn(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(x))


@torch.no_grad()
def recalibrate_bn(net: torch.nn.Module, forward: Callable[[torch.Tensor], Any], x: torch.Tensor, batch_size: int,
                   n_batches: int, gen: torch.Generator) -> None:
    """Re-estimate BN statistics of ``net`` through ``forward`` (one fixed path; its stats differ from mixed ones)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    net.train()
    perm = torch.randperm(len(x), generator=gen)
    for i in range(max(1, n_batches)):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        if len(idx) == 0:
            break
        forward(x[idx])
    for bn in bns:
        bn.momentum = 0.1


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch intra-op threads (0: unchanged), restoring the old count."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
