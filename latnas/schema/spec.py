"""The block spec: the unit that is profiled, predicted and searched over.

A :class:`BlockSpec` is frozen and hashable, has a stable string ``key`` that
profile stores and predictors use, converts to and from plain dicts (for JSON
and the remote agent), and builds to a ``torch.nn.Module`` through the op
registry in :mod:`latnas.schema.opdef` (torch is only imported when a block is built).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from latnas.schema.errors import DataError, ShapeError
from latnas.schema.opdef import get_op


@dataclass(frozen=True)
class BlockSpec:
    """One block at one input shape.

    Fields not used by an op keep their defaults (for example ``expansion`` for
    a plain conv) so that equal blocks have equal keys.
    """

    op: str  # registered op type: "mbconv", "skip", "conv", "classifier", "dbb", ...
    cin: int  # input channels
    cout: int  # output channels
    h: int  # input height
    w: int  # input width
    stride: int = 1
    kernel: int = 3
    expansion: int = 1  # inverted-bottleneck expansion ratio (mbconv)
    groups: int = 1  # groups of the 1x1 convs (mbconv) or of the conv (conv, dbb)
    batch: int = 1
    branches: str = ""  # op-specific branch mask, e.g. DBB branches "kxk+1x1+avg"
    fused: bool = False  # build the deploy (re-parameterized) form of the block

    # ------------------------------------------------------------------ keys
    @property
    def key(self) -> str:
        """Stable, human-readable identity used by stores and predictors."""
        parts = [
            self.op,
            f"i{self.cin}",
            f"o{self.cout}",
            f"h{self.h}",
            f"w{self.w}",
            f"s{self.stride}",
            f"k{self.kernel}",
            f"e{self.expansion}",
            f"g{self.groups}",
            f"b{self.batch}",
        ]
        if self.branches:
            parts.append(f"m{self.branches}")
        if self.fused:
            parts.append("fused")
        return "_".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BlockSpec":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise DataError(f"unknown block spec fields: {', '.join(sorted(unknown))}")
        try:
            spec = cls(**data)
        except TypeError as exc:
            raise DataError(f"bad block spec: {exc}") from None
        for f in fields(cls):
            value = getattr(spec, f.name)
            expected = {"str": str, "int": int, "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise DataError(f"block spec field {f.name!r} must be {expected.__name__}, got {value!r}")
        return spec

    def with_batch(self, batch: int) -> "BlockSpec":
        return replace(self, batch=batch)

    def with_fused(self, fused: bool = True) -> "BlockSpec":
        return replace(self, fused=fused)

    # ---------------------------------------------------------------- shapes
    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.cin, self.h, self.w)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return get_op(self.op).output_shape(self)

    @property
    def out_hw(self) -> tuple[int, int]:
        """Spatial size after a 'same'-padded stride."""
        return (-(-self.h // self.stride), -(-self.w // self.stride))

    def validate(self) -> "BlockSpec":
        """Raise :class:`ShapeError` with a one-line reason if the block cannot exist."""
        for name in ("cin", "cout", "h", "w", "stride", "kernel", "expansion", "groups", "batch"):
            if getattr(self, name) < 1:
                raise ShapeError(f"{self.key}: {name} must be >= 1, got {getattr(self, name)}")
        if self.stride > min(self.h, self.w):
            raise ShapeError(
                f"{self.key}: stride {self.stride} on a {self.h}x{self.w} input leaves no spatial positions"
            )
        get_op(self.op).validate(self)
        return self

    def build(self):
        """Build the block as a ``torch.nn.Module`` (validated first)."""
        self.validate()
        return get_op(self.op).build(self)


def check_divides(spec: BlockSpec, what: str, channels: int, groups: int) -> None:
    """Shared check: ``groups`` must divide ``channels``."""
    if channels % groups:
        raise ShapeError(f"{spec.key}: groups={groups} does not divide {what}={channels}")
