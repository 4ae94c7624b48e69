"""Rules on how the objects fit together, over lessons, overlays and every combination of
components: who owns the replica count, the common labels, the data tier's one writer, the
servers' spread over nodes, and a port-forward waited for. Each returns its problems as
sentences, none when the rule holds."""

from __future__ import annotations

import re

from tests.manifests.rules import selects

HOSTNAME = "kubernetes.io/hostname"


def scaled_by(objects: list[dict], workload: dict) -> list[dict]:
    """The HorizontalPodAutoscalers of the same namespace that target this workload."""
    meta = workload["metadata"]
    return [
        hpa
        for hpa in objects
        if hpa["kind"] == "HorizontalPodAutoscaler"
        and hpa["metadata"].get("namespace") == meta.get("namespace")
        and hpa["spec"]["scaleTargetRef"]["kind"] == workload["kind"]
        and hpa["spec"]["scaleTargetRef"]["name"] == meta["name"]
    ]


def hpa_replica_problems(where: str, objects: list[dict]) -> list[str]:
    """An HPA owns the replica count of what it scales: a `replicas` field beside it resets the
    count on every `kubectl apply`. And an HPA whose target is not there scales nothing."""
    problems = []
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        found = [
            o
            for o in objects
            if o["kind"] == target["kind"]
            and o["metadata"]["name"] == target["name"]
            and o["metadata"].get("namespace") == hpa["metadata"].get("namespace")
        ]
        if not found:
            problems.append(f"{where}: HPA {hpa['metadata']['name']} targets nothing here")
        for workload in found:
            if "replicas" in workload["spec"]:
                problems.append(
                    f"{where}: {target['kind']} {target['name']} sets replicas beside its HPA "
                    f"{hpa['metadata']['name']}: every apply resets the HPA's count"
                )
    return problems


def label_problems(where: str, objects: list[dict], labels: dict[str, str]) -> list[str]:
    """Every object carries the common labels (`kubectl get ... -l`, `apply --prune -l`)."""
    return [
        f"{where}: {o['kind']}/{o['metadata']['name']} lacks {key}={value}"
        for o in objects
        for key, value in labels.items()
        if o["metadata"].get("labels", {}).get(key) != value
    ]


def claim_problems(where: str, objects: list[dict]) -> list[str]:
    """A claim a Deployment mounts read-write is ReadWriteOncePod, and the Deployment rolls out
    by Recreate. Recreate governs rollouts only: a pod evicted or deleted is replaced while it
    still terminates, and ReadWriteOnce lets the replacement mount the volume on the same node;
    ReadWriteOncePod keeps it Pending until the old pod has let go. With it, a rolling update
    would never finish (its new pod waits for the volume the old one holds): hence Recreate."""
    problems = []
    claims = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == "PersistentVolumeClaim"
    }
    for obj in (o for o in objects if o["kind"] == "Deployment"):
        spec = obj["spec"]["template"]["spec"]
        namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        for volume in spec.get("volumes", []):
            source = volume.get("persistentVolumeClaim")
            if not source or source.get("readOnly"):
                continue
            claim = claims.get((namespace, source["claimName"]))
            if claim is None:
                problems.append(f"{where}: {name} mounts claim {source['claimName']}, not here")
                continue
            modes = claim["spec"].get("accessModes", [])
            if modes != ["ReadWriteOncePod"]:
                problems.append(
                    f"{where}: claim {source['claimName']} of {name} is {modes}: ReadWriteOnce is "
                    "one node, not one pod (an evicted pod's replacement may write beside it)"
                )
            strategy = obj["spec"].get("strategy", {}).get("type", "RollingUpdate")
            if strategy != "Recreate":
                problems.append(
                    f"{where}: {name} rolls out by {strategy}: its new pod would wait forever "
                    "for the ReadWriteOncePod volume the old one holds"
                )
    return problems


def may_run_several(objects: list[dict], workload: dict) -> bool:
    hpas = scaled_by(objects, workload)
    if hpas:
        return any(h["spec"]["maxReplicas"] > 1 for h in hpas)
    return workload["spec"].get("replicas", 1) > 1


def spread_problems(where: str, objects: list[dict]) -> list[str]:
    """A Deployment that may run several replicas spreads them over the nodes: a topology
    spread on the hostname, selecting its own pods, as a preference (ScheduleAnyway), so that
    a one-node cluster still schedules every replica."""
    problems = []
    for obj in (o for o in objects if o["kind"] == "Deployment"):
        if not may_run_several(objects, obj):
            continue
        template = obj["spec"]["template"]
        labels = template["metadata"].get("labels", {})
        spreads = [
            c
            for c in template["spec"].get("topologySpreadConstraints", [])
            if c["topologyKey"] == HOSTNAME
            and selects(c.get("labelSelector", {}).get("matchLabels", {}), labels)
            and c.get("labelSelector", {}).get("matchLabels")
        ]
        name = obj["metadata"]["name"]
        if not spreads:
            problems.append(f"{where}: {name} may run several pods, and none spread over nodes")
        for c in spreads:
            if c["whenUnsatisfiable"] != "ScheduleAnyway":
                problems.append(
                    f"{where}: {name} spreads with {c['whenUnsatisfiable']}: on a one-node "
                    "cluster its second pod would never schedule"
                )
    return problems


FORWARD = re.compile(r"\bport-forward\b[^&]*&(?!&)")
CURL = re.compile(r"\bcurl\b")


APPLY = re.compile(r"\bkubectl (?:-n \S+ )?apply -f (\S+)")
WAITS = re.compile(r"\bkubectl (?:-n \S+ )?(?:wait|rollout status)\b")
USES = re.compile(r"\bkubectl (?:-n \S+ )?(?:exec|port-forward) \S")


def apply_wait_problems(where: str, lines: list[str]) -> list[str]:
    """After `kubectl apply -f`, a `kubectl exec` or `port-forward` needs a running pod: a
    `kubectl wait` (or `rollout status`) must come between, or the command races the pods."""
    problems, applied = [], False
    for line in lines:
        if APPLY.search(line):
            applied = True
        elif WAITS.search(line):
            applied = False
        elif applied and USES.search(line):
            problems.append(f"{where}: `{line.strip()[:60]}` runs before the pods are up")
            applied = False
    return problems


def port_forward_problems(where: str, lines: list[str]) -> list[str]:
    """`kubectl port-forward ... &` returns before the forward listens: the curl after it must
    wait for it (`curl --retry-connrefused`), or it races the forward and may be refused."""
    problems, pending = [], False
    for line in lines:
        forward = FORWARD.search(line)
        if forward:
            pending = True
            line = line[forward.end() :]
        if pending and CURL.search(line):
            if "--retry-connrefused" not in line:
                problems.append(f"{where}: `{line.strip()[:60]}` races the port-forward before it")
            pending = False
    return problems
