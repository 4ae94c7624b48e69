"""Every supported combination of the base and the components renders, validates and follows
the project's rules, not only the three overlays; and the rules on how objects fit together
(structure.py), each shown to bite on what it replaced."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from tests.manifests.hardening import (
    grace_problems,
    heartbeat_problems,
    redis_problems,
    retry_problems,
)
from tests.manifests.lessons import lesson_instructions, sh_lines
from tests.manifests.policies import KUBE_DNS, Endpoint, connects
from tests.manifests.render import (
    COMBINATIONS,
    KUBERNETES_VERSION,
    LESSONS,
    OVERLAYS,
    ROOT,
    all_sets,
    combination_name,
    common_labels,
)
from tests.manifests.rules import containers, pod_specs, selects
from tests.manifests.structure import (
    apply_wait_problems,
    claim_problems,
    hpa_replica_problems,
    label_problems,
    port_forward_problems,
    spread_problems,
)

NAMES = [combination_name(c) for c in COMBINATIONS]


def every_rendering(rendered, combinations):
    yield from ((f"overlay {o}", rendered[o]) for o in OVERLAYS)
    yield from ((f"combination {name}", objects) for name, objects in combinations.items())


def deployment(objects: list[dict], name: str) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


# Every combination (item 14): what the overlays are held to, each combination is too.


def test_every_supported_combination_is_rendered(combinations):
    # 2**6 subsets, less the 24 with monitoring or ingress but no network-policies; and
    # redis-ha with the 2**4 subsets of the others, less the 4 with ingress alone; each with
    # and without pypy
    assert len(combinations) == 104
    assert "base" in combinations
    assert (
        "base+network-policies+persistence+autoscaling+monitoring+local-images+ingress"
        in combinations
    )


@pytest.mark.parametrize("name", NAMES)
def test_combination_validates_and_follows_the_rules(combinations, name):
    objects = combinations[name]
    where = f"combination {name}"
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    [namespace] = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    for pod, _, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True, pod
        assert spec.get("automountServiceAccountToken") is False, pod
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"], pod
            assert sc["capabilities"]["drop"] == ["ALL"], pod
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (pod, c["name"])
            assert ":" in c["image"].split("/")[-1] and not c["image"].endswith(":latest")
        for c in containers(spec, init=False):
            assert "livenessProbe" in c, (pod, c["name"])
    for svc in (o for o in objects if o["kind"] == "Service"):
        assert any(
            selects(svc["spec"]["selector"], meta.get("labels", {}))
            for _, meta, _ in pod_specs(objects)
        ), svc["metadata"]["name"]
    problems = [
        *grace_problems(where, objects),
        *heartbeat_problems(where, objects),
        *redis_problems(where, objects),
        *retry_problems(where, objects),
    ]
    assert problems == []


@pytest.mark.parametrize("name", NAMES)
def test_combination_keeps_the_app_connected(combinations, name):
    """Whatever the policies a combination brings: the support tier reaches the server, the
    server Redis, and every pod the cluster's DNS."""
    objects = combinations[name]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def pod(tier):
        # The data tier is a StatefulSet with redis-ha, else a Deployment.
        [workload] = [
            o
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and o["metadata"]["name"] == f"{tier}-tier"
        ]
        return Endpoint(workload["spec"]["template"]["metadata"]["labels"])

    assert connects(policies, pod("support"), pod("app"), 8080)
    assert connects(policies, pod("app"), pod("data"), 6379)
    if "redis-ha" in name:  # the sentinels, and the nodes among themselves
        assert connects(policies, pod("app"), pod("data"), 26379)
        for port in (6379, 26379):
            assert connects(policies, pod("data"), pod("data"), port)
    for tier in ("support", "app", "data"):
        assert connects(policies, pod(tier), KUBE_DNS, 53, "UDP"), tier


