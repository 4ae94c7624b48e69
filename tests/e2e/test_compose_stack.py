"""What the compose stack promises beyond the scenarios: hardened, non-root containers, images
that carry only their own service, a Redis healthcheck that an auth error fails, and the live
page through the published port."""

import json
import subprocess

import pytest
import requests

from tests.browser.chromium import Page, assert_clean, chromium, require_chromium
from tests.e2e.backends import ComposeBackend, run
from tests.support import wait_for

COMPONENTS = ["redis", "server", "counter", "poller"]


@pytest.fixture(scope="module")
def compose(backend) -> ComposeBackend:
    assert isinstance(backend, ComposeBackend), "run these with the compose backend"
    return backend


@pytest.mark.parametrize("component", COMPONENTS)
def test_containers_are_hardened_and_non_root(compose, component):
    state = compose.container(component)
    host = state["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
    rows = run(["docker", "top", state["Id"], "-eo", "pid,uid"]).splitlines()[1:]
    uids = [row.split()[1] for row in rows]
    assert uids and all(uid != "0" for uid in uids), uids


@pytest.mark.parametrize(
    ("component", "absent"),
    [
        ("counter", "flask"),
        ("counter", "redis"),
        ("counter", "microservices_server"),
        ("counter", "requests"),  # the standard library is the workers' HTTP client
        ("poller", "flask"),
        ("poller", "redis"),
        ("poller", "microservices_counter"),
        ("poller", "requests"),
        ("server", "microservices_counter"),
        ("server", "requests"),
    ],
)
def test_images_carry_only_their_own_service(compose, component, absent):
    image = compose.container(component)["Config"]["Image"]
    result = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", image, "-c", f"import {absent}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr


@pytest.mark.parametrize("component", ["server", "counter", "poller"])
@pytest.mark.parametrize(
    ("command", "setting"),
    [("microservices-proxy", "PROXY_UPSTREAM="), ("microservices-redis-metrics", "PORT=0")],
)
def test_every_image_carries_the_lessons_tools(compose, component, command, setting):
    """The ambassador (lesson 16) and the adapter (lesson 17) run from any of the images: each
    starts, reads its settings and stops at a bad one, naming it (no missing module)."""
    image = compose.container(component)["Config"]["Image"]
    result = subprocess.run(
        ["docker", "run", "--rm", "-e", setting, "--entrypoint", command, image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"configuration error: {setting.split('=')[0]}=")


def test_the_poller_image_writes_its_output_file(compose):
    """The poller's OUTPUT_FILE, which lesson 15's sidecar reads, is in the image's poller."""
    image = compose.container("poller")["Config"]["Image"]
    result = subprocess.run(
        ["docker", "run", "--rm", "-e", "OUTPUT_FILE=/nowhere/counts.log", image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "configuration error: OUTPUT_FILE='/nowhere/counts.log'" in result.stderr


def test_images_have_no_build_tools(compose):
    image = compose.container("server")["Config"]["Image"]
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "command -v gcc cc pip pip3 || echo none",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "none"


def test_redis_healthcheck_fails_on_a_wrong_password(compose):
    state = compose.container("redis")
    test = state["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD-SHELL"
    good = subprocess.run(
        ["docker", "exec", state["Id"], "sh", "-c", test[1]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    bad = subprocess.run(
        ["docker", "exec", "-e", "REDIS_PASSWORD=wrong", state["Id"], "sh", "-c", test[1]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert good.returncode == 0
    assert bad.returncode != 0, "a NOAUTH/WRONGPASS reply must fail the healthcheck"


def test_redis_password_is_not_on_the_command_line(compose):
    state = compose.container("redis")
    processes = run(["docker", "top", state["Id"], "-eo", "pid,args"])
    assert "valkey-server" in processes
    assert "e2e-redis-password" not in processes
    assert "e2e-redis-password" not in json.dumps(state["Config"]["Cmd"])


def health(compose: ComposeBackend, component: str) -> str:
    return compose.container(component)["State"]["Health"]["Status"]


def test_the_readiness_switch_fails_the_servers_healthcheck_until_turned_off(compose):
    """Compose runs the server with its fault switches on (FAULTS_ENABLED): the readiness
    switch fails the healthcheck, which asks /probe/readiness, while the server still serves
    (what takes a pod out of a Service in k8s/22-probes-in-action); turned off, it heals."""
    key = {"X-API-Key": compose.api_key}
    switch = compose.server_url + "/faults/readiness"
    assert health(compose, "server") == "healthy"
    on = requests.put(switch, json={"for": 120}, headers=key, timeout=5)
    assert on.status_code == 200 and on.json()["on"] is True, on.text
    try:
        wait_for(lambda: health(compose, "server") == "unhealthy", 60, interval=1, what="unhealthy")
        assert requests.get(compose.server_url + "/", timeout=5).status_code == 200
    finally:
        off = requests.delete(switch, headers=key, timeout=5)
    assert off.json() == {"on": False}
    wait_for(lambda: health(compose, "server") == "healthy", 60, interval=1, what="healthy again")


def test_a_browser_gets_the_page_through_the_published_port(compose):
    page = requests.get(compose.server_url + "/", headers={"Accept": "text/html"}, timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert 'data-testid="count"' in page.text
    script = requests.get(compose.server_url + "/static/page.js", timeout=5)
    assert script.status_code == 200  # the image carries the static files
    assert "count" in requests.get(compose.server_url + "/", timeout=5).json()


def test_the_page_shows_the_stack_in_a_real_browser(compose):
    """The page through the published port: every tier up, each worker by its container's
    hostname (the User-Agent the images send), the count rising; no console error, nothing
    from another host."""
    require_chromium()
    ids = {c: compose.container(c)["Config"]["Hostname"] for c in ("counter", "poller")}
    with chromium() as driver:
        page = Page(driver, compose.server_url).open()
        for tier in ("data", "app", "counter", "poller"):
            page.wait_status(tier, "up", timeout=60)
        for kind, hostname in ids.items():
            wait_for(lambda k=kind, h=hostname: h in page.tier(k).text, what=f"{kind} {hostname}")
        page.wait_count_rises()
        assert_clean(driver, compose.server_url)
