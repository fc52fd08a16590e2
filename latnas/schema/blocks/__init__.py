"""Re-parameterizable blocks, registered as ops (``dbb``)."""
from __future__ import annotations

from latnas.schema.blocks.dbb import BNAndPad, DiverseBranchBlock, check_dbb_config
from latnas.schema.branches import BRANCH_NAMES, parse_branches
from latnas.schema.blocks import ops as _ops  # noqa: F401  (registers op "dbb")

__all__ = ["BRANCH_NAMES", "BNAndPad", "DiverseBranchBlock", "check_dbb_config", "parse_branches"]
