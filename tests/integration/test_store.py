"""The store's Lua script against a real Redis: one Cluster slot, exact 64-bit counts,
overflow refused."""

import uuid

import pytest
from microservices_server.store import CLIENTS_KEY, COUNT_KEY, HISTORY_KEY, IDEMPOTENCY_PREFIX
from redis.crc import key_slot

from tests.support import wait_for

JSON = "application/json"
UA = "microservices-counter/1.0.0 (counter-pod-1)"


def test_every_key_hashes_to_the_count_slot():
    slot = key_slot(COUNT_KEY.encode())
    for _ in range(50):
        assert key_slot((IDEMPOTENCY_PREFIX + str(uuid.uuid4())).encode()) == slot


@pytest.mark.parametrize("start", [123_456_789_012_345, 2**53 + 1, 2**63 - 10])
def test_replays_return_the_exact_count(client, redis_client, start):
    redis_client.set(COUNT_KEY, start)
    headers = {"Idempotency-Key": f"big-{start}"}
    first = client.post("/", json={"increment": 3}, headers=headers)
    replay = client.post("/", json={"increment": 3}, headers=headers)
    assert first.get_json() == replay.get_json() == {"count": start + 3}
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert client.get("/").get_json() == {"count": start + 3}


@pytest.mark.parametrize("headers", [{"Idempotency-Key": "over"}, {}], ids=["key", "no-key"])
def test_overflow_is_refused_and_changes_nothing(client, redis_client, headers):
    redis_client.set(COUNT_KEY, 2**63 - 2)
    response = client.post("/", json={"increment": 5}, headers=headers)
    assert response.status_code == 409
    assert "error" in response.get_json()
    assert client.get("/").get_json() == {"count": 2**63 - 2}
    assert redis_client.get(IDEMPOTENCY_PREFIX + "over") is None
    assert client.post("/", json={"increment": 1}).get_json() == {"count": 2**63 - 1}


def test_without_a_key_the_count_is_exact_past_2_to_the_53(client, redis_client):
    redis_client.set(COUNT_KEY, 2**53 + 1)
    assert client.post("/", json={"increment": 2}).get_json() == {"count": 2**53 + 3}


@pytest.mark.parametrize("key", [HISTORY_KEY, CLIENTS_KEY])
def test_a_broken_page_key_never_fails_or_doubles_an_increment(client, redis_client, key):
    """The page's bookkeeping runs after the INCRBY, in the same script: a key of the wrong
    type there must not fail the request (the client would retry an applied increment)."""
    redis_client.set(key, "not a hash or a sorted set")
    response = client.post("/", json={"increment": 2}, headers={"User-Agent": UA})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"count": 2}
    assert client.get("/").get_json() == {"count": 2}


def test_the_status_answers_200_even_when_the_count_is_not_a_number(client, redis_client):
    redis_client.set(COUNT_KEY, "abc")
    response = client.get("/api/status")
    assert response.status_code == 200
    data = response.get_json()["tiers"]["data"]
    assert data["status"] == "up"  # Redis answers; what it holds is what is wrong
    assert "is not a number" in data["reason"]


@pytest.mark.parametrize(
    "request_args",
    [
        {"method": "POST", "json": {"increment": 2}},
        {"method": "GET", "headers": {"User-Agent": UA}},  # a read whose client is recorded
    ],
    ids=["increment", "read"],
)
def test_scripts_are_loaded_again_when_redis_forgot_them(client, redis_client, request_args):
    """A Redis restarted (or failed over, or SCRIPT FLUSHed) no longer knows the scripts the
    server runs by SHA1: the request still succeeds, once, and the script is known again."""
    redis_client.set(COUNT_KEY, 40)
    redis_client.script_flush()
    response = client.open("/", **request_args)
    assert response.status_code == 200
    expected = 42 if request_args["method"] == "POST" else 40
    assert response.get_json() == {"count": expected}
    assert int(redis_client.get(COUNT_KEY)) == expected
    # A read's client is recorded by a background thread (seen.py), within a second.
    wait_for(
        lambda: redis_client.info("memory")["number_of_cached_scripts"] >= 1,
        what="the script loaded again",
    )
