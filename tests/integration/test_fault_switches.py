"""The fault switches (FAULTS_ENABLED, /faults): each one does what a lesson says it does, on
every worker of the pod, turns itself off in time, and changes nothing when refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from microservices_common.identity import Client
from microservices_server.store import CLIENTS_KEY

from tests.conftest import API_KEY, make_app
from tests.readme import run_try_it
from tests.support import Server, free_port, wait_for

KEY = {"X-API-Key": API_KEY}
SWITCHES = ["readiness", "liveness", "latency", "errors", "cpu"]
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
COUNTER = {"User-Agent": "microservices-counter/1.0.0 (counter-7c9f-x2kq)"}


@pytest.fixture
def faulty(redis_url):
    return make_app(redis_url, faults_enabled=True).test_client()


def switch_on(client, switch: str, **settings):
    response = client.put(f"/faults/{switch}", json=settings, headers=KEY)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def states(client) -> dict:
    return client.get("/faults").get_json()["switches"]


def all_off(client) -> bool:
    return all(state == {"on": False} for state in states(client).values())


# -- off unless asked


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/faults"), ("GET", "/faults/readiness"), ("PUT", "/faults/readiness"),
     ("DELETE", "/faults/latency"), ("PUT", "/faults/nope")],
)  # fmt: skip
def test_with_faults_disabled_every_faults_path_is_a_404(client, method, path):
    response = client.open(path, method=method, json={}, headers=KEY)
    assert response.status_code == 404
    assert "error" in response.get_json()
    assert client.get("/probe/readiness").status_code == 200


def test_every_switch_is_listed_and_off_at_start(faulty):
    body = faulty.get("/faults").get_json()
    assert body["pod"]
    assert sorted(body["switches"]) == sorted(SWITCHES)
    assert all_off(faulty)


# -- refused: a clear error, nothing changes


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_a_missing_or_wrong_key_is_a_401_and_changes_nothing(faulty, headers):
    assert faulty.put("/faults/readiness", json={}, headers=headers).status_code == 401
    assert faulty.delete("/faults/readiness", headers=headers).status_code == 401
    assert all_off(faulty)
    assert faulty.get("/probe/readiness").status_code == 200


def test_without_an_api_key_on_the_server_switches_are_a_403(redis_url):
    client = make_app(redis_url, faults_enabled=True, api_key=None).test_client()
    response = client.put("/faults/readiness", json={}, headers=KEY)
    assert response.status_code == 403
    assert "API_KEY" in response.get_json()["error"]
    assert all_off(client)


def test_an_unknown_switch_is_a_404_naming_the_switches(faulty):
    response = faulty.put("/faults/memory", json={}, headers=KEY)
    assert response.status_code == 404
    assert "readiness, liveness, latency, errors, cpu" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("switch", "body", "field"),
    [
        ("latency", {}, "ms"),
        ("latency", {"ms": 0}, "ms"),
        ("latency", {"ms": 10_001}, "ms"),
        ("latency", {"ms": 1.5}, "ms"),
        ("latency", {"ms": "100"}, "ms"),
        ("latency", {"ms": True}, "ms"),
        ("errors", {"ratio": 1.5}, "ratio"),
        ("errors", {"ratio": -0.1}, "ratio"),
        ("errors", {"ratio": None}, "ratio"),
        ("errors", {"ratio": 0.5, "status": 404}, "status"),
        ("errors", {"ratio": 0.5, "status": "500"}, "status"),
        ("liveness", {}, "mode"),
        ("liveness", {"mode": "crash"}, "mode"),
        ("readiness", {"for": 0}, "for"),
        ("readiness", {"for": 3601}, "for"),
        ("readiness", {"for": "60"}, "for"),
        ("cpu", {"for": False}, "for"),
        ("cpu", {"for": None}, "for: must be"),
        ("errors", {"ratio": 0.5, "status": 503.0}, "status"),
        ("readiness", {"ms": 100}, "'ms'"),
        ("cpu", {"cores": 2}, "'cores'"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_field_and_changes_nothing(faulty, switch, body, field):
    response = faulty.put(f"/faults/{switch}", json=body, headers=KEY)
    assert response.status_code == 400
    assert field in response.get_json()["error"]
    assert all_off(faulty)


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"[1]", "application/json", 400),
        (b'{"for": ', "application/json", 400),
        (b'{"for": NaN}', "application/json", 400),
        (b'{"for": 60}', "text/plain", 415),
        (b"x" * 2000, "application/json", 413),
    ],
)
def test_a_body_that_is_no_json_object_is_refused(faulty, data, content_type, status):
    response = faulty.put(
        "/faults/readiness", data=data, headers={**KEY, "Content-Type": content_type}
    )
    assert response.status_code == status
    assert all_off(faulty)


# -- each switch


def test_readiness_fails_while_on_and_the_api_still_serves(faulty):
    state = switch_on(faulty, "readiness")
    assert state["on"] is True
    assert 299 < state["seconds_left"] <= 300  # the default "for"
    readiness = faulty.get("/probe/readiness")
    assert readiness.status_code == 503
    assert "readiness fault switch" in readiness.get_json()["reason"]
    assert faulty.post("/").status_code == 200
    assert faulty.get("/probe/liveness").status_code == 200

    assert faulty.delete("/faults/readiness", headers=KEY).get_json() == {"on": False}
    assert faulty.get("/probe/readiness").status_code == 200


def test_liveness_fail_answers_500_until_switched_off(faulty):
    assert switch_on(faulty, "liveness", mode="fail")["mode"] == "fail"
    assert faulty.get("/probe/liveness").status_code == 500
    assert faulty.get("/probe/readiness").status_code == 200
    faulty.delete("/faults/liveness", headers=KEY)
    assert faulty.get("/probe/liveness").status_code == 200


def test_a_switch_turns_itself_off_after_its_time(faulty):
    switch_on(faulty, "readiness", **{"for": 1})
    assert faulty.get("/probe/readiness").status_code == 503
    wait_for(lambda: faulty.get("/probe/readiness").status_code == 200, timeout=5)
    assert all_off(faulty)


def test_errors_fail_that_share_of_api_answers_before_anything_is_counted(faulty):
    switch_on(faulty, "errors", ratio=1, status=503)
    for method in ("get", "post", "delete"):
        response = getattr(faulty, method)("/", headers=KEY)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "errors switch" in response.get_json()["error"]
    # Probes, metrics, the page and the switches themselves are not the API.
    assert faulty.get("/probe/readiness").status_code == 200
    assert faulty.get("/probe/liveness").status_code == 200
    assert faulty.get("/metrics").status_code == 200
    assert faulty.get("/", headers=BROWSER).status_code == 200
    assert faulty.get("/api/status").status_code == 200
    faulty.delete("/faults/errors", headers=KEY)
    assert faulty.get("/").get_json() == {"count": 0}, "no failed POST counted"

    switch_on(faulty, "errors", ratio=0.5)  # status 500 by default
    statuses = [faulty.post("/").status_code for _ in range(400)]
    assert set(statuses) == {200, 500}
    assert 120 < statuses.count(500) < 280  # 200 expected; outside is ~1 in 10^11
    faulty.delete("/faults/errors", headers=KEY)
    assert faulty.get("/").get_json() == {"count": statuses.count(200)}


def test_latency_delays_the_api_and_nothing_else(faulty):
    switch_on(faulty, "latency", ms=1500)
    started = time.monotonic()
    assert faulty.post("/").status_code == 200
    assert time.monotonic() - started >= 1.5
    paths = ("/probe/readiness", "/probe/liveness", "/faults", "/api/status")
    for path in paths:
        assert faulty.get(path).status_code == 200
    assert faulty.get("/", headers=BROWSER).status_code == 200  # the page
    metrics = faulty.get("/metrics").get_data(as_text=True)

    def slowest_bucket(route: str, method: str) -> float:
        """The count in the histogram's 1 s bucket over the count: 1.0 if none waited."""
        labels = f'method="{method}",route="{route}"'
        below = re.search(rf'_bucket\{{le="1.0",{labels}\}} (\S+)', metrics).group(1)
        total = re.search(rf"_count\{{{labels}\}} (\S+)", metrics).group(1)
        return float(below) / float(total)

    # What the server measured itself (not a client's clock): only the API waited.
    assert slowest_bucket("/", "POST") == 0.0, "the added latency is what the histogram sees"
    for path in paths:
        assert slowest_bucket(path, "GET") == 1.0, f"{path} waited for the latency switch"
    assert slowest_bucket("/", "GET") == 1.0, "the page did not wait"


