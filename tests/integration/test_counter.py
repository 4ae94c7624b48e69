"""The counter and the poller as real processes, against what a server may answer: a scripted
peer standing in for a misbehaving ingress (tests/faults.py), a real server behind a proxy
that loses answers, and a real server on a Redis short of memory.

What they must hold to: the heartbeat stays fresh through a long INTERVAL; no answer kills the
counter; an increment is retried with its own key until it is acknowledged, rejected (4xx) or
abandoned (RETRY_DEADLINE), waiting at least Retry-After (up to RETRY_CAP); the ledger is
written whatever LOG_LEVEL says and adds up to the server's count exactly; an answer is
bounded as a whole, REQUEST_TIMEOUT for all of it (SIGTERM included) and 64 KiB of it,
however a server trickles or inflates it.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
from testcontainers.community.redis import RedisContainer

from tests.conftest import redis_url_of
from tests.faults import (
    CHUNKED,
    Answer,
    DroppingProxy,
    FullBacklog,
    MiB,
    Raw,
    RawPeer,
    ScriptedPeer,
    answer,
    head,
    html,
    huge,
)
from tests.support import BIN, REDIS_IMAGE, Server, Service, free_port, wait_for

COUNTER = "microservices-counter"
POLLER = "microservices-poller"
FAST_RETRY = {"RETRY_BASE": "0.01", "RETRY_CAP": "0.05"}
ACKNOWLEDGED = answer(200, {"count": 1})
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


# What an ingress in front of a missing backend answers (nginx's page, several lines).
def nginx_page(status: int, reason: str):
    return html(
        status,
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n",
    )


NGINX_502 = nginx_page(502, "Bad Gateway")


@pytest.fixture
def run():
    """run(command, api_url, **env): the command as a real process with LOG_FORMAT=json,
    killed at the end of the test if it is still running."""
    started: list[Service] = []

    def start(command: str, api_url: str, args: list[str] | None = None, **env: str) -> Service:
        service = Service(command, {"API_URL": api_url, "LOG_FORMAT": "json", **env}, args)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


@pytest.fixture
def server(redis_url):
    server = Server(redis_url).wait_ready()
    yield server
    server.kill()


def wait_events(service: Service, event: str, count: int = 1, timeout: float = 15.0) -> None:
    """Wait for `count` log lines of `event` while the process keeps running."""

    def seen() -> bool:
        code = service.proc.poll()
        assert code is None, f"{service.proc.args[0]} exited with {code}:\n{service.output}"
        return len(service.events(event)) >= count

    wait_for(seen, timeout, what=f"{count} {event!r} line(s)")


def one_line_per_event(service: Service) -> bool:
    """LOG_FORMAT=text: every line of the output starts with its timestamp."""
    return all(TEXT_LINE.match(line) for line in service.lines)


def heartbeat_check(path, max_age: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "python", "-m", "microservices_common.heartbeat"]
        + ["--file", str(path), "--max-age", str(max_age)],
        capture_output=True,
        text=True,
    )


# 1. Liveness


def test_a_long_interval_keeps_the_heartbeat_fresh(run, tmp_path):
    heartbeat = tmp_path / "heartbeat"
    poller = run(
        POLLER,
        f"http://127.0.0.1:{free_port()}",  # nothing listens: the tick fails at once
        INTERVAL="12",
        HEARTBEAT_FILE=str(heartbeat),
    )
    wait_events(poller, "poll_failed")
    time.sleep(6)  # well past --max-age, well before the next tick
    assert len(poller.events("poll_failed")) == 1, "a second tick: the test proves nothing"
    # The loop beats every second while it waits: 4 s leaves a wide margin on a busy machine.
    check = heartbeat_check(heartbeat, max_age=4)
    assert check.returncode == 0, check.stderr


def test_a_long_retry_wait_keeps_the_heartbeat_fresh(run, tmp_path):
    """The same inside a tick: a retry waiting out Retry-After (up to RETRY_CAP, which may be
    far above the probe's --max-age) is alive, not hung."""
    heartbeat = tmp_path / "heartbeat"
    later = answer(503, {"error": "later"}, Retry_After="12")
    with ScriptedPeer([later], then=ACKNOWLEDGED) as peer:
        counter = run(
            COUNTER, peer.url, INTERVAL="60", RETRY_CAP="12", HEARTBEAT_FILE=str(heartbeat)
        )
        wait_events(counter, "retrying")
        time.sleep(6)  # well past --max-age, well before the retry
        assert len(peer.requests) == 1, "the retry came early: the test proves nothing"
        check = heartbeat_check(heartbeat, max_age=4)
    assert check.returncode == 0, check.stderr


# 2. No answer kills the counter; an unclear one is retried with the same key


def test_the_counter_survives_any_answer_and_retries_the_same_key(run):
    script = [
        html(200, "<html><body><h1>Welcome to nginx!</h1></body></html>"),
        answer(200, {"total": 5}),
        answer(200, []),
        answer(200, {"count": True}),
        answer(200, {"count": 7}),
    ]
    with ScriptedPeer(script) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="60", **FAST_RETRY)
        wait_events(counter, "incremented")
        assert counter.proc.poll() is None
        keys = peer.keys()
    assert len(keys) == 5
    assert keys[0] and set(keys) == {keys[0]}
    [entry] = counter.events("incremented")
    assert entry["count"] == 7
    assert entry["idempotency_key"] == keys[0]
    assert entry["attempts"] == 5
    assert [e["attempt"] for e in counter.events("retrying")] == [1, 2, 3, 4]


