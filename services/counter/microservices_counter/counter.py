"""microservices-counter: every INTERVAL seconds, POST a random increment to the server.

Each increment carries a fresh Idempotency-Key, and every answer falls in one of three cases:

- acknowledged: `200 {"count": <int>}`. One "incremented" ledger line.
- rejected: a 4xx other than 408, 425 and 429, or a redirect (the server never saw it). It
  changed nothing; logged, and the next tick uses a fresh key.
- unknown: no answer (refused, reset, no whole answer within REQUEST_TIMEOUT, an answer over
  64 KiB), a 5xx, 408, 425, 429, or a 200 that is not `{"count": <int>}`. It may or may not
  have been counted, so the *same* key is retried (capped exponential backoff with jitter, at
  least Retry-After): the server replays a key it has seen instead of counting it twice.
  After RETRY_DEADLINE seconds, before the server can have forgotten the key
  (IDEMPOTENCY_TTL), it gives up with an "abandoned" ledger line.

The ledger ("incremented" and "abandoned" lines, with LOG_FORMAT=json one JSON object each) is
written whatever LOG_LEVEL says: the end-to-end tests add it up against the count. The process
never exits because of what a server answered. SIGTERM lets the request in flight end (within
REQUEST_TIMEOUT), writes its ledger line ("abandoned", reason stopping, if the outcome is still
unknown) and retries no more.

Load mode (--rate, --concurrency) drives the autoscaling lesson: see load.py.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass

from microservices_common.backoff import Backoff
from microservices_common.client import Response, count_in, describe, excerpt, send
from microservices_common.config import (
    ConfigError,
    env_float,
    env_int,
    env_str,
    exit_on_config_error,
)
from microservices_common.logs import ledger_logger, log_event
from microservices_common.runner import Worker, run, start

# A 4xx that says "not now" rather than "never": retried like a 5xx.
RETRYABLE_4XX = {408, 425, 429}


@dataclass(frozen=True)
class Outcome:
    count: int | None = None  # acknowledged with this count
    rejection: str | None = None  # refused for good
    problem: str | None = None  # unknown: retry the same key
    retry_after: float = 0.0
    level: int = logging.WARNING  # of the retry's log line (client.describe)


def outcome_of(response: Response) -> Outcome:
    count = count_in(response)
    if count is not None:
        return Outcome(count=count)
    status = response.status
    if 300 <= status < 400 or (400 <= status < 500 and status not in RETRYABLE_4XX):
        return Outcome(rejection=f"HTTP {status} {excerpt(response)}")
    problem = f"HTTP {status}" if status != 200 else 'HTTP 200 without {"count": <int>}'
    return Outcome(problem=problem, retry_after=retry_after(response))


def retry_after(response: Response) -> float:
    """Seconds from a Retry-After header (a number or an HTTP date); 0 if absent or bad."""
    value = response.headers.get("Retry-After", "").strip()
    if re.fullmatch(r"[0-9]{1,9}", value):  # ASCII digits only: "²".isdigit() is true
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, IndexError):
        return 0.0


class Counter:
    def __init__(
        self,
        worker: Worker,
        max_increment: int = 10,
        backoff: Backoff | None = None,
        retry_deadline: float = 300.0,
    ):
        self.worker = worker
        self.max_increment = max_increment
        self.backoff = backoff or Backoff(base=0.2, cap=5.0)
        self.retry_deadline = retry_deadline
        self.ledger = ledger_logger(worker.log)
        self.session = worker.http_session()
        self.rng = random.Random()

    @classmethod
    def from_env(cls, worker: Worker) -> Counter:
        base = env_float("RETRY_BASE", 0.2, 0.001, 60)
        cap = env_float("RETRY_CAP", 5.0, 0.001, 600)
        if cap < base:  # blame the one that was set
            if env_str("RETRY_CAP") is None:
                raise ConfigError(
                    "RETRY_BASE", env_str("RETRY_BASE"), f"must be at most RETRY_CAP ({cap:g})"
                )
            raise ConfigError(
                "RETRY_CAP", env_str("RETRY_CAP"), f"must be at least RETRY_BASE ({base:g})"
            )
        return cls(
            worker,
            max_increment=env_int("MAX_INCREMENT", 10, 1, 2**31),
            backoff=Backoff(base=base, cap=cap),
            retry_deadline=env_float("RETRY_DEADLINE", 300.0, 1, 24 * 3600),
        )

    def tick(self) -> None:
        self.send(self.rng.randint(1, self.max_increment))

    def post(self, increment: int, key: str) -> Outcome:
        settings = self.worker.settings
        try:
            response = send(
                self.session,
                "POST",
                settings.api_url + "/",
                settings.request_timeout,
                json={"increment": increment},
                headers={"Idempotency-Key": key},
            )
            return outcome_of(response)
        except Exception as exc:  # noqa: BLE001 - whatever happened, the outcome is unknown
            problem, level = describe(exc, self.session)
            return Outcome(problem=problem, level=level)

    def send(self, increment: int) -> int | None:
        """POST one increment until it is acknowledged; return the new count, or None if it
        was rejected or abandoned (deadline passed, or a stop came first)."""
        key = str(uuid.uuid4())
        fields = {"increment": increment, "idempotency_key": key}
        deadline = time.monotonic() + self.retry_deadline
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            outcome = self.post(increment, key)
            if outcome.count is not None:
                log_event(
                    self.ledger,
                    "incremented",
                    f"Incremented by {increment}, count is now {outcome.count}",
                    count=outcome.count,
                    attempts=attempt,
                    **fields,
                )
                return outcome.count
            if outcome.rejection is not None:
                log_event(
                    self.worker.log,
                    "rejected",
                    f"server rejected increment {increment}: {outcome.rejection}",
                    logging.ERROR,
                    **fields,
                )
                return None
            if self.worker.stop.stopping:  # the request in flight was seen through; no more
                return self.abandon("stopping", fields)
            wait = min(self.backoff.cap, max(delay, outcome.retry_after))
            if time.monotonic() + wait > deadline:
                return self.abandon(f"no answer within RETRY_DEADLINE ({outcome.problem})", fields)
            log_event(
                self.worker.log,
                "retrying",
                f"increment {increment} not acknowledged ({outcome.problem}); "
                f"retry {attempt} in {wait:.2f}s with the same key",
                outcome.level,
                attempt=attempt,
                problem=outcome.problem,
                retry_in=round(wait, 3),
                **fields,
            )
            if self.worker.wait(wait):
                return self.abandon("stopping", fields)
        return None  # not reached: delays() never ends

    def abandon(self, reason: str, fields: dict) -> None:
        # It may or may not have been counted: the key says which, if it is ever replayed.
        log_event(
            self.ledger,
            "abandoned",
            f"gave up on increment {fields['increment']}: {reason}; it may or may not be counted",
            logging.WARNING,
            reason=reason,
            **fields,
        )


def number(kind: type, low: float, high: float):
    """An argparse type: a finite `kind` in [low, high], or a clear usage error (exit 2)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not low <= value <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}: {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="microservices-counter",
        description="Increment the server's counter every INTERVAL seconds (API_URL).",
    )
    parser.add_argument(
        "--rate",
        type=number(float, 0, 1_000_000),
        default=None,
        help="load mode: requests per second in total (0 = as fast as possible)",
    )
    parser.add_argument(
        "--concurrency",
        type=number(int, 1, 1024),
        default=None,
        help="load mode: parallel connections (default 4)",
    )
    parser.add_argument(
        "--duration",
        type=number(float, 0, 7 * 24 * 3600),
        default=0,
        help="load mode: stop after this many seconds (0 = until SIGTERM)",
    )
    args = parser.parse_args(argv)
    if args.rate and args.rate < 0.01:
        parser.error("--rate: 0 (as fast as possible) or at least 0.01 requests per second")
    return args


@exit_on_config_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rate is not None or args.concurrency is not None:
        from .load import run_load

        return run_load(start("counter"), args.rate or 0, args.concurrency or 4, args.duration)
    return run("counter", lambda worker: Counter.from_env(worker).tick, "incrementing")


if __name__ == "__main__":
    sys.exit(main())
