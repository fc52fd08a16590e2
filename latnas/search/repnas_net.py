"""RepNAS search network: the ``repnas`` backbone with every searchable branch, and branch masks.

Masks are flat 0/1 vectors over every searchable branch of the network
(``RepNASNet.branch_index`` maps a position to ``(layer, branch)``).
:func:`topk_mask` is the global top-k with the one structural rule (a layer
without the always-on ``id`` keeps at least one branch);
:func:`selected_ste_mask` is the authors' straight-through mask on the
selected branches only; :func:`random_k_mask` the warm-up's exactly-k random
subset.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from latnas.schema.blocks.dbb import DiverseBranchBlock
from latnas.schema.errors import DataError
from latnas.schema.spaces.base import SearchSpace
from latnas.schema.spaces.repnas import ALWAYS_ON_BRANCH, SEARCHABLE_BRANCHES, branches_choice


def n_keep(total: int, fraction: float) -> int:
    """``k = round(fraction x total)``, clipped to ``[0, total]``."""
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"repnas fraction must lie in [0, 1], got {fraction}")
    return min(total, max(0, int(round(fraction * total))))


def topk_mask(values: torch.Tensor, k: int, required: Sequence[slice] = ()) -> torch.Tensor:
    """Hard 0/1 mask of the ``k`` largest entries, ties broken by index (stable sort).

    Each slice in ``required`` (a layer that has no ``id``) first gets its
    largest entry; the rest of the ``k`` go to the largest remaining entries.
    Exactly ``max(k, len(required))`` ones.
    """
    v = values.detach()
    mask = torch.zeros_like(v)
    for sl in required:
        idx = torch.arange(v.numel())[sl]
        mask[idx[int(torch.sort(v[sl], descending=True, stable=True).indices[0])]] = 1.0
    left = k - int(mask.sum())
    if left > 0:
        order = torch.sort(torch.where(mask > 0, torch.full_like(v, -math.inf), v), descending=True, stable=True).indices
        mask[order[:left]] = 1.0
    return mask


def gumbel_noise(shape: Sequence[int] | torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(tuple(shape), generator=generator).clamp_(1e-9, 1.0 - 1e-9)
    return -torch.log(-torch.log(u))


def selected_ste_mask(scores: torch.Tensor, k: int, required: Sequence[slice] = (), tau: float = 1.0,
                      noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m + m * (sigmoid(s/tau) - sigmoid(s/tau).detach())``, ``m`` the (noisy) top-k.

    Forward: exactly the hard mask ``m``. Backward: only the scores of the
    selected branches get a gradient (``m * sigmoid'``), as in the authors' code.
    """
    noisy = scores.detach() + noise * gumbel_noise(scores.shape, generator) if noise > 0 else scores.detach()
    hard = topk_mask(noisy, k, required)
    soft = torch.sigmoid(scores / tau)
    return hard + hard * (soft - soft.detach())


def random_k_mask(n: int, k: int, required: Sequence[slice] = (), generator: torch.Generator | None = None) -> torch.Tensor:
    """Warm-up mask: a uniformly random subset of exactly ``k`` branches (with the per-layer rule)."""
    return topk_mask(torch.rand(n, generator=generator), k, required)


def _ch(c: int, mult: float, divisor: int = 4) -> int:
    return max(divisor, int(math.ceil(c * mult / divisor)) * divisor)


class MaskedDBB(nn.Module):
    """A DBB whose searchable branch outputs are multiplied by mask entries (``id`` always added).

    Branches whose mask entry is exactly 0 are not run: with the
    selected-only straight-through mask they add nothing forward and get no
    gradient, so skipping them is exact.
    """

    def __init__(self, block: DiverseBranchBlock, searchable: Sequence[str]):
        super().__init__()
        self.block = block
        self.searchable = tuple(searchable)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.block.branch[ALWAYS_ON_BRANCH](x) if ALWAYS_ON_BRANCH in self.block.branch else None
        for i, name in enumerate(self.searchable):
            if float(mask[i].detach()) == 0.0 and (out is not None or i < len(self.searchable) - 1):
                continue
            y = mask[i] * self.block.branch[name](x)
            out = y if out is None else out + y
        return self.block.act(out)


