"""What the two support-tier workers (counter and poller) share: their settings, an HTTP
session to the server, and the tick loop with its heartbeat and prompt stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from .config import env_float, env_str, env_url
from .heartbeat import DEFAULT_FILE, Heartbeat
from .signals import StopSignal


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
            request_timeout=env_float("REQUEST_TIMEOUT", cls.request_timeout, 0.1, 300),
            heartbeat_file=env_str("HEARTBEAT_FILE", DEFAULT_FILE),
        )


def http_session(user_agent: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    # Proxies from the environment would be wrong for in-cluster calls to app-tier.
    session.trust_env = False
    return session


def run_ticks(
    interval: float, tick: Callable[[], None], stop: StopSignal, heartbeat: Heartbeat
) -> None:
    """Call tick() every `interval` seconds (from start to start) until a stop is asked for."""
    next_start = time.monotonic()
    while not stop.stopping:
        heartbeat.beat()
        tick()
        heartbeat.beat()
        next_start = max(next_start + interval, time.monotonic())
        if stop.wait(next_start - time.monotonic()):
            break
