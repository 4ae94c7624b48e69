"""The commands as real processes: gunicorn serving, draining on SIGTERM; the counter and the
poller counting, surviving a server outage, stopping on SIGTERM; await-redis; bad settings."""

import http.client
import json
import os
import signal
import subprocess
import time

import pytest
import requests
from microservices_server.settings import Settings
from microservices_server.store import CounterStore

from tests.conftest import redis_url_of
from tests.hostile_client import exchange, post_head
from tests.support import BIN, Server, Service, free_port, post_concurrently, wait_for


@pytest.fixture
def server(redis_url):
    server = Server(redis_url).wait_ready()
    yield server
    server.kill()


def test_concurrent_increments_sum_exactly(server):
    assert post_concurrently(server.url, 3, clients=16, each=50) == [200] * 800
    assert server.count() == 800 * 3


def test_answers_on_one_keep_alive_connection(server):
    """Head and body go out in one write when the body is whole (wire.py); every other kind of
    answer still comes out as HTTP says, on the same connection."""
    with requests.Session() as session:
        post = session.post(server.url + "/", json={"increment": 2}, timeout=5)
        head = session.head(server.url + "/", timeout=5)
        missing = session.get(server.url + "/nowhere", timeout=5)
        metrics = session.get(server.url + "/metrics", timeout=5)
        again = session.post(server.url + "/", timeout=5)
    assert post.json() == {"count": 2}
    assert post.headers["Content-Length"] == str(len(post.content))
    assert (head.status_code, head.content) == (200, b"")
    assert missing.status_code == 404 and "error" in missing.json()
    assert "http_requests_total" in metrics.text
    assert again.json() == {"count": 3}


def test_workers_import_redis_only_after_gevent_patched(server):
    """The settings check imports redis-py; done in the master, every gevent worker would
    inherit modules imported before it patched socket and ssl (and gevent says so)."""
    assert requests.post(server.url + "/", timeout=5).json() == {"count": 1}
    assert "Booting worker" in server.output
    assert "MonkeyPatchWarning" not in server.output


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        (b"zz\r\n" + b'{"increment": 5}' + b"\r\n0\r\n\r\n", "InvalidChunkSize"),
        (b"10\r\n" + b'{"increment": 5}' + b"XX0\r\n\r\n", "ChunkMissingTerminator"),
    ],
    ids=["chunk-size", "chunk-end"],
)
def test_a_malformed_chunked_body_is_a_400_and_counts_nothing(server, chunks, error):
    """gunicorn decodes a chunked body as the app reads it: broken framing is the client's
    error, answered once as JSON, and the connection is closed (the stream is unusable)."""
    # A keep-alive request: the server itself must close the connection after its answer.
    answer = exchange(server.port, post_head() + chunks).raw
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "error": f"malformed request body: {error}"
    }
    assert server.count() == 0
    assert "Traceback" not in server.output


@pytest.mark.parametrize(("size", "status"), [(1024, b"200"), (1025, b"413"), (4000, b"413")])
def test_a_chunked_body_is_held_to_the_size_limit(server, size, status):
    """A chunked body does not say its size: one over the 1 KiB limit must be refused like
    one that says it, not cut at the limit and counted because its first KiB parses."""
    body = b'{"increment": 7}' + b" " * (size - 16)
    chunks = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    answer = exchange(server.port, post_head(extra=b"Connection: close\r\n") + chunks).raw
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    assert server.count() == (7 if status == b"200" else 0)


def access_lines(server: Server) -> list[str]:
    return [line for line in server.lines if '" 200 ' in line]


def test_access_log_goes_to_stdout_without_probes_and_metrics(server):
    for path in ("/probe/liveness", "/probe/readiness", "/metrics"):
        assert requests.get(server.url + path, timeout=5).ok
    requests.post(server.url + "/", timeout=5)
    line = wait_for(lambda: access_lines(server), what="an access log line")[0]
    assert '"POST / HTTP/1.1" 200 ' in line, server.output
    assert len(access_lines(server)) == 1, "no line for the probes or /metrics"


