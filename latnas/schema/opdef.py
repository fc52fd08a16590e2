"""Op registry: the torch-free half of the op layer.

:class:`BlockSpec` (``latnas.schema.spec``) looks ops up here, and the modules that
implement ops (``latnas.schema.ops`` for conv/mbconv/skip/classifier,
``latnas.schema.blocks.ops`` for ``dbb``) register into it, so the dependency is
one-way: spec -> opdef <- ops. The built-in op modules import torch, so they
are loaded on the first lookup rather than when this module is imported.

Register your own op with :func:`register_op`::

    @register_op("myop")
    class MyOp(OpDef):
        def build(self, spec): ...
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from latnas.schema.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from latnas.schema.spec import BlockSpec

BUILTIN_OP_MODULES = ("latnas.schema.ops", "latnas.schema.blocks.ops", "latnas.schema.blocks.nb201")
"""Modules whose import registers the built-in ops (loaded on first lookup)."""


class OpDef:
    """Behaviour of one op type: validate a spec, build it, give its output shape."""

    name = ""

    def validate(self, spec: "BlockSpec") -> None:
        """Raise :class:`~latnas.schema.errors.ShapeError` if ``spec`` is impossible for this op."""

    def build(self, spec: "BlockSpec") -> "nn.Module":
        raise NotImplementedError

    def output_shape(self, spec: "BlockSpec") -> tuple[int, ...]:
        oh, ow = spec.out_hw
        return (spec.batch, spec.cout, oh, ow)


def _load_builtin_ops() -> None:
    for name in BUILTIN_OP_MODULES:
        importlib.import_module(name)


OPS: Registry[OpDef] = Registry("op", loader=_load_builtin_ops)


def register_op(name: str):
    """Class decorator registering an :class:`OpDef` subclass under ``name``."""

    def deco(cls):
        inst = cls()
        inst.name = name
        OPS.register(name, inst)
        return cls

    return deco


def get_op(name: str) -> OpDef:
    """The registered op ``name`` (built-ins included) or an UnknownNameError."""
    return OPS.get(name)
