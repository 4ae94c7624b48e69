"""One logging setup for all services: stdout, one event per line.

LOG_FORMAT=text (default) gives readable lines; LOG_FORMAT=json gives one JSON object per
line for log aggregators. LOG_LEVEL picks the level. Structured fields go through
`log_event`, which puts them in the JSON object (and after the message in text mode).

A service's ledger (`ledger_logger`: the counter's "incremented" and "abandoned" lines) is
written whatever LOG_LEVEL says: it is the record that the count can be checked against.

Every line goes out through one `StdoutHandler`, which can also hold lines back (the server's
access log, one line per request) and write them in batches: see its docstring.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.config
import os
import select
import threading
import time
import weakref
from typing import Any

from .config import env_choice
from .once_a_second import OnceASecond

LEDGER = "ledger"
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service
        self._utc_second = OnceASecond(lambda s: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)))

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(record.created, record.msecs, record.levelname, record.name)
        entry["message"] = record.getMessage()
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def info_line(self, created: float, msecs: float, logger: str, message: str) -> str:
        """The line `format` gives an INFO record of `logger` with `message` (no fields)."""
        entry = self._entry(created, msecs, "INFO", logger)
        entry["message"] = message
        return json.dumps(entry, default=str)

    def _entry(self, created: float, msecs: float, level: str, logger: str) -> dict[str, Any]:
        return {
            "time": f"{self._utc_second(created)}.{int(msecs):03d}Z",
            "level": level.lower(),
            "service": self.service,
            "logger": logger,
        }


class TextFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__(f"%(asctime)s %(levelname)s {service} %(message)s")
        self.service = service
        self._local_second = OnceASecond(
            lambda s: time.strftime(self.default_time_format, self.converter(s))
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt:
            return super().formatTime(record, datefmt)
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        # logging's own format (local time, milliseconds after a comma), from the cache.
        return self.default_msec_format % (self._local_second(created), msecs)

    def info_line(self, created: float, msecs: float, _logger: str, message: str) -> str:
        """The line `format` gives an INFO record with `message` (no fields)."""
        return f"{self._time(created, msecs)} INFO {self.service} {message}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # Every field, for a reader who greps for it (even when the message says it too),
        # the event first: `event=abandoned` tells ledger lines apart in text too.
        # A value with spaces is quoted, so that key=value pairs can be read back.
        extra = [f"{k}={quote(v)}" for k, v in getattr(record, "fields", {}).items()]
        return " ".join([line, *extra])


class StdoutHandler(logging.StreamHandler):
    """stdout, one line per record; and lines held back, for the server's access log.

    A log record costs more than its line: made, filtered, locked, formatted and written, one
    per request took a tenth of the server's CPU (scripts/benchmark, README "Measured"). A held
    line (`hold_info`) is formatted straight from its message, as `format` would have, and
    written with the others, at the latest:

    - HOLD_SECONDS after it was held (a flusher thread, a greenlet under gevent, started in
      the process that first holds a line: each worker, after fork);
    - once HOLD_LINES are held;
    - with the next record of any level, before it: lines stay in the order they were made,
      and a warning is never kept waiting;
    - at exit (logging flushes every handler; gunicorn logs each worker's exit).

    Lines go out in writes of whole lines, each at most PIPE_BUF bytes (4 KiB on Linux): the
    kernel writes that much to a pipe in one piece, so the lines of several workers sharing
    one stdout never cut into each other, however slowly the pipe is read. (A single line
    longer than that, say a traceback in JSON, goes out alone and can be cut into, as any
    write that size; access lines are kept shorter: access_log.URI_SHOWN.) What a process
    killed outright (SIGKILL, the OOM killer) held is lost: at most HOLD_SECONDS of access
    lines. nginx's `access_log ... buffer= flush=` makes the same trade.
    """

    HOLD_SECONDS = 0.2
    HOLD_LINES = 100

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        # Appended without a lock (atomic on a deque), popped and written under the handler's.
        # (Under gevent no greenlet switches while it is held: writes to stdout block.)
        self._held: collections.deque[str] = collections.deque()
        # Set while lines are held; made with the flusher, in the process that holds them.
        self._holding: threading.Event | None = None
        _handlers.add(self)

    def hold_info(self, logger: str, message: str) -> None:
        """Hold an INFO line of `logger` (its level already checked by the caller)."""
        now = time.time_ns()  # a record's time and milliseconds, as logging takes them (3.13)
        created, msecs = now / 1e9, (now % 1_000_000_000) // 1_000_000
        line = self.formatter.info_line(created, msecs, logger, message)  # type: ignore[union-attr]
        self._held.append(line)
        holding = self._holding if self._holding is not None else self._start_flusher()
        if not holding.is_set():
            holding.set()
        if len(self._held) >= self.HOLD_LINES:
            self._write_held()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self._write([*self._pop_held(), line])
        except RecursionError:  # as logging's own handlers do
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            held = self._pop_held()
            if held:
                self._write(held)
            else:
                super().flush()

    def _write_held(self) -> None:
        """flush(), reporting a failure as logging reports a record it could not write (a
        closed or broken stdout), never raising into the request that held the line."""
        lines = len(self._held)
        try:
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": f"{lines} held lines"}))

    def _pop_held(self) -> list[str]:
        held = self._held
        return [held.popleft() for _ in range(len(held))]

    def _write(self, lines: list[str]) -> None:
        chunk, size = [], 0
        for line in lines:
            line += self.terminator
            length = len(line) if line.isascii() else len(line.encode())
            if chunk and size + length > select.PIPE_BUF:
                self._write_at_once("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += length
        self._write_at_once("".join(chunk))

    def _write_at_once(self, text: str) -> None:
        self.stream.write(text)
        super().flush()  # the stream's own buffer out now: one write(2) per call

    def _start_flusher(self) -> threading.Event:
        flusher = None
        with self.lock:  # type: ignore[union-attr]
            if self._holding is None:  # not started by another thread meanwhile
                holding = self._holding = threading.Event()

                def flush_for_ever() -> None:
                    while True:
                        holding.wait()  # idle: no wake-ups
                        time.sleep(self.HOLD_SECONDS)
                        holding.clear()  # before the pop: a line held after it sets it again
                        self._write_held()

                flusher = threading.Thread(target=flush_for_ever, name="log-flusher", daemon=True)
        # Started outside the lock: under gevent, start() waits for the new greenlet to run,
        # and no greenlet that logs may wait on a lock held meanwhile.
        if flusher is not None:
            flusher.start()
        return self._holding

    def _after_fork_in_child(self) -> None:
        """What the parent held is its own to write, and its flusher thread is not here. (A
        safeguard: gunicorn's master holds no lines, as only workers answer requests.)"""
        self._held.clear()
        self._holding = None


# Every StdoutHandler, to be reset in a child process (os.register_at_fork).
_handlers: weakref.WeakSet[StdoutHandler] = weakref.WeakSet()


def _reset_handlers_after_fork() -> None:
    for handler in list(_handlers):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_handlers_after_fork)


def quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() for c in text) else text


