"""The live page: a browser opening the server's address watches the three tiers work.

GET /            with an Accept header that names text/html first: the page (api.py asks
                 `wants_page`); every other client keeps getting {"count": N}
GET /api/status  what the page polls every second: JSON, always 200 (a Redis outage is part
                 of the answer, not an error of the endpoint); one Redis round trip, shared
                 by every page this process serves (see Snapshots)
GET /static/...  the page's script, stylesheet and icon: nothing comes from another host

The page itself is served without touching Redis. Its script fills it in from /api/status with
textContent only: no string that a client sent (a hostname in a User-Agent) is ever parsed as
HTML. Every response carries SECURITY_HEADERS; the CSP allows nothing but this server.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import Blueprint, Flask, Response, current_app, render_template, request
from microservices_common.identity import Client, hostname, runs_in, version

from .state import runtime
from .store import COUNT_PROBLEM, COUNT_REPAIR, HISTORY_SECONDS, CounterStore, Snapshot

bp = Blueprint("page", __name__)
EXTENSION = "microservices.page"

SECURITY_HEADERS = (
    # No inline script or style, no other host; nor may another site frame the page.
    (
        "Content-Security-Policy",
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
RATE_SECONDS = 10  # the rate shown: increments per second over the last complete seconds
STARTED = time.time()  # this process's start (the worker's, under gunicorn)


def wants_page() -> bool:
    """True when the client prefers HTML to JSON: text/html has the higher quality in its
    Accept header or, at equal quality, is named before application/json. curl, requests,
    the counter and the poller send `*/*` (or nothing), which names neither: they get JSON,
    as before the page existed."""
    accept = request.accept_mimetypes
    html, json = accept.quality("text/html"), accept.quality("application/json")
    if html != json:
        return html > json
    for mimetype, _quality in accept:  # the more specific first, then in the client's order
        if mimetype.lower() in ("text/html", "text/*"):
            return html > 0
        if mimetype.lower() in ("application/json", "application/*"):
            return False
    return False


def page() -> Response:
    html = render_template("page.html", hostname=hostname(), runs_in=runs_in(), version=version())
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    response.vary.add("Accept")
    return response


@bp.get("/api/status")
def status():
    return status_body(), 200, {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Reading:
    """One read of the store for the page: its snapshot, or why there is none."""

    taken: float  # time.monotonic()
    snapshot: Snapshot | None
    error: str = ""
    latency_ms: float = 0.0
    # Without a snapshot (the primary does not answer), what the sentinels say: a failover
    # under way shows (None without REDIS_SENTINELS).
    sentinels: dict | None = None


class Snapshots:
    """The status that every page this process serves shares: Redis is read at most once per
    `fresh_for` seconds and by one thread at a time, the others taking the latest reading. A
    dozen pages cost Redis what one does, and a stuck Redis holds one of the server's threads
    for REDIS_TIMEOUT, not one per page (the API and the probes need them)."""

    def __init__(self, fresh_for: float = 0.5) -> None:
        self.fresh_for = fresh_for
        self._lock = threading.Lock()
        self._latest: Reading | None = None

    def read(self, store: CounterStore, on_error: Callable[[], None]) -> Reading:
        latest = self._latest
        if latest is not None and time.monotonic() - latest.taken < self.fresh_for:
            return latest
        # Only the very first reading is waited for; after it, whoever finds another thread
        # reading takes the latest one.
        if not self._lock.acquire(blocking=latest is None):
            return latest
        try:
            latest = self._latest
            if latest is not None and time.monotonic() - latest.taken < self.fresh_for:
                return latest  # read by the thread we waited for
            started = time.perf_counter()
            snapshot, error, sentinels = None, "", None
            try:
                snapshot = store.snapshot()
            except redis.RedisError as exc:
                on_error()
                error = f"{type(exc).__name__}: {exc}"
                sentinels = store.sentinel_view()
            latency = round((time.perf_counter() - started) * 1000, 1)
            self._latest = Reading(time.monotonic(), snapshot, error, latency, sentinels)
            return self._latest
        finally:
            self._lock.release()


def snapshots(app: Flask | None = None) -> Snapshots:
    return (app or current_app).extensions[EXTENSION]


def status_body() -> dict:
    state = runtime()
    app_tier = {
        "status": "up",  # it answered; the page says "down" when it cannot reach the server
        "hostname": hostname(),
        "runs_in": runs_in(),  # pod, container or host: what the page calls it
        "version": version(),
        "pid": os.getpid(),
        "uptime": round(time.time() - STARTED),
        "draining": state.draining.is_set(),
        # This pod's fault switches (null without FAULTS_ENABLED): the page shows which are on.
        "faults": state.faults.describe_all() if state.faults else None,
    }
    reading = snapshots().read(state.store, lambda: state.metrics.redis_error("status"))
    snapshot = reading.snapshot
    stale_after = state.settings.client_stale_after
    asked = state.seen.asked_since(time.time() - stale_after)
    if snapshot is None:
        data_tier = {"status": "down", "reason": reading.error}
        if reading.sentinels is not None:  # what the sentinels say: a failover under way?
            data_tier["replication"] = {"role": "", "replicas": [], "sentinels": reading.sentinels}
        return {
            "count": None,
            "rate": None,
            "history": None,
            "tiers": {
                "data": data_tier,
                "app": app_tier,
                **{kind: asking_while_redis_is_down(kind, asked) for kind in ("counter", "poller")},
            },
        }
    data_tier = {
        "status": "up",
        "version": snapshot.server_version,
        "uptime": snapshot.server_uptime,
        "latency_ms": reading.latency_ms,
    }
    data_tier["replication"] = replication(snapshot)
    if snapshot.count_error:  # Redis answers, but what it holds cannot be counted on
        data_tier["reason"] = f"{COUNT_PROBLEM} ({snapshot.count_error}): {COUNT_REPAIR}"
    history = per_second(snapshot)
    return {
        "count": snapshot.count,
        "rate": round(sum(history[-RATE_SECONDS:]) / RATE_SECONDS, 1),
        "history": history,
        "tiers": {
            "data": data_tier,
            "app": app_tier,
            **{
                kind: support_tier(snapshot, kind, stale_after, state.settings.clients_ttl, asked)
                for kind in ("counter", "poller")
            },
        },
    }


def replication(snapshot: Snapshot) -> dict:
    """The data tier as primary and replicas (README, "High availability"): the role of the
    node that answered, each replica's state and how far behind it is (bytes of the
    replication stream not yet acknowledged, and seconds since it last acknowledged), and the
    sentinels' view (null without REDIS_SENTINELS)."""
    info = snapshot.replication
    offset = int(info.get("master_repl_offset", 0))
    replicas = []
    for index in range(int(info.get("connected_slaves", 0))):
        replica = info.get(f"slave{index}")
        if isinstance(replica, dict):
            replicas.append(
                {
                    "address": f"{replica.get('ip')}:{replica.get('port')}",
                    "state": replica.get("state", ""),
                    "behind": max(0, offset - int(replica.get("offset", 0))),
                    "lag": replica.get("lag"),
                }
            )
    return {
        "role": info.get("role", ""),
        "offset": offset,
        "replicas": replicas,
        "sentinels": snapshot.sentinels,
    }


