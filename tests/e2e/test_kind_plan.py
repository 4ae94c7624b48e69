"""The kind backend cannot run on a machine where no cluster can start (CI), but its plan can
be checked: every file it names exists, the images it loads are the ones the overlay runs,
and it restarts and scales the Deployments the overlay defines."""

import pytest
import yaml

from tests.e2e.backends import ROOT, KindBackend


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
    assert yaml.safe_load(config.read_text())["kind"] == "Cluster"

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
        if not c["image"].startswith("redis:")
    }
    assert used == loaded == built

    for component, deployment in backend.containers.items():
        names = [
            c["name"] for c in deployments[deployment]["spec"]["template"]["spec"]["containers"]
        ]
        assert component in names, f"kubectl logs -c {component} needs that container"
        labels = deployments[deployment]["spec"]["template"]["metadata"]["labels"]
        assert labels["tier"] == backend.tiers[component]

    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert "service/app-tier" in backend.port_forward_command()
    assert "app-tier" in services
    restart = backend.restart_commands("app")
    assert restart[0][-3:] == ["rollout", "restart", "deployment/app-tier"]
    assert backend.teardown_commands() == [["kind", "delete", "cluster", "--name", backend.cluster]]


def test_persistence_follows_the_overlay(rendered):
    assert not KindBackend("dev").has_persistence
    for overlay in ("staging", "prod"):
        kinds = {o["kind"] for o in rendered[overlay]}
        assert KindBackend(overlay).has_persistence and "PersistentVolumeClaim" in kinds