INGRESS_CONTROLLER = Endpoint(
    {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
    {"kubernetes.io/metadata.name": "ingress-nginx"},
)


@pytest.mark.parametrize(
    ("name", "controller_gets_in"),
    [("base+network-policies", False), ("base+network-policies+ingress", True)],
)
def test_the_ingress_component_lets_the_controller_in_and_nothing_else(
    combinations, name, controller_gets_in
):
    objects = combinations[name]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    app = Endpoint(deployment(objects, "app-tier")["spec"]["template"]["metadata"]["labels"])
    assert connects(policies, INGRESS_CONTROLLER, app, 8080) is controller_gets_in
    stranger = Endpoint({"app.kubernetes.io/name": "ingress-nginx"}, {"name": "elsewhere"})
    assert not connects(policies, stranger, app, 8080)
    assert not connects(policies, INGRESS_CONTROLLER, app, 9999)


def test_the_ingress_exposes_the_page_and_the_api_over_tls_only(combinations):
    objects = combinations["base+network-policies+ingress"]
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    spec = ingress["spec"]
    [rule] = spec["rules"]
    assert [rule["host"]] == spec["tls"][0]["hosts"] and spec["tls"][0]["secretName"]
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    assert paths == {("/", "Exact"), ("/api", "Prefix"), ("/static", "Prefix")}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        ports = [p["name"] for p in services[backend["name"]]["spec"]["ports"]]
        assert backend["port"]["name"] in ports


def test_the_local_images_component_changes_valkey_only(combinations):
    plain = combinations["base"]
    local = combinations["base+local-images"]

    def images(objects):
        return sorted(c["image"] for _, _, s in pod_specs(objects) for c in containers(s))

    assert "microservices-airgap/valkey:9.1-forky" in images(local)
    assert "valkey/valkey:9.1.2-trixie" in images(plain)
    assert [i for i in images(local) if "valkey" not in i] == [
        i for i in images(plain) if "valkey" not in i
    ]


# Item 11: an HPA owns the count of what it scales, in lessons and renderings alike.


def test_no_replicas_beside_an_hpa(rendered, combinations):
    sets = [*all_sets(rendered), *every_rendering(rendered, combinations)]
    problems = [p for where, objects in sets for p in hpa_replica_problems(where, objects)]
    assert problems == []
    assert sum("HorizontalPodAutoscaler" in [o["kind"] for o in objects] for _, objects in sets) > 3


def test_the_hpa_rule_fails_on_replicas_beside_it(rendered):
    objects = copy.deepcopy(rendered["prod"])
    deployment(objects, "app-tier")["spec"]["replicas"] = 2
    [problem] = hpa_replica_problems("planted", objects)
    assert "sets replicas beside its HPA" in problem


# Item 13: every object carries the common labels, whatever added it.


def test_every_rendered_object_carries_the_common_labels(rendered, combinations):
    labels = common_labels()
    assert labels == {"app.kubernetes.io/part-of": "microservices"}
    problems = [
        p
        for where, objects in every_rendering(rendered, combinations)
        for p in label_problems(where, objects, labels)
    ]
    assert problems == []


def test_the_label_rule_fails_on_an_unlabelled_object(rendered):
    objects = copy.deepcopy(rendered["prod"])
    pvc = next(o for o in objects if o["kind"] == "PersistentVolumeClaim")
    del pvc["metadata"]["labels"]["app.kubernetes.io/part-of"]
    [problem] = label_problems("planted", objects, common_labels())
    assert "PersistentVolumeClaim/redis-data lacks app.kubernetes.io/part-of" in problem


# Item 9: one Redis writing the volume at a time, evictions included.


def test_a_claimed_volume_has_one_writer(rendered, combinations):
    sets = [*all_sets(rendered), *every_rendering(rendered, combinations)]
    problems = [p for where, objects in sets for p in claim_problems(where, objects)]
    assert problems == []
    assert "PersistentVolumeClaim" in [o["kind"] for o in rendered["prod"]]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda pvc, d: pvc["spec"].update(accessModes=["ReadWriteOnce"]), "one node, not one pod"),
        (lambda pvc, d: d["spec"].pop("strategy"), "rolls out by RollingUpdate"),
    ],
)
def test_the_claim_rule_fails_on_what_it_replaced(rendered, change, expected):
    objects = copy.deepcopy(rendered["staging"])
    pvc = next(o for o in objects if o["kind"] == "PersistentVolumeClaim")
    change(pvc, deployment(objects, "data-tier"))
    [problem] = claim_problems("planted", objects)
    assert expected in problem


