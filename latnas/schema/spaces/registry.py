"""Registry of search spaces: factories taking keyword options (batch, ...)."""
from __future__ import annotations

from typing import Callable

from latnas.schema.registry import Registry

SPACES: Registry[Callable] = Registry("space")


def register_space(name: str):
    """Decorator registering a space factory ``f(batch=1, **options) -> SearchSpace``."""
    return SPACES.register(name)
