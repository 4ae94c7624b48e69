"""NetworkPolicy, as a CNI that enforces it decides: may this pod open a connection to that one
on this port? For the rules on the overlays and on the network-policies lesson.

An endpoint is a pod's labels and, for a pod of another namespace, that namespace's labels
(None: the namespace the policies are in). A direction of a pod is isolated when some policy
selecting the pod has that policy type; an isolated direction lets through only what a rule of
such a policy allows. A connection needs both the source's egress and the destination's
ingress (each only checked for a pod of the policies' namespace).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.manifests.rules import selects


@dataclass(frozen=True)
class Endpoint:
    labels: dict = field(default_factory=dict)
    namespace: dict | None = None  # the labels of another namespace; None: the policies' own


KUBE_DNS = Endpoint({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})


def matches(selector: dict | None, labels: dict) -> bool:
    """A label selector (matchLabels only) against labels; {} selects everything."""
    selector = selector or {}
    if selector.get("matchExpressions"):
        raise ValueError(f"matchExpressions are not evaluated here: {selector}")
    return selects(selector.get("matchLabels", {}), labels)


def peer_matches(peer: dict, other: Endpoint) -> bool:
    """One `from`/`to` entry of a rule against the endpoint at the other end."""
    if "ipBlock" in peer:
        raise ValueError(f"ipBlock peers are not evaluated here: {peer}")
    if "namespaceSelector" in peer:
        if other.namespace is None:
            return False  # a namespaceSelector of ours would be read with our own labels: unused
        if not matches(peer["namespaceSelector"], other.namespace):
            return False
    elif other.namespace is not None:
        return False  # a podSelector alone means pods of the policy's namespace
    return matches(peer.get("podSelector"), other.labels)


def port_matches(rule: dict, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("port", port) == port and p.get("protocol", "TCP") == protocol for p in ports)


def policy_types(spec: dict) -> list[str]:
    """policyTypes, or what Kubernetes defaults it to: Ingress, and Egress if there are rules."""
    return spec.get("policyTypes") or ["Ingress"] + (["Egress"] if "egress" in spec else [])


def allows(
    policies: list[dict],
    direction: str,
    pod: Endpoint,
    other: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether the policies let `other` in to `pod` (direction "Ingress") or `pod` out to
    `other` ("Egress") on `port`."""
    selecting = [
        p
        for p in policies
        if direction in policy_types(p["spec"]) and matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True  # not isolated in this direction
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if port_matches(rule, port, protocol) and (
                not peers or any(peer_matches(peer, other) for peer in peers)
            ):
                return True
    return False


def connects(
    policies: list[dict], source: Endpoint, destination: Endpoint, port: int, protocol="TCP"
) -> bool:
    """Source's egress and destination's ingress, each where the policies are that pod's."""
    out = source.namespace is not None or allows(
        policies, "Egress", source, destination, port, protocol
    )
    into = destination.namespace is not None or allows(
        policies, "Ingress", destination, source, port, protocol
    )
    return out and into
