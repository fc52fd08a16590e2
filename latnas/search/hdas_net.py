"""The H-DAS search network on the NAS-Bench-201 cell: three levels, all differentiable.

- *cell level* (DARTS on the NB201 cell): every one of the cell's 6 edges is a
  :class:`MixedEdge` over the 5 NB201 ops, weighted by ``softmax(alpha[e])``
  (or a Gumbel sample, GDAS style). One ``alpha`` is shared by every cell, as
  in the benchmark (one cell repeated). Search-time convs use BN without
  affine parameters, as DARTS does, so the op weights alone carry the scale.
  ``aux_skip`` adds DARTS-'s auxiliary skip ``beta * x`` to every edge
  (``beta`` decays to 0 over the search), so the skip op no longer has to win
  the softmax to give the gradient a short path: the known cure for DARTS'
  collapse to all-skip cells. ``drop`` is P-DARTS' dropout on the
  parameter-free ops (skip, pool) during the search.
- *stage level* (H-DAS's stage DAG): inside a stage the cells are nodes; node
  ``j`` reads a softmax-weighted sum of the outputs of the ``window`` previous
  nodes (the stage input is node 0); after the search each node keeps its
  ``top`` strongest inputs.
- *distribution level*: the number of cells of each stage. The stage output is
  ``sum_d q_d * h_d`` over the allowed counts ``d`` (``softmax(gamma[s])``),
  ``min_cells`` and up, so depth is a choice with a floor, never zero.

:func:`hdas_expected_latency` prices the relaxed network with the space's
:class:`~latnas.schema.latency_table.LatencyTable` (differentiable, exact for a
one-hot cell at the benchmark's 5 cells per stage).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latnas.schema.blocks.nb201 import NB201_EDGES, NB201_OPS, ResidualReduction, Zero
from latnas.schema.latency_table import LatencyTable

N_OPS = len(NB201_OPS)
N_EDGES = len(NB201_EDGES)
PARAMETER_FREE = (1, 4)  # skip_connect, avg_pool_3x3


def _search_op(choice: int, channels: int) -> nn.Module:
    """An NB201 op with DARTS' search-time BN (no affine; after the pool too, as DARTS' MixedOp)."""
    if choice == 0:
        return Zero()
    if choice == 1:
        return nn.Identity()
    if choice == 4:  # DARTS' search-time pool: followed by BN (no affine), on the convs' scale
        return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.BatchNorm2d(channels, affine=False))
    k = 1 if choice == 2 else 3
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(channels, channels, k, 1, k // 2, bias=False),
                         nn.BatchNorm2d(channels, affine=False))


class MixedEdge(nn.Module):
    """One cell edge: ``sum_c w_c * op_c(x)`` (+ ``beta * x``, the auxiliary skip)."""

    def __init__(self, channels: int):
        super().__init__()
        self.ops = nn.ModuleList(_search_op(c, channels) for c in range(N_OPS))

    def forward(self, x: torch.Tensor, w: torch.Tensor, beta: float, drop: float = 0.0) -> torch.Tensor:
        out = x * beta if beta else None
        for c, op in enumerate(self.ops):
            if c == 0 or float(w[c].detach()) == 0.0:  # "none" adds zeros; hard samples skip unused ops
                continue
            y = op(x)
            if drop and c in PARAMETER_FREE:  # P-DARTS: dropout on parameter-free ops while searching
                y = F.dropout(y, drop, self.training)
            y = w[c] * y
            out = y if out is None else out + y
        return x * 0.0 if out is None else out  # alpha["none"] gets its gradient through the softmax


class SearchCell(nn.Module):
    """The NB201 cell with a mixed op on each of its 6 edges."""

    def __init__(self, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(MixedEdge(channels) for _ in range(N_EDGES))

    def forward(self, x: torch.Tensor, w: torch.Tensor, beta: float, drop: float = 0.0) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            total = None
            for k, (to, i) in enumerate(NB201_EDGES):
                if to == j:
                    y = self.edges[k](nodes[i], w[k], beta, drop)
                    total = y if total is None else total + y
            nodes.append(total)
        return nodes[3]


def window_inputs(node: int, window: int) -> list[int]:
    """The earlier nodes node ``node`` (1-based cell index) may read: the ``window`` before it."""
    return list(range(max(0, node - window), node))


@dataclass
class StageLayout:
    """Cells per stage (maximum), the allowed cell counts, and the DAG window."""

    max_cells: int
    min_cells: int
    window: int
    top: int

    @property
    def counts(self) -> list[int]:
        return list(range(self.min_cells, self.max_cells + 1))


class HDASArch(nn.Module):
    """Architecture parameters of all three levels."""

    def __init__(self, n_stages: int, layout: StageLayout):
        super().__init__()
        self.alpha = nn.Parameter(1e-3 * torch.randn(N_EDGES, N_OPS))
        # stage DAG: beta[s][j-1] over window_inputs(j) for node j = 1..max_cells
        self.beta = nn.ParameterList(
            nn.Parameter(torch.zeros(len(window_inputs(j, layout.window))))
            for _ in range(n_stages) for j in range(1, layout.max_cells + 1)
        )
        self.gamma = nn.Parameter(torch.zeros(n_stages, len(layout.counts)))
        self.n_stages = n_stages
        self.layout = layout

    def edge_weights(self, s: int, j: int) -> torch.Tensor:
        return F.softmax(self.beta[s * self.layout.max_cells + (j - 1)], dim=-1)

    def count_probs(self) -> torch.Tensor:
        return F.softmax(self.gamma, dim=-1)

    def op_probs(self) -> torch.Tensor:
        return F.softmax(self.alpha, dim=-1)

    def derive_cell(self, allow_none: bool = False) -> list[int]:
        """Per-edge argmax op (``none`` excluded unless ``allow_none``, as DARTS derives)."""
        a = self.alpha.detach().clone()
        if not allow_none:
            a[:, 0] = -float("inf")
        return [int(v) for v in a.argmax(dim=1)]

    def derive_dag(self) -> list[list[list[int]]]:
        """Per stage, per node 1..max_cells: the kept inputs (top ``top`` of its window)."""
        out = []
        for s in range(self.n_stages):
            nodes = []
            for j in range(1, self.layout.max_cells + 1):
                ins = window_inputs(j, self.layout.window)
                order = torch.argsort(self.edge_weights(s, j).detach(), descending=True, stable=True)
                nodes.append(sorted(ins[int(i)] for i in order[: self.layout.top]))
            out.append(nodes)
        return out

    def derive_counts(self) -> list[int]:
        return [self.layout.counts[int(i)] for i in self.count_probs().detach().argmax(dim=1)]


class HDASNet(nn.Module):
    """NB201 macro network (stem, stages of search cells, residual reductions, head) at proxy width."""

    def __init__(self, channels: tuple[int, ...], layout: StageLayout, in_channels: int, num_classes: int):
        super().__init__()
        self.layout = layout
        c0 = channels[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0))
        self.reductions = nn.ModuleList(ResidualReduction(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.cells = nn.ModuleList(
            nn.ModuleList(SearchCell(c) for _ in range(layout.max_cells)) for c in channels
        )
        self.head = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor, arch: HDASArch, op_w: torch.Tensor, beta: float = 0.0,
                fixed: tuple[list[int], list[list[list[int]]]] | None = None, drop: float = 0.0) -> torch.Tensor:
        """Relaxed forward; ``fixed = (counts, dag)`` runs a derived stage structure instead."""
        h = self.stem(x)
        for s, cells in enumerate(self.cells):
            if s:
                h = self.reductions[s - 1](h)
            nodes = [h]
            n_run = self.layout.max_cells if fixed is None else fixed[0][s]
            for j in range(1, n_run + 1):
                ins = window_inputs(j, self.layout.window)
                if fixed is None:
                    ew = arch.edge_weights(s, j)
                    inp = sum(ew[t] * nodes[i] for t, i in enumerate(ins))
                else:
                    inp = sum(nodes[i] for i in fixed[1][s][j - 1])
                nodes.append(cells[j - 1](inp, op_w, beta, drop))
            if fixed is None:
                q = arch.count_probs()[s]
                h = sum(q[t] * nodes[d] for t, d in enumerate(self.layout.counts))
            else:
                h = nodes[n_run]
        h = self.head(h).mean(dim=(2, 3))
        return self.classifier(h)


def hdas_expected_latency(table: LatencyTable, op_p: torch.Tensor, count_p: torch.Tensor, counts: list[int],
                          cells_per_stage: int) -> torch.Tensor:
    """Expected latency of the relaxed network, from the nb201 space's per-edge table.

    A row ``T[e, c]`` of the table is edge ``e``'s op ``c`` in all
    ``n_stages * cells_per_stage`` cells; with equal cost per stage (NB201's
    convs have equal FLOPs in every stage: channels double as the area
    quarters) one cell of any stage costs ``T / (n_stages * cells_per_stage)``.
    So ``E = f(sum_s E[n_s] / (S * cells) * sum_e sum_c p_ec T[e, c])``,
    ``f`` the table's correction; exact (= ``table.predict``) for a one-hot cell
    and ``n_s = cells_per_stage``.
    """
    t = torch.as_tensor(table.table, dtype=torch.float64)
    t = torch.nan_to_num(t, nan=0.0)
    cell = (op_p.to(torch.float64) * t).sum()
    n = torch.as_tensor(counts, dtype=torch.float64)
    exp_cells = (count_p.to(torch.float64) * n).sum(dim=1)  # per stage
    n_stages = count_p.shape[0]
    total = cell * exp_cells.sum() / (n_stages * cells_per_stage)
    from latnas.search.supernet import torch_correct

    return torch_correct(table, total)
