"""Import hygiene: no file-level import cycles, and light entry points stay torch-free.

The cycle check walks the AST of every module in ``latnas``, ``profilers`` and
``predictors`` and keeps only imports that run when the module is imported:
module-level statements (including those under ``if``/``try``), not imports
inside functions or under ``if TYPE_CHECKING:``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("latnas", "profilers", "predictors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module):
    """Import statements that execute at import time (skips defs, classes' methods, TYPE_CHECKING)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                stack.extend(handler.body)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            stack.extend(node.body)


def _all_imports(tree: ast.Module):
    """Every import statement that can run: module level, inside functions, at the bottom (not TYPE_CHECKING)."""
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
            for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
            yield node


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """Module -> our modules it imports at file level (``from pkg import sub`` resolves to ``pkg.sub``);
    with ``lazy``, imports inside functions count too (a circle through them is still a circle)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    walk = _all_imports if lazy else _top_level_imports
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_graph_sees_known_edges():
    graph = import_graph()
    assert "latnas.schema.opdef" in graph["latnas.schema.spec"]
    assert "latnas.schema.spec" in graph["latnas.schema.ops"]
    assert "latnas.schema.branches" in graph["latnas.schema.spaces.repnas"]
    assert "latnas.schema.spaces.fbnet" in graph["latnas.schema.spaces"]  # `from latnas.schema.spaces import fbnet`


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_file_level_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "file-level import cycle: " + " -> ".join(cycle)


def test_no_import_cycles_through_function_level_imports():
    """Two files that import each other are a circle even when one side imports inside a function
    (a registry that imports its members, a lazy helper): members register, a package __init__ imports them."""
    cycle = find_cycle(import_graph(lazy=True))
    assert cycle is None, "import cycle (function-level imports included): " + " -> ".join(cycle)


def test_lazy_graph_sees_function_level_imports(tmp_path):
    tree = ast.parse("import os\ndef f():\n    import latnas.schema.errors\nif TYPE_CHECKING:\n    import latnas.schema.spec\n")
    names = {a.name for n in _all_imports(tree) for a in n.names}
    assert names == {"os", "latnas.schema.errors"}


def test_schema_does_not_import_torch_blocks():
    graph = import_graph()
    for name in ("latnas.schema.spec", "latnas.schema.opdef", "latnas.schema.branches", "latnas.schema.spaces.repnas", "latnas.schema.spaces.base"):
        assert not {m for m in graph[name] if m.startswith(("latnas.schema.blocks", "latnas.schema.ops"))}, name


def test_spec_never_imports_ops_even_lazily():
    """spec -> opdef <- ops is one-way: no import of latnas.schema.ops anywhere in spec.py, functions included."""
    tree = ast.parse((ROOT / "latnas" / "schema" / "spec.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "latnas.schema.opdef" in imported
    assert not {m for m in imported if m and m.startswith(("latnas.schema.ops", "latnas.schema.blocks", "torch"))}


def _loads_torch(code: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('torch' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("code", [
    "import latnas.schema.errors",
    "import latnas",
    "from latnas.schema.spec import BlockSpec; BlockSpec('conv', 3, 8, 8, 8).key",
    "import latnas.schema.branches",
    "from latnas.schema.features import BlockCost",
    "import latnas.cli.main",
    "from latnas.cli.main import main; main(['--help'])",
    "from latnas.cli.main import main; main(['version'])",
])
def test_light_entry_points_do_not_import_torch(code):
    assert not _loads_torch(code)


def test_building_a_block_still_loads_the_builtin_ops():
    assert _loads_torch("from latnas import BlockSpec; BlockSpec('dbb', 4, 4, 8, 8).build()")


def test_one_export_error_class():
    """latnas.schema.errors owns ExportError; the export and runtimes layers re-use that one class."""
    from latnas.schema.errors import ExportError, LatnasError

    assert issubclass(ExportError, LatnasError)
    assert str(ExportError("a\n  b")) == "a b"
    from profilers.runtimes import ExportError as RuntimesExportError

    assert RuntimesExportError is ExportError


def test_cli_modules_import_only_light_modules_at_top_level():
    """CLI modules load typer/rich/stdlib/latnas.schema.errors at import; everything heavy inside the commands."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "typer", "rich", "click"}
    for path in sorted((ROOT / "latnas" / "cli").glob("*.py")):
        for node in _top_level_imports(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                ok = name.split(".")[0] in allowed or name == "latnas.schema.errors" or name.startswith("latnas.cli")
                assert ok, f"{path.name}: top-level import of {name} (import it inside the command)"


def test_cli_session_bound_is_the_protocols():
    from latnas.cli.validate import MAX_SESSIONS
    from profilers.config import MAX_SESSIONS as PROTOCOL_MAX

    assert MAX_SESSIONS == PROTOCOL_MAX
