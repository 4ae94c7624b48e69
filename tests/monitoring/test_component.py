"""The monitoring component as staging and prod render it: the adapter runs beside Redis from
the server's image, a Prometheus of the `monitoring` namespace may scrape both and nothing
more. Its operator/ component added to them (as a user of the Prometheus Operator would): the
PodMonitor finds the server's and the adapter's ports, and the Operator's kinds hold to their
CRDs (custom_resources.py), which catch a planted mistake. Without it, staging and prod hold
no kind a cluster without the Operator would refuse."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from tests.manifests.policies import Endpoint, connects
from tests.manifests.render import ROOT, copy_with_prod_secrets, kustomize
from tests.manifests.rules import selects
from tests.monitoring.custom_resources import INVALID, validate

SCRAPED = ["staging", "prod"]
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}
# The labels the Prometheus Operator gives its Prometheus pods (allow-scrapers-to-app.yaml).
PROMETHEUS = Endpoint(
    {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"},
    {"kubernetes.io/metadata.name": "monitoring"},
)


@pytest.fixture(scope="module")
def operated(tmp_path_factory) -> dict[str, list[dict]]:
    """staging and prod, each with the operator component added by an overlay of its own."""
    tree = copy_with_prod_secrets(tmp_path_factory.mktemp("operated"))
    rendered = {}
    for overlay in SCRAPED:
        folder = tree / "overlays" / f"{overlay}-operated"
        folder.mkdir()
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # As in the overlay itself: what a component adds gets the overlay's namespace.
            "namespace": f"microservices-{overlay}",
            "resources": [f"../{overlay}"],
            "components": ["../../components/monitoring/operator"],
        }
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        rendered[overlay] = kustomize(folder)
    return rendered


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    [found] = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def pod_template(objects: list[dict], tier: str) -> dict:
    return one(objects, "Deployment", f"{tier}-tier")["spec"]["template"]


def container(template: dict, name: str) -> dict:
    [found] = [c for c in template["spec"]["containers"] if c["name"] == name]
    return found


@pytest.mark.parametrize("overlay", SCRAPED)
def test_the_pod_monitor_scrapes_the_server_and_the_adapter(operated, overlay):
    objects = operated[overlay]
    monitor = one(objects, "PodMonitor")
    # Its namespace is the pods' (a PodMonitor looks in its own namespace by default).
    assert monitor["metadata"]["namespace"] == one(objects, "Namespace")["metadata"]["name"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = {e["port"]: e["path"] for e in monitor["spec"]["podMetricsEndpoints"]}
    targets = {}
    for tier in ("app", "data", "support"):
        template = pod_template(objects, tier)
        assert selects(selector, template["metadata"]["labels"]), tier
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        targets[tier] = sorted(ports & set(endpoints))
    assert targets == {"app": ["http"], "data": ["metrics"], "support": []}
    assert endpoints == {"http": "/metrics", "metrics": "/metrics"}


@pytest.mark.parametrize("overlay", SCRAPED)
def test_the_adapter_runs_beside_redis_from_the_servers_image(rendered, overlay):
    objects = rendered[overlay]
    data = pod_template(objects, "data")
    adapter = container(data, "redis-metrics")
    server = container(pod_template(objects, "app"), "server")
    assert adapter["image"] == server["image"] == "microservices/server:1.1.0"
    assert adapter["command"] == ["microservices-redis-metrics"]
    env = {e["name"]: e for e in adapter["env"]}
    assert env["REDIS_URL"]["value"] == "redis://127.0.0.1:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
    assert data["metadata"]["annotations"]["prometheus.io/port"] == "9121"
    assert data["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "redis"
    # Its probes never ask Redis: the pod's readiness stays Redis' own.
    assert adapter["readinessProbe"]["httpGet"]["path"] == "/"
    assert "tcpSocket" in adapter["livenessProbe"]


def test_an_overlay_that_changes_the_servers_image_changes_the_adapters(tmp_path):
    tree = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", tree)
    (tree / "overlays/mine").mkdir()
    (tree / "overlays/mine/kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["../staging"],
                "images": [{"name": "microservices/server", "newTag": "7.7.7"}],
            }
        )
    )
    objects = kustomize(tree / "overlays/mine")
    assert container(pod_template(objects, "data"), "redis-metrics")["image"] == (
        "microservices/server:7.7.7"
    )


@pytest.mark.parametrize("overlay", SCRAPED)
def test_prometheus_may_scrape_both_and_reach_nothing_else(rendered, overlay):
    objects = rendered[overlay]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def pod(tier):
        return Endpoint(pod_template(objects, tier)["metadata"]["labels"])

    assert connects(policies, PROMETHEUS, pod("app"), 8080)
    assert connects(policies, PROMETHEUS, pod("data"), 9121)
    assert not connects(policies, PROMETHEUS, pod("data"), 6379), "Redis is the server's"
    elsewhere = Endpoint(PROMETHEUS.labels, {"kubernetes.io/metadata.name": "default"})
    assert not connects(policies, elsewhere, pod("app"), 8080)
    assert not connects(policies, pod("support"), pod("data"), 9121)


@pytest.mark.parametrize("overlay", SCRAPED)
def test_the_operators_kinds_come_only_with_the_operator_component(rendered, operated, overlay):
    assert not OPERATOR_KINDS & {o["kind"] for o in rendered[overlay]}
    added = [o for o in operated[overlay] if o not in rendered[overlay]]
    assert sorted(o["kind"] for o in added) == sorted(OPERATOR_KINDS)
    for obj in added:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "microservices"


@pytest.mark.parametrize("overlay", SCRAPED)
def test_every_object_validates_the_operators_kinds_against_their_crds(operated, overlay):
    for obj in operated[overlay]:
        validate(obj)


@pytest.mark.parametrize(
    ("kind", "plant", "complaint"),
    [
        ("PodMonitor", lambda s: s["podMetricsEndpoints"][0].update(prot="http"), "'prot'"),
        ("PodMonitor", lambda s: s["podMetricsEndpoints"][0].update(interval=15), "string"),
        ("PodMonitor", lambda s: s.update(podMetricsEndpoint=[]), "'podMetricsEndpoint'"),
        ("PrometheusRule", lambda s: s["groups"][0]["rules"][0].pop("expr"), "'expr'"),
        ("PrometheusRule", lambda s: s["groups"][0].update(rule=[]), "'rule'"),
    ],
)
def test_a_mistake_in_an_operator_kind_is_caught(operated, kind, plant, complaint):
    obj = copy.deepcopy(one(operated["prod"], kind))
    plant(obj["spec"])
    with pytest.raises(INVALID) as caught:
        validate(obj)
    assert complaint in caught.value.message
