"""A MobileNetV2 / ProxylessNAS-style ImageNet space.

Input 3x224x224; stem 3x3 conv 32 stride 2 and a fixed k3_e1 block to 16
channels; 21 searchable layers in 6 stages with depths [4, 4, 4, 4, 4, 1],
channels [24, 40, 80, 96, 192, 320] and first-layer strides [2, 2, 2, 1, 2, 1];
head 1x1 conv 320 -> 1280, global average pool, linear -> 1000. Each layer
picks kernel 3/5/7 and expansion 3/6, or ``skip`` where the layer keeps its
shape (stride 1, cin == cout), as in ProxylessNAS.
"""
from __future__ import annotations

from latnas.schema.spaces.base import OpChoice, SearchSpace, conv_head, stacked_layers
from latnas.schema.spaces.registry import register_space
from latnas.schema.spec import BlockSpec

PROXYLESS_CHOICES = (
    OpChoice("k3_e3", "mbconv", kernel=3, expansion=3),
    OpChoice("k3_e6", "mbconv", kernel=3, expansion=6),
    OpChoice("k5_e3", "mbconv", kernel=5, expansion=3),
    OpChoice("k5_e6", "mbconv", kernel=5, expansion=6),
    OpChoice("k7_e3", "mbconv", kernel=7, expansion=3),
    OpChoice("k7_e6", "mbconv", kernel=7, expansion=6),
    OpChoice("skip", "skip", kernel=1),
)
PROXYLESS_CHANNELS = (24, 40, 80, 96, 192, 320)
PROXYLESS_DEPTHS = (4, 4, 4, 4, 4, 1)
PROXYLESS_STRIDES = (2, 2, 2, 1, 2, 1)


def _allowed(stride: int, cin: int, cout: int) -> tuple[int, ...]:
    convs = tuple(range(6))
    return convs + (6,) if stride == 1 and cin == cout else convs


@register_space("proxyless")
def proxyless_space(batch: int = 1, num_classes: int = 1000, resolution: int = 224) -> SearchSpace:
    """MobileNetV2/ProxylessNAS-style ImageNet space (see module docstring)."""
    r2 = -(-resolution // 2)
    stem = (
        BlockSpec("conv", 3, 32, resolution, resolution, 2, 3, batch=batch),
        BlockSpec("mbconv", 32, 16, r2, r2, 1, 3, expansion=1, batch=batch),
    )
    layers, (h, w), cout, vital = stacked_layers(
        PROXYLESS_CHANNELS, PROXYLESS_DEPTHS, PROXYLESS_STRIDES, 16, (r2, r2), _allowed
    )
    head = conv_head(cout, 1280, num_classes, (h, w), batch)
    return SearchSpace(
        name="proxyless",
        input_shape=(3, resolution, resolution),
        num_classes=num_classes,
        choices=PROXYLESS_CHOICES,
        layers=layers,
        stem=stem,
        head=head,
        batch=batch,
        description="MobileNetV2/ProxylessNAS-style ImageNet space (21 layers, k3/5/7 x e3/6 + skip)",
        vital=vital,
    )
