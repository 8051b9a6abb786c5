"""The CI workflow's lint job (`make lint`: ruff, mypy, lint-imports) passes here too.

lint-imports is run by tests/unit/test_layers.py; this runs ruff and mypy exactly as the Makefile
does, from the repository root with the configuration in pyproject.toml, and checks that each tool
still refuses a known-bad input, so a passing run means something.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    result = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_refuses_an_unused_import_with_the_repository_config():
    result = _run(str(BIN / "ruff"), "check", "--no-cache", "--stdin-filename", "domain/lint_probe.py", "-",
                  stdin="import os\n")
    assert result.returncode == 1
    assert "F401" in result.stdout


def test_mypy_finds_nothing_in_the_checked_packages():
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_mypy_checks_every_package_and_leaves_no_module_out():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    packages = {"domain", "application", "process_managers", "infrastructure", "projections", "interfaces", "benchmarks"}
    assert set(config["files"]) == packages
    assert not [override["module"] for override in config.get("overrides", []) if override.get("ignore_errors")]


def test_mypy_refuses_a_type_error_and_an_untyped_def_with_the_repository_config(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def halve(n):\n    return n / 2\n\n\ncount: int = 'three'\n")
    result = _run(str(BIN / "mypy"), "--no-incremental", str(probe))
    assert result.returncode == 1
    assert "[assignment]" in result.stdout
    assert "[no-untyped-def]" in result.stdout
