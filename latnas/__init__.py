"""latnas: hardware-aware neural architecture search.

The bottom layer (this package's top level) is the block/space schema:
:class:`BlockSpec`, the op registry, search spaces and analytic features.
Profilers (``profilers``) and predictors (``predictors``) build on it; search,
export and the CLI sit above.

The public names below are imported on first access (PEP 562), so that
``import latnas.errors`` or the CLI's ``--help`` does not pay for torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from latnas.lazy import lazy_exports

__version__ = "0.1.0"

_PUBLIC: dict[str, str] = {
    "BlockCost": "latnas.features",
    "BlockSpec": "latnas.spec",
    "DiverseBranchBlock": "latnas.blocks",
    "LatencyTable": "latnas.latency_table",
    "LatnasError": "latnas.errors",
    "OPS": "latnas.opdef",
    "OpDef": "latnas.opdef",
    "SPACES": "latnas.spaces",
    "SearchSpace": "latnas.spaces",
    "block_cost": "latnas.features",
    "build_model": "latnas.ops",
    "flops_table": "latnas.latency_table",
    "get_op": "latnas.opdef",
    "get_space": "latnas.spaces",
    "latency_fn": "latnas.any_model",
    "predict_latency": "latnas.any_model",
    "register_op": "latnas.opdef",
    "register_space": "latnas.spaces",
    "reparameterize_model": "latnas.reparam",
}
"""Public name -> module that defines it."""

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())


if TYPE_CHECKING:  # pragma: no cover  (static tools see the eager form)
    from latnas.any_model import latency_fn, predict_latency
    from latnas.blocks import DiverseBranchBlock
    from latnas.errors import LatnasError
    from latnas.features import BlockCost, block_cost
    from latnas.latency_table import LatencyTable, flops_table
    from latnas.opdef import OPS, OpDef, get_op, register_op
    from latnas.ops import build_model
    from latnas.reparam import reparameterize_model
    from latnas.spaces import SPACES, SearchSpace, get_space, register_space
    from latnas.spec import BlockSpec
