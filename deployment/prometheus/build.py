"""Writes ``rules/clinic-slo.yml``: the SLIs and error budgets of docs/slas.md as recording rules.

    .venv/bin/python deployment/prometheus/build.py            # rewrite the rule file
    .venv/bin/python deployment/prometheus/build.py --check    # exit 1 if the file differs

One scheme for every SLO (docs/slas.md, "How the rules are named"), each series labelled with
its ``slo`` and the ``service`` it measures:

- ``clinic:sli_events:rate<w>``      valid events per second over window w (requests, sagas decided)
- ``clinic:sli_bad_events:rate<w>``  the bad ones among them (5xx, slower than the target, timed out)
- ``clinic:sli_error:ratio_rate<w>`` bad / valid over w, 0 (not absent) when nothing was bad;
  for the freshness SLO, the share of w during which a read model was stale
- ``clinic:slo_error_budget:ratio``  1 - objective, one constant per ``slo``

for w in 5m, 30m, 1h, 6h, 3d (the windows of the burn-rate alerts in rules/clinic-alerts.yml).
The public API's availability is ``clinic:http_requests``/``clinic:http_errors`` per service (the
names issue 6's dashboards and alerts, and the rollout analysis, read), written in the same group
and relabelled, instead of computed twice. Rules read series of their own group (the 3-day group
aside, for the freshness instant): groups are evaluated independently (in promtool's tests in
no fixed order), so a rule reading another group's output sees this or the previous evaluation's
value, and the unit tests' exact values would flake.
Unit tests: tests/slo-test.yml (hand-computed values); tests/unit/deployment/test_slo_rules.py
checks this file is what the script writes and that docs/slas.md states the same objectives.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere: the product's package
from application.contexts import SERVICE_NAMES  # noqa: E402 - after the path it is found on

OUT = Path(__file__).resolve().parent / "rules" / "clinic-slo.yml"
WINDOWS = ("5m", "30m", "1h", "6h", "3d")
SLOW_WINDOWS = ("3d",)
"""Evaluated once a minute, not at every 15 s evaluation: a 3-day rate reads 3 days of samples."""
API_SERVICES = "|".join([*SERVICE_NAMES, "clinic"])
"""The services whose public ``/v1`` API the api-* SLOs cover (``clinic``: ``clinic serve``, all in one)."""
PUBLIC_ROUTES = 'route!~"/health/.*|/metrics|/internal/.*"'
"""As in clinic-recording.yml: probes, the scrape and the registry's internal API are not the public API."""
HTTP_DURATION = "clinic_http_request_duration_seconds"
SAGA_DURATION = "clinic_saga_duration_seconds"
FRESHNESS_SECONDS = 5


@dataclass(frozen=True)
class Slo:
    """One objective: its ``slo`` label, the share of good events it promises over 30 days, and
    the PromQL of its valid and bad events per window (``{w}`` is the window)."""

    name: str
    objective: float
    events: str
    bad: str

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 6)


def http_availability(name: str, objective: float, selector: str) -> Slo:
    """Non-5xx answers among the requests of ``selector``; a 429 (the caller over its own quota) is neither."""
    counter = "clinic_http_requests_total"
    return Slo(name, objective,
               f'sum by (service) (rate({counter}{{{selector}, status!="429"}}[{{w}}]))',
               f'sum by (service) (rate({counter}{{{selector}, status=~"5.."}}[{{w}}]))')


def latency(name: str, objective: float, histogram: str, selector: str, le: str) -> Slo:
    """Observations of ``histogram`` slower than its bucket ``le`` (the target) among all of them."""
    events = f"sum by (service) (rate({histogram}_count{{{selector}}}[{{w}}]))"
    good = f'sum by (service) (rate({histogram}_bucket{{{selector}, le="{le}"}}[{{w}}]))'
    return Slo(name, objective, events, f"{events}\n- {good}")


API = f'service=~"{API_SERVICES}", {PUBLIC_ROUTES}'
INTERNAL = 'service="registry", route="/internal/v1/eligibility"'
TOKEN = 'service="auth", route="/oauth/token"'
SAGA = 'service=~"booking|clinic"'

API_AVAILABILITY = Slo("api-availability", 0.995, "", "")
"""``clinic:http_requests``/``clinic:http_errors`` (see ``http_rules``), relabelled for the API services."""
FRESHNESS = Slo("projections-freshness", 0.99, "", "")
"""Time-based: the share of the window's evaluations in which a read model was over FRESHNESS_SECONDS behind
(``clinic:sli_error:ratio``, 1 or 0 at each evaluation, averaged; no events, so no ``sli_events``)."""

SLOS: tuple[Slo, ...] = (
    API_AVAILABILITY,
    latency("api-latency-p95", 0.95, HTTP_DURATION, API, "0.25"),
    latency("api-latency-p99", 0.99, HTTP_DURATION, API, "0.5"),
    http_availability("registry-internal-availability", 0.995, INTERNAL),
    latency("registry-internal-latency-p95", 0.95, HTTP_DURATION, INTERNAL, "0.1"),
    latency("registry-internal-latency-p99", 0.99, HTTP_DURATION, INTERNAL, "0.25"),
    http_availability("auth-token-availability", 0.995, TOKEN),
    latency("auth-token-latency-p95", 0.95, HTTP_DURATION, TOKEN, "0.5"),
    latency("auth-token-latency-p99", 0.99, HTTP_DURATION, TOKEN, "1.0"),
    Slo("booking-saga-success", 0.995, f"sum by (service) (rate({SAGA_DURATION}_count{{{SAGA}}}[{{w}}]))",
        f"sum by (service) (rate(clinic_sagas_timed_out_total{{{SAGA}}}[{{w}}]))"),
    latency("booking-saga-latency-p95", 0.95, SAGA_DURATION, SAGA, "1.0"),
    latency("booking-saga-latency-p99", 0.99, SAGA_DURATION, SAGA, "2.5"),
    FRESHNESS,
)


