"""The package map of docs/authoring.md is the tree: every package listed, every import allowed, no cycle.

The table is the contract a newcomer reads; this test keeps it true.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "infralens"
ROW = re.compile(r"^\| `([a-z_]+)` \| [^|]+ \| (.+) \|$", re.M)


def package_map() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "authoring.md").read_text()
    return {name: set(re.findall(r"`([a-z_]+)`", allowed)) for name, allowed in ROW.findall(text)}


def packages() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())


def imported_packages(package: str) -> dict[str, set[str]]:
    """``infralens.<x>`` packages imported by each module of ``package`` (relative imports resolved)."""
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.level == 0 and node.module.startswith("infralens."):
                    names.add(node.module.split(".")[1])
                elif node.level == 2:  # from ..other import x
                    names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("infralens.")}
        found[str(path.relative_to(SRC))] = names - {package}
    return found


def test_the_map_lists_exactly_the_packages_of_the_tree():
    assert sorted(package_map()) == packages()


@pytest.mark.parametrize("package", packages())
def test_each_package_imports_only_what_its_row_allows(package):
    allowed = package_map()[package]
    for module, used in imported_packages(package).items():
        assert used <= allowed, f"{module} imports {sorted(used - allowed)}, not allowed for {package}: {allowed}"


def test_the_allowed_imports_have_no_cycle():
    graph = package_map()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("package", packages())
def test_each_package_imports_alone_in_a_fresh_interpreter(package, fresh_python):
    # a new process with nothing of infralens loaded (torch is: tests/preloaded_python.py)
    proc = fresh_python.run(code=f"import infralens.{package}", timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_calculators_load_no_model_code(fresh_python):
    code = (
        "import sys, infralens.calculators; "
        "print(sorted(m for m in sys.modules if m.startswith('infralens.') and m.count('.') == 1))"
    )
    proc = fresh_python.run(code=code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    loaded = set(ast.literal_eval(out))
    assert not loaded & {"infralens.nets", "infralens.pipelines", "infralens.adapters", "infralens.memory"}, loaded
