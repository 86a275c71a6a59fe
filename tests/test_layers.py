"""Layer rules that import-linter cannot express by itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"lab_controller", "sim_kernels", "telemetry", "devices", "dashboards"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add("." * node.level + (node.module or ""))
    return found


def test_protocol_module_imports_nothing_else_from_the_project() -> None:
    path = ROOT / "lab_controller" / "protocol.py"
    assert path.exists(), "the one protocol module is lab_controller/protocol.py"
    imported = _imported_modules(path)
    project = {m for m in imported if m.split(".")[0] in PROJECT or m.startswith(".")}
    assert project == set(), f"protocol.py must be a leaf, imports {sorted(project)}"


def test_sim_kernels_imports_only_numpy_numba_pydantic_and_stdlib_math() -> None:
    allowed_roots = {
        "numpy", "numba", "pydantic", "math", "__future__", "typing", "dataclasses",
        "collections", "enum", "functools", "sim_kernels", "itertools", "types", "json",
        "hashlib", "warnings", "re", "abc",
    }
    bad: dict[str, set[str]] = {}
    for path in (ROOT / "sim_kernels").rglob("*.py"):
        roots = {m.split(".")[0] for m in _imported_modules(path) if not m.startswith(".")}
        extra = roots - allowed_roots
        if extra:
            bad[str(path.relative_to(ROOT))] = extra
    assert bad == {}, f"sim_kernels must not do I/O or import project code: {bad}"
