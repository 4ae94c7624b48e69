"""What the lessons claim, checked on the lessons as `kubectl apply -f` reads them, and each rule
on a planted defect (often the mistake it guards against) to show that it bites. Also the
service-account rule on every overlay: each pod runs as its own tier's account, no token."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from tests.manifests import lessons as rule
from tests.manifests.policies import KUBE_DNS, Endpoint, connects
from tests.manifests.render import KUBERNETES_VERSION, LESSONS, OVERLAYS, ROOT, lesson_objects
from tests.readme import split_comment

ROLLING = "14-rolling-updates"
PATCHES = ROOT / "k8s" / ROLLING / "patches"


def objects(lesson: str) -> list[dict]:
    return copy.deepcopy(lesson_objects(lesson))


def deployment(objects: list[dict], name: str) -> dict:
    return rule.named(objects, "Deployment", name)


def set_env(c: dict, name: str, value: str) -> None:
    c["env"] = [e for e in c.get("env", []) if e["name"] != name] + [{"name": name, "value": value}]


# Every lesson.


def test_every_lessons_namespace_is_applied_first():
    problems = [
        p for lesson in LESSONS for p in rule.namespace_order_problems(lesson, objects(lesson))
    ]
    assert problems == []
    planted = objects("08-deployments")
    planted.append(planted.pop(0))  # the layout lesson 7 had: namespace.yaml sorted last
    assert rule.namespace_order_problems("planted", planted)


def test_a_lesson_that_changes_an_earlier_lessons_pod_says_to_delete_it_first():
    """Lessons 1 to 5 share `mypod`: done in order, each applies it over the last one's. Where
    it changes what a running Pod cannot change (2 its ports, 4 its resources) the lesson says
    `kubectl delete pod mypod` before its apply; 3 (labels) and 5 (the same pod) need not."""
    assert rule.pod_reuse_problems(rule.lesson_steps()) == []
    said = {
        lesson
        for lesson, _, lines in rule.lesson_steps()
        for line in lines
        for words in rule.kubectl_commands(line)
        if rule.deletes_pod(words, "default", "mypod")
    }
    assert said == {"02-ports", "04-resources"}


def without_deletes(steps, lesson):
    return [
        (
            name,
            objects,
            [line for line in lines if "delete" not in line] if name == lesson else lines,
        )
        for name, objects, lines in steps
    ]


def test_the_pod_reuse_rule_fails_on():
    steps = rule.lesson_steps()
    problems = " ".join(rule.pod_reuse_problems(without_deletes(steps, "04-resources")))
    assert "04-resources: Pod mypod is still there from 03-labels" in problems
    assert "containers[server].resources" in problems
    # Said after the apply is too late.
    late = [
        (
            name,
            objects,
            [*[x for x in lines if "delete" not in x], *[x for x in lines if "delete" in x]],
        )
        if name == "04-resources"
        else (name, objects, lines)
        for name, objects, lines in steps
    ]
    assert "04-resources" in " ".join(rule.pod_reuse_problems(late))
    # Not a problem: a change a running Pod takes (labels, an image), or another name.
    relabelled = copy.deepcopy(steps)
    pod = rule.named(relabelled[3][1], "Pod", "mypod")
    previous = rule.named(relabelled[2][1], "Pod", "mypod")
    pod["spec"] = copy.deepcopy(previous["spec"])
    pod["spec"]["containers"][0]["image"] = "microservices/server:1.1.1"
    pod["metadata"]["labels"] = {"app": "other"}
    assert rule.pod_reuse_problems(without_deletes(relabelled[:4], "04-resources")) == []
    renamed = copy.deepcopy(steps)
    rule.named(renamed[3][1], "Pod", "mypod")["metadata"]["name"] = "mypod-resources"
    renamed[4][1][0]["metadata"]["name"] = "mypod-resources"
    assert rule.pod_reuse_problems(without_deletes(renamed, "04-resources")) == []


def readmes():
    return sorted((ROOT / "k8s").glob("*/README.md")) + [ROOT / "k8s/README.md"]


def test_every_lesson_after_13_has_a_readme():
    assert [p.parent.name for p in readmes()[:-1]] == LESSONS[13:]


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_kubectl_command_of_a_readme_names_what_the_lessons_create(readme):
    assert rule.readme_command_problems(readme, rule.every_lesson_object()) == []


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        ("kubectl -n sidecar logs deploy/support-tier -c log-shiper", "no container log-shiper"),
        ("kubectl -n sidecars get pods", "namespace sidecars is no lesson's"),
        ("kubectl -n sidecar logs deploy/suport-tier", "no Deployment suport-tier"),
        ("kubectl apply -f k8s/15-sidecar/9-missing.yaml", "does not exist"),
        ("kubectl -n sidecar get pods -l tier=apps", "selects no pod"),
        (
            "kubectl -n probes-in-action get endpointslices -l kubernetes.io/service-name=app",
            "selects no Service's slices",
        ),
        (
            "get() { kubectl -n ambassador exec deploy/app -- python -c 'x' \"$1\"; }",
            "Deployment app",
        ),
        (
            "kubectl auth can-i get pods --as=system:serviceaccount:service-accounts:reader",
            "no ServiceAccount reader",
        ),
    ],
)
def test_the_readme_rule_fails_on(tmp_path, command, complaint):
    planted = tmp_path / "README.md"
    planted.write_text(f"```sh\n{command}   # a comment\n```\n")
    problems = rule.readme_command_problems(planted, rule.every_lesson_object())
    assert problems and complaint in " ".join(problems), problems


# Service accounts: the overlays, and lesson 20.


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_its_own_tiers_account_without_a_token(rendered, overlay):
    objects = rendered[overlay]
    assert rule.service_account_problems(overlay, objects) == []
    names = {
        o["spec"]["template"]["metadata"]["labels"]["tier"]: o["spec"]["template"]["spec"][
            "serviceAccountName"
        ]
        for o in objects
        if o["kind"] == "Deployment"
    }
    assert names == {"data": "data-tier", "app": "app-tier", "support": "support-tier"}


def planted_accounts(rendered, change):
    planted = copy.deepcopy(rendered["dev"])
    change(planted)
    return " ".join(rule.service_account_problems("planted", planted))


def drop_account_name(objects):
    del deployment(objects, "app-tier")["spec"]["template"]["spec"]["serviceAccountName"]


def share_an_account(objects):
    deployment(objects, "support-tier")["spec"]["template"]["spec"]["serviceAccountName"] = (
        "app-tier"
    )


def mount_a_token(objects):
    rule.named(objects, "ServiceAccount", "data-tier")["automountServiceAccountToken"] = True


def forget_an_account(objects):
    objects.remove(rule.named(objects, "ServiceAccount", "support-tier"))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (drop_account_name, "app-tier runs as the namespace's default service account"),
        (share_an_account, "share ServiceAccount app-tier"),
        (mount_a_token, "ServiceAccount data-tier mounts its token"),
        (forget_an_account, "runs as support-tier, which this set does not create"),
    ],
)
def test_the_service_account_rule_fails_on(rendered, change, complaint):
    assert complaint in planted_accounts(rendered, change)


def test_lesson_20_runs_each_tier_as_its_own_account():
    assert rule.service_account_problems("20", objects("20-service-accounts")) == []


def test_lesson_20_grants_exactly_what_its_readme_says():
    lesson = objects("20-service-accounts")
    assert rule.rights_problems("20-service-accounts", lesson) == []
    claims = rule.rights_claims("20-service-accounts")
    assert {yes for *_, yes in claims} == {True, False}, "it shows both what it may and may not"


@pytest.mark.parametrize(
    ("extra_rule", "complaint"),
    [
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}, "get secrets"),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}, "RBAC says yes"),
        ({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}, "patch"),
    ],
)
def test_the_rights_rule_fails_on_a_wider_role(extra_rule, complaint):
    lesson = objects("20-service-accounts")
    rule.named(lesson, "Role", "pod-reader")["rules"].append(extra_rule)
    problems = rule.rights_problems("20-service-accounts", lesson)
    assert problems and complaint in " ".join(problems), problems


def test_the_rights_rule_fails_on_a_binding_to_another_account():
    lesson = objects("20-service-accounts")
    rule.named(lesson, "RoleBinding", "pod-reader")["subjects"][0]["name"] = "app-tier"
    problems = " ".join(rule.rights_problems("20-service-accounts", lesson))
    assert "RBAC says no" in problems and "app-tier may get pods" in problems


# 14: rolling updates.


def test_lesson_14_rolls_one_pod_at_a_time_gated_by_readiness():
    lesson = objects(ROLLING)
    app = deployment(lesson, "app-tier")
    assert rule.rolling_update_problems(ROLLING, app) == []
    spec = app["spec"]
    assert spec["replicas"] >= 2 and spec["minReadySeconds"] > 0
    assert spec["progressDeadlineSeconds"] and spec["revisionHistoryLimit"] >= 2
    assert app["metadata"]["annotations"][rule.CHANGE_CAUSE].startswith("version 1")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_rolls_the_app_tier_without_losing_a_server(rendered, overlay):
    assert rule.rolling_update_problems(overlay, deployment(rendered[overlay], "app-tier")) == []


def no_readiness(d):
    del d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]


def unavailable(d):
    d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1


def no_surge(d):
    d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 0


def recreate(d):
    d["spec"]["strategy"] = {"type": "Recreate"}


def no_prestop(d):
    del d["spec"]["template"]["spec"]["containers"][0]["lifecycle"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (no_readiness, "no readiness probe"),
        (unavailable, "maxUnavailable 1"),
        (no_surge, "no maxSurge"),
        (recreate, "strategy Recreate"),
        (no_prestop, "no preStop sleep"),
    ],
)
def test_the_rolling_update_rule_fails_on(change, complaint):
    app = deployment(objects(ROLLING), "app-tier")
    change(app)
    assert complaint in " ".join(rule.rolling_update_problems("planted", app))


def patched(name: str) -> tuple[dict, dict]:
    before = deployment(objects(ROLLING), "app-tier")
    patch = yaml.safe_load((PATCHES / name).read_text())
    return before, rule.strategic_merge(before, patch)


@pytest.mark.parametrize("name", ["version-2.yaml", "broken-version.yaml"])
def test_each_update_is_a_new_revision_with_a_cause_and_validates(name):
    before, after = patched(name)
    assert rule.update_problems(name, before, after) == []
    kubernetes_validate.validate(after, KUBERNETES_VERSION, strict=True)
    assert rule.rolling_update_problems(name, after) == [], "an update keeps the strategy"


def test_version_2_runs_the_images_the_project_builds_and_the_broken_one_does_not():
    built = {
        c["image"]
        for c in deployment(objects(ROLLING), "app-tier")["spec"]["template"]["spec"]["containers"]
    }
    for name, runs_built in (("version-2.yaml", True), ("broken-version.yaml", False)):
        _, after = patched(name)
        images = {c["image"] for c in after["spec"]["template"]["spec"]["containers"]}
        assert (images <= built) == runs_built, (name, images)
    assert built == {"microservices/server:1.1.0"}


def test_the_update_rule_fails_on_a_patch_that_changes_nothing_that_rolls():
    before = deployment(objects(ROLLING), "app-tier")
    after = rule.strategic_merge(before, {"spec": {"replicas": 5}})
    problems = " ".join(rule.update_problems("planted", before, after))
    assert "template is unchanged" in problems and "no change cause" in problems


def test_the_strategic_merge_merges_containers_and_env_by_name():
    _, after = patched("version-2.yaml")
    [server] = after["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["MAX_INCREMENT"] == "100" and env["REDIS_URL"].startswith("redis://")
    assert server["image"] == "microservices/server:1.1.0" and "readinessProbe" in server
    assert after["spec"]["template"]["metadata"]["labels"] == {"tier": "app", "version": "2"}


# 15, 16, 17: the sidecar, the ambassador, the adapter.


def spec_of(lesson: list[dict], name: str) -> dict:
    return deployment(lesson, name)["spec"]["template"]["spec"]


def sidecar_check(lesson):
    return rule.shared_file_problems(
        "planted", spec_of(lesson, "support-tier"), "poller", "log-shipper"
    )


def ambassador_check(lesson):
    return rule.ambassador_problems("planted", lesson, "app-tier", "ambassador")


def adapter_check(lesson):
    return rule.adapter_problems("planted", lesson, "adapter")


CHECKS = {
    "15-sidecar": sidecar_check,
    "16-ambassador": ambassador_check,
    "17-adapter": adapter_check,
}


@pytest.mark.parametrize("lesson", CHECKS)
def test_the_pattern_lessons_are_wired_as_they_say(lesson):
    """15: the sidecar reads the file the poller writes, on a volume they share; 16: the server
    talks to localhost, where the ambassador listens and forwards to Redis; 17: the adapter
    reads its own pod's Redis and serves on the port the scrape annotation names."""
    assert CHECKS[lesson](objects(lesson)) == []


