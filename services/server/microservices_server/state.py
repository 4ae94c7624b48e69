"""The app's runtime state: one small typed object per app, reached through `runtime()`.

The factory builds it once; blueprints and hooks read it instead of module globals, so that
tests can build many apps side by side, each with its own Redis, settings and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from .fault_switches import Faults
    from .lifecycle import DrainFlag
    from .metrics import Metrics
    from .seen import ClientsSeen
    from .settings import Settings
    from .store import CounterStore

EXTENSION = "microservices"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: CounterStore
    metrics: Metrics
    # Set once SIGTERM arrives: readiness answers 503 while requests are still served.
    draining: DrainFlag
    # The support-tier clients that read the count, written off the request's path.
    seen: ClientsSeen
    # The fault switches (faults.py), or None with FAULTS_ENABLED off.
    faults: Faults | None = None


def runtime(app: Flask | None = None) -> Runtime:
    """The runtime of `app`, or of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]
