"""The Argo Rollouts canary of the consultations API (deployment/k8s/components/canary), checked offline.

kubernetes-validate knows no custom resources, so the rendered prod overlay's Rollout and
AnalysisTemplates are checked here: against the shape of the fields we use, written from Argo
Rollouts' documentation (``argo_shapes.py``, unknown fields refused), against the rules its controller validates (pkg/apis/rollouts/validation), against the
manifests they name (Deployment, Services, Ingress, HPA), and their Prometheus queries with
promtool (parsed, then evaluated by ``promtool test rules`` on series of a bad, a good, a quiet and an
absent canary beside a bad stable pod) and against the metrics the services really export.
docs/runbook.md says how it runs.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infrastructure.observability.metrics import Metrics
from tests import services
from tests.unit.deployment.argo_shapes import SHAPES

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deployment" / "k8s"
PROD = K8S / "overlays" / "prod"
COMPONENT = K8S / "components" / "canary"
PROMETHEUS_CONFIG = ROOT / "deployment" / "prometheus" / "prometheus.yml"
API = "argoproj.io/v1alpha1"
STEP_KINDS = {"setWeight", "pause", "analysis", "experiment", "setCanaryScale", "setHeaderRoute", "setMirrorRoute",
              "plugin"}
SAMPLE_HASH = "6d4f8b9c7"
"""A pod-template hash, put where Argo puts the canary ReplicaSet's (podTemplateHashValue: Latest)."""


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = services.require_tool("kubectl", "install kubectl (kustomize v5 built in)")
    result = subprocess.run([kubectl, "kustomize", str(PROD)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in the rendered prod overlay, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def rollout(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = of_kind(docs, "Rollout")
    return found


def templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["metadata"]["name"]: t for t in of_kind(docs, "AnalysisTemplate")}


# The custom resources' shape ------------------------------------------------------------------------


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SHAPES[document["kind"]])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_prod_overlay_lists_the_canary_component():
    kustomization = yaml.safe_load((PROD / "kustomization.yaml").read_text())
    assert "../../components/canary" in kustomization.get("components", [])


def test_the_rendered_rollout_and_analysis_templates_have_the_documented_shape(rendered):
    custom = [d for d in rendered if d["apiVersion"] == API]
    assert {d["kind"] for d in custom} == {"Rollout", "AnalysisTemplate"}
    for document in custom:
        assert schema_errors(document) == [], document["metadata"]["name"]


def test_the_schema_check_refuses_an_unknown_field_and_a_wrong_type(rendered):
    misspelt = copy.deepcopy(rollout(rendered))
    misspelt["spec"]["strategy"]["canary"]["stableSevice"] = "clinic-consultations-api"
    assert any("stableSevice" in error for error in schema_errors(misspelt))
    wrong = copy.deepcopy(rollout(rendered))
    wrong["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
    assert any("steps/0/setWeight" in error for error in schema_errors(wrong))


def test_the_rollout_follows_the_rules_the_argo_controller_validates(rendered):
    spec = rollout(rendered)["spec"]
    assert spec["selector"]["matchLabels"]
    assert ("workloadRef" in spec) != ("template" in spec), "a Rollout has its own template or a workloadRef"
    assert list(spec["strategy"]) == ["canary"]
    canary = spec["strategy"]["canary"]
    assert canary["stableService"] and canary["canaryService"] and canary["stableService"] != canary["canaryService"]
    assert canary["trafficRouting"]["nginx"]["stableIngress"]
    weights = []
    for step in canary["steps"]:
        assert len(step) == 1 and set(step) <= STEP_KINDS, step
        if "setWeight" in step:
            weights.append(step["setWeight"])
        if "pause" in step and "duration" in step["pause"]:
            assert seconds(step["pause"]["duration"]) > 0
    assert weights == sorted(weights) and 0 < weights[0] and weights[-1] < 100, weights
    assert "pause" in canary["steps"][-1], "the canary is watched a while at its last weight before 100 %"


def seconds(duration: int | str) -> int:
    if isinstance(duration, int):
        return duration
    number, unit = re.fullmatch(r"(\d+)([smh]?)", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


# What it names ---------------------------------------------------------------------------------------


def test_the_workload_ref_names_the_api_deployment_whose_pods_the_selector_matches(rendered):
    spec = rollout(rendered)["spec"]
    ref = spec["workloadRef"]
    assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
    deployment = one(rendered, "Deployment", ref["name"])
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    # an apply must never scale the Deployment back up once the Rollout has taken over its pods
    assert deployment["spec"].get("replicas", 0) == 0
    assert ref["scaleDown"] == "progressively"


def test_the_stable_and_canary_services_exist_and_select_the_rollouts_pods_on_the_same_ports(rendered):
    spec = rollout(rendered)["spec"]
    labels = one(rendered, "Deployment", spec["workloadRef"]["name"])["spec"]["template"]["metadata"]["labels"]
    stable = one(rendered, "Service", spec["strategy"]["canary"]["stableService"])
    canary = one(rendered, "Service", spec["strategy"]["canary"]["canaryService"])
    for service in (stable, canary):
        assert service["spec"]["selector"].items() <= labels.items()
    assert canary["spec"]["ports"] == stable["spec"]["ports"]


def test_the_stable_ingress_routes_to_the_stable_service(rendered):
    canary = rollout(rendered)["spec"]["strategy"]["canary"]
    ingress = one(rendered, "Ingress", canary["trafficRouting"]["nginx"]["stableIngress"])
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backends = {path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]}
    assert canary["stableService"] in backends, "Argo copies the rules that reach the stable Service"
    assert canary["canaryService"] not in backends, "the canary Ingress is Argo's to write"


def test_the_hpa_scales_the_rollout_and_the_pdb_covers_its_pods(rendered):
    name = rollout(rendered)["metadata"]["name"]
    target = one(rendered, "HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": API, "kind": "Rollout", "name": name}
    assert not [h for h in of_kind(rendered, "HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
    labels = one(rendered, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    pdb = one(rendered, "PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_rollout_and_its_templates_are_in_the_prod_namespace(rendered):
    namespace = one(rendered, "Deployment", rollout(rendered)["spec"]["workloadRef"]["name"])["metadata"]["namespace"]
    assert {d["metadata"].get("namespace") for d in rendered if d["apiVersion"] == API} == {namespace}


# The analysis ----------------------------------------------------------------------------------------


def resolved_args(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The Rollout's analysis args as the controller resolves them for a canary."""
    ro = rollout(docs)
    values = {}
    for arg in ro["spec"]["strategy"]["canary"]["analysis"]["args"]:
        source = arg.get("valueFrom", {})
        if "value" in arg:
            values[arg["name"]] = arg["value"]
        elif source.get("podTemplateHashValue") in ("Latest", "Stable"):
            values[arg["name"]] = SAMPLE_HASH
        elif source.get("fieldRef", {}).get("fieldPath") in ("metadata.namespace", "metadata.name"):
            values[arg["name"]] = ro["metadata"][source["fieldRef"]["fieldPath"].split(".")[1]]
        else:
            raise AssertionError(f"arg {arg['name']}: a source this test does not resolve: {arg}")
    return values


def metrics_of(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(template, metric, args) for every metric of every template the Rollout's analysis uses."""
    given = resolved_args(docs)
    found = []
    for reference in rollout(docs)["spec"]["strategy"]["canary"]["analysis"]["templates"]:
        template = templates(docs)[reference["templateName"]]
        args = {a["name"]: a["value"] for a in template["spec"].get("args", []) if "value" in a} | given
        for metric in template["spec"]["metrics"]:
            found.append((template["metadata"]["name"], metric, args))
    return found


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], text)


def test_the_analysis_uses_existing_templates_and_gives_every_arg_they_need(rendered):
    analysis = rollout(rendered)["spec"]["strategy"]["canary"]["analysis"]
    assert analysis["startingStep"] >= 1, "nothing to analyse before the first setWeight"
    known = templates(rendered)
    given = {arg["name"] for arg in analysis["args"]}
    for reference in analysis["templates"]:
        template = known[reference["templateName"]]
        declared = {a["name"] for a in template["spec"]["args"]}
        without_default = {a["name"] for a in template["spec"]["args"] if "value" not in a}
        assert without_default <= given, template["metadata"]["name"]
        used = set(re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", json.dumps(template["spec"]["metrics"])))
        assert used <= declared, template["metadata"]["name"]


def test_error_ratio_and_p99_latency_are_analysed_and_their_failures_abort(rendered):
    by_metric = {metric["name"]: metric for _, metric, _ in metrics_of(rendered)}
    assert set(by_metric) == {"error-ratio", "latency-p99"}
    assert "clinic_http_requests_total" in by_metric["error-ratio"]["provider"]["prometheus"]["query"]
    assert "histogram_quantile(0.99" in by_metric["latency-p99"]["provider"]["prometheus"]["query"]
    assert "clinic_http_request_duration_seconds_bucket" in by_metric["latency-p99"]["provider"]["prometheus"]["query"]
    for metric in by_metric.values():
        assert 0 <= metric["failureLimit"] <= 3 and "count" not in metric, "a background run that can fail"


CONDITION = re.compile(r"(len\(result\) == 1|result\[0\] (<=|>|<|>=) [0-9.]+|&&|\|\||\s)+")


def holds(condition: str, result: list[float]) -> bool:
    """An Argo (expr-lang) condition of the form the templates use, evaluated in Python."""
    assert CONDITION.fullmatch(condition), f"a condition this test cannot read: {condition}"
    python = condition.replace("&&", " and ").replace("||", " or ")
    return bool(eval(python, {"__builtins__": {"len": len}}, {"result": result}))  # noqa: S307 - checked above


@pytest.mark.parametrize("value", [0.0, 0.004, 0.01, 0.0101, 0.3, 0.5, 0.51, 2.0])
def test_every_measured_value_is_a_success_or_a_failure_never_both(rendered, value):
    for _, metric, _ in metrics_of(rendered):
        success, failure = holds(metric["successCondition"], [value]), holds(metric["failureCondition"], [value])
        assert success != failure, (metric["name"], value)


def test_no_data_is_inconclusive_neither_a_pass_nor_a_failure(rendered):
    for _, metric, _ in metrics_of(rendered):
        for result in ([], [math.nan]):  # no series (no canary request yet), or 0/0 over a quiet window
            assert not holds(metric["successCondition"], result) and not holds(metric["failureCondition"], result)
        assert metric["inconclusiveLimit"] >= 1, "one quiet minute pauses nothing"


def test_the_thresholds_are_the_slos_of_the_api(rendered):
    by_metric = {metric["name"]: metric for _, metric, _ in metrics_of(rendered)}
    assert holds(by_metric["error-ratio"]["successCondition"], [0.005])  # SLO: 99.5 % not 5xx
    assert holds(by_metric["error-ratio"]["failureCondition"], [0.02])
    assert holds(by_metric["latency-p99"]["successCondition"], [0.5])  # SLO: p99 within 0.5 s
    assert holds(by_metric["latency-p99"]["failureCondition"], [0.6])


@pytest.fixture(scope="module")
def promtool() -> str:
    return services.require_binary("promtool")


def check_queries(promtool: str, queries: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    rules = {"groups": [{"name": "canary-analysis", "rules": [
        {"record": f"canary:{name.replace('-', '_')}:check", "expr": query} for name, query in queries.items()]}]}
    path = tmp_path / "canary-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def queries(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {metric["name"]: substitute(metric["provider"]["prometheus"]["query"], args)
            for _, metric, args in metrics_of(docs)}


def test_the_analysis_queries_parse_with_promtool(rendered, promtool, tmp_path):
    result = check_queries(promtool, queries(rendered), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_query(promtool, tmp_path):
    result = check_queries(promtool, {"broken": "sum(rate(clinic_http_requests_total[2m])"}, tmp_path)
    assert result.returncode != 0


def exported_series(service: str) -> dict[str, set[str]]:
    """Each sample name the API process exports after answering one request, with its label names."""
    metrics = Metrics(service)
    metrics.http_request("POST", "/v1/consultations", 202, 0.02)
    text, _ = metrics.exposition()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def target_labels() -> set[str]:
    """The labels Prometheus adds to every series of a pod (prometheus.yml, job clinic-pods)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "clinic-pods"]
    return {"job", "instance"} | {r["target_label"] for r in job["relabel_configs"] if "target_label" in r
                                  and not r["target_label"].startswith("__")}


SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}")
MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def test_the_analysis_queries_read_series_the_api_exports_with_labels_it_has(rendered):
    args = resolved_args(rendered)
    series = exported_series(args["service"])
    scraped = target_labels()
    assert {"namespace", "pod"} <= scraped, "the queries tell canary pods apart by these"
    for name, query in queries(rendered).items():
        selectors = SELECTOR.findall(query)
        assert selectors, name
        for metric, matchers in selectors:
            assert metric in series, f"{name}: {metric} is not exported"
            parsed = MATCHER.findall(matchers)
            assert "".join(m.group(0) for m in MATCHER.finditer(matchers)).strip() == matchers.strip(), matchers
            for label, operator, value in parsed:
                assert label in series[metric] | scraped, f"{name}: {metric} has no label {label}"
                if label == "service":
                    assert (operator, value) == ("=", args["service"])
                if label == "pod":
                    assert re.fullmatch(value, f"{args['rollout']}-{SAMPLE_HASH}-7xk2q"), "a canary pod's name"
                    assert not re.fullmatch(value, f"{args['rollout']}-5c9d7b6f4-8mn3p"), "a stable pod's name"


# What the queries compute, as Prometheus evaluates them (promtool test rules) --------------------------

CANARY_POD = f"clinic-consultations-api-{SAMPLE_HASH}-7xk2q"
STABLE_POD = "clinic-consultations-api-5c9d7b6f4-8mn3p"
OK_ROUTE = {"method": "POST", "route": "/v1/consultations"}
PROBE = {"method": "GET", "route": "/health/ready"}


def series(name: str, namespace: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    selector = {"namespace": namespace, "pod": pod, "service": "consultations", **labels}
    return {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in selector.items()) + "}", "values": values}


def histogram(namespace: str, pod: str, counts: dict[str, str], route: dict[str, str]) -> list[dict[str, str]]:
    return [series("clinic_http_request_duration_seconds_bucket", namespace, pod, values, le=le, **route)
            for le, values in counts.items()]


def scenarios() -> list[dict[str, str]]:
    """Four canaries, each in its own namespace, scraped every 15 s for 10 minutes."""
    every = "x40"
    fast = {"0.025": f"0+10{every}", "0.5": f"0+10{every}", "1.0": f"0+10{every}", "+Inf": f"0+10{every}"}
    slow = {"0.025": f"0{every}", "0.5": f"0{every}", "1.0": f"0+4{every}", "+Inf": f"0+4{every}"}
    flat = dict.fromkeys(fast, f"5{every}")
    return [
        # bad: a quarter of its answers are 5xx, and they take up to a second
        series("clinic_http_requests_total", "bad", CANARY_POD, f"0+3{every}", status="202", **OK_ROUTE),
        series("clinic_http_requests_total", "bad", CANARY_POD, f"0+1{every}", status="500", **OK_ROUTE),
        *histogram("bad", CANARY_POD, slow, OK_ROUTE),
        # good: fast and without 5xx; its probes answering 503 and a bad *stable* pod must not count
        series("clinic_http_requests_total", "good", CANARY_POD, f"0+10{every}", status="202", **OK_ROUTE),
        series("clinic_http_requests_total", "good", CANARY_POD, f"0+10{every}", status="503", **PROBE),
        *histogram("good", CANARY_POD, fast, OK_ROUTE),
        *histogram("good", CANARY_POD, slow, PROBE),
        series("clinic_http_requests_total", "good", STABLE_POD, f"0+10{every}", status="500", **OK_ROUTE),
        *histogram("good", STABLE_POD, slow, OK_ROUTE),
        # quiet: the canary's series exist but no request reached it in the window
        series("clinic_http_requests_total", "quiet", CANARY_POD, f"5{every}", status="202", **OK_ROUTE),
        *histogram("quiet", CANARY_POD, flat, OK_ROUTE),
        # absent: nothing was ever scraped from the canary
    ]


THRESHOLD = re.compile(r"result\[0\] > ([0-9.]+)")
OUTCOMES = {"bad": (1, None), "good": (0, None), "quiet": (0, 1), "absent": (None, 1)}
"""Per scenario: ``query > bool threshold`` (None: no sample), and whether there is no number to judge
(0/0 or no series: Argo finds neither condition true, the measurement is inconclusive)."""


def sample(name: str, value: int | None) -> list[dict[str, Any]]:
    return [] if value is None else [{"labels": name, "value": value}]


def test_the_queries_judge_only_the_canarys_requests_as_prometheus_evaluates_them(rendered, promtool, tmp_path):
    rules, expected = [], []
    for _, metric, args in metrics_of(rendered):
        threshold = THRESHOLD.search(metric["failureCondition"]).group(1)  # type: ignore[union-attr]
        for namespace, (over, no_data) in OUTCOMES.items():
            query = substitute(metric["provider"]["prometheus"]["query"], args | {"namespace": namespace})
            prefix = f"canary:{metric['name'].replace('-', '_')}_{namespace}"
            rules += [{"record": f"{prefix}:over", "expr": f"({query}) > bool {threshold}"},
                      {"record": f"{prefix}:no_data", "expr": f"absent(({query}) >= 0)"}]
            expected += [{"expr": f"{prefix}:over", "eval_time": "10m", "exp_samples": sample(f"{prefix}:over", over)},
                         {"expr": f"{prefix}:no_data", "eval_time": "10m",
                          "exp_samples": sample(f"{prefix}:no_data", no_data)}]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "canary", "rules": rules}]}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": scenarios(), "promql_expr_test": expected}]}))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
