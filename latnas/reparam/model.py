"""Whole-model re-parameterization: turn a training model into its deploy form."""
from __future__ import annotations

import copy
import inspect
import logging

from torch import nn

log = logging.getLogger(__name__)

FUSE_METHODS = ("reparameterize", "switch_to_deploy", "fuse")
"""Method names called on submodules, in order of preference (latnas/timm, DBB/RepVGG, MobileOne-style)."""


def _takes_no_arguments(method) -> bool:
    """True when ``method()`` is a valid call (skips e.g. a VAE's ``reparameterize(mu, logvar)``)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _fold_sequential_conv_bn(model: nn.Module) -> int:
    """Fold ``Conv2d -> BatchNorm2d`` pairs inside ``nn.Sequential`` containers; return how many."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        keys = list(module._modules)
        for a, b in zip(keys, keys[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
                folded += 1
    return folded


def reparameterize_model(model: nn.Module, inplace: bool = False, fold_bn: bool = True) -> nn.Module:
    """Return the deploy (fused) form of ``model``, in eval mode.

    Every submodule with a ``reparameterize()``, ``switch_to_deploy()`` or
    ``fuse()`` method callable without arguments is fused (children before parents), then, with
    ``fold_bn``, remaining ``Conv2d -> BatchNorm2d`` pairs in ``nn.Sequential``
    containers are folded. Fusion uses BN running statistics, so the model is
    put in eval mode first. Idempotent: fusing a fused model changes nothing.
    The input is deep-copied unless ``inplace``.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    fused = 0
    # children before parents, so a parent's own fuse sees already-fused children
    for _, module in reversed(list(model.named_modules())):
        for name in FUSE_METHODS:
            method = getattr(module, name, None)
            if callable(method) and _takes_no_arguments(method):
                method()
                fused += 1
                break
    folded = _fold_sequential_conv_bn(model) if fold_bn else 0
    model.eval()
    log.debug("reparameterized %d modules, folded %d conv-BN pairs", fused, folded)
    return model
