"""The GitHub Actions workflows, checked offline: GitHub's own schema (check-jsonschema's vendored
copy), then what the schema cannot see: the stages run in order, only main and tags publish, the
deploy waits for the `production` environment, and every command and path the workflow uses exists.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import require_tool

REPO = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CI = REPO / ".github" / "workflows" / "ci.yml"
STAGES = ["lint", "test", "contract", "image", "publish", "manifests", "deploy"]


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return _load(CI)


def _check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("check-jsonschema", "it is in the test extra: make install")
    return subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


def test_every_workflow_matches_githubs_schema():
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = _check_jsonschema(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_refuses_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  build:\n    steps:\n      - run: make test\n    needs: 3\n")
    result = _check_jsonschema(broken)
    assert result.returncode != 0
    assert "runs-on" in result.stdout + result.stderr


def _ancestors(jobs: dict[str, Any], name: str) -> set[str]:
    needs = jobs[name].get("needs", [])
    needs = [needs] if isinstance(needs, str) else needs
    found = set(needs)
    for parent in needs:
        found |= _ancestors(jobs, parent)
    return found


def test_the_stages_run_in_order(ci):
    jobs = ci["jobs"]
    assert set(STAGES) <= set(jobs)
    for earlier, later in itertools.pairwise(STAGES):
        assert earlier in _ancestors(jobs, later), f"{later} must wait for {earlier}"
    assert _ancestors(jobs, "lint") == set()


class _Context(dict):
    """Attribute access for the `github.*` context of a GitHub expression."""

    __getattr__ = dict.__getitem__


def _evaluate(expression: str, event: str, ref: str) -> bool:
    """A GitHub `if:` expression of &&, ||, ==, startsWith and the github context, evaluated."""
    python = expression.replace("&&", " and ").replace("||", " or ").replace("!=", "≠").replace("!", " not ")
    python = python.replace("≠", "!=")
    assert re.fullmatch(r"[\w\s.()',=!/-]*", python), f"unexpected syntax in {expression!r}"
    names = {"github": _Context(event_name=event, ref=ref), "startsWith": lambda s, p: s.startswith(p)}
    return bool(eval(python, {"__builtins__": {}}, names))  # the workflow's own text, checked above


@pytest.mark.parametrize("event, ref, publishes", [
    ("push", "refs/heads/main", True),
    ("push", "refs/tags/v1.4.0", True),
    ("push", "refs/heads/feature", False),
    ("pull_request", "refs/pull/7/merge", False),
    ("pull_request", "refs/heads/main", False),
    ("workflow_dispatch", "refs/heads/main", False),
])
def test_only_main_and_tags_publish(ci, event, ref, publishes):
    assert _evaluate(ci["jobs"]["publish"]["if"], event, ref) is publishes


def test_only_the_publish_job_can_write_packages_or_push(ci):
    assert ci["permissions"] == {"contents": "read"}
    for name, job in ci["jobs"].items():
        permissions = job.get("permissions", {})
        assert permissions != "write-all", name
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == ({"packages"} if name == "publish" else set()), name
        text = yaml.safe_dump(job.get("steps", []))
        if name != "publish":
            assert "docker/login-action" not in text and "docker push" not in text, name
            assert "push: true" not in text, name
    assert set(ci["on"]["push"]["branches"]) == {"main"}
    assert ci["on"]["push"]["tags"]


def test_the_deploy_waits_for_the_production_environment(ci):
    deploy = ci["jobs"]["deploy"]
    environment = deploy["environment"]
    assert (environment if isinstance(environment, str) else environment["name"]) == "production"
    steps = yaml.safe_dump(deploy["steps"])
    assert "kubectl apply" in steps and "secrets.KUBE_CONFIG" in steps
    for name, job in ci["jobs"].items():
        if name != "deploy":
            text = yaml.safe_dump(job)
            assert "kubectl apply" not in text and "KUBE_CONFIG" not in text, f"{name} reaches the cluster"


def test_the_deploy_applies_the_manifests_rendered_with_the_pushed_image(ci):
    manifests = yaml.safe_dump(ci["jobs"]["manifests"]["steps"])
    assert "kustomize edit set image" in manifests and "$IMAGE@$DIGEST" in manifests
    assert ci["jobs"]["manifests"]["env"]["DIGEST"] == "${{ needs.publish.outputs.digest }}"
    assert "kubectl kustomize" in manifests and "actions/upload-artifact" in manifests
    assert "actions/download-artifact" in yaml.safe_dump(ci["jobs"]["deploy"]["steps"])


def test_the_tests_get_the_servers_and_fail_when_one_is_missing(ci):
    test = ci["jobs"]["test"]
    assert {"postgres", "redis", "rabbitmq"} <= set(test["services"])
    assert ci["env"]["CLINIC_REQUIRE_SERVICES"] == "1"
    steps = yaml.safe_dump(test["steps"])
    for needed in ("make test", "azure/setup-kubectl", "actions/setup-node", "nginx", "prometheus"):
        assert needed in steps, needed


def test_the_scan_fails_on_critical_findings(ci):
    image = {step.get("uses", "").split("@")[0]: step for step in ci["jobs"]["image"]["steps"]}
    assert image["anchore/scan-action"]["with"]["fail-build"] is True
    assert image["anchore/scan-action"]["with"]["severity-cutoff"] == "critical"
    assert "anchore/sbom-action" in image and "docker/build-push-action" in image


def test_every_action_is_pinned_to_a_version():
    for path in WORKFLOWS:
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert re.search(r"@(v?\d+(\.\d+)*|[0-9a-f]{40})$", uses), f"{path.name}: {uses} is not pinned"


def test_every_job_has_a_timeout(ci):
    assert all("timeout-minutes" in job for job in ci["jobs"].values())


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


def _commands(ci: dict[str, Any]) -> str:
    return "\n".join(step["run"] for job in ci["jobs"].values() for step in job.get("steps", []) if "run" in step)


def test_every_make_target_and_path_the_workflow_uses_exists(ci):
    commands = _commands(ci)
    targets = set(re.findall(r"\bmake ([a-z][\w-]*)", commands))
    assert targets >= {"lint", "test", "install"}
    assert targets <= _make_targets(), f"missing make targets: {targets - _make_targets()}"
    for path in re.findall(r"(?<![\w/.$])((?:scripts|tests|\.ci|deployment|specs)/[\w./-]+)", commands):
        assert (REPO / path).exists(), f"{path} is not in the repository"
    for variable in ("PACT_DIR", "K8S_OVERLAY"):
        assert (REPO / ci["env"][variable]).is_dir(), f"{variable}={ci['env'][variable]} does not exist"
    for lock in re.findall(r"cache-dependency-path: (\S+)", CI.read_text()):
        assert (REPO / lock).is_file(), lock
    build = next(s for s in ci["jobs"]["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert (REPO / build["with"]["file"]).is_file()


def test_the_image_the_manifests_name_is_the_one_ci_builds(ci):
    base = REPO / "deployment" / "k8s" / "base"
    images = set(re.findall(r"^\s*image:\s*(\S+)", "".join(p.read_text() for p in base.glob("*.yaml")), re.M))
    assert images == {ci["env"]["IMAGE_NAME"]}


def _selects(selector: str, labels: dict[str, str]) -> bool:
    """A kubectl equality/existence label selector (`a=b,c`) applied to an object's labels."""
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def test_the_deploys_selectors_pick_the_right_objects_of_the_rendered_overlay(ci):
    kubectl = require_tool("kubectl", "install kubectl >= 1.27 (kustomize v5 built in)")
    rendered = subprocess.run([kubectl, "kustomize", str(REPO / ci["env"]["K8S_OVERLAY"])],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    env = ci["jobs"]["deploy"]["env"]

    def picked(selector: str) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in objects
                if _selects(selector, o["metadata"].get("labels") or {})}

    namespaces = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] == "Namespace"}
    assert namespaces and picked(env["NAMESPACES"]) == namespaces
    jobs = picked(env["MIGRATION_JOB"])
    assert {kind for kind, _ in jobs} == {"Job"}, jobs
    inputs = picked(env["MIGRATION_INPUTS"])
    assert jobs <= inputs and {"ServiceAccount", "ConfigMap"} <= {kind for kind, _ in inputs}
    assert not {kind for kind, _ in inputs} & {"Deployment", "Rollout"}, "the services must wait for the migration"
