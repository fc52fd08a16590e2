"""Structural re-parameterization: pure kernel transforms and whole-model fusion."""
from __future__ import annotations

from latnas.reparam import transforms as _transforms
from latnas.reparam.model import fold_conv_bn, reparameterize_model
from latnas.reparam.transforms import (
    add_branches,
    avgpool_kernel,
    bn_affine,
    bn_kwargs,
    fuse_conv_bn,
    identity_kernel,
    merge_1x1_kxk,
    pad_kernel,
)

__all__ = ["fold_conv_bn", "reparameterize_model", *(n for n in _transforms.__all__ if n != "KernelBias")]
