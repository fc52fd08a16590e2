"""Registries with lazily loaded built-ins, the torch-free op registry and branch masks."""
from __future__ import annotations

import pytest

from latnas.schema.branches import BRANCH_NAMES, fitting_branches, format_branches, parse_branches
from latnas.schema.errors import UnknownNameError
from latnas.schema.opdef import BUILTIN_OP_MODULES, OPS, get_op
from latnas.schema.registry import Registry


def test_loader_runs_once_before_the_first_lookup():
    calls = []

    def load_builtins() -> None:
        calls.append(1)
        reg.register("builtin", 1)

    reg: Registry[int] = Registry("thing", loader=load_builtins)
    reg.register("early", 0)
    assert calls == []  # registering does not load
    assert "builtin" in reg and calls == [1]
    assert reg.names() == ["builtin", "early"] and len(reg) == 2 and list(reg) == ["builtin", "early"]
    assert reg.get("builtin") == 1 and calls == [1]
    with pytest.raises(UnknownNameError, match="known: builtin, early"):
        reg.get("nope")


def test_get_op_loads_every_builtin_op():
    for name in ("conv", "mbconv", "skip", "classifier", "dbb"):
        assert get_op(name).name == name
    assert set(OPS.names()) >= {"conv", "mbconv", "skip", "classifier", "dbb"}
    assert BUILTIN_OP_MODULES[0] == "latnas.schema.ops"


def test_ops_module_reexports_the_one_registry():
    import latnas.schema.ops
    import latnas.schema.opdef

    assert latnas.schema.ops.OPS is latnas.schema.opdef.OPS and latnas.schema.ops.OpDef is latnas.schema.opdef.OpDef


@pytest.mark.parametrize("mask, expected", [
    ("id+kxk", ("kxk", "id")),
    (" 1x1 + kxk ", ("kxk", "1x1")),
    (["1x1_avg", "kxk"], ("kxk", "1x1_avg")),
    ("", None),
    (None, None),
])
def test_parse_branches_is_canonical(mask, expected):
    assert parse_branches(mask) == expected
    assert format_branches(mask or "") == "+".join(expected or ())


def test_unknown_branch_is_one_line_error():
    with pytest.raises(UnknownNameError, match="unknown DBB branch '3x3'"):
        parse_branches("kxk+3x3")


def test_fitting_branches_only_adds_id_when_the_shape_is_kept():
    assert fitting_branches(8, 8, 1) == BRANCH_NAMES
    assert "id" not in fitting_branches(8, 16, 1) and "id" not in fitting_branches(8, 8, 2)


def test_named_decorator_and_create_with_one_line_error():
    import pytest

    from latnas.schema.registry import Registry

    class Boom(Exception):
        pass

    reg: Registry[type] = Registry("widget")

    @reg.named("w")
    class W:
        def __init__(self, size: int = 1):
            self.size = size

    assert W.name == "w" and reg.get("w") is W
    assert reg.create("w", Boom, size=3).size == 3
    with pytest.raises(Boom, match=r"^widget 'w': bad options: .*colour"):
        reg.create("w", Boom, colour="red")
