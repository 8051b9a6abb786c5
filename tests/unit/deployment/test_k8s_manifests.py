"""The Kubernetes manifests (deployment/k8s): each overlay rendered by ``kubectl kustomize``, every
built-in object validated by ``kubernetes-validate --strict`` (Kubernetes 1.31), and the promises of
docs/deployment.md checked against the code they deploy: probes on routes the app serves, ports the
commands listen on, settings the code reads, Secrets that have templates, one PDB per Deployment in
prod, default-deny network policies, the Ingress routing like the gateway.

Custom resources (Argo Rollouts, CloudNativePG, RabbitMQ) have no schema in kubernetes-validate: they
are left out of that step (the canary component's own tests check the Rollout).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import subprocess
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import services
from tests.unit.deployment import app_routes

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deployment" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.31.0"
CUSTOM_GROUPS = ("argoproj.io", "postgresql.cnpg.io", "rabbitmq.com", "monitoring.coreos.com", "cert-manager.io")
WORKLOADS = ("Deployment", "StatefulSet", "Job")
IMAGE = "clinic-booking"


def kubectl() -> str:
    return services.require_tool("kubectl", "install kubectl (v1.27+, kustomize v5 built in) on PATH")


@cache
def render(directory: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def overlay(name: str) -> tuple[dict[str, Any], ...]:
    return render(K8S / "overlays" / name)


def of_kind(docs: tuple[dict[str, Any], ...], *kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in kinds]


def named(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def is_custom(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def clinic_args(container: dict[str, Any]) -> argparse.Namespace:
    """The container's arguments, parsed by the real ``clinic`` parser (a typo fails here)."""
    from interfaces.cli.main import build_parser

    return build_parser().parse_args(container["args"])


