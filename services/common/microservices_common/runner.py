"""The one way the support-tier workers (counter and poller) run.

    run("poller", make_tick, "polling")

reads the settings (a bad value: one line naming it, exit 2), sets up logging, SIGTERM and
SIGINT handling and the heartbeat, asks `make_tick(worker)` for the function to call every
INTERVAL seconds, runs it until a stop is asked for, and exits 0. Each worker keeps only what
is its own: its tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .client import Session
from .config import env_float, env_str, env_url, exit_on_config_error
from .heartbeat import DEFAULT_FILE, Heartbeat
from .identity import user_agent
from .logs import log_event, setup_logging
from .signals import StopSignal

# While waiting for the next tick the loop still beats this often, so that an INTERVAL longer
# than the liveness probe's --max-age is not mistaken for a hang.
BEAT_EVERY = 1.0


@dataclass(frozen=True)
class WorkerSettings:
    api_url: str = "http://localhost:8080"
    interval: float = 1.0
    request_timeout: float = 2.0
    heartbeat_file: str | None = DEFAULT_FILE

    @classmethod
    def from_env(cls) -> WorkerSettings:
        return cls(
            api_url=env_url("API_URL", cls.api_url, ("http", "https")),
            interval=env_float("INTERVAL", cls.interval, 0.01, 3600),
            # Below the liveness probe's --max-age (30 s): a request in flight cannot beat.
            request_timeout=env_float("REQUEST_TIMEOUT", cls.request_timeout, 0.1, 20),
            heartbeat_file=env_str("HEARTBEAT_FILE", DEFAULT_FILE),
        )


@dataclass(frozen=True)
class Worker:
    """What a tick may use: the settings, the logger, the stop signal, the heartbeat."""

    name: str
    settings: WorkerSettings
    log: logging.Logger
    stop: StopSignal
    heartbeat: Heartbeat

    def http_session(self) -> Session:
        # `microservices-counter/1.0.0 (<hostname>)`: the server's page shows each pod by it.
        return Session(user_agent(self.name))

    def wait(self, seconds: float) -> bool:  # every retry wait of the counter goes here too
        """Sleep up to `seconds`, beating the heartbeat every BEAT_EVERY (waiting is alive,
        not hung); return True as soon as a stop was asked for."""
        deadline = time.monotonic() + seconds
        while True:
            self.heartbeat.beat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.stop.wait(min(remaining, BEAT_EVERY)):
                return True


def start(name: str) -> Worker:
    """Logging, settings, signal handling and heartbeat for the worker `name`."""
    log = setup_logging(name)
    settings = WorkerSettings.from_env()
    return Worker(name, settings, log, StopSignal().install(), Heartbeat(settings.heartbeat_file))


@exit_on_config_error
def run(name: str, make_tick: Callable[[Worker], Callable[[], None]], doing: str) -> int:
    worker = start(name)
    tick = make_tick(worker)
    settings = worker.settings
    log_event(worker.log, "started", f"{doing} {settings.api_url} every {settings.interval:g}s")
    run_ticks(worker, tick)
    log_event(worker.log, "stopped", f"stopped by {worker.stop.signal_name}")
    return 0


def run_ticks(worker: Worker, tick: Callable[[], None]) -> None:
    """Call tick() every INTERVAL seconds (from start to start) until a stop is asked for."""
    next_start = time.monotonic()
    while not worker.stop.stopping:
        worker.heartbeat.beat()
        tick()
        next_start = max(next_start + worker.settings.interval, time.monotonic())
        if worker.wait(next_start - time.monotonic()):
            return
