"""What the live page says, in words a newcomer reads right: the rate is what was counted per
second; a counter that keeps trying and failing is "retrying", not "stale"; the server names
what it runs in (a pod, a container, a host). What the browser shows of it: tests/browser."""

from __future__ import annotations

import time

from microservices_common.identity import Client, runs_in
from microservices_server.page import support_tier
from microservices_server.store import Snapshot

from tests.conftest import make_app
from tests.support import free_port

COUNTER = {"User-Agent": "microservices-counter/1.0.0 (counter-7c9f-x2kq)"}


def test_the_rate_is_what_was_counted_per_second(client):
    html = client.get("/", headers={"Accept": "text/html"}).text
    assert "counted per second over the last 10 s" in html
    assert "increments per second" not in html.lower()


def test_a_counter_asking_while_redis_is_down_is_retrying():
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    quiet = client.get("/api/status").get_json()["tiers"]
    assert quiet["counter"]["status"] == "stale"  # nobody asked: unknown
    assert client.post("/", json={"increment": 1}, headers=COUNTER).status_code == 503
    tiers = client.get("/api/status").get_json()["tiers"]
    assert tiers["counter"]["status"] == "retrying"
    [pod] = tiers["counter"]["pods"]
    assert (pod["host"], pod["status"]) == ("counter-7c9f-x2kq", "retrying")
    assert 0 <= pod["tried"] < 5
    assert tiers["poller"]["status"] == "stale"  # the poller did not ask


def snapshot(clients: list[tuple[str, float]], now: float) -> Snapshot:
    return Snapshot(
        count=1,
        count_error="",
        now=now,
        clients=clients,
        history={},
        server_version="Valkey 9.1.2",
        server_uptime=1,
        replication={},
    )


def test_a_recorded_counter_silent_in_redis_but_asking_is_retrying():
    member = Client.from_user_agent(COUNTER["User-Agent"]).member
    now = time.time()
    silent = snapshot([(member, now - 60)], now)
    assert support_tier(silent, "counter", 10, 3600)["status"] == "stale"
    tier = support_tier(silent, "counter", 10, 3600, {member: now - 1})
    assert tier["status"] == "retrying"
    [pod] = tier["pods"]
    assert pod["age"] == 60 and pod["tried"] >= 1
    recent = snapshot([(member, now - 2)], now)
    assert support_tier(recent, "counter", 10, 3600, {member: now - 1})["status"] == "up"


def test_the_page_names_what_the_server_runs_in(client, monkeypatch):
    assert client.get("/api/status").get_json()["tiers"]["app"]["runs_in"] == runs_in()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert runs_in() == "pod"
    html = client.get("/", headers={"Accept": "text/html"}).text
    assert "<dt>pod</dt>" in html
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert runs_in() in ("container", "host")
    assert f"<dt>{runs_in()}</dt>" in client.get("/", headers={"Accept": "text/html"}).text
