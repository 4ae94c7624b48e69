"""The kind backend cannot run where no cluster can start (CI), but its plan and its
decisions can be checked: the files it names exist, the images it loads are the ones the
overlay runs, it never touches the user's kubeconfig or clusters, every forward names a Ready
pod that is not terminating, logs are followed per pod, a stopped tier comes back with the
replicas it had, and the rolling update under load rolls a tier built not to lose a server,
through its Service, and fails on a single failed request."""

import json
import shutil

import pytest
import yaml
from microservices_counter.counter import parse_args

from tests.e2e.backends import ROOT
from tests.e2e.kind import (
    LOAD,
    ROLLED_REPLICAS,
    KindBackend,
    containers_of,
    load_summary,
    ready_pods,
    remembered_replicas,
    rollout_problems,
)
from tests.manifests.lessons import container, named, rolling_update_problems
from tests.manifests.render import kustomize
from tests.readme import block_after


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_plan_matches_the_overlay(rendered, overlay):
    backend = KindBackend(overlay=overlay)
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

    loaded = {argv[-1] for argv in plan if argv[:3] == ["kind", "load", "docker-image"]}
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
    first, second = KindBackend(), KindBackend()
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
    theirs = KindBackend(cluster="my-cluster")
    assert theirs.teardown_commands() == [], "never delete a cluster the run did not create"
    # kind export logs knows --name only.
    assert "--kubeconfig" not in first.export_logs_command()


def test_air_gapped_builds_use_the_local_base_image(monkeypatch):
    monkeypatch.setenv("PYTHON_IMAGE", "microservices-airgap/python:3.11-bookworm")
    monkeypatch.setenv("PIP_INSTALL_FLAGS", "--no-index --find-links=/wheelhouse")
    builds = [argv for argv in KindBackend().setup_commands() if argv[:2] == ["docker", "build"]]
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
    forward = KindBackend().port_forward_command("app-tier-new")
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
    command = KindBackend().pod_logs_command("support-tier-a", "counter")
    assert "pod/support-tier-a" in command and "--follow" in command
    assert not any(arg.startswith("deployment/") for arg in command)


def test_a_stopped_tier_comes_back_with_the_replicas_it_had():
    assert remembered_replicas(None, "3") == 3
    # Stopped twice (or left at 0 by a failed test): the first count is kept, never 0.
    assert remembered_replicas(3, "0") == 3
    assert remembered_replicas(None, "0") == 1


def test_prod_without_its_secrets_fails_before_anything_is_built(tmp_path):
    backend = KindBackend("prod")
    backend.kustomize_root = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", backend.kustomize_root)
    (backend.kustomize_root / "overlays/prod/secrets.env").unlink(missing_ok=True)
    with pytest.raises(RuntimeError, match="secrets.env"):
        backend.preflight()


def test_air_gapped_plan_loads_and_uses_the_local_redis_image(tmp_path):
    image = "microservices-airgap/valkey:9.1-forky"
    backend = KindBackend("staging", redis_image=image, workdir=tmp_path)
    plan = backend.setup_commands()
    assert ["kind", "load", "docker-image", "--name", backend.cluster, image] in plan
    backend.prepare_overlay()
    apply = next(argv for argv in plan if "apply" in argv)
    objects = kustomize(backend.overlay_dir())
    assert str(backend.overlay_dir()) == apply[-1]
    redis = [
        c["image"]
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "data-tier"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert redis == [image]


def test_persistence_follows_the_overlay(rendered):
    assert not KindBackend("dev").has_persistence
    for overlay in ("staging", "prod"):
        kinds = {o["kind"] for o in rendered[overlay]}
        assert KindBackend(overlay).has_persistence and "PersistentVolumeClaim" in kinds


def test_the_api_key_is_the_overlays(tmp_path):
    assert KindBackend("dev").api_key
    backend = KindBackend("prod")
    backend.kustomize_root = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", backend.kustomize_root)
    (backend.kustomize_root / "overlays/prod/secrets.env").write_text(
        "REDIS_PASSWORD=p\nAPI_KEY=k\n"
    )
    assert backend.api_key == "k"


def test_the_readme_way_to_point_an_overlay_at_a_local_redis(tmp_path):
    lines = block_after("Without registry access")
    start = next(i for i, line in enumerate(lines) if line.startswith("cat >> "))
    end = lines.index("END", start)
    target = lines[start].split()[2]
    tree = tmp_path / "kustomize"
    shutil.copytree(ROOT / "kustomize", tree)
    overlay = tmp_path / target
    overlay.write_text(overlay.read_text() + "\n".join(lines[start + 1 : end]) + "\n")
    loaded = next(line.split()[-1] for line in lines if line.startswith("kind load"))
    objects = kustomize(overlay.parent)
    data = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "data-tier"
    )
    assert [c["image"] for c in data["spec"]["template"]["spec"]["containers"]] == [loaded]


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_the_rolling_update_changes_the_app_tiers_template_and_waits(rendered, overlay):
    backend = KindBackend(overlay)
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


@pytest.mark.parametrize("overlay", ["dev", "staging", "prod"])
def test_the_load_runs_in_the_support_tier_through_the_service(rendered, overlay):
    backend = KindBackend(overlay)
    command = backend.load_command()
    program, *args = command[command.index("--") + 1 :]
    parsed = parse_args(args)  # the counter's own parser: it accepts them, in load mode
    assert program == "microservices-counter"
    assert (parsed.rate, parsed.concurrency, parsed.duration) == (
        LOAD["rate"],
        LOAD["concurrency"],
        LOAD["seconds"],
    )
    assert command[: command.index("--")][-4:] == ["exec", "deploy/support-tier", "-c", "counter"]
    support = named(rendered[overlay], "Deployment", "support-tier")
    counter = container(support["spec"]["template"]["spec"], "counter")
    env = {e["name"]: e.get("value") for e in counter["env"]}
    assert env["API_URL"] == "http://app-tier:8080", "the Service, as every client reaches it"
    assert env["LOG_FORMAT"] == "json", "its summary is read as JSON"
    assert LOAD["seconds"] >= 120, "long enough to outlast a rollout of three servers"


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
