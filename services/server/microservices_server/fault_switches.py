"""The fault switches' meaning: what each one does to this pod, and the CPU burner.

faults.py serves them over HTTP (/faults) and puts latency and errors in front of the API;
fault_board.py holds their state in memory every worker shares. Here: what the probes ask
(is readiness failing? is liveness to fail or hang?), what /faults shows, and turning a
switch on or off (the cpu switch starts or stops its burner process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess  # noqa: S404 - the cpu switch starts its burner (start_burner)
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .fault_board import OFF, SWITCHES, FaultBoard, SwitchState

DEFAULT_SECONDS = 300
MAX_SECONDS = 3600
MAX_LATENCY_MS = 10_000
LIVENESS_MODES = ("fail", "hang")  # stored as 0 and 1
ERROR_STATUSES = (500, 503)
# How often a hanging liveness probe looks whether its switch is still on, and how long it
# hangs at most: the kubelet gave up long before (timeoutSeconds is 1 to 2 s), and under
# gthread each hanging probe holds one of the worker's threads.
HANG_POLL_SECONDS = 0.2
HANG_MAX_SECONDS = 10
# The burner: a separate process (a thread would hold the GIL the requests need), at the
# lowest priority, ending at its time, when its worker is gone, or on SIGTERM (DELETE). Its
# command line names the board it belongs to, so that a DELETE ends only a burner of this
# pod's, never another process that got the same pid once the burner was gone.
BURNER_MARK = "microservices-cpu-burn"
BURNER = """
import os, sys, time
os.nice(19)
end, parent = time.monotonic() + float(sys.argv[1]), int(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(20000):
        pass
"""

# What happened to a switch, for the log and /metrics: on, off, or expired (its time ran out).
Notify = Callable[[str, str, dict], None]


class Faults:
    """This pod's switches: what the probes and the API hooks ask, and what /faults changes.

    `notify(switch, action, settings)` hears of every real change: "on" (also a switch
    turned on again with new settings), "off" (a DELETE of a switch that was on) and
    "expired" (noticed by the worker that turned it on, at its time)."""

    def __init__(self, board: FaultBoard, notify: Notify | None = None) -> None:
        self.board = board
        self.notify = notify or (lambda switch, action, settings: None)
        self._timers: dict[str, threading.Timer] = {}  # this process's expiry watches

    # -- what the probes, the API hooks and /metrics ask (a read of shared memory, no lock)

    def state(self, switch: str) -> SwitchState:
        state = self.board.read(switch)
        if switch == "cpu" and state.on and not burner_alive(self.board, state):
            return OFF  # its burner ended with the worker that started it
        return state

    def readiness_failing(self) -> bool:
        return self.board.read("readiness").on

    def liveness_mode(self) -> str | None:
        state = self.board.read("liveness")
        return LIVENESS_MODES[int(state.first)] if state.on else None

    def hang_while_switched(self, stopping: Callable[[], bool]) -> bool:
        """Hold a liveness probe while the hang switch is on, HANG_MAX_SECONDS at most and
        not past the start of a shutdown (which must not wait for it); True if still on."""
        give_up = time.monotonic() + HANG_MAX_SECONDS
        while self.liveness_mode() == "hang":
            if time.monotonic() >= give_up or stopping():
                return True
            time.sleep(HANG_POLL_SECONDS)
        return False

    # -- what /faults shows and changes

    def describe(self, switch: str) -> dict:
        state = self.state(switch)
        if not state.on:
            return {"on": False}
        return {"on": True, **_parameters(switch, state), "seconds_left": _left(state)}

    def describe_all(self) -> dict:
        return {switch: self.describe(switch) for switch in SWITCHES}

    def switch_on(self, switch: str, settings: dict) -> None:
        seconds = settings["for"]
        first, second = _encode(switch, settings)
        if switch == "cpu":
            first = start_burner(self.board, seconds)
        try:
            before = self.board.swap(switch, seconds, first, second)
        except BaseException:
            if switch == "cpu":
                stop_burner(self.board, SwitchState(True, first=first))
            raise
        if switch == "cpu":
            stop_burner(self.board, before)  # the one this replaces, whichever worker's
        self._watch_expiry(switch, settings)
        self.notify(switch, "on", settings)

    def switch_off(self, switch: str) -> None:
        before = self.board.swap(switch, 0)
        if switch == "cpu":
            stop_burner(self.board, before)
        self._watch_expiry(switch, None)
        if before.on:
            self.notify(switch, "off", {})

    def _watch_expiry(self, switch: str, settings: dict | None) -> None:
        """At the switch's time, say that it expired, unless it was changed meanwhile."""
        old = self._timers.pop(switch, None)
        if old is not None:
            old.cancel()
        if settings is None:
            return
        until = self.board.read(switch).until

        def expired() -> None:
            if self.board.until(switch) == until <= time.monotonic():
                self.notify(switch, "expired", settings)

        timer = self._timers[switch] = threading.Timer(settings["for"] + 0.05, expired)
        timer.daemon = True
        timer.start()


def _left(state: SwitchState) -> float:
    return round(state.seconds_left(), 1)


def _parameters(switch: str, state: SwitchState) -> dict:
    if switch == "liveness":
        return {"mode": LIVENESS_MODES[int(state.first)]}
    if switch == "latency":
        return {"ms": int(state.first)}
    if switch == "errors":
        return {"ratio": state.first, "status": int(state.second)}
    return {}


def _encode(switch: str, settings: dict) -> tuple[float, float]:
    if switch == "liveness":
        return float(LIVENESS_MODES.index(settings["mode"])), 0.0
    if switch == "latency":
        return float(settings["ms"]), 0.0
    if switch == "errors":
        return float(settings["ratio"]), float(settings["status"])
    return 0.0, 0.0


# -- the CPU burner


def _owner(board: FaultBoard) -> str:
    return f"{BURNER_MARK}-{board.owner}"


def start_burner(board: FaultBoard, seconds: float) -> float:
    burner = subprocess.Popen(  # noqa: S603 - our own interpreter and code, no input
        # The worker's pid given, not read by the burner: the worker may be gone by then.
        [sys.executable, "-c", BURNER, str(seconds), str(os.getpid()), _owner(board)],
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    # Reap it when it ends (a worker that never waits leaves a zombie behind).
    threading.Thread(target=burner.wait, name="cpu-burner", daemon=True).start()
    return float(burner.pid)


def burner_alive(board: FaultBoard, state: SwitchState) -> bool:
    """Whether the burner the switch names runs, and is this pod's."""
    try:
        arguments = Path(f"/proc/{int(state.first)}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone (or no /proc: then it ends at its time)
        return False
    return _owner(board).encode() in arguments


def stop_burner(board: FaultBoard, state: SwitchState) -> None:
    """End the burner a switch named, whichever worker started it, if it is still ours."""
    if state.on and burner_alive(board, state):
        with contextlib.suppress(OSError):  # ended meanwhile
            os.kill(int(state.first), signal.SIGTERM)
