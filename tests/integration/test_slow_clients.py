"""The server against clients that misbehave at the socket (tests/hostile_client.py), as real
gunicorn processes with a real Redis, gevent and gthread workers alike: a body trickled a byte
at a time is cut at BODY_TIMEOUT with a 408, hundreds of them leave liveness answering, a body
left unread never holds a connection, gunicorn's own errors are JSON with the usual headers,
every head shaped to smuggle a request is refused (nothing behind it runs), and a refused body
of megabytes still lets the client read its 413."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from contextlib import contextmanager

import pytest
import requests
from microservices_server.page import SECURITY_HEADERS

from tests.conftest import redis_url_of
from tests.hostile_client import (
    Pipelining,
    SlowBodies,
    connect,
    exchange,
    head_lines,
    open_files_allowed,
    percentile,
    post_head,
    probe_latencies,
    send_then_read,
    trickle,
    trickled_request,
)
from tests.support import Server, server_on_pypy, wait_for

pytestmark = pytest.mark.timeout(120)

WORKERS = ["gevent", "gthread"]
BODY_TIMEOUT = 1.0  # the servers' setting here (default 5 s), to keep the tests short
LINGER = 2.0  # at most this long a closing connection reads what the client still sends
HEAD_TIMEOUT = 5.0  # gunicorn's keep-alive timeout, which bounds a request head
MARGIN = 1.0  # for a loaded machine
# A liveness GET that keeps its connection open for the next one.
LIVENESS_KEPT_ALIVE = b"GET /probe/liveness HTTP/1.1\r\nHost: x\r\n\r\n"


@contextmanager
def serving(redis_url: str, worker: str, **env: str):
    env.setdefault("WEB_CONCURRENCY", "2")  # not the CPUs' count: the workers are counted
    server = Server(redis_url, GUNICORN_WORKER_CLASS=worker, ACCESS_LOG="off", **env)
    try:
        yield server.wait_ready()
        assert_no_worker_died(server, int(env["WEB_CONCURRENCY"]))
    finally:
        server.kill()


# How gunicorn's master says a worker ended: killed by a signal (PyPy aborts a worker whose
# heap passes PYPY_GC_MAX), or exited (a MemoryError exits 255).
WORKER_DEATHS = ("was sent SIG", "too much memory", "exited with code")


def assert_no_worker_died(server: Server, workers: int) -> None:
    """Slowness must never hide a crash: gunicorn boots a new worker for one that died, so any
    "Booting worker" line past the first `workers` is a death, whatever its log said."""
    time.sleep(0.25)  # the master logs a death some milliseconds after it (5 ms measured)
    booted = [line for line in server.lines if "Booting worker" in line]
    died = [line for line in server.lines if any(death in line for death in WORKER_DEATHS)]
    assert len(booted) == workers and not died, server.output


@pytest.fixture(scope="module", params=WORKERS)
def server(request, redis_container):
    """One server per worker class for the module (counts are compared before and after)."""
    with serving(redis_url_of(redis_container), request.param, BODY_TIMEOUT=str(BODY_TIMEOUT)) as s:
        yield s


def assert_json_error(answer, status: int) -> None:
    """An error answered as every other: JSON {"error": ...}, the security headers, and the
    connection closed after it."""
    assert answer.status == status, answer.raw[:300]
    assert answer.headers["content-type"] == "application/json", answer.headers
    assert isinstance(answer.json()["error"], str) and answer.json()["error"]
    for name, value in SECURITY_HEADERS:
        assert answer.headers.get(name.lower()) == value, (name, answer.headers)
    assert answer.headers["connection"] == "close"
    assert answer.closed, answer


@pytest.mark.parametrize("length", [1000, None], ids=["content-length", "chunked"])
def test_a_trickled_body_is_cut_at_the_deadline_with_a_408(server, length):
    before = server.count()
    trickled = trickled_request(
        server.port, post_head(length), trickle(length), every=0.2, timeout=BODY_TIMEOUT + 8
    )
    assert_json_error(trickled.answer, 408)
    assert "BODY_TIMEOUT" in trickled.answer.json()["error"]
    assert BODY_TIMEOUT - 0.1 <= trickled.answered <= BODY_TIMEOUT + MARGIN, trickled
    assert trickled.finished <= BODY_TIMEOUT + MARGIN, trickled
    # The server reads what still arrives for a while (the lingering close), then lets go.
    assert trickled.gone <= BODY_TIMEOUT + LINGER + MARGIN, trickled
    assert server.count() == before


@pytest.mark.parametrize(
    ("method", "status"),
    [("GET", 200), ("PUT", 405), ("DELETE", 401)],
    ids=["get", "method-not-allowed", "no-api-key"],
)
def test_an_answer_before_the_body_closes_the_connection(server, method, status):
    """Answered without reading its body, a request must not hold its connection while the
    body trickles in: the answer says close, the server closes, and it lets go in time."""
    trickled = trickled_request(
        server.port, post_head(1000, method=method), trickle(1000), every=0.2, timeout=15
    )
    answer = trickled.answer
    assert answer.status == status, answer.raw[:300]
    assert answer.headers["connection"] == "close"
    assert trickled.answered < MARGIN and trickled.finished < MARGIN, trickled
    assert trickled.gone <= LINGER + MARGIN, trickled


def test_a_trickled_head_is_closed_at_the_keep_alive_timeout(server):
    """gevent's worker bounds a request head by its keep-alive timeout; under gthread a head
    sent a line a second held a thread for ever, now it is bounded the same way."""
    trickled = trickled_request(server.port, b"GET / HTTP/1.1\r\n", head_lines(), 0.2, 15)
    assert trickled.answer.status is None, trickled.answer.raw[:300]
    assert trickled.finished <= HEAD_TIMEOUT + MARGIN, trickled


def test_keep_alive_still_carries_a_post_then_a_get(server):
    with requests.Session() as session:
        before = session.get(server.url + "/", timeout=5).json()["count"]
        post = session.post(server.url + "/", json={"increment": 3}, timeout=5)
        get = session.get(server.url + "/", timeout=5)
    assert post.headers["Connection"] == "keep-alive"
    assert post.json() == {"count": before + 3}
    assert get.json() == {"count": before + 3}
    # And on one raw connection: the POST's answer, then the GET's, the connection still open.
    body = b'{"increment": 2}'
    answer = exchange(
        server.port,
        post_head(len(body)) + body + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    first, second = answer.raw.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and b"Connection: keep-alive" in first
    assert second.startswith(b"200 ") and b'{"count":%d}' % (before + 5) in second


def test_clients_that_never_close_leave_liveness_answering(server):
    """Answers with `Connection: close` to clients that neither read nor close: gthread's own
    close waits up to 2 s for each in its main loop (10 of them held liveness for 20 s)."""
    clients = [connect(server.port) for _ in range(10)]
    try:
        for sock in clients:
            sock.sendall(b"GET /probe/liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        latencies = liveness_under(server, 3)
    finally:
        for sock in clients:
            sock.close()
    assert max(latencies) < 1.0, latencies


def many_headers(count: int) -> bytes:
    return b"".join(b"X-Header-%d: v\r\n" % n for n in range(count))


GET_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n"
# Heads whose framing two parsers (a proxy in front, then gunicorn) could read two ways, the
# ways of smuggling a request (RFC 9112: 2.2 bare LF and CR, 3 the request line, 5.2 folding,
# 5.5 control characters, 6.1 Transfer-Encoding, 6.3 Content-Length): each one refused.
# These are the answers of gunicorn's Python parser, the one the server runs. Its optional C
# parser (gunicorn_h1c 0.6.10, measured and left out) answers two of these tests otherwise,
# and worse: it takes "two-spaces-in-request-line" (RFC 9112, 3 allows that leniency but
# warns it can smuggle requests past a stricter proxy), and answers an unknown transfer
# coding 400 where RFC 9112, 6.1 asks for 501.
SMUGGLING_SHAPES = {
    "te-and-cl": post_head(2, extra=b"Transfer-Encoding: chunked\r\n"),
    "two-content-lengths": post_head(2, extra=b"Content-Length: 2\r\n"),
    "content-length-list": post_head(None).replace(
        b"Transfer-Encoding: chunked", b"Content-Length: 2, 2"
    ),
    "chunked-twice": post_head(None, extra=b"Transfer-Encoding: chunked\r\n"),
    "chunked-not-last": post_head(None, extra=b"Transfer-Encoding: gzip\r\n"),
    "chunked-in-http-1.0": post_head(None).replace(b"HTTP/1.1", b"HTTP/1.0"),
    "space-before-colon": post_head(None).replace(b"Encoding:", b"Encoding :"),
    "bare-lf-request-line": b"POST / HTTP/1.1\nHost: x\r\nContent-Length: 2\r\n\r\n",
    "bare-lf-in-head": b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n",
    "bare-cr-in-head": b"POST / HTTP/1.1\r\nHost: x\rContent-Length: 2\r\n\r\n",
    "folded-header": b"POST / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 2\r\n\r\n",
    "two-spaces-in-request-line": b"POST  / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
}


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        *[(head + b"0\r\n\r\n", 400) for head in SMUGGLING_SHAPES.values()],
        (GET_HEAD + b"X-Bad: a\x01b\r\n\r\n", 400),
        (GET_HEAD + b"X-Bad: a\x00b\r\n\r\n", 400),
        (GET_HEAD + b"X-Bad: a\x7fb\r\n\r\n", 400),
        # RFC 9112, 6.1: a transfer coding the server does not know is a 501.
        (post_head(None).replace(b": chunked", b": xchunked") + b"0\r\n\r\n", 501),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (GET_HEAD + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (GET_HEAD + many_headers(120) + b"\r\n", 431),
        (post_head(None) + b"zz\r\n{}\r\n0\r\n\r\n", 400),
    ],
    ids=[
        *SMUGGLING_SHAPES,
        "control-char-in-header",
        "nul-in-header",
        "del-in-header",
        "unknown-transfer-coding",
        "request-line-9000",
        "header-line-9000",
        "120-headers",
        "bad-chunk",
    ],
)
def test_gunicorns_own_errors_answer_json_with_the_usual_headers(server, request_bytes, status):
    answer = exchange(server.port, request_bytes)
    assert_json_error(answer, status)
    assert not answer.reset, "closed with part of the request unread: a reset"


@pytest.mark.parametrize("head", SMUGGLING_SHAPES.values(), ids=SMUGGLING_SHAPES)
def test_a_request_smuggled_behind_a_refused_head_never_runs(server, head):
    """The refused head's body, read one way, is a whole increment of 5: neither it nor the
    POST after it counts, and the one answer is the refusal."""
    body = b'{"increment": 5}'
    smuggled = post_head(len(body)) + body
    before = server.count()
    answer = exchange(server.port, head + b"10\r\n" + body + b"\r\n0\r\n\r\n" + smuggled)
    assert_json_error(answer, 400)
    # Nothing after the first answer's body (its Content-Length): no second answer.
    assert answer.raw.partition(b"\r\n\r\n")[2] == answer.body, "more than one answer"
    assert server.count() == before


@pytest.mark.parametrize("size", [2_000_000, 20_000_000], ids=["2MB", "20MB"])
def test_a_body_of_megabytes_always_gets_a_readable_413(server, size):
    """The client sends the whole body, then reads (as requests does): the server must read
    it away before it closes, or the reset takes the answer with it."""
    body = b'{"increment": 1' + b" " * (size - 16) + b"}"
    outcomes = [
        send_then_read(
            server.port, post_head(size, extra=b"Connection: close\r\n" if n % 2 else b""), body
        )
        for n in range(20)
    ]
    assert outcomes == ["413"] * 20


def liveness_under(server: Server, seconds: float) -> list[float]:
    return probe_latencies(server.url + "/probe/liveness", seconds, every=0.1, timeout=8)


def slow_body_count(wanted: int) -> int:
    """`wanted`, or fewer if this process may not open that many sockets (and its server)."""
    return min(wanted, (open_files_allowed() - 200) // 2)


@pytest.mark.parametrize(
    ("worker", "slow", "env"),
    [
        # gevent: up to its connection limit (1,000 a worker): a greenlet each.
        ("gevent", 900, {}),
        # gthread: a request whose body is read holds one of the worker's threads (8): one
        # thread left is enough for liveness, none is not (the next test).
        ("gthread", 7, {}),
    ],
)
def test_slow_bodies_up_to_the_limit_leave_liveness_answering(redis_url, worker, slow, env):
    slow = slow_body_count(slow)
    timeout = 2.0
    settings = {"WEB_CONCURRENCY": "1", "BODY_TIMEOUT": str(timeout), **env}
    with (
        serving(redis_url, worker, **settings) as server,
        SlowBodies(server.port, slow, post_head(1000) + b'{"increment": 1', every=1.0) as flood,
    ):
        latencies = liveness_under(server, timeout + 1.5)
        assert flood.wait_all_closed(LINGER + MARGIN), "slow bodies still open"
        assert server.count() == 0
    cut = [conn.closed - conn.opened for conn in flood.connections]
    statuses = {conn.status for conn in flood.connections}
    print(
        f"{worker}, {slow} slow bodies: liveness p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
        f" max {max(latencies) * 1000:.1f} ms over {len(latencies)} probes; cut after"
        f" {min(cut):.2f} to {max(cut):.2f} s"
    )
    assert statuses == {408}  # and no worker died (serving): each body got its answer
    if server_on_pypy():
        # A PyPy worker gets through the flood, but not in CPython's time (README, "PyPy
        # server (optional)": when not to choose it): on a 2-core machine at load 3.5 to 4,
        # six runs cut the last body at 3.6 to 5.9 s and answered liveness in 1.6 to 3.9 s
        # at the most (the first probe, the JIT cold). Bounds of its own, loose, that a stuck
        # worker still fails: a probe that gets no answer counts 8 s.
        assert max(cut) <= 3 * (timeout + MARGIN), cut
        assert max(latencies) < 6.0, latencies
        return
    assert max(cut) <= timeout + MARGIN
    assert percentile(latencies, 0.5) < 0.1
    assert max(latencies) < 0.5, latencies


@pytest.mark.parametrize(
    ("worker", "slow", "env"),
    [
        ("gevent", 60, {"GUNICORN_CMD_ARGS": "--worker-connections 50"}),
        ("gthread", 12, {}),
    ],
)
def test_past_the_limit_liveness_waits_one_deadline_at_most(redis_url, worker, slow, env):
    """More slow bodies than a worker takes at once (gevent: its connections; gthread: its 8
    threads), but fewer than twice as many: liveness waits in the queue, but only until the
    deadline cuts those ahead of it."""
    timeout = 2.0
    settings = {"WEB_CONCURRENCY": "1", "BODY_TIMEOUT": str(timeout), **env}
    with (
        serving(redis_url, worker, **settings) as server,
        SlowBodies(server.port, slow, post_head(1000) + b'{"increment": 1', every=1.0),
    ):
        latencies = liveness_under(server, 2 * (timeout + LINGER))
    print(f"{worker}, {slow} slow bodies: liveness max {max(latencies):.2f} s")
    assert max(latencies) <= timeout + LINGER + MARGIN, latencies


def never_reading_clients(port: int, count: int) -> list:
    """`count` clients that pipeline GETs of the page's script and never read an answer (a
    small receive buffer, as a slow link would have)."""
    clients = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        request = b"GET /static/page.js HTTP/1.1\r\nHost: x\r\n\r\n"
        try:
            for _ in range(3000):
                sock.send(request)
        except BlockingIOError:
            pass  # the server stopped reading: its answers fill our buffer
        clients.append(sock)
    return clients


def closed_by_server(sock) -> bool:
    """True once the server has closed (or reset) the connection, reading what is left."""
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize("worker", WORKERS)
def test_clients_that_never_read_their_answers_are_let_go(redis_url, worker):
    """An answer must be taken within BODY_TIMEOUT: clients that never read (more than the
    gthread worker has threads) neither hold liveness past a deadline nor their connections
    for ever. (Each is answered until the kernel's buffers are full, a few hundred answers,
    then cut: bounded by the work it asked for, not by the client.)"""
    with serving(redis_url, worker, BODY_TIMEOUT=str(BODY_TIMEOUT), WEB_CONCURRENCY="1") as srv:
        clients = never_reading_clients(srv.port, 10)
        try:
            latencies = probe_latencies(srv.url, seconds=BODY_TIMEOUT + 2)
            assert max(latencies) < BODY_TIMEOUT + MARGIN, latencies
            assert requests.post(srv.url + "/", timeout=5).status_code == 200
            # Each is cut within a deadline or a few (an answer at a time), not held for ever.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(map(closed_by_server, clients)):
                time.sleep(0.2)
            assert all(map(closed_by_server, clients))
        finally:
            for sock in clients:
                sock.close()


@pytest.mark.parametrize("worker", WORKERS)
def test_a_client_that_pipelines_leaves_liveness_answering(redis_url, worker):
    """One connection pipelining requests and reading each answer as it comes never makes its
    worker wait: under gevent its greenlet held the worker (probes, heartbeat and all) until
    it stopped sending. Here the worker answers it while liveness answers in milliseconds."""
    many = 300_000  # ~13 MB of requests: still coming when the probing ends
    with serving(redis_url, worker, WEB_CONCURRENCY="1") as srv:
        with Pipelining(srv.port, LIVENESS_KEPT_ALIVE, many) as client:
            wait_for(lambda: client.answers > 100, timeout=10, what="pipelined answers")
            before = client.answers
            latencies = probe_latencies(srv.url + "/probe/liveness", seconds=3)
            served, ended = client.answers, client.ended
        assert max(latencies) < MARGIN, latencies
        # Served all along: more answers meanwhile, its connection still open, not finished.
        assert before + 100 < served < many and not ended, (before, served, ended)
        assert requests.get(srv.url + "/probe/liveness", timeout=5).status_code == 200


def test_a_quick_stop_is_quick_while_clients_pipeline(redis_url):
    """Ctrl-C (SIGINT) stops the server at once, no drain, while clients pipeline: a gevent
    worker held by those clients heard its SIGQUIT only when the master's wait ran out
    (GRACEFUL_TIMEOUT, then SIGKILL)."""
    srv = Server(redis_url, GUNICORN_WORKER_CLASS="gevent", ACCESS_LOG="off", WEB_CONCURRENCY="1")
    try:
        srv.wait_ready()
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(Pipelining(srv.port, LIVENESS_KEPT_ALIVE, 300_000))
                for _ in range(10)
            ]
            wait_for(lambda: sum(c.answers for c in clients) > 1000, timeout=10, what="answers")
            started = time.monotonic()
            code = srv.stop(signal.SIGINT, timeout=30)
            took = time.monotonic() - started
        assert code == 0, srv.output
        assert took < 2.0, (took, srv.output)
    finally:
        srv.kill()


def test_a_head_past_32_kib_is_a_431_in_json(server):
    """gunicorn's own limits (100 fields of 8,190 bytes) let an 810 KB head through, costing
    77 ms of CPU to parse: the head as a whole is capped."""
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 4000) for n in range(20))  # 80 KB
    answer = exchange(server.port, b"GET /probe/liveness HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n")
    assert_json_error(answer, 431)
    small = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(8))  # 8 KB: fine
    answer = exchange(
        server.port,
        b"GET /probe/liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + small + b"\r\n",
    )
    assert answer.status == 200


@pytest.mark.parametrize("body", [b"", b'{"increment": 7}'], ids=["nothing", "a-whole-json"])
def test_a_body_cut_short_by_the_client_counts_nothing(server, body):
    """Content-Length: 100, fewer bytes, then the client closes its side: an incomplete
    message (RFC 9112, 8), a 400, never a smaller request."""
    before = server.count()
    sock = connect(server.port)
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: cut-%d\r\nContent-Length: 100\r\n\r\n" % len(body)
    )
    sock.sendall(head + body)
    sock.shutdown(socket.SHUT_WR)
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    sock.close()
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    assert b"incomplete request body" in raw
    assert server.count() == before


def test_options_answers_json(server):
    answer = exchange(server.port, b"OPTIONS / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.status == 405
    assert answer.headers["content-type"] == "application/json"