def validate(docs: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess:
    validator = services.require_tool("kubernetes-validate", "pip install kubernetes-validate (the test extra)")
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return subprocess.run([validator, "--strict", "-k", KUBERNETES_VERSION, str(path)], capture_output=True,
                          text=True, timeout=300, check=False)


def assert_valid(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    result = validate(docs, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output
    assert "Couldn't find schema" not in output, output  # every object given was really checked
    assert output.count(" passed for resource ") == len(docs), output


# ---- schema validation -------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(name, tmp_path):
    built_in = [doc for doc in overlay(name) if not is_custom(doc)]
    assert len(built_in) > 20
    assert_valid(built_in, tmp_path)


def test_data_services_and_secret_templates_pass_kubernetes_validate_strict(tmp_path):
    data = render(K8S / "data-services")
    assert {doc["kind"] for doc in data if is_custom(doc)} == {
        "Cluster", "RabbitmqCluster", "Issuer", "Certificate", "User", "Permission", "TopicPermission"}
    templates = list(yaml.safe_load_all((K8S / "secrets" / "templates.yaml").read_text()))
    assert_valid([doc for doc in data if not is_custom(doc)] + templates, tmp_path)


def test_strict_validation_refuses_an_unknown_field(tmp_path):
    """Not vacuous: the same step fails on a misspelt field of a rendered Deployment."""
    deployment = yaml.safe_load(yaml.safe_dump(named(overlay("dev"), "Deployment", "clinic-consultations-api")))
    pod_spec(deployment)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health/ready", "port": "http"}}
    result = validate([deployment], tmp_path)
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def test_operator_resources_match_what_the_overlays_assume():
    data = render(K8S / "data-services")
    config = config_map(overlay("prod"))
    postgres = named(data, "Cluster", "clinic-postgres")
    assert config["POSTGRES_HOST"] == f"{postgres['metadata']['name']}-rw.{postgres['metadata']['namespace']}.svc"
    assert postgres["spec"]["bootstrap"]["initdb"]["database"] == config["POSTGRES_DBNAME"]
    assert named(data, "RabbitmqCluster", "clinic-rabbitmq")["metadata"]["namespace"] == "clinic-data"
    redis = named(data, "StatefulSet", "clinic-redis")
    assert redis["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "clinic-redis"


# ---- every pod ----------------------------------------------------------------------------------


def all_pods(name: str) -> list[dict[str, Any]]:
    return of_kind(overlay(name), *WORKLOADS)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_pod_is_locked_down(name):
    for doc in all_pods(name):
        spec, where = pod_spec(doc), doc["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == 10001, where  # the image's uid (Dockerfile)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in containers(doc):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context.get("privileged", False) is False, where


@pytest.mark.parametrize("name", OVERLAYS)
def test_a_pod_mounts_the_ca_and_only_its_own_service_key_pair(name):
    mounted = 0
    for doc in all_pods(name):
        for volume in pod_spec(doc).get("volumes", []):
            if volume.get("secret", {}).get("secretName") != "clinic-pki":
                continue
            paths = {item["path"] for item in volume["secret"]["items"]}
            if paths == {"ca.pem"}:  # the CA only: it certifies the auth server's endpoint, the broker, Redis
                continue
            service = doc["metadata"]["labels"]["clinic/service"]
            assert paths == {"ca.pem", f"{service}.pem", f"{service}-key.pem"}, doc["metadata"]["name"]
            mounted += 1
    assert mounted >= 3  # the registry's API, the booking saga and the authorization server


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_container_has_requests_and_limits(name):
    for doc in all_pods(name):
        for container in containers(doc):
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), (doc["metadata"]["name"], part)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_image_is_the_clinic_image_pinned_by_tag_or_digest(name):
    for doc in all_pods(name):
        for container in containers(doc):
            image = container["image"]
            assert image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] == IMAGE, image
            assert "@sha256:" in image or re.search(r":[\w.\-]+$", image), image
            assert not image.endswith(":latest"), image


@pytest.mark.parametrize("name", OVERLAYS)
def test_writable_paths_are_emptydirs_or_volumes(name):
    """Read-only root: /tmp and the data dir are emptyDirs; every mount names a volume of the pod."""
    for doc in all_pods(name):
        volumes = {volume["name"]: volume for volume in pod_spec(doc)["volumes"]}
        for container in containers(doc):
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], doc["metadata"]["name"]
            assert "emptyDir" in volumes[mounts["/var/lib/clinic"]], doc["metadata"]["name"]
            assert set(mounts.values()) <= set(volumes), doc["metadata"]["name"]


# ---- Deployments: commands, probes, ports --------------------------------------------------------


def deployments(name: str) -> list[dict[str, Any]]:
    return of_kind(overlay(name), "Deployment")


def http_port(container: dict[str, Any]) -> int:
    return next(port["containerPort"] for port in container["ports"] if port["name"] == "http")


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_deployment_runs_a_real_clinic_command(name):
    seen = set()
    for doc in deployments(name):
        (container,) = pod_spec(doc)["containers"]
        args = clinic_args(container)
        assert args.command == "run" and args.host == "0.0.0.0", container["args"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert labels["clinic/service"] == args.service, doc["metadata"]["name"]
        if args.service not in ("auth", "console"):
            assert labels["app.kubernetes.io/component"] == args.role or args.service == "projections"
        seen.add((args.service, args.role))
    from application.contexts import SERVICE_NAMES

    for service in SERVICE_NAMES:  # the code supports the split: one API and one worker per context
        assert {(service, "api"), (service, "worker")} <= seen, service
    assert {service for service, _ in seen} == {*SERVICE_NAMES, "projections", "auth", "console"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_ask_routes_the_process_really_serves(name):
    for doc in deployments(name):
        (container,) = pod_spec(doc)["containers"]
        args = clinic_args(container)
        served = app_routes.served_paths(args.service, args.role)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            check = container[probe]["httpGet"]
            assert check["path"] in served, (doc["metadata"]["name"], probe, check["path"], served)
            assert check["port"] == "http", (doc["metadata"]["name"], probe)
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"  # never a dependency
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"


@pytest.mark.parametrize("name", OVERLAYS)
def test_ports_are_the_ones_the_command_listens_on(name):
    from interfaces.auth.cli import DEFAULT_PORT as AUTH_PORT

    for doc in deployments(name):
        (container,) = pod_spec(doc)["containers"]
        args = clinic_args(container)
        expected = args.port or (AUTH_PORT if args.service == "auth" else 8000)
        assert http_port(container) == expected, doc["metadata"]["name"]
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(expected)
        assert annotations["prometheus.io/path"] in app_routes.served_paths(args.service, args.role)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        if args.service == "registry" and args.role == "api":
            assert ports["mtls"] == args.internal_port
        elif args.service == "auth":
            assert ports["https"] == args.internal_port
        else:
            assert set(ports) == {"http"}, doc["metadata"]["name"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_service_selects_one_deployment_and_a_port_it_has(name):
    docs = overlay(name)
    for service in of_kind(docs, "Service"):
        selected = [doc for doc in deployments(name)
                    if service["spec"]["selector"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        port_names = {port["name"] for port in pod_spec(selected[0])["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


@pytest.mark.parametrize("name", OVERLAYS)
def test_registry_url_and_jwks_url_reach_real_services(name):
    from interfaces.auth.service import JWKS_PATH, TOKEN_PATH

    docs, config = overlay(name), config_map(overlay(name))
    registry = re.fullmatch(r"https://([\w-]+):(\d+)", config["CLINIC_REGISTRY_URL"])
    internal = named(docs, "Service", registry.group(1))
    assert any(port["port"] == int(registry.group(2)) and port["targetPort"] == "mtls"
               for port in internal["spec"]["ports"])
    for variable, path in (("CLINIC_JWKS_URL", JWKS_PATH), ("CLINIC_OAUTH_TOKEN_URL", TOKEN_PATH)):
        match = re.fullmatch(r"https://([\w-]+):(\d+)(/.*)", config[variable])  # TLS inside the cluster too
        assert match.group(3) == path and path in app_routes.served_paths("auth")
        assert any(port["port"] == int(match.group(2)) and port["targetPort"] == "https"
                   for port in named(docs, "Service", match.group(1))["spec"]["ports"])
    ca_file = Path(config["CLINIC_AUTH_CA_FILE"])
    for doc in deployments(name):
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] in ("api", "worker"):
            (container,) = pod_spec(doc)["containers"]
            assert str(ca_file.parent) in {mount["mountPath"] for mount in container["volumeMounts"]}


# ---- settings and Secrets ----------------------------------------------------------------------


def config_map(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (config,) = [doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"].startswith("clinic-config")]
    return config["data"]


@cache
def known_variables() -> str:
    """Source text of what reads the environment: the settings, eventsourcing's PostgreSQL module,
    the metrics module, the CLI."""
    import eventsourcing.postgres

    import application.settings
    import infrastructure.observability.metrics
    import interfaces.cli.main

    return "\n".join(Path(module.__file__).read_text() for module in (
        application.settings, eventsourcing.postgres, infrastructure.observability.metrics, interfaces.cli.main))


LIBPQ_VARIABLES = {"PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"}
"""Read by libpq itself on every connect (docs/service-identity-and-tls.md)."""


def variable_exists(name: str) -> bool:
    source = known_variables()
    if f'"{name}"' in source or name in LIBPQ_VARIABLES:
        return True
    tls = re.fullmatch(r"CLINIC_(\w+)_(?:CA|CERT|KEY)_FILE", name)  # _tls_files(env, "amqp", ...)
    if tls and f'_tls_files(env, "{tls.group(1).lower()}"' in source:
        return True
    base = name.removesuffix("_FILE")  # secret(env, "CLINIC_X") also reads CLINIC_X_FILE
    return name.endswith("_FILE") and re.search(rf'secret\(env, "{base}"\)', source) is not None


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_variable_set_is_one_the_code_reads(name):
    docs = overlay(name)
    names = set(config_map(docs))
    for doc in of_kind(docs, *WORKLOADS):
        for container in containers(doc):
            names.update(variable["name"] for variable in container.get("env", []))
    unknown = sorted(n for n in names if not variable_exists(n))
    assert not unknown, unknown
    assert "POSTGRES_ENABLE_DB_FUNCTIONS" not in names  # lost events (LIBRARY-NOTES)


def test_an_unknown_variable_would_be_caught():
    assert variable_exists("CLINIC_DATA_KEK_FILE") and variable_exists("POSTGRES_POOL_SIZE")
    assert not variable_exists("CLINIC_DATA_KEY_FILE") and not variable_exists("CLINIC_PORT")


@pytest.mark.parametrize("name", OVERLAYS)
def test_settings_parse(name):
    """The ConfigMap, with a value standing in for each secret, is accepted by Settings.from_env."""
    from application.settings import Settings

    env = {**config_map(overlay(name)), "CLINIC_DATA_KEK_FILE": "", "CLINIC_AMQP_URL": "amqp://u:p@h:5672/",
           "CLINIC_REDIS_URL": "redis://h:6379/0"}
    settings = Settings.from_env(env)
    assert settings.persistence == "postgres" and settings.create_tables is False
    assert settings.jwt_issuer.startswith("https://")
    assert not settings.webhook_allow_http and not settings.webhook_allow_private_networks  # https, public only


def secret_templates() -> dict[str, dict[str, str]]:
    docs = yaml.safe_load_all((K8S / "secrets" / "templates.yaml").read_text())
    return {doc["metadata"]["name"]: doc["stringData"] for doc in docs}


def referenced_secrets(docs: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """Secret name -> the keys the manifests read from it (empty: mounted whole)."""
    found: dict[str, set[str]] = {}
    for doc in of_kind(docs, *WORKLOADS):
        for volume in pod_spec(doc).get("volumes", []):
            if "secret" in volume:
                found.setdefault(volume["secret"]["secretName"], set())
        for container in containers(doc):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.setdefault(ref["name"], set()).add(ref["key"])
    for ingress in of_kind(docs, "Ingress"):
        for tls in ingress["spec"].get("tls", []):
            found.setdefault(tls["secretName"], set())
    return found


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_secret_referenced_has_a_template_with_its_keys_and_none_is_rendered(name):
    docs, templates = overlay(name), secret_templates()
    assert not of_kind(docs, "Secret")  # no secret, not even a placeholder, is ever applied
    for secret, keys in referenced_secrets(docs).items():
        assert secret in templates, secret
        assert keys <= set(templates[secret]), (secret, keys)


def test_mounted_secret_files_are_the_ones_the_settings_name():
    templates = secret_templates()
    assert "kek" in templates["clinic-data-kek"]
    booking = named(overlay("prod"), "Deployment", "clinic-booking-worker")
    env = {v["name"]: v.get("value") for v in pod_spec(booking)["containers"][0]["env"]}
    assert Path(env["CLINIC_CLIENT_SECRET_FILE"]).name in templates["clinic-booking-oauth"]
    notifications = named(overlay("prod"), "Deployment", "clinic-notifications-worker")
    env = {v["name"]: v.get("value") for v in pod_spec(notifications)["containers"][0]["env"]}
    assert Path(env["CLINIC_WEBHOOK_KEY_FILE"]).name in templates["clinic-webhook-key"]
    from infrastructure.tls import CA_FILE, CA_KEY_FILE, DEFAULT_SERVICES

    pki = set(templates["clinic-pki"])
    assert {CA_FILE} | {f"{s}.pem" for s in DEFAULT_SERVICES} | {f"{s}-key.pem" for s in DEFAULT_SERVICES} == pki
    assert CA_KEY_FILE not in pki  # the CA's private key never enters the cluster


def looks_like_key(text: str) -> bool:
    """A PEM block, or a run of 20+ base64/hex characters mixing letters and digits."""
    runs = re.findall(r"[A-Za-z0-9+/=_-]{20,}", text)
    return "-----BEGIN" in text or any(re.search(r"\d", run) and re.search(r"[A-Za-z]", run) for run in runs)


def test_secret_templates_hold_placeholders_only():
    for secret, data in secret_templates().items():
        for key, value in data.items():
            assert re.fullmatch(r"<[^<>]+>", value), (secret, key)
            assert not looks_like_key(value), (secret, key)


def test_a_real_looking_key_would_be_caught():
    import base64
    import hashlib

    assert looks_like_key(base64.urlsafe_b64encode(hashlib.sha256(b"a key").digest()).decode())
    assert looks_like_key("-----BEGIN PRIVATE KEY-----")
    assert not looks_like_key("<copied from clinic-data/clinic-postgres-app>")


# ---- prod and dev shapes -------------------------------------------------------------------------


def test_prod_has_a_pdb_for_every_deployment():
    docs = overlay("prod")
    budgets = of_kind(docs, "PodDisruptionBudget")
    for doc in deployments("prod"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        matching = [pdb for pdb in budgets if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, doc["metadata"]["name"]
        if labels["app.kubernetes.io/component"] == "api":
            assert matching[0]["spec"]["maxUnavailable"] == 1


def test_prod_autoscales_every_api_and_leaves_it_the_replica_count():
    docs = overlay("prod")
    targets = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in of_kind(docs, "HorizontalPodAutoscaler")}
    apis = [doc for doc in deployments("prod") if doc["metadata"]["labels"]["app.kubernetes.io/component"] == "api"]
    assert {doc["metadata"]["name"] for doc in apis} == set(targets) and "clinic-consultations-api" in targets
    for doc in apis:
        assert "replicas" not in doc["spec"], doc["metadata"]["name"]  # an apply must not reset the HPA's count
        assert targets[doc["metadata"]["name"]]["spec"]["minReplicas"] >= 2
        assert pod_spec(doc)["topologySpreadConstraints"], doc["metadata"]["name"]


def test_prod_singletons_stay_single_and_never_overlap():
    for doc in deployments("prod"):
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] != "api":
            assert doc["spec"]["replicas"] == 1 and doc["spec"]["strategy"] == {"type": "Recreate"}
        else:
            assert doc["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_prod_enforces_restricted_pod_security_and_dev_warns():
    assert named(overlay("prod"), "Namespace", "clinic")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    assert named(overlay("dev"), "Namespace", "clinic-dev")["metadata"]["labels"][
        "pod-security.kubernetes.io/warn"] == "restricted"


def test_dev_runs_one_of_everything_without_budgets_or_autoscaling():
    docs = overlay("dev")
    assert all(doc["spec"]["replicas"] == 1 for doc in deployments("dev"))
    assert not of_kind(docs, "PodDisruptionBudget", "HorizontalPodAutoscaler")
    prod = {doc["metadata"]["name"]: doc for doc in deployments("prod")}
    for doc in deployments("dev"):  # smaller than prod
        dev_memory = pod_spec(doc)["containers"][0]["resources"]["limits"]["memory"]
        prod_memory = pod_spec(prod[doc["metadata"]["name"]])["containers"][0]["resources"]["limits"]["memory"]
        assert int(dev_memory.removesuffix("Mi")) <= int(prod_memory.removesuffix("Mi"))


def test_prod_lists_the_canary_component_once_it_exists():
    component = K8S / "components" / "canary" / "kustomization.yaml"
    listed = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text()).get("components") or []
    if component.exists():
        assert "../../components/canary" in listed, "uncomment the canary component in overlays/prod"
    else:
        assert "../../components/canary" not in listed  # kustomize would fail on a missing component


# ---- migration ordering --------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_migration_job_runs_clinic_db_migrate_before_the_services(name):
    docs = overlay(name)
    (job,) = of_kind(docs, "Job")
    (container,) = pod_spec(job)["containers"]
    args = clinic_args(container)
    assert (args.command, args.db_command) == ("db", "migrate")
    assert pod_spec(job)["restartPolicy"] == "Never"

    def wave(doc: dict[str, Any]) -> int:
        return int(doc["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    needed = [doc for doc in docs if doc["kind"] in ("ConfigMap", "ServiceAccount")]
    assert all(wave(doc) < wave(job) for doc in needed)
    assert all(wave(doc) > wave(job) for doc in of_kind(docs, "Deployment"))
    # without Argo CD: CI applies clinic/phase=migrate first (.github/workflows/ci.yml)
    assert {doc["kind"] for doc in docs if doc["metadata"].get("labels", {}).get("clinic/phase") == "migrate"} == {
        "ConfigMap", "ServiceAccount", "Job"}
    env = {variable["name"] for variable in container["env"]}
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD"} <= env
    assert args.roles == ROLE_PREFIX


ROLE_PREFIX = "clinic"


def secret_of(container: dict[str, Any], variable: str) -> str | None:
    """The Secret a container's environment variable comes from."""
    for entry in container.get("env", []):
        if entry["name"] == variable:
            return entry.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
    return None


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_service_signs_in_to_postgresql_with_its_own_role_which_the_database_creates(name):
    from application.bootstrap import database_roles_of

    roles = database_roles_of(ROLE_PREFIX)
    for deployment in of_kind(overlay(name), "Deployment"):
        service = deployment["metadata"]["labels"].get("clinic/service")
        if service is None or service in ("auth", "console"):  # no event store: the console reads the broker
            continue
        (container,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == "clinic"]
        assert secret_of(container, "POSTGRES_USER") == secret_of(container, "POSTGRES_PASSWORD") \
            == f"clinic-postgres-{service}", deployment["metadata"]["name"]
        templates = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(
            (ROOT / "deployment/k8s/secrets/templates.yaml").read_text())}
        assert roles[service] in templates[f"clinic-postgres-{service}"]["stringData"]["username"]
    cluster = yaml.safe_load((ROOT / "deployment/k8s/data-services/postgres.yaml").read_text())
    managed = {role["name"]: role["passwordSecret"]["name"] for role in cluster["spec"]["managed"]["roles"]}
    assert managed == {role: f"clinic-postgres-{service}" for service, role in roles.items()}


# ---- network policies ----------------------------------------------------------------------------


def policies(name: str) -> list[dict[str, Any]]:
    return of_kind(overlay(name), "NetworkPolicy")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (``{}`` selects every pod) against one pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value, values = labels.get(expression["key"]), expression.get("values", [])
        if expression["operator"] == "In" and value not in values:
            return False
        if expression["operator"] == "NotIn" and value in values:
            return False
    return True


def pod_labels(name: str, workload: str) -> dict[str, str]:
    return named(overlay(name), "Deployment", workload)["spec"]["template"]["metadata"]["labels"]


def in_namespace(peer: dict[str, Any]) -> bool:
    """Whether a policy peer names pods of the policy's own namespace (not another namespace, not an ipBlock)."""
    return "namespaceSelector" not in peer and "ipBlock" not in peer


def allowed(name: str, source: str, destination: str, port: int | str) -> bool:
    """Whether the policies let ``source``'s pods reach ``destination``'s pods on ``port`` (both
    directions must allow it, as with a default deny on both)."""
    src, dst = pod_labels(name, source), pod_labels(name, destination)
    ports = {port, *[p["name"] for p in pod_spec(named(overlay(name), "Deployment", destination))["containers"][0][
        "ports"] if p["containerPort"] == port]}

    def port_ok(rule: dict[str, Any]) -> bool:
        return "ports" not in rule or any(p["port"] in ports for p in rule["ports"])

    egress = any(selects(policy["spec"]["podSelector"], src) and any(
        port_ok(rule) and any(in_namespace(peer) and selects(peer.get("podSelector", {}), dst)
                              for peer in rule.get("to", [])) for rule in policy["spec"].get("egress", []))
        for policy in policies(name))
    ingress = any(selects(policy["spec"]["podSelector"], dst) and any(
        port_ok(rule) and any(in_namespace(peer) and selects(peer.get("podSelector", {}), src)
                              for peer in rule.get("from", [])) for rule in policy["spec"].get("ingress", []))
        for policy in policies(name))
    return egress and ingress


@pytest.mark.parametrize("name", OVERLAYS)
def test_default_deny_both_ways(name):
    deny = [p for p in policies(name) if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
            and "egress" not in p["spec"]]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_flows_the_architecture_needs_and_no_others(name):
    assert allowed(name, "clinic-booking-worker", "clinic-registry-api", 8443)
    assert allowed(name, "clinic-booking-api", "clinic-registry-api", 8443)
    assert not allowed(name, "clinic-consultations-api", "clinic-registry-api", 8443)  # only booking
    assert not allowed(name, "clinic-booking-worker", "clinic-registry-api", 8000)
    for workload in ("clinic-registry-api", "clinic-consultations-worker", "clinic-booking-worker",
                     "clinic-notifications-api", "clinic-notifications-worker"):
        assert allowed(name, workload, "clinic-auth", 8443)  # the JWKS, over TLS
        assert not allowed(name, workload, "clinic-auth", 9000)  # the public issuer is the Ingress's
    assert not allowed(name, "clinic-consultations-api", "clinic-scheduling-api", 8000)  # APIs never call APIs
    assert allowed(name, "clinic-console", "clinic-auth", 8443)  # the operators' code exchange, the JWKS
    assert allowed(name, "clinic-console", "clinic-booking-api", 8000)  # sagas, through the API
    assert allowed(name, "clinic-console", "clinic-registry-api", 8000)  # a patient's stream, through the API
    assert not allowed(name, "clinic-console", "clinic-registry-api", 8443)  # never the internal endpoint
    assert allowed(name, "clinic-console", "clinic-projections", 8000)  # the read models, through the API
    # the webhook sender's egress to the internet lets it reach no pod of the clinic
    assert not allowed(name, "clinic-notifications-worker", "clinic-registry-api", 8443)
    assert not allowed(name, "clinic-notifications-worker", "clinic-auth", 443)


PRIVATE_NETWORKS = tuple(ipaddress.ip_network(cidr) for cidr in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"))
"""The cluster's pods, Services and nodes (RFC 1918, CGNAT), loopback and link-local (cloud metadata)."""


def egress_beyond_the_cluster(name: str, workload: str) -> list[dict[str, Any]]:
    """The egress rules letting ``workload``'s pods reach addresses (ipBlock peers), each as its peer and ports."""
    labels = pod_labels(name, workload)
    return [{"ipBlock": peer["ipBlock"], "ports": rule.get("ports")}
            for policy in policies(name) if selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("egress", []) for peer in rule.get("to", []) if "ipBlock" in peer]


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_the_webhook_sender_leaves_the_cluster_and_only_for_public_https(name):
    """The notifications worker POSTs webhooks to clients' https URLs: TCP 443 to public addresses; no other
    pod reaches any address outside the policies' pods and namespaces (docs/security.md, SSRF)."""
    for policy in policies(name):  # a rule without peers would allow every destination
        assert all("to" in rule for rule in policy["spec"].get("egress", [])), policy["metadata"]["name"]
        assert all("from" in rule for rule in policy["spec"].get("ingress", [])), policy["metadata"]["name"]
    for doc in deployments(name):
        workload = doc["metadata"]["name"]
        rules = egress_beyond_the_cluster(name, workload)
        if workload != "clinic-notifications-worker":
            assert rules == [], workload
            continue
        assert rules, workload
        for rule in rules:
            assert rule["ports"] == [{"protocol": "TCP", "port": 443}], rule
            excepted = [ipaddress.ip_network(cidr) for cidr in rule["ipBlock"].get("except", [])]
            for private in PRIVATE_NETWORKS:
                if private.version == ipaddress.ip_network(rule["ipBlock"]["cidr"]).version:
                    assert any(private.subnet_of(block) for block in excepted), (rule, private)


def egress_to_namespace(name: str, workload: str, namespace: str, app_label: tuple[str, str], port: int) -> bool:
    labels = pod_labels(name, workload)
    return any(selects(policy["spec"]["podSelector"], labels) and any(
        any(p["port"] == port for p in rule.get("ports", [])) and any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == namespace
            and peer.get("podSelector", {}).get("matchLabels", {}).get(app_label[0]) == app_label[1]
            for peer in rule.get("to", []))
        for rule in policy["spec"].get("egress", [])) for policy in policies(name))


@pytest.mark.parametrize("name", OVERLAYS)
def test_data_service_flows(name):
    postgres, rabbit, redis = ("cnpg.io/cluster", "clinic-postgres"), ("app.kubernetes.io/name", "clinic-rabbitmq"), (
        "app.kubernetes.io/name", "clinic-redis")
    for doc in deployments(name):
        workload, labels = doc["metadata"]["name"], doc["spec"]["template"]["metadata"]["labels"]
        service, component = labels["clinic/service"], labels["app.kubernetes.io/component"]
        context = component in ("api", "worker")
        assert egress_to_namespace(name, workload, "clinic-data", postgres, 5432) == context, workload
        needs_broker = (component == "worker" and service != "projections") or component == "console"
        assert egress_to_namespace(name, workload, "clinic-data", rabbit, 5671) == needs_broker, workload  # AMQPS
        from application.services import SERVES_QUERIES

        needs_redis = service == "projections" or (component == "api" and service in SERVES_QUERIES)
        assert egress_to_namespace(name, workload, "clinic-data", redis, 6379) == needs_redis, workload


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_service_can_send_its_traces_to_the_collector_it_is_configured_with(name):
    from urllib.parse import urlsplit

    endpoint = urlsplit(config_map(overlay(name))["CLINIC_OTLP_ENDPOINT"])
    service, namespace = endpoint.hostname.split(".")[:2]
    for doc in deployments(name):
        assert egress_to_namespace(name, doc["metadata"]["name"], namespace, ("app.kubernetes.io/name", service),
                                   endpoint.port), doc["metadata"]["name"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_ingress_controller_and_prometheus_reach_what_they_need(name):
    def from_namespace(workload: str, namespace: str) -> bool:
        labels = pod_labels(name, workload)
        return any(selects(p["spec"]["podSelector"], labels) and any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == namespace
            for rule in p["spec"].get("ingress", []) for peer in rule.get("from", [])) for p in policies(name))

    for doc in deployments(name):
        workload, component = doc["metadata"]["name"], doc["metadata"]["labels"]["app.kubernetes.io/component"]
        assert from_namespace(workload, "monitoring"), workload
        routed = component in ("api", "auth", "console") or workload == "clinic-projections"  # /v1/read-models
        assert from_namespace(workload, "ingress-nginx") == routed, workload


# ---- Ingress ------------------------------------------------------------------------------------


def ingress_routes(name: str, host: str = "api.") -> dict[str, str]:
    ingress = named(overlay(name), "Ingress", "clinic")
    rule = next(rule for rule in ingress["spec"]["rules"] if rule["host"].startswith(host))
    return {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]}


def gateway_location(location: str) -> str:
    """A gateway location (``~ ^regex`` or a prefix) as the ingress-nginx regex path it becomes."""
    return location.removeprefix("~ ^") if location.startswith("~ ") else location


@pytest.mark.parametrize("name", OVERLAYS)
def test_ingress_routes_like_the_gateway(name):
    from interfaces.gateway import OPTIONAL, ROUTES

    expected = {gateway_location(where): f"clinic-{service}-api" for where, service in ROUTES}
    expected |= {location: f"clinic-{name}" for name, location in OPTIONAL.items()}
    assert ingress_routes(name) == expected


def concrete(template: str) -> list[str]:
    """A route template with sample values in place of its parameters."""
    from application.contexts import CONTEXTS, audited_kinds

    kinds = tuple(audited_kinds(CONTEXTS))
    path = re.sub(r"\{[^}]+:uuid\}", str(uuid.uuid4()), template)
    return [re.sub(r"\{[^}]+:str\}", kind, path) for kind in kinds] if ":str}" in path else [path]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_ingress_path_reaches_a_route_its_service_serves(name):
    routes = ingress_routes(name) | ingress_routes(name, "auth.")
    assert set(ingress_routes(name, "auth.").values()) == {"clinic-auth"}
    for path, backend in routes.items():
        service = backend.removeprefix("clinic-").removesuffix("-api")
        samples = [sample for route in app_routes.served_paths(service) for sample in concrete(route)]
        assert any(re.match(path, sample) for sample in samples), (path, backend)


@pytest.mark.parametrize("name", OVERLAYS)
def test_ingress_sets_and_propagates_the_correlation_id_like_the_gateway(name):
    ingress = named(overlay(name), "Ingress", "clinic")
    annotations = ingress["metadata"]["annotations"]
    snippet = annotations["nginx.ingress.kubernetes.io/configuration-snippet"]
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert "set $clinic_correlation_id $http_x_correlation_id;" in snippet  # the client's, when it sent one
    assert re.search(r'if \(\$clinic_correlation_id = ""\) \{\s*set \$clinic_correlation_id \$req_id;', snippet)
    assert "proxy_set_header X-Correlation-Id $clinic_correlation_id;" in snippet  # to the service
    assert 'more_set_headers "X-Correlation-Id: $clinic_correlation_id";' in snippet  # back to the client
    from interfaces.http.middleware import CORRELATION_HEADER

    assert CORRELATION_HEADER == "x-correlation-id"
    auth = next(rule for rule in ingress["spec"]["rules"] if rule["host"].startswith("auth."))
    issuer = config_map(overlay(name))["CLINIC_JWT_ISSUER"]
    assert issuer == f"https://{auth['host']}"  # tokens' iss is the host people sign in at
    assert auth["host"] in ingress["spec"]["tls"][0]["hosts"]


def test_docs_commands_are_real():
    """The commands deployment docs tell operators to run parse with the real CLI."""
    from interfaces.cli.main import build_parser

    for command in ("certs init --dir ./pki", "auth client add booking --scope registry:eligibility",
                    "db migrate", "keys rotate"):
        build_parser().parse_args(shlex.split(command))


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_ingress_answers_the_gateways_503_problem_when_no_replica_answers(name):
    from interfaces.gateway import _UNAVAILABLE_BODY
    from interfaces.http.problems import RETRY_AFTER_SECONDS

    annotations = named(overlay(name), "Ingress", "clinic")["metadata"]["annotations"]
    assert "error_page 502 504 = @clinic_unavailable;" in annotations["nginx.ingress.kubernetes.io/configuration-snippet"]
    server = annotations["nginx.ingress.kubernetes.io/server-snippet"]
    assert f"return 503 '{_UNAVAILABLE_BODY}';" in server
    assert f'more_set_headers "Retry-After: {RETRY_AFTER_SECONDS}";' in server


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_ingress_limits_each_address_like_the_gateway_with_its_429_problem(name):
    from interfaces.gateway import _TOO_MANY_BODY, PER_ADDRESS

    annotations = named(overlay(name), "Ingress", "clinic")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/limit-rps"] == str(PER_ADDRESS)
    assert "error_page 429 = @clinic_too_many;" in annotations["nginx.ingress.kubernetes.io/configuration-snippet"]
    assert f"return 429 '{_TOO_MANY_BODY}';" in annotations["nginx.ingress.kubernetes.io/server-snippet"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_connection_to_a_data_service_is_tls_verified_against_a_mounted_ca(name):
    templates = secret_templates()
    for doc in [*of_kind(overlay(name), "Deployment"), *of_kind(overlay(name), "Job")]:
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] not in ("api", "worker", "migrate"):
            continue
        (container,) = [c for c in pod_spec(doc)["containers"] if c["name"] == "clinic"]
        env = {entry["name"]: entry for entry in container["env"]}
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        where = doc["metadata"]["name"]
        assert env["PGSSLMODE"]["value"] == "verify-full", where
        assert str(Path(env["PGSSLROOTCERT"]["value"]).parent) in mounts, where
        for url, ca, scheme in (("CLINIC_AMQP_URL", "CLINIC_AMQP_CA_FILE", "amqps://"),
                                ("CLINIC_REDIS_URL", "CLINIC_REDIS_CA_FILE", "rediss://")):
            if url in env:
                secret = env[url]["valueFrom"]["secretKeyRef"]
                assert templates[secret["name"]][secret["key"]].startswith(f"<{scheme}"), (where, url)
                assert str(Path(env[ca]["value"]).parent) in mounts, (where, ca)


def test_the_broker_users_manifest_is_the_one_the_permissions_module_derives():
    """Each service's RabbitMQ user and permissions in the cluster are what the code needs and no more."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", ROOT / "scripts" / "render_rabbitmq_users.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert (K8S / "data-services" / "rabbitmq-users.yaml").read_text() == render.rendered(), \
        "regenerate with: .venv/bin/python scripts/render_rabbitmq_users.py"
    templates = secret_templates()
    for doc in render.resources():
        if doc["kind"] == "User":
            assert doc["spec"]["importCredentialsSecret"]["name"] in templates


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_data_key_encryption_key_is_mounted_only_where_personal_data_is_sealed_or_read(name):
    from application.bootstrap import needs_data_keys
    from application.contexts import BY_SERVICE, CONTEXTS

    for doc in [*of_kind(overlay(name), "Deployment"), *of_kind(overlay(name), "Job")]:
        service = doc["metadata"]["labels"].get("clinic/service")
        spec = pod_spec(doc)
        (container,) = [c for c in spec["containers"] if c["name"] == "clinic"]
        env = {entry["name"]: entry.get("value") for entry in container.get("env", [])}
        mounted = {volume["name"]: volume for volume in spec.get("volumes", [])
                   if volume.get("secret", {}).get("secretName") == "clinic-data-kek"}
        if service == "projections":  # it reads every context
            needed = needs_data_keys(CONTEXTS)
        elif service in BY_SERVICE:
            needed = needs_data_keys([BY_SERVICE[service]])
        else:  # the migration Job makes the key store; the authorization server has no personal data of patients
            needed = doc["kind"] == "Job"
        assert bool(mounted) == needed == ("CLINIC_DATA_KEK_FILE" in env), doc["metadata"]["name"]
        if needed:
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            (volume,) = mounted
            assert Path(env["CLINIC_DATA_KEK_FILE"]).parent == Path(mounts[volume]), doc["metadata"]["name"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_webhook_key_is_mounted_in_the_notifications_api_and_worker_only(name):
    """The API shows each subscription's secret once and the worker signs with it: both derive it from one
    key (without it each pod would make a development key of its own); no other pod holds it."""
    from application.contexts import NOTIFICATIONS

    for doc in [*of_kind(overlay(name), "Deployment"), *of_kind(overlay(name), "Job")]:
        spec = pod_spec(doc)
        (container,) = [c for c in spec["containers"] if c["name"] == "clinic"]
        env = {entry["name"]: entry.get("value") for entry in container.get("env", [])}
        mounted = [volume["name"] for volume in spec.get("volumes", [])
                   if volume.get("secret", {}).get("secretName") == "clinic-webhook-key"]
        needed = doc["metadata"]["labels"].get("clinic/service") == NOTIFICATIONS.service
        assert bool(mounted) == needed == ("CLINIC_WEBHOOK_KEY_FILE" in env), doc["metadata"]["name"]
        assert "CLINIC_WEBHOOK_KEY" not in env, doc["metadata"]["name"]  # a file, never a literal
        if needed:
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            (volume,) = mounted
            assert Path(env["CLINIC_WEBHOOK_KEY_FILE"]).parent == Path(mounts[volume]), doc["metadata"]["name"]
