"""RepNAS space: per layer, which optional Diverse-Branch-Block branches are on.

A small CIFAR-style backbone (input 3x32x32) of :class:`~latnas.blocks.DiverseBranchBlock`
layers, all ``k x k`` (kernel 3 by default) with ReLU after the branch sum:

- stem: DBB 3 -> 16, branches ``kxk+1x1`` (fixed);
- 9 searchable layers in 4 stages, depths (2, 3, 3, 1), channels
  (32, 64, 128, 256), first-layer strides (1, 2, 2, 2);
- head: global average pool + linear -> 100 classes.

The ``kxk`` branch is always on. A choice is a 4-bit mask over the optional
branches ``OPTIONAL_BRANCHES = ("1x1", "1x1_kxk", "1x1_avg", "id")``: bit ``i``
set means ``OPTIONAL_BRANCHES[i]`` is on. So choice 0 is a plain conv block,
choice 7 is the classic four-branch DBB and choice 15 adds the identity.
``id`` only fits layers that keep their shape (stride 1, in == out), so those
layers allow choices 0..15 and the others 0..7. With 16 choices, arch strings
are comma-separated (``"7,7,15,..."``). Every model of the space fuses with
:func:`latnas.reparameterize_model` into a plain chain of conv+bias+ReLU.
"""
from __future__ import annotations

from typing import Iterable

from latnas.branches import format_branches, parse_branches
from latnas.errors import UnknownNameError
from latnas.spaces.base import OpChoice, SearchSpace, stacked_layers
from latnas.spaces.registry import register_space
from latnas.spec import BlockSpec

OPTIONAL_BRANCHES = ("1x1", "1x1_kxk", "1x1_avg", "id")
REPNAS_CHANNELS = (32, 64, 128, 256)
REPNAS_DEPTHS = (2, 3, 3, 1)
REPNAS_STRIDES = (1, 2, 2, 2)
REPNAS_STEM_CHANNELS = 16
REPNAS_STEM_BRANCHES = "kxk+1x1"


def choice_branches(choice: int) -> str:
    """The ``"+"``-joined branch string of a choice (a bitmask over :data:`OPTIONAL_BRANCHES`)."""
    if not 0 <= choice < 2 ** len(OPTIONAL_BRANCHES):
        raise UnknownNameError(f"RepNAS choice {choice} out of range 0..{2 ** len(OPTIONAL_BRANCHES) - 1}")
    return format_branches(["kxk", *(b for i, b in enumerate(OPTIONAL_BRANCHES) if choice >> i & 1)])


def branches_choice(branches: str | Iterable[str]) -> int:
    """Inverse of :func:`choice_branches`: the choice index of a branch set (``kxk`` implied)."""
    names = set(parse_branches(branches) or ()) - {"kxk"}
    extra = names - set(OPTIONAL_BRANCHES)
    if extra:
        raise UnknownNameError(f"branch {sorted(extra)[0]!r} is not searchable in RepNAS (optional: {', '.join(OPTIONAL_BRANCHES)})")
    return sum(1 << i for i, b in enumerate(OPTIONAL_BRANCHES) if b in names)


def _choices(kernel: int) -> tuple[OpChoice, ...]:
    return tuple(
        OpChoice(choice_branches(c), "dbb", kernel=kernel, branches=choice_branches(c))
        for c in range(2 ** len(OPTIONAL_BRANCHES))
    )


def _allowed(stride: int, cin: int, cout: int) -> tuple[int, ...]:
    id_bit = 1 << OPTIONAL_BRANCHES.index("id")
    keeps_shape = stride == 1 and cin == cout
    return tuple(c for c in range(2 ** len(OPTIONAL_BRANCHES)) if keeps_shape or not c & id_bit)


@register_space("repnas")
def repnas_space(batch: int = 1, num_classes: int = 100, resolution: int = 32, kernel: int = 3) -> SearchSpace:
    """RepNAS branch-mask space on a CIFAR-style DBB backbone (see module docstring)."""
    stem = (BlockSpec("dbb", 3, REPNAS_STEM_CHANNELS, resolution, resolution, 1, kernel,
                      batch=batch, branches=REPNAS_STEM_BRANCHES),)
    layers, (h, w), cout, vital = stacked_layers(
        REPNAS_CHANNELS, REPNAS_DEPTHS, REPNAS_STRIDES, REPNAS_STEM_CHANNELS, (resolution, resolution), _allowed
    )
    head = (BlockSpec("classifier", cout, num_classes, h, w, 1, 1, batch=batch),)
    return SearchSpace(
        name="repnas",
        input_shape=(3, resolution, resolution),
        num_classes=num_classes,
        choices=_choices(kernel),
        layers=layers,
        stem=stem,
        head=head,
        batch=batch,
        description=f"RepNAS: DBB branch masks (kxk always on, +1x1/1x1_kxk/1x1_avg/id) over a {len(layers)}-layer CIFAR backbone",
        vital=vital,
    )
