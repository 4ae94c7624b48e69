"""Misbehaving peers for the workers' tests: a scripted HTTP peer, raw answers at any pace,
a port that never accepts, and a fault-injecting proxy.

They stand in for what a real server cannot produce on demand (an ingress answering an HTML
page, a 503 with Retry-After, an answer lost after the server applied the request, an answer
trickled a byte at a time or hundreds of MiB long); the counter and the poller under test are
always the real commands.

    with ScriptedPeer([html(200, "<p>hi</p>"), answer(200, {"count": 7})]) as peer:
        ...  # point API_URL at peer.url; peer.requests says what arrived, when, with which key

    with ScriptedPeer([Raw(b"HTTP/1.1 200 OK\r\nX-Pad: ", fill=b"a", every=0.5)]) as peer:
        ...  # the request is read, then the answer's headers never end

    with DroppingProxy(server.port, drop=lambda n: n % 3 == 2) as proxy:
        ...  # API_URL = proxy.url; the 3rd, 6th, ... answers are applied, then lost
"""

from __future__ import annotations

import functools
import json
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

MiB = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Raw:
    """An answer as bytes on the wire, at any pace: `head` at once, then `fill` `times` times
    (None: until the client hangs up) with `every` seconds between two, then `tail`, and the
    connection closes."""

    head: bytes
    fill: bytes = b""
    times: int | None = None
    every: float = 0.0
    tail: bytes = b""

    def send(self, sock: socket.socket) -> None:
        sent = 0
        try:
            sock.sendall(self.head)
            while self.fill and (self.times is None or sent < self.times):
                time.sleep(self.every)
                sock.sendall(self.fill)
                sent += 1
            sock.sendall(self.tail)
        except OSError:  # the client gave up, as it should
            pass


def head(*lines: str, body: bytes = b"") -> bytes:
    """A status line and headers, the blank line, and the start of a body."""
    return "".join(f"{line}\r\n" for line in (*lines, "")).encode() + body


CHUNKED = "Transfer-Encoding: chunked"


def huge(encoding: str, size: int = 400 * MiB) -> Raw:
    """A 200 `{"count": 1}` made `size` bytes long (JSON allows the trailing spaces), sent as
    fast as the client reads: with a Content-Length, chunked, or until the close; or a gzip
    body of a few hundred KiB that inflates to `size`."""
    count, block = b'{"count": 1}', b" " * MiB
    blocks = size // MiB
    if encoding == "content-length":
        return Raw(
            head("HTTP/1.1 200 OK", f"Content-Length: {len(count) + size}", body=count),
            block,
            blocks,
        )
    if encoding == "chunked":
        chunk = b"%x\r\n%s\r\n"
        return Raw(
            head("HTTP/1.1 200 OK", CHUNKED, body=chunk % (len(count), count)),
            chunk % (len(block), block),
            blocks,
            tail=b"0\r\n\r\n",
        )
    if encoding == "until-close":
        return Raw(head("HTTP/1.1 200 OK", "Connection: close", body=count), block, blocks)
    if encoding == "gzip":
        bomb = gzip_bomb(size)
        return Raw(
            head(
                "HTTP/1.1 200 OK",
                "Content-Encoding: gzip",
                "Content-Type: application/json",
                f"Content-Length: {len(bomb)}",
                body=bomb,
            )
        )
    raise ValueError(encoding)


