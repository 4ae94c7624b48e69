"""One write per answer: gunicorn's response, sending the head and a small body together.

gunicorn writes an answer's status line and headers in one send() and its body in another.
Every answer here is small JSON whose body Flask hands over whole, with its Content-Length:
two sends are two system calls and two TCP segments where one does (Node.js sends one too).
`install()` (a worker hook, lifecycle.post_worker_init) makes each worker's gunicorn build its
answers with `OneWriteResponse`; any other answer (streamed, chunked, HEAD, 204/304) goes
through gunicorn's own code unchanged.

Two more costs of every answer go with it: the Date header, which gunicorn formats anew for
each answer (email.utils.formatdate, 2 us), is formatted once a second; and the write is a
plain send() rather than gevent's sendall(), which asks the kernel for the socket's buffer
size (a system call) before every write, whatever its size.

The rest is what a connection owes the client at the socket (body_deadline.py has the why):
an answer to a request whose body was not read whole says `Connection: close`, an answer that
closes the connection closes lingering (`post_request`, a gunicorn hook), and gunicorn's own
errors (a malformed head, a request line or headers too large) answer `{"error": ...}` with
the headers of every other answer, closing lingering too, instead of its HTML page
(`write_error`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import time

from gunicorn import SERVER, util
from gunicorn.http import wsgi
from microservices_common.once_a_second import OnceASecond

from . import body_deadline

_format_http_date = util.http_date
_current_date = OnceASecond(_format_http_date)


def http_date(timestamp: float | None = None) -> str:
    """gunicorn's util.http_date, the current date formatted at most once a second."""
    if timestamp is not None:
        return _format_http_date(timestamp)
    return _current_date(time.time())


def send_whole(sock, data: bytes) -> None:
    """Write all of `data`: one send() for a small answer, sendall() for whatever is left."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


@contextlib.contextmanager
def _taken_in_time():
    """An answer the client did not take within its deadline ends the connection quietly, as
    gunicorn ends one the client broke (EPIPE): no traceback in the log."""
    try:
        yield
    except TimeoutError:
        raise BrokenPipeError(errno.EPIPE, "answer not taken in time") from None


class OneWriteResponse(wsgi.Response):
    # How long a client may take to take an answer (BODY_TIMEOUT, set by install()): a client
    # that never reads held its connection, under gthread a thread, for ever.
    send_timeout: float = 5.0
    _timeout_before: float | None = None
    _deadline_started = False

    def write(self, arg):
        with _taken_in_time():
            self._bounded_write(arg)

    def write_file(self, respiter):
        with _taken_in_time():
            return super().write_file(respiter)

    def send_headers(self):
        if not self.headers_sent:
            self._start_deadline()
        return super().send_headers()

    def _start_deadline(self):
        # sendall()'s timeout bounds a whole call, in CPython and gevent alike; a static file's
        # sendfile() waits up to it for each step of progress (every answer here is under
        # 10 KB, which the kernel's buffers take at once).
        if not self._deadline_started:
            self._deadline_started = True
            self._timeout_before = self.sock.gettimeout()
            self.sock.settimeout(self.send_timeout)

    def close(self):
        with _taken_in_time():  # it may send the head, or the last chunk
            super().close()
        if self._deadline_started:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self._timeout_before)

    def _bounded_write(self, arg):
        whole_body = (
            not self.headers_sent
            and not self.chunked
            and not self._omits_body
            and isinstance(arg, bytes)
            and self.response_length == len(arg)
        )
        if not whole_body:
            return super().write(arg)  # through send_headers() above
        # The head exactly as gunicorn's send_headers() builds it, then the body.
        self._start_deadline()
        head = self.default_headers()
        head.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self.headers_sent = True
        self.sent += len(arg)
        send_whole(self.sock, util.to_bytestring("".join(head) + "\r\n", "latin-1") + arg)

    def should_close(self):
        # A body left (partly) unread: the connection cannot carry another request.
        return super().should_close() or body_deadline.unread(self.req)


def post_request(_worker, _req, _environ, resp) -> None:
    """gunicorn's post_request hook (after the access log line): an answer that closes the
    connection (a body not read whole, or `Connection: close`) closes lingering, so that the
    client reads it. Here, in the request's greenlet or thread: gthread's own close lingers
    in its main loop, up to 2 s for each client that neither closes nor sends (10 such
    clients held liveness for 20 s)."""
    if resp is not None and resp.headers_sent and resp.should_close():
        body_deadline.linger(resp.sock)
    if _take_turns is not None:
        _take_turns()


# Under gevent, after each answer the connection's greenlet lets every other one that is
# ready run first (gevent.sleep(0)). gunicorn's gevent worker serves a keep-alive connection's
# requests in a loop that yields only when a read or write would wait: any connection whose
# next request has already arrived keeps the worker. A client that pipelines its requests and
# reads the answers as they come never makes it wait, and held the worker, its probes and its
# heartbeat with it, for as long as it kept sending (one connection pipelining 100,000
# liveness GETs: no probe answered in 10 s; gunicorn's master kills a worker whose heartbeat
# stops for TIMEOUT seconds); plain keep-alive load did it in bursts (wrk -c200 held probes up
# to 4 s). A turn is a switch to the hub and back; a probe now waits at most one answer of each
# busy connection. Under gthread each connection has a thread of its own.
_take_turns = None


# The security headers of every answer (page.SECURITY_HEADERS), set by install(): page.py
# imports Flask and redis-py, which gunicorn's master must not.
_error_headers = ""


def write_error(sock, status: int, reason: str, message: str) -> None:
    """gunicorn's util.write_error, in JSON: `{"error": message}` with the headers of every
    other answer, then a lingering close (the rest of the request may still be arriving)."""
    body = json.dumps({"error": message or reason.lower()}, separators=(",", ":")).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER}\r\nDate: {http_date()}\r\n"
        f"Connection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{_error_headers}\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)
    body_deadline.linger(sock)


def install(worker, body_timeout: float) -> None:
    """From now on this process's gunicorn answers through OneWriteResponse (gunicorn looks the
    class up in its wsgi module for every request), dates them from the cache, answers its own
    errors in JSON and reads requests under deadlines: the body within `body_timeout`; under
    gthread the head too, within the keep-alive timeout (gevent's worker bounds it itself)."""
    global _error_headers, _take_turns
    from gunicorn.workers.gthread import ThreadWorker

    from .page import SECURITY_HEADERS

    _error_headers = "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS)
    OneWriteResponse.send_timeout = body_timeout
    wsgi.Response = OneWriteResponse
    util.http_date = http_date
    util.write_error = write_error
    # By its class, not its name: GUNICORN_CMD_ARGS may name it by its path.
    gthread = isinstance(worker, ThreadWorker)
    if not gthread:  # gevent: the other worker class the settings allow
        from gevent import sleep

        _take_turns = sleep
    body_deadline.install(body_timeout, worker.cfg.keepalive if gthread else None)