def test_every_change_is_counted_and_each_switch_shown_in_metrics(faulty):
    switch_on(faulty, "latency", ms=5)
    switch_on(faulty, "latency", ms=10)
    faulty.delete("/faults/latency", headers=KEY)
    switch_on(faulty, "readiness")
    metrics = faulty.get("/metrics").get_data(as_text=True)
    assert 'faults_changes_total{action="on",switch="latency"} 2.0' in metrics
    assert 'faults_changes_total{action="off",switch="latency"} 1.0' in metrics
    assert 'faults_on{switch="readiness"} 1.0' in metrics
    assert 'faults_on{switch="latency"} 0.0' in metrics


def test_the_page_status_shows_the_switches_of_the_pod_that_answered(faulty, client):
    switch_on(faulty, "errors", ratio=0.25, status=503)
    app_tier = faulty.get("/api/status").get_json()["tiers"]["app"]
    assert app_tier["faults"]["errors"]["on"] is True
    assert app_tier["faults"]["errors"]["ratio"] == 0.25
    assert client.get("/api/status").get_json()["tiers"]["app"]["faults"] is None


def silent_in_redis_for_a_minute(redis_client) -> None:
    """The counter as Redis last recorded it: a minute ago (stale, unless it is asking)."""
    seconds, _ = redis_client.time()
    redis_client.zadd(
        CLIENTS_KEY, {Client.from_user_agent(COUNTER["User-Agent"]).member: seconds - 60}
    )


