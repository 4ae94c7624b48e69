"""One write per answer: gunicorn's response, sending the head and a small body together.

gunicorn writes an answer's status line and headers in one send() and its body in another.
Every answer here is small JSON whose body Flask hands over whole, with its Content-Length:
two sends are two system calls and two TCP segments where one does (Node.js sends one too).
`install()` (a worker hook, lifecycle.post_worker_init) makes each worker's gunicorn build its
answers with `OneWriteResponse`; any other answer (streamed, chunked, HEAD, 204/304) goes
through gunicorn's own code unchanged.
"""

from __future__ import annotations

from gunicorn import util
from gunicorn.http import wsgi


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
        util.write(self.sock, util.to_bytestring("".join(head) + "\r\n", "latin-1") + arg)


def install() -> None:
    """From now on this process's gunicorn answers through OneWriteResponse (gunicorn looks the
    class up in its wsgi module for every request)."""
    wsgi.Response = OneWriteResponse