def shipper(lesson):
    return rule.container(spec_of(lesson, "support-tier"), "log-shipper")


def poller(lesson):
    return rule.container(spec_of(lesson, "support-tier"), "poller")


def other_volume(lesson):
    spec_of(lesson, "support-tier")["volumes"].append({"name": "other", "emptyDir": {}})
    shipper(lesson)["volumeMounts"][0]["name"] = "other"


def classic_sidecar(lesson):
    spec = spec_of(lesson, "support-tier")
    spec["containers"].append(spec.pop("initContainers")[0])
    del spec["containers"][-1]["restartPolicy"]


def ambassador(lesson):
    return rule.container(spec_of(lesson, "app-tier"), "ambassador")


def adapter(lesson):
    return rule.container(spec_of(lesson, "data-tier"), "adapter")


def setting(find, name, value):
    return lambda lesson: set_env(find(lesson), name, value)


def server(lesson):
    return rule.container(spec_of(lesson, "app-tier"), "server")


@pytest.mark.parametrize(
    ("lesson", "change", "complaint"),
    [
        ("15-sidecar", other_volume, "log-shipper reads no path that is poller's"),
        ("15-sidecar", setting(poller, "OUTPUT_FILE", "/var/log/poller/x"), "reads no path"),
        (
            "15-sidecar",
            lambda lesson: shipper(lesson)["volumeMounts"][0].pop("readOnly"),
            "may write",
        ),
        ("15-sidecar", classic_sidecar, "not a native sidecar"),
        ("15-sidecar", lambda lesson: poller(lesson)["env"].pop(), "writes no OUTPUT_FILE"),
        (
            "16-ambassador",
            setting(server, "REDIS_URL", "redis://data-tier:6379/0"),
            "not localhost",
        ),
        ("16-ambassador", setting(ambassador, "PROXY_LISTEN", "0.0.0.0:6379"), "beyond the pod"),
        ("16-ambassador", setting(ambassador, "PROXY_LISTEN", "127.0.0.1:6380"), "listens on"),
        ("16-ambassador", setting(ambassador, "PROXY_UPSTREAM", "data:6379"), "leads to no Redis"),
        ("16-ambassador", setting(ambassador, "PROXY_UPSTREAM", "app-tier:8080"), "no Redis"),
        (
            "16-ambassador",
            lambda lesson: spec_of(lesson, "app-tier").pop("initContainers"),
            "no ambassador",
        ),
        ("17-adapter", setting(adapter, "REDIS_URL", "redis://data-tier:6379/0"), "own pod"),
        ("17-adapter", setting(adapter, "PORT", "9122"), "does not declare"),
        (
            "17-adapter",
            lambda lesson: deployment(lesson, "data-tier")["spec"]["template"]["metadata"].clear(),
            "scrape annotation",
        ),
    ],
)
def test_the_pattern_rules_fail_on(lesson, change, complaint):
    planted = objects(lesson)
    change(planted)
    problems = CHECKS[lesson](planted)
    assert complaint in " ".join(problems), problems


