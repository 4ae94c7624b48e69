"""Deadlines on what a client sends, and a lingering close: for gevent and gthread workers alike.

gunicorn bounds the wait for a request's head (the keep-alive timeout, 5 s, under gevent) but
not its body: a POST announcing `Content-Length: 1000` and sending a byte every few seconds
held its connection (a gevent slot, a gthread thread) for ever. So:

- **The body must arrive within BODY_TIMEOUT** of the end of its head. Every socket read of a
  request goes through gunicorn's unreader (`chunk()`); `DeadlineUnreader` gives each one only
  the time left until the request's deadline, and past it raises `BodyTimeout`, which the app
  answers 408 (errors.py). One clock read per recv(), no timer, no thread, no greenlet: a
  small body arrives with its head and is read without any recv() of its own. However the body
  trickles, each recv() waits at most what is left, so the deadline holds.
- **gthread: the head too**, within the keep-alive timeout (gevent's worker does this itself):
  a head trickled a line a second held a thread for ever. Past it the connection is closed
  without an answer, as gevent's worker does.
- **An answer to a request whose body was not read whole closes the connection** (`unread()`,
  used by wire.py): a refused body (413 at once, a 405, a 401), a GET with a body, a body cut
  by its deadline. gunicorn would otherwise read it away before the next request on the
  connection, under no deadline (gevent) or one it does not keep (gthread).
- **The close lingers** (`linger()`), as nginx's `lingering_close`: the answer goes out with a
  FIN, then what the client still sends is read and dropped until it closes, is silent for
  LINGER_IDLE, LINGER_SECONDS pass or LINGER_BYTES are read. Closing with unread bytes makes
  the kernel send a reset, which can take the answer with it before the client reads it: a
  client sending a 2 MB body whole before reading (as requests does) got a reset instead of
  its 413. It ends by shutting the read side too, so that gthread's own close (a drain of up
  to 2 s in its main loop) returns at once.

- **The head is at most about 40 KiB as a whole** (HEAD_LIMIT, 32 KiB, counted in whole reads
  of 8 KiB, one of which may carry a body's first bytes) (gunicorn's own limits, 100 fields of
  8,190 bytes, allow 810 KB, which its parser rescans on every read: 77 ms of CPU a request).
  Past it gunicorn's 431 answers (in JSON, wire.py).
- **An answer must be taken within BODY_TIMEOUT too** (wire.py): a client that never reads
  held its connection, a gthread thread, for ever.

`install(body_timeout, head_timeout)` (a worker hook, via wire.install) puts this in place in
the worker's gunicorn.
"""

from __future__ import annotations

import contextlib
import socket
import time

from gunicorn.http import parser
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.errors import LimitRequestHeaders, NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.unreader import SocketUnreader

# The lingering close: at most this long (gunicorn's own graceful close waits as long), this
# silent and this much read. What is read is a refused body, which a client such as requests
# sends whole before it reads the answer: 20 MB arrive over loopback in some 20 ms. Under
# gthread a lingering close holds its thread, hence the short bounds.
LINGER_SECONDS = 2.0
LINGER_IDLE = 0.5
LINGER_BYTES = 64 * 1024 * 1024
# A request head: the request line and every header together (ours are well under 1 KiB).
HEAD_LIMIT = 32 * 1024


class BodyTimeout(Exception):
    """The request body did not arrive within BODY_TIMEOUT. Not an OSError: werkzeug would
    turn that into a 400 "client disconnected"."""

    def __init__(self, seconds: float):
        super().__init__(f"request body not received within {seconds:g} s (BODY_TIMEOUT)")
        self.seconds = seconds


