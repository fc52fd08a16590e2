"""RepNAS space: per layer, which of the six searchable Diverse-Branch-Block branches are on.

The branch space of the RepNAS authors' code: six searchable branches per
layer, in their order ``SEARCHABLE_BRANCHES = ("1x1", "1x1_avg", "kxk",
"1x1_kxk", "1xk", "kx1")`` (1x1, 1x1-avg, 3x3, 1x1-3x3, 1x3, 3x1 at kernel
3), plus an identity BN branch (``id``) that is always on where the layer
keeps its shape (stride 1, in == out) and is not searched.

A small CIFAR-style backbone (input 3x32x32) of
:class:`~latnas.schema.blocks.DiverseBranchBlock` layers, ReLU after the branch sum:

- stem: DBB 3 -> 16, branches ``kxk+1x1`` (fixed);
- 9 searchable layers in 4 stages, depths (2, 3, 3, 1), channels
  (32, 64, 128, 256), first-layer strides (1, 2, 2, 2);
- head: global average pool + linear -> 100 classes.

A choice is a 6-bit mask: bit ``i`` set means ``SEARCHABLE_BRANCHES[i]`` is
on. So choice 4 is a plain ``kxk`` conv, choice 15 the classic four-branch
DBB (1x1, 1x1-avg, kxk, 1x1-kxk) and 63 every branch. Choice 0 (no searchable
branch) is allowed only where ``id`` is on (the block is then the BN
identity, which still fuses into one conv). With 64 choices, arch strings are
comma-separated (``"15,15,4,..."``). Every model of the space fuses with
:func:`latnas.reparameterize_model` into a plain chain of conv+bias+ReLU.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from latnas.schema.branches import format_branches, parse_branches
from latnas.schema.errors import UnknownNameError
from latnas.schema.spaces.base import OpChoice, SearchSpace, stacked_layers
from latnas.schema.spaces.registry import register_space
from latnas.schema.spec import BlockSpec

SEARCHABLE_BRANCHES = ("1x1", "1x1_avg", "kxk", "1x1_kxk", "1xk", "kx1")
ALWAYS_ON_BRANCH = "id"  # on wherever the layer keeps its shape; never searched
N_CHOICES = 2 ** len(SEARCHABLE_BRANCHES)
KXK_ONLY = 1 << SEARCHABLE_BRANCHES.index("kxk")  # a plain conv
FOUR_BRANCH_DBB = sum(1 << SEARCHABLE_BRANCHES.index(b) for b in ("1x1", "1x1_avg", "kxk", "1x1_kxk"))
REPNAS_CHANNELS = (32, 64, 128, 256)
REPNAS_DEPTHS = (2, 3, 3, 1)
REPNAS_STRIDES = (1, 2, 2, 2)
REPNAS_STEM_CHANNELS = 16
REPNAS_STEM_BRANCHES = "kxk+1x1"


def choice_branches(choice: int) -> str:
    """The ``"+"``-joined searchable branches of a choice (a bitmask over :data:`SEARCHABLE_BRANCHES`)."""
    if not 0 <= choice < N_CHOICES:
        raise UnknownNameError(f"RepNAS choice {choice} out of range 0..{N_CHOICES - 1}")
    return format_branches([b for i, b in enumerate(SEARCHABLE_BRANCHES) if choice >> i & 1])


def branches_choice(branches: str | Iterable[str]) -> int:
    """Inverse of :func:`choice_branches`: the choice index of a branch set (``id`` is ignored: it is not searched)."""
    names = set(parse_branches(branches) or ()) - {ALWAYS_ON_BRANCH}
    extra = names - set(SEARCHABLE_BRANCHES)
    if extra:
        raise UnknownNameError(f"branch {sorted(extra)[0]!r} is not searchable in RepNAS "
                               f"(searchable: {', '.join(SEARCHABLE_BRANCHES)})")
    return sum(1 << i for i, b in enumerate(SEARCHABLE_BRANCHES) if b in names)


def _choices(kernel: int) -> tuple[OpChoice, ...]:
    return tuple(
        OpChoice(choice_branches(c) or ALWAYS_ON_BRANCH, "dbb", kernel=kernel, branches=choice_branches(c))
        for c in range(N_CHOICES)
    )


def _allowed(stride: int, cin: int, cout: int) -> tuple[int, ...]:
    keeps_shape = stride == 1 and cin == cout
    return tuple(c for c in range(N_CHOICES) if keeps_shape or c)


@dataclass(frozen=True)
class RepNASSpace(SearchSpace):
    """The RepNAS space: a layer's block is its choice's branches plus ``id`` where the shape is kept."""

    def keeps_shape(self, layer: int) -> bool:
        slot = self.layers[layer]
        return slot.stride == 1 and slot.cin == slot.cout

    def layer_block(self, layer: int, choice: int) -> BlockSpec:
        spec = super().layer_block(layer, choice)
        if self.keeps_shape(layer):
            spec = replace(spec, branches=format_branches([*(parse_branches(spec.branches) or ()), ALWAYS_ON_BRANCH]))
        return spec


@register_space("repnas")
def repnas_space(batch: int = 1, num_classes: int = 100, resolution: int = 32, kernel: int = 3) -> SearchSpace:
    """RepNAS branch-mask space on a CIFAR-style DBB backbone (see module docstring)."""
    stem = (BlockSpec("dbb", 3, REPNAS_STEM_CHANNELS, resolution, resolution, 1, kernel,
                      batch=batch, branches=REPNAS_STEM_BRANCHES),)
    layers, (h, w), cout, vital = stacked_layers(
        REPNAS_CHANNELS, REPNAS_DEPTHS, REPNAS_STRIDES, REPNAS_STEM_CHANNELS, (resolution, resolution), _allowed
    )
    head = (BlockSpec("classifier", cout, num_classes, h, w, 1, 1, batch=batch),)
    return RepNASSpace(
        name="repnas",
        input_shape=(3, resolution, resolution),
        num_classes=num_classes,
        choices=_choices(kernel),
        layers=layers,
        stem=stem,
        head=head,
        batch=batch,
        description=(f"RepNAS: 6 searchable DBB branches (1x1, 1x1_avg, kxk, 1x1_kxk, 1xk, kx1) + id always on at "
                     f"stride 1, over a {len(layers)}-layer CIFAR backbone"),
        vital=vital,
    )
