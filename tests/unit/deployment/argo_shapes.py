"""The shape of the Argo Rollouts resources this repository uses, written here from the Argo Rollouts
documentation (Rollout and AnalysisTemplate specs, v1.x): only the fields we use or may use next, each
with its type, unknown fields refused — as ``kubectl apply``'s strict field validation would refuse a
misspelt field against the real CRDs. Not a copy of the CRDs: a field we start to use must be added
here, by hand, after reading its documentation.
"""

from __future__ import annotations

from typing import Any


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STRING = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
ANY_OBJECT = {"type": "object"}
DURATION = {"anyOf": [STRING, INT]}
INT_OR_STRING = {"anyOf": [STRING, INT]}
METADATA = obj({"name": STRING, "namespace": STRING, "labels": ANY_OBJECT, "annotations": ANY_OBJECT}, ("name",))

ARG_VALUE_FROM = obj({
    "fieldRef": obj({"fieldPath": STRING}, ("fieldPath",)),
    "podTemplateHashValue": {"enum": ["Stable", "Latest"]},
})
ROLLOUT_ANALYSIS_ARG = obj({"name": STRING, "value": STRING, "valueFrom": ARG_VALUE_FROM}, ("name",))
STEP = obj({
    "setWeight": INT,
    "pause": obj({"duration": DURATION}),
    "analysis": obj({"templates": array(obj({"templateName": STRING, "clusterScope": BOOL}, ("templateName",))),
                     "args": array(ROLLOUT_ANALYSIS_ARG)}),
    "setCanaryScale": obj({"weight": INT, "replicas": INT, "matchTrafficWeight": BOOL}),
})
CANARY = obj({
    "stableService": STRING,
    "canaryService": STRING,
    "trafficRouting": obj({"nginx": obj({
        "stableIngress": STRING, "additionalIngressAnnotations": ANY_OBJECT, "annotationPrefix": STRING,
    }, ("stableIngress",))}),
    "abortScaleDownDelaySeconds": INT,
    "scaleDownDelaySeconds": INT,
    "maxSurge": INT_OR_STRING,
    "maxUnavailable": INT_OR_STRING,
    "analysis": obj({
        "templates": array(obj({"templateName": STRING, "clusterScope": BOOL}, ("templateName",))),
        "args": array(ROLLOUT_ANALYSIS_ARG),
        "startingStep": INT,
    }, ("templates",)),
    "steps": array(STEP),
})
ROLLOUT = obj({
    "apiVersion": {"const": "argoproj.io/v1alpha1"},
    "kind": {"const": "Rollout"},
    "metadata": METADATA,
    "spec": obj({
        "replicas": INT,
        "revisionHistoryLimit": INT,
        "selector": obj({"matchLabels": ANY_OBJECT}, ("matchLabels",)),
        "workloadRef": obj({"apiVersion": STRING, "kind": STRING, "name": STRING,
                            "scaleDown": {"enum": ["never", "onsuccess", "progressively"]}},
                           ("apiVersion", "kind", "name")),
        "minReadySeconds": INT,
        "progressDeadlineSeconds": INT,
        "progressDeadlineAbort": BOOL,
        "strategy": obj({"canary": CANARY}, ("canary",)),
    }, ("strategy",)),
}, ("apiVersion", "kind", "metadata", "spec"))

PROMETHEUS = obj({"address": STRING, "query": STRING, "timeout": INT, "insecure": BOOL,
                  "headers": array(obj({"key": STRING, "value": STRING}, ("key", "value")))},
                 ("address", "query"))
METRIC = obj({
    "name": STRING,
    "interval": DURATION,
    "initialDelay": DURATION,
    "count": INT_OR_STRING,
    "failureLimit": INT_OR_STRING,
    "inconclusiveLimit": INT_OR_STRING,
    "consecutiveErrorLimit": INT_OR_STRING,
    "successCondition": STRING,
    "failureCondition": STRING,
    "provider": obj({"prometheus": PROMETHEUS}, ("prometheus",)),
}, ("name", "provider"))
ANALYSIS_TEMPLATE = obj({
    "apiVersion": {"const": "argoproj.io/v1alpha1"},
    "kind": {"const": "AnalysisTemplate"},
    "metadata": METADATA,
    "spec": obj({"args": array(obj({"name": STRING, "value": STRING}, ("name",))), "metrics": array(METRIC)},
                ("metrics",)),
}, ("apiVersion", "kind", "metadata", "spec"))

SHAPES = {"Rollout": ROLLOUT, "AnalysisTemplate": ANALYSIS_TEMPLATE}
