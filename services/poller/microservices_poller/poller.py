"""microservices-poller: GET the count every INTERVAL seconds and print `Current counter: N`.

An error prints one line and the loop goes on; SIGTERM or SIGINT stops it with exit 0. With
OUTPUT_FILE set, each count is also appended to that file (output.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from microservices_common.client import Session, count_in, describe, excerpt, send
from microservices_common.logs import log_event
from microservices_common.runner import Worker, run

from .output import OutputFile


def poll_once(session: Session, worker: Worker, output: OutputFile | None = None) -> None:
    settings = worker.settings
    try:
        response = send(session, "GET", settings.api_url + "/", settings.request_timeout)
    except Exception as exc:  # noqa: BLE001 - no whole answer: one line, and on
        problem, level = describe(exc, session)
    else:
        count = count_in(response)
        if count is not None:
            log_event(worker.log, "count", f"Current counter: {count}", count=count)
            if output is not None:
                output.append(f"Current counter: {count}")
            return
        problem, level = f"HTTP {response.status}: {excerpt(response)}", logging.WARNING
    log_event(worker.log, "poll_failed", f"Could not read the counter: {problem}", level)


def make_tick(worker: Worker) -> Callable[[], None]:
    session = worker.http_session()
    output = OutputFile.from_env(worker.log)
    return lambda: poll_once(session, worker, output)


def main() -> int:
    return run("poller", make_tick, "polling")


if __name__ == "__main__":
    sys.exit(main())
