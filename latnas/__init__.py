"""latnas: hardware-aware neural architecture search.

The bottom layer (this package's top level) is the block/space schema:
:class:`BlockSpec`, the op registry, search spaces and analytic features.
Profilers (``profilers``) and predictors (``predictors``) build on it; search,
export and the CLI sit above.

The public names below are imported on first access (PEP 562), so that
``import latnas.schema.errors`` or the CLI's ``--help`` does not pay for torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from latnas.schema import __version__  # noqa: F401  (one version, defined at the bottom layer)
from latnas.schema.lazy import lazy_exports

_PUBLIC: dict[str, str] = {
    "BlockCost": "latnas.schema.features",
    "BlockSpec": "latnas.schema.spec",
    "DiverseBranchBlock": "latnas.schema.blocks",
    "LatencyTable": "latnas.schema.latency_table",
    "LatnasError": "latnas.schema.errors",
    "OPS": "latnas.schema.opdef",
    "OpDef": "latnas.schema.opdef",
    "SPACES": "latnas.schema.spaces",
    "SearchSpace": "latnas.schema.spaces",
    "block_cost": "latnas.schema.features",
    "build_model": "latnas.schema.ops",
    "flops_table": "latnas.schema.latency_table",
    "get_op": "latnas.schema.opdef",
    "get_space": "latnas.schema.spaces",
    "latency_fn": "latnas.any_model",
    "predict_latency": "latnas.any_model",
    "register_op": "latnas.schema.opdef",
    "register_space": "latnas.schema.spaces",
    "reparameterize_model": "latnas.reparam",
}
"""Public name -> module that defines it."""

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())


if TYPE_CHECKING:  # pragma: no cover  (static tools see the eager form)
    from latnas.any_model import latency_fn, predict_latency
    from latnas.schema.blocks import DiverseBranchBlock
    from latnas.schema.errors import LatnasError
    from latnas.schema.features import BlockCost, block_cost
    from latnas.schema.latency_table import LatencyTable, flops_table
    from latnas.schema.opdef import OPS, OpDef, get_op, register_op
    from latnas.schema.ops import build_model
    from latnas.reparam import reparameterize_model
    from latnas.schema.spaces import SPACES, SearchSpace, get_space, register_space
    from latnas.schema.spec import BlockSpec
