"""The layering is checked by import-linter inside the suite, so a wrong import fails CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    # lint-imports reads the contracts from pyproject.toml: domain is pure and
    # interfaces -> application -> process managers/projections -> domain, never back.
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_domain_imports_only_the_stdlib_and_eventsourcing_domain():
    # import-linter cannot forbid subpackages of an external package, so this reads the imports itself.
    allowed_external = {"eventsourcing.domain"}
    offenders = []
    for path in (ROOT / "domain").rglob("*.py"):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "domain" or module in allowed_external:
                continue
            offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def _imported_modules(path: Path) -> list[str]:
    import ast

    tree = ast.parse(path.read_text())
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules
