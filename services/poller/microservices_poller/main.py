"""microservices-poller: GET the count every INTERVAL seconds and print `Current counter: N`.

An error prints one line and the loop goes on; SIGTERM or SIGINT stops it with exit 0.
"""

from __future__ import annotations

import logging
import sys

import requests
from microservices_common.config import exit_on_config_error
from microservices_common.heartbeat import Heartbeat
from microservices_common.logs import log_event, setup_logging
from microservices_common.signals import StopSignal
from microservices_common.worker import WorkerSettings, http_session, run_ticks


def poll_once(session: requests.Session, settings: WorkerSettings, log: logging.Logger) -> None:
    try:
        response = session.get(settings.api_url + "/", timeout=settings.request_timeout)
        if response.status_code != 200:
            raise requests.HTTPError(f"HTTP {response.status_code}: {response.text.strip()}")
        count = int(response.json()["count"])
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        log_event(
            log,
            "poll_failed",
            f"Could not read the counter: {type(exc).__name__}: {exc}",
            logging.WARNING,
        )
        return
    log_event(log, "count", f"Current counter: {count}", count=count)


@exit_on_config_error
def main() -> int:
    log = setup_logging("poller")
    settings = WorkerSettings.from_env()
    stop = StopSignal().install()
    session = http_session("microservices-poller")
    log_event(log, "started", f"polling {settings.api_url} every {settings.interval:g}s")
    run_ticks(
        settings.interval,
        lambda: poll_once(session, settings, log),
        stop,
        Heartbeat(settings.heartbeat_file),
    )
    log_event(log, "stopped", f"stopped by {stop.signal_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
