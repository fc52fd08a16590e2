"""A hierarchical weight-sharing supernet and its differentiable latency model.

Two levels of choices, as in H-DAS:

- *cell level*: every searchable layer is a :class:`MixedLayer` over the
  layer's allowed op choices (weights from a Gumbel-softmax over ``alpha``);
- *stage level*: per stage a **depth** choice (how many of the stage's layers
  are active; the first, vital layer always is, the others become identity)
  and a **width** choice (a multiplier of the stage's output channels,
  implemented by zeroing the channels above the chosen width).

:func:`expected_latency` turns the architecture distribution into the
expected latency under a :class:`~latnas.schema.latency_table.LatencyTable`, as a
differentiable torch scalar. The supernet itself may be a narrower proxy of
the space (``width_mult``) so it trains on a CPU; the latency model always
uses the space's own table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from latnas.schema.errors import DataError
from latnas.schema.latency_table import LatencyTable
from latnas.schema.ops import MBConv, conv_bn
from latnas.schema.spaces.base import Arch, SearchSpace
from latnas.schema.spec import BlockSpec

DEFAULT_WIDTHS = (0.5, 0.75, 1.0)


# --------------------------------------------------------------------- layout
@dataclass(frozen=True)
class LayerInfo:
    index: int
    stage: int
    position: int  # position inside its stage (0 = vital first layer)
    allowed: tuple[int, ...]  # choice indices, in space order
    skip_choice: int | None  # allowed choice that is an identity here (for depth search)


@dataclass(frozen=True)
class StageInfo:
    stage: int
    layers: tuple[int, ...]  # searchable layer indices of the stage
    depths: tuple[int, ...]  # candidate numbers of active layers (ascending); one entry = not searched
    widths: tuple[float, ...]  # candidate output-channel multipliers; (1.0,) = not searched


@dataclass(frozen=True)
class SupernetLayout:
    """Which choices exist at cell and stage level for one space."""

    space: str
    n_choices: int
    layers: tuple[LayerInfo, ...]
    stages: tuple[StageInfo, ...]
    width_scaling: str = "quadratic"  # "quadratic": cost x m_in*m_out; "linear": cost x m_out

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def identity_choice(space: SearchSpace, layer: int) -> int | None:
    """The allowed choice that is an identity at ``layer`` (``skip`` on a shape-keeping layer), if any."""
    slot = space.layers[layer]
    if slot.stride != 1 or slot.cin != slot.cout:
        return None
    for c in slot.allowed:
        if space.choices[c].op == "skip":
            return c
    return None


def build_layout(
    space: SearchSpace,
    search_depth: bool = True,
    widths: Sequence[float] | None = DEFAULT_WIDTHS,
    width_scaling: str = "quadratic",
) -> SupernetLayout:
    """Cell- and stage-level choices of ``space``.

    A stage's depth candidates run from (1 + the last layer that cannot become
    an identity) to the full depth; a layer can become an identity when it is
    not the stage's first, keeps its shape and allows the ``skip`` op.
    """
    if width_scaling not in ("quadratic", "linear"):
        raise DataError(f"width_scaling must be 'quadratic' or 'linear', got {width_scaling!r}")
    widths_t = tuple(sorted(float(w) for w in widths)) if widths else (1.0,)
    if any(not 0.0 < w <= 1.0 for w in widths_t):
        raise DataError(f"width multipliers must lie in (0, 1], got {widths_t}")
    if 1.0 not in widths_t:
        widths_t = (*widths_t, 1.0)
    vital = set(space.vital)
    by_stage: dict[int, list[int]] = {}
    for slot in space.layers:
        by_stage.setdefault(slot.stage, []).append(slot.index)
    layers: list[LayerInfo] = []
    stages: list[StageInfo] = []
    for stage, idxs in sorted(by_stage.items()):
        min_depth = 1
        for pos, idx in enumerate(idxs):
            skip = identity_choice(space, idx) if (pos > 0 and idx not in vital) else None
            layers.append(LayerInfo(idx, stage, pos, tuple(space.layers[idx].allowed), skip))
            if skip is None:
                min_depth = pos + 1
        depths = tuple(range(min_depth, len(idxs) + 1)) if search_depth else (len(idxs),)
        stages.append(StageInfo(stage, tuple(idxs), depths, widths_t))
    layers.sort(key=lambda info: info.index)
    return SupernetLayout(space.name, space.n_choices, tuple(layers), tuple(stages), width_scaling)


# ----------------------------------------------------------- arch parameters
class ArchParams(nn.Module):
    """Architecture logits: one vector per layer (allowed ops), per stage (depths, widths)."""

    def __init__(self, layout: SupernetLayout):
        super().__init__()
        self.layout = layout
        self.ops = nn.ParameterList([nn.Parameter(torch.zeros(len(info.allowed))) for info in layout.layers])
        self.depth = nn.ParameterList([nn.Parameter(torch.zeros(len(st.depths))) for st in layout.stages])
        self.width = nn.ParameterList([nn.Parameter(torch.zeros(len(st.widths))) for st in layout.stages])

    def searched(self) -> list[nn.Parameter]:
        """Parameters with more than one candidate (the others carry no gradient)."""
        return [p for p in self.parameters() if p.numel() > 1]

    def probs(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        sm = lambda ps: [torch.softmax(p, dim=0) for p in ps]  # noqa: E731
        return sm(self.ops), sm(self.depth), sm(self.width)

    def sample(self, tau: float, hard: bool, generator: torch.Generator | None = None):
        """Gumbel-softmax weights for every choice (straight-through one-hot when ``hard``)."""
        gs = lambda ps: [gumbel_softmax(p, tau, hard, generator) for p in ps]  # noqa: E731
        return gs(self.ops), gs(self.depth), gs(self.width)

    def one_hot(self, op_idx: Sequence[int], depth_idx: Sequence[int], width_idx: Sequence[int]):
        oh = lambda ps, ix: [torch.nn.functional.one_hot(torch.tensor(i), p.numel()).float() for p, i in zip(ps, ix)]  # noqa: E731
        return oh(self.ops, op_idx), oh(self.depth, depth_idx), oh(self.width, width_idx)

    def argmax(self) -> tuple[list[int], list[int], list[int]]:
        am = lambda ps: [int(torch.argmax(p.detach())) for p in ps]  # noqa: E731
        return am(self.ops), am(self.depth), am(self.width)


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-softmax with an explicit generator (``torch.nn.functional`` has none)."""
    u = torch.rand(logits.shape, generator=generator).clamp_(1e-9, 1.0 - 1e-9)
    y = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=0)
    if not hard:
        return y
    idx = int(torch.argmax(y.detach()))
    one = torch.zeros_like(y)
    one[idx] = 1.0
    return one + (y - y.detach())  # exactly one-hot forward, softmax gradient


