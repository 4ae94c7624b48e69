"""The fault switches' meaning: what each one does to this pod, and the CPU burner.

faults.py serves them over HTTP (/faults) and puts latency and errors in front of the API;
fault_board.py holds their state in memory every worker shares. Here: what the probes ask
(is readiness failing? is liveness to fail or hang?), what /faults shows, and turning a
switch on or off (the cpu switch starts or stops its burner process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .fault_board import SWITCHES, FaultBoard, SwitchState

DEFAULT_SECONDS = 300
MAX_SECONDS = 3600
MAX_LATENCY_MS = 10_000
LIVENESS_MODES = ("fail", "hang")  # stored as 0 and 1
ERROR_STATUSES = (500, 503)
# How often a hanging liveness probe looks whether its switch is still on, and how long it
# hangs at most: the kubelet gave up long before (timeoutSeconds), and under gthread each
# hanging probe holds one of the worker's threads.
HANG_POLL_SECONDS = 0.2
HANG_MAX_SECONDS = 30
# The burner: a separate process (a thread would hold the GIL the requests need), at the
# lowest priority, ending at its time, when its worker is gone, or on SIGTERM (DELETE).
BURNER_MARK = "microservices-cpu-burn"
BURNER = f"""
import os, sys, time
os.nice(19)
end, parent = time.monotonic() + float(sys.argv[1]), os.getppid()
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(20000):
        pass
# {BURNER_MARK}
"""


class Faults:
    """This pod's switches: what the probes and the API hooks ask, and what /faults changes."""

    def __init__(self, board: FaultBoard) -> None:
        self.board = board

    # -- what the probes and the API ask (cheap: a read of shared memory, no lock)

    def readiness_failing(self) -> bool:
        return self.board.read("readiness").on

    def liveness_mode(self) -> str | None:
        state = self.board.read("liveness")
        return LIVENESS_MODES[int(state.first)] if state.on else None

    def hang_while_switched(self) -> bool:
        """Hold a liveness probe while the hang switch is on, HANG_MAX_SECONDS at most; True
        if it is still on then."""
        give_up = time.monotonic() + HANG_MAX_SECONDS
        while self.liveness_mode() == "hang":
            if time.monotonic() >= give_up:
                return True
            time.sleep(HANG_POLL_SECONDS)
        return False

    # -- what /faults shows and changes

    def describe(self, switch: str) -> dict:
        state = self.board.read(switch)
        if not state.on:
            return {"on": False}
        return {"on": True, **_parameters(switch, state), "seconds_left": _left(state)}

    def describe_all(self) -> dict:
        return {switch: self.describe(switch) for switch in SWITCHES}

    def switch_on(self, switch: str, settings: dict) -> None:
        seconds = settings.pop("for")
        first, second = _encode(switch, settings)
        if switch == "cpu":
            stop_burner(self.board.read("cpu"))
            first = start_burner(seconds)
        self.board.write(switch, seconds, first, second)

    def switch_off(self, switch: str) -> None:
        if switch == "cpu":
            stop_burner(self.board.read("cpu"))
        self.board.write(switch, 0)


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


def start_burner(seconds: float) -> int:
    burner = subprocess.Popen(  # noqa: S603 - our own interpreter and code, no input
        [sys.executable, "-c", BURNER, str(seconds)],
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    # Reap it when it ends (a worker that never waits leaves a zombie behind).
    threading.Thread(target=burner.wait, name="cpu-burner", daemon=True).start()
    return float(burner.pid)


def stop_burner(state: SwitchState) -> None:
    """End the burner the switch names, whichever worker started it, if it is still ours:
    a process id is reused once its process is gone, so its command line must say so."""
    if not state.on:
        return
    pid = int(state.first)
    try:
        if BURNER_MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):  # gone already, or no /proc (then it ends at its time)
        pass
