"""Turning a POST body into an increment, or a clear 4xx.

Accepted: an empty body (increment 1), or exactly {"increment": k} as application/json with
k a JSON integer in 1..max_increment. Everything else is rejected before Redis is touched.
"""

from __future__ import annotations

import json
import re

from .errors import ApiError

# Printable ASCII without spaces, like the IETF draft's examples (UUIDs, ULIDs, hashes), and
# without commas: gunicorn joins two Idempotency-Key headers into one value, "a,b", which must
# not pass for a third key.
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x2b\x2d-\x7e]{1,128}$")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ApiError(400, "duplicate key in JSON object")
    return dict(pairs)


def _no_constants(name: str) -> None:
    raise ApiError(400, f"{name} is not a number")


# Built once: json.loads with hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def parse_increment(body: bytes, content_type: str | None, max_increment: int) -> int:
    if body == b"":
        return 1
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json":
        raise ApiError(415, "send an empty body or application/json")
    try:
        data = _DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) != {"increment"}:
        raise ApiError(400, 'body must be {"increment": <integer>}')
    increment = data["increment"]
    # bool is a subclass of int in Python: true must not count as 1.
    if not isinstance(increment, int) or isinstance(increment, bool):
        raise ApiError(400, "increment must be an integer")
    if not 1 <= increment <= max_increment:
        raise ApiError(400, f"increment must be between 1 and {max_increment}")
    return increment


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.match(value):
        raise ApiError(
            400,
            "send one Idempotency-Key header: 1 to 128 printable ASCII characters, no commas",
        )
    return value
