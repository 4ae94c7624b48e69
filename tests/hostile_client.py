"""Clients that misbehave on purpose, on raw sockets, for tests against the real server.

What an ordinary HTTP library will not do: trickle a body one byte at a time, flood the server
with hundreds of such connections, send malformed heads, or push a body far over the limit
and only then read the answer. Loopback only; every read and every wait is bounded.

    answer = exchange(port, b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")  # -> Answer (status...)
    trickled = trickled_request(port, post_head(1000), trickle(1000), every=0.2, timeout=10)
    with SlowBodies(port, 300, post_head(1000)) as flood:
        ...                                      # flood.connections: when each was answered
    outcome = send_then_read(port, post_head(2_000_000), b" " * 2_000_000)  # "413" or "reset"
"""

from __future__ import annotations

import contextlib
import itertools
import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests

HOST = "127.0.0.1"


@dataclass
class Answer:
    """What came back on a connection: its first answer, parsed, and how the connection ended."""

    raw: bytes
    status: int | None
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes
    closed: bool  # the server closed (EOF or reset) before the client gave up
    reset: bool  # ... with a reset
    seconds: float  # from the last byte sent to the end (close, reset or giving up)

    def json(self):
        return json.loads(self.body)


def parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """The status, headers and body (by its Content-Length) of the first answer in `raw`."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:length]


def read_until_closed(sock: socket.socket, timeout: float, started: float) -> Answer:
    """Read until the server closes the connection, resets it, or `timeout` passes."""
    raw = b""
    closed = reset = False
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            raw += chunk
    except (ConnectionResetError, BrokenPipeError):
        closed = reset = True
    except TimeoutError:
        pass
    status, headers, body = parse(raw)
    return Answer(raw, status, headers, body, closed, reset, time.monotonic() - started)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> Answer:
    """Send `data` on a fresh connection; what the server answers until it closes."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout, time.monotonic())


def post_head(length: int | None = None, path: str = "/", method: str = "POST", extra=b"") -> bytes:
    """A request head with a JSON body of `length` bytes to follow (chunked when None)."""
    framing = (
        b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    )
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + framing
        + extra
        + b"\r\n"
    )


def trickle(length: int | None) -> Iterator[bytes]:
    """A body that is never finished, one byte per send: JSON spaces after its first bytes, or
    chunks of one byte each when chunked (so that its framing stays valid as it trickles)."""
    if length is None:
        return itertools.cycle(bytes([byte]) for byte in b"1\r\n \r\n")
    return itertools.chain((bytes([byte]) for byte in b'{"increment": 1'), itertools.repeat(b" "))


def head_lines() -> Iterator[bytes]:
    """A request head that is never finished: a header line after another, one byte per send."""
    return itertools.cycle(bytes([byte]) for byte in b"X-Slow: yes\r\n")


@dataclass
class Trickled:
    """How the server dealt with a trickling client, in seconds from the end of the head."""

    answer: Answer
    answered: float | None = None  # its first byte arrived
    finished: float | None = None  # the server stopped sending (FIN, or a reset)
    gone: float | None = None  # the server closed the socket: our next byte was refused


def trickled_request(
    port: int, head: bytes, pieces: Iterator[bytes], every: float, timeout: float
) -> Trickled:
    """Send `head`, then one of `pieces` every `every` seconds, reading meanwhile, until the
    server has closed the connection whole (a byte we send is refused) or `timeout` passes.
    Sending goes on after the server's FIN: a client may not have read it yet."""
    result = Trickled(Answer(b"", None, {}, b"", False, False, 0.0))
    raw = b""
    with connect(port, timeout) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.setblocking(False)
        next_send = started
        while (now := time.monotonic()) < started + timeout and result.gone is None:
            try:
                if now >= next_send:
                    next_send = now + every
                    sock.send(next(pieces))
                chunk = sock.recv(65536)
                if chunk:
                    raw += chunk
                    result.answered = result.answered or time.monotonic() - started
                elif result.finished is None:
                    result.finished = time.monotonic() - started
                else:
                    time.sleep(0.01)  # after the FIN every recv() returns b"" at once
            except BlockingIOError:
                time.sleep(0.01)
            except (ConnectionResetError, BrokenPipeError):
                result.gone = time.monotonic() - started
                result.finished = result.finished or result.gone
    status, headers, body = parse(raw)
    closed = result.finished is not None
    elapsed = time.monotonic() - started
    result.answer = Answer(raw, status, headers, body, closed, result.gone is not None, elapsed)
    return result


