"""Validation of rendered objects: the built-in kinds against Kubernetes' schemas
(kubernetes_validate, as tests/manifests does), and the Prometheus Operator's kinds, which
those schemas do not know, against the Operator's own CustomResourceDefinitions.

crds/ holds the two CRDs that kustomize/components/monitoring/operator uses (PodMonitor,
PrometheusRule), as the
prometheus-operator project publishes them (example/prometheus-operator-crd/, release v0.93.0,
Apache-2.0), read offline. Their openAPIV3Schema is checked here as the API server would with
`kubectl apply --validate=strict`: every field typed as the CRD says, required fields present,
and an unknown field an error (the schema itself allows unknown fields, which the API server
would prune silently: a typo would vanish). Not checked: the CEL rules
(x-kubernetes-validations) and the rule expressions, which promtool checks (tests/monitoring).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from tests.manifests.render import KUBERNETES_VERSION

CRDS = Path(__file__).parent / "crds"


class InvalidCustomResource(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def strict(schema: dict) -> dict:
    """The schema with additionalProperties false wherever it lists properties and says
    nothing of the others (as strict field validation treats them)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


@cache
def custom_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of every served version in crds/."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version["served"]:
                api_version = f"{spec['group']}/{version['name']}"
                schema = strict(version["schema"]["openAPIV3Schema"])
                # metadata is ObjectMeta, which the CRD leaves to the API server.
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def validate(obj: dict) -> None:
    """Raise kubernetes_validate.ValidationError or InvalidCustomResource (both with a
    .message) if `obj` is not valid for Kubernetes 1.32 or for the CRD of its kind."""
    schema = custom_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
    meta = obj.get("metadata", {})
    if not isinstance(meta.get("name"), str):
        raise InvalidCustomResource(f"{obj['kind']}: metadata.name is missing")
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path)
        raise InvalidCustomResource(f"{where}: {errors[0].message}")


INVALID = (kubernetes_validate.ValidationError, InvalidCustomResource)
