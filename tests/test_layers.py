"""The layer rule inside ``latnas``: the schema sub-package is the bottom, profilers and predictors
build on it alone, and everything else of latnas (search, export, executors, CLI) sits above them.

Imports are read from the source (every import statement that can run, inside functions too), so a
lazy import that crosses a layer fails here as surely as a top-level one.
"""
from __future__ import annotations

import ast
from pathlib import Path

from test_cli_imports import ROOT, _all_imports, _module_name

SCHEMA = "latnas.schema"


def _imports_of(path: Path, name: str | None = None) -> set[str]:
    """Dotted names of the modules a file imports (relative imports resolved against ``name``)."""
    name = name or _module_name(path)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in _all_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = name.split(".") if is_pkg else name.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        out.add(base)
        out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _ours(mod: str) -> bool:
    return mod.split(".")[0] in ("latnas", "profilers", "predictors")


def _in_schema(mod: str) -> bool:
    return mod == SCHEMA or mod.startswith(SCHEMA + ".")


def _below_latnas(mod: str) -> bool:
    return not mod.startswith("latnas") or _in_schema(mod)


def _violations(files, allowed, name: str | None = None) -> list[str]:
    bad = []
    for path in files:
        where = path.relative_to(ROOT) if name is None else name
        for mod in sorted(_imports_of(path, name)):
            if _ours(mod) and not allowed(mod):
                bad.append(f"{where} imports {mod}")
    return bad


def test_profilers_and_predictors_import_only_the_schema_of_latnas():
    files = [p for pkg in ("profilers", "predictors") for p in sorted((ROOT / pkg).rglob("*.py"))]
    bad = _violations(files, _below_latnas)
    assert not bad, "\n".join(bad)


def test_schema_imports_nothing_of_ours_above_it():
    files = sorted((ROOT / "latnas" / "schema").rglob("*.py"))
    assert len(files) > 10
    bad = _violations(files, _in_schema)
    assert not bad, "\n".join(bad)


def test_schema_loads_its_builtin_ops_from_inside_itself():
    """The op registry imports its members by name (they need torch): those names stay in the schema."""
    from latnas.schema.opdef import BUILTIN_OP_MODULES

    assert BUILTIN_OP_MODULES and all(_in_schema(m) for m in BUILTIN_OP_MODULES)


def test_the_rule_sees_a_function_level_crossing(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from latnas.search import minimize\n    from latnas.schema.spec import BlockSpec\n"
                     "    from ..backends import table\n")
    found = _violations([probe], _below_latnas, name="profilers.fleet.probe")
    assert found == ["profilers.fleet.probe imports latnas.search", "profilers.fleet.probe imports latnas.search.minimize"]