def formatter(service: str, log_format: str) -> logging.Formatter:
    return JsonFormatter(service) if log_format == "json" else TextFormatter(service)


def logging_config(service: str) -> dict[str, Any]:
    """A logging.config.dictConfig dict from LOG_FORMAT and LOG_LEVEL.

    The services apply it with setup_logging; the server hands it to gunicorn
    (logconfig_dict), so gunicorn's own lines and access log look like the app's.

    It also spares every record what no format here prints: the caller's file, line and
    function (a walk up the stack; `stack_info` too) and the multiprocessing process name,
    two of the switches in the logging HOWTO's "Optimization" section: a line costs about a
    fifth less (the server writes one per request). The thread and process ids stay, for
    formats of one's own.
    """
    logging._srcfile = None
    logging.logMultiprocessing = False
    log_format = env_choice("LOG_FORMAT", "text", FORMATS)
    level = env_choice("LOG_LEVEL", "info", LEVELS).upper()
    handler = {
        "class": f"{__name__}.StdoutHandler",
        "stream": "ext://sys.stdout",
        "formatter": "default",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter, "service": service, "log_format": log_format}},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            **{
                name: {"level": level, "handlers": ["stdout"], "propagate": False}
                for name in ("gunicorn.error", "gunicorn.access")
            },
            f"{service}.{LEDGER}": {"level": "INFO"},
        },
    }


def setup_logging(service: str) -> logging.Logger:
    """Configure logging from LOG_FORMAT and LOG_LEVEL; return the service's logger."""
    logging.config.dictConfig(logging_config(service))
    return logging.getLogger(service)


def ledger_logger(service_logger: logging.Logger) -> logging.Logger:
    """The service's ledger: logged at INFO and above whatever LOG_LEVEL is."""
    return service_logger.getChild(LEDGER)


def log_event(
    logger: logging.Logger, event: str, message: str, level: int = logging.INFO, **fields: Any
) -> None:
    """Log `message` with machine-readable fields, `event` naming what happened."""
    logger.log(level, message, extra={"fields": {"event": event, **fields}})
