"""Search spaces: FBNet (CIFAR-100), ProxylessNAS-style (ImageNet), RepNAS, NAS-Bench-201, and a registry."""
from __future__ import annotations

from latnas.schema.spaces.base import Arch, LayerSlot, OpChoice, SearchSpace
from latnas.schema.spaces.registry import SPACES, register_space
from latnas.schema.spaces import fbnet as _fbnet  # noqa: F401  (registers "fbnet")
from latnas.schema.spaces import proxyless as _proxyless  # noqa: F401  (registers "proxyless")
from latnas.schema.spaces import repnas as _repnas  # noqa: F401  (registers "repnas", op "dbb")
from latnas.schema.spaces import nb201 as _nb201  # noqa: F401  (registers "nb201" and its ops)


def get_space(name: str, **options) -> "SearchSpace":
    """Build a registered space by name, e.g. ``get_space("fbnet", batch=1)``."""
    return SPACES.get(name)(**options)


__all__ = ["Arch", "LayerSlot", "OpChoice", "SearchSpace", "SPACES", "register_space", "get_space"]