def send_then_read(
    port: int, head: bytes, body: bytes, timeout: float = 30.0, send_buffer: int = 65536
) -> str:
    """Send the whole request, then read, as http.client (requests) does: the status the
    client reads ("413"), or "reset ..." when sending or reading failed before it could.

    The client's send buffer is kept small, as the bytes in flight on a real network path
    are: over loopback, with the kernel's default buffers, megabytes sit in them at once and
    the sending is over before the server has closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.settimeout(timeout)
    with sock:
        sock.connect((HOST, port))
        try:
            sock.sendall(head + body)
        except OSError as exc:  # what requests reports as "Connection aborted"
            return f"reset while sending: {type(exc).__name__}"
        answer = read_until_closed(sock, timeout, time.monotonic())
    if answer.status is None:
        return f"reset before the answer: {answer.raw[:60]!r}"
    return str(answer.status)


@dataclass
class SlowConnection:
    sock: socket.socket
    opened: float
    raw: bytes = b""
    answered: float | None = None  # when the first bytes of an answer arrived
    closed: float | None = None  # when the server closed (EOF or reset)

    @property
    def status(self) -> int | None:
        return parse(self.raw)[0]


@dataclass
class SlowBodies:
    """`count` connections, each sending `head` and then a body one byte every `every`
    seconds, never finishing it; one thread trickles and reads them all. Each connection
    records when the server answered it (and what) and when it closed it."""

    port: int
    count: int
    head: bytes
    every: float = 1.0
    connections: list[SlowConnection] = field(default_factory=list)

    def __enter__(self) -> SlowBodies:
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        for _ in range(self.count):
            sock = connect(self.port)
            sock.sendall(self.head)
            sock.setblocking(False)
            conn = SlowConnection(sock, time.monotonic())
            self.connections.append(conn)
            self._selector.register(sock, selectors.EVENT_READ, conn)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self._selector.close()
        for conn in self.connections:
            conn.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # One byte on each open connection per `every` seconds, spread over that time.
            step = self.every / max(1, self.count)
            started = time.monotonic()
            for index, conn in enumerate(self.connections):
                if conn.closed is None:
                    # A send that fails means the server closed it: the read records when.
                    with contextlib.suppress(OSError):
                        conn.sock.send(b" ")
                if index % 50 == 49 or index == self.count - 1:
                    self._read(max(0.0, started + step * (index + 1) - time.monotonic()))
            self._read(max(0.0, started + self.every - time.monotonic()))

    def _read(self, wait: float) -> None:
        for key, _ in self._selector.select(wait):
            conn: SlowConnection = key.data
            try:
                chunk = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            now = time.monotonic()
            if chunk:
                conn.raw += chunk
                conn.answered = conn.answered or now
            else:
                conn.closed = now
                self._selector.unregister(conn.sock)

    def wait_all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(conn.closed is not None for conn in self.connections):
                return True
            time.sleep(0.05)
        return False


class Pipelining:
    """One connection that sends `count` requests without waiting for an answer (pipelining,
    RFC 9112 section 9.3.2) and reads the answers as fast as they come, on threads of its own
    until it leaves the `with` block. `answers` counts them (the status lines seen); `ended`
    turns True once the connection is closed."""

    MARK = b"HTTP/1.1 "

    def __init__(self, port: int, request: bytes, count: int) -> None:
        self.sock = connect(port)
        self.answers = 0
        self.ended = False
        self._request, self._count = request, count
        self._threads = [
            threading.Thread(target=run, daemon=True) for run in (self._send, self._read)
        ]

    def _send(self) -> None:
        with contextlib.suppress(OSError):  # closed on leaving the block
            self.sock.sendall(self._request * self._count)

    def _read(self) -> None:
        tail = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 20):
                data = tail + chunk
                self.answers += data.count(self.MARK)
                tail = data[-(len(self.MARK) - 1) :]
        self.ended = True  # the server closed the connection (or we did, leaving the block)

    def __enter__(self) -> Pipelining:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for thread in self._threads:
            thread.join(timeout=10)


def probe_latencies(url: str, seconds: float, every: float = 0.1, timeout: float = 5.0):
    """GET url (a new connection each time, as the kubelet probes) every `every` seconds for
    `seconds`: each answer's latency, or `timeout` for one that failed or did not come."""
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            ok = requests.get(url, timeout=timeout).status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(time.monotonic() - started if ok else timeout)
        time.sleep(max(0.0, every - (time.monotonic() - started)))
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def open_files_allowed() -> int:
    """Raise this process's soft limit on open files to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
