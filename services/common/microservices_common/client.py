"""The support tier's side of the server's API: a small HTTP/1.1 client (the standard library's
http.client parses the answers) in which a request is bounded as a whole, in time and in bytes.

    session = Session("microservices-poller/1.0.0 (poller-x2kq)")
    response = send(session, "GET", "http://app-tier:8080/", timeout=2.0)
    count_in(response)  # 7, or None for anything but 200 {"count": <int>}

- Time: `timeout` (REQUEST_TIMEOUT) bounds name resolution, connecting, the TLS handshake,
  sending the request and reading the status line, headers and body, all together: every
  socket wait is given the time left until the request's deadline, so no trickle, at any
  stage, holds a worker (or its SIGTERM) past it.
- Bytes: at most MAX_ANSWER bytes are read from the wire for one answer (status line, headers,
  chunk framing and body together), whatever Content-Length or a chunk size claims. The client
  asks for `Accept-Encoding: identity` and never decodes a Content-Encoding: a compressed
  answer cannot inflate, it is bytes that are not `{"count": <int>}`.

Past either bound send() raises, as it does for a refused or reset connection or a reply that
is not HTTP: the caller treats it as an answer that never came (the outcome is unknown), and
describe() says what happened in a line, as loudly as it deserves.
"""

from __future__ import annotations

import functools
import http.client
import io
import json as jsonlib
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import SplitResult, urlsplit

# The API's answers are tens of bytes, an ingress' error page a few hundred: 64 KiB is generous.
MAX_ANSWER = 64 * 1024


class AnswerTooLarge(http.client.HTTPException):
    pass


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message  # case-insensitive get()
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Session:
    """One keep-alive connection, reused from request to request and dropped after any error.
    Not shared between threads: load mode gives each thread its own."""

    def __init__(self, user_agent: str):
        self.user_agent = user_agent
        self._sock: socket.socket | None = None
        self._origin: tuple[str, str] | None = None
        self.answered = False  # the server has answered once: a refusal is news from then on
        self.refusal_said = False

    def connection(self, url: SplitResult, deadline: float) -> socket.socket:
        """The connection kept alive, or a new one. A server may still close it between this
        check and the request: that request fails like any other (the counter retries it)."""
        origin = (url.scheme, url.netloc)
        if self._sock is not None and (origin != self._origin or _readable(self._sock)):
            self.close()  # another server, or the server closed it while it was idle
        if self._sock is None:
            self._sock, self._origin = _connect(url, deadline), origin
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def send(
    session: Session,
    method: str,
    url: str,
    timeout: float,
    *,
    json: object = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One request and its whole answer within `timeout` seconds and MAX_ANSWER bytes; raises
    (OSError, http.client.HTTPException, ...) if there was none. Redirects are not followed."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    fields = {
        "Host": parts.netloc.rpartition("@")[2],
        "User-Agent": session.user_agent,
        "Accept": "*/*",  # JSON from the server, not the live page
        "Accept-Encoding": "identity",
    }
    body = b""
    if json is not None:
        body = jsonlib.dumps(json, allow_nan=False).encode()
        fields |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    fields |= headers or {}
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    try:
        sock = session.connection(parts, deadline)
        sock.settimeout(_time_left(deadline))
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)  # a few hundred bytes
        answer = _Answer(_Wire(sock, deadline), method=method)
        answer.begin()  # status line and headers
        content = _read_body(answer)
    except BaseException:
        session.close()  # half an exchange on it: never reused
        raise
    if answer.will_close or answer.status < 200:  # a 101: a protocol this client does not speak
        session.close()
    session.answered = True
    return Response(answer.status, answer.headers, content)


# Expected when the workers start first (README, "Without containers"): said once.
# One clause, no parentheses: the counter's line puts it in its own.
REFUSED_AT_START = "connection refused: the server is not up yet, said once until it answers"


def describe(exc: BaseException, session: Session) -> tuple[str, int]:
    """A request send() raised on: what happened in a few words, and the level to log it at.
    The workers start beside the server (compose, Kubernetes) and often ask before it
    listens: a refused connection before its first answer is said once, at WARNING, then at
    DEBUG until the server answers (a retry line per second said nothing new). Once it has
    answered, a refusal is an outage, and said each time."""
    if not isinstance(exc, ConnectionRefusedError):
        return f"{type(exc).__name__}: {exc}", logging.WARNING
    if session.answered:
        return "connection refused", logging.WARNING
    if session.refusal_said:
        return "connection refused", logging.DEBUG
    session.refusal_said = True
    return REFUSED_AT_START, logging.WARNING


