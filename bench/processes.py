"""What scripts/benchmark reads about the processes it runs: CPU seconds and RSS from /proc, per
process of a tree (gunicorn's master and its workers), and a background process with its log."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, pid first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            todo.extend(int(c) for c in children.read_text().split())
    return found


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds of pid and of each of its descendants, now. pid's own count
    includes the children it has reaped (cutime, cstime): a worker that died and was replaced
    during a round leaves what it used behind in its master's."""
    used = {}
    for p in process_tree(pid):
        try:
            # Fields after the command (which may hold spaces) are read from its closing ')'.
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        if p == pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
        used[p] = ticks / CLOCK_TICKS
    return used


def worker_split(pid: int, before: dict[int, float], after: dict[int, float]) -> list[int]:
    """Each worker's share (%) of the CPU the workers used, busiest first: how evenly the
    kernel spread the connections."""
    used = [after[p] - before.get(p, 0.0) for p in after if p != pid]
    total = sum(used)
    return sorted((round(100 * u / total) for u in used), reverse=True) if total else []


def rss_by_process(pid: int) -> dict[int, float]:
    """RSS in MiB of pid and of each of its descendants, pid first."""
    rss = {}
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[p] = int(line.split()[1]) / 1024
    return rss


def rss_summary(pid: int) -> dict:
    """Total RSS of a server, and each worker's (its master's children), largest first; a
    server of one process (node) is its own worker."""
    rss = rss_by_process(pid)
    workers = sorted((v for p, v in rss.items() if p != pid), reverse=True) or [rss.get(pid, 0)]
    return {"total_mib": sum(rss.values()), "workers_mib": workers}


class Process:
    """A command run in the background, its output in a log file (not a pipe: reading a busy
    access log in this process would take CPU from the servers being measured). `env` is its
    whole environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path, cwd=None):
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                argv, env={"PYTHONUNBUFFERED": "1", **env}, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
