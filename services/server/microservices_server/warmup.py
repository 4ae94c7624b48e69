"""Warm-up before the first connection (WARMUP_SECONDS; 0, none, by default).

PyPy compiles the code a process runs often, once it has run it often: a new PyPy worker
answers from the start, but for its first ~20 s at a fraction of its speed (600, then 1,000,
2,000, 3,600 requests/s). A pod that took its full share of traffic then would answer slowly.
So, with WARMUP_SECONDS (the PyPy image sets it), each worker first sends itself requests for
that long, before gunicorn lets it accept any: the readiness probe, queued meanwhile, answers
only once every worker is warm, and only then does the Service send the pod traffic.

The requests take the real path: bytes through gunicorn's parser and worker (over a socket
pair), our wire.py answers, Flask, the API's validation, redis-py reading Redis. But they go
to an app of their own, so that nothing anyone can see changes:
- the count, its history and the idempotency records: no increment is made (every POST is one
  that validation refuses, before any Redis call); GET / and the page's status only read;
- the clients the page shows: no support-tier User-Agent, so none is recorded;
- /metrics: the warm-up app counts in memory of its own, not in the pod's metrics files;
- readiness and the fault switches: a drain flag of its own; the switches are only read.
gunicorn's heartbeat is kept up meanwhile, so the warm-up may outlast GUNICORN_TIMEOUT; the
liveness probe would not wait as long: the PyPy component gives the pod a startup probe.
Measured (README, "PyPy server (optional)"): 15 s of it quadruple what a new PyPy pod serves
in its first 10 s of traffic.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import socket
import time

from microservices_common.logs import log_event

log = logging.getLogger("server")

JSON = "application/json"
# (method, path, headers, body): each path a request takes, and each way validation refuses a
# POST (not JSON, not an object, not an integer, out of range, an unknown media type).
REQUESTS = [
    ("GET", "/", {"Accept": JSON}, b""),
    ("GET", "/", {"Accept": "text/html"}, b""),
    ("GET", "/api/status", {}, b""),
    ("GET", "/probe/readiness", {}, b""),
    ("GET", "/probe/liveness", {}, b""),
    ("POST", "/", {"Content-Type": JSON, "Idempotency-Key": "warm-up"}, b'{"increment": 0}'),
    ("POST", "/", {"Content-Type": JSON}, b'{"increment": "1"}'),
    ("POST", "/", {"Content-Type": JSON}, b"[1]"),
    ("POST", "/", {"Content-Type": JSON}, b"{"),
    ("POST", "/", {"Content-Type": "text/plain"}, b"1"),
    ("GET", "/metrics", {}, b""),
    ("GET", "/nowhere", {}, b""),
]


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: warm-up", "User-Agent: warm-up"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


WIRE = [request_bytes(*r) for r in REQUESTS]


def read_answer(sock: socket.socket, buffer: bytearray) -> int:
    """Read one answer (every one has a Content-Length) off sock; its status."""
    while b"\r\n\r\n" not in buffer:
        buffer += _received(sock)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += _received(sock)
    buffer[:] = rest[length:]
    return int(head.split(b" ", 2)[1])


def _received(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the worker closed the warm-up connection")
    return data


@contextlib.contextmanager
def warm_app(worker):
    """The worker serving an app of the warm-up's own, as gunicorn makes it but for: its
    metrics counted in memory only (prometheus_client makes a series' storage when the series
    is first counted: so for the whole warm-up), its drain flag its own, no access log, and
    only errors logged (with Redis away, each warm-up request would log a warning that reads
    like a failed request of a real client: hundreds a second)."""
    from prometheus_client import values

    from .app import create_app
    from .lifecycle import DrainFlag

    served, shared_values = worker.wsgi, values.ValueClass
    values.ValueClass = values.MutexValue  # not the pod's multiprocess files
    worker.log.access = lambda *_args, **_kwargs: None  # the instance's, over its class's
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        worker.wsgi = app = create_app(draining=DrainFlag())
        yield
    finally:
        worker.wsgi = served
        values.ValueClass = shared_values
        del worker.log.access
        log.setLevel(level)
    from .state import runtime

    runtime(app).store.close()


class WarmBoard:
    """Which of the first workers have warmed up: one byte each, in memory the gunicorn master
    maps before it forks them, so that each can wait for the others. Otherwise the first one
    warm would answer readiness, and take the pod's whole traffic, while the rest still warm."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._memory = mmap.mmap(-1, workers)  # MAP_SHARED | MAP_ANONYMOUS: survives fork

    def warmed(self, worker) -> None:
        if worker.age <= self.workers:  # one of the first (gunicorn counts them from 1)
            self._memory[worker.age - 1] = 1

    def all_warm(self) -> bool:
        return all(self._memory[: self.workers])


def warm_up(worker, seconds: float, board: WarmBoard) -> None:
    """gunicorn's gevent `worker` answers the warm-up requests for `seconds`, to an app of
    their own, then waits (as long again at most) for the other first workers to be warm too,
    before it accepts any connection. Best effort: whatever goes wrong is logged, and the
    worker starts serving, cold."""
    started = time.monotonic()
    answers = 0
    try:
        with warm_app(worker):
            while worker.alive and time.monotonic() - started < seconds:
                answers += _one_connection(worker, started + seconds)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never keep a worker from serving
        log.warning("Warm-up stopped after %d requests: %r", answers, exc)
    took = time.monotonic() - started
    log_event(
        log,
        "warmed_up",
        f"Warmed up: {answers} requests in {took:.1f}s (WARMUP_SECONDS)",
        requests=answers,
    )
    board.warmed(worker)
    while worker.alive and not board.all_warm() and time.monotonic() - started < 2 * seconds:
        time.sleep(0.05)
        worker.notify()


def _one_connection(worker, until: float) -> int:
    """The warm-up requests, again and again, on one keep-alive connection until `until` or
    until the worker closes it; how many were answered."""
    import gevent

    ours, theirs = socket.socketpair()
    handler = gevent.spawn(worker.handle, worker.sockets[0], theirs, ("127.0.0.1", 0))
    answers = 0
    buffer = bytearray()
    try:
        while worker.alive and time.monotonic() < until:
            for wire in WIRE:
                ours.sendall(wire)
                read_answer(ours, buffer)
                answers += 1
            worker.notify()  # gunicorn's heartbeat: not a hung worker
    except ConnectionError:
        pass
    finally:
        ours.close()
        handler.join(5)
    return answers
