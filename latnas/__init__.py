"""latnas: hardware-aware neural architecture search.

The bottom layer (this package's top level) is the block/space schema:
:class:`BlockSpec`, the op registry, search spaces and analytic features.
Profilers (``profilers``) and predictors (``predictors``) build on it; search,
export and the CLI sit above.
"""
from __future__ import annotations

from latnas.errors import LatnasError
from latnas.features import BlockCost, block_cost
from latnas.latency_table import LatencyTable, flops_table
from latnas.ops import OPS, OpDef, build_model, get_op, register_op
from latnas.spaces import SPACES, SearchSpace, get_space, register_space
from latnas.spec import BlockSpec
from latnas.blocks import DiverseBranchBlock
from latnas.reparam import reparameterize_model

__version__ = "0.1.0"

__all__ = [
    "BlockCost",
    "BlockSpec",
    "DiverseBranchBlock",
    "LatencyTable",
    "LatnasError",
    "OPS",
    "OpDef",
    "SPACES",
    "SearchSpace",
    "block_cost",
    "build_model",
    "flops_table",
    "get_op",
    "get_space",
    "register_op",
    "register_space",
    "reparameterize_model",
]