@functools.cache
def gzip_bomb(size: int) -> bytes:
    """`{"count": 1}` and `size` spaces, gzipped (about 1/1000 of it), made without holding it."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip format
    parts = [packer.compress(b'{"count": 1}')]
    parts += [packer.compress(b" " * MiB) for _ in range(size // MiB)]
    return b"".join([*parts, packer.flush()])


def answer(status: int, body: Any = None, **headers: str) -> Answer:
    """A JSON answer (`Retry_After="2"` gives the header Retry-After: 2)."""
    text = b"" if body is None else json.dumps(body).encode()
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return Answer(status, text, {"Content-Type": "application/json", **named})


def html(status: int, page: str) -> Answer:
    return Answer(status, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


@dataclass(frozen=True)
class Arrival:
    method: str
    path: str
    idempotency_key: str | None
    body: bytes
    at: float  # time.monotonic() in the test process
    client_port: int  # the same from request to request: a connection kept alive


class _Server:
    """A threaded server on a free port of 127.0.0.1, serving until the `with` ends."""

    server: socketserver.BaseServer

    def __enter__(self):
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ScriptedPeer(_Server):
    """An HTTP server answering each request with the next answer of `script`, then `then`
    for ever; `requests` records every request in order of arrival. It closes a keep-alive
    connection idle for `keep_alive` seconds (gunicorn: 5)."""

    def __init__(
        self,
        script: list[Answer | Raw],
        then: Answer | Raw | None = None,
        keep_alive: float | None = None,
    ):
        self._script = list(script)
        self._then = then or answer(503, {"error": "script exhausted"})
        self._lock = threading.Lock()
        self.requests: list[Arrival] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as an ingress would
            timeout = keep_alive

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                reply = peer._record(
                    Arrival(
                        self.command,
                        self.path,
                        self.headers.get("Idempotency-Key"),
                        body,
                        time.monotonic(),
                        self.client_address[1],
                    )
                )
                if isinstance(reply, Raw):
                    reply.send(self.connection)
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def _record(self, arrival: Arrival) -> Answer | Raw:
        with self._lock:
            self.requests.append(arrival)
            return self._script.pop(0) if self._script else self._then

    def keys(self) -> list[str | None]:
        return [r.idempotency_key for r in list(self.requests)]


class RawPeer(_Server):
    """A TCP server that sends `raw` on every connection without reading anything: for what
    comes before HTTP (`scheme="https"`: a TLS handshake that never ends)."""

    def __init__(self, raw: Raw, scheme: str = "http"):
        self.scheme = scheme

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                raw.send(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


class FullBacklog:
    """A port whose listener never accepts and whose accept queue is full: the kernel drops
    every new SYN, so a connect hangs until the client gives up."""

    def __enter__(self) -> FullBacklog:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.fillers = [socket.socket() for _ in range(4)]  # the first fills the queue
        for filler in self.fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
        return self

    def __exit__(self, *exc_info) -> None:
        for sock in (*self.fillers, self.listener):
            sock.close()


def read_message(stream: BinaryIO) -> tuple[bytes, dict[str, str], bytes] | None:
    """One HTTP/1.1 message with a Content-Length body (or none): (start line and headers as
    sent, headers lowercased, body); None at the end of the stream."""
    head = b""
    while True:
        line = stream.readline(65537)
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    headers = {}
    for line in head.decode("latin-1").splitlines()[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise ValueError("chunked bodies are not supported by this proxy")
    body = stream.read(int(headers.get("content-length", 0)))
    return head, headers, body


@dataclass
class Exchange:
    """One request through the proxy and what became of its answer."""

    index: int
    idempotency_key: str | None
    status: int | None = None
    replayed: bool = False
    dropped: bool = False


class DroppingProxy(_Server):
    """A TCP proxy in front of an HTTP server on 127.0.0.1:`upstream_port` that forwards every
    request and, when `drop(n)` is true for the n-th request (0-based), reads the server's
    answer and closes the client's connection without sending it: the request is applied, the
    client never learns it. `drop` may be replaced while the proxy runs."""

    def __init__(self, upstream_port: int, drop: Callable[[int], bool]):
        self.upstream_port = upstream_port
        self.drop = drop
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while proxy._forward_one(self.rfile, self.connection):
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def _forward_one(self, client_in: BinaryIO, client: socket.socket) -> bool:
        request = read_message(client_in)
        if request is None:
            return False
        head, headers, body = request
        with self._lock:
            exchange = Exchange(len(self.exchanges), headers.get("idempotency-key"))
            self.exchanges.append(exchange)
        # One upstream connection per request: simple, and nothing to resynchronise after a drop.
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10) as upstream:
            upstream.sendall(head + body)
            with upstream.makefile("rb") as upstream_in:
                response = read_message(upstream_in)
        if response is None:
            return False
        response_head, response_headers, response_body = response
        exchange.status = int(response_head.split(b" ", 2)[1])
        exchange.replayed = response_headers.get("idempotent-replayed") == "true"
        if self.drop(exchange.index):
            exchange.dropped = True
            return False  # the handler closes the client's connection: no answer
        client.sendall(response_head + response_body)
        return True

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)
