"""Make the JSON schemas of tests/unit/deployment/argo_rollouts from Argo Rollouts' CRDs.

    python tests/unit/deployment/argo_rollouts/trim.py rollout-crd.yaml analysis-template-crd.yaml

(the CRD files of argoproj/argo-rollouts, manifests/crds/, at the tag README.md names). Each CRD's
``openAPIV3Schema`` is kept as it is, except two subtrees this repository never uses and which make up
most of the size: the Rollout's own pod ``template`` (ours comes from the Deployment, ``workloadRef``)
and the analysis ``job`` provider (a whole Job spec). Both become "any object", so a manifest that used
them would still pass here and be checked by the cluster.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ANY_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
TRIMMED = {
    "Rollout": [("properties", "spec", "properties", "template")],
    "AnalysisTemplate": [("properties", "spec", "properties", "metrics", "items", "properties", "provider",
                          "properties", "job")],
}


def trimmed_schema(crd: dict) -> tuple[str, dict]:
    """The CRD's kind and its served version's schema, without the subtrees of ``TRIMMED``."""
    kind = crd["spec"]["names"]["kind"]
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
    schema = version["schema"]["openAPIV3Schema"]
    for path in TRIMMED.get(kind, []):
        parent = schema
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = ANY_OBJECT
    return kind, schema


def main(paths: list[str]) -> None:
    for path in paths:
        kind, schema = trimmed_schema(yaml.safe_load(Path(path).read_text()))
        target = HERE / f"{kind.lower()}.schema.json"
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"{target}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
