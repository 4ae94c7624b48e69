"""Every endpoint of the server, through Flask's test client, against a real Redis."""

import threading

import pytest
from microservices_server.lifecycle import DrainFlag
from microservices_server.settings import Settings
from microservices_server.store import IDEMPOTENCY_PREFIX, CounterStore

from tests.conftest import API_KEY, make_app
from tests.support import free_port

JSON = "application/json"


def count(client) -> int:
    response = client.get("/")
    assert response.status_code == 200
    return response.get_json()["count"]


def test_count_starts_at_zero(client):
    assert client.get("/").get_json() == {"count": 0}


def test_empty_post_increments_by_one(client):
    response = client.post("/")
    assert response.status_code == 200
    assert response.get_json() == {"count": 1}


def test_post_with_increment(client):
    client.post("/", json={"increment": 5})
    response = client.post("/", json={"increment": 37})
    assert response.get_json() == {"count": 42}
    assert count(client) == 42


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", JSON, 400),
        ('{"increment": "7"}', JSON, 400),
        ('{"increment": true}', JSON, 400),
        ('{"increment": 2.5}', JSON, 400),
        ('{"increment": 0}', JSON, 400),
        ('{"increment": 1001}', JSON, 400),
        ('{"increment": 3, "by": "me"}', JSON, 400),
        ('["increment", 3]', JSON, 400),
        ('{"increment": 3}', "text/plain", 415),
        ('{"increment": 3}', "application/json-patch+json", 415),
        ("x" * 5000, JSON, 413),
    ],
)
def test_rejections_change_nothing(client, data, content_type, status):
    client.post("/", json={"increment": 10})
    response = client.post("/", data=data, content_type=content_type)
    assert response.status_code == status
    assert "error" in response.get_json()
    assert count(client) == 10


def test_max_increment_is_configurable(redis_url):
    client = make_app(redis_url, max_increment=3).test_client()
    assert client.post("/", json={"increment": 4}).status_code == 400
    assert client.post("/", json={"increment": 3}).get_json() == {"count": 3}


def test_idempotent_replay_returns_the_first_answer(client, redis_client):
    headers = {"Idempotency-Key": "order-17"}
    first = client.post("/", json={"increment": 4}, headers=headers)
    client.post("/", json={"increment": 1})  # someone else counts in between
    replay = client.post("/", json={"increment": 4}, headers=headers)
    assert first.get_json() == replay.get_json() == {"count": 4}
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(client) == 5
    ttl = redis_client.ttl(IDEMPOTENCY_PREFIX + "order-17")
    assert 0 < ttl <= 24 * 3600


def test_key_reused_with_another_increment_is_refused(client):
    headers = {"Idempotency-Key": "k1"}
    client.post("/", json={"increment": 2}, headers=headers)
    response = client.post("/", json={"increment": 3}, headers=headers)
    assert response.status_code == 422
    assert count(client) == 2


def test_bad_idempotency_key_is_rejected(client):
    response = client.post("/", headers={"Idempotency-Key": "x" * 500})
    assert response.status_code == 400
    assert count(client) == 0


def test_concurrent_replays_of_one_key_count_once(app):
    barrier = threading.Barrier(16)
    answers = []

    def post():
        client = app.test_client()
        barrier.wait()
        answers.append(
            client.post("/", json={"increment": 9}, headers={"Idempotency-Key": "same"}).get_json()
        )

    threads = [threading.Thread(target=post) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [{"count": 9}] * 16
    assert count(app.test_client()) == 9


def test_reset_needs_the_api_key(client):
    client.post("/", json={"increment": 8})
    assert client.delete("/").status_code == 401
    assert client.delete("/", headers={"X-API-Key": "wrong"}).status_code == 401
    assert count(client) == 8
    response = client.delete("/", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    assert response.get_json() == {"count": 0}
    assert count(client) == 0


def test_reset_is_forbidden_without_a_configured_key(redis_url):
    client = make_app(redis_url, api_key=None).test_client()
    client.post("/")
    assert client.delete("/", headers={"X-API-Key": ""}).status_code == 403
    assert client.get("/").get_json() == {"count": 1}


def test_probes(client):
    assert client.get("/probe/liveness").status_code == 200
    response = client.get("/probe/readiness")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_unknown_route_and_method_answer_json(client):
    assert client.get("/nope").status_code == 404
    response = client.put("/")
    assert response.status_code == 405
    assert "error" in response.get_json()
    assert "POST" in response.headers["Allow"]


def test_metrics(client):
    client.post("/")
    client.post("/", data="{", content_type=JSON)
    client.get("/")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="POST",route="/",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/",status="400"} 1.0' in text
    assert 'http_request_duration_seconds_bucket{le="0.001",method="GET",route="/"}' in text
    # Redis answered everything; each operation's series is there from the start, at 0, so
    # that rate() sees the first errors (a series born at 1 shows no increase).
    for operation in ("get", "increment", "reset", "ping", "status", "wait"):
        assert f'redis_errors_total{{operation="{operation}"}} 0.0' in text


def test_invented_methods_share_one_label(client):
    """A client may send any method name; /metrics must not grow a series per name."""
    for n in range(20):
        assert client.open("/", method=f"INVENTED{n}").status_code == 405
        assert client.open("/nowhere", method=f"MADEUP{n}").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="OTHER",route="unmatched",status="405"} 20.0' in text
    assert 'http_requests_total{method="OTHER",route="unmatched",status="404"} 20.0' in text
    assert "INVENTED" not in text and "MADEUP" not in text


def test_metrics_count_redis_errors():
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert client.get("/").status_code == 503
    assert client.post("/").status_code == 503
    assert client.get("/probe/readiness").status_code == 503
    text = client.get("/metrics").get_data(as_text=True)
    for operation in ("get", "increment", "ping"):
        assert f'redis_errors_total{{operation="{operation}"}} 1.0' in text


def test_password_from_redis_password_wins(redis_url, redis_client):
    redis_client.config_set("requirepass", "s3cret")
    try:
        wrong = make_app(redis_url.replace("redis://", "redis://:nope@")).test_client()
        assert wrong.get("/").status_code == 503
        right = make_app(
            redis_url.replace("redis://", "redis://:nope@"), redis_password="s3cret"
        ).test_client()
        assert right.post("/").get_json() == {"count": 1}
    finally:
        redis_client.execute_command("AUTH", "s3cret")
        redis_client.config_set("requirepass", "")


def test_readiness_turns_503_once_shutdown_begins(redis_url):
    draining = DrainFlag()
    client = make_app(redis_url, draining=draining).test_client()
    assert client.get("/probe/readiness").status_code == 200
    draining.set()
    response = client.get("/probe/readiness")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "shutting down"
    assert client.get("/probe/liveness").status_code == 200
    assert client.post("/").status_code == 200  # in-flight work still completes


class BuggyStore(CounterStore):
    def get(self, client=None) -> int:
        return 1 // 0


def test_a_bug_answers_json_500(redis_url):
    store = BuggyStore.from_settings(Settings(redis_url=redis_url))
    response = make_app(redis_url, store=store).test_client().get("/")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}


def test_reset_is_logged_only_once_redis_did_it(caplog):
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.delete("/", headers={"X-API-Key": API_KEY})
    assert response.status_code == 503
    assert "counter reset" not in caplog.text
