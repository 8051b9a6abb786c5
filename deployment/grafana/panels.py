"""Building blocks of the clinic's Grafana dashboards (used by ``build.py``).

Every panel queries the ``${DS_PROMETHEUS}`` datasource variable and every query is filtered by
the ``service`` variable, so one dashboard serves any deployment and any subset of services.
"""

from __future__ import annotations

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
S = 'service=~"$service"'
"""The matcher every query carries: the services chosen in the dashboard's `service` variable."""
RATE = "[$__rate_interval]"
QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))
BREAKER_STATES = {"0": ("closed", "green"), "1": ("half-open", "yellow"), "2": ("open", "red")}


def target(expr: str, legend: str) -> dict:
    """One PromQL query of a panel (refIds are given by ``panel``)."""
    return {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend, "range": True}


def panel(kind: str, title: str, description: str, targets: list[dict], unit: str, width: int = 12) -> dict:
    """A panel of ``kind`` with its queries, unit and a width out of 24 columns (placed by ``dashboard``)."""
    for ref, query in zip("ABCDEFGH", targets, strict=False):
        query["refId"] = ref
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "targets": targets, "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {},
            "gridPos": {"w": width, "h": 8}}


def timeseries(title: str, description: str, targets: list[dict], unit: str, width: int = 12,
               thresholds: tuple[float, ...] = (), bars: bool = False) -> dict:
    """A time series panel; ``thresholds`` are drawn as dashed lines (e.g. an alert's)."""
    body = panel("timeseries", title, description, targets, unit, width)
    custom = {"drawStyle": "bars" if bars else "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
              "spanNulls": False, "thresholdsStyle": {"mode": "dashed" if thresholds else "off"}}
    body["fieldConfig"]["defaults"].update(custom=custom, thresholds=_steps(thresholds, ("red", "dark-red")))
    body["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                                  "calcs": ["mean", "max", "lastNotNull"]},
                       "tooltip": {"mode": "multi", "sort": "desc"}}
    return body


def stat(title: str, description: str, targets: list[dict], unit: str, width: int = 12,
         thresholds: tuple[float, ...] = (), colors: tuple[str, ...] = ("red",), base: str = "green") -> dict:
    """A single-value panel per series (last value), coloured by ``thresholds``."""
    body = panel("stat", title, description, targets, unit, width)
    body["fieldConfig"]["defaults"]["thresholds"] = _steps(thresholds, colors, base)
    body["options"] = {"colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                       "orientation": "auto", "textMode": "value_and_name",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return body


def breaker_timeline(title: str, description: str, targets: list[dict], width: int = 24) -> dict:
    """A state timeline of circuit breakers: 0 closed, 1 half-open, 2 open."""
    body = panel("state-timeline", title, description, targets, "none", width)
    mappings = {value: {"text": text, "color": color, "index": int(value)}
                for value, (text, color) in BREAKER_STATES.items()}
    body["fieldConfig"]["defaults"].update(mappings=[{"type": "value", "options": mappings}],
                                           color={"mode": "thresholds"},
                                           thresholds=_steps((1, 2), ("yellow", "red")))
    body["options"] = {"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                       "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                       "tooltip": {"mode": "single", "sort": "none"}}
    return body


def _steps(values: tuple[float, ...], colors: tuple[str, ...], base: str = "green") -> dict:
    steps = [{"color": base, "value": None}]
    steps += [{"color": colors[min(i, len(colors) - 1)], "value": value} for i, value in enumerate(values)]
    return {"mode": "absolute", "steps": steps}


def quantiles(metric: str, by: str, legend: str, which: tuple[tuple[str, str], ...] = QUANTILES) -> list[dict]:
    """histogram_quantile over the rate of ``metric``'s buckets, one query per quantile."""
    return [target(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{S}}}{RATE})))",
                   f"{name} {legend}") for name, q in which]


def rate(metric: str, by: str, legend: str, matchers: str = "") -> dict:
    """Per-second rate of a counter, summed by ``by``."""
    selector = ", ".join(filter(None, [S, matchers]))
    return target(f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))", legend)


def dashboard(uid: str, title: str, description: str, rows: list[tuple[str, list[dict]]]) -> dict:
    """A dashboard of rows, each panel placed left to right and wrapped at 24 columns."""
    panels, y, ids = [], 0, iter(range(1, 1000))
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "id": next(ids), "collapsed": False, "panels": [],
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        y, x, height = y + 1, 0, 0
        for item in row_panels:
            if x + item["gridPos"]["w"] > 24:
                y, x, height = y + height, 0, 0
            item["gridPos"].update(x=x, y=y)
            item["id"] = next(ids)
            x, height = x + item["gridPos"]["w"], max(height, item["gridPos"]["h"])
            panels.append(item)
        y += height
    return {"uid": uid, "title": title, "description": description, "tags": ["clinic"], "editable": True,
            "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "browser",
            "time": {"from": "now-6h", "to": "now"}, "fiscalYearStartMonth": 0, "liveNow": False,
            "annotations": {"list": []}, "links": [_link()], "templating": {"list": _variables()},
            "panels": panels}


def _link() -> dict:
    return {"title": "Clinic dashboards", "type": "dashboards", "tags": ["clinic"], "asDropdown": True,
            "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False, "url": "",
            "tooltip": ""}


def _variables() -> list[dict]:
    query = "label_values(clinic_http_requests_total, service)"
    return [
        {"name": "DS_PROMETHEUS", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""},
        {"name": "service", "label": "Service", "type": "query", "datasource": DATASOURCE,
         "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "current": {}, "hide": 0, "includeAll": True, "allValue": ".*", "multi": True, "options": [],
         "refresh": 2, "regex": "", "sort": 1},
    ]

