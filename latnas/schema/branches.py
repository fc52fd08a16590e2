"""Diverse-Branch-Block branch names and branch masks, without torch.

The schema layer (``latnas.schema.spaces.repnas``, ``BlockSpec.branches``) and the
torch block (``latnas.schema.blocks.dbb``) share these names; keeping them here lets
spaces describe DBB layers without importing torch.

A branch mask is a set of names, written ``"+"``-joined in canonical order
(``"kxk+1x1+id"``).
"""
from __future__ import annotations

from typing import Iterable

from latnas.schema.errors import UnknownNameError

BRANCH_NAMES = ("kxk", "1x1", "1xk", "kx1", "1x1_kxk", "1x1_avg", "id")
"""Every branch a Diverse Branch Block knows, in canonical order."""


def parse_branches(branches: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Normalise a branch mask to a tuple of known names in canonical order (None or empty gives None)."""
    if branches is None:
        return None
    names = [b.strip() for b in branches.split("+")] if isinstance(branches, str) else [str(b).strip() for b in branches]
    names = [n for n in names if n]
    if not names:
        return None
    unknown = [n for n in names if n not in BRANCH_NAMES]
    if unknown:
        raise UnknownNameError(f"unknown DBB branch {unknown[0]!r} (known: {', '.join(BRANCH_NAMES)})")
    return tuple(n for n in BRANCH_NAMES if n in names)


def format_branches(branches: str | Iterable[str]) -> str:
    """The canonical ``"+"``-joined string of a branch mask (``""`` for none)."""
    return "+".join(parse_branches(branches) or ())


def fitting_branches(in_channels: int, out_channels: int, stride: int) -> tuple[str, ...]:
    """Every branch that fits a shape: all of them, ``id`` only when the shape is kept."""
    keep = in_channels == out_channels and stride == 1
    return tuple(b for b in BRANCH_NAMES if b != "id" or keep)