def test_a_counter_whose_requests_the_errors_switch_fails_is_retrying(faulty, redis_client):
    silent_in_redis_for_a_minute(redis_client)
    assert faulty.get("/api/status").get_json()["tiers"]["counter"]["status"] == "stale"
    switch_on(faulty, "errors", ratio=1)
    assert faulty.post("/", json={"increment": 1}, headers=COUNTER).status_code == 500
    counter = faulty.get("/api/status").get_json()["tiers"]["counter"]
    assert counter["status"] == "retrying"
    assert [pod["host"] for pod in counter["pods"]] == ["counter-7c9f-x2kq"]


# -- under gunicorn: every worker obeys, a hang holds only the probe, the CPU burner


def put(server: Server, switch: str, **settings) -> requests.Response:
    return requests.put(f"{server.url}/faults/{switch}", json=settings, headers=KEY, timeout=5)


def pid_answering(server: Server) -> tuple[int, dict]:
    # A connection each (Connection: close): the kernel hands them to either worker.
    status = requests.get(
        server.url + "/api/status", headers={"Connection": "close"}, timeout=5
    ).json()["tiers"]["app"]
    return status["pid"], status["faults"]


@pytest.fixture
def two_workers(redis_url):
    server = Server(
        redis_url, FAULTS_ENABLED="true", WEB_CONCURRENCY="2", DRAIN_DELAY="0", LOG_FORMAT="json"
    ).wait_ready()
    yield server
    server.stop()


def test_a_switch_turned_on_through_one_worker_holds_in_every_worker(two_workers):
    assert put(two_workers, "readiness").status_code == 200
    seen: dict[int, dict] = {}
    wait_for(
        lambda: len(seen.update([pid_answering(two_workers)]) or seen) == 2,
        what="both workers to answer",
    )
    assert all(faults["readiness"]["on"] for faults in seen.values()), seen
    for _ in range(10):
        readiness = requests.get(
            two_workers.url + "/probe/readiness", headers={"Connection": "close"}, timeout=5
        )
        assert readiness.status_code == 503
    event = two_workers.events("fault_on")[0]
    assert event["switch"] == "readiness"


