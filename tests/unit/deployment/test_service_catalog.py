"""catalog-info.yaml, checked by Backstage's own entity policies and kind validators
(tools/validate-catalog.cjs on @backstage/catalog-model), every reference and `$text` resolved; and
checked against the repository: a Component per service the manifests deploy, the relations the
architecture has (docs/architecture.md, docs/messaging.md)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import require_tool, services_required

REPO = Path(__file__).resolve().parents[3]
CATALOG = REPO / "catalog-info.yaml"
VALIDATOR = REPO / "tools" / "validate-catalog.cjs"
CATALOG_MODEL = REPO / "tools" / "node_modules" / "@backstage" / "catalog-model"


def _validate(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    node = require_tool("node", "install it with: apt-get install -y nodejs npm")
    if not CATALOG_MODEL.is_dir():
        message = "@backstage/catalog-model is not installed; run: npm ci --prefix tools (make test does)"
        pytest.fail(message) if services_required() else pytest.skip(message)
    result = subprocess.run([node, str(VALIDATOR), *map(str, args)], capture_output=True, text=True, timeout=60)
    return result.returncode, json.loads(result.stdout), result.stderr


def _entities() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(CATALOG.read_text()) if doc]


def _by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {e["metadata"]["name"]: e for e in _entities() if e["kind"] == kind}


def test_backstage_accepts_every_entity_and_every_reference_resolves():
    code, summary, stderr = _validate(CATALOG)
    assert code == 0, stderr
    assert summary["errors"] == []
    kinds = {ref.split(":")[0] for ref in summary["entities"]}
    assert kinds == {"domain", "system", "group", "component", "api", "resource"}


def test_a_component_per_service():
    assert set(_by_name("Component")) == {
        "clinic-registry", "clinic-scheduling", "clinic-consultations", "clinic-booking-saga",
        "clinic-notifications", "clinic-projections", "clinic-auth-server", "clinic-console", "clinic-gateway",
    }


def test_every_service_the_manifests_deploy_is_in_the_catalog():
    labels = set()
    for manifest in (REPO / "deployment" / "k8s" / "base").glob("*.yaml"):
        labels |= set(re.findall(r"clinic/service:\s*\"?([a-z-]+)", manifest.read_text()))
    selectors = {c["metadata"].get("annotations", {}).get("backstage.io/kubernetes-label-selector")
                 for c in _by_name("Component").values()}
    assert labels, "no clinic/service label in deployment/k8s/base"
    assert {f"clinic/service={label}" for label in labels} <= selectors


def test_the_apis_point_at_the_committed_documents():
    apis = _by_name("API")
    assert apis["clinic-public-api"]["spec"] == apis["clinic-public-api"]["spec"] | {
        "type": "openapi", "definition": {"$text": "./specs/openapi.json"}}
    assert apis["clinic-events"]["spec"]["type"] == "asyncapi"
    assert apis["clinic-events"]["spec"]["definition"] == {"$text": "./specs/asyncapi.yaml"}
    assert apis["clinic-registry-internal-api"]["spec"]["definition"]["$text"].startswith("./specs/pacts/")


def test_the_relations_follow_the_architecture():
    components = {name: c["spec"] for name, c in _by_name("Component").items()}
    saga = components["clinic-booking-saga"]
    assert "api:clinic-registry-internal-api" in saga["consumesApis"]
    assert "api:clinic-registry-internal-api" in components["clinic-registry"]["providesApis"]
    assert "api:clinic-events" in components["clinic-registry"]["providesApis"]  # its relay publishes
    assert "consumesApis" not in components["clinic-registry"]  # no context's events reach it
    for follower in ("clinic-booking-saga", "clinic-scheduling", "clinic-consultations"):  # docs/messaging.md
        assert "api:clinic-events" in components[follower]["consumesApis"], follower
        assert "resource:clinic-rabbitmq" in components[follower]["dependsOn"], follower
    for context in ("clinic-registry", "clinic-scheduling", "clinic-consultations", "clinic-booking-saga"):
        assert {"resource:clinic-postgres", "component:clinic-auth-server"} <= set(components[context]["dependsOn"])
    assert set(components["clinic-projections"]["dependsOn"]) == {"resource:clinic-postgres", "resource:clinic-redis"}
    assert {f"component:{c}" for c in ("clinic-registry", "clinic-scheduling", "clinic-consultations",
                                       "clinic-booking-saga")} == set(components["clinic-gateway"]["dependsOn"])
    assert set(_by_name("Resource")) == {"clinic-postgres", "clinic-rabbitmq", "clinic-redis"}


def _mutated(directory: Path, change) -> Path:
    """A copy of the catalog with one entity changed, beside links to the files its `$text`s name."""
    directory.mkdir()
    for name in ("specs", "mkdocs.yml", "docs"):
        (directory / name).symlink_to(REPO / name)
    entities = _entities()
    change(entities)
    broken = directory / "catalog-info.yaml"
    broken.write_text(yaml.safe_dump_all(entities, sort_keys=False))
    return broken


def _component(entities, name):
    return next(e for e in entities if e["kind"] == "Component" and e["metadata"]["name"] == name)


def _api(entities, name):
    return next(e for e in entities if e["kind"] == "API" and e["metadata"]["name"] == name)


BROKEN = {
    "a component without an owner": (
        lambda es: _component(es, "clinic-registry")["spec"].pop("owner"), "must have required property 'owner'"),
    "a dependency on nothing": (
        lambda es: _component(es, "clinic-projections")["spec"]["dependsOn"].append("resource:clinic-kafka"),
        "names no entity"),
    "an API consumed that is a component": (
        lambda es: _component(es, "clinic-booking-saga")["spec"]["consumesApis"].append("component:clinic-registry"),
        "must be a api"),
    "a definition file that does not exist": (
        lambda es: _api(es, "clinic-events")["spec"].update(definition={"$text": "./specs/gone.yaml"}),
        "is not a file"),
    "an invalid name": (
        lambda es: _component(es, "clinic-gateway")["metadata"].update(name="Clinic Gateway!"),
        '"metadata.name" is not valid'),
    "an unknown root field": (
        lambda es: _component(es, "clinic-gateway").update(team="platform"), "must NOT have additional properties"),
    "an entity defined twice": (
        lambda es: es.append(_component(es, "clinic-gateway")), "defined twice"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[int, list[str]]]:
    """Every broken copy validated by one run of the validator (node and its schemas load once)."""
    root = tmp_path_factory.mktemp("broken-catalogs")
    files = {case: _mutated(root / f"case{i}", change) for i, (case, (change, _)) in enumerate(BROKEN.items())}
    code, summary, _ = _validate("--each", *files.values())
    assert code == 1
    return {case: summary[str(path)]["errors"] for case, path in files.items()}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_catalog_is_refused(refusals, case):
    message = BROKEN[case][1]
    assert any(message in error for error in refusals[case]), refusals[case]
