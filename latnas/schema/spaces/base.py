"""Search spaces as data: a fixed stem and head around searchable layers.

An *arch* is a tuple of choice indices, one per searchable layer. Written as a
string it is one digit per layer when a space has at most ten choices (the
FBNet convention, e.g. ``"7818488874147327324245"``), else comma-separated.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from latnas.schema.errors import DataError, ShapeError
from latnas.schema.spec import BlockSpec

Arch = tuple[int, ...]


@dataclass(frozen=True)
class OpChoice:
    """One candidate of a searchable layer: an op type and its hyper-parameters."""

    name: str  # e.g. "k3_e6" or "skip"
    op: str  # registered op type
    kernel: int = 3
    expansion: int = 1
    groups: int = 1
    branches: str = ""


@dataclass(frozen=True)
class LayerSlot:
    """One searchable layer: its fixed shape and which choices it allows."""

    index: int
    stage: int
    cin: int
    cout: int
    h: int
    w: int
    stride: int
    allowed: tuple[int, ...]  # indices into SearchSpace.choices


@dataclass(frozen=True)
class SearchSpace:
    name: str
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    choices: tuple[OpChoice, ...]
    layers: tuple[LayerSlot, ...]
    stem: tuple[BlockSpec, ...]
    head: tuple[BlockSpec, ...]
    batch: int = 1
    description: str = ""
    vital: tuple[int, ...] = field(default=())  # layers every path passes through (first of each stage)

    # ---------------------------------------------------------------- sizes
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_choices(self) -> int:
        return len(self.choices)

    @property
    def choice_names(self) -> list[str]:
        return [c.name for c in self.choices]

    def allowed_mask(self) -> np.ndarray:
        """Boolean (n_layers, n_choices) matrix of allowed choices."""
        mask = np.zeros((self.n_layers, self.n_choices), dtype=bool)
        for slot in self.layers:
            mask[slot.index, list(slot.allowed)] = True
        return mask

    def size(self) -> int:
        """Number of distinct archs."""
        n = 1
        for slot in self.layers:
            n *= len(slot.allowed)
        return n

    # --------------------------------------------------------------- archs
    def parse_arch(self, arch: str | Sequence[int]) -> Arch:
        """Parse and validate an arch string or sequence; one-line error if bad."""
        if isinstance(arch, str):
            text = arch.strip()
            if len(text) > 100_000:
                raise DataError(f"arch string of {len(text)} characters for space {self.name!r} is far too long")
            # ASCII digits only: int() and str.isdigit() also take '٣', '³', '+1' and '1_0'
            if "," in text or self.n_choices > 10:
                tokens = [t.strip() for t in text.split(",") if t.strip()]
            else:
                tokens = list(text)
            if not all(t.isascii() and t.isdigit() for t in tokens):
                shown = text if len(text) <= 80 else text[:77] + "..."
                raise DataError(f"arch {shown!r} for space {self.name!r} must be choice indices (ASCII digits)")
            values = tuple(int(t) for t in tokens)
        else:
            values = tuple(int(v) for v in arch)
        if len(values) != self.n_layers:
            raise DataError(f"arch {self.format_arch(values) if values else arch!r} has {len(values)} layers, space {self.name!r} has {self.n_layers}")
        for slot, v in zip(self.layers, values):
            if not 0 <= v < self.n_choices:
                raise DataError(f"arch layer {slot.index}: choice {v} out of range 0..{self.n_choices - 1}")
            if v not in slot.allowed:
                raise ShapeError(
                    f"arch layer {slot.index}: choice {self.choices[v].name!r} is not allowed there "
                    f"(allowed: {', '.join(self.choices[a].name for a in slot.allowed)})"
                )
        return values

    def live_layers(self, arch: str | Sequence[int]) -> tuple[bool, ...]:
        """Which searchable layers lie on an input-to-output path of the model.

        A layer that no path from the input to the output passes through is
        *dead*: its output never reaches the result, so a runtime that folds
        constants may drop it while another still runs it. A chain space has
        one path through every layer (all live); spaces with parallel paths
        (``nb201``) override :meth:`live_mask`.
        """
        return tuple(bool(v) for v in self.live_mask(np.asarray([self.parse_arch(arch)], dtype=np.int64))[0])

    def live_mask(self, archs: np.ndarray) -> np.ndarray:
        """``(n, n_layers)`` bool: :meth:`live_layers` of every row of an int arch matrix."""
        archs = np.asarray(archs)
        return np.ones(archs.reshape(-1, self.n_layers).shape, dtype=bool)

    def cut_off(self, archs: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: archs whose output does not depend on the input at all (no live path)."""
        return np.zeros(np.asarray(archs).reshape(-1, self.n_layers).shape[0], dtype=bool)

    def format_arch(self, arch: Sequence[int]) -> str:
        if self.n_choices <= 10:
            return "".join(str(int(v)) for v in arch)
        return ",".join(str(int(v)) for v in arch)

    def random_arch(self, rng: np.random.Generator | int | None = None) -> Arch:
        rng = np.random.default_rng(rng)
        return tuple(int(rng.choice(slot.allowed)) for slot in self.layers)

    def random_archs(self, n: int, rng: np.random.Generator | int | None = None, unique: bool = True) -> list[Arch]:
        rng = np.random.default_rng(rng)
        out: list[Arch] = []
        seen: set[Arch] = set()
        tries = 0
        while len(out) < n and tries < n * 100:
            a = self.random_arch(rng)
            tries += 1
            if unique and a in seen:
                continue
            seen.add(a)
            out.append(a)
        return out

    # -------------------------------------------------------------- blocks
    def layer_block(self, layer: int, choice: int) -> BlockSpec:
        """The block that ``choice`` puts at searchable ``layer``."""
        slot = self.layers[layer]
        c = self.choices[choice]
        return BlockSpec(
            op=c.op,
            cin=slot.cin,
            cout=slot.cout,
            h=slot.h,
            w=slot.w,
            stride=slot.stride,
            kernel=c.kernel,
            expansion=c.expansion,
            groups=c.groups,
            batch=self.batch,
            branches=c.branches,
        )

    def layer_blocks(self, layer: int, choice: int) -> tuple[BlockSpec, ...]:
        """Every block ``choice`` puts into the model at ``layer``; the layer's cost is their sum.

        One block in a chain space; a cell space (``nb201``) places an edge's op
        in every cell, at each stage's shape, so it returns all of them.
        """
        return (self.layer_block(layer, choice),)

    def fixed_blocks(self) -> tuple[BlockSpec, ...]:
        """Blocks every arch has (stem, head, and any fixed blocks between stages)."""
        return (*self.stem, *self.head)

    def decode(self, arch: str | Sequence[int]) -> list[BlockSpec]:
        """Blocks of the searchable layers of ``arch``."""
        a = self.parse_arch(arch)
        return [self.layer_block(i, c) for i, c in enumerate(a)]

    def blocks(self, arch: str | Sequence[int]) -> list[BlockSpec]:
        """Every block of the whole model: stem, searchable layers, head."""
        return [*self.stem, *self.decode(arch), *self.head]

    def build(self, arch: str | Sequence[int]):
        """The whole model of ``arch`` as a ``torch.nn.Sequential``."""
        from latnas.schema.ops import build_model  # torch: only when a model is built

        return build_model(self.blocks(arch))

    def layer_table(self) -> list[tuple[int, int, tuple[BlockSpec, ...]]]:
        """Every (layer, choice, blocks) the space can place (see :meth:`layer_blocks`)."""
        return [(slot.index, c, self.layer_blocks(slot.index, c)) for slot in self.layers for c in slot.allowed]

    def unique_blocks(self, include_fixed: bool = True) -> list[BlockSpec]:
        """Distinct blocks to profile: the per-layer block table, deduplicated, in layer order."""
        specs = [spec for _, _, blocks in self.layer_table() for spec in blocks]
        if include_fixed:
            fixed = self.fixed_blocks()
            specs = [*fixed[: len(self.stem)], *specs, *fixed[len(self.stem):]]
        seen: dict[str, BlockSpec] = {}
        for spec in specs:
            seen.setdefault(spec.key, spec)
        return list(seen.values())

    def with_batch(self, batch: int) -> "SearchSpace":
        return replace(
            self,
            batch=batch,
            stem=tuple(s.with_batch(batch) for s in self.stem),
            head=tuple(s.with_batch(batch) for s in self.head),
        )


