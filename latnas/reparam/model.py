"""Whole-model re-parameterization: turn a training model into its deploy form."""
from __future__ import annotations

import copy
import inspect
import logging

import torch
from torch import nn

from latnas.schema.transforms import bn_kwargs, fuse_conv_bn

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


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A copy of ``conv`` (with bias) equal to ``bn(conv(x))`` in eval mode, via :func:`fuse_conv_bn`."""
    kernel, bias = fuse_conv_bn(conv.weight, **bn_kwargs(bn), conv_bias=conv.bias)
    fused = copy.deepcopy(conv)  # keeps stride, padding, dilation, groups, padding_mode
    fused.weight = nn.Parameter(kernel.detach().clone(), requires_grad=conv.weight.requires_grad)
    fused.bias = nn.Parameter(bias.detach().clone(), requires_grad=conv.weight.requires_grad)
    return fused


def _fold_sequential_conv_bn(model: nn.Module) -> int:
    """Fold ``Conv2d -> BatchNorm2d`` pairs inside ``nn.Sequential`` containers; return how many."""
    folded = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        keys = list(module._modules)
        for a, b in zip(keys, keys[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                module._modules[a] = fold_conv_bn(conv, bn)
                module._modules[b] = nn.Identity()
                folded += 1
    return folded


def _fuse_method(module: nn.Module):
    """The first of :data:`FUSE_METHODS` that ``module`` has and that takes no arguments, or None."""
    for name in FUSE_METHODS:
        method = getattr(module, name, None)
        if callable(method) and _takes_no_arguments(method):
            return method
    return None


def _fuse_tree(module: nn.Module, done: dict[int, tuple[nn.Module, nn.Module, bool]]) -> nn.Module:
    """Fuse ``module``'s subtree top-down (the timm order); return what replaces ``module``.

    A module with a fuse method is fused as a whole and its children are NOT
    visited: its own ``fuse()`` may call its children's (RepViT), so fusing
    them first would leave it calling a method they no longer have. A module
    without one has each child fused the same way. Both block conventions are
    honoured: a fuse method that works in place (returning None or the block
    itself) keeps the block; one that returns a different module (timm/LeViT
    ``fuse()``) has that module put back into the parent with ``setattr``.
    ``done`` maps each visited module's id to ``(module, result, fused)``
    (holding the module keeps its id unique), so a module shared by several
    parents is fused once and stays shared.
    """
    if id(module) in done:
        return done[id(module)][1]
    method = _fuse_method(module)
    result = module
    if method is not None:
        out = method()
        if isinstance(out, nn.Module) and out is not module:
            result = out
    else:
        for name, child in list(module._modules.items()):  # not named_children(): it hides repeats of a shared child
            if child is None:
                continue
            new = _fuse_tree(child, done)
            if new is not child:
                setattr(module, name, new)
    done[id(module)] = (module, result, method is not None)
    return result


def reparameterize_model(model: nn.Module, inplace: bool = False, fold_bn: bool = True) -> nn.Module:
    """Return the deploy (fused) form of ``model``, in eval mode.

    Every submodule with a ``reparameterize()``, ``switch_to_deploy()`` or
    ``fuse()`` method callable without arguments is fused, top-down as timm
    does (a block that fuses is fused whole; its children are not visited);
    when that method returns a different module, the returned module
    replaces the block in its parent (the timm convention), otherwise the block
    is taken to have fused in place. Then, with ``fold_bn``, remaining
    ``Conv2d -> BatchNorm2d`` pairs in ``nn.Sequential`` containers are folded.
    Fusion uses BN running statistics, so the model is put in eval mode first.
    Idempotent: fusing a fused model changes nothing. The input is deep-copied
    unless ``inplace``; always use the returned model (the root itself may be
    replaced).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    done: dict[int, tuple[nn.Module, nn.Module, bool]] = {}
    model = _fuse_tree(model, done)
    fused = sum(called for _, _, called in done.values())
    replaced = sum(old is not new for old, new, _ in done.values())
    folded = _fold_sequential_conv_bn(model) if fold_bn else 0
    model.eval()
    log.debug("fused %d modules (%d replaced), folded %d conv-BN pairs", fused, replaced, folded)
    return model
