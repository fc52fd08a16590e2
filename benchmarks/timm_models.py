"""Third-party model families for benchmarks/any_model.py: timm, random weights, no download.

timm 1.0 imports torchvision at module level, but the registry's torchvision
wheel needs a CUDA torch (and would replace our CPU pin). timm's model
definitions do not use torchvision, so :func:`import_timm` installs an inert
stand-in for the few torchvision names timm imports (anything called raises),
then imports timm (``pip install --no-deps timm``). A real torchvision, when
importable, is used as is.
"""
from __future__ import annotations

import enum
import importlib.util
import sys
import types

TORCHVISION_NAMES = ("torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
                     "torchvision.transforms.functional", "torchvision.datasets", "torchvision.utils",
                     "torchvision.models", "torchvision.models.feature_extraction")

#: family -> [(timm name, input resolution)]: 2-3 widths/resolutions each
FAMILIES: dict[str, list[tuple[str, int]]] = {
    "mobilenetv2": [("mobilenetv2_050", 224), ("mobilenetv2_100", 192), ("mobilenetv2_140", 224)],
    "mobilenetv3": [("mobilenetv3_small_075", 224), ("mobilenetv3_small_100", 160), ("mobilenetv3_large_100", 224)],
    "mnasnet": [("mnasnet_050", 224), ("mnasnet_100", 192), ("mnasnet_140", 224)],
    "efficientnet": [("efficientnet_b0", 160), ("efficientnet_b0", 224), ("efficientnet_lite0", 224)],
    "resnet": [("resnet10t", 160), ("resnet18", 160), ("resnet18d", 224)],
    "regnet": [("regnetx_002", 224), ("regnety_002", 224), ("regnetx_004", 192)],
    "ghostnet": [("ghostnet_050", 224), ("ghostnet_100", 192), ("ghostnet_100", 224)],
    "repvgg": [("repvgg_a0", 160), ("repvgg_a0", 224), ("repvgg_a1", 160)],
    "mobileone": [("mobileone_s0", 160), ("mobileone_s0", 224), ("mobileone_s1", 160)],
    "convnext": [("convnext_atto", 160), ("convnext_atto", 224), ("convnext_femto", 160)],
    "lcnet": [("lcnet_050", 224), ("lcnet_075", 224), ("lcnet_100", 192)],
}


class _Inert:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is not installed (timm imported with latnas's stand-in)")


class _InertMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return cls


_Inert = _InertMeta("_Inert", (), dict(_Inert.__dict__))


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert


def import_timm():
    """``timm`` (None when it is not installed), importable without torchvision."""
    if importlib.util.find_spec("timm") is None:
        return None
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        for name in TORCHVISION_NAMES:
            sys.modules.setdefault(name, _StandIn(name))
        fn = sys.modules["torchvision.transforms.functional"]
        if isinstance(fn, _StandIn):
            fn.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS")
    import timm

    return timm


def build(name: str, seed: int = 0):
    """A timm model with random weights (no download), in eval mode, deploy-fused by latnas."""
    import torch

    from latnas.reparam import reparameterize_model

    timm = import_timm()
    if timm is None:
        raise RuntimeError("timm is not installed: .venv/bin/pip install --no-deps timm")
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False).eval()
    return reparameterize_model(model)