def stacked_layers(
    channels: Sequence[int],
    depths: Sequence[int],
    strides: Sequence[int],
    cin: int,
    hw: tuple[int, int],
    allowed_fn,
) -> tuple[tuple[LayerSlot, ...], tuple[int, int], int, tuple[int, ...]]:
    """Lay out stages of searchable layers.

    Returns the slots, the final spatial size, the final channels and the vital
    layers (the first of each stage). ``allowed_fn(stride, cin, cout)`` gives
    the allowed choice indices of a layer.
    """
    if not (len(channels) == len(depths) == len(strides)):
        raise ShapeError("stage channels, depths and strides must have equal length")
    slots: list[LayerSlot] = []
    vital: list[int] = []
    h, w = hw
    idx = 0
    for stage, (c, d, s) in enumerate(zip(channels, depths, strides)):
        for j in range(d):
            stride = s if j == 0 else 1
            if stride > min(h, w):
                raise ShapeError(f"stage {stage}: a {h}x{w} input cannot be strided by {stride}")
            if j == 0:
                vital.append(idx)
            slots.append(LayerSlot(idx, stage, cin, c, h, w, stride, tuple(allowed_fn(stride, cin, c))))
            h, w = -(-h // stride), -(-w // stride)
            cin = c
            idx += 1
    return tuple(slots), (h, w), cin, tuple(vital)


def conv_head(cin: int, hidden: int, num_classes: int, hw: tuple[int, int], batch: int) -> tuple[BlockSpec, ...]:
    """The usual classification head: 1x1 conv to ``hidden`` + BN + ReLU, global pool, linear."""
    h, w = hw
    return (
        BlockSpec("conv", cin, hidden, h, w, 1, 1, batch=batch),
        BlockSpec("classifier", hidden, num_classes, h, w, 1, 1, batch=batch),
    )
