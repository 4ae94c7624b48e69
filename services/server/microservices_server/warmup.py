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
- readiness and the fault switches: a drain flag of its own; the switches are only read;
- the log: only errors, and each distinct one once (a corrupt count in Redis would otherwise
  log one line per warm-up request, thousands); the `warmed_up` line then says how often each
  came, and how many answers were not what a healthy pod answers (which statuses), so that a
  warm-up that warmed nothing (Redis away: 503s) shows.
gunicorn's heartbeat is kept up meanwhile, so the warm-up may outlast GUNICORN_TIMEOUT; the
liveness probe would not wait as long: the PyPy component gives the pod a startup probe.
Measured (README, "PyPy server (optional)"): 15 s of it quadruple what a new PyPy pod serves
in its first 10 s of traffic.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import Counter

from microservices_common.logs import log_event

from .per_pod import PerPod
from .pod_memory import PodMemory

log = logging.getLogger("server")

JSON = "application/json"
# (method, path, headers, body, the status a healthy pod answers): each path a request takes,
# and each way validation refuses a POST (not JSON, not an object, not an integer, out of
# range, an unknown media type).
REQUESTS = [
    ("GET", "/", {"Accept": JSON}, b"", 200),
    ("GET", "/", {"Accept": "text/html"}, b"", 200),
    ("GET", "/api/status", {}, b"", 200),
    ("GET", "/probe/readiness", {}, b"", 200),
    ("GET", "/probe/liveness", {}, b"", 200),
    ("POST", "/", {"Content-Type": JSON, "Idempotency-Key": "warm-up"}, b'{"increment": 0}', 400),
    ("POST", "/", {"Content-Type": JSON}, b'{"increment": "1"}', 400),
    ("POST", "/", {"Content-Type": JSON}, b"[1]", 400),
    ("POST", "/", {"Content-Type": JSON}, b"{", 400),
    ("POST", "/", {"Content-Type": "text/plain"}, b"1", 415),
    ("GET", "/metrics", {}, b"", 200),
    ("GET", "/nowhere", {}, b"", 404),
]


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: warm-up", "User-Agent: warm-up"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# Each request as bytes, with the status a healthy pod answers it.
WIRE = [(request_bytes(*r[:4]), r[4]) for r in REQUESTS]


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