# 3. A 4xx is a rejection; 408, 425, 429 and 5xx are retried


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_a_4xx_is_rejected_and_the_next_tick_uses_a_fresh_key(run, status):
    with ScriptedPeer([answer(status, {"error": "no"})], then=ACKNOWLEDGED) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="0.1", **FAST_RETRY)
        wait_events(counter, "incremented", 2)
        keys = peer.keys()
    [rejected] = counter.events("rejected")
    assert rejected["idempotency_key"] == keys[0]
    assert keys[0] not in keys[1:], "a rejected key was sent again"
    assert counter.events("retrying") == []
    assert keys[0] not in {e["idempotency_key"] for e in counter.events("incremented")}


def test_a_rejection_with_an_html_page_is_one_log_line(run):
    with ScriptedPeer([nginx_page(404, "Not Found")], then=ACKNOWLEDGED) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="0.1", LOG_FORMAT="text")
        wait_for(lambda: "Incremented by" in counter.output, what="an increment")
        assert counter.stop() == 0
        keys = peer.keys()
    assert keys[0] not in keys[1:]
    assert "server rejected increment" in counter.output
    assert one_line_per_event(counter), counter.output


@pytest.mark.parametrize("status", [408, 425, 429, 500, 501, 502, 503, 504, 507])
def test_a_transient_status_is_retried_with_the_same_key(run, status):
    with ScriptedPeer([answer(status, {"error": "later"})] * 2, then=ACKNOWLEDGED) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="60", **FAST_RETRY)
        wait_events(counter, "incremented")
        keys = peer.keys()
    assert len(keys) == 3
    assert set(keys) == {keys[0]}
    assert counter.events("rejected") == []
    assert [e["attempt"] for e in counter.events("retrying")] == [1, 2]
    [entry] = counter.events("incremented")
    assert (entry["idempotency_key"], entry["attempts"]) == (keys[0], 3)


def test_a_multi_line_html_error_page_is_retried_with_the_same_key(run):
    with ScriptedPeer([NGINX_502], then=ACKNOWLEDGED) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="60", **FAST_RETRY)
        wait_events(counter, "incremented")
        keys = peer.keys()
    assert len(keys) == 2
    assert set(keys) == {keys[0]}


# 4. Retry-After


