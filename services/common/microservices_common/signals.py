"""Stopping on SIGTERM and SIGINT.

Kubernetes and Docker stop a container with SIGTERM, and our processes run as PID 1 (exec-form
entrypoints), where the kernel applies no default action: a process that does not handle
SIGTERM itself is killed with SIGKILL when the grace period runs out. Loops wait on a
StopSignal instead of sleeping, so they wake at once when the signal arrives.
"""

from __future__ import annotations

import signal
import threading


class StopSignal:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def set(self) -> None:
        self._event.set()

    @property
    def stopping(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True as soon as a stop was asked for."""
        return self._event.wait(max(0.0, seconds))