@pytest.mark.parametrize(
    ("access_log", "logged"), [("all", ["POST /", "/probe/liveness"]), ("off", [])]
)
def test_access_log_setting(redis_url, access_log, logged):
    server = Server(redis_url, ACCESS_LOG=access_log).wait_ready()
    try:
        requests.post(server.url + "/", timeout=5)
        requests.get(server.url + "/probe/liveness", timeout=5)
    finally:
        assert server.stop() == 0
    lines = access_lines(server)
    assert [path for path in logged if not any(path in line for line in lines)] == []
    assert bool(lines) == bool(logged), server.output


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_every_access_line_is_written_before_its_worker_ends(redis_url, worker_class):
    """Access lines are written in batches (logs.StdoutHandler): a worker that ends right
    after answering (SIGQUIT: at once, no drain) writes what it held, and before its last line."""
    server = Server(
        redis_url, LOG_FORMAT="json", WEB_CONCURRENCY="1", GUNICORN_WORKER_CLASS=worker_class
    ).wait_ready()
    try:
        with requests.Session() as session:
            for _ in range(150):  # one full batch (HOLD_LINES), and a part held at the end
                assert session.post(server.url + "/", timeout=5).ok
        [worker] = [
            e["message"].split()[-1] for e in entries(server) if "Booting worker" in e["message"]
        ]
        os.kill(int(worker), signal.SIGQUIT)
        wait_for(
            lambda: any("Worker exiting" in e["message"] for e in entries(server)), what="the exit"
        )
    finally:
        assert server.stop() == 0
    logged = entries(server)
    access = [i for i, e in enumerate(logged) if e["logger"] == "gunicorn.access"]
    assert len(access) == 150, server.output
    assert all('"POST / HTTP/1.1" 200 ' in logged[i]["message"] for i in access)
    exiting = [i for i, e in enumerate(logged) if e["message"].startswith("Worker exiting")]
    assert exiting[0] > access[-1], server.output


def test_a_long_uri_is_cut_in_its_access_line(redis_url):
    """An access line must fit in one atomic write to the pipe the workers share (4 KiB),
    JSON escapes included: the URI is cut, and says how much more it had."""
    server = Server(redis_url, LOG_FORMAT="json").wait_ready()
    try:
        assert requests.get(server.url + "/?" + "b" * 4000, timeout=5).ok  # gunicorn allows it
    finally:
        assert server.stop() == 0
    [line] = [line for line in server.lines if '"logger": "gunicorn.access"' in line]
    assert len(line.encode()) < 4096
    assert f'"GET /?{"b" * 510}...(+3490) HTTP/1.1" 200 ' in json.loads(line)["message"]


def entries(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.lines if line.startswith("{")]


@pytest.fixture
def heartbeat(tmp_path):
    return str(tmp_path / "heartbeat")


def test_counter_counts_and_logs_a_ledger(server, heartbeat):
    counter = Service(
        "microservices-counter",
        {
            "API_URL": server.url,
            "INTERVAL": "0.1",
            "LOG_FORMAT": "json",
            "HEARTBEAT_FILE": heartbeat,
        },
    )
    try:
        wait_for(lambda: len(counter.events("incremented")) >= 5, what="5 increments")
    finally:
        assert counter.stop() == 0
    ledger = counter.events("incremented")
    assert sum(e["increment"] for e in ledger) == server.count()
    assert all(1 <= e["increment"] <= 10 for e in ledger)
    assert len({e["idempotency_key"] for e in ledger}) == len(ledger)
    assert (
        subprocess.run(
            [BIN / "python", "-m", "microservices_common.heartbeat", "--file", heartbeat]
        ).returncode
        == 0
    )


def test_counter_survives_the_server_going_away(redis_url):
    port = free_port()
    server = Server(redis_url, port=port).wait_ready()
    counter = Service(
        "microservices-counter",
        {
            "API_URL": server.url,
            "INTERVAL": "0.1",
            "LOG_FORMAT": "json",
            "RETRY_BASE": "0.05",
            "RETRY_CAP": "0.3",
            "REQUEST_TIMEOUT": "1",
        },
    )
    try:
        wait_for(lambda: counter.events("incremented"), what="a first increment")
        server.kill()
        wait_for(lambda: counter.events("retrying"), what="the counter retrying")
        time.sleep(0.5)
        assert counter.proc.poll() is None
        server = Server(redis_url, port=port).wait_ready()
        seen = len(counter.events("incremented"))
        wait_for(lambda: len(counter.events("incremented")) > seen + 2, what="counting to resume")
    finally:
        assert counter.stop() == 0
        server.kill()
    ledger = counter.events("incremented")
    # Every acknowledged increment is counted, none twice, across the outage.
    assert sum(e["increment"] for e in ledger) == server_count(redis_url)
    retried_keys = {e["idempotency_key"] for e in counter.events("retrying")}
    assert retried_keys & {e["idempotency_key"] for e in ledger}


