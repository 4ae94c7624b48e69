"""`REGISTRY=... make push` against a real registry: Debian's docker-registry (the CNCF
Distribution registry) on 127.0.0.1, where Docker pushes over plain HTTP. It refuses a missing
or malformed REGISTRY before building anything, then pushes the three images under the
project's version, which the registry's own API lists."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests
import yaml

from tests.support import ROOT, free_port, wait_for

SERVICES = ("server", "counter", "poller")


@pytest.fixture
def registry(tmp_path):
    """A registry on a free loopback port, storing in tmp_path; its address."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is missing: apt-get install docker-registry (.ci/run does)"
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"http://{address}/v2/", timeout=1).ok, what="registry")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def push(registry: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REGISTRY"}
    if registry is not None:
        env["REGISTRY"] = registry
    return subprocess.run(
        ["make", "--no-print-directory", "push"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def catalog(address: str) -> list[str]:
    return requests.get(f"http://{address}/v2/_catalog", timeout=5).json()["repositories"]


def test_make_push_refuses_a_bad_registry_then_pushes_the_three_images(registry):
    version = subprocess.run(
        [ROOT / "scripts/version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for bad in (None, f"http://{registry}/team", f"{registry}/Team", f"{registry}/team:1"):
        refused = push(bad)
        assert refused.returncode != 0, bad
        # One line saying why, before anything is built: compose's build would print first.
        assert refused.stderr.startswith("push: "), refused.stderr
        assert "REGISTRY" in refused.stderr.splitlines()[0], refused.stderr
    assert catalog(registry) == []

    pushed = push(f"{registry}/microservices")
    assert pushed.returncode == 0, pushed.stdout[-2000:] + pushed.stderr[-3000:]
    try:
        assert catalog(registry) == sorted(f"microservices/{s}" for s in SERVICES)
        for service in SERVICES:
            tags = requests.get(
                f"http://{registry}/v2/microservices/{service}/tags/list", timeout=5
            ).json()
            assert tags == {"name": f"microservices/{service}", "tags": [version]}
    finally:
        subprocess.run(
            ["docker", "rmi", *(f"{registry}/microservices/{s}:{version}" for s in SERVICES)],
            capture_output=True,
        )
