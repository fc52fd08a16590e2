"""The FBNet search space on CIFAR-100, exactly as in the shared latency data.

Macro-architecture (input 3x32x32): a 3x3 conv stem with 16 channels; 22
searchable layers in 7 stages with depths [1, 4, 4, 4, 4, 4, 1], channels
[16, 24, 32, 64, 112, 184, 352] and first-layer strides [1, 1, 2, 2, 1, 2, 1];
a head of 1x1 conv 352 -> 1504 + BN + ReLU, global average pool, linear -> 100.
Choice digits: 0 k3_e1, 1 k3_e1_g2, 2 k3_e3, 3 k3_e6, 4 k5_e1, 5 k5_e1_g2,
6 k5_e3, 7 k5_e6, 8 skip.
"""
from __future__ import annotations

from latnas.schema.spaces.base import OpChoice, SearchSpace, conv_head, stacked_layers
from latnas.schema.spaces.registry import register_space
from latnas.schema.spec import BlockSpec

FBNET_CHOICES = (
    OpChoice("k3_e1", "mbconv", kernel=3, expansion=1),
    OpChoice("k3_e1_g2", "mbconv", kernel=3, expansion=1, groups=2),
    OpChoice("k3_e3", "mbconv", kernel=3, expansion=3),
    OpChoice("k3_e6", "mbconv", kernel=3, expansion=6),
    OpChoice("k5_e1", "mbconv", kernel=5, expansion=1),
    OpChoice("k5_e1_g2", "mbconv", kernel=5, expansion=1, groups=2),
    OpChoice("k5_e3", "mbconv", kernel=5, expansion=3),
    OpChoice("k5_e6", "mbconv", kernel=5, expansion=6),
    OpChoice("skip", "skip", kernel=1),
)
FBNET_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
FBNET_DEPTHS = (1, 4, 4, 4, 4, 4, 1)
FBNET_STRIDES = (1, 1, 2, 2, 1, 2, 1)
FBNET_STEM_CHANNELS = 16
FBNET_HEAD_CHANNELS = 1504


@register_space("fbnet")
def fbnet_space(batch: int = 1, num_classes: int = 100, resolution: int = 32) -> SearchSpace:
    """FBNet space with the CIFAR-100 macro-architecture (see module docstring)."""
    hw = (resolution, resolution)
    stem = (BlockSpec("conv", 3, FBNET_STEM_CHANNELS, resolution, resolution, 1, 3, batch=batch),)
    every = tuple(range(len(FBNET_CHOICES)))
    layers, (h, w), cout, vital = stacked_layers(
        FBNET_CHANNELS, FBNET_DEPTHS, FBNET_STRIDES, FBNET_STEM_CHANNELS, hw, lambda s, ci, co: every
    )
    head = conv_head(cout, FBNET_HEAD_CHANNELS, num_classes, (h, w), batch)
    return SearchSpace(
        name="fbnet",
        input_shape=(3, resolution, resolution),
        num_classes=num_classes,
        choices=FBNET_CHOICES,
        layers=layers,
        stem=stem,
        head=head,
        batch=batch,
        description="FBNet space, CIFAR-100 macro-architecture (22 layers, 9 ops)",
        vital=vital,
    )
