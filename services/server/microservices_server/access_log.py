"""gunicorn's logger with a lean access log (gunicorn_conf.py names it as `logger_class`).

ACCESS_LOG picks which requests get a line:

- `api` (default): every request but the probes and /metrics, which the kubelet and Prometheus
  ask every few seconds for ever and which would bury the lines that matter;
- `all`: every request;
- `off`: none (gunicorn then skips building them too).

gunicorn's own access log builds some twenty "atoms" (every request header among them) and
formats an Apache line for each request; at a few thousand requests a second that is a tenth
of the server's CPU. This one formats the few that matter:

    127.0.0.1 "POST / HTTP/1.1" 200 13 0.8ms

(a URI past URI_SHOWN characters is cut there, followed by how many more it had)

and hands the message to the stdout handler to be held and written in batches, at most 0.2 s
later and before any other line (microservices_common.logs.StdoutHandler), rather than as a
log record of its own: the record cost more than everything else the line takes.

Imported by gunicorn's master: only the standard library, gunicorn and our logging here.
"""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger
from microservices_common.logs import StdoutHandler

# At most this much of a request's URI goes into its line (gunicorn allows ~4 KiB), the rest
# counted: a line must fit in one atomic write to the pipe that every worker shares, PIPE_BUF
# (4 KiB) even with JSON's escapes (logs.StdoutHandler), or another worker's lines cut into it.
URI_SHOWN = 512


def asked_by_machines(path: str) -> bool:
    """The probes and /metrics: asked every few seconds, for ever, by the kubelet and
    Prometheus. No line for them unless ACCESS_LOG=all."""
    return path.startswith("/probe/") or path == "/metrics"


class AccessLogger(Logger):
    """A gunicorn logger; `mode` is ACCESS_LOG's value (set by `logger_class`)."""

    mode = "api"
    # Where held lines go: the access logger's StdoutHandler (logs.logging_config), if any.
    held_by: StdoutHandler | None = None

    def setup(self, cfg) -> None:  # gunicorn's: at start and on every reload (SIGHUP)
        super().setup(cfg)
        handlers = [h for h in self.access_log.handlers if isinstance(h, StdoutHandler)]
        self.held_by = handlers[0] if len(handlers) == 1 else None

    def _compute_access_log_enabled(self) -> bool:
        return self.mode != "off" and super()._compute_access_log_enabled()

    def access(self, resp, req, environ, request_time) -> None:
        path = environ.get("PATH_INFO", "")
        if self.mode == "api" and asked_by_machines(path):
            return
        if not (self.access_log_enabled and self.access_log.isEnabledFor(logging.INFO)):
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, uri = environ.get("REQUEST_METHOD"), environ.get("RAW_URI", path)
        if len(uri) > URI_SHOWN:
            uri = f"{uri[:URI_SHOWN]}...(+{len(uri) - URI_SHOWN})"
        request = f"{method} {uri} {environ.get('SERVER_PROTOCOL')}"
        took = request_time.total_seconds() * 1000
        address, sent = environ.get("REMOTE_ADDR", "-"), getattr(resp, "sent", "-")
        message = f'{address} "{request}" {status} {sent} {took:.1f}ms'
        if self.held_by is not None:
            self.held_by.hold_info(self.access_log.name, message)
        else:  # a logging configuration of one's own: a record, as any other line
            self.access_log.info("%s", message)


def logger_class(mode: str) -> type[AccessLogger]:
    """The logger class for ACCESS_LOG=`mode`: gunicorn builds it with its config only."""
    return type("AccessLogger", (AccessLogger,), {"mode": mode})