# 18: the Service types.


def test_lesson_18_has_every_service_type_and_uses_its_externalname():
    assert rule.service_type_problems("18", objects("18-service-types")) == []


def test_lesson_18_says_how_a_balancer_reaches_a_one_node_cluster():
    """cloud-provider-kind sends nothing to a node labelled to be excluded from external load
    balancers, as kubeadm labels every control-plane node; its README says to remove it."""
    readme = ROOT / "k8s/18-service-types/README.md"
    commands = [
        words
        for line in rule.sh_lines(readme)
        for words in rule.kubectl_commands(split_comment(line)[0])
    ]
    label = "node.kubernetes.io/exclude-from-external-load-balancers"
    assert ["get", "nodes", "-l", label] in commands
    assert ["label", "nodes", "--all", f"{label}-"] in commands
    assert "cloud-provider-kind#allowing-load-balancers-access" in readme.read_text()


def test_node_ports_are_unique_across_the_lessons():
    sets = [(lesson, lesson_objects(lesson)) for lesson in LESSONS]
    assert rule.node_port_problems(sets) == []
    applied_twice = sets + [("18 again", lesson_objects("18-service-types"))]
    assert (
        "nodePort 30081 is 18-service-types's already" in rule.node_port_problems(applied_twice)[0]
    )


