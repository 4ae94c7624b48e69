"""microservices-counter: every INTERVAL seconds, POST a random increment to the server.

Each increment carries a fresh Idempotency-Key. A transient failure (connection refused,
timeout, 408, 429, 5xx) retries the same key with capped exponential backoff and jitter, so a
retry after a lost answer can never count twice; the loop never exits because the server or
Redis is away. With LOG_FORMAT=json each acknowledged increment is one line holding
"event": "incremented": the ledger the end-to-end tests add up.

Load mode (--rate, --concurrency) drives the autoscaling lesson: see microservices_counter.load.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import uuid

import requests
from microservices_common.backoff import Backoff
from microservices_common.config import env_float, env_int, exit_on_config_error
from microservices_common.heartbeat import Heartbeat
from microservices_common.logs import log_event, setup_logging
from microservices_common.signals import StopSignal
from microservices_common.worker import WorkerSettings, http_session, run_ticks

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class Counter:
    def __init__(
        self,
        settings: WorkerSettings,
        max_increment: int,
        backoff: Backoff,
        stop: StopSignal,
        log: logging.Logger,
        heartbeat: Heartbeat,
    ):
        self.settings = settings
        self.max_increment = max_increment
        self.backoff = backoff
        self.stop = stop
        self.log = log
        self.heartbeat = heartbeat
        self.session = http_session("microservices-counter")
        self.rng = random.Random()

    def tick(self) -> None:
        self.send(self.rng.randint(1, self.max_increment))

    def send(self, increment: int) -> int | None:
        """POST one increment until the server acknowledges it; return the new count.

        Returns None if the server rejected it for good (a 4xx) or a stop came first.
        """
        key = str(uuid.uuid4())
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            self.heartbeat.beat()  # retrying is alive, not hung
            try:
                response = self.session.post(
                    self.settings.api_url + "/",
                    json={"increment": increment},
                    headers={"Idempotency-Key": key},
                    timeout=self.settings.request_timeout,
                )
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    count = int(response.json()["count"])
                    log_event(
                        self.log,
                        "incremented",
                        f"Incremented by {increment}, count is now {count}",
                        increment=increment,
                        count=count,
                        idempotency_key=key,
                        attempts=attempt,
                    )
                    return count
                if response.status_code not in TRANSIENT_STATUS:
                    log_event(
                        self.log,
                        "rejected",
                        f"server rejected increment {increment}: HTTP "
                        f"{response.status_code} {response.text.strip()}",
                        logging.ERROR,
                        increment=increment,
                        idempotency_key=key,
                    )
                    return None
                problem = f"HTTP {response.status_code}"
            log_event(
                self.log,
                "retrying",
                f"increment {increment} not acknowledged ({problem}); "
                f"retry {attempt} in {delay:.2f}s with the same key",
                logging.WARNING,
                increment=increment,
                idempotency_key=key,
                attempt=attempt,
            )
            if self.stop.wait(delay):
                # It may or may not have been counted; the key says which if it is replayed.
                log_event(
                    self.log,
                    "abandoned",
                    f"stopping; increment {increment} was not acknowledged",
                    logging.WARNING,
                    increment=increment,
                    idempotency_key=key,
                )
                return None
        return None  # not reached: delays() never ends


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="microservices-counter",
        description="Increment the server's counter every INTERVAL seconds (API_URL).",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="load mode: requests per second in total (0 = as fast as possible)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="load mode: parallel connections (default 4)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0,
        help="load mode: stop after this many seconds (0 = until SIGTERM)",
    )
    return parser.parse_args(argv)


@exit_on_config_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = setup_logging("counter")
    settings = WorkerSettings.from_env()
    stop = StopSignal().install()
    if args.rate is not None or args.concurrency is not None:
        from .load import run_load

        return run_load(settings, args.rate or 0, args.concurrency or 4, args.duration, stop, log)
    counter = Counter(
        settings,
        max_increment=env_int("MAX_INCREMENT", 10, 1, 2**31),
        backoff=Backoff(
            base=env_float("RETRY_BASE", 0.2, 0.001), cap=env_float("RETRY_CAP", 5.0, 0.001)
        ),
        stop=stop,
        log=log,
        heartbeat=Heartbeat(settings.heartbeat_file),
    )
    log_event(log, "started", f"incrementing {settings.api_url} every {settings.interval:g}s")
    run_ticks(settings.interval, counter.tick, stop, counter.heartbeat)
    log_event(log, "stopped", f"stopped by {stop.signal_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
