"""Structural re-parameterization: pure kernel transforms and whole-model fusion."""
from __future__ import annotations

from latnas.schema import transforms as _transforms
from latnas.reparam.model import fold_conv_bn, reparameterize_model
from latnas.schema.transforms import *  # noqa: F403  (re-exports transforms.__all__)

__all__ = ["fold_conv_bn", "reparameterize_model", *(n for n in _transforms.__all__ if n != "KernelBias")]
