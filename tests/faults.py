"""Misbehaving peers for the workers' tests: a scripted HTTP peer and a fault-injecting proxy.

They stand in for what a real server cannot produce on demand (an ingress answering an HTML
page, a 503 with Retry-After, an answer lost after the server applied the request); the
counter and the poller under test are always the real commands.

    with ScriptedPeer([html(200, "<p>hi</p>"), answer(200, {"count": 7})]) as peer:
        ...  # point API_URL at peer.url; peer.requests says what arrived, when, with which key

    with DroppingProxy(server.port, drop=lambda n: n % 3 == 2) as proxy:
        ...  # API_URL = proxy.url; the 3rd, 6th, ... answers are applied, then lost
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds between the body's bytes (a server that never quite answers)


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
    for ever; `requests` records every request in order of arrival."""

    def __init__(self, script: list[Answer], then: Answer | None = None):
        self._script = list(script)
        self._then = then or answer(503, {"error": "script exhausted"})
        self._lock = threading.Lock()
        self.requests: list[Arrival] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as an ingress would

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
                    )
                )
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if not reply.trickle:
                    self.wfile.write(reply.body)
                    return
                try:
                    for byte in reply.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(reply.trickle)
                except OSError:  # the client gave up, as it should
                    self.close_connection = True

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def _record(self, arrival: Arrival) -> Answer:
        with self._lock:
            self.requests.append(arrival)
            return self._script.pop(0) if self._script else self._then

    def keys(self) -> list[str | None]:
        return [r.idempotency_key for r in list(self.requests)]


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