# ----------------------------------------------------------- latency model
def layer_active_probs(layout: SupernetLayout, depth_w: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Probability that each layer is active: P(stage depth > position)."""
    out: list[torch.Tensor] = [torch.ones((), dtype=torch.float64)] * layout.n_layers
    for st, w in zip(layout.stages, depth_w):
        depths = torch.tensor(st.depths, dtype=torch.float64)
        for pos, idx in enumerate(st.layers):
            out[idx] = (w.to(torch.float64) * (depths > pos).to(torch.float64)).sum()
    return out


def torch_correct(table: LatencyTable, total: torch.Tensor) -> torch.Tensor:
    """The table's monotone correction, differentiable (piecewise linear, linear ends)."""
    if table.knots_x is None:
        return total + table.offset
    x = torch.as_tensor(table.knots_x, dtype=torch.float64)
    y = torch.as_tensor(table.knots_y, dtype=torch.float64)
    i = torch.clamp(torch.searchsorted(x, total.detach().reshape(1)) - 1, 0, x.numel() - 2)[0]
    slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i])
    return y[i] + (total - x[i]) * slope


def expected_latency(
    table: LatencyTable,
    layout: SupernetLayout,
    op_w: Sequence[torch.Tensor],
    depth_w: Sequence[torch.Tensor],
    width_w: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Expected latency (``table.unit``) of the architecture distribution.

    ``E = f( sum_l s_l * [a_l * sum_c p_lc T[l,c] + (1 - a_l) * T[l, skip]] )``
    with ``a_l`` the probability that layer ``l`` is active (stage depth),
    ``s_l`` the expected width scale (``E[m_in * m_out]`` for "quadratic",
    ``E[m_out]`` for "linear"; stages are independent, layers inside a stage
    share ``m``) and ``f`` the table's correction (offset or knots). Stem and
    head stay in the offset, unscaled. Differentiable w.r.t. every weight.
    """
    if table.n_layers != layout.n_layers:
        raise DataError(f"latency table has {table.n_layers} layers, space {layout.space!r} has {layout.n_layers}")
    active = layer_active_probs(layout, depth_w)
    m1 = []  # E[m] per stage
    m2 = []  # E[m^2] per stage
    for st, w in zip(layout.stages, width_w):
        mult = torch.tensor(st.widths, dtype=torch.float64)
        w64 = w.to(torch.float64)
        m1.append((w64 * mult).sum())
        m2.append((w64 * mult * mult).sum())
    stage_pos = {st.stage: i for i, st in enumerate(layout.stages)}
    total = torch.zeros((), dtype=torch.float64)
    for info, w in zip(layout.layers, op_w):
        row = table.table[info.index, list(info.allowed)]
        if np.isnan(row).any():
            raise DataError(f"latency table has no entry for an allowed choice of layer {info.index}")
        cost = (w.to(torch.float64) * torch.as_tensor(row, dtype=torch.float64)).sum()
        if info.skip_choice is not None:
            skip_cost = float(table.table[info.index, info.skip_choice])
            cost = active[info.index] * cost + (1.0 - active[info.index]) * skip_cost
        s = stage_pos[info.stage]
        if layout.width_scaling == "linear":
            scale = m1[s]
        elif info.position == 0:
            scale = (m1[s - 1] if s > 0 else 1.0) * m1[s]
        else:
            scale = m2[s]
        total = total + scale * cost
    return torch_correct(table, total)


# ------------------------------------------------------------------ supernet
def _round_channels(c: float, divisor: int = 4) -> int:
    return max(divisor, int(math.ceil(c / divisor)) * divisor)


class MixedLayer(nn.Module):
    """All candidate ops of one layer; output = sum of weight x op output.

    With one-hot weights (straight-through Gumbel) only the chosen op runs.
    """

    def __init__(self, candidates: Sequence[nn.Module]):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        nz = torch.nonzero(w.detach()).flatten().tolist()
        out = None
        for i in nz:
            y = w[i] * self.candidates[i](x)
            out = y if out is None else out + y
        return out if out is not None else 0.0 * self.candidates[0](x)


class Supernet(nn.Module):
    """Weight-sharing supernet of ``space`` at ``width_mult`` x its channels.

    Forward takes the sampled (or one-hot) weights of :class:`ArchParams`.
    ``zero_init_residual`` zeroes the last BN scale of residual MBConvs so the
    deep supernet starts near identity (it then trains in a few dozen steps).
    Depth: ``out = a * layer(x) + (1 - a) * x`` with ``a = P(depth > pos)``;
    width: the stage's output channels above ``m * C`` are multiplied by 0.
    """

    def __init__(self, space: SearchSpace, layout: SupernetLayout, in_channels: int, num_classes: int,
                 width_mult: float = 0.25, head_channels: int = 128, zero_init_residual: bool = True):
        super().__init__()
        self.layout = layout
        ch = lambda c: _round_channels(c * width_mult)  # noqa: E731
        stem_c = ch(space.stem[-1].cout) if space.stem else ch(space.layers[0].cin)
        self.stem = conv_bn(in_channels, stem_c, 3)
        self.layers = nn.ModuleList()
        for info in layout.layers:
            slot = space.layers[info.index]
            cin, cout = ch(slot.cin), ch(slot.cout)
            ops = []
            for c in info.allowed:
                base = space.layer_block(info.index, c)
                spec = BlockSpec(base.op, cin, cout, slot.h, slot.w, slot.stride, base.kernel,
                                 base.expansion, base.groups, 1, base.branches)
                ops.append(spec.build())
            if zero_init_residual:
                for op in ops:
                    if isinstance(op, MBConv) and op.residual:
                        nn.init.zeros_(op.project[1].weight)  # residual blocks start as identity
            self.layers.append(MixedLayer(ops))
        last_c = ch(space.layers[-1].cout)
        self.head = nn.Sequential(conv_bn(last_c, head_channels, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(head_channels, num_classes))
        masks = []
        for st in layout.stages:
            c = ch(space.layers[st.layers[0]].cout)
            m = torch.zeros(len(st.widths), c)
            for k, mult in enumerate(st.widths):
                m[k, : max(1, int(round(mult * c)))] = 1.0
            masks.append(m)
        self._masks = masks  # plain tensors: constants, not state
        pos = {st.stage: i for i, st in enumerate(layout.stages)}
        self._stage_of = {info.index: pos[info.stage] for info in layout.layers}

    def forward(self, x: torch.Tensor, op_w, depth_w, width_w) -> torch.Tensor:
        active = layer_active_probs(self.layout, depth_w)
        x = self.stem(x)
        for info, layer, w in zip(self.layout.layers, self.layers, op_w):
            s = self._stage_of[info.index]
            mask = (width_w[s].unsqueeze(1) * self._masks[s]).sum(0).view(1, -1, 1, 1)
            a = active[info.index].to(x.dtype)
            if info.skip_choice is None or (not a.requires_grad and float(a) == 1.0):
                y = layer(x, w)
            elif not a.requires_grad and float(a) == 0.0:
                y = x  # skipped layer: identity, nothing to run
            else:
                y = a * layer(x, w) + (1.0 - a) * x
            x = y * mask
        return self.head(x)


def derive_arch(layout: SupernetLayout, op_idx: Sequence[int], depth_idx: Sequence[int]) -> list[int]:
    """Space arch from per-layer op argmax and per-stage depth: layers past the depth become ``skip``."""
    arch = [info.allowed[i] for info, i in zip(layout.layers, op_idx)]
    for st, d in zip(layout.stages, depth_idx):
        depth = st.depths[d]
        for pos, idx in enumerate(st.layers):
            if pos >= depth:
                skip = layout.layers[idx].skip_choice
                assert skip is not None  # guaranteed by build_layout's depth range
                arch[idx] = skip
    return arch


def greedy_fit_budget(table: LatencyTable, layout: SupernetLayout, arch: Sequence[int], budget: float) -> tuple[Arch, list[dict]]:
    """Cheapen ``arch`` until ``table.predict(arch) <= budget``.

    Each step moves one layer to its next cheaper allowed op, choosing the
    layer whose move saves the most; returns the arch and the steps taken.
    """
    cur = list(int(a) for a in arch)
    steps: list[dict] = []
    lat = float(table.predict(np.array([cur]))[0])
    while lat > budget:
        best = None
        for info in layout.layers:
            now = table.table[info.index, cur[info.index]]
            cheaper = [(table.table[info.index, c], c) for c in info.allowed if table.table[info.index, c] < now]
            if not cheaper:
                continue
            val, c = max(cheaper)
            if best is None or now - val > best[0]:
                best = (now - val, info.index, c)
        if best is None:
            break
        _, layer, c = best
        steps.append({"layer": layer, "from": cur[layer], "to": c})
        cur[layer] = c
        lat = float(table.predict(np.array([cur]))[0])
    return tuple(cur), steps