def record(name: str, expr: str, slo: str) -> dict:
    return {"record": name, "expr": expr, "labels": {"slo": slo}}


def http_rules(w: str) -> list[dict]:
    """Every service's public-API requests and 5xx over ``w`` (the names the dashboards, the 5xx-ratio
    alert and the rollout analysis read), computed here so that the SLO's copies below, in the same
    group, read this evaluation's values."""
    requests, errors = f"clinic:http_requests:rate{w}", f"clinic:http_errors:rate{w}"
    counter = f"clinic_http_requests_total{{{PUBLIC_ROUTES}"
    return [{"record": requests, "expr": f'sum by (service) (rate({counter}, status!="429"}}[{w}]))'},
            {"record": errors, "expr": f'sum by (service) (rate({counter}, status=~"5.."}}[{w}]))'},
            # `or … * 0`: a service that never answered 5xx has a 0 ratio, not a missing one
            {"record": f"clinic:http_errors:ratio_rate{w}", "expr": f"({errors} or {requests} * 0) / {requests}"}]


def window_rules(slo: Slo, w: str) -> list[dict]:
    """The events, bad events and error ratio of one SLO over window ``w``."""
    only = f'{{slo="{slo.name}"}}'
    if slo is API_AVAILABILITY:
        api = f'{{service=~"{API_SERVICES}"}}'
        return [
            *http_rules(w),
            record(f"clinic:sli_events:rate{w}", f"clinic:http_requests:rate{w}{api}", slo.name),
            record(f"clinic:sli_bad_events:rate{w}", f"clinic:http_errors:rate{w}{api}", slo.name),
            record(f"clinic:sli_error:ratio_rate{w}", f"clinic:http_errors:ratio_rate{w}{api}", slo.name)]
    if slo is FRESHNESS:
        return [record(f"clinic:sli_error:ratio_rate{w}", f"avg_over_time(clinic:sli_error:ratio{only}[{w}])",
                       slo.name)]
    events, bad = f"clinic:sli_events:rate{w}{only}", f"clinic:sli_bad_events:rate{w}{only}"
    return [record(f"clinic:sli_events:rate{w}", slo.events.replace("{w}", w), slo.name),
            record(f"clinic:sli_bad_events:rate{w}", slo.bad.replace("{w}", w), slo.name),
            # `or … * 0`: nothing bad yet is a 0 ratio, not a missing one
            record(f"clinic:sli_error:ratio_rate{w}", f"({bad} or {events} * 0) / {events}", slo.name)]


def budget_rules() -> list[dict]:
    """The error budgets: 1 - objective, one constant per SLO."""
    return [record("clinic:slo_error_budget:ratio", f"vector({slo.budget})", slo.name) for slo in SLOS]


def freshness_instant() -> dict:
    """The freshness SLI at one evaluation: 1 while a read model is more than FRESHNESS_SECONDS behind, else 0."""
    stale = f"max by (service, projection) (clinic_projection_lag_seconds) > bool {FRESHNESS_SECONDS}"
    return record("clinic:sli_error:ratio", stale, FRESHNESS.name)


def document() -> dict:
    """Three groups: the budgets; every SLI over the alerting windows, after the freshness instant
    they average (one group, so every rule reads this evaluation's values); and the 3-day windows,
    once a minute (their freshness average reads the instant as of its last evaluation)."""
    fast = [rule for w in WINDOWS if w not in SLOW_WINDOWS for slo in SLOS for rule in window_rules(slo, w)]
    slow = [rule for w in SLOW_WINDOWS for slo in SLOS for rule in window_rules(slo, w)]
    return {"groups": [{"name": "clinic-slo-budgets", "rules": budget_rules()},
                       {"name": "clinic-sli", "rules": [freshness_instant(), *fast]},
                       {"name": "clinic-sli-3d", "interval": "1m", "rules": slow}]}


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, keys in the order written."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)

HEADER = """\
# GENERATED by deployment/prometheus/build.py from its SLO table: edit that, run it, commit both.
# The SLIs and error budgets of docs/slas.md, one scheme for every SLO (labels: slo, service):
#   clinic:sli_events:rate<w>, clinic:sli_bad_events:rate<w>, clinic:sli_error:ratio_rate<w>
#   (w = 5m, 30m, 1h, 6h, 3d) and clinic:slo_error_budget:ratio (1 - objective); and, per service,
#   the public API's clinic:http_requests:rate<w>, clinic:http_errors:rate<w>, clinic:http_errors:ratio_rate<w>.
# The burn-rate alerts that read them: clinic-alerts.yml. Unit tests: ../tests/slo-test.yml.
"""


def render() -> str:
    return HEADER + yaml.dump(document(), Dumper=_Dumper, sort_keys=False, width=120)


def main(argv: list[str]) -> int:
    """Write the rule file, or with ``--check`` fail when it differs from what this script writes."""
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != render():
            print(f"out of date (run deployment/prometheus/build.py): {OUT.name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
