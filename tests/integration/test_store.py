"""The store's Lua script against a real Redis: one Cluster slot, exact 64-bit counts,
overflow refused."""

import uuid

import pytest
from microservices_server.store import COUNT_KEY, IDEMPOTENCY_PREFIX
from redis.crc import key_slot

JSON = "application/json"


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
