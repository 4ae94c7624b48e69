"""The probes Kubernetes asks: liveness (can this process serve?) and readiness (should it
get traffic?).

Liveness never touches Redis: a Redis outage must not restart every server. Readiness follows
Redis (PING within REDIS_TIMEOUT) and turns 503 as soon as SIGTERM starts the drain. With
REDIS_SENTINELS, readiness first asks the sentinels which node is the primary now and PINGs
that one (CounterStore.ping): 503 while they name none; while no sentinel answers at all, the
node they named last will do as long as it still says it is the primary. With
FAULTS_ENABLED, the readiness and liveness switches (faults.py) fail them on purpose.
"""

from __future__ import annotations

import redis
from flask import Blueprint

from .state import runtime

bp = Blueprint("probes", __name__, url_prefix="/probe")


@bp.get("/liveness")
def liveness():
    state = runtime()
    faults = state.faults
    mode = faults.liveness_mode() if faults is not None else None
    # hang: no answer while the switch is on (the probe times out); a 500 if it outlasts the
    # longest hang or the shutdown begins, so that a probe never reads "alive" while it is on
    if mode == "fail" or (mode == "hang" and faults.hang_while_switched(state.draining.is_set)):
        return {"status": "failing", "reason": f"the liveness fault switch is on ({mode})"}, 500
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
