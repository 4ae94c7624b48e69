"""The counter API: GET / reads, POST / increments (idempotently), DELETE / resets.
(A browser asking for GET / gets the live page instead: see page.py.)

A request goes: gunicorn -> this blueprint -> validation (parse the body and headers, or a
4xx) -> the store (one Redis round trip) -> {"count": N}. Any Redis failure answers 503 with
Retry-After, so clients retry instead of waiting on a worker that waits on Redis.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TypeVar

import redis
from flask import Blueprint, Request, request
from gunicorn.http.errors import ParseException
from microservices_common.identity import Client
from microservices_common.logs import log_event
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge

from . import page
from .errors import ApiError
from .state import runtime
from .store import COUNT_PROBLEM, COUNT_REPAIR, CorruptCount, CounterOverflow, NotReplicated
from .validation import parse_idempotency_key, parse_increment

log = logging.getLogger("server")
bp = Blueprint("api", __name__)

RETRY_AFTER_SECONDS = "1"
T = TypeVar("T")


def redis_call(operation: str, call: Callable[[], T]) -> T:
    """Run a Redis call; any Redis failure becomes a 503 the client can retry."""
    try:
        return call()
    except CorruptCount as exc:
        log_event(log, "count_corrupt", f"{COUNT_PROBLEM}: {exc}", logging.ERROR)
        raise ApiError(500, f"{COUNT_PROBLEM} ({exc}); {COUNT_REPAIR}") from None
    except NotReplicated as exc:
        # Done on the primary, not confirmed by enough replicas: not acknowledged, since a
        # failover could still lose it. The client retries; its Idempotency-Key makes the
        # retry return this answer if the write survived, and apply it once if it did not.
        runtime().metrics.redis_error("wait")
        log_event(log, "not_replicated", f"redis {operation}: {exc}", logging.WARNING)
        raise ApiError(
            503,
            f"outcome unknown, retry with the same Idempotency-Key: {exc}",
            {"Retry-After": RETRY_AFTER_SECONDS},
        ) from None
    except redis.RedisError as exc:
        runtime().metrics.redis_error(operation)
        log_event(
            log,
            "redis_error",
            f"redis {operation} failed: {exc}",
            logging.WARNING,
            operation=operation,
        )
        raise ApiError(
            503, f"redis unavailable: {type(exc).__name__}", {"Retry-After": RETRY_AFTER_SECONDS}
        ) from None


def request_body(req: Request, limit: int) -> bytes:
    """The request's whole body, at most `limit` bytes, or a 4xx.

    gunicorn decodes a chunked body (no Content-Length) as it is read: malformed chunks are
    the client's error (400), not a bug (500 and a traceback). Nor does such a body announce
    its size: werkzeug reads it up to MAX_CONTENT_LENGTH, which the factory sets one byte
    past `limit`, and stops there without a word (it could not tell a body of exactly its
    limit from a longer one). So the length is checked here: without it, a body cut at the
    limit whose first part parses would count."""
    try:
        body = req.get_data(cache=False)
    except ParseException as exc:
        raise ApiError(400, f"malformed request body: {type(exc).__name__}") from None
    if len(body) > limit:
        raise RequestEntityTooLarge()
    # A Content-Length body cut short (the client closed its side): an incomplete message
    # (RFC 9112, section 8), never a smaller request.
    if req.content_length is not None and len(body) != req.content_length:
        raise ApiError(400, "incomplete request body: the connection closed before its end")
    return body


def caller(headers: Headers) -> str | None:
    """The support-tier client making this request (recorded for the page), or None."""
    client = Client.from_user_agent(headers.get("User-Agent"))
    return client.member if client else None


@bp.before_request
def note_asking_client() -> None:
    """Before anything can fail (a fault switch, Redis, validation): a counter or poller whose
    requests fail is still asking, and the page calls it "retrying" (seen.py)."""
    client = caller(request.headers)
    if client is not None:
        runtime().seen.asked(client)


@bp.get("/")
def read_count():
    # A browser gets the live page (no Redis needed); every API client gets the count.
    if page.wants_page():
        return page.page()
    state = runtime()
    client = caller(request.headers)
    count = redis_call("get", state.store.get)
    if client is not None:
        state.seen.note(client)  # for the page; written off this request's path (seen.py)
    return {"count": count}, 200, {"Vary": "Accept"}


@bp.post("/")
def increment():
    state = runtime()
    req = request._get_current_object()  # one context lookup, not one per attribute
    key = parse_idempotency_key(req.headers.get("Idempotency-Key"))
    body = request_body(req, state.settings.max_body_bytes)
    amount = parse_increment(body, req.content_type, state.settings.max_increment)
    client = caller(req.headers)
    try:
        result = redis_call("increment", lambda: state.store.increment(amount, key, client))
    except CounterOverflow:
        raise ApiError(409, "the count would pass 2^63-1; reset it first") from None
    if result.replayed and result.recorded_increment != amount:
        raise ApiError(422, "Idempotency-Key was already used with a different increment")
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return {"count": result.count}, 200, headers


def require_api_key(disabled: str) -> None:
    """A 403 when the server has no API_KEY (saying `disabled`), a 401 unless the request's
    X-API-Key is it (compared in constant time)."""
    api_key = runtime().settings.api_key
    if not api_key:
        raise ApiError(403, f"{disabled}: no API_KEY is configured on the server")
    given = request.headers.get("X-API-Key", "")
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(401, "missing or wrong X-API-Key")


@bp.delete("/")
def reset():
    state = runtime()
    require_api_key("reset is disabled")
    count = redis_call("reset", state.store.reset)
    # Logged once Redis has done it: a failed reset must not look like one in the log.
    log_event(log, "reset", "counter reset", logging.WARNING)
    return {"count": count}