class HeadTimeout(NoMoreData):
    """A request head did not arrive in time: gunicorn closes the connection without an
    answer (what its gevent worker does when its keep-alive timeout ends a head)."""


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, each recv() bounded by the deadline of the request being read
    (None: no deadline of ours)."""

    deadline: float | None = None
    on_expiry: type[Exception] | None = None
    seconds: float = 0.0
    head_read: int | None = None  # bytes read while reading a head (None: reading a body)

    def chunk(self, size_hint=None):
        data = self._chunk(size_hint)
        if self.head_read is not None:
            self.head_read += len(data)
            if self.head_read > HEAD_LIMIT + 8192:  # a body's first bytes may come with it
                raise LimitRequestHeaders(f"request head over {HEAD_LIMIT} bytes")
        return data

    def _chunk(self, size_hint=None):
        if self.deadline is None:
            return super().chunk(size_hint)
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._expire()
        sock = self.sock
        before = sock.gettimeout()
        # Which timeout bounds this recv(): ours, or a shorter one of gunicorn's own. Told by
        # the timeouts, not by the clock after: PyPy's recv() times out up to a millisecond
        # early (whole milliseconds), before the deadline by the clock.
        ours = before is None or before <= 0 or left <= before
        sock.settimeout(left if ours else before)
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            if not ours:
                raise
            self._expire()
        finally:
            sock.settimeout(before)

    def _expire(self):
        if self.on_expiry is HeadTimeout:
            # No answer to write: stop reading and writing now, so that gthread's own close
            # (a drain in its main loop) returns at once.
            shutdown(self.sock, socket.SHUT_RDWR)
            raise HeadTimeout(b"")
        raise BodyTimeout(self.seconds)


class DeadlineRequest(Request):
    """gunicorn's request, its head read within `head_timeout` (None: gunicorn's own bound)
    and then its body within `body_timeout`."""

    head_timeout: float | None = None
    body_timeout: float = 5.0

    def __init__(self, cfg, unreader, peer_addr, req_number=1):
        deadline_on = isinstance(unreader, DeadlineUnreader)
        if deadline_on:
            # The previous request's body is behind us (see unread()): now the next head.
            unreader.on_expiry = HeadTimeout
            unreader.seconds = self.head_timeout or 0.0
            unreader.deadline = _deadline(self.head_timeout)
            unreader.head_read = 0
        try:
            super().__init__(cfg, unreader, peer_addr, req_number)
        finally:
            if deadline_on:
                unreader.head_read = None
        if deadline_on:
            unreader.on_expiry = BodyTimeout
            unreader.seconds = self.body_timeout
            unreader.deadline = time.monotonic() + self.body_timeout


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def unread(req) -> bool:
    """True when the request's body has not been read whole from the connection (or reading
    it failed): the connection cannot carry another request."""
    body = getattr(req, "body", None)
    if body is None:
        return False
    if getattr(body, "failed", False):
        return True
    reader = getattr(body, "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length > 0
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return False


def shutdown(sock, how: int) -> None:
    with contextlib.suppress(OSError):  # the client is gone already
        sock.shutdown(how)


def linger(
    sock,
    seconds: float = LINGER_SECONDS,
    idle: float = LINGER_IDLE,
    max_bytes: int = LINGER_BYTES,
) -> None:
    """Send FIN after the answer, read and drop what the client still sends (until it closes,
    is silent for `idle`, `seconds` pass or `max_bytes` are read), then stop reading. The
    worker closes the socket itself afterwards."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    before = sock.gettimeout()
    end = time.monotonic() + seconds
    scratch = bytearray(65536)
    drained = 0
    try:
        while drained < max_bytes and (left := end - time.monotonic()) > 0:
            sock.settimeout(min(idle, left))
            read = sock.recv_into(scratch)
            if not read:
                break
            drained += read
    except OSError:  # silent for `idle` (a timeout), or reset: done either way
        pass
    finally:
        shutdown(sock, socket.SHUT_RD)
        with contextlib.suppress(OSError):
            sock.settimeout(before)


def install(body_timeout: float, head_timeout: float | None) -> None:
    """From now on this process's gunicorn reads requests with these deadlines."""
    DeadlineRequest.body_timeout = body_timeout
    DeadlineRequest.head_timeout = head_timeout
    parser.SocketUnreader = DeadlineUnreader
    parser.RequestParser.mesg_class = DeadlineRequest
