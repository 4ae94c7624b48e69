"""The probes Kubernetes asks: liveness (can this process serve?) and readiness (should it
get traffic?).

Liveness never touches Redis: a Redis outage must not restart every server. Readiness follows
Redis (PING within REDIS_TIMEOUT) and turns 503 as soon as SIGTERM starts the drain.
"""

from __future__ import annotations

import redis
from flask import Blueprint

from .state import runtime

bp = Blueprint("probes", __name__, url_prefix="/probe")


@bp.get("/liveness")
def liveness():
    return {"status": "alive"}


@bp.get("/readiness")
def readiness():
    state = runtime()
    if state.draining.is_set():
        return {"status": "unready", "reason": "shutting down"}, 503
    try:
        state.store.ping()
    except redis.RedisError as exc:
        state.metrics.redis_error("ping")
        return {"status": "unready", "reason": f"redis: {type(exc).__name__}: {exc}"}, 503
    return {"status": "ready"}