@pytest.mark.parametrize(
    ("status", "retry_after", "cap", "waited"),
    [
        (429, "2", "5", 2.0),
        (503, "2", "5", 2.0),
        # An hour: the retry arrives at all (within wait_events' timeout) only if RETRY_CAP
        # caps the wait; and it waits the cap, not the backoff's 0.01 s.
        (503, "3600", "1", 1.0),
    ],
    ids=["429", "503", "503-capped"],
)
def test_retry_after_is_waited_for_up_to_retry_cap(run, status, retry_after, cap, waited):
    later = answer(status, {"error": "later"}, Retry_After=retry_after)
    with ScriptedPeer([later], then=ACKNOWLEDGED) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="60", RETRY_BASE="0.01", RETRY_CAP=cap)
        wait_events(counter, "incremented")
        first, retry = peer.requests
    assert retry.idempotency_key == first.idempotency_key
    assert retry.at - first.at >= waited


# 5. RETRY_DEADLINE


def test_an_increment_never_answered_is_abandoned_at_the_deadline(run):
    with ScriptedPeer([], then=answer(503, {"error": "down"})) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="0.1", RETRY_DEADLINE="1", **FAST_RETRY)
        wait_events(counter, "abandoned")
        first_key = peer.keys()[0]
        wait_for(lambda: set(peer.keys()) - {first_key}, what="a request with a fresh key")
        assert counter.proc.poll() is None
        keys = peer.keys()
    abandoned = counter.events("abandoned")[0]
    assert abandoned["idempotency_key"] == first_key
    assert "RETRY_DEADLINE" in abandoned["reason"]
    assert abandoned["logger"] == "counter.ledger"
    fresh = next(i for i, key in enumerate(keys) if key != first_key)
    assert first_key not in keys[fresh:], "the abandoned key was sent again"
    assert keys.count(first_key) > 1, "the key was not retried before the deadline"


# 6. The ledger and LOG_LEVEL


@pytest.mark.parametrize("level", ["warning", "error"])
def test_the_ledger_is_written_whatever_log_level_says(run, server, level):
    counter = run(COUNTER, server.url, INTERVAL="0.05", LOG_LEVEL=level)
    wait_events(counter, "incremented", 5)
    assert counter.stop() == 0
    ledger = counter.events("incremented")
    assert sum(e["increment"] for e in ledger) == server.count()
    # LOG_LEVEL still holds for the rest: the info lines "started" and "stopped" are not written.
    assert counter.events("started") == counter.events("stopped") == []


# 7. Answers lost after the server applied them: replayed, never counted twice


def test_a_lost_answer_is_replayed_and_the_ledger_adds_up(run, server):
    with DroppingProxy(server.port, drop=lambda n: n % 3 == 2) as proxy:
        counter = run(COUNTER, proxy.url, INTERVAL="0.05", **FAST_RETRY)
        wait_for(
            lambda: sum(e.replayed for e in proxy.snapshot()) >= 3,
            timeout=30,
            what=f"3 replays\n{counter.output}",
        )
        proxy.drop = lambda n: False
        # Two more acknowledgements: whatever was dropped before is settled.
        wait_events(counter, "incremented", len(counter.events("incremented")) + 2)
        assert counter.stop() == 0
        exchanges = proxy.snapshot()
    ledger = counter.events("incremented")
    assert sum(e["increment"] for e in ledger) == server.count()
    assert counter.events("abandoned") == []
    assert all(e.status == 200 for e in exchanges)
    dropped = {e.idempotency_key for e in exchanges if e.dropped}
    replayed = {e.idempotency_key for e in exchanges if e.replayed}
    assert replayed, "no replay observed"
    assert replayed <= dropped, "a key replayed whose answer was not lost"
    assert dropped <= {e["idempotency_key"] for e in ledger}, "a lost answer never acknowledged"


# 8. Load mode on a Redis short of memory

MAXMEMORY = 2 * 1024 * 1024
MEMORY_SLACK = 256 * 1024  # one command's allocations, our own client's buffers


@pytest.fixture
def small_redis():
    command = (
        f"valkey-server --maxmemory {MAXMEMORY} --maxmemory-policy volatile-ttl"
        " --save '' --appendonly no"
    )
    with RedisContainer(REDIS_IMAGE).with_command(command) as container:
        yield container


