"""Single-path one-shot supernets: one shared set of weights per (layer, choice).

A *path* picks, per searchable layer, a tuple of active choices (one choice:
single-path, as in SPOS/HourNAS; several: NSE's multi-branch setting, whose
outputs are averaged). Two network shapes:

- :class:`ChainSupernet` for chain spaces (``fbnet``, ``repnas``,
  ``proxyless``): a conv stem, one :class:`ChoiceLayer` per searchable layer
  holding every allowed choice's block at ``width_mult`` x the space's
  channels, and a small head (1x1 conv + BN + ReLU, pool, linear).
- :class:`NB201Supernet`: the NAS-Bench-201 macro network (stem, 3 stages of
  ``cells_per_stage`` cells, residual reductions, BN+ReLU, pool, linear) in
  which every cell edge holds all five ops' weights (each cell its own
  weights, as in the benchmark's one-shot baselines); a path picks one op per
  edge, the same in every cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

from latnas.schema.blocks.nb201 import NB201_EDGES, ResidualReduction, cell_output, edge_module
from latnas.schema.ops import MBConv, conv_bn
from latnas.schema.spaces.base import SearchSpace
from latnas.schema.spec import BlockSpec

#: per layer: one choice (int) or the tuple of active choices
Path = Sequence[Union[int, Sequence[int]]]


@dataclass(frozen=True)
class NetConfig:
    """Shape of the proxy supernet (smaller than the space so it trains on a CPU)."""

    width_mult: float = 0.25  # x the space's channels (rounded up to multiples of 4)
    head_channels: int = 64  # chain spaces: width of the head's 1x1 conv
    cells_per_stage: int = 2  # nb201: cells per stage (the benchmark has 5; 2 is cheaper per step on a CPU)
    nb201_channels: int = 8  # nb201: channels of the first stage (benchmark: 16)


def _round(c: float, divisor: int = 4) -> int:
    return max(divisor, int(math.ceil(c / divisor)) * divisor)


def normalise_path(path: Path) -> tuple[tuple[int, ...], ...]:
    """Every layer as a sorted tuple of active choices."""
    out = []
    for p in path:
        out.append((int(p),) if isinstance(p, (int,)) or not hasattr(p, "__len__") else tuple(sorted(int(v) for v in p)))
    return tuple(out)


class ChoiceLayer(nn.Module):
    """All allowed choices of one layer; runs (and averages) the active ones only."""

    def __init__(self, choices: Sequence[int], ops: Sequence[nn.Module]):
        super().__init__()
        self.choices = tuple(int(c) for c in choices)
        self.ops = nn.ModuleList(ops)
        self._pos = {c: i for i, c in enumerate(self.choices)}

    def op(self, choice: int) -> nn.Module:
        return self.ops[self._pos[int(choice)]]

    def forward(self, x: torch.Tensor, active: tuple[int, ...]) -> torch.Tensor:
        outs = [self.ops[self._pos[c]](x) for c in active]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)


class ChainSupernet(nn.Module):
    """Weight-sharing supernet of a chain space (see module docstring)."""

    def __init__(self, space: SearchSpace, num_classes: int, config: NetConfig = NetConfig(), in_channels: int | None = None):
        super().__init__()
        ch = lambda c: _round(c * config.width_mult)  # noqa: E731
        cin0 = space.layers[0].cin
        self.stem = conv_bn(in_channels or space.input_shape[0], ch(cin0), 3)
        layers = []
        for slot in space.layers:
            ops = []
            for c in slot.allowed:
                base = space.layer_block(slot.index, c)
                spec = BlockSpec(base.op, ch(slot.cin), ch(slot.cout), slot.h, slot.w, slot.stride, base.kernel,
                                 base.expansion, base.groups, 1, base.branches)
                op = spec.build()
                if isinstance(op, MBConv) and op.residual:
                    nn.init.zeros_(op.project[1].weight)  # residual blocks start as identity: deep paths train fast
                ops.append(op)
            layers.append(ChoiceLayer(slot.allowed, ops))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(conv_bn(ch(space.layers[-1].cout), config.head_channels, 1), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(config.head_channels, num_classes))

    def choice_modules(self, layer: int, choice: int) -> list[nn.Module]:
        """The modules holding the weights of ``choice`` at ``layer``."""
        return [self.layers[layer].op(choice)]

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        x = self.stem(x)
        for layer, active in zip(self.layers, normalise_path(path)):
            x = layer(x, active)
        return self.head(x)


class SupernetCell(nn.Module):
    """A NAS-Bench-201 cell whose 6 edges each hold all five ops."""

    def __init__(self, channels: int, n_ops: int):
        super().__init__()
        self.edges = nn.ModuleList(ChoiceLayer(range(n_ops), [edge_module(c, channels) for c in range(n_ops)])
                                   for _ in NB201_EDGES)

    def forward(self, x: torch.Tensor, path: tuple[tuple[int, ...], ...]) -> torch.Tensor:
        def edge_out(k: int, h: torch.Tensor) -> torch.Tensor | None:
            ops = tuple(c for c in path[k] if c != 0)
            return self.edges[k](h, ops) if ops else None

        return cell_output(x, edge_out)


class NB201Supernet(nn.Module):
    """NAS-Bench-201 macro network with all-op edges (see module docstring)."""

    def __init__(self, space: SearchSpace, num_classes: int, config: NetConfig = NetConfig(), in_channels: int | None = None):
        super().__init__()
        c0 = int(config.nb201_channels)
        channels = [c0 * 2 ** s for s in range(len(getattr(space, "channels", (16, 32, 64))))]
        self.stem = nn.Sequential(nn.Conv2d(in_channels or space.input_shape[0], c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0))
        stages = []
        for s, c in enumerate(channels):
            blocks: list[nn.Module] = [ResidualReduction(channels[s - 1], c)] if s else []
            blocks += [SupernetCell(c, space.n_choices) for _ in range(int(config.cells_per_stage))]
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels[-1], num_classes))

    def choice_modules(self, layer: int, choice: int) -> list[nn.Module]:
        return [b.edges[layer].op(choice) for stage in self.stages for b in stage if isinstance(b, SupernetCell)]

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        p = normalise_path(path)
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x, p) if isinstance(block, SupernetCell) else block(x)
        return self.head(x)


def build_supernet(space: SearchSpace, num_classes: int, config: NetConfig = NetConfig(), in_channels: int | None = None) -> nn.Module:
    """The supernet for ``space``: NAS-Bench-201's macro network for cell spaces, a chain otherwise."""
    from latnas.schema.spaces.nb201 import NB201Space

    cls = NB201Supernet if isinstance(space, NB201Space) else ChainSupernet
    return cls(space, num_classes, config, in_channels)