def per_second(snapshot: Snapshot) -> list[int]:
    """Increments in each of the last HISTORY_SECONDS complete seconds, the oldest first."""
    now = int(snapshot.now)
    return [snapshot.history.get(second, 0) for second in range(now - HISTORY_SECONDS, now)]


RETRYING = "its requests reach the server and fail: it keeps trying"


def support_tier(
    snapshot: Snapshot,
    kind: str,
    stale_after: float,
    remembered: int,
    asked: dict[str, float] | None = None,
) -> dict:
    """The counters (or pollers) seen lately: each pod "up" if seen within `stale_after`,
    "retrying" if not but it asked this process something within it (its requests fail:
    seen.py), else "stale"; the tier "up" if any pod is, then "retrying", "stale" if all fell
    silent, "down" if none was seen at all within `remembered` seconds."""
    asked = asked or {}
    pods = []
    for member, seen in snapshot.clients:
        client = Client.from_member(member)
        if client is None or client.kind != kind:
            continue
        age = max(0.0, snapshot.now - seen)
        status = "up" if age <= stale_after else "retrying" if member in asked else "stale"
        pod = {"host": client.host, "version": client.version, "age": round(age, 1)}
        if status == "retrying":
            pod["tried"] = round(max(0.0, time.time() - asked[member]), 1)
        pods.append({**pod, "status": status})
    if any(pod["status"] == "up" for pod in pods):
        return {"status": "up", "pods": pods}
    if any(pod["status"] == "retrying" for pod in pods):
        return {"status": "retrying", "reason": RETRYING, "pods": pods}
    if pods:
        return {"status": "stale", "reason": f"silent for {pods[0]['age']:.0f} s", "pods": pods}
    return {"status": "down", "reason": f"not seen in the last {remembered} s", "pods": pods}


def asking_while_redis_is_down(kind: str, asked: dict[str, float]) -> dict:
    """The counters (or pollers) that asked this process something lately, while Redis is
    down and nothing of theirs can be read: "retrying" (they keep asking), else unknown."""
    now = time.time()
    pods = [
        {"host": c.host, "version": c.version, "tried": round(now - at, 1), "status": "retrying"}
        for member, at in sorted(asked.items(), key=lambda item: -item[1])
        if (c := Client.from_member(member)) is not None and c.kind == kind
    ]
    if pods:
        return {"status": "retrying", "reason": RETRYING, "pods": pods}
    return {"status": "stale", "reason": "unknown while Redis is down", "pods": []}


def security_headers(response: Response) -> Response:
    # No view sets these itself, so they are added as they are: three setdefault() calls
    # took 4 us of every API request.
    response.headers.extend(SECURITY_HEADERS)
    return response


def init_app(app: Flask) -> None:
    """Serve the page's status endpoint; give every response (the page, its static files,
    the API) the security headers."""
    app.extensions[EXTENSION] = Snapshots()
    app.after_request(security_headers)
    app.register_blueprint(bp)
