"""The load scripts/benchmark puts on a server: wrk (2 threads) POSTing {"increment": 1}, with
a fresh Idempotency-Key per POST when asked (the counter's real request), read back from the
one line bench/wrk/post.lua prints."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from bench.processes import cpu_by_process, worker_split

POST_LUA = Path(__file__).resolve().parent / "wrk" / "post.lua"
# Warm: the CPU per request of the last WARM_WINDOW 1 s slices within WARM_TOLERANCE of the
# window's before. CPU per request, not requests/s: a neighbour's load moves the throughput,
# while a cold JIT shows as CPU spent per request (PyPy's held 20-200 req/s for seconds at a
# time on a busy machine, and passed a throughput test while cold). Windows, not two slices:
# one slice's CPU is a few ticks.
WARM_WINDOW = 3
WARM_TOLERANCE = 0.05


class RoundFailed(SystemExit):
    """An answer other than a 200, or a socket error: the run fails (exit 1), loudly."""


def start_wrk(url: str, seconds: float, connections: int, idempotent: bool) -> subprocess.Popen:
    env = {**os.environ}
    env.pop("IDEMPOTENCY_KEYS", None)
    if idempotent:
        env["IDEMPOTENCY_KEYS"] = uuid.uuid4().hex  # keys never seen by this Redis before
    return subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency",
         "-s", str(POST_LUA), url + "/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def wrk_result(run: subprocess.Popen) -> dict:
    """What a wrk run measured, once it ends; raises RoundFailed on any failed answer."""
    stdout, stderr = run.communicate()
    for line in stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            result = json.loads(line.removeprefix("WRK_RESULT "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout"))
            return result
    raise RoundFailed(f"wrk printed no result (exit {run.returncode}):\n{stdout}\n{stderr}")


def wrk(url: str, seconds: float, connections: int, idempotent: bool) -> dict:
    return wrk_result(start_wrk(url, seconds, connections, idempotent))


def failure(label: str, result: dict) -> str | None:
    """Why the round must not count (a non-200 or a socket error), or None."""
    if result["non200"] == 0 and result["errors"] == 0:
        return None
    return (
        f"!!! ROUND FAILED: {label}: {result['non200']} answers were not 200, "
        f"{result['errors']} socket errors ({result})"
    )


def measured(
    url: str, seconds: float, connections: int, idempotent: bool, pid: int, redis_pids=()
) -> dict:
    """wrk, with the CPU seconds the server (pid and its descendants) used meanwhile ("cpu"),
    each worker's share of it ("split"), and what Redis used for it ("redis_cpu": the primary
    and its replica, so that work a server moves into Redis, its Lua script, is not free)."""

    def redis_cpu() -> float:
        return sum(sum(cpu_by_process(p).values()) for p in redis_pids)

    before, redis_before = cpu_by_process(pid), redis_cpu()
    result = wrk(url, seconds, connections, idempotent)
    after = cpu_by_process(pid)
    result["redis_cpu"] = redis_cpu() - redis_before
    result["cpu"] = sum(after.values()) - sum(before.values())
    result["split"] = worker_split(pid, before, after)
    return result


def cpu_per_k(results: list[dict]) -> float:
    """CPU ms per 1,000 requests (the same as CPU seconds per million) over these results."""
    requests = sum(r["requests"] for r in results)
    return sum(r["cpu"] for r in results) / requests * 1e6 if requests else float("nan")


def slices(url: str, connections: int, idempotent: bool, pid: int, until) -> list[dict]:
    """measured() 1 s slices, back to back, until until(results) says enough; each with
    "at_s" (its end, from the first slice's start)."""
    started, results = time.monotonic(), []
    while not results or not until(results):
        result = measured(url, 1, connections, idempotent, pid)
        result["at_s"] = time.monotonic() - started
        results.append(result)
    return results


def warm_up(url: str, connections: int, idempotent: bool, pid: int, label: str, cap: float):
    """Load until warm (see WARM_WINDOW), or for `cap` seconds: the slices."""

    def warm(results: list[dict]) -> bool:
        if reason := failure(label, results[-1]):
            raise RoundFailed(reason)
        if results[-1]["at_s"] >= cap:
            return True
        if len(results) < 2 * WARM_WINDOW:
            return False
        before = cpu_per_k(results[-2 * WARM_WINDOW : -WARM_WINDOW])
        last = cpu_per_k(results[-WARM_WINDOW:])
        return abs(last - before) <= WARM_TOLERANCE * max(last, before)

    return slices(url, connections, idempotent, pid, warm)
