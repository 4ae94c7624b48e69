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
"""

from __future__ import annotations

import time

from gunicorn import util
from gunicorn.http import wsgi
from microservices_common.once_a_second import OnceASecond

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


class OneWriteResponse(wsgi.Response):
    def write(self, arg):
        whole_body = (
            not self.headers_sent
            and not self.chunked
            and not self._omits_body
            and isinstance(arg, bytes)
            and self.response_length == len(arg)
        )
        if not whole_body:
            return super().write(arg)
        # The head exactly as gunicorn's send_headers() builds it, then the body.
        head = self.default_headers()
        head.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self.headers_sent = True
        self.sent += len(arg)
        send_whole(self.sock, util.to_bytestring("".join(head) + "\r\n", "latin-1") + arg)


def install() -> None:
    """From now on this process's gunicorn answers through OneWriteResponse (gunicorn looks the
    class up in its wsgi module for every request) and dates them from the cache."""
    wsgi.Response = OneWriteResponse
    util.http_date = http_date