@pytest.mark.parametrize("failing", ["errors switch", "redis down"])
def test_every_worker_says_retrying_of_a_counter_that_asked_one_of_them(
    redis_url, redis_client, failing
):
    if failing == "errors switch":
        silent_in_redis_for_a_minute(redis_client)
    else:
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
    server = Server(redis_url, FAULTS_ENABLED="true", WEB_CONCURRENCY="2", DRAIN_DELAY="0")
    try:
        server.wait_ready()
        if failing == "errors switch":
            assert put(server, "errors", ratio=1).status_code == 200
        # One failed request, on a connection of its own: one worker took it.
        failed = requests.post(
            server.url + "/", headers={**COUNTER, "Connection": "close"}, timeout=5
        )
        assert failed.status_code == (500 if failing == "errors switch" else 503)
        pids, statuses = set(), []

        def poll() -> bool:
            status = requests.get(
                server.url + "/api/status", headers={"Connection": "close"}, timeout=5
            ).json()["tiers"]
            pids.add(status["app"]["pid"])
            statuses.append(status["counter"]["status"])
            return len(pids) == 2 and len(statuses) >= 8

        wait_for(poll, what="several answers from both workers")
        assert set(statuses) == {"retrying"}, statuses
    finally:
        server.stop()


def test_a_hanging_liveness_holds_the_probe_only_until_switched_off(two_workers):
    assert put(two_workers, "liveness", mode="hang").status_code == 200
    with pytest.raises(requests.exceptions.Timeout):  # what the kubelet's probe sees
        requests.get(two_workers.url + "/probe/liveness", timeout=1.5)
    assert requests.get(two_workers.url + "/probe/readiness", timeout=5).status_code == 200
    assert requests.post(two_workers.url + "/", timeout=5).status_code == 200
    assert requests.delete(f"{two_workers.url}/faults/liveness", headers=KEY, timeout=5).ok
    assert requests.get(two_workers.url + "/probe/liveness", timeout=5).status_code == 200


def burners(server: Server) -> list[int]:
    """The burners of this server's board (their command line names its master's pid)."""
    mark = f"microservices-cpu-burn-{server.proc.pid}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark in (proc / "cmdline").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_cpu_burns_a_core_at_low_priority_while_the_pod_keeps_answering(two_workers):
    assert burners(two_workers) == []
    assert put(two_workers, "cpu", **{"for": 60}).json()["on"] is True
    wait_for(lambda: len(burners(two_workers)) == 1, timeout=5, what="the burner to start")
    (burner,) = burners(two_workers)
    wait_for(lambda: niceness(burner) == 19, timeout=5, what="the lowest priority")
    before = cpu_seconds(burner)
    time.sleep(1)
    assert cpu_seconds(burner) - before > 0.3, "the burner burns"
    for _ in range(5):  # the kubelet's probes keep getting their answers
        assert requests.get(two_workers.url + "/probe/liveness", timeout=5).ok
        assert requests.get(two_workers.url + "/probe/readiness", timeout=5).ok
    # Turning it on again replaces the burner; off (through any worker) ends it.
    assert put(two_workers, "cpu", **{"for": 60}).ok
    wait_for(
        lambda: burners(two_workers) not in ([], [burner]) and len(burners(two_workers)) == 1,
        what="one new burner",
    )
    assert requests.delete(f"{two_workers.url}/faults/cpu", headers=KEY, timeout=5).ok
    wait_for(lambda: burners(two_workers) == [], timeout=5, what="the burner to end")


def test_concurrent_cpu_switches_leave_one_burner_that_off_ends(two_workers):
    def switch_on(_) -> int:
        return requests.put(
            f"{two_workers.url}/faults/cpu",
            json={"for": 60},
            headers={**KEY, "Connection": "close"},  # spread over both workers
            timeout=10,
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(switch_on, range(16))) == {200}
    wait_for(lambda: len(burners(two_workers)) == 1, timeout=5, what="one burner left")
    assert requests.delete(f"{two_workers.url}/faults/cpu", headers=KEY, timeout=5).ok
    wait_for(lambda: burners(two_workers) == [], timeout=5, what="the burner to end")


