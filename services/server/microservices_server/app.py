"""The Flask application factory and its routes.

GET    /                 {"count": N}
POST   /                 increment (empty body = 1, or {"increment": k}); Idempotency-Key
DELETE /                 reset to 0; needs X-API-Key
GET    /probe/liveness   200 while the process can serve; never touches Redis
GET    /probe/readiness  200 when Redis answers PING, else 503; 503 once shutting down
GET    /metrics          Prometheus text format
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

import redis
from flask import Flask, Response, g, jsonify, request
from microservices_common.logs import log_event
from werkzeug.exceptions import HTTPException

from .metrics import Metrics
from .settings import Settings
from .store import CounterStore
from .validation import ApiError, parse_idempotency_key, parse_increment

log = logging.getLogger("server")

RETRY_AFTER_SECONDS = "1"


def create_app(settings: Settings | None = None, store: CounterStore | None = None) -> Flask:
    settings = settings or Settings.from_env()
    store = store or CounterStore.from_settings(settings)
    metrics = Metrics()
    shutting_down = threading.Event()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["counter"] = {
        "settings": settings,
        "store": store,
        "metrics": metrics,
        "shutting_down": shutting_down,
    }

    def redis_call(operation: str, call):
        """Run a Redis call; any Redis failure becomes a 503 the client can retry."""
        try:
            return call()
        except redis.RedisError as exc:
            metrics.redis_errors.labels(operation).inc()
            log_event(
                log,
                "redis_error",
                f"redis {operation} failed: {exc}",
                logging.WARNING,
                operation=operation,
            )
            raise ApiError(
                503,
                f"redis unavailable: {type(exc).__name__}",
                {"Retry-After": RETRY_AFTER_SECONDS},
            ) from None

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("started", time.perf_counter())
        metrics.observe(rule, request.method, response.status_code, time.perf_counter() - started)
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # 404, 405, 413 ... as JSON like every other answer of this API.
        response = jsonify(error=exc.description)
        response.status_code = exc.code or 500
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # A bug, not a client error: log it whole, answer JSON without the details.
        log.exception("unhandled error")
        return jsonify(error="internal server error"), 500

    @app.get("/")
    def read_count():
        return {"count": redis_call("get", store.get)}

    @app.post("/")
    def increment():
        key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
        amount = parse_increment(
            request.get_data(cache=False), request.content_type, settings.max_increment
        )
        result = redis_call("increment", lambda: store.increment(amount, key))
        if result.replayed and result.recorded_increment != amount:
            raise ApiError(422, "Idempotency-Key was already used with a different increment")
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return {"count": result.count}, 200, headers

    @app.delete("/")
    def reset():
        if not settings.api_key:
            raise ApiError(403, "reset is disabled: no API_KEY is configured on the server")
        given = request.headers.get("X-API-Key", "")
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise ApiError(401, "missing or wrong X-API-Key")
        log_event(log, "reset", "counter reset", logging.WARNING)
        return {"count": redis_call("reset", store.reset)}

    @app.get("/probe/liveness")
    def liveness():
        return {"status": "alive"}

    @app.get("/probe/readiness")
    def readiness():
        if shutting_down.is_set():
            return {"status": "unready", "reason": "shutting down"}, 503
        try:
            store.ping()
        except redis.RedisError as exc:
            metrics.redis_errors.labels("ping").inc()
            return {"status": "unready", "reason": f"redis: {type(exc).__name__}: {exc}"}, 503
        return {"status": "ready"}

    @app.get("/metrics")
    def prometheus():
        return Response(metrics.render(), content_type=metrics.content_type)

    return app


def begin_shutdown(app: Flask) -> None:
    """Readiness answers 503 from now on (called on SIGTERM by the gunicorn config)."""
    app.extensions["counter"]["shutting_down"].set()
