"""Reading the Prometheus rules and Grafana dashboards of deployment/, for the tests that check them.

The PromQL the dashboards and rules use is read here once: its expressions, the metric names in
them (recording rules resolved to the metrics they are made of), and the Grafana variables put in
place so that promtool can parse a dashboard's query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "deployment" / "prometheus"
GRAFANA = ROOT / "deployment" / "grafana"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
SLAS_DOC = ROOT / "docs" / "slas.md"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS_DOC = ROOT / "docs" / "observability-alerts.md"

NAME = re.compile(r"(?<![\w:.])(clinic_[a-z0-9_]+|clinic:[a-z0-9_:]+)")
"""A metric (``clinic_…``) or recording-rule (``clinic:…``) name, not part of a longer identifier."""
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$service": ".*"}
"""What Grafana puts in place of the variables the dashboards use, as promtool would see them."""


def rules() -> Iterator[dict]:
    """Every rule (alerting and recording) of every rule file."""
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def alerts() -> list[dict]:
    """The alerting rules."""
    return [rule for rule in rules() if "alert" in rule]


def recording_rules() -> dict[str, list[str]]:
    """Recorded name → its expressions (one per ``slo`` label value for the SLO scheme's names)."""
    recorded: dict[str, list[str]] = {}
    for rule in rules():
        if "record" in rule:
            recorded.setdefault(rule["record"], []).append(str(rule["expr"]))
    return recorded


def rule_tests() -> list[dict]:
    """The test groups of every promtool unit-test file."""
    return [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


def dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(board: dict) -> Iterator[dict]:
    """The panels of a dashboard that show data (rows only group them), nested ones included."""
    for item in board["panels"]:
        if item["type"] == "row":
            yield from item.get("panels", [])
        else:
            yield item


def dashboard_expressions(board: dict) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' queries and its query variables."""
    exprs = [query["expr"] for item in panels(board) for query in item["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"])
    return exprs


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables put in place (``label_values(m, l)`` → ``m``)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    match = re.fullmatch(r"label_values\((.+),\s*\w+\)", expr.strip())
    return match.group(1) if match else expr


def names_in(expr: str) -> set[str]:
    """The metric and recording-rule names an expression refers to (label values left out)."""
    return set(NAME.findall(STRING.sub('""', expr)))


def metric_names(exprs: list[str], recorded: dict[str, list[str]]) -> set[str]:
    """The ``clinic_…`` metric names ``exprs`` read, recording rules resolved to their own expressions."""
    found: set[str] = set()
    pending = [name for expr in exprs for name in names_in(expr)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith("clinic:"):
            pending.extend(found_name for expr in recorded[name] for found_name in names_in(expr))
        else:
            found.add(name)
    return found


def every_expression() -> list[str]:
    """The expressions of every rule and every dashboard."""
    exprs = [str(rule["expr"]) for rule in rules()]
    return exprs + [expr for path in DASHBOARDS for expr in dashboard_expressions(dashboard(path))]


def doc_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors
