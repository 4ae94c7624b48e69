"""The kind backend cannot run where no cluster can start (CI), but its plan and its
decisions can be checked: the files it names exist, the images it loads are the ones the
overlay runs, it never touches the user's kubeconfig or clusters, every forward names a Ready
pod that is not terminating, logs are followed per pod, a stopped tier comes back with the
replicas it had, and the rolling update under load rolls a tier built not to lose a server,
through its Service, and fails on a single failed request."""

import json
import shutil
import threading
import time

import kubernetes_validate
import pytest
import yaml
from microservices_counter.counter import parse_args

from tests.e2e import kind
from tests.e2e.backends import ROOT, ComposeBackend, backend_from_env, verdict
from tests.e2e.kind import (
    LOAD,
    LOAD_POD,
    OVERLAY_FEATURES,
    ROLLED_REPLICAS,
    Docker,
    ImageRef,
    KindBackend,
    PodLogs,
    containers_of,
    forward_target,
    load_pod,
    load_summary,
    ready_pods,
    remembered_replicas,
    rollout_problems,
)
from tests.manifests.lessons import container, named, rolling_update_problems
from tests.manifests.policies import Endpoint, connects
from tests.manifests.render import KUBERNETES_VERSION, OVERLAYS, kustomize
from tests.manifests.rules import selects

# The daemons a plan is made for: Docker 29 (its containerd image store the default) and one
# before 28, whose `docker image save` knows no --platform.
DOCKER_29 = Docker("linux/amd64", (1, 52))
DOCKER_27 = Docker("linux/amd64", (1, 47))


def planned(*args, docker: Docker = DOCKER_29, **kwargs) -> KindBackend:
    """A backend to plan with, for a known Docker daemon (start() asks the real one)."""
    return KindBackend(*args, docker=docker, **kwargs)


def loaded_images(plan: list[list[str]], cluster: str) -> list[str]:
    """The images the plan loads into `cluster`: each saved to an archive, then that archive
    loaded (kind load image-archive), in that order."""
    saved: dict[str, str] = {}
    loaded = []
    for argv in plan:
        if argv[:3] == ["docker", "image", "save"]:
            saved[argv[argv.index("-o") + 1]] = argv[-1]
        if argv[:3] == ["kind", "load", "image-archive"]:
            assert argv[argv.index("--name") + 1] == cluster, argv
            loaded.append(saved[argv[3]])
    return loaded


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_plan_matches_the_overlay(rendered, overlay):
    backend = planned(overlay=overlay)
    plan = backend.setup_commands()
    objects = rendered[overlay]
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert namespaces == [backend.namespace]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(backend.deployments.values()) == set(deployments)

    assert plan[0][:3] == ["kind", "create", "cluster"]
    config = ROOT / plan[0][plan[0].index("--config") + 1]
    node_image = yaml.safe_load(config.read_text())["nodes"][0]["image"]
    assert "@sha256:" in node_image, "the node image is pinned by digest"

    loaded = set(loaded_images(plan, backend.cluster))
    built = {argv[argv.index("-t") + 1] for argv in plan if argv[:2] == ["docker", "build"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    for argv in plan:
        if argv[:2] == ["docker", "build"]:
            assert f" AS {argv[argv.index('--target') + 1]}\n" in dockerfile
    used = {
        c["image"]
        for d in deployments.values()
        for c in d["spec"]["template"]["spec"]["containers"]
        + d["spec"]["template"]["spec"].get("initContainers", [])
        if not c["image"].startswith("valkey/valkey:")  # pulled by the cluster, not built
    }
    assert used == loaded == built

    for component, deployment in backend.containers.items():
        names = [
            c["name"] for c in deployments[deployment]["spec"]["template"]["spec"]["containers"]
        ]
        assert component in names, f"kubectl logs -c {component} needs that container"
        labels = deployments[deployment]["spec"]["template"]["metadata"]["labels"]
        assert labels["tier"] == backend.tiers[component]


def test_the_run_is_isolated_from_the_users_clusters():
    first, second = planned(), planned()
    assert first.cluster != second.cluster, "a cluster name of the run's own"
    commands = [
        *first.setup_commands(),
        *first.scale_commands("app", 0),
        *first.restart_commands("app"),
        first.port_forward_command("app-tier-abc"),
        first.export_logs_command(),
    ]
    for argv in commands:
        if argv[0] == "kubectl" or argv[:2] == ["kind", "create"]:
            assert argv[argv.index("--kubeconfig") + 1] == str(first.kubeconfig), argv
    assert str(first.kubeconfig).startswith(str(first.workdir))
    assert not first.workdir.exists(), "planning leaves nothing behind"
    # A generated name is the run's own even if `kind create` was interrupted...
    delete = first.teardown_commands()[0]
    assert delete[:5] == ["kind", "delete", "cluster", "--name", first.cluster]
    # ... a name given by the user is deleted only once this run created it.
    theirs = planned(cluster="my-cluster")
    assert theirs.teardown_commands() == [], "never delete a cluster the run did not create"
    # kind export logs knows --name only.
    assert "--kubeconfig" not in first.export_logs_command()


def test_air_gapped_builds_use_the_local_base_image(monkeypatch):
    monkeypatch.setenv("PYTHON_IMAGE", "microservices-airgap/python:3.11-bookworm")
    monkeypatch.setenv("PIP_INSTALL_FLAGS", "--no-index --find-links=/wheelhouse")
    builds = [argv for argv in planned().setup_commands() if argv[:2] == ["docker", "build"]]
    assert len(builds) == 3
    for argv in builds:
        assert "PYTHON_IMAGE=microservices-airgap/python:3.11-bookworm" in argv
        assert "PIP_INSTALL_FLAGS=--no-index --find-links=/wheelhouse" in argv


def pod(name, created, ready=True, terminating=False, counter_state="running"):
    metadata = {"name": name, "creationTimestamp": created}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:10:00Z"
    return {
        "metadata": metadata,
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "counter", "state": {counter_state: {}}}],
        },
    }


def test_the_forward_names_a_ready_pod_that_is_not_terminating():
    pods = {
        "items": [
            # Ready the longest, but in its preStop sleep: kubectl port-forward svc/ would pick it.
            pod("app-tier-old", "2026-01-01T00:00:00Z", terminating=True),
            pod("app-tier-new", "2026-01-01T00:05:00Z"),
            pod("app-tier-starting", "2026-01-01T00:06:00Z", ready=False),
        ]
    }
    assert ready_pods(pods) == ["app-tier-new"]
    forward = planned().port_forward_command("app-tier-new")
    assert "pod/app-tier-new" in forward
    assert not any(arg.startswith(("service/", "svc/", "deployment/")) for arg in forward)


def test_logs_are_followed_per_pod_from_their_start():
    pods = {
        "items": [
            pod("support-tier-a", "2026-01-01T00:00:00Z", counter_state="terminated"),
            pod("support-tier-b", "2026-01-01T00:05:00Z"),
            pod("support-tier-c", "2026-01-01T00:06:00Z", counter_state="waiting"),
        ]
    }
    assert containers_of(pods, "counter") == [("support-tier-a", 0), ("support-tier-b", 0)]
    assert containers_of(pods, "counter", "running") == [("support-tier-b", 0)]
    command = planned().pod_logs_command("support-tier-a", "counter")
    assert "pod/support-tier-a" in command and "--follow" in command
    assert not any(arg.startswith("deployment/") for arg in command)


def test_a_stopped_tier_comes_back_with_the_replicas_it_had():
    assert remembered_replicas(None, "3") == 3
    # Stopped twice (or left at 0 by a failed test): the first count is kept, never 0.
    assert remembered_replicas(3, "0") == 3
    assert remembered_replicas(None, "0") == 1


def test_prod_without_its_secrets_fails_before_anything_is_built(tmp_path):
    backend = planned("prod")
    backend.kustomize_root = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", backend.kustomize_root)
    (backend.kustomize_root / "overlays/prod/secrets.env").unlink(missing_ok=True)
    with pytest.raises(RuntimeError, match="secrets.env"):
        backend.preflight()


def test_air_gapped_plan_loads_and_uses_the_local_redis_image(tmp_path):
    image = "microservices-airgap/valkey:9.1-forky"
    backend = planned("staging", redis_image=image, workdir=tmp_path)
    plan = backend.setup_commands()
    assert image in loaded_images(plan, backend.cluster)
    backend.prepare_overlay()
    apply = next(argv for argv in plan if "apply" in argv)
    objects = kustomize(backend.overlay_dir())
    assert str(backend.overlay_dir()) == apply[-1]
    redis = [
        c["image"]
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "data-tier"
        for c in o["spec"]["template"]["spec"]["containers"]
        if c["name"] == "redis"  # not the monitoring component's adapter beside it
    ]
    assert redis == [image]


def test_persistence_follows_the_overlay(rendered):
    assert set(OVERLAY_FEATURES) == set(OVERLAYS)
    for overlay in OVERLAYS:
        kinds = {o["kind"] for o in rendered[overlay]}
        offered = "persistence" in planned(overlay).features
        assert offered == ("PersistentVolumeClaim" in kinds), overlay


def test_the_api_key_is_the_overlays(tmp_path):
    assert planned("dev").api_key
    backend = planned("prod")
    backend.kustomize_root = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", backend.kustomize_root)
    (backend.kustomize_root / "overlays/prod/secrets.env").write_text(
        "REDIS_PASSWORD=p\nAPI_KEY=k\n"
    )
    assert backend.api_key == "k"


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_the_rolling_update_changes_the_app_tiers_template_and_waits(rendered, overlay):
    backend = planned(overlay)
    plan = backend.rolling_update_commands("abc123")
    *prepare, patch, status = plan
    assert patch[-5:-1] == ["patch", "deployment/app-tier", "--type=merge", "-p"]
    assert json.loads(patch[-1]) == {
        "spec": {"template": {"metadata": {"annotations": {"e2e/revision": "abc123"}}}}
    }, "a template change: a new revision, every pod replaced"
    assert status == backend.rollout_status("app-tier")
    app = named(rendered[overlay], "Deployment", "app-tier")
    if "replicas" in app["spec"]:  # no HPA: scaled up so that several servers roll in turn
        assert prepare == backend.scale_commands("app", ROLLED_REPLICAS)
    else:
        hpa = named(rendered[overlay], "HorizontalPodAutoscaler", "app-tier")
        assert prepare == [] and hpa["spec"]["minReplicas"] >= 2
    for argv in plan:
        assert argv[argv.index("--kubeconfig") + 1] == str(backend.kubeconfig)


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_the_app_tier_rolls_without_losing_a_ready_server(rendered, overlay):
    """maxSurge 1 and maxUnavailable 0, readiness to gate each step, a preStop sleep so that
    an old server leaves the Service before it stops: what zero failed requests rests on."""
    app = named(rendered[overlay], "Deployment", "app-tier")
    assert rolling_update_problems(overlay, app) == []


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_the_load_runs_in_a_pod_of_its_own_through_the_service(rendered, overlay):
    """The load pod, made from the support tier as the overlay renders it: the counter's own
    parser accepts its load mode; it validates and meets Pod Security "restricted" (the
    namespace enforces it); the network policies let it reach the app tier, and the support
    tier's ReplicaSet does not select (and adopt) it; its CPU is its own, above the counter's."""
    objects = rendered[overlay]
    support = named(objects, "Deployment", "support-tier")
    counter = container(support["spec"]["template"]["spec"], "counter")
    pod = load_pod(support)
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    [load] = pod["spec"]["containers"]
    program, *args = load["command"]
    parsed = parse_args(args)  # the counter's own parser: it accepts them, in load mode
    assert program == "microservices-counter"
    assert (parsed.rate, parsed.concurrency, parsed.duration) == (
        LOAD["rate"],
        LOAD["concurrency"],
        LOAD["seconds"],
    )
    assert LOAD["seconds"] >= 120, "long enough to outlast a rollout of three servers"
    env = {e["name"]: e.get("value") for e in load["env"]}
    assert env["API_URL"] == "http://app-tier:8080", "the Service, as every client reaches it"
    assert env["LOG_FORMAT"] == "json", "its summary is read as JSON"
    assert load["image"] == counter["image"]

    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert load["securityContext"]["allowPrivilegeEscalation"] is False
    assert load["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["serviceAccountName"] == "support-tier"
    assert spec["automountServiceAccountToken"] is False
    mounted = {m["name"] for m in load["volumeMounts"]}
    assert mounted == {v["name"] for v in spec["volumes"]}, "its /tmp, for a read-only root"

    labels = pod["metadata"]["labels"]
    assert not selects(support["spec"]["selector"]["matchLabels"], labels)
    app = Endpoint(
        named(objects, "Deployment", "app-tier")["spec"]["template"]["metadata"]["labels"]
    )
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert connects(policies, Endpoint(labels), app, 8080)

    limits, requests_ = load["resources"]["limits"], load["resources"]["requests"]
    assert cpu(requests_["cpu"]) >= 0.5 > cpu(counter["resources"]["limits"]["cpu"])
    assert cpu(limits["cpu"]) >= cpu(requests_["cpu"])


def test_the_load_pod_is_created_followed_and_deleted(tmp_path):
    backend = planned("staging", workdir=tmp_path)
    apply, wait = backend.load_start_commands()
    assert apply[-3:] == ["apply", "-f", str(backend.load_pod_file())]
    assert f"pod/{LOAD_POD}" in wait and "--for=condition=Ready" in wait
    follow = backend.load_command()
    assert follow[-5:] == ["logs", "--follow", f"pod/{LOAD_POD}", "-c", "load"]
    delete = backend.load_delete_command()
    assert f"pod/{LOAD_POD}" in delete and "--ignore-not-found" in delete
    for argv in (apply, wait, follow, delete):
        assert argv[argv.index("--kubeconfig") + 1] == str(backend.kubeconfig)
        assert argv[argv.index("-n") + 1] == backend.namespace


SUMMARY = {"event": "load_summary", "ok": 4000, "failed": 0, "rps": 39.9}


def result(summary: dict | None = None, **changes):
    """A rollout's result as rolling_update_under_load returns it, from the load's output."""
    lines = ["Defaulted container ...", json.dumps({"event": "load_progress", "ok": 10})]
    if summary is not None:
        lines.append(json.dumps(SUMMARY | summary))
    output = "\n".join(lines)
    return {
        "summary": load_summary(output),
        "output": output,
        "load_outlived_rollout": True,
        "pods_before": ["app-tier-a-1", "app-tier-a-2", "app-tier-a-3"],
        "pods_after": ["app-tier-b-1", "app-tier-b-2", "app-tier-b-3"],
    } | changes


def test_a_clean_rollout_passes_and_its_summary_is_the_last_one():
    assert result({})["summary"] == SUMMARY
    assert rollout_problems(result({})) == []


@pytest.mark.parametrize(
    ("planted", "complaint"),
    [
        ({"summary": {"failed": 1}}, "1 request(s) failed"),
        ({"summary": {"ok": 0}}, "no request succeeded"),
        ({"summary": {}, "load_outlived_rollout": False}, "the load ended before"),
        ({"summary": {}, "pods_after": ["app-tier-a-1", "app-tier-b-2"]}, "not replaced"),
        ({"summary": {}, "pods_after": ["app-tier-b-1"]}, "a rollout of one pod"),
        ({"output": "error: unable to upgrade connection"}, "no summary"),
    ],
)
def test_a_rollout_that_lost_a_request_or_proved_nothing_fails(planted, complaint):
    problems = rollout_problems(result(**planted))
    assert complaint in " ".join(problems), problems


def test_the_kind_only_tests_are_left_out_of_ci_and_run_by_make_e2e_kind():
    from tests.e2e.conftest import left_out

    assert left_out(None) == left_out("compose") == ["kind_only"]  # CI: compose, the default
    assert left_out("kind") == []
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("e2e-kind: install\n", 1)[1].splitlines()[0]
    assert "E2E_BACKEND=kind" in recipe and "tests/e2e/kind_only" in recipe
    assert (ROOT / "tests/e2e/kind_only/test_rolling_update.py").is_file()


# What a scenario needs (E2E_OVERLAY=dev keeps no data): skipped only where the user chose so.


def scenario_needs() -> dict[str, set[str]]:
    from tests.e2e import test_scenarios

    return {
        name: {
            arg
            for mark in getattr(test, "pytestmark", [])
            if mark.name == "needs"
            for arg in mark.args
        }
        for name, test in vars(test_scenarios).items()
        if name.startswith("test_")
    }


def test_a_scenario_states_what_it_needs():
    needs = scenario_needs()
    assert needs["test_count_survives_a_redis_restart"] == {"persistence"}
    assert needs["test_counting"] == set()


def test_a_need_unmet_skips_only_on_an_overlay_the_user_chose(monkeypatch):
    monkeypatch.setenv("E2E_BACKEND", "kind")
    monkeypatch.setenv("E2E_OVERLAY", "dev")
    dev = backend_from_env()
    outcome, reason = verdict(dev, ["persistence"])
    assert outcome == "skip"
    assert "persistence" in reason and "dev overlay" in reason and "staging or prod" in reason
    # Not chosen (a default that lacked it) is a failure: no configuration of ours skips.
    assert verdict(planned("dev"), ["persistence"])[0] == "fail"
    assert verdict(dev, []) is None


@pytest.mark.parametrize("overlay", [None, "staging", "prod"])
def test_ci_and_make_e2e_kind_run_every_scenario(monkeypatch, overlay):
    """Compose (CI) and kind's default overlay (`make e2e-kind`, the workflow) offer every
    scenario what it needs: no skipped test in CI."""
    monkeypatch.setenv("E2E_BACKEND", "kind")
    if overlay:
        monkeypatch.setenv("E2E_OVERLAY", overlay)
    else:
        monkeypatch.delenv("E2E_OVERLAY", raising=False)
    for backend in (ComposeBackend(), backend_from_env()):
        assert {name: verdict(backend, needs) for name, needs in scenario_needs().items()} == {
            name: None for name in scenario_needs()
        }


# KIND_REDIS_IMAGE, read as Docker reads an image reference. Written here without the data
# tier's name spelled out with a tag, so that tests/manifests/test_data_tier_image.py (which
# allows only the project's two images anywhere) reads them as what they are: examples.

DATA = "valkey"
HEX = "0123456789abcdef" * 4
REFERENCES = [
    # (KIND_REDIS_IMAGE, what the data tier then runs)
    ("redis-local", "redis-local:latest"),  # no tag: Docker's `latest`, not the base's tag
    (f"localhost:5000/{DATA}", f"localhost:5000/{DATA}:latest"),  # a registry's port
    (f"localhost:5000/{DATA}:9", f"localhost:5000/{DATA}:9"),
    (f"registry.example.com/team/{DATA}:9.1@sha256:{HEX}",) * 2,
    (f"{DATA}@sha256:{HEX}",) * 2,  # a digest alone: no tag added
    ("microservices-airgap/valkey:9.1-forky",) * 2,
]


@pytest.mark.parametrize(("reference", "runs"), REFERENCES)
def test_the_local_redis_image_is_the_one_the_data_tier_runs(tmp_path, reference, runs):
    backend = planned("staging", redis_image=reference, workdir=tmp_path)
    backend.preflight()
    assert reference in loaded_images(backend.setup_commands(), backend.cluster)
    backend.prepare_overlay()
    data = named(kustomize(backend.overlay_dir()), "Deployment", "data-tier")
    containers = data["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers if c["name"] == "redis"] == [runs]
    assert str(ImageRef.parse(reference)) == runs


def test_an_image_reference_is_split_as_docker_splits_it():
    assert ImageRef.parse(f"localhost:5000/{DATA}") == ImageRef(
        f"localhost:5000/{DATA}", None, None
    )
    assert ImageRef.parse(f"localhost:5000/{DATA}:9") == ImageRef(
        f"localhost:5000/{DATA}", "9", None
    )
    assert ImageRef.parse(f"{DATA}@sha256:{HEX}") == ImageRef(DATA, None, f"sha256:{HEX}")
    assert ImageRef.parse(f"a.example:443/team/{DATA}:9.1@sha256:{HEX}") == ImageRef(
        f"a.example:443/team/{DATA}", "9.1", f"sha256:{HEX}"
    )


@pytest.mark.parametrize(
    "reference",
    [f"team/{DATA.upper()}:9", f"{DATA}:", "localhost:5000/", f"{DATA}@sha256:abc", f"{DATA}:9 "],
)
def test_a_malformed_local_redis_image_fails_before_anything_is_built(reference):
    with pytest.raises(RuntimeError, match="KIND_REDIS_IMAGE"):
        planned("staging", redis_image=reference).preflight()


# Loading images: archives of the node's platform (kind issue 3795).


def test_images_are_loaded_as_archives_of_the_nodes_platform(tmp_path):
    image = "microservices-airgap/valkey:9.1-forky"
    arm = Docker("linux/arm64", (1, 52))
    backend = planned("staging", redis_image=image, workdir=tmp_path, docker=arm)
    plan = backend.setup_commands()
    assert not any(argv[:3] == ["kind", "load", "docker-image"] for argv in plan), (
        "kind load docker-image imports every platform docker save writes: kind#3795"
    )
    assert loaded_images(plan, backend.cluster) == [*backend.images.values(), image]
    saves = [argv for argv in plan if argv[:3] == ["docker", "image", "save"]]
    archives = [argv[argv.index("-o") + 1] for argv in saves]
    assert len(set(archives)) == len(saves) == 4
    for argv, archive in zip(saves, archives, strict=True):
        assert argv[argv.index("--platform") + 1] == "linux/arm64"
        assert archive.startswith(str(tmp_path)), "in the run's workdir, removed at teardown"
    for service, built in backend.images.items():
        build = plan.index(next(a for a in plan if a[:2] == ["docker", "build"] and built in a))
        save = plan.index(next(a for a in saves if a[-1] == built))
        assert build < save, service
    # Before Docker 28 `docker image save` has no --platform (and saves one platform).
    old = planned("staging", workdir=tmp_path, docker=DOCKER_27).setup_commands()
    assert all("--platform" not in argv for argv in old if argv[:3] == ["docker", "image", "save"])
    with pytest.raises(RuntimeError, match="start"):
        KindBackend("staging").setup_commands()


def test_the_daemon_is_read_from_docker_version():
    assert kind.DOCKER_VERSION == ["docker", "version", "--format", "{{json .}}"]

    def version(client: str, server: str) -> str:
        return json.dumps(
            {
                "Client": {"Version": "x", "ApiVersion": client, "Os": "darwin", "Arch": "arm64"},
                "Server": {"Version": "y", "ApiVersion": server, "Os": "linux", "Arch": "arm64"},
            }
        )

    docker = Docker.from_version(version("1.52", "1.52"))
    assert docker == Docker("linux/arm64", (1, 52)) and docker.saves_one_platform
    assert not Docker.from_version(version("1.47", "1.52")).saves_one_platform  # an old client
    assert not Docker.from_version(version("1.52", "1.47")).saves_one_platform  # an old daemon
    assert Docker.from_version(version("1.48", "1.48")).saves_one_platform


# The forward after a scale down, and the logs followed from two threads.


def test_after_a_scale_down_the_forward_waits_for_the_pods_that_stay():
    pods = {
        "items": [
            pod("app-tier-a", "2026-01-01T00:00:00Z"),
            pod("app-tier-b", "2026-01-01T00:05:00Z"),
            pod("app-tier-c", "2026-01-01T00:06:00Z"),
        ]
    }
    # Scaled from 3 to 1, before the ReplicaSet marks the two it deletes: the newest Ready pod
    # (what the forward took) is the first it deletes. Not yet.
    assert ready_pods(pods)[0] == "app-tier-c"
    assert forward_target(pods, 1) is None
    marked = copy_pods(pods, terminating={"app-tier-b", "app-tier-c"})
    assert forward_target(marked, 1) == "app-tier-a"
    assert forward_target(pods, 3) == "app-tier-c", "settled: the newest Ready pod"
    evicted = copy_pods(pods, failed={"app-tier-c"})
    assert forward_target(evicted, 2) == "app-tier-b", "a finished pod is no replica"


def copy_pods(pods: dict, terminating=(), failed=()) -> dict:
    items = json.loads(json.dumps(pods["items"]))
    for item in items:
        if item["metadata"]["name"] in terminating:
            item["metadata"]["deletionTimestamp"] = "2026-01-01T00:10:00Z"
        if item["metadata"]["name"] in failed:
            item["status"]["phase"] = "Failed"
            item["status"]["conditions"][0]["status"] = "False"
    return {"items": items}


class SlowFollow:
    """A `kubectl logs --follow` that takes a while to start, as a process does, and runs
    until it is terminated."""

    def __init__(self, started: list, argv, **kwargs):
        time.sleep(0.05)
        self.argv, self.ended = argv, threading.Event()
        self.stdout = self.lines()
        started.append(self)

    def lines(self):
        self.ended.wait(10)
        yield from ()

    def poll(self):
        return 0 if self.ended.is_set() else None

    def terminate(self):
        self.ended.set()

    def wait(self, timeout=None):
        self.ended.wait(timeout)
        return 0


def test_concurrent_refreshes_follow_each_instance_once_and_close_ends_them(monkeypatch):
    started: list[SlowFollow] = []
    fake = type(
        "subprocess",
        (),
        {
            "Popen": lambda *a, **k: SlowFollow(started, *a, **k),
            "PIPE": -1,
            "DEVNULL": -3,
            "STDOUT": -2,
            "TimeoutExpired": TimeoutError,
        },
    )
    monkeypatch.setattr(kind, "subprocess", fake)
    pods = {
        "items": [
            pod("support-tier-a", "2026-01-01T00:00:00Z", counter_state="terminated"),
            pod("support-tier-b", "2026-01-01T00:05:00Z"),
        ]
    }
    logs = PodLogs(planned(), "support", "counter")
    logs.pods = lambda: (time.sleep(0.01), pods)[1]
    # The watch thread and a test's thread (logs.text(), stop_tier) refresh at once.
    barrier = threading.Barrier(6)
    threads = [threading.Thread(target=lambda: (barrier.wait(), logs.refresh())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(s.argv[-3] for s in started) == ["pod/support-tier-a", "pod/support-tier-b"]
    logs.close()
    assert all(s.ended.is_set() for s in started), "close() ends every follow it started"
    logs.refresh()
    assert len(started) == 2, "and nothing is followed after close()"
