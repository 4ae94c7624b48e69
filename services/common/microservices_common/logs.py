"""One logging setup for all services: stdout, one event per line.

LOG_FORMAT=text (default) gives readable lines; LOG_FORMAT=json gives one JSON object per
line for log aggregators. LOG_LEVEL picks the level. Structured fields go through
`log_event`, which puts them in the JSON object (and after the message in text mode).

A service's ledger (`ledger_logger`: the counter's "incremented" and "abandoned" lines) is
written whatever LOG_LEVEL says: it is the record that the count can be checked against.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
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
        entry: dict[str, Any] = {
            "time": f"{self._utc_second(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__(f"%(asctime)s %(levelname)s {service} %(message)s")
        self._local_second = OnceASecond(
            lambda s: time.strftime(self.default_time_format, self.converter(s))
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt:
            return super().formatTime(record, datefmt)
        # logging's own format (local time, milliseconds after a comma), from the cache.
        return self.default_msec_format % (self._local_second(record.created), record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # Every field, for a reader who greps for it (even when the message says it too),
        # the event first: `event=abandoned` tells ledger lines apart in text too.
        # A value with spaces is quoted, so that key=value pairs can be read back.
        extra = [f"{k}={quote(v)}" for k, v in getattr(record, "fields", {}).items()]
        return " ".join([line, *extra])


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
        "class": "logging.StreamHandler",
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
