"""Structural re-parameterization: pure kernel transforms and whole-model fusion."""
from __future__ import annotations

from latnas.reparam.model import reparameterize_model
from latnas.reparam.transforms import (
    add_branches,
    avgpool_kernel,
    fuse_conv_bn,
    identity_kernel,
    merge_1x1_kxk,
    pad_kernel,
)

__all__ = [
    "add_branches",
    "avgpool_kernel",
    "fuse_conv_bn",
    "identity_kernel",
    "merge_1x1_kxk",
    "pad_kernel",
    "reparameterize_model",
]
