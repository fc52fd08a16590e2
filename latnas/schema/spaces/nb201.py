"""The NAS-Bench-201 (NATS-Bench topology) space, as in ``/work/shared/data/nb201``.

A cell space, not a chain: the 6 searchable "layers" are the cell's edges
(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2), in the order the benchmark's
arch string lists them, and one cell is repeated 5 times in each of 3 stages.
Choices (index = digit): 0 none, 1 skip_connect, 2 nor_conv_1x1,
3 nor_conv_3x3, 4 avg_pool_3x3. 5**6 = 15,625 archs.

Macro network (CIFAR, input 3x32x32): stem Conv3x3 3->16 + BN; 5 cells at
C=16, 32x32; residual reduction to 32 (16x16); 5 cells; reduction to 64
(8x8); 5 cells; BN + ReLU, global average pool, linear.

Arch strings: 6 digits (``"333333"``), the benchmark string
(``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|...|``), or a sequence.

Cost tables: an edge's choice places its op in all 15 cells, at each
stage's shape, so :meth:`NB201Space.layer_blocks` returns those 15 blocks
(``none`` places nothing); stem, reductions and head are
:meth:`NB201Space.fixed_blocks`. So ``flops_table`` and the per-layer
latency tables sum to the whole network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from latnas.schema.blocks.nb201 import NB201_EDGES, NB201_OPS
from latnas.schema.errors import DataError
from latnas.schema.ops import build_model
from latnas.schema.spaces.base import Arch, LayerSlot, OpChoice, SearchSpace
from latnas.schema.spaces.registry import register_space
from latnas.schema.spec import BlockSpec

NB201_CHOICES = (
    OpChoice("none", "zero", kernel=1),
    OpChoice("skip_connect", "skip", kernel=1),
    OpChoice("nor_conv_1x1", "nb201_conv", kernel=1),
    OpChoice("nor_conv_3x3", "nb201_conv", kernel=3),
    OpChoice("avg_pool_3x3", "avgpool3", kernel=3),
)
NB201_CHANNELS = (16, 32, 64)
NB201_CELLS_PER_STAGE = 5


@dataclass(frozen=True)
class NB201Space(SearchSpace):
    """NAS-Bench-201 cell space (see module docstring)."""

    channels: tuple[int, ...] = NB201_CHANNELS
    cells_per_stage: int = NB201_CELLS_PER_STAGE

    # ---------------------------------------------------------------- shapes
    def stage_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) of the cells of each stage."""
        _, h, w = self.input_shape
        out = []
        for s, c in enumerate(self.channels):
            out.append((c, h >> s, w >> s))
        return out

    def _edge_spec(self, choice: int, c: int, h: int, w: int) -> BlockSpec:
        op = self.choices[choice]
        return BlockSpec(op.op, c, c, h, w, 1, op.kernel, batch=self.batch)

    def cell_spec(self, arch: str | Sequence[int], stage: int) -> BlockSpec:
        """The whole cell of ``arch`` at ``stage`` as one block (op ``nb201_cell``)."""
        c, h, w = self.stage_shapes()[stage]
        return BlockSpec("nb201_cell", c, c, h, w, 1, 3, batch=self.batch, branches=self.format_arch(self.parse_arch(arch)))

    def reduction_blocks(self) -> tuple[BlockSpec, ...]:
        shapes = self.stage_shapes()
        return tuple(
            BlockSpec("nb201_reduction", c0, c1, h, w, 2, 3, batch=self.batch)
            for (c0, h, w), (c1, _, _) in zip(shapes[:-1], shapes[1:])
        )

    # -------------------------------------------------------------- archs
    def parse_arch(self, arch: str | Sequence[int]) -> Arch:
        """6 digits, the benchmark's ``|op~i|+|...|`` string, or a sequence of op indices."""
        if isinstance(arch, str) and ("~" in arch or "|" in arch):
            return super().parse_arch(_parse_benchmark_string(arch))
        return super().parse_arch(arch)

    def arch_str(self, arch: str | Sequence[int]) -> str:
        """The benchmark's arch string, e.g. ``|nor_conv_3x3~0|+|...|``."""
        a = self.parse_arch(arch)
        nodes = []
        for j in (1, 2, 3):
            edges = [f"{NB201_OPS[a[k]]}~{i}" for k, (to, i) in enumerate(NB201_EDGES) if to == j]
            nodes.append("|" + "|".join(edges) + "|")
        return "+".join(nodes)

    # ------------------------------------------------------------ liveness
    def _reach(self, archs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Forward reach from node 0, backward reach to node 3 (per node) and the non-``none`` edges."""
        a = np.asarray(archs, dtype=np.int64).reshape(-1, self.n_layers)
        active = a != 0  # choice 0 is ``none``: it carries nothing
        n_nodes = 1 + max(to for to, _ in NB201_EDGES)
        fwd = [np.ones(len(a), dtype=bool)] + [np.zeros(len(a), dtype=bool) for _ in range(n_nodes - 1)]
        for k, (to, frm) in enumerate(NB201_EDGES):  # edges are listed by increasing target node
            fwd[to] = fwd[to] | (active[:, k] & fwd[frm])
        bwd = [np.zeros(len(a), dtype=bool) for _ in range(n_nodes - 1)] + [np.ones(len(a), dtype=bool)]
        for k in reversed(range(len(NB201_EDGES))):
            to, frm = NB201_EDGES[k]
            bwd[frm] = bwd[frm] | (active[:, k] & bwd[to])
        return fwd, bwd, active

    def live_mask(self, archs: np.ndarray) -> np.ndarray:
        """An edge is live when its op is not ``none`` and it lies on a path of non-``none`` edges
        from the cell's input (node 0) to its output (node 3); ``none`` edges are never live."""
        fwd, bwd, active = self._reach(archs)
        cols = [active[:, k] & fwd[frm] & bwd[to] for k, (to, frm) in enumerate(NB201_EDGES)]
        return np.column_stack(cols)

    def cut_off(self, archs: np.ndarray) -> np.ndarray:
        """Archs whose cell output is cut off from its input: the whole network's output is constant."""
        fwd, _, _ = self._reach(archs)
        return ~fwd[-1]

    # -------------------------------------------------------------- blocks
    def layer_block(self, layer: int, choice: int) -> BlockSpec:
        """The edge op at the first stage's shape (one of the 15 it places)."""
        c, h, w = self.stage_shapes()[0]
        return self._edge_spec(choice, c, h, w)

    def layer_blocks(self, layer: int, choice: int) -> tuple[BlockSpec, ...]:
        """The edge's op in every cell: 5 per stage at the 3 stage shapes (``none``: nothing)."""
        if choice == 0:
            return ()
        return tuple(
            self._edge_spec(choice, c, h, w) for c, h, w in self.stage_shapes() for _ in range(self.cells_per_stage)
        )

    def fixed_blocks(self) -> tuple[BlockSpec, ...]:
        return (*self.stem, *self.reduction_blocks(), *self.head)

    def decode(self, arch: str | Sequence[int]) -> list[BlockSpec]:
        """Every edge block of ``arch`` in the whole network (``none`` edges place none)."""
        a = self.parse_arch(arch)
        return [spec for layer, choice in enumerate(a) for spec in self.layer_blocks(layer, choice)]

    def blocks(self, arch: str | Sequence[int]) -> list[BlockSpec]:
        """Every block of the model in network order: stem, cells' edge ops, reductions, head."""
        a = self.parse_arch(arch)
        reductions = self.reduction_blocks()
        out: list[BlockSpec] = [*self.stem]
        for s, (c, h, w) in enumerate(self.stage_shapes()):
            if s:
                out.append(reductions[s - 1])
            for _ in range(self.cells_per_stage):
                out.extend(self._edge_spec(choice, c, h, w) for choice in a if choice != 0)
        return [*out, *self.head]

    def build(self, arch: str | Sequence[int]):
        """The whole CIFAR network as a ``torch.nn.Sequential`` (stem, cells, reductions, lastact, classifier)."""
        a = self.parse_arch(arch)
        reductions = self.reduction_blocks()
        chain: list[BlockSpec] = [*self.stem]
        for s in range(len(self.channels)):
            if s:
                chain.append(reductions[s - 1])
            chain.extend(self.cell_spec(a, s) for _ in range(self.cells_per_stage))
        return build_model([*chain, *self.head])


def _parse_benchmark_string(text: str) -> tuple[int, ...]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> 6 op indices; one-line DataError if malformed."""
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise DataError(f"nb201 arch string {text!r} must have 3 nodes separated by '+'")
    values: list[int] = []
    for j, node in enumerate(nodes, start=1):
        edges = [e for e in node.strip().strip("|").split("|")]
        if len(edges) != j:
            raise DataError(f"nb201 arch string {text!r}: node {j} must have {j} edges")
        for i, edge in enumerate(edges):
            name, _, src = edge.partition("~")
            if name not in NB201_OPS:
                raise DataError(f"nb201 arch string {text!r}: unknown op {name!r} (known: {', '.join(NB201_OPS)})")
            if src != str(i):
                raise DataError(f"nb201 arch string {text!r}: edge {edge!r} of node {j} must come from node {i}")
            values.append(NB201_OPS.index(name))
    return tuple(values)


@register_space("nb201")
def nb201_space(batch: int = 1, num_classes: int = 10, resolution: int = 32) -> NB201Space:
    """NAS-Bench-201 space with the CIFAR macro network (see module docstring)."""
    if resolution < 4 or resolution % 4:
        raise DataError(f"nb201 resolution must be a positive multiple of 4, got {resolution}")
    c0, c_last = NB201_CHANNELS[0], NB201_CHANNELS[-1]
    last_hw = resolution >> (len(NB201_CHANNELS) - 1)
    every = tuple(range(len(NB201_CHOICES)))
    layers = tuple(LayerSlot(i, 0, c0, c0, resolution, resolution, 1, every) for i in range(len(NB201_EDGES)))
    stem = (BlockSpec("nb201_stem", 3, c0, resolution, resolution, 1, 3, batch=batch),)
    head = (
        BlockSpec("nb201_lastact", c_last, c_last, last_hw, last_hw, 1, 1, batch=batch),
        BlockSpec("classifier", c_last, num_classes, last_hw, last_hw, 1, 1, batch=batch),
    )
    return NB201Space(
        name="nb201",
        input_shape=(3, resolution, resolution),
        num_classes=num_classes,
        choices=NB201_CHOICES,
        layers=layers,
        stem=stem,
        head=head,
        batch=batch,
        description="NAS-Bench-201 cell space, CIFAR macro network (6 edges, 5 ops, 15 cells)",
    )
