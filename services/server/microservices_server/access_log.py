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

Imported by gunicorn's master: only the standard library and gunicorn here.
"""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger


def asked_by_machines(path: str) -> bool:
    """The probes and /metrics: asked every few seconds, for ever, by the kubelet and
    Prometheus. No line for them unless ACCESS_LOG=all."""
    return path.startswith("/probe/") or path == "/metrics"


class AccessLogger(Logger):
    """A gunicorn logger; `mode` is ACCESS_LOG's value (set by `logger_class`)."""

    mode = "api"

    def _compute_access_log_enabled(self) -> bool:
        return self.mode != "off" and super()._compute_access_log_enabled()

    def access(self, resp, req, environ, request_time) -> None:
        path = environ.get("PATH_INFO", "")
        if self.mode == "api" and asked_by_machines(path):
            return
        if not (self.access_log_enabled and self.access_log.isEnabledFor(logging.INFO)):
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        self.access_log.info(
            '%s "%s %s %s" %s %s %.1fms',
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD"),
            environ.get("RAW_URI", path),
            environ.get("SERVER_PROTOCOL"),
            status,
            getattr(resp, "sent", "-"),
            request_time.total_seconds() * 1000,
        )


def logger_class(mode: str) -> type[AccessLogger]:
    """The logger class for ACCESS_LOG=`mode`: gunicorn builds it with its config only."""
    return type("AccessLogger", (AccessLogger,), {"mode": mode})
