"""microservices-await-redis: wait until Redis answers PING (the app tier's init container).

Each failed attempt is logged with the next delay (capped exponential backoff with jitter).
Exit 0 once Redis answers; with AWAIT_TIMEOUT (seconds, default 0 = wait for ever) exit 1
with a clear message when the time runs out; exit 1 on SIGTERM. A refused password, or a
database number this Redis does not have, is not going to change by waiting: exit 1 at once,
saying so (else an init container would sit in `Init` for ever with no reason given).
"""

from __future__ import annotations

import logging
import sys
import time

import redis
from microservices_common.backoff import Backoff
from microservices_common.config import env_float, exit_on_config_error
from microservices_common.logs import log_event, setup_logging
from microservices_common.signals import StopSignal

from .settings import Settings
from .store import CounterStore

BASE_DELAY = 0.2
# Redis answered, and said no: retrying cannot help.
PERMANENT = (
    redis.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
)


@exit_on_config_error
def main() -> int:
    log = setup_logging("await-redis")
    settings = Settings.from_env()
    timeout = env_float("AWAIT_TIMEOUT", 0.0, 0.0)
    max_delay = env_float("AWAIT_MAX_DELAY", 5.0, BASE_DELAY)
    stop = StopSignal().install()
    store = CounterStore.from_settings(settings)
    deadline = time.monotonic() + timeout if timeout else None
    for attempt, delay in enumerate(Backoff(base=BASE_DELAY, cap=max_delay).delays(), start=1):
        try:
            store.ping()
        except PERMANENT as exc:
            return refused(log, exc, "check REDIS_PASSWORD and REDIS_URL", attempt)
        except redis.ResponseError as exc:
            if "DB index is out of range" not in str(exc):
                raise
            return refused(
                log,
                exc,
                "REDIS_URL names a database number this Redis does not have (its `databases` "
                "setting, 16 by default, numbered from 0)",
                attempt,
            )
        except redis.RedisError as exc:
            if deadline is not None:
                delay = min(delay, deadline - time.monotonic())
            log_event(
                log,
                "redis_unavailable",
                f"redis not ready (attempt {attempt}): {type(exc).__name__}: {exc}",
                logging.WARNING,
                attempt=attempt,
                retry_in=round(max(delay, 0), 2),
            )
            if deadline is not None and delay <= 0:
                log_event(
                    log,
                    "gave_up",
                    f"gave up: redis did not answer PING within {timeout:g}s (AWAIT_TIMEOUT)",
                    logging.ERROR,
                    attempts=attempt,
                )
                return 1
            if stop.wait(delay):
                log_event(
                    log,
                    "stopped",
                    f"stopped by {stop.signal_name} before redis answered",
                    logging.ERROR,
                    attempts=attempt,
                )
                return 1
            continue
        log_event(
            log, "redis_ready", f"redis answered PING after {attempt} attempt(s)", attempts=attempt
        )
        return 0
    return 1  # not reached: delays() never ends


def refused(log: logging.Logger, exc: Exception, hint: str, attempts: int) -> int:
    log_event(
        log,
        "refused",
        f"redis refused us: {type(exc).__name__}: {exc} ({hint}; waiting will not help)",
        logging.ERROR,
        attempts=attempts,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
