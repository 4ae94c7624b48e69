"""The packages' shape, read from their import statements: microservices_common holds what
the services share and imports none of them (nor the lessons' tools), and no two modules of a
package import each other, directly or through others, at module level (type-only imports
count: a reader follows them too; an import inside a function does not)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

SERVICES = ROOT / "services"
PACKAGES = sorted(p for p in SERVICES.glob("*/microservices_*") if p.is_dir())


def module_imports(path: Path, package: str) -> set[str]:
    """The modules `path` imports at module level (under `if TYPE_CHECKING:` too): absolute
    names, relative ones made absolute within `package`."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = f"{package}.{node.module or ''}" if node.level else node.module or ""
                found.add(base.rstrip("."))
                found.update(f"{base.rstrip('.')}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                visit(getattr(node, "body", []))
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def modules(package_dir: Path) -> dict[str, set[str]]:
    package = package_dir.name
    return {
        f"{package}.{path.stem}": module_imports(path, package)
        for path in package_dir.glob("*.py")
        if path.stem != "__init__"
    }


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of modules of the graph that import each other, directly or through others."""

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), set()) & graph.keys():
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reach = {module: reaches(module) for module in graph}
    return sorted((a, b) for a in graph for b in reach[a] if a < b and a in reach[b])


def test_common_imports_no_service_nor_lesson():
    for module, imports in modules(SERVICES / "common" / "microservices_common").items():
        others = {i for i in imports if i.startswith("microservices_")}
        assert all(i.startswith("microservices_common") for i in others), (module, others)


@pytest.mark.parametrize("package_dir", PACKAGES, ids=lambda p: p.name)
def test_no_two_modules_import_each_other(package_dir):
    assert cycles(modules(package_dir)) == []


def test_a_cycle_is_caught():
    graph = {"p.metrics": {"p.state"}, "p.state": {"p.metrics"}, "p.app": {"p.state"}}
    assert cycles(graph) == [("p.metrics", "p.state")]
    planted = "from .metrics import Metrics\n"
    assert "p.metrics" in imports_of("if TYPE_CHECKING:\n    " + planted)
    assert "p.metrics" not in imports_of("def f():\n    " + planted)


def imports_of(source: str, tmp=Path("/tmp/microservices-import-test.py")) -> set[str]:
    tmp.write_text(source)
    return module_imports(tmp, "p")
