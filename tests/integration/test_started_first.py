"""The counter and the poller started before the server (as compose and Kubernetes may start
them): one line each says the connection is refused and that this is expected, not a warning
a second; once the server has answered, a refusal is an outage and is said every time."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import Service, free_port, wait_for

REFUSED = "connection refused"
EXPECTED = "the server is not up yet"


class CountingServer:
    """A server that answers every request {"count": 1}, started on a given port."""

    def __init__(self, port: int):
        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"count": 1}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def refusals(service: Service) -> list[str]:
    return [line for line in service.lines if REFUSED in line]


@pytest.mark.parametrize(
    ("command", "answered"),
    [("microservices-counter", "Incremented by"), ("microservices-poller", "Current counter")],
)
def test_a_worker_started_before_the_server_says_so_once(command, answered):
    port = free_port()
    worker = Service(
        command,
        {
            "API_URL": f"http://127.0.0.1:{port}",
            "INTERVAL": "0.2",
            "LOG_FORMAT": "text",
            "RETRY_BASE": "0.05",
            "RETRY_CAP": "0.2",
        },
    )
    try:
        wait_for(lambda: refusals(worker), what="the first refusal")
        time.sleep(2)  # about ten more ticks or retries, every one refused
        [line] = refusals(worker)
        assert EXPECTED in line and "Errno" not in line and "Error" not in line, line
        assert "))" not in line, f"one sentence, not parentheses in parentheses: {line}"

        server = CountingServer(port)
        try:
            wait_for(lambda: answered in worker.output, what="an answer")
        finally:
            server.stop()
        # Now an outage: said every time.
        wait_for(lambda: len(refusals(worker)) >= 3, what="refusals said again")
        assert all(EXPECTED not in line for line in refusals(worker)[1:])
        assert worker.proc.poll() is None
    finally:
        assert worker.stop() == 0
