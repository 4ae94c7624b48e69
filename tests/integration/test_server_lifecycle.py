"""The server's life under a real gunicorn: the drain on SIGTERM, in-flight requests, and
metrics added up across worker processes."""

import re
import signal
import threading
from pathlib import Path

import requests

from tests.support import Server, Service, free_port, wait_for


def readiness(server: Server) -> requests.Response:
    return requests.get(server.url + "/probe/readiness", timeout=5)


def test_sigterm_turns_readiness_503_while_requests_are_still_served(redis_url):
    server = Server(redis_url, DRAIN_DELAY="5").wait_ready()
    try:
        assert readiness(server).status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: readiness(server).status_code == 503, what="readiness to turn 503")
        assert readiness(server).json() == {"status": "unready", "reason": "shutting down"}
        # Whoever has not yet seen the 503 still gets served, not refused.
        assert requests.post(server.url + "/", json={"increment": 4}, timeout=5).json() == {
            "count": 4
        }
        assert requests.get(server.url + "/probe/liveness", timeout=5).status_code == 200
        assert server.wait(30) == 0
    finally:
        server.kill()
    assert "Draining: readiness answers 503 for 5s" in server.output


def test_a_request_in_flight_when_the_port_closes_still_gets_its_answer(redis_url, redis_client):
    server = Server(redis_url, DRAIN_DELAY="0.5", REDIS_TIMEOUT="20").wait_ready()
    answer = {}
    redis_client.client_pause(20_000, all=False)  # writes wait, the server's INCRBY among them
    try:
        request = threading.Thread(
            target=lambda: answer.update(
                r=requests.post(server.url + "/", json={"increment": 7}, timeout=30)
            )
        )
        request.start()
        wait_for(
            lambda: any(c["cmd"] in ("evalsha", "eval") for c in redis_client.client_list()),
            what="the increment to be waiting in Redis",
        )
        server.proc.send_signal(signal.SIGTERM)
        # The drain is over (our second SIGTERM) and gunicorn has closed the listener.
        wait_for(
            lambda: server.output.count("Handling signal: term") == 2,
            what="the graceful stop to begin",
        )
        assert server.proc.poll() is None  # waiting for the request, not gone
    finally:
        redis_client.client_unpause()
    request.join(30)
    assert answer["r"].status_code == 200
    assert answer["r"].json() == {"count": 7}
    assert server.wait(30) == 0


def test_second_sigterm_skips_the_drain(redis_url):
    server = Server(redis_url, DRAIN_DELAY="300").wait_ready()
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: readiness(server).status_code == 503, what="the drain to start")
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0


def total(metrics: str, route: str, method: str, status: str) -> float:
    pattern = rf'http_requests_total{{method="{method}",route="{route}",status="{status}"}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def test_two_workers_under_plain_gunicorn_add_up_their_metrics(redis_url):
    """Started as plain gunicorn with the project's config (not microservices-server)."""
    port = free_port()
    gunicorn = Service(
        "gunicorn",
        {
            "PORT": str(port),
            "REDIS_URL": redis_url,
            "WEB_CONCURRENCY": "2",
            "DRAIN_DELAY": "0",
            "PROMETHEUS_MULTIPROC_DIR": "",
        },
        args=[
            "-c",
            "python:microservices_server.gunicorn_conf",
            "microservices_server.app:create_app()",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/probe/liveness", timeout=1).ok, what=gunicorn.output)
        folder = Path(
            re.search(r"Metrics of every worker add up in (\S+)", gunicorn.output).group(1)
        )
        sent = 0

        def post_until_both_workers_answered() -> bool:
            nonlocal sent
            # A connection each: the kernel hands them to both workers.
            assert requests.post(url + "/", timeout=5, headers={"Connection": "close"}).ok
            sent += 1
            return sent >= 20 and len(list(folder.glob("counter_*.db"))) == 2

        wait_for(post_until_both_workers_answered, what="both workers to write metrics")
        for _ in range(6):  # whichever worker answers /metrics, it adds up both
            metrics = requests.get(url + "/metrics", timeout=5, headers={"Connection": "close"})
            assert total(metrics.text, "/", "POST", "200") == sent
    finally:
        assert gunicorn.stop() == 0
    assert not folder.exists(), "the metrics folder is removed on exit"


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (bit 15 of SigCgt in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.MULTILINE).group(1), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def test_a_sigterm_while_starting_is_not_lost(redis_url):
    """As PID 1 a process ignores signals it has no handler for: one sent before gunicorn
    installs its handlers must still stop the server, gracefully."""
    server = Server(redis_url, DRAIN_DELAY="0")
    try:
        wait_for(lambda: catches_sigterm(server.proc.pid), interval=0.001, what="a handler")
        early = "Starting gunicorn" not in server.output
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output
    finally:
        server.kill()
    assert early, "gunicorn had started already: the test proves nothing"
    assert "Shutting down: Master" in server.output
    # Stopped before forking a worker: one still booting would miss a SIGTERM (it has no
    # handler yet) and be killed only when GRACEFUL_TIMEOUT ends.
    assert "Booting worker" not in server.output