def test_load_mode_soak_on_a_redis_that_must_evict(run, small_redis):
    url = redis_url_of(small_redis)
    client = redis.Redis.from_url(url)
    assert client.config_get("maxmemory") == {"maxmemory": str(MAXMEMORY)}
    # Generous timeouts: this is about memory, and a busy CI machine must not turn a slow
    # answer into a failed request.
    server = Server(url, REDIS_TIMEOUT="5").wait_ready()
    used: list[int] = []
    done = threading.Event()

    def sample() -> None:
        with redis.Redis.from_url(url) as sampler:
            while not done.wait(0.05):
                used.append(sampler.info("memory")["used_memory"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        counter = run(
            COUNTER,
            server.url,
            ["--rate", "0", "--concurrency", "4", "--duration", "20"],
            REQUEST_TIMEOUT="10",
        )
        assert counter.wait(90) == 0, counter.output
        count = server.count()
    finally:
        done.set()
        sampler.join(5)
        server.kill()
    [summary] = counter.events("load_summary")
    stats = client.info("stats")
    keys = client.dbsize()
    client.close()
    print(
        f"soak: {summary['ok']} ok, {summary['failed']} failed, {summary['rps']} req/s; "
        f"evicted_keys {stats['evicted_keys']}, keys left {keys}; used_memory max {max(used)}"
        f" of maxmemory {MAXMEMORY} ({len(used)} samples)"
    )
    assert summary["failed"] == 0
    assert summary["ok"] > 0
    assert count == summary["ok"]
    assert stats["evicted_keys"] > 0
    assert max(used) <= MAXMEMORY + MEMORY_SLACK


# 9. The poller on a malformed answer


@pytest.mark.parametrize(
    "malformed",
    [answer(200, {"total": 5}), answer(200, {"count": True}), answer(200, []), NGINX_502],
    ids=["total", "count-true", "list", "nginx-502-page"],
)
def test_the_poller_prints_one_line_on_a_malformed_answer_and_goes_on(run, malformed):
    with ScriptedPeer([malformed], then=answer(200, {"count": 3})) as peer:
        poller = run(POLLER, peer.url, INTERVAL="0.1", LOG_FORMAT="text")
        wait_for(lambda: "Current counter: 3" in poller.output, what="the count printed")
        assert poller.stop() == 0
    # The "polling ..." line, one line for the malformed answer, then the count.
    assert one_line_per_event(poller), poller.output
    assert "Could not read the counter" in poller.lines[1]
    assert "Current counter: 3" in poller.lines[2]


# Answers that once made the workers raise (found by an independent review).
HOSTILE = [
    Answer(200, b"[" * 100_000, {"Content-Type": "application/json"}),  # RecursionError
    answer(503, {"error": "later"}, Retry_After="\u00b2"),  # "²".isdigit() is true
    answer(503, {"error": "later"}, Retry_After="Mon, 01 Jan 2024 00:00:00 +99999999999999999999"),
    answer(302, None, Location="https://elsewhere/"),  # never reached the server: rejected
]


def test_hostile_answers_never_stop_the_counter(run):
    with ScriptedPeer(HOSTILE[:3] + [answer(200, {"count": 9})] + HOSTILE[3:]) as peer:
        counter = run(COUNTER, peer.url, INTERVAL="0.2", **FAST_RETRY)
        wait_events(counter, "rejected")
        assert counter.proc.poll() is None, counter.output
        keys = peer.keys()
    assert len(set(keys[:4])) == 1, "the unknown outcomes retried the same key"
    assert counter.events("incremented")[0]["count"] == 9
    assert counter.events("rejected")[0]["idempotency_key"] == keys[4]
    assert "Traceback" not in counter.output


def test_hostile_answers_never_stop_the_poller(run):
    with ScriptedPeer(HOSTILE[:1], then=answer(200, {"count": 3})) as peer:
        poller = run(POLLER, peer.url, INTERVAL="0.1")
        wait_events(poller, "count")
        assert poller.proc.poll() is None
    assert poller.events("poll_failed"), "the hostile answer was reported"
    assert "Traceback" not in poller.output


# 10. An answer bounded as a whole: REQUEST_TIMEOUT for all of it, at most 64 KiB of it

FAILED = {COUNTER: "retrying", POLLER: "poll_failed"}  # the line after an answer that never came
DONE = {COUNTER: "incremented", POLLER: "count"}
TIMEOUT = 1.0
EVERY = 0.4  # a byte (or a chunk) every 0.4 s: a timeout per read of 1 s never fires
OK_HEAD = "HTTP/1.1 200 OK"

# Trickled after the request is read: a byte (or a chunk) every EVERY seconds, for ever.
TRICKLES = {
    "status-line": Raw(b"HTTP/1.1 200 ", b"O", every=EVERY),
    "headers": Raw(b"HTTP/1.1 200 OK\r\nX-Pad: ", b"a", every=EVERY),
    "body": Raw(head(OK_HEAD, "Content-Length: 100000", body=b'{"count": 1}'), b" ", every=EVERY),
    "chunk-size-line": Raw(head(OK_HEAD, CHUNKED, body=b"1;ext="), b"x", every=EVERY),
    "between-chunks": Raw(head(OK_HEAD, CHUNKED), b"1\r\n \r\n", every=EVERY),
}
STAGES = ["connect", "tls-handshake", *TRICKLES]


def stalling_at(stage: str):
    """A peer that stalls at `stage`: a context manager with the .url to point API_URL at."""
    if stage == "connect":
        return FullBacklog()
    if stage == "tls-handshake":  # a record header promising 16 KiB of handshake, then a trickle
        return RawPeer(Raw(b"\x16\x03\x03\x40\x00", b"\x00", every=EVERY), scheme="https")
    return ScriptedPeer([], then=TRICKLES[stage])


# Answers too big in every other way, sent as fast as the client reads, until it hangs up.
ENDLESS = {
    "status-line": Raw(b"HTTP/1.1 200 ", b"O" * 4096),
    "header-line": Raw(b"HTTP/1.1 200 OK\r\nX-Pad: ", b"a" * 4096),
    "many-headers": Raw(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n" * 512),
    "100-continue": Raw(b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 512),
    "chunk-extension": Raw(head(OK_HEAD, CHUNKED, body=b"1;"), b"e=x;" * 1024),
    "many-chunks": Raw(head(OK_HEAD, CHUNKED), b"1\r\n \r\n" * 1024),
    "huge-chunk-size": Raw(head(OK_HEAD, CHUNKED, body=b"fffffffffffffff\r\n"), b" " * MiB),
    "trailers": Raw(head(OK_HEAD, CHUNKED, body=b"0\r\n"), b"X-T: y\r\n" * 512),
}
BODIES = ["content-length", "chunked", "until-close", "gzip"]  # 400 MiB each: huge()
MEMORY_BOUND = 60 * MiB  # the process itself is about 25 MiB


def seconds_between(service: Service, first: str, then: str) -> float:
    """From the first `first` log line to the first `then` line, by the lines' own times."""
    at = [datetime.fromisoformat(service.events(event)[0]["time"]) for event in (first, then)]
    return (at[1] - at[0]).total_seconds()


def peak_memory(service: Service) -> int:
    """The process' peak resident memory so far (VmHWM), in bytes."""
    status = (Path("/proc") / str(service.proc.pid) / "status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)[1]) * 1024


@pytest.mark.parametrize("command", [COUNTER, POLLER])
@pytest.mark.parametrize("stage", STAGES)
def test_an_answer_stalled_anywhere_is_cut_at_request_timeout(run, command, stage):
    """The issue's case is "headers": before, the watchdog started after them, and requests'
    own timeout bounds each read, not the answer, so nothing was logged for 39 s."""
    with stalling_at(stage) as peer:
        worker = run(command, peer.url, INTERVAL="60", REQUEST_TIMEOUT=str(TIMEOUT), **FAST_RETRY)
        wait_events(worker, FAILED[command], timeout=TIMEOUT + 10)
    assert seconds_between(worker, "started", FAILED[command]) <= TIMEOUT + 0.5


@pytest.mark.parametrize("command", [COUNTER, POLLER])
def test_sigterm_during_a_trickled_answer_ends_the_process_within_request_timeout(run, command):
    timeout = 2.0
    with ScriptedPeer([], then=TRICKLES["headers"]) as peer:
        worker = run(command, peer.url, INTERVAL="60", REQUEST_TIMEOUT=str(timeout))
        wait_for(lambda: peer.requests, what="the request")
        time.sleep(0.5)  # well into the answer
        signalled = time.monotonic()
        assert worker.stop(timeout=timeout + 10) == 0, worker.output
        assert time.monotonic() - signalled <= timeout + 1
        keys = peer.keys()
    if command == COUNTER:  # its ledger line written, and no retry started
        [abandoned] = worker.events("abandoned")
        assert (abandoned["reason"], abandoned["idempotency_key"]) == ("stopping", keys[0])
        assert len(keys) == 1
        assert worker.events("retrying") == worker.events("incremented") == []


def assert_refused_without_the_memory(run, command: str, raw: Raw) -> Service:
    with ScriptedPeer([raw], then=answer(200, {"count": 3})) as peer:
        worker = run(
            command, peer.url, INTERVAL="60" if command == COUNTER else "0.1", **FAST_RETRY
        )
        wait_events(worker, DONE[command], timeout=30)
        peak = peak_memory(worker)
        keys = peer.keys()
    assert peak < MEMORY_BOUND, f"peak resident memory {peak / MiB:.0f} MiB"
    assert worker.events(DONE[command])[0]["count"] == 3, "the answer was taken"
    if command == COUNTER:  # an unknown outcome: the same key again
        assert len(keys) == 2 and keys[0] == keys[1]
    return worker


@pytest.mark.parametrize("command", [COUNTER, POLLER])
def test_interim_answers_are_skipped_for_the_final_one(run, command):
    """103 Early Hints (and 102) come before the real answer: the count is the 200's, and the
    counter's increment is acknowledged once, not retried until abandoned."""
    early = head("HTTP/1.1 103 Early Hints", "Link: </style.css>; rel=preload")
    final = head(OK_HEAD, "Content-Type: application/json", "Content-Length: 12")
    raw = Raw(early + head("HTTP/1.1 102 Processing") + final + b'{"count": 9}')
    with ScriptedPeer([raw], then=answer(200, {"count": 10})) as peer:
        worker = run(command, peer.url, INTERVAL="60" if command == COUNTER else "0.1")
        wait_events(worker, DONE[command], timeout=30)
        keys = peer.keys()
    assert worker.events(DONE[command])[0]["count"] == 9
    if command == COUNTER:
        assert len(keys) == 1 and worker.events("retrying") == []


@pytest.mark.parametrize("command", [COUNTER, POLLER])
@pytest.mark.parametrize("encoding", BODIES)
def test_a_400_mib_answer_is_refused_without_the_memory(run, command, encoding):
    worker = assert_refused_without_the_memory(run, command, huge(encoding))
    assert "AnswerTooLarge" in worker.output


@pytest.mark.parametrize("shape", ENDLESS)
def test_an_endless_answer_of_any_shape_is_refused_and_retried(run, shape):
    assert_refused_without_the_memory(run, COUNTER, ENDLESS[shape])


def test_the_connection_is_kept_alive_and_a_server_closing_it_costs_no_poll(run):
    with ScriptedPeer([], then=answer(200, {"count": 3}), keep_alive=0.3) as peer:
        fast = run(POLLER, peer.url, INTERVAL="0.05")
        wait_events(fast, "count", 5)
        slow = run(POLLER, peer.url, INTERVAL="0.5")  # the server closes between two polls
        wait_events(slow, "count", 3)
        ports = {r.client_port for r in peer.requests}
    assert len(ports) <= 1 + 3 + 1, "the fast poller kept its connection, the slow one did not"
    assert fast.events("poll_failed") == slow.events("poll_failed") == []