class _Answer(http.client.HTTPResponse):
    """http.client's answer past every interim 1xx (103 Early Hints, 102 Processing): a client
    skips them for the final answer (RFC 9110, 15.2), where http.client skips only 100. Their
    count is bounded as the rest of the answer is, by MAX_ANSWER and the deadline."""

    def _read_status(self):
        while True:
            version, status, reason = super()._read_status()
            if not 100 < status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # an interim answer's headers: dropped


def _read_body(answer: http.client.HTTPResponse) -> bytes:
    """The whole body however it is framed (Content-Length, chunked, until the close). Small
    reads: http.client allocates what it is asked for, and a Content-Length or a chunk size may
    claim a terabyte; _Wire stops the answer at MAX_ANSWER."""
    parts = []
    while part := answer.read(16 * 1024):
        parts.append(part)
    if answer.length:  # a Content-Length not met before the server closed the connection
        raise http.client.IncompleteRead(b"".join(parts), answer.length)
    return b"".join(parts)


class _Wire(io.RawIOBase):
    """The socket as http.client reads one answer from it (HTTPResponse calls makefile): each
    wait gets the time left until `deadline`; past MAX_ANSWER bytes the answer is refused."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline
        self.received = 0

    def makefile(self, _mode: str) -> io.BufferedReader:
        return io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.sock.settimeout(_time_left(self.deadline))
        room = MAX_ANSWER + 1 - self.received  # one byte more than allowed tells "too large"
        n = self.sock.recv_into(memoryview(buffer)[:room])
        self.received += n
        if self.received > MAX_ANSWER:
            raise AnswerTooLarge(f"answer over {MAX_ANSWER} bytes")
        return n


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _connect(url: SplitResult, deadline: float) -> socket.socket:
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_time_left(deadline))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if url.scheme == "https":
                # The handshake as a whole is bounded by the socket's timeout when it starts
                # (CPython's do_handshake keeps one deadline across its waits), then each read
                # and write of the TLS stream, like plain TCP, by the time left.
                sock.settimeout(_time_left(deadline))
                sock = _tls_context().wrap_socket(sock, server_hostname=host)
            return sock
        except OSError as exc:  # refused, unreachable, timed out, bad certificate: next one
            sock.close()
            error = exc
    raise error


def _resolve(host: str, port: int, deadline: float) -> list:
    """getaddrinfo within the deadline. No socket timeout bounds it, so it runs in a daemon
    thread that we stop waiting for at the deadline; a lookup still running then ends on its
    own (glibc's resolver gives up after 5 s a try, 2 tries a name by default), unused."""
    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            found.append(exc)

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(_time_left(deadline))
    if not found:
        raise TimeoutError(f"resolving {host} timed out")
    if isinstance(found[0], Exception):
        raise found[0]
    return found[0]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # system CAs, hostname checked


def _readable(sock: socket.socket) -> bool:
    """An idle keep-alive connection with something to read was closed by the server (or holds
    bytes nobody asked for): not to be reused. poll, not select: load mode may pass fd 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def excerpt(response: Response, limit: int = 200) -> str:
    """The start of an answer's body on one line of printable characters (an HTML error page
    has many lines, a gzip body control bytes)."""
    printable = "".join(c if c.isprintable() else " " for c in response.text)
    return " ".join(printable.split())[:limit]


def count_in(response: Response) -> int | None:
    """The count of a `200 {"count": <int>}` answer; None for anything else (an HTML page
    from an ingress, `{"total": 5}`, `[]`, `{"count": true}`, a gzip body)."""
    if response.status != 200:
        return None
    try:
        body = jsonlib.loads(response.body)
    except Exception:  # noqa: BLE001 - bad JSON, "[" * 100000 (RecursionError), odd charsets
        return None
    count = body.get("count") if isinstance(body, dict) else None
    # bool is an int in Python: true is not a count.
    return count if isinstance(count, int) and not isinstance(count, bool) else None
