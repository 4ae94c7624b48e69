"""Every overlay and lesson validates against the Kubernetes schemas, and follows the
project's own rules (restricted pods, probes, resources, pinned images, wiring that resolves)."""

from __future__ import annotations

import copy
import shutil
import subprocess

import kubernetes_validate
import pytest

from tests.manifests import compose
from tests.manifests.hardening import grace_problems, is_server
from tests.manifests.policies import Endpoint, allows
from tests.manifests.render import (
    KUBERNETES_VERSION,
    LESSONS,
    OVERLAYS,
    ROOT,
    all_sets,
    kustomize,
)
from tests.manifests.rules import VAR_REF, containers, pod_specs, selects, service_variables

RESTRICTED = ("enforce", "audit", "warn")


def test_every_object_validates_strictly(rendered):
    count = 0
    for where, objects in all_sets(rendered):
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
            count += 1
    assert count > 80


def test_validation_catches_a_typo(rendered):
    deployment = next(o for o in rendered["dev"] if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy "] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_lessons_are_numbered_in_order():
    assert len(LESSONS) == 24
    assert [int(name.split("-")[0]) for name in LESSONS] == list(range(1, 25))
    readme = (ROOT / "k8s/README.md").read_text()
    for lesson in LESSONS:
        assert lesson in readme


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_restricted_pod_security(rendered, overlay):
    for name, _, spec in pod_specs(rendered[overlay]):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod.get("runAsUser", 1) != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert "add" not in sc["capabilities"], (name, c["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes(rendered, overlay):
    for name, _, spec in pod_specs(rendered[overlay]):
        for c in containers(spec, init=False):
            assert "livenessProbe" in c, (name, c["name"])
            if c.get("ports"):  # serving: a Service sends it traffic
                assert "readinessProbe" in c, (name, c["name"])
                assert c["readinessProbe"] != c["livenessProbe"], (name, c["name"])
            else:  # a worker: no port, no Service, nothing to be ready for
                assert "readinessProbe" not in c, (name, c["name"])
        for c in spec.get("initContainers", []):
            assert "livenessProbe" not in c and "readinessProbe" not in c


def test_liveness_never_depends_on_redis_and_readiness_does(rendered):
    server = next(
        c
        for _, _, s in pod_specs(rendered["prod"])
        for c in s["containers"]
        if c["name"] == "server"
    )
    assert server["livenessProbe"]["httpGet"]["path"] == "/probe/liveness"
    assert server["readinessProbe"]["httpGet"]["path"] == "/probe/readiness"
    redis = next(
        c
        for _, _, s in pod_specs(rendered["prod"])
        for c in s["containers"]
        if c["name"] == "redis"
    )
    command = " ".join(redis["readinessProbe"]["exec"]["command"])
    assert "valkey-cli -e ping" in command and "REDISCLI_AUTH" in command


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_requests_and_limits(rendered, overlay):
    for name, _, spec in pod_specs(rendered[overlay]):
        for c in containers(spec):
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, c["name"], kind)


def test_images_are_pinned(rendered):
    for where, objects in all_sets(rendered):
        for name, _, spec in pod_specs(objects):
            for c in containers(spec):
                image = c["image"]
                tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else None
                assert tag and tag != "latest", (where, name, image)
                assert c.get("imagePullPolicy") == "IfNotPresent", (where, name, c["name"])


def test_services_select_pods_and_target_existing_ports(rendered):
    for where, objects in all_sets(rendered):
        pods = pod_specs(objects)
        for svc in (o for o in objects if o["kind"] == "Service"):
            if svc["spec"].get("type") == "ExternalName":
                continue  # a DNS alias: no pods of its own (lesson 18's rule checks its target)
            selector = svc["spec"]["selector"]
            matched = [s for _, meta, s in pods if selects(selector, meta.get("labels", {}))]
            assert matched, f"{where}: Service {svc['metadata']['name']} selects no pod"
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                declared = [p for s in matched for c in s["containers"] for p in c.get("ports", [])]
                if isinstance(target, str):
                    assert target in {p.get("name") for p in declared}, (where, target)
                else:
                    assert target in {p["containerPort"] for p in declared}, (where, target)


def test_selectors_match_their_templates(rendered):
    for where, objects in all_sets(rendered):
        for obj in objects:
            if obj["kind"] == "Deployment":
                labels = obj["spec"]["template"]["metadata"]["labels"]
                assert selects(obj["spec"]["selector"]["matchLabels"], labels), where


def test_env_references_resolve(rendered):
    """$(VAR) expands only to an earlier entry of the same container or to a variable injected
    for a Service of the same namespace (created first: the lessons apply in file order)."""
    lessons_so_far: list[dict] = []
    for where, objects in all_sets(rendered):
        if where.startswith("lesson"):
            # A lesson may rely on Services an earlier lesson made in its namespace.
            lessons_so_far += objects
            namespaces = {o["metadata"].get("namespace") for o in objects}
            injected = service_variables(
                [o for o in lessons_so_far if o["metadata"].get("namespace") in namespaces]
            )
        else:
            injected = service_variables(objects)
        for name, _, spec in pod_specs(objects):
            for c in containers(spec):
                earlier: set[str] = set()
                for entry in c.get("env", []):
                    for ref in VAR_REF.findall(entry.get("value", "")):
                        assert ref in earlier | injected, f"{where}: {name}/{c['name']}: $({ref})"
                    earlier.add(entry["name"])


def test_service_discovery_as_the_lessons_teach(rendered):
    for overlay in OVERLAYS:
        env = {
            c["name"]: {e["name"]: e.get("value") for e in c.get("env", [])}
            for _, _, s in pod_specs(rendered[overlay])
            for c in containers(s)
        }
        assert env["server"]["REDIS_URL"] == (
            "redis://$(DATA_TIER_SERVICE_HOST):$(DATA_TIER_SERVICE_PORT_REDIS)/0"
        )
        assert env["await-redis"]["REDIS_URL"] == env["server"]["REDIS_URL"]
        assert env["counter"]["API_URL"] == "http://app-tier:8080"
        assert env["poller"]["API_URL"] == "http://app-tier:$(APP_TIER_SERVICE_PORT)"


def test_graceful_shutdown_fits_in_the_grace_period(rendered):
    """terminationGracePeriodSeconds >= preStop sleep + DRAIN_DELAY + GRACEFUL_TIMEOUT + 2 s for
    every pod running the server (defaults where unset: 30 s grace, drain 3 s, graceful 20 s),
    and likewise compose's stop_grace_period."""
    problems = [p for where, objects in all_sets(rendered) for p in grace_problems(where, objects)]
    assert problems + compose.grace_problems(compose.load()) == []
    servers = [
        where
        for where, objects in all_sets(rendered)
        for _, _, spec in pod_specs(objects)
        for c in spec["containers"]
        if is_server(c)
    ]
    assert len(servers) >= len(OVERLAYS) + len(LESSONS)


@pytest.mark.parametrize(
    ("env", "grace", "fails"),
    [
        ({}, 35, False),  # 5 + 3 + 20 + 2 = 30
        ({}, 29, True),
        ({}, 27, True),  # enough before there was a drain: 5 + 20 + 2
        ({"DRAIN_DELAY": "10"}, 35, True),
        ({"GRACEFUL_TIMEOUT": "26"}, 35, True),
        ({"DRAIN_DELAY": "0", "GRACEFUL_TIMEOUT": "10"}, 17, False),
    ],
)
def test_the_grace_rule_counts_the_drain(rendered, env, grace, fails):
    objects = copy.deepcopy(rendered["prod"])
    [app] = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "app-tier"
    ]
    spec = app["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = grace
    server = next(c for c in spec["containers"] if c["name"] == "server")
    server["env"] = [e for e in server["env"] if e["name"] not in env]
    server["env"] += [{"name": k, "value": v} for k, v in env.items()]
    assert bool(grace_problems("planted", objects)) == fails


def test_the_compose_grace_rule_counts_the_drain():
    planted = compose.load()
    planted["services"]["server"]["stop_grace_period"] = "24s"  # 3 + 20 + 2 = 25
    assert compose.grace_problems(planted)
    del planted["services"]["server"]["stop_grace_period"]  # Docker's 10 s
    assert compose.grace_problems(planted)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_is_restricted_and_holds_everything(rendered, overlay):
    objects = rendered[overlay]
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    assert len(namespaces) == 1
    ns = namespaces[0]["metadata"]
    for mode in RESTRICTED:
        assert ns["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == ns["name"], obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dns_egress_wherever_egress_is_denied(rendered, overlay):
    policies = [o for o in rendered[overlay] if o["kind"] == "NetworkPolicy"]
    denies = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and "Egress" in p["spec"]["policyTypes"]
        and not p["spec"].get("egress")
    ]
    if not denies:
        return
    dns_ports = set()
    for p in policies:
        if p["spec"]["podSelector"] == {}:
            for rule in p["spec"].get("egress", []):
                dns_ports |= {(port["protocol"], port["port"]) for port in rule.get("ports", [])}
    assert {("UDP", 53), ("TCP", 53)} <= dns_ports


def test_the_overlays_really_differ(rendered):
    def kinds(overlay):
        return [o["kind"] for o in rendered[overlay]]

    def deployment(overlay, name):
        return next(
            o
            for o in rendered[overlay]
            if o["kind"] == "Deployment" and o["metadata"]["name"] == name
        )

    def replicas(overlay, name):
        return deployment(overlay, name)["spec"]["replicas"]

    def redis_conf(overlay):
        cm = next(o for o in rendered[overlay] if o["kind"] == "ConfigMap")
        return cm["data"]["persistence.conf"]

    assert replicas("dev", "app-tier") == 1
    assert "NetworkPolicy" not in kinds("dev") and "PersistentVolumeClaim" not in kinds("dev")
    assert "appendonly no" in redis_conf("dev")
    for overlay in ("staging", "prod"):
        assert "NetworkPolicy" in kinds(overlay) and "PersistentVolumeClaim" in kinds(overlay)
        assert "appendonly yes" in redis_conf(overlay)
        assert "appendfsync everysec" in redis_conf(overlay)
    assert "HorizontalPodAutoscaler" not in kinds("staging")
    assert "replicas" not in deployment("prod", "app-tier")["spec"]  # the HPA's to set
    hpa = next(o for o in rendered["prod"] if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] >= 2
    assert "PodDisruptionBudget" in kinds("prod")


def test_no_secret_in_the_base_and_no_commonlabels():
    assert "Secret" not in [o["kind"] for o in kustomize(ROOT / "kustomize/base")]
    for path in (ROOT / "kustomize").rglob("kustomization.yaml"):
        assert "commonLabels" not in path.read_text(), path


def test_prod_without_its_secrets_file_fails_clearly(tmp_path):
    shutil.copytree(ROOT / "kustomize", tmp_path / "kustomize")
    (tmp_path / "kustomize/overlays/prod/secrets.env").unlink(missing_ok=True)
    result = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "kustomize/overlays/prod")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "secrets.env" in result.stderr and "no such file" in result.stderr


def test_secrets_are_generated_with_the_keys_the_pods_use(rendered):
    for overlay in OVERLAYS:
        secret = next(o for o in rendered[overlay] if o["kind"] == "Secret")
        for _, _, spec in pod_specs(rendered[overlay]):
            for c in containers(spec):
                for entry in c.get("env", []):
                    ref = entry.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == secret["metadata"]["name"]
                        assert ref["key"] in secret["data"]


def test_the_hpa_owns_the_replicas_of_what_it_scales(rendered):
    """A replicas field beside an HPA resets its count on every apply."""
    owned = 0
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]
            workload = next(
                o
                for o in objects
                if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
            )
            assert "replicas" not in workload["spec"], f"{overlay}: {target['name']}"
            owned += 1
    assert owned, "some overlay autoscales"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scraped_pods_can_be_scraped_and_still_reached(rendered, overlay):
    """Scrape annotations are useless if the namespace's default deny blocks every scraper;
    and no policy that lets a scraper in may cut the counter off from the server."""
    objects = rendered[overlay]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    app = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "app-tier"
    )
    labels = app["spec"]["template"]["metadata"]["labels"]
    annotations = app["spec"]["template"]["metadata"].get("annotations", {})
    isolated = any(
        "Ingress" in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
        for p in policies
    )
    app_pod = Endpoint(labels)
    if isolated:
        support = Endpoint({"tier": "support"})
        assert allows(policies, "Ingress", app_pod, support, 8080), "support -> app on 8080"
    if annotations.get("prometheus.io/scrape") == "true" and isolated:
        prometheus = Endpoint(
            {"app.kubernetes.io/name": "prometheus"},
            {"kubernetes.io/metadata.name": "monitoring"},
        )
        port = int(annotations["prometheus.io/port"])
        assert allows(policies, "Ingress", app_pod, prometheus, port), "a scraper may reach it"
