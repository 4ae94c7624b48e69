"""Reading rendered objects: pod templates, containers, injected service variables."""

from __future__ import annotations

import re

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod_specs(objects: list[dict]) -> list[tuple[str, dict, dict]]:
    """(name, pod metadata, pod spec) of every Pod and pod template."""
    found = []
    for obj in objects:
        if obj["kind"] == "Pod":
            found.append((obj["metadata"]["name"], obj["metadata"], obj["spec"]))
        elif obj["kind"] in WORKLOADS:
            template = obj["spec"]["template"]
            found.append((obj["metadata"]["name"], template["metadata"], template["spec"]))
    return found


def containers(spec: dict, init: bool = True) -> list[dict]:
    return spec["containers"] + (spec.get("initContainers", []) if init else [])


def service_variables(objects: list[dict]) -> set[str]:
    """The variables Kubernetes injects for these Services (docs: "Environment variables")."""
    names = set()
    for obj in objects:
        # An ExternalName Service (a DNS alias) has no address: no variables.
        if obj["kind"] != "Service" or obj["spec"].get("type") == "ExternalName":
            continue
        prefix = obj["metadata"]["name"].upper().replace("-", "_") + "_SERVICE"
        names |= {f"{prefix}_HOST", f"{prefix}_PORT"}
        for port in obj["spec"]["ports"]:
            if "name" in port:
                names.add(f"{prefix}_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# The kinds the rendered manifests may hold that belong to no namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def namespace_problems(objects: list[dict], namespace: str) -> list[str]:
    """Each namespaced object not in `namespace` (kubectl would put one without any wherever
    its context points), and the Namespace itself if it is not among them."""
    problems = [
        f"{o['kind']} {o['metadata']['name']} in {o['metadata'].get('namespace')!r}"
        for o in objects
        if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != namespace
    ]
    if not any(o["kind"] == "Namespace" and o["metadata"]["name"] == namespace for o in objects):
        problems.append(f"no Namespace {namespace}")
    return problems
