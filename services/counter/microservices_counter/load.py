"""Load mode: many increments per second, to make the app tier's CPU climb (HPA lesson) and to
measure throughput (scripts/benchmark).

`--concurrency` threads share one target rate; each POSTs {"increment": 1} with a fresh
Idempotency-Key and no retries (a failure is counted, not hidden). A summary line every five
seconds and at the end gives requests, errors, requests per second and latency percentiles.
"""

from __future__ import annotations

import threading
import time
import uuid

from microservices_common.client import send
from microservices_common.logs import log_event
from microservices_common.runner import Worker

REPORT_EVERY = 5.0


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.latencies: list[float] = []

    def add(self, ok: bool, seconds: float) -> None:
        with self.lock:
            if ok:
                self.ok += 1
                self.latencies.append(seconds)
            else:
                self.failed += 1

    def summary(self, elapsed: float) -> dict[str, float]:
        with self.lock:
            lat = sorted(self.latencies)
            ok, failed = self.ok, self.failed

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else 0.0

        return {
            "ok": ok,
            "failed": failed,
            "seconds": round(elapsed, 2),
            "rps": round(ok / elapsed, 1) if elapsed else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        }


def _load_thread(worker: Worker, interval: float, tally: Tally, end: float | None) -> None:
    settings, stop = worker.settings, worker.stop
    session = worker.http_session()
    next_start = time.monotonic()
    while not stop.stopping and (end is None or time.monotonic() < end):
        started = time.monotonic()
        try:
            response = send(
                session,
                "POST",
                settings.api_url + "/",
                settings.request_timeout,
                json={"increment": 1},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            ok = response.status == 200
        except Exception:  # noqa: BLE001 - no whole answer: a failure, counted
            ok = False
        tally.add(ok, time.monotonic() - started)
        if not ok and stop.wait(0.05):  # do not spin on a server that is down
            break
        if interval:
            next_start = max(next_start + interval, time.monotonic())
            if stop.wait(next_start - time.monotonic()):
                break


def run_load(worker: Worker, rate: float, concurrency: int, duration: float) -> int:
    log, stop = worker.log, worker.stop
    interval = concurrency / rate if rate else 0.0
    started = time.monotonic()
    end = started + duration if duration else None
    tally = Tally()
    log_event(
        log,
        "load_started",
        f"load on {worker.settings.api_url}: rate {rate or 'max'}/s, concurrency {concurrency}",
        rate=rate,
        concurrency=concurrency,
    )
    threads = [
        threading.Thread(target=_load_thread, args=(worker, interval, tally, end), daemon=True)
        for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        if stop.wait(min(REPORT_EVERY, max(0.0, (end or float("inf")) - time.monotonic()))):
            break
        summary = tally.summary(time.monotonic() - started)
        log_event(
            log,
            "load_progress",
            "load: {ok} ok, {failed} failed, {rps} req/s, p50 {p50_ms} ms, p99 {p99_ms} ms".format(
                **summary
            ),
            **summary,
        )
    for thread in threads:
        thread.join()
    summary = tally.summary(time.monotonic() - started)
    log_event(
        log,
        "load_summary",
        "load done: {ok} ok, {failed} failed, {rps} req/s, p50 {p50_ms} ms, p99 {p99_ms} ms".format(
            **summary
        ),
        **summary,
    )
    return 0