def test_a_cpu_switch_whose_burner_died_with_its_worker_reads_off(two_workers):
    assert put(two_workers, "cpu", **{"for": 60}).ok
    wait_for(lambda: len(burners(two_workers)) == 1, timeout=5)
    (burner,) = burners(two_workers)
    worker = int(Path(f"/proc/{burner}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(worker, signal.SIGKILL)  # the burner ends with it (its parent is gone)
    wait_for(lambda: burners(two_workers) == [], timeout=5, what="the burner to end")
    faults = requests.get(two_workers.url + "/faults/cpu", timeout=5).json()
    assert faults == {"on": False}, "no burner, no cpu switch"


def test_the_burner_ends_at_its_time_and_with_the_server(redis_url):
    server = Server(redis_url, FAULTS_ENABLED="true", DRAIN_DELAY="0").wait_ready()
    try:
        assert put(server, "cpu", **{"for": 1}).ok
        wait_for(lambda: len(burners(server)) == 1, timeout=5)
        wait_for(lambda: burners(server) == [], timeout=5, what="the burner to end at its time")
        assert put(server, "cpu", **{"for": 600}).ok
        wait_for(lambda: len(burners(server)) == 1, timeout=5)
    finally:
        assert server.stop(signal.SIGTERM) == 0
    wait_for(lambda: burners(server) == [], timeout=5, what="the burner to end with its worker")


def test_changes_are_logged_and_counted_once_each_across_workers(two_workers):
    url = f"{two_workers.url}/faults/readiness"
    assert put(two_workers, "latency", ms=5, **{"for": 1}).ok
    assert put(two_workers, "readiness").ok
    for _ in range(3):  # only the first DELETE turns it off
        assert requests.delete(url, headers={**KEY, "Connection": "close"}, timeout=5).ok
    wait_for(lambda: two_workers.events("fault_expired"), what="latency to expire")
    assert [e["switch"] for e in two_workers.events("fault_on")] == ["latency", "readiness"]
    assert [e["switch"] for e in two_workers.events("fault_off")] == ["readiness"]
    assert [e["switch"] for e in two_workers.events("fault_expired")] == ["latency"]
    assert put(two_workers, "errors", ratio=0.1).ok
    for _ in range(6):  # whichever worker answers, one pod's numbers
        metrics = requests.get(
            two_workers.url + "/metrics", headers={"Connection": "close"}, timeout=5
        ).text
        assert 'faults_changes_total{action="on",switch="readiness"} 1.0' in metrics
        assert 'faults_changes_total{action="off",switch="readiness"} 1.0' in metrics
        assert 'faults_changes_total{action="expired",switch="latency"} 1.0' in metrics
        assert metrics.count('faults_on{switch="errors"} 1.0') == 1
        assert 'faults_on{switch="readiness"} 0.0' in metrics


def test_a_hanging_liveness_probe_does_not_hold_up_the_shutdown(redis_url):
    server = Server(redis_url, FAULTS_ENABLED="true", GRACEFUL_TIMEOUT="60").wait_ready()
    assert put(server, "liveness", mode="hang").ok
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(requests.get, server.url + "/probe/liveness", timeout=50)
        time.sleep(0.5)  # the probe is hanging
        server.proc.send_signal(signal.SIGTERM)
        answer = probe.result()
    assert answer.status_code == 500, "the hang ends with the shutdown, answered"
    assert server.wait(30) == 0


def test_latency_waits_after_the_body_is_read(redis_url):
    """A wait longer than BODY_TIMEOUT must not turn a body sent a moment after its head
    into a 408: the body is read first, the wait comes before the answer."""
    server = Server(redis_url, FAULTS_ENABLED="true", BODY_TIMEOUT="1").wait_ready()
    try:
        assert put(server, "latency", ms=1500).ok
        body = b'{"increment": 2}'
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            )
            time.sleep(0.2)  # the body in a packet of its own
            conn.sendall(body)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert server.count() == 2
    finally:
        server.stop()


def test_the_readmes_switch_commands_answer_as_it_says(redis_url):
    server = Server(redis_url, FAULTS_ENABLED="true", DRAIN_DELAY="0").wait_ready()
    try:
        results = run_try_it(server.url, API_KEY, marker="Try the switches")
    finally:
        server.stop()
    assert len(results) == 10