def server_count(redis_url):
    """The count as Redis holds it, read with the server's own store."""
    store = CounterStore.from_settings(Settings(redis_url=redis_url))
    try:
        return store.get()
    finally:
        store.close()


def test_counter_stops_promptly_when_idle(server):
    counter = Service("microservices-counter", {"API_URL": server.url, "INTERVAL": "30"})
    wait_for(lambda: "Incremented by" in counter.output, what="a first increment")
    # SIGTERM wakes the loop at once: far inside the 30 s INTERVAL it was waiting out.
    assert counter.stop(timeout=10) == 0
    assert "stopped by SIGTERM" in counter.output


def test_poller_prints_the_count_and_survives_errors(redis_url):
    port = free_port()
    poller = Service(
        "microservices-poller",
        {"API_URL": f"http://127.0.0.1:{port}", "INTERVAL": "0.1", "REQUEST_TIMEOUT": "0.5"},
    )
    try:
        wait_for(lambda: "Could not read the counter" in poller.output, what="an error line")
        server = Server(redis_url, port=port).wait_ready()
        requests.post(server.url + "/", json={"increment": 41}, timeout=5)
        wait_for(lambda: "Current counter: 41" in poller.output, what="the count printed")
        server.kill()
    finally:
        assert poller.stop() == 0


def test_await_redis_waits_for_redis(own_redis):
    url = redis_url_of(own_redis)
    container = own_redis.get_wrapped_container()
    container.stop(timeout=1)
    waiter = Service("microservices-await-redis", {"REDIS_URL": url, "AWAIT_MAX_DELAY": "0.5"})
    wait_for(lambda: waiter.output.count("redis not ready") >= 2, what="failed attempts logged")
    assert waiter.proc.poll() is None
    container.start()
    assert waiter.wait(30) == 0
    assert "redis answered PING" in waiter.output


def test_await_redis_gives_up_after_its_timeout():
    waiter = Service(
        "microservices-await-redis",
        {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "AWAIT_TIMEOUT": "1"},
    )
    assert waiter.wait(30) == 1
    assert "gave up: redis did not answer PING within 1s (AWAIT_TIMEOUT)" in waiter.output


@pytest.mark.parametrize(
    ("password", "url_password"), [("wrong", ""), (None, ""), ("wrong", ":s3cret@")]
)
def test_await_redis_stops_at_once_when_redis_refuses_the_password(
    redis_url, redis_client, password, url_password
):
    """A refused password is permanent: exit 1 at once, saying why (REDIS_PASSWORD wins over
    the URL's, so the last case is refused too)."""
    redis_client.config_set("requirepass", "s3cret")
    try:
        env = {"REDIS_URL": redis_url.replace("redis://", "redis://" + url_password)}
        if password:
            env["REDIS_PASSWORD"] = password
        waiter = Service("microservices-await-redis", env)
        assert waiter.wait(30) == 1
    finally:
        redis_client.execute_command("AUTH", "s3cret")
        redis_client.config_set("requirepass", "")
    assert "redis refused us" in waiter.output
    assert "redis not ready" not in waiter.output, "no retry: waiting would not help"


def test_await_redis_stops_at_once_on_a_database_redis_does_not_have(redis_url):
    """Redis has 16 databases unless configured otherwise: /99999 will never work."""
    waiter = Service("microservices-await-redis", {"REDIS_URL": redis_url[:-2] + "/99999"})
    assert waiter.wait(30) == 1
    assert "DB index is out of range" in waiter.output
    assert "databases" in waiter.output  # says which setting to look at
    assert "redis not ready" not in waiter.output, "no retry: waiting would not help"


def test_two_idempotency_keys_are_a_400_and_count_nothing(server):
    """gunicorn joins repeated headers into one value, "a,b": not a key of its own."""
    for _ in range(2):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.putrequest("POST", "/")
        connection.putheader("Idempotency-Key", "key-a")
        connection.putheader("Idempotency-Key", "key-b")
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 400
        assert "one Idempotency-Key" in json.loads(answer.read())["error"]
        connection.close()
    assert server.count() == 0