class OncePerProblem(logging.Filter):
    """On the server's logger while it warms up: each problem's first line passes, the rest
    are counted (`repeated`). A problem is a log event (count_corrupt...), else a message."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        problem = getattr(record, "fields", {}).get("event") or str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            problem += f" ({record.exc_info[0].__name__})"
        self.seen[problem] += 1
        return self.seen[problem] == 1

    def repeated(self) -> dict[str, int]:
        """How often each problem that came more than once came."""
        return {problem: times for problem, times in self.seen.items() if times > 1}


@contextlib.contextmanager
def warm_app(worker, problems: OncePerProblem):
    """The worker serving an app of the warm-up's own, as gunicorn makes it but for: its
    metrics counted in memory only (prometheus_client makes a series' storage when the series
    is first counted: so for the whole warm-up), its drain flag its own, no access log, and
    only errors logged, each problem once (`problems`): with Redis away, each warm-up request
    would log a warning that reads like a failed request of a real client, hundreds a second;
    with a corrupt count, an error as often."""
    from prometheus_client import values

    from .app import create_app
    from .lifecycle import DrainFlag

    served, shared_values = worker.wsgi, values.ValueClass
    values.ValueClass = values.MutexValue  # not the pod's multiprocess files
    worker.log.access = lambda *_args, **_kwargs: None  # the instance's, over its class's
    level = log.level
    log.setLevel(logging.ERROR)
    log.addFilter(problems)
    try:
        worker.wsgi = app = create_app(draining=DrainFlag())
        yield
    finally:
        worker.wsgi = served
        values.ValueClass = shared_values
        del worker.log.access
        log.setLevel(level)
        log.removeFilter(problems)
    from .state import runtime

    runtime(app).store.close()


class WarmBoard:
    """How many of the pod's first workers have warmed up, so that each can wait for the
    others. Otherwise the first one warm would answer readiness, and take the pod's whole
    traffic, while the rest still warm. One byte of the pod's shared memory (pod_memory.py),
    added to under its lock."""

    def __init__(self) -> None:
        self._shared = PodMemory("warm-board", 1)

    def warmed(self, worker) -> None:
        # One of the first? gunicorn numbers its workers' `age` from 1; a worker that
        # replaces one is not waited on.
        if worker.age <= worker.cfg.workers:
            with self._shared.locked() as memory:
                memory[0] += 1

    def all_warm(self, workers: int) -> bool:
        return self._shared.memory[0] >= workers


# The gunicorn master makes it in on_starting (lifecycle.py) and every worker inherits it.
shared_board = PerPod(WarmBoard)


def warm_up(worker, seconds: float) -> None:
    """gunicorn's gevent `worker` answers the warm-up requests for `seconds`, to an app of
    their own, then waits (as long again at most) for the other first workers to be warm too,
    before it accepts any connection. Best effort: whatever goes wrong is logged, and the
    worker starts serving, cold."""
    started = time.monotonic()
    problems = OncePerProblem()
    unexpected: Counter[int] = Counter()  # by status: the answers a healthy pod gives otherwise
    answers = 0
    try:
        with warm_app(worker, problems):
            while worker.alive and time.monotonic() - started < seconds:
                answers += _one_connection(worker, started + seconds, unexpected)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never keep a worker from serving
        log.warning("Warm-up stopped after %d requests: %r", answers, exc)
    _log_warmed_up(answers, time.monotonic() - started, unexpected, problems.repeated())
    board = shared_board.get()
    board.warmed(worker)
    while (
        worker.alive
        and not board.all_warm(worker.cfg.workers)
        and time.monotonic() - started < 2 * seconds
    ):
        time.sleep(0.05)
        worker.notify()


def _log_warmed_up(
    answers: int, took: float, unexpected: Counter[int], repeated: dict[str, int]
) -> None:
    """The warm-up's last line: a warning if it did not warm up as a healthy pod would."""
    statuses = {str(status): times for status, times in sorted(unexpected.items())}
    message = f"Warmed up: {answers} requests in {took:.1f}s (WARMUP_SECONDS)"
    if statuses:
        listed = ", ".join(f"{times} {status}" for status, times in statuses.items())
        message += f"; {unexpected.total()} not answered as by a healthy pod: {listed}"
    if repeated:
        message += "; logged once: " + ", ".join(f"{p} ({n} times)" for p, n in repeated.items())
    log_event(
        log,
        "warmed_up",
        message,
        logging.WARNING if statuses else logging.INFO,
        requests=answers,
        unexpected=unexpected.total(),
        unexpected_statuses=statuses,
        repeated=repeated,
    )


def _one_connection(worker, until: float, unexpected: Counter[int]) -> int:
    """The warm-up requests, again and again, on one keep-alive connection until `until` or
    until the worker closes it; how many were answered. Each answer whose status is not the
    one a healthy pod gives is counted in `unexpected`."""
    import gevent

    ours, theirs = socket.socketpair()
    handler = gevent.spawn(worker.handle, worker.sockets[0], theirs, ("127.0.0.1", 0))
    answers = 0
    buffer = bytearray()
    try:
        while worker.alive and time.monotonic() < until:
            for wire, healthy in WIRE:
                ours.sendall(wire)
                status = read_answer(ours, buffer)
                if status != healthy:
                    unexpected[status] += 1
                answers += 1
            worker.notify()  # gunicorn's heartbeat: not a hung worker
    except ConnectionError:
        pass
    finally:
        ours.close()
        handler.join(5)
    return answers