# Item 16: several servers spread over the nodes, and still schedule on one.


def test_servers_that_may_be_several_spread_over_nodes(rendered, combinations):
    problems = [
        p
        for where, objects in every_rendering(rendered, combinations)
        for p in spread_problems(where, objects)
    ]
    assert problems == []
    spread = deployment(rendered["prod"], "app-tier")["spec"]["template"]["spec"]
    assert spread["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "ScheduleAnyway"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda spec: spec.pop("topologySpreadConstraints"), "none spread over nodes"),
        (
            lambda spec: spec["topologySpreadConstraints"][0].update(
                whenUnsatisfiable="DoNotSchedule"
            ),
            "never schedule",
        ),
        (
            lambda spec: spec["topologySpreadConstraints"][0].update(
                labelSelector={"matchLabels": {"tier": "data"}}
            ),
            "none spread over nodes",
        ),
    ],
)
def test_the_spread_rule_bites(rendered, change, expected):
    objects = copy.deepcopy(rendered["prod"])
    change(deployment(objects, "app-tier")["spec"]["template"]["spec"])
    [problem] = spread_problems("planted", objects)
    assert expected in problem


# Item 12: a backgrounded port-forward is waited for.


def test_no_lesson_races_its_port_forward():
    problems = [
        p for lesson in LESSONS for p in port_forward_problems(lesson, lesson_instructions(lesson))
    ]
    readme = ROOT / "k8s/README.md"
    problems += port_forward_problems("k8s/README.md", sh_lines(readme))
    assert problems == []
    forwards = [
        line for lesson in LESSONS for line in lesson_instructions(lesson) if "port-forward" in line
    ]
    assert sum("&" in line for line in forwards) >= 3


@pytest.mark.parametrize(
    "lines",
    [
        ["kubectl port-forward pod/mypod 8080 &  curl localhost:8080/probe/liveness"],
        ["kubectl -n adapter port-forward svc/data-tier 9121 &", "curl -s localhost:9121/metrics"],
    ],
)
def test_the_port_forward_rule_fails_on_a_race(lines):
    assert port_forward_problems("planted", lines)
    fixed = [line.replace("curl", "curl --retry 5 --retry-connrefused") for line in lines]
    assert port_forward_problems("planted", fixed) == []


def test_no_lesson_uses_its_pods_before_they_are_up():
    problems = [
        p for lesson in LESSONS for p in apply_wait_problems(lesson, lesson_instructions(lesson))
    ]
    assert problems == []


def test_the_wait_rule_fails_on_a_race():
    lines = ["kubectl apply -f k8s/17-adapter/", "kubectl -n adapter exec deploy/x -- true"]
    assert apply_wait_problems("planted", lines)
    waited = [lines[0], "kubectl -n adapter wait --for=condition=Available deployment --all"]
    assert apply_wait_problems("planted", [*waited, lines[1]]) == []


# Item 10: where the docs say kind enforces NetworkPolicy, they say when it does not.


def test_where_kindnet_enforces_the_kernel_caveat_is_given():
    docs = [p for p in (ROOT / "k8s").rglob("*.md")] + [
        p for p in (ROOT / "kustomize").rglob("*.md")
    ]
    claims = [p for p in docs if "kindnet" in p.read_text()]
    assert len(claims) >= 2
    for path in claims:
        text = path.read_text()
        assert "nfqueue" in text and "fail open" in text.replace("fails open", "fail open"), path
        for issue in ("3705", "3789"):
            assert f"kubernetes-sigs/kind/issues/{issue}" in text, (path, issue)


# Item 17: the kind workflow runs on pull requests, within a time budget.


def test_the_kind_workflow_runs_on_pull_requests_within_a_budget():
    workflow = yaml.safe_load((ROOT / ".github/workflows/e2e.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers and "pull_request_target" not in triggers
    assert workflow["concurrency"]["cancel-in-progress"] is True
    for job in workflow["jobs"].values():
        assert 0 < job["timeout-minutes"] <= 30