def test_the_service_type_rules_fail_on():
    lesson = objects("18-service-types")
    rule.named(lesson, "Service", "database")["spec"]["externalName"] = "data.example.com"
    lesson.remove(rule.named(lesson, "Service", "app-tier-lb"))
    problems = " ".join(rule.service_type_problems("planted", lesson))
    assert "no Service of type LoadBalancer" in problems
    assert "ExternalName database leads to no Service" in problems
    sets = [("05", lesson_objects("05-services")), ("18", objects("18-service-types"))]
    rule.named(sets[1][1], "Service", "app-tier-nodeport")["spec"]["ports"][0]["nodePort"] = 30080
    assert "nodePort 30080 is 05's already" in " ".join(rule.node_port_problems(sets))


# 19: network policies.


def test_lesson_19_every_connection_its_readme_tries_is_as_the_policies_say():
    assert rule.policy_claim_problems("19-network-policies") == []
    claims = rule.connection_claims("19-network-policies")
    assert {connected for *_, connected in claims} == {True, False}
    assert len({len(applied) for _, applied, *_ in claims}) == 4, "the app, then three steps"


def test_lesson_19_policies_select_the_pods_they_mean():
    assert rule.selector_problems("19", objects("19-network-policies")) == []


def test_the_policy_rules_fail_on_a_label_typo(tmp_path, monkeypatch):
    lesson = objects("19-network-policies")
    policy = rule.named(lesson, "NetworkPolicy", "app-tier-ingress-from-support")
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] = {"tier": "suport"}
    rule.named(lesson, "NetworkPolicy", "data-tier-ingress-from-app")["spec"]["podSelector"] = {
        "matchLabels": {"tier": "database"}
    }
    problems = " ".join(rule.selector_problems("planted", lesson))
    assert "app-tier-ingress-from-support names no pod" in problems
    assert "data-tier-ingress-from-app selects no pod" in problems


def test_the_policy_claims_fail_when_the_readme_promises_too_much(tmp_path, monkeypatch):
    """The README as written, against a lesson whose last step forgot the ingress half."""
    lesson = tmp_path / "k8s" / "19-network-policies"
    lesson.mkdir(parents=True)
    for path in (ROOT / "k8s" / "19-network-policies").iterdir():
        text = path.read_text()
        if path.name == "4-allow-app-to-data.yaml":
            text = text.split("---")[0]  # only the app tier's egress
        (lesson / path.name).write_text(text)
    monkeypatch.setattr(rule, "ROOT", tmp_path)
    problems = " ".join(rule.policy_claim_problems("19-network-policies"))
    assert "can_connect app-tier data-tier 6379" in problems and "say blocked" in problems


@pytest.mark.parametrize("overlay", ["staging", "prod"])
def test_the_overlays_policies_allow_what_the_app_needs_and_nothing_else(rendered, overlay):
    """The same evaluator on the network-policies component, as the overlays render it."""
    objects = rendered[overlay]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    tier = {
        name: Endpoint(
            rule.named(objects, "Deployment", f"{name}-tier")["spec"]["template"]["metadata"][
                "labels"
            ]
        )
        for name in ("data", "app", "support")
    }
    allowed = {
        (source, target, port)
        for source in tier
        for target in tier
        for port in (6379, 8080)
        if source != target and connects(policies, tier[source], tier[target], port)
    }
    assert allowed == {("support", "app", 8080), ("app", "data", 6379)}
    assert all(connects(policies, pod, KUBE_DNS, 53, "UDP") for pod in tier.values())


# 21: draining a node.

DRAIN = "21-drain"
KIND_CONFIG = ROOT / "k8s" / DRAIN / "kind/cluster.yaml"


def kind_config() -> dict:
    return yaml.safe_load(KIND_CONFIG.read_text())


def test_lesson_21s_budget_selects_the_servers_and_lets_a_drain_go_on():
    lesson = objects(DRAIN)
    assert rule.drain_problems(DRAIN, lesson, "app-tier") == []
    budget = rule.named(lesson, "PodDisruptionBudget", "app-tier")
    replicas = deployment(lesson, "app-tier")["spec"]["replicas"]
    assert budget["spec"]["minAvailable"] == 1 < replicas
    assert rule.allowed_disruptions(budget, replicas) == replicas - 1


def test_lesson_21s_kind_cluster_has_workers_to_drain_on_the_e2e_node_image():
    config = kind_config()
    assert rule.kind_config_problems(DRAIN, config) == []
    e2e = yaml.safe_load((ROOT / "tests/e2e/kind-config.yaml").read_text())
    assert {n["image"] for n in config["nodes"]} == {n["image"] for n in e2e["nodes"]}
    assert "kind.x-k8s.io" not in " ".join(o["apiVersion"] for o in lesson_objects(DRAIN)), (
        "kubectl apply -f on the lesson does not read the kind config"
    )


def budget_of(lesson):
    return rule.named(lesson, "PodDisruptionBudget", "app-tier")["spec"]


def select_other(lesson):
    budget_of(lesson)["selector"]["matchLabels"] = {"tier": "ap"}


def select_every_tier(lesson):
    budget_of(lesson)["selector"]["matchLabels"] = {}


def as_many_as_replicas(lesson):
    budget_of(lesson)["minAvailable"] = 2


def one_replica(lesson):
    deployment(lesson, "app-tier")["spec"]["replicas"] = 1


def all_of_them(lesson):
    del budget_of(lesson)["minAvailable"]
    budget_of(lesson)["minAvailable"] = "100%"


def no_unavailable(lesson):
    del budget_of(lesson)["minAvailable"]
    budget_of(lesson)["maxUnavailable"] = 0


def no_spread(lesson):
    del spec_of(lesson, "app-tier")["topologySpreadConstraints"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (select_other, "no PodDisruptionBudget selects the pods of app-tier"),
        (select_every_tier, "selects pods beyond app-tier's"),
        (as_many_as_replicas, "allows no disruption of app-tier's 2 replicas"),
        (one_replica, "allows no disruption of app-tier's 1 replicas"),
        (all_of_them, "allows no disruption"),
        (no_unavailable, "allows no disruption"),
        (no_spread, "do not spread across nodes"),
    ],
)
def test_the_drain_rule_fails_on(change, complaint):
    lesson = objects(DRAIN)
    change(lesson)
    assert complaint in " ".join(rule.drain_problems("planted", lesson, "app-tier"))


def one_worker(config):
    config["nodes"] = config["nodes"][:2]


def tag_only(config):
    config["nodes"][1]["image"] = config["nodes"][1]["image"].split("@")[0]


def no_image(config):
    del config["nodes"][2]["image"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (one_worker, "1 worker nodes, fewer than 2"),
        (tag_only, "node 1's image is not pinned by digest"),
        (no_image, "node 2's image is not pinned by digest"),
    ],
)
def test_the_kind_config_rule_fails_on(change, complaint):
    config = kind_config()
    change(config)
    assert complaint in " ".join(rule.kind_config_problems("planted", config))