class RepNASNet(nn.Module):
    """The ``repnas`` space's backbone with every searchable branch, at ``width_mult`` x channels."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int, width_mult: float = 0.5):
        super().__init__()
        stem = space.stem[0]
        stem_c = _ch(stem.cout, width_mult)
        self.stem = DiverseBranchBlock(in_channels, stem_c, stem.kernel, stem.stride, 1, branches=stem.branches or None)
        self.layers = nn.ModuleList()
        self.branch_index: list[tuple[int, str]] = []  # flat position -> (layer, branch)
        self.slices: list[slice] = []
        self.required: list[slice] = []  # layers without id: at least one branch
        for slot in space.layers:
            keeps = slot.stride == 1 and slot.cin == slot.cout
            kernel = space.choices[slot.allowed[-1]].kernel
            names = (*SEARCHABLE_BRANCHES, *((ALWAYS_ON_BRANCH,) if keeps else ()))
            block = DiverseBranchBlock(_ch(slot.cin, width_mult), _ch(slot.cout, width_mult), kernel, slot.stride,
                                       1, branches=names)
            start = len(self.branch_index)
            self.branch_index.extend((slot.index, b) for b in SEARCHABLE_BRANCHES)
            sl = slice(start, len(self.branch_index))
            self.slices.append(sl)
            if not keeps:
                self.required.append(sl)
            self.layers.append(MaskedDBB(block, SEARCHABLE_BRANCHES))
        last = _ch(space.layers[-1].cout, width_mult)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))

    @property
    def n_searchable(self) -> int:
        return len(self.branch_index)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer, sl in zip(self.layers, self.slices):
            x = layer(x, mask[sl])
        return self.head(x)

    def kept_branches(self, mask: torch.Tensor) -> list[tuple[str, ...]]:
        """Per layer, the branches a 0/1 mask keeps (``id`` included where always on)."""
        m = mask.detach()
        out = []
        for layer, sl in zip(self.layers, self.slices):
            kept = [b for b, v in zip(layer.searchable, m[sl]) if v > 0.5]
            if ALWAYS_ON_BRANCH in layer.block.branch:
                kept.append(ALWAYS_ON_BRANCH)
            out.append(tuple(kept))
        return out

    def mask_of_arch(self, arch: Sequence[int]) -> torch.Tensor:
        """The flat 0/1 mask of a space arch (inverse of :func:`mask_to_arch`)."""
        mask = torch.zeros(self.n_searchable)
        for sl, choice in zip(self.slices, arch):
            for i in range(len(SEARCHABLE_BRANCHES)):
                if int(choice) >> i & 1:
                    mask[sl.start + i] = 1.0
        return mask

    @torch.no_grad()
    def pruned(self, mask: torch.Tensor) -> nn.Sequential:
        """A plain multi-branch model with only the kept branches (weights copied)."""
        blocks: list[nn.Module] = [self.stem]
        for layer, kept in zip(self.layers, self.kept_branches(mask)):
            src = layer.block
            dst = DiverseBranchBlock(src.in_channels, src.out_channels, src.kernel_size, src.stride, src.groups,
                                     branches=kept)
            for name in dst.branch_names:
                dst.branch[name].load_state_dict(src.branch[name].state_dict())
            blocks.append(dst)
        model = nn.Sequential(*[copy.deepcopy(b) for b in blocks], copy.deepcopy(self.head))
        model.train(self.training)
        return model


class MaskBound(nn.Module):
    """``net(x, mask)`` with the mask fixed: the masked multi-branch model as a plain module."""

    def __init__(self, net: RepNASNet, mask: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.mask)


def mask_to_arch(space: SearchSpace, net: RepNASNet, mask: torch.Tensor) -> tuple[int, ...]:
    """The space arch (per-layer branch-mask choice) of a 0/1 mask."""
    return space.parse_arch([branches_choice(kept) for kept in net.kept_branches(mask)])


def fused_parity(model: nn.Module, fused: nn.Module, x: torch.Tensor) -> float:
    """Max |fused - multi-branch| relative to max |multi-branch| on ``x`` (both in eval mode)."""
    model.eval()
    fused.eval()
    with torch.no_grad():
        a, b = model(x), fused(x)
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def reset_bn(net: nn.Module) -> int:
    """Reset every BN's running statistics and affine parameters (RepNAS's BN reset); returns how many."""
    n = 0
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
            n += 1
    return n
