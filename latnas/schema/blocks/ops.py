"""The ``dbb`` op: a :class:`DiverseBranchBlock` described by a :class:`BlockSpec`.

``BlockSpec(op="dbb", cin, cout, h, w, stride, kernel, groups=..., branches="kxk+1x1+id")``
builds the multi-branch block; with ``fused=True`` it builds it and calls
``reparameterize()``, so profilers can time both forms of the same block.
``branches=""`` means every branch that fits.
"""
from __future__ import annotations

from torch import nn

from latnas.schema.blocks.dbb import DiverseBranchBlock, check_dbb_config
from latnas.schema.errors import ShapeError
from latnas.schema.opdef import OpDef, register_op
from latnas.schema.spec import BlockSpec


@register_op("dbb")
class DBBOp(OpDef):
    def validate(self, spec: BlockSpec) -> None:
        try:
            check_dbb_config(spec.cin, spec.cout, spec.kernel, spec.stride, spec.groups, spec.branches or None)
        except ShapeError as exc:
            raise ShapeError(f"{spec.key}: {exc}") from None

    def build(self, spec: BlockSpec) -> nn.Module:
        block = DiverseBranchBlock(
            spec.cin, spec.cout, spec.kernel, spec.stride, spec.groups, branches=spec.branches or None
        )
        if spec.fused:
            block.reparameterize()
        return block
