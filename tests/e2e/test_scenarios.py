"""End-to-end scenarios, written once, run against a backend (see backends.py).

They run in order on one deployment of the app; each leaves every tier running.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.support import wait_for


def count(backend) -> int:
    return requests.get(backend.server_url + "/", timeout=5).json()["count"]


def readiness(backend) -> int:
    return requests.get(backend.server_url + "/probe/readiness", timeout=5).status_code


def json_lines(text: str) -> list[dict]:
    # docker compose logs may start a line with a terminal escape (ESC[2K), even with
    # --no-color: read from the first brace.
    return [json.loads(line[line.index("{") :]) for line in text.splitlines() if "{" in line]


def printed_counts(backend) -> list[int]:
    return [e["count"] for e in json_lines(backend.logs("poller")) if e.get("event") == "count"]


def ledger(backend) -> list[dict]:
    """The increments the counter logged as acknowledged by the server."""
    return [e for e in json_lines(backend.logs("counter")) if e.get("event") == "incremented"]


def wait_counting(backend, timeout: float = 60) -> int:
    start = count(backend)
    return wait_for(
        lambda: count(backend) > start and count(backend),
        timeout,
        interval=0.5,
        what="the count to rise",
    )


def test_counting(backend):
    """The count rises, and the poller prints what the server holds."""
    already = len(printed_counts(backend))  # an earlier test may have reset the count
    wait_counting(backend)
    held = count(backend)
    wait_for(
        lambda: any(c >= held for c in printed_counts(backend)[already:]),
        30,
        interval=0.5,
        what=f"the poller to print a count of at least {held}",
    )
    printed = printed_counts(backend)[already:]
    assert printed == sorted(printed), "the count never goes down"
    assert count(backend) >= printed[-1]


def test_redis_outage(backend):
    """The server turns unready but stays alive; counter and poller survive; counting resumes."""
    before = {c: backend.restarts(c) for c in ("server", "counter", "poller")}
    backend.stop_tier("data")
    try:
        wait_for(lambda: readiness(backend) == 503, 30, interval=0.5, what="readiness 503")
        assert requests.get(backend.server_url + "/probe/liveness", timeout=5).status_code == 200
        response = requests.post(backend.server_url + "/", timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        time.sleep(5)  # long enough for a crash loop or a failed liveness probe to show
        assert {c: backend.restarts(c) for c in before} == before
    finally:
        backend.start_tier("data")
    wait_for(lambda: readiness(backend) == 200, 60, interval=0.5, what="readiness 200")
    wait_counting(backend)
    assert {c: backend.restarts(c) for c in before} == before


def test_server_restart_loses_and_doubles_nothing(backend):
    """Restart the server while counting: the counter's acknowledged ledger adds up exactly
    to what the count gained, so nothing acknowledged was lost and nothing counted twice."""
    backend.stop_tier("support")
    start_count = count(backend)
    seen = len(ledger(backend))
    backend.start_tier("support")
    try:
        wait_for(
            lambda: len(ledger(backend)) >= seen + 3, 60, interval=0.5, what="the counter to count"
        )
        backend.restart_tier("app")
        wait_for(lambda: readiness(backend) == 200, 60, interval=0.5, what="the server back")
        after_restart = len(ledger(backend))
        wait_for(
            lambda: len(ledger(backend)) >= after_restart + 3,
            60,
            interval=0.5,
            what="counting to resume after the restart",
        )
    finally:
        backend.stop_tier("support")  # SIGTERM: the counter finishes its request, then exits
    final_count = count(backend)
    new = ledger(backend)[seen:]
    assert len({e["idempotency_key"] for e in new}) == len(new)
    assert sum(e["increment"] for e in new) == final_count - start_count
    backend.start_tier("support")


BAD_REQUESTS = [
    ("POST", {"data": "{oops", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", {"json": {"increment": "lots"}}, 400),
    ("POST", {"json": {"increment": True}}, 400),
    ("POST", {"json": {"increment": 0.5}}, 400),
    ("POST", {"json": {"increment": 10**6}}, 400),
    ("POST", {"data": "increment=5", "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", {"json": {"increment": 1, "pad": "x" * 4096}}, 413),
    ("DELETE", {}, 401),
    ("DELETE", {"headers": {"X-API-Key": "guess"}}, 401),
]


def test_bad_input_changes_nothing(backend):
    backend.stop_tier("support")
    try:
        before = count(backend)
        for method, kwargs, status in BAD_REQUESTS:
            response = requests.request(method, backend.server_url + "/", timeout=5, **kwargs)
            assert response.status_code == status, (method, kwargs, response.text)
            assert "error" in response.json()
        assert count(backend) == before
    finally:
        backend.start_tier("support")


@pytest.mark.needs("persistence")
def test_count_survives_a_redis_restart(backend):
    wait_counting(backend)
    backend.stop_tier("support")
    try:
        before = count(backend)
        assert before > 0
        backend.restart_tier("data")
        wait_for(lambda: readiness(backend) == 200, 60, interval=0.5, what="readiness 200")
        assert count(backend) == before
    finally:
        backend.start_tier("support")
