"""The probes Kubernetes asks: liveness (can this process serve?) and readiness (should it
get traffic?).

Liveness never touches Redis: a Redis outage must not restart every server. Readiness follows
Redis (PING within REDIS_TIMEOUT) and turns 503 as soon as SIGTERM starts the drain. With
FAULTS_ENABLED, the readiness and liveness switches (faults.py) fail them on purpose.
"""

from __future__ import annotations

import redis
from flask import Blueprint

from .state import runtime

bp = Blueprint("probes", __name__, url_prefix="/probe")


@bp.get("/liveness")
def liveness():
    faults = runtime().faults
    if faults is not None and (mode := faults.liveness_mode()) is not None:
        if mode == "fail":
            return {"status": "failing", "reason": "the liveness fault switch is on"}, 500
        faults.hang_while_switched()  # no answer while it is on: the probe times out
    return {"status": "alive"}


@bp.get("/readiness")
def readiness():
    state = runtime()
    if state.draining.is_set():
        return {"status": "unready", "reason": "shutting down"}, 503
    if state.faults is not None and state.faults.readiness_failing():
        return {"status": "unready", "reason": "the readiness fault switch is on"}, 503
    try:
        state.store.ping()
    except redis.RedisError as exc:
        state.metrics.redis_error("ping")
        return {"status": "unready", "reason": f"redis: {type(exc).__name__}: {exc}"}, 503
    return {"status": "ready"}
